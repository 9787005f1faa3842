"""One background thread that samples a sensor reader, and the per-epoch metric columns.

Sensor reads can take milliseconds (amdsmi, an SMU query behind a hwmon file), which is too
much to spend between training batches; so the reads happen on a daemon thread and the training
loop only takes a lock to copy the latest sample or the epoch's summary.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Union

from .readers import Reader, SensorReading

__all__ = ["METRIC_KEYS", "UNAVAILABLE", "TelemetrySampler", "window_metrics"]

log = logging.getLogger(__name__)

#: The value of a metric whose sensor does not exist or never answered. A number, because
#: Ultralytics writes results.csv rows positionally and cannot read back a NaN/None column;
#: -1 because no temperature, power or busy share that a GPU under load reports is negative.
UNAVAILABLE = -1.0

#: The per-epoch telemetry columns, in results.csv order; every epoch has all of them.
METRIC_KEYS: tuple[str, ...] = (
    "rdna1/temp_edge_max",
    "rdna1/temp_junction_max",
    "rdna1/temp_mem_max",
    "rdna1/power_mean_w",
    "rdna1/busy_mean",
    "rdna1/thermal_pause_s",
)

WindowValue = Union[float, int, None]


@dataclass
class _Window:
    """Running maxima and sums since the last reset; a field never seen stays None."""

    samples: int = 0
    edge_max: float | None = None
    junction_max: float | None = None
    mem_max: float | None = None
    power_sum: float = 0.0
    power_n: int = 0
    busy_sum: float = 0.0
    busy_n: int = 0

    def add(self, r: SensorReading) -> None:
        self.samples += 1
        self.edge_max = _max(self.edge_max, r.edge_c)
        self.junction_max = _max(self.junction_max, r.junction_c)
        self.mem_max = _max(self.mem_max, r.mem_c)
        if r.power_w is not None:
            self.power_sum += r.power_w
            self.power_n += 1
        if r.busy_pct is not None:
            self.busy_sum += r.busy_pct
            self.busy_n += 1

    def summary(self) -> dict[str, WindowValue]:
        return {
            "temp_edge_max": self.edge_max,
            "temp_junction_max": self.junction_max,
            "temp_mem_max": self.mem_max,
            "power_mean_w": self.power_sum / self.power_n if self.power_n else None,
            "busy_mean": self.busy_sum / self.busy_n if self.busy_n else None,
            "samples": self.samples,
        }


def _max(a: float | None, b: float | None) -> float | None:
    if b is None:
        return a
    return b if a is None else max(a, b)


class TelemetrySampler:
    """Samples ``reader`` every ``interval`` seconds on one daemon thread.

    ``window()`` summarises the samples since ``reset_window()`` (called at each epoch start):
    maxima of the three temperatures, because heat damage and throttling follow peaks, and means
    of power and busy, because those describe the epoch's work. All methods are thread-safe.
    Usable as a context manager (``with TelemetrySampler(r) as s: ...``) that starts and stops it.
    """

    def __init__(self, reader: Reader, interval: float = 1.0) -> None:
        if not interval > 0:
            raise ValueError(f"telemetry interval must be > 0 seconds, got {interval!r}")
        self.reader = reader
        self.interval = float(interval)
        self._lock = threading.Lock()
        self._latest = SensorReading()
        self._window = _Window()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TelemetrySampler:
        """Start sampling (the first sample is taken at once); a running sampler is left as is."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="yolo_rdna1-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and join the thread.

        The join waits at most one interval plus a few seconds: a sensor read stuck in the
        driver (it happens when the GPU itself hangs) must not keep training from ending, and
        the thread is a daemon, so it cannot keep the process alive either.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.interval + 5.0)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def _sample(self) -> None:
        try:
            reading = self.reader.read()
        except Exception as e:  # noqa: BLE001 - readers should not raise; a bad one must not kill the thread
            log.debug("sensor read failed: %s", e)
            return
        with self._lock:
            self._latest = reading
            self._window.add(reading)

    def latest(self) -> SensorReading:
        """The most recent sample (all None before the first one)."""
        with self._lock:
            return self._latest

    def window(self) -> dict[str, WindowValue]:
        """Summary since the last ``reset_window()``: ``temp_*_max``, ``power_mean_w``, ``busy_mean``, ``samples``.

        An epoch shorter than one interval has no sample of its own; it is then summarised by
        the latest sample, the best estimate there is, rather than reported as unavailable
        (``samples`` stays 0, so a reader can tell).
        """
        with self._lock:
            if self._window.samples:
                return self._window.summary()
            fallback = _Window()
            fallback.add(self._latest)
            summary = fallback.summary()
        summary["samples"] = 0
        return summary

    def reset_window(self) -> None:
        """Start a new summary window (each epoch start)."""
        with self._lock:
            self._window = _Window()

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _metric(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return UNAVAILABLE
    return float(value)


def window_metrics(window: dict[str, WindowValue], thermal_pause_s: float) -> dict[str, float]:
    """The per-epoch telemetry columns: every key of :data:`METRIC_KEYS`, each a finite float.

    ``window`` is :meth:`TelemetrySampler.window` (``{}`` when no sampler runs); a missing,
    None or non-finite value becomes :data:`UNAVAILABLE`. ``thermal_pause_s`` is the time the
    thermal guard paused training this epoch.
    """
    out = {key: _metric(window.get(key.split("/", 1)[1])) for key in METRIC_KEYS[:-1]}
    pause = _metric(thermal_pause_s)
    out["rdna1/thermal_pause_s"] = pause if pause >= 0 else 0.0
    return out
