"""TelemetrySampler, window_metrics and ThermalGuard with scripted sensors and a fake clock.

Sampler tests run the real thread at a 10 ms interval and wait on events, then assert on values
only (never on how many samples fit in some time). ThermalGuard gets a fake sleep/clock, so a
"20 s pause" takes no time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable

import pytest
import torch

from yolo_rdna1.device import DeviceInfo
from yolo_rdna1.telemetry import METRIC_KEYS, UNAVAILABLE, SensorReading, TelemetrySampler, window_metrics
from yolo_rdna1.telemetry.thermal import ThermalGuard, default_limits

WAIT_S = 10.0  # generous: only a hung thread would take this long


class ScriptedReader:
    """Returns the scripted readings in order, then ``tail`` forever; ``done`` once all were read."""

    source = "scripted"

    def __init__(self, script: list[SensorReading], tail: SensorReading | None = None) -> None:
        self.script = list(script)
        self.tail = SensorReading() if tail is None else tail
        self.done = threading.Event()
        self.reads = 0

    def read(self) -> SensorReading:
        self.reads += 1
        if self.script:
            r = self.script.pop(0)
            if not self.script:
                self.done.set()
            return r
        self.done.set()
        return self.tail


def _wait_until(predicate: Callable[[], bool]) -> bool:
    """Poll ``predicate`` every 5 ms for up to WAIT_S; whether it became true."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _no_sampler_threads() -> bool:
    return not any(t.name == "yolo_rdna1-telemetry" and t.is_alive() for t in threading.enumerate())


# -- sampler ----------------------------------------------------------------------------------


def test_window_maxima_and_means() -> None:
    reader = ScriptedReader(
        [
            SensorReading(50.0, 60.0, 70.0, 100.0, 90.0),
            SensorReading(55.0, 65.0, None, 200.0, None),
            SensorReading(52.0, None, 72.0, None, 80.0),
        ]
    )
    sampler = TelemetrySampler(reader, interval=0.01).start()
    assert reader.done.wait(WAIT_S)
    sampler.stop()
    w = sampler.window()
    assert w["temp_edge_max"] == 55.0
    assert w["temp_junction_max"] == 65.0
    assert w["temp_mem_max"] == 72.0
    assert w["power_mean_w"] == pytest.approx(150.0)  # None samples do not count in a mean
    assert w["busy_mean"] == pytest.approx(85.0)
    assert w["samples"] >= 3
    assert _no_sampler_threads()


def test_reset_window_starts_a_new_epoch() -> None:
    hot, cool = SensorReading(80.0, 95.0, 70.0, 180.0, 99.0), SensorReading(40.0, 45.0, 42.0, 30.0, 5.0)
    reader = ScriptedReader([hot], tail=cool)
    with TelemetrySampler(reader, interval=0.01) as sampler:
        # Reads are sequential: once read n+1 has begun, sample n is in the window.
        assert _wait_until(lambda: reader.reads >= 2)
        sampler.reset_window()
        reads = reader.reads
        assert _wait_until(lambda: reader.reads >= reads + 2)
    w = sampler.window()
    assert (w["temp_edge_max"], w["temp_junction_max"], w["power_mean_w"]) == (40.0, 45.0, 30.0)
    assert sampler.latest() == cool
    assert _no_sampler_threads()


def test_window_without_own_samples_uses_latest() -> None:
    reading = SensorReading(61.0, 71.0, None, 120.0, 97.0)
    reader = ScriptedReader([reading], tail=reading)
    sampler = TelemetrySampler(reader, interval=0.01).start()
    assert reader.done.wait(WAIT_S)
    sampler.stop()
    sampler.reset_window()
    w = sampler.window()
    assert (w["temp_edge_max"], w["temp_junction_max"], w["temp_mem_max"], w["power_mean_w"], w["busy_mean"]) == (
        61.0,
        71.0,
        None,
        120.0,
        97.0,
    )
    assert w["samples"] == 0


