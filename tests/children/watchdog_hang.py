"""Child program of tests/supervision/test_watchdog.py: a guarded conv that hangs under a watchdog.

    python tests/children/watchdog_hang.py FAULT_PROFILE BREADCRUMB_STEM LOG TIMEOUT_S

Three heartbeats after fine 1x1 convs, then a 3x3 conv that the fault profile hangs: the
watchdog must end the process with its own exit code and log which conv hung.
"""

from __future__ import annotations

import sys

import torch
import torch.nn as nn

from yolo_rdna1.guard import ConvGuard, enable
from yolo_rdna1.supervision import StallWatchdog
from yolo_rdna1.verdicts.breadcrumb import Breadcrumb


def main(argv: list[str]) -> int:
    """Never returns normally: the watchdog ends the process."""
    profile, stem, log, timeout = argv
    enable(ConvGuard(policy="auto", faults=profile, breadcrumb=Breadcrumb(stem)))
    dog = StallWatchdog(timeout=float(timeout), log_path=log, breadcrumb_stem=stem).start()
    conv = nn.Conv2d(4, 4, 3, padding=1)
    for _ in range(3):
        nn.Conv2d(4, 4, 1)(torch.randn(1, 4, 8, 8))  # fine: a 1x1 conv
        dog.beat()
    conv(torch.randn(1, 4, 8, 8))  # hangs forever
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
