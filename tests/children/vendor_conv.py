"""Child program of tests/faults/test_fault_effects.py: one conv on the vendor route under the fault simulator.

    YOLO_RDNA1_FAULTS=PROFILE python tests/children/vendor_conv.py [--alarm]

Prints ``calling`` before a 3x3 conv on 48x48 maps (guard policy ``vendor``) and ``returned``
after it. ``--alarm`` arms a Python-level timeout (SIGALRM in 1 s raising ``TimeoutError``) right
before the call: a simulated hang must not be ended by it.
"""

from __future__ import annotations

import signal
import sys

import torch
import torch.nn as nn

import yolo_rdna1


def timeout(signum: int, frame: object) -> None:
    """What a Python-level timeout does: raise in the main thread."""
    raise TimeoutError("python-level timeout")


def main(argv: list[str]) -> int:
    """0 when the conv returned."""
    if argv not in ([], ["--alarm"]):
        raise SystemExit(f"unknown arguments {argv}")
    conv = nn.Conv2d(16, 32, 3, padding=1)
    x = torch.randn(2, 16, 48, 48)
    with yolo_rdna1.guarded(policy="vendor"):
        print("calling", flush=True)
        if argv:
            signal.signal(signal.SIGALRM, timeout)
            signal.alarm(1)
        conv(x)
    print("returned", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
