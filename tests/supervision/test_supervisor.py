"""The supervisor restarts crashed or hung trainings, resumes them, and knows when to give up."""

import csv
import signal

import pytest
import yaml

from yolo_rdna1.supervision import STALL_EXIT_CODE, RestartPolicy, SupervisorError, classify, journal, supervise


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
    rule = {
        "match": {"kernel": 3, "in_channels": 32, "out_channels": 32, "height": 8, "width": 8, "batch": 4},
        "direction": "fwd",
        "effect": "hang",
        "after": 6,
    }
    prof.write_text(yaml.safe_dump({"name": "late-hang", "rules": [rule]}))
    kwargs = dict(
        data=str(synthetic_data),
        epochs=2,
        imgsz=64,
        batch=4,
        device="cpu",
        workers=0,
        project=str(tmp_path / "p"),
        name="r",
        faults=str(prof),
        cache=str(tmp_path / "cache"),
        stall_timeout=10,
        telemetry=0,
        plots=False,
        prefer_faster=False,
    )  # CPU timings must not move the signature to the bypass before it hangs
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


# -- restarts that make progress are not failures (defect 13) ------------------------------------
class FakeTime:
    """The supervisor's clock and sleep: a run of days plays in moments."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def save_position(weights, epoch: int, batch: int) -> None:
    """A mid.pt at (epoch, batch), as the training child writes it (only what a resume reads)."""
    import torch

    from yolo_rdna1.supervision import checkpoint as ck

    ema = torch.nn.Linear(1, 1)
    ema.yaml = {"yaml_file": "yolov8n.yaml", "scale": "n", "nc": 2}
    ckpt = {
        "epoch": max(epoch - 1, 0),
        "ema": ema,
        "optimizer": {},
        "updates": 1,
        "train_args": {"epochs": 50},
        ck.RESUME_KEY: {
            "epoch": epoch,
            "batch": batch,
            "batches": 82_000,
            "order": None,
            "rng": None,
            "buffer": [],
            "tloss": None,
            "model": {},
            "names": {},
            "train_images": 328_000,
        },
    }
    weights.mkdir(parents=True, exist_ok=True)
    ck.save_atomic(ckpt, weights / ck.MID_NAME, prev=weights / ck.PREV_NAME)


def scripted_training(time_: FakeTime, run_dir, script):
    """An ``attempt`` for supervise(): each call plays the next (hours, batches done, exit status)."""
    steps = iter(script)
    done = [0]
    seen = []

    def attempt(args):
        seen.append(args)
        hours, batches, code = next(steps)
        time_.now += hours * 3600
        if batches:
            done[0] += batches
            save_position(run_dir / "weights", *divmod(done[0], 82_000))
        return code

    return attempt, seen


def test_defect13_a_ten_day_run_crashing_every_few_hours_is_never_abandoned_and_waits_the_base_backoff(tmp_path):
    """The shipped long-run recipe's settings; an RX 5600 XT does ~4.7 batches/s, a mid.pt every 15 min."""
    import random

    recipe = yaml.safe_load(
        open(__import__("yolo_rdna1.recipes", fromlist=["x"]).shipped_recipes()["ltdv2_yolov8n_long"])
    )
    policy = RestartPolicy(max_restarts=recipe["max_restarts"])
    rng = random.Random(3)
    causes = [-signal.SIGABRT, STALL_EXIT_CODE, -signal.SIGKILL, 1, -signal.SIGSEGV]
    script, hours = [], 0.0
    while hours < 240:
        h = rng.uniform(2, 5)
        script.append(
            (h, int((h * 3600 - 15 * 60 * rng.random()) * 4.7), rng.choice(causes))
        )  # loses up to 15 min each time
        hours += h
    script[-1] = (script[-1][0], script[-1][1], 0)  # finishes on day ten
    t = FakeTime()
    run = tmp_path / "p" / "r"
    attempt, seen = scripted_training(t, run, script)
    assert (
        supervise(
            {"data": "d.yaml", "project": str(tmp_path / "p"), "name": "r"},
            policy,
            sleep=t.sleep,
            clock=t.clock,
            attempt=attempt,
        )
        == run
    )
    restarts = len(script) - 1
    assert restarts > 3 * policy.max_restarts and restarts > 20, (
        "far more crashes than max_restarts, and than the old recipe's 20"
    )
    assert t.waits == [policy.backoff_s] * restarts, "every restart after the base backoff"
    assert all(a["resume"] and a["model"].endswith("mid.pt") for a in seen[1:])
    events = list(journal.read(run))
    assert [e["progress"] for e in events if e["event"] == "restart"] == [True] * restarts
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed" and events[-1]["restarts"] == restarts


