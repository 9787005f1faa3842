"""Child program of tests/callbacks/test_lifecycle.py: val, predict and export of a trained model under the plugin.

    python tests/children/guarded_calls.py CONFIG_JSON [all|val|predict|export]

CONFIG_JSON holds ``model`` (a checkpoint), ``data`` (its data.yaml), ``images`` (a folder to
predict), ``out`` (the project folder of the val runs) and ``options`` (for ``add_callbacks``).
val runs at 64 px (the training's size, tagged ``val64``) and at 192 px (``val``), predict and
export at 192 px, where gfx1010 hangs 3x3 convs on 48 px maps. After each call one line
``RESULT <json>`` holds ``last_run().as_dict()`` with ``tag`` and ``patched`` (whether the guard
stayed on); predict also prints ``IMAGES <count>``, export ``EXPORTED <path>``.

A watcher thread reports a simulated hang at once instead of a timeout: when the main thread is
blocked in the fault simulator it prints ``HUNG <main thread's stack>`` and exits with
``HANG_EXIT``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

HANG_EXIT = 42


def watch_for_hangs() -> None:
    """Exit with HANG_EXIT as soon as the main thread is inside the simulator's hang."""
    main_id = threading.main_thread().ident
    while True:
        time.sleep(0.2)
        frame = sys._current_frames().get(main_id)
        stack = []
        while frame is not None:
            stack.append(frame.f_code.co_name)
            frame = frame.f_back
        if "raise_or_block" in stack:
            print("HUNG " + "".join(traceback.format_stack(sys._current_frames()[main_id])), flush=True)
            os._exit(HANG_EXIT)


def main(argv: list[str]) -> int:
    """0 when every call asked for finished."""
    threading.Thread(target=watch_for_hangs, daemon=True).start()
    from ultralytics import YOLO

    import yolo_rdna1
    from yolo_rdna1.callbacks import last_run
    from yolo_rdna1.guard import is_patched

    config = json.loads(argv[0])
    kind = argv[1] if len(argv) > 1 else "all"
    data, out = config["data"], config["out"]
    model = yolo_rdna1.add_callbacks(YOLO(config["model"]), **config["options"])

    def report(tag: str) -> None:
        print("RESULT " + json.dumps({"tag": tag, "patched": is_patched(), **last_run().as_dict()}), flush=True)

    if kind in ("all", "val"):
        for tag, imgsz in (("val64", 64), ("val", 192)):
            model.val(data=data, imgsz=imgsz, batch=8, plots=False, verbose=False, project=out, name=tag, exist_ok=True)
            report(tag)
    if kind in ("all", "predict"):
        results = model.predict(config["images"], imgsz=192, verbose=False)
        report("predict")
        print("IMAGES", len(results), flush=True)
    if kind in ("all", "export"):
        print("EXPORTED", model.export(format="torchscript", imgsz=192), flush=True)
        report("export")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
