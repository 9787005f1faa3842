"""Child program of tests/callbacks/test_entry_points.py: a training through ``add_callbacks``.

    python tests/children/train_add_callbacks.py MODEL PLUGIN_JSON TRAIN_JSON

Builds ``YOLO(MODEL)``, adds the plugin's callbacks with the options PLUGIN_JSON, then runs
``model.train(**TRAIN_JSON)`` as a user's own script would.
"""

from __future__ import annotations

import json
import sys

from ultralytics import YOLO

import yolo_rdna1


def main(argv: list[str]) -> int:
    """0 when the training finished."""
    model, plugin, train = argv
    yolo_rdna1.add_callbacks(YOLO(model), **json.loads(plugin)).train(**json.loads(train))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
