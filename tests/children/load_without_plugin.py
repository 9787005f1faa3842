"""Child program of tests/guard/test_yolo_routing.py: a checkpoint trained under the guard loads and
runs where the plugin cannot be imported.

    python tests/children/load_without_plugin.py CHECKPOINT

Prints ``loaded <output shape> <yolo_rdna1 modules imported>``; the last must be ``[]``.
"""

from __future__ import annotations

import sys

sys.modules["yolo_rdna1"] = None  # any import of the plugin now fails

import torch  # noqa: E402 - after the plugin is made unimportable
from ultralytics import YOLO  # noqa: E402


def main(argv: list[str]) -> int:
    """Loads the checkpoint as a raw torch pickle and as a YOLO model, runs one forward pass."""
    (last,) = argv
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    model = (ckpt.get("ema") or ckpt["model"]).float().eval()  # strip_optimizer moved ema to model
    out = model(torch.rand(1, 3, 64, 64))
    YOLO(last)
    imported = [m for m, mod in sys.modules.items() if m.startswith("yolo_rdna1") and mod is not None]
    print("loaded", tuple(out[0].shape), imported)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
