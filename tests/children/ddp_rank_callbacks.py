"""Child program of tests/callbacks/test_ddp_pickling.py: a DDP rank above 0 runs the pickled callbacks.

    RANK=1 python tests/children/ddp_rank_callbacks.py STATE_FILE SAVE_DIR

STATE_FILE holds ``cloudpickle.dumps({"callbacks": model.callbacks})`` as Ultralytics' DDP launch
writes it for each rank (loaded here as its generated script does, in a process that never
imported the plugin itself). The ``on_pretrain_routine_end`` callbacks (a rank above 0 never sees
``on_pretrain_routine_start``) run on a stand-in trainer whose results go to SAVE_DIR; one conv
call follows. Prints ``GUARD <policy> <route of the first signature> <module names>``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cloudpickle
import torch
import torch.nn as nn


def main(argv: list[str]) -> int:
    """0 when the callbacks installed a guard and the conv ran under it."""
    state, save_dir = argv
    callbacks = cloudpickle.loads(Path(state).read_bytes())["callbacks"]
    args = types.SimpleNamespace(resume=False, imgsz=32, batch=2, data=None, model="yolov8n.yaml", amp=False)
    trainer = types.SimpleNamespace(
        save_dir=save_dir,
        device=torch.device("cpu"),
        args=args,
        model=nn.Sequential(nn.Conv2d(3, 4, 3)),
        ema=None,
        metrics={},
    )
    trainer.save_metrics = lambda metrics: None
    for fn in callbacks["on_pretrain_routine_end"]:
        fn(trainer)
    from yolo_rdna1.guard import current

    g = current()
    trainer.model(torch.zeros(1, 3, 8, 8))
    print("GUARD", g.policy, g.per_signature()[0]["routes"]["fwd"], sorted(g._names.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
