"""The stall watchdog ends a hung process with its own exit code and says which conv hung."""

import time

import pytest
import yaml

from yolo_rdna1.supervision import STALL_EXIT_CODE, StallWatchdog
from yolo_rdna1.verdicts.breadcrumb import in_flight


def test_a_simulated_conv_hang_is_ended_and_attributed(tmp_path, run_child_file):
    prof = tmp_path / "hang.yaml"
    prof.write_text(
        yaml.safe_dump({"name": "h", "rules": [{"match": {"kernel": 3}, "direction": "fwd", "effect": "hang"}]})
    )
    stem, log = tmp_path / "crumb", tmp_path / "run.log"
    t = time.monotonic()
    r = run_child_file("watchdog_hang", prof, stem, log, 2.0, timeout=60)
    elapsed = time.monotonic() - t
    assert r.returncode == STALL_EXIT_CODE, r.stderr[-2000:]
    assert elapsed < 2.0 + 10 + 10  # stall_timeout + 10 s, plus interpreter start-up
    text = log.read_text()
    assert "no finished batch" in text and ":k3x3:" in text and "fwd" in text
    assert "Thread" in text and "raise_or_block" in text, "every thread's stack is in the log"
    key, cause = in_flight(stem)
    assert cause == "hang" and ":c4>4:k3x3:" in key


def test_heartbeats_keep_it_quiet():
    now = [0.0]
    exits = []
    dog = StallWatchdog(timeout=10, clock=lambda: now[0], exit=exits.append)
    for _ in range(5):
        now[0] += 9
        dog.beat()
    assert not dog.fired and not exits
    dog.fire(now[0])
    assert exits == [STALL_EXIT_CODE]


def test_nonsense_timeout_is_rejected():
    with pytest.raises(ValueError, match="stall_timeout must be > 0"):
        StallWatchdog(timeout=0)