def test_fresh_sampler_and_null_sensor_give_sentinels() -> None:
    sampler = TelemetrySampler(ScriptedReader([]), interval=0.01)
    assert sampler.latest() == SensorReading()
    metrics = window_metrics(sampler.window(), 0.0)
    assert all(metrics[k] == UNAVAILABLE for k in METRIC_KEYS[:-1])


def test_a_raising_reader_does_not_kill_the_thread() -> None:
    class Flaky:
        source = "flaky"

        def __init__(self) -> None:
            self.calls = 0
            self.ok = threading.Event()

        def read(self) -> SensorReading:
            self.calls += 1
            if self.calls < 3:
                raise OSError("sensor gone for a moment")
            self.ok.set()
            return SensorReading(edge_c=50.0)

    reader = Flaky()
    with TelemetrySampler(reader, interval=0.01) as sampler:
        assert reader.ok.wait(WAIT_S)
    assert sampler.latest().edge_c == 50.0


def test_start_twice_is_one_thread_and_bad_interval_rejected() -> None:
    sampler = TelemetrySampler(ScriptedReader([]), interval=0.01)
    sampler.start()
    sampler.start()
    assert sum(t.name == "yolo_rdna1-telemetry" for t in threading.enumerate()) == 1
    sampler.stop()
    sampler.stop()
    assert _no_sampler_threads()
    with pytest.raises(ValueError, match="interval"):
        TelemetrySampler(ScriptedReader([]), interval=0)


# -- window_metrics ---------------------------------------------------------------------------


def test_window_metrics_always_all_keys_numeric() -> None:
    full = {
        "temp_edge_max": 73.0,
        "temp_junction_max": 83.0,
        "temp_mem_max": 70,
        "power_mean_w": 150.5,
        "busy_mean": 98.0,
        "samples": 9,
    }
    assert window_metrics(full, 12.5) == {
        "rdna1/temp_edge_max": 73.0,
        "rdna1/temp_junction_max": 83.0,
        "rdna1/temp_mem_max": 70.0,
        "rdna1/power_mean_w": 150.5,
        "rdna1/busy_mean": 98.0,
        "rdna1/thermal_pause_s": 12.5,
    }
    for window in (
        {},
        {"temp_edge_max": None, "temp_junction_max": float("nan"), "power_mean_w": float("inf"), "busy_mean": "n/a"},
    ):
        m = window_metrics(window, 0.0)
        assert tuple(m) == METRIC_KEYS
        assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
        assert [m[k] for k in METRIC_KEYS[:-1]] == [UNAVAILABLE] * 5
        assert m["rdna1/thermal_pause_s"] == 0.0
    assert window_metrics({}, float("nan"))["rdna1/thermal_pause_s"] == 0.0


# -- thermal guard ----------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def junction(*temps: float | None) -> ScriptedReader:
    return ScriptedReader([SensorReading(edge_c=50.0, junction_c=t) for t in temps])


LOG = logging.getLogger("test_thermal_guard")


def guard(
    reader: ScriptedReader, t: FakeTime, limit: float | None = 95.0, resume: float | None = 85.0, **kw
) -> ThermalGuard:
    return ThermalGuard(limit, resume, reader.read, poll_s=5.0, sleep=t.sleep, clock=t.clock, log=LOG, **kw)


def test_pauses_when_hot_and_resumes_only_below_hysteresis(caplog) -> None:
    t = FakeTime()
    polls: list[float] = []
    g = guard(junction(96.0, 97.0, 90.0, 86.0, 85.0), t, on_poll=lambda: polls.append(t.now))
    with caplog.at_level(logging.INFO, logger=LOG.name):
        paused = g.check()
    # 90 and 86 are below the limit but above resume: still paused until 85.
    assert paused == 20.0 and t.sleeps == [5.0] * 4 and len(polls) == 4
    assert g.paused_s == 20.0
    text = caplog.text
    assert "junction temperature 96 C >= limit 95 C" in text and "resuming training after a 20 s pause" in text


