"""Child program of tests/supervision/test_kill_resume.py: the supervised trainer, with a SIGKILL
armed at the next unused moment of a kill plan.

    python tests/children/kill_harness.py -m yolo_rdna1.supervision.child ARGS...

Stands in for ``python`` (a wrapper script execs it): it reads the plan from the JSON file named
by ``KILL_PLAN``, appends the moment it arms to ``<plan>.used``, then runs
``yolo_rdna1.supervision.child`` with ARGS as the supervisor asked. A moment is one of
``{"kind": "train", "after": N, "call": M}`` (inside the forward of a training batch: at module
call M after N real batches), ``{"kind": "val"}`` (the first validation batch), ``{"kind":
"fsync", "write": N}`` (the N-th mid.pt written to its temp file, not renamed yet) and
``{"kind": "replace", "write": N}`` (the N-th mid.pt renamed into place, not journaled yet).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
from pathlib import Path


def die() -> None:
    """SIGKILL to this process: no handler, no cleanup, as the OOM killer or a driver reset does."""
    os.kill(os.getpid(), signal.SIGKILL)


def arm_train(moment: dict) -> None:
    """Die at module call ``call`` of the batch after ``after`` real batches."""
    import torch
    from ultralytics.utils.callbacks import base

    state = {"real": 0, "calls": 0, "inside": False}

    def start(trainer) -> None:
        state.update(inside=True, calls=0)

    def end(trainer) -> None:
        state["inside"] = False
        state["real"] += state["calls"] > 1  # a placeholder batch calls the model once, no layer

    def hook(module, args) -> None:
        if state["inside"]:
            state["calls"] += 1
            if state["real"] >= moment["after"] and state["calls"] == moment["call"]:
                die()

    base.default_callbacks["on_train_batch_start"].append(start)
    base.default_callbacks["on_train_batch_end"].append(end)
    torch.nn.modules.module.register_module_forward_pre_hook(hook)


def arm_fsync(moment: dict) -> None:
    """Die right after the ``write``-th fsync of a mid.pt temp file (written, not renamed)."""
    real, count = os.fsync, [0]

    def fsync(fd: int) -> None:
        real(fd)
        if ".mid.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            count[0] += 1
            if count[0] == moment["write"]:
                die()

    os.fsync = fsync


def arm_replace(moment: dict) -> None:
    """Die right after the ``write``-th rename of a temp file onto mid.pt (not journaled yet)."""
    real, count = os.replace, [0]

    def replace(src, dst) -> None:
        real(src, dst)
        if str(dst).endswith("mid.pt") and str(src).endswith(".tmp"):
            count[0] += 1
            if count[0] == moment["write"]:
                die()

    os.replace = replace


def arm(moment: dict) -> None:
    """Arm one moment of the plan in this process."""
    if moment["kind"] == "train":
        arm_train(moment)
    elif moment["kind"] == "val":
        from ultralytics.utils.callbacks import base

        base.default_callbacks["on_val_batch_start"].append(lambda validator: die())
    elif moment["kind"] == "fsync":
        arm_fsync(moment)
    elif moment["kind"] == "replace":
        arm_replace(moment)
    else:
        raise ValueError(f"unknown moment {moment}")


def main(argv: list[str]) -> int:
    """Arms the next moment (if any is left), then runs the training child with ``argv[2:]``."""
    signal.alarm(300)  # a child that hangs for any reason still ends
    plan_file = Path(os.environ["KILL_PLAN"])
    used = plan_file.with_suffix(".used")
    n = len(used.read_text().splitlines()) if used.exists() else 0
    plan = json.loads(plan_file.read_text())
    if n < len(plan):
        with open(used, "a") as f:
            f.write(json.dumps(plan[n]) + "\n")
        arm(plan[n])
    sys.argv = [sys.argv[0], *argv[2:]]  # drop "-m yolo_rdna1.supervision.child"
    runpy.run_module("yolo_rdna1.supervision.child", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
