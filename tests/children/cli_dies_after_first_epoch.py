"""Child program of tests/callbacks/test_entry_points.py: ``yolo-rdna1`` that dies after epoch 1.

    python tests/children/cli_dies_after_first_epoch.py ARGS...

Runs the CLI with ARGS (e.g. ``train model=... data=...``); the process ends with exit code 3
right after the first epoch's checkpoint is saved, as a crash would, so ``resume=True`` has to
finish the training.
"""

from __future__ import annotations

import os
import sys

from ultralytics.engine.trainer import BaseTrainer

from yolo_rdna1.cli import main

DIED = 3

_save_model = BaseTrainer.save_model


def save_then_die(self: BaseTrainer) -> None:
    """Ultralytics' own save, then an exit with no cleanup once epoch 0's checkpoint is on disk."""
    _save_model(self)
    if self.epoch == 0:
        os._exit(DIED)


if __name__ == "__main__":
    BaseTrainer.save_model = save_then_die
    sys.exit(main(sys.argv[1:]))