def test_defect13_without_progress_the_backoff_doubles_and_the_run_is_abandoned_at_max_restarts(tmp_path):
    t = FakeTime()
    run = tmp_path / "p" / "r"
    causes = [
        -signal.SIGABRT,
        STALL_EXIT_CODE,
        1,
        -signal.SIGSEGV,
    ]  # different causes: the same-failure limit stays out of it
    script = [
        (3, 1000, causes[0]),
        (0.1, 0, causes[1]),
        (0.1, 0, causes[2]),
        (1, 500, causes[3]),
    ]  # progress, none, none, progress
    script += [(0.1, 0, causes[i % 4]) for i in range(7)]  # then nothing more
    attempt, _ = scripted_training(t, run, script)
    policy = RestartPolicy(max_restarts=5, backoff_s=10, backoff_max_s=600)
    with pytest.raises(SupervisorError, match="6 restarts in a row made no progress .* max_restarts=5 reached"):
        supervise(
            {"data": "d.yaml", "project": str(tmp_path / "p"), "name": "r"},
            policy,
            sleep=t.sleep,
            clock=t.clock,
            attempt=attempt,
        )
    assert t.waits == [10, 10, 20, 10, 10, 20, 40, 80, 160], (
        "reset after each restart that progressed, doubling over those that did not"
    )
    events = list(journal.read(run))
    assert [e["progress"] for e in events if e["event"] == "restart"] == [True, False, False, True] + [False] * 6
    assert events[-1] == {**events[-1], "event": "end", "status": "gave_up", "reason": "max_restarts without progress"}


def test_defect13_a_storm_of_progressing_crashes_is_spaced_out_by_the_hourly_brake_never_abandoned(tmp_path):
    t = FakeTime()
    script = [(60 / 3600, 100, -signal.SIGABRT)] * 30 + [
        (0.1, 100, 0)
    ]  # a crash every minute, each after a new checkpoint
    attempt, _ = scripted_training(t, tmp_path / "p" / "r", script)
    policy = RestartPolicy(backoff_s=10, max_restarts_per_hour=12)
    supervise(
        {"data": "d.yaml", "project": str(tmp_path / "p"), "name": "r"},
        policy,
        sleep=t.sleep,
        clock=t.clock,
        attempt=attempt,
    )
    assert t.waits[:12] == [10] * 12 and t.waits[12] > 2000, (
        "the 13th restart in an hour waits until the hour allows it"
    )
    assert len(t.waits) == 30


# -- clean exits (defect 11) -------------------------------------------------------------------
FAKE_CHILD = """
import os, signal, sys, time
from pathlib import Path
out = Path(os.environ["FAKE_OUT"])
if os.environ.get("FAKE_STUBBORN"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
(out / "spec").write_text(sys.argv[-1])
(out / "pid.tmp").write_text(str(os.getpid()))
os.replace(out / "pid.tmp", out / "pid")
try:
    time.sleep(300)
except KeyboardInterrupt:
    (out / "interrupted").write_text("yes")
    sys.exit(130)
"""