def test_cool_or_just_below_limit_does_not_pause() -> None:
    t = FakeTime()
    g = guard(junction(94.9, 60.0), t)
    assert g.check() == 0.0 and g.check() == 0.0
    assert t.sleeps == [] and g.take_paused() == 0.0


def test_edge_is_used_without_junction_sensor() -> None:
    t = FakeTime()
    reader = ScriptedReader([SensorReading(edge_c=88.0), SensorReading(edge_c=79.0)])
    g = ThermalGuard(87.0, 80.0, reader.read, poll_s=2.0, sleep=t.sleep, clock=t.clock, log=LOG)
    assert g.check() == 2.0


def test_no_sensor_never_pauses() -> None:
    t = FakeTime()
    g = guard(ScriptedReader([SensorReading()] * 3), t)
    assert g.check() == 0.0 and t.sleeps == []

    def broken() -> SensorReading:
        raise RuntimeError("no sensor")

    g2 = ThermalGuard(95.0, 85.0, broken, sleep=t.sleep, clock=t.clock, log=LOG)
    assert g2.check() == 0.0 and t.sleeps == []


def test_sensor_lost_during_pause_resumes() -> None:
    t = FakeTime()
    g = guard(junction(99.0, 98.0, None), t)
    assert g.check() == 10.0


def test_limit_none_turns_the_guard_off() -> None:
    def never() -> SensorReading:
        raise AssertionError("an off guard must not read sensors")

    g = ThermalGuard(None, None, never)
    assert not g.enabled and g.check() == 0.0 and g.take_paused() == 0.0


def test_take_paused_sums_the_epoch_and_zeroes() -> None:
    t = FakeTime()
    g = guard(junction(96.0, 80.0, 70.0, 97.0, 90.0, 84.0), t)
    assert g.check() == 5.0
    assert g.check() == 0.0
    assert g.check() == 10.0
    assert g.take_paused() == 15.0
    assert g.take_paused() == 0.0 and g.paused_s == 0.0


def test_guard_reads_through_a_sampler() -> None:
    class Switch:
        source = "switch"

        def __init__(self) -> None:
            self.hot = True
            self.reads = 0

        def read(self) -> SensorReading:
            self.reads += 1
            return SensorReading(junction_c=99.0 if self.hot else 70.0)

    sensor, t = Switch(), FakeTime()

    def sleep(s: float) -> None:  # the card cools while the guard sleeps; the sampler sees it
        t.sleep(s)
        sensor.hot = False
        reads = sensor.reads
        assert _wait_until(lambda: sensor.reads >= reads + 2)

    with TelemetrySampler(sensor, interval=0.01) as sampler:
        assert _wait_until(lambda: sampler.latest().junction_c == 99.0)
        g = ThermalGuard(95.0, 85.0, sampler.latest, poll_s=5.0, sleep=sleep, clock=t.clock, log=LOG)
        assert g.check() == 5.0


@pytest.mark.parametrize("limit, resume", [(95.0, 95.0), (95.0, 96.0), (95.0, None)])
def test_resume_must_be_below_limit(limit: float, resume: float | None) -> None:
    with pytest.raises(ValueError, match="below the limit"):
        ThermalGuard(limit, resume, SensorReading)


def _info(backend: str) -> DeviceInfo:
    return DeviceInfo(backend, 0, "x", None, None, None, None, None, None, str(torch.__version__), None, None)


def test_default_limits_per_vendor() -> None:
    assert default_limits(_info("rocm")) == (95.0, 85.0)
    assert default_limits(_info("cuda")) == (87.0, 80.0)
    assert default_limits(_info("cpu")) == (90.0, 80.0)
    for backend in ("rocm", "cuda", "cpu", "mps"):
        limit, resume = default_limits(_info(backend))
        assert resume < limit
        assert 83.0 < limit or backend != "rocm"  # the person's 10-day 83 C junction must not trigger a pause
