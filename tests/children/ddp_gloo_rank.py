"""Child program of tests/callbacks/test_ddp_pickling.py: one of two gloo ranks counting guarded convs.

    python tests/children/ddp_gloo_rank.py RANK INIT_METHOD SAVE_DIR

Rank 0 makes 1 conv call on the vendor route, rank 1 makes 3 on the bypass; both end the epoch
as Ultralytics' ``on_train_epoch_end`` does, then rank 0 alone builds the epoch's metrics (as
``save_metrics`` does after validating) and prints ``RATE <bypass rate> <calls> <bypassed>``:
the counts of the whole job.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from yolo_rdna1.guard import guarded
from yolo_rdna1.options import PluginOptions
from yolo_rdna1.run import GuardedRun


def main(argv: list[str]) -> int:
    """0 when both ranks met and rank 0 printed the job's counts."""
    rank, init, save_dir = int(argv[0]), argv[1], Path(argv[2])
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    run = GuardedRun(PluginOptions(telemetry=0, thermal=False), save_dir, torch.device("cpu"), rank=rank)
    with guarded(policy="bypass" if rank else "vendor", faults=False) as g:
        run.guard = g
        conv = nn.Conv2d(3, 4, 1)  # kept alive: the guard counts per live module
        for _ in range(3 if rank else 1):
            conv(torch.randn(1, 3, 4, 4))
        run.train_epoch_end()
        if rank == 0:
            m = run.epoch_metrics()
            print("RATE", m["rdna1/bypass_rate"], run.counters.epochs[-1]["calls"], run.counters.epochs[-1]["bypassed"])
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