SUPERVISOR = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever the test runner set
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from yolo_rdna1.supervision import RestartPolicy, supervise
supervise({{"data": "d.yaml", "project": {project!r}, "name": "r"}}, RestartPolicy({policy}), python={python!r})
"""


@pytest.mark.parametrize("sig, stubborn", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)])
def test_defect11_a_signal_to_the_supervisor_stops_the_child_journals_the_end_and_leaves_no_temp_file(
    tmp_path, sig, stubborn
):
    import os
    import subprocess
    import sys
    import time

    from yolo_rdna1.files import pid_alive

    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    child = tmp_path / "child.py"
    child.write_text(FAKE_CHILD)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{child}" "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "FAKE_OUT": str(out), "TMPDIR": str(tmp), **({"FAKE_STUBBORN": "1"} if stubborn else {})}
    code = SUPERVISOR.format(
        project=str(tmp_path / "p"), policy="stop_grace_s=1.0" if stubborn else "", python=str(python)
    )
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        sup = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=stderr)
    pid = None
    try:
        for _ in range(600):
            if (out / "pid").exists() or sup.poll() is not None:
                break
            time.sleep(0.1)
        pid = int((out / "pid").read_text())
        spec = (out / "spec").read_text()
        assert os.path.isfile(spec), "the child's spec exists while it runs"
        t = time.monotonic()
        sup.send_signal(sig)
        sup.wait(timeout=60)
        for _ in range(50):  # the child, if left behind, is not the supervisor's to reap any more
            if not pid_alive(pid):
                break
            time.sleep(0.1)
        survived = pid_alive(pid)
    finally:
        for p in (sup.pid, pid):
            if p is not None and pid_alive(p):
                os.kill(p, signal.SIGKILL)
        sup.wait()
    assert sup.returncode == -sig, log.read_text()[-2000:]  # 130 / 143 in a shell
    assert not survived, "the training child did not outlive the supervisor"
    if stubborn:
        assert time.monotonic() - t < 15, "a child that ignores the signal is killed after the grace"
    else:
        assert (out / "interrupted").exists() == (sig == signal.SIGINT), "the child got the same signal"
    assert not os.path.exists(spec) and list(tmp.iterdir()) == [], "no temp file left"
    end = list(journal.read(tmp_path / "p" / "r"))[-1]
    assert end["event"] == "end" and end["status"] == "interrupted" and end["cause"] == signal.Signals(sig).name


# -- attribution under the env profile in effect (defect 7) -------------------------------------
@pytest.mark.slow
def test_defect7_a_late_crash_under_an_auto_picked_env_profile_is_not_repeated_after_the_restart(
    tmp_path, tmp_path_factory
):
    import json

    from yolo_rdna1.data import make_synthetic_thermal
    from yolo_rdna1.verdicts import VerdictStore

    rules = [
        # seen by the probe under the profiles that keep MIOpen's GEMM solvers: auto picks one without (direct_only)
        {
            "match": {"kernel": 3, "stride": 2},
            "direction": "fwd",
            "effect": "error",
            "unless_env": {"MIOPEN_DEBUG_CONV_GEMM": "0"},
        },
        # under every profile, unseen by the probe (3 calls a child): the 4th train batch of a process aborts
        {
            "match": {"kernel": 1, "in_channels": 64, "out_channels": 64, "height": 2},
            "direction": "bwd_weight",
            "effect": "abort",
            "after": 3,
        },
    ]
    prof = tmp_path / "late-under-auto.yaml"
    prof.write_text(yaml.safe_dump({"name": "late-under-auto", "rules": rules}))
    data = make_synthetic_thermal(tmp_path_factory.mktemp("tiny7"), n_train=8, n_val=4, seed=1, size=(96, 72))
    kwargs = dict(
        data=str(data),
        epochs=1,
        imgsz=64,
        batch=2,
        device="cpu",
        workers=0,
        project=str(tmp_path / "p"),
        name="r",
        faults=str(prof),
        cache=str(tmp_path / "cache"),
        env_profile="auto",
        stall_timeout=60,
        telemetry=0,
        thermal=False,
        plots=False,
        prefer_faster=False,
    )  # CPU timings must not move the signature to the bypass before it aborts
    run = supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None)
    events = list(journal.read(run))
    assert [e["cause"] for e in events if e["event"] == "restart"] == ["abort"], "one crash, not the same one again"
    attributed = [e for e in events if e["event"] == "attributed"]
    assert (
        len(attributed) == 1
        and ":c64>64:k1x1:" in attributed[0]["signature"]
        and attributed[0]["signature"].endswith(":bwd_weight")
    )
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"
    crashes = [v for v in VerdictStore(tmp_path / "cache" / "verdicts.sqlite").query() if v.source == "crash"]
    assert [(v.signature, v.env_profile) for v in crashes] == [(attributed[0]["signature"], "direct_only")], (
        "under the profile in effect"
    )
    assert json.loads((run / "rdna1_report.json").read_text())["env_profile"] == "direct_only"
    assert not (run / "rdna1_breadcrumb.env").exists(), "a clean end leaves no trail"
