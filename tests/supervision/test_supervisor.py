"""The supervisor restarts crashed or hung trainings, resumes them, and knows when to give up."""

import csv
import signal

import pytest
import yaml

from yolo_rdna1.supervision import RestartPolicy, STALL_EXIT_CODE, SupervisorError, classify, supervise
from yolo_rdna1.supervision import journal


def test_exit_causes_and_backoff():
    assert classify(0) == "ok" and classify(STALL_EXIT_CODE) == "hang" and classify(1) == "error"
    assert classify(-signal.SIGABRT) == "abort" and classify(-signal.SIGKILL) == "killed"
    assert classify(-signal.SIGSEGV) == "signal:SIGSEGV"
    p = RestartPolicy(backoff_s=10, backoff_max_s=60)
    assert [p.delay(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_refuses_to_overwrite_a_run_or_resume_nothing(tmp_path, synthetic_data):
    (tmp_path / "p" / "r" / "weights").mkdir(parents=True)
    (tmp_path / "p" / "r" / "weights" / "last.pt").write_bytes(b"x")
    with pytest.raises(SupervisorError, match="already holds a run"):
        supervise({"data": str(synthetic_data), "project": str(tmp_path / "p"), "name": "r"})
    with pytest.raises(SupervisorError, match="nothing to resume"):
        supervise({"data": str(synthetic_data), "project": str(tmp_path / "p"), "name": "new", "resume": True})
    assert (tmp_path / "p" / "r" / "weights" / "last.pt").read_bytes() == b"x"


def test_gives_up_when_the_same_failure_repeats_without_progress(tmp_path):
    kwargs = {"data": str(tmp_path / "missing.yaml"), "project": str(tmp_path / "p"), "name": "r", "telemetry": 0}
    with pytest.raises(SupervisorError, match="'error' 3 times at 0 completed epochs"):
        supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None)
    events = [e["event"] for e in journal.read(tmp_path / "p" / "r")]
    assert events.count("restart") == 3 and events[-1] == "end"


@pytest.mark.slow
def test_a_hang_the_probe_cannot_see_is_ended_attributed_and_the_run_finishes(synthetic_data, tmp_path):
    prof = tmp_path / "late-hang.yaml"
    # one signature (the train batches'): "after" counts the calls of every signature the rule matches
    rule = {"match": {"kernel": 3, "in_channels": 32, "out_channels": 32, "height": 8, "width": 8, "batch": 4}, "direction": "fwd",
            "effect": "hang", "after": 6}
    prof.write_text(yaml.safe_dump({"name": "late-hang", "rules": [rule]}))
    kwargs = dict(data=str(synthetic_data), epochs=2, imgsz=64, batch=4, device="cpu", workers=0, project=str(tmp_path / "p"),
                  name="r", faults=str(prof), cache=str(tmp_path / "cache"), stall_timeout=10, telemetry=0, plots=False,
                  prefer_faster=False)  # CPU timings must not move the signature to the bypass before it hangs
    run = supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None)
    events = list(journal.read(run))
    restarts = [e for e in events if e["event"] == "restart"]
    assert [e["cause"] for e in restarts] == ["hang"]
    attributed = [e for e in events if e["event"] == "attributed"]
    assert len(attributed) == 1 and attributed[0]["cause"] == "hang" and ":c32>32:k3x3:" in attributed[0]["signature"]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"
    with open(run / "results.csv") as f:
        epochs = [int(float(r["epoch"].strip() if "epoch" in r else r[next(iter(r))])) for r in csv.DictReader(f)]
    assert epochs == [1, 2], "every epoch exactly once"
    assert "no finished batch" in (run / "rdna1_watchdog.log").read_text()
    summary = journal.summarize(run)
    assert summary["restarts"] == 1 and summary["causes"] == {"hang": 1} and summary["ended"] == "completed"
