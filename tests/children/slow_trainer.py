"""Child program of tests/supervision/test_kill_resume.py: a supervised trainer that says when it
started and takes at least 0.5 s a batch.

    python tests/children/slow_trainer.py -m yolo_rdna1.supervision.child ARGS...

Stands in for ``python`` (a wrapper script execs it): appends ``<pid> <start time>`` to the file
named by ``TRAINERS``, then runs ``yolo_rdna1.supervision.child`` with ARGS as the supervisor
asked, sleeping 0.5 s after every batch.
"""

from __future__ import annotations

import os
import runpy
import sys
import time

from ultralytics.utils.callbacks import base


def main(argv: list[str]) -> int:
    """Registers this trainer, slows its batches, runs the training child with ``argv[2:]``."""
    with open(os.environ["TRAINERS"], "a") as f:
        f.write(f"{os.getpid()} {time.time()}\n")
    base.default_callbacks["on_train_batch_end"].append(lambda trainer: time.sleep(0.5))
    sys.argv = [sys.argv[0], *argv[2:]]  # drop "-m yolo_rdna1.supervision.child"
    runpy.run_module("yolo_rdna1.supervision.child", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
