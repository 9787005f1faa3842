"""Long runs that finish: the stall watchdog, the supervisor and the run journal."""

from .supervisor import RestartPolicy, SupervisorError, classify, supervise
from .watchdog import DEFAULT_STALL_TIMEOUT, STALL_EXIT_CODE, StallWatchdog

__all__ = ["DEFAULT_STALL_TIMEOUT", "STALL_EXIT_CODE", "RestartPolicy", "StallWatchdog", "SupervisorError", "classify", "supervise"]
