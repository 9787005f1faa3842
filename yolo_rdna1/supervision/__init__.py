"""Long runs that finish: the stall watchdog, the supervisor and the run journal.

Names are imported lazily: ``yolo-rdna1 report`` reads the journal without paying for torch,
which the supervisor's checkpoint code imports.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RestartPolicy": "supervisor",
    "SupervisorError": "supervisor",
    "classify": "supervisor",
    "supervise": "supervisor",
    "DEFAULT_STALL_TIMEOUT": "watchdog",
    "STALL_EXIT_CODE": "watchdog",
    "StallWatchdog": "watchdog",
}

__all__ = [
    "DEFAULT_STALL_TIMEOUT",
    "STALL_EXIT_CODE",
    "RestartPolicy",
    "StallWatchdog",
    "SupervisorError",
    "classify",
    "supervise",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
