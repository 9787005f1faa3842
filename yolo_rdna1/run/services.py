"""What runs beside a guarded training: telemetry, the thermal pause, the stall watchdog, and the
serial backward. Each is started when its option asks for it and stopped by :meth:`close` (an
``ExitStack``, so one that fails to stop never keeps the others running)."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .._compat import set_autograd_multithreading
from ..options import PluginOptions
from ..runfiles import WATCHDOG_LOG, breadcrumb_stem


class RunServices:
    """The sampler, thermal guard, watchdog and serial-backward switch of one training process."""

    def __init__(self, options: PluginOptions, save_dir: Path, rank: int = -1) -> None:
        self.options = options
        self.save_dir = save_dir
        self.rank = rank
        self.sampler: Any = None
        self.thermal: Any = None
        self.watchdog: Any = None
        self.telemetry_source = "none"
        self._serial = False
        self._stack = ExitStack()

    def start_telemetry(self, info: Any) -> None:
        """Sensors of ``info``'s card (a ``DeviceInfo``), sampled in the background; the thermal pause."""
        from ..telemetry import TelemetrySampler, open_reader
        from ..telemetry.thermal import ThermalGuard, default_limits

        opts = self.options
        reader = open_reader(info)
        self.telemetry_source = getattr(reader, "source", "none")
        if opts.telemetry > 0:
            self.sampler = TelemetrySampler(reader, interval=float(opts.telemetry))
            self.sampler.start()
            self._stack.callback(self._stop_sampler)
        if opts.thermal:
            limit, resume = default_limits(info)
            limit = opts.thermal_limit if opts.thermal_limit is not None else limit
            resume = opts.thermal_resume if opts.thermal_resume is not None else min(resume, limit - 5)
            read = self.sampler.latest if self.sampler is not None else reader.read
            self.thermal = ThermalGuard(limit, resume, read)

    def enter_training(self, guarded: bool) -> None:
        """Training batches begin: the watchdog starts and (``serial_backward``, with a guard on)
        this thread's backward calls stay on this thread."""
        if self.options.serial_backward and guarded and not self._serial:
            prev = set_autograd_multithreading(False)
            if prev is not None:
                self._serial = True
                self._stack.callback(self._restore_backward, threading.get_ident(), prev)
        if self.options.stall_timeout and self.watchdog is None:
            from ..supervision import StallWatchdog

            stem = breadcrumb_stem(self.save_dir, self.rank)
            self.watchdog = StallWatchdog(self.options.stall_timeout, self.save_dir / WATCHDOG_LOG, stem).start()
            self._stack.callback(self._stop_watchdog)

    def heartbeat(self) -> None:
        if self.watchdog is not None:
            self.watchdog.beat()

    def check_heat(self) -> None:
        """Pause here (between batches) while the card is too hot."""
        if self.thermal is not None:
            self.thermal.check()

    def take_paused(self) -> float:
        """Seconds paused for heat since the last call."""
        return self.thermal.take_paused() if self.thermal is not None else 0.0

    def window(self) -> dict[str, Any]:
        """The sensor readings of this epoch so far (empty without a sampler)."""
        return self.sampler.window() if self.sampler is not None else {}

    def reset_window(self) -> None:
        if self.sampler is not None:
            self.sampler.reset_window()

    def close(self) -> None:
        """Stop everything started, in reverse order."""
        self._stack.close()

    def _stop_sampler(self) -> None:
        self.sampler.stop()
        self.sampler = None

    def _stop_watchdog(self) -> None:
        self.watchdog.stop()
        self.watchdog = None

    @staticmethod
    def _restore_backward(thread: int, prev: bool) -> None:
        if thread == threading.get_ident():  # the flag is per thread
            set_autograd_multithreading(prev)
