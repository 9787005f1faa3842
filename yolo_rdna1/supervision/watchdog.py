"""The stall watchdog: turns a GPU hang inside the training process into a clean, known exit.

A thread stuck on a KFD queue never returns and cannot be joined, and a hang may hold the GIL.
So there are two layers:

* a Python thread that, after ``timeout`` seconds without a heartbeat, writes every thread's
  stack and the conv signature in flight (from the crash breadcrumb) to the run log, marks the
  breadcrumb as a hang, and ends the process with :data:`STALL_EXIT_CODE` via ``os._exit``;
* ``faulthandler.dump_traceback_later`` as a backstop, re-armed on every heartbeat: it runs in a
  C thread that needs no GIL, dumps the stacks and exits the process (code 1) ``grace`` seconds
  after the Python layer should have fired.

The supervisor reads the exit code and the log; the next start attributes the conv.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

from ..verdicts import breadcrumb as crumbs

LOGGER = logging.getLogger("yolo_rdna1")

#: Exit code of a process the watchdog ended; distinct from Python's 1 and signal deaths.
STALL_EXIT_CODE = 86

#: Default seconds without a finished batch before the process counts as hung. MIOpen's first
#: call of a new conv shape runs Find (kernel builds, benchmarking): on gfx101x, with no system
#: db, the first batch of a run can take many minutes; a later batch taking 20 minutes is not.
DEFAULT_STALL_TIMEOUT = 1200.0


class StallWatchdog:
    """``beat()`` after every batch; ``start()``/``stop()`` around training."""

    def __init__(
        self,
        timeout: float = DEFAULT_STALL_TIMEOUT,
        log_path: str | os.PathLike | None = None,
        breadcrumb_stem: str | os.PathLike | None = None,
        exit_code: int = STALL_EXIT_CODE,
        grace: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"stall_timeout must be > 0 seconds, got {timeout}")
        self.timeout = float(timeout)
        self.log_path = Path(log_path) if log_path else None
        self.breadcrumb_stem = Path(breadcrumb_stem) if breadcrumb_stem else None
        self.exit_code = exit_code
        self.grace = grace
        self._clock = clock
        self._exit = exit
        self._last = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log: TextIO | None = None
        self.fired = False

    def start(self) -> StallWatchdog:
        self._last = self._clock()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a")  # noqa: SIM115 - faulthandler needs a real file
        self._arm_backstop()
        self._thread = threading.Thread(target=self._watch, name="yolo_rdna1-watchdog", daemon=True)
        self._thread.start()
        return self

    def beat(self) -> None:
        """A batch finished: the process is alive."""
        self._last = self._clock()
        self._arm_backstop()

    def stop(self) -> None:
        self._stop.set()
        faulthandler.cancel_dump_traceback_later()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _arm_backstop(self) -> None:
        if self._log is not None:
            faulthandler.dump_traceback_later(self.timeout + self.grace, exit=True, file=self._log)

    def _watch(self) -> None:
        poll = min(5.0, self.timeout / 4)
        while not self._stop.wait(poll):
            stalled = self._clock() - self._last
            if stalled > self.timeout:
                self.fire(stalled)
                return

    def fire(self, stalled: float) -> None:
        """Record why and where, then end the process (a hung thread cannot be joined)."""
        self.fired = True
        in_flight = crumbs.in_flight(self.breadcrumb_stem) if self.breadcrumb_stem else None
        if self.breadcrumb_stem is not None:
            crumbs.mark_hang(self.breadcrumb_stem)
        message = (
            f"yolo_rdna1 watchdog: no finished batch for {stalled:.0f} s (stall_timeout "
            f"{self.timeout:.0f} s); conv in flight: {in_flight[0] if in_flight else 'none recorded'}; "
            f"ending the process with exit code {self.exit_code}"
        )
        LOGGER.error(message)
        if self._log is not None:
            self._log.write(f"\n{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self._log.flush()
            faulthandler.dump_traceback(file=self._log, all_threads=True)
            self._log.flush()
            os.fsync(self._log.fileno())
        self._exit(self.exit_code)
