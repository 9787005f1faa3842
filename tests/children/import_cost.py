"""Child program of tests/test_device.py and tests/test_packaging.py: what importing the plugin costs.

    python tests/children/import_cost.py device
    python tests/children/import_cost.py package

``device`` imports ``yolo_rdna1.device`` and describes the CPU, printing whether Ultralytics was
imported after the import and after ``describe_device``. ``package`` imports torch and
Ultralytics first, then times ``import yolo_rdna1`` and prints the plugin modules it pulled in
(a list's repr) and the seconds it took.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    """0 after printing one line."""
    (what,) = argv
    if what == "device":
        import yolo_rdna1.device as device

        after_import = "ultralytics" in sys.modules
        device.describe_device("cpu")
        print(after_import, "ultralytics" in sys.modules)
    elif what == "package":
        import torch  # noqa: F401 - loaded first: only the plugin's own import is timed
        import ultralytics  # noqa: F401

        t = time.perf_counter()
        import yolo_rdna1  # noqa: F401

        dt = time.perf_counter() - t
        heavy = sorted(m for m in sys.modules if m.startswith("yolo_rdna1."))
        print(repr(heavy), dt)
    else:
        raise SystemExit(f"unknown import check {what!r}: device or package")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
