"""Pause training between batches while the GPU is too hot, with hysteresis.

A multi-day run on a consumer card sits at its thermal limit for days; when a fan clogs or the
room warms up, the firmware throttles and then, past its critical point, the driver may reset the
GPU, which kills the run. Pausing between batches until the card has cooled costs minutes and
keeps the run alive. The pause is a plain sleep on the training thread: batches are the only
place where stopping leaves no work half done.

Resuming needs hysteresis (resume a few degrees *below* the limit): a card that resumes at the
limit heats up again within seconds and the run flaps between pause and work.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from .readers import SensorReading

if TYPE_CHECKING:
    from ..device import DeviceInfo

__all__ = ["ThermalGuard", "default_limits"]

logger = logging.getLogger("yolo_rdna1")


def default_limits(info: DeviceInfo) -> tuple[float, float]:
    """``(limit_c, resume_c)`` for the sensor the guard watches on this device.

    * AMD (ROCm), junction: RDNA1 firmware throttles at a 110 C junction (hotspot) temperature,
      and the person this project is for ran an RX 5600 XT at 83 C junction for 10 days without
      harm. 95 C stays clear of normal long-run operation and 15 C below throttling; resuming at
      85 C (10 C of hysteresis) is just above that normal operating point, so a pause ends once
      the card is back to how it ran for days. Newer AMD cards share the 110 C junction limit.
    * NVIDIA, core ("edge") temperature: boards start slowing down around 90 C (the "GPU
      Slowdown Temp" in ``nvidia-smi -q`` is 88-93 C depending on the board), so 87 C acts before
      the firmware does and 80 C resumes with 7 C of hysteresis.
    * Anything else: a conservative 90 C / 80 C.
    """
    if info.backend == "rocm":
        return 95.0, 85.0
    if info.backend == "cuda":
        return 87.0, 80.0
    return 90.0, 80.0


class ThermalGuard:
    """``check()`` between batches: returns at once when cool, sleeps while hot.

    The watched temperature is junction, or edge when the device has no junction sensor (NVIDIA,
    some APUs). ``limit_c=None`` turns the guard off. ``read`` should be cheap (the sampler's
    ``latest``): it is called after every batch. ``on_poll`` is called after every poll while
    paused, so a stall watchdog can be told the process is alive while it waits on purpose.
    """

    def __init__(
        self,
        limit_c: float | None,
        resume_c: float | None,
        read: Callable[[], SensorReading],
        poll_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger = logger,
        on_poll: Callable[[], None] | None = None,
    ) -> None:
        if limit_c is not None:
            if resume_c is None or not resume_c < limit_c:
                raise ValueError(
                    f"thermal resume temperature ({resume_c}) must be below the limit ({limit_c}): "
                    "without hysteresis training would flap between pausing and running"
                )
            if not poll_s > 0:
                raise ValueError(f"thermal poll interval must be > 0 seconds, got {poll_s!r}")
        self.limit_c = limit_c
        self.resume_c = resume_c
        self.poll_s = poll_s
        self.paused_s = 0.0
        self._read = read
        self._sleep = sleep
        self._clock = clock
        self._log = log
        self._on_poll = on_poll

    @property
    def enabled(self) -> bool:
        return self.limit_c is not None

    def _temperature(self) -> tuple[float | None, str]:
        """The watched temperature and its sensor name; (None, "") when there is none or reading failed."""
        try:
            r = self._read()
        except Exception as e:  # noqa: BLE001 - a broken sensor must not stop training
            self._log.debug("thermal guard: sensor read failed: %s", e)
            return None, ""
        if r.junction_c is not None:
            return r.junction_c, "junction"
        if r.edge_c is not None:
            return r.edge_c, "edge"
        return None, ""

    def check(self) -> float:
        """Pause while too hot; the seconds paused (0.0 when not hot, off, or without a sensor)."""
        if self.limit_c is None:
            return 0.0
        temp, sensor = self._temperature()
        if temp is None or temp < self.limit_c:
            return 0.0
        start = self._clock()
        self._log.warning(
            "yolo_rdna1: GPU %s temperature %.0f C >= limit %.0f C: pausing training until it is <= %.0f C",
            sensor,
            temp,
            self.limit_c,
            self.resume_c,
        )
        while True:
            self._sleep(self.poll_s)
            if self._on_poll is not None:
                self._on_poll()
            temp, sensor = self._temperature()
            if temp is None:
                self._log.warning(
                    "yolo_rdna1: GPU temperature sensor stopped answering during a thermal pause; resuming"
                )
                break
            if temp <= self.resume_c:
                break
        paused = max(0.0, self._clock() - start)
        self.paused_s += paused
        if temp is not None:
            self._log.info(
                "yolo_rdna1: GPU %s temperature %.0f C: resuming training after a %.0f s pause", sensor, temp, paused
            )
        return paused

    def take_paused(self) -> float:
        """Seconds paused since the last call (the epoch's ``rdna1/thermal_pause_s``), then zero."""
        paused, self.paused_s = self.paused_s, 0.0
        return paused
