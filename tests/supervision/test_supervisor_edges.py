"""Edges of the supervisor: what counts as the same failure, hangups and a dead supervisor,
arguments the child cannot take, endless backoff, and a third Ctrl-C."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from yolo_rdna1.errors import Rdna1Error
from yolo_rdna1.runfiles import breadcrumb_stem
from yolo_rdna1.supervision import RestartPolicy, SupervisorError, journal, supervise
from yolo_rdna1.verdicts import breadcrumb as crumbs

SIGS = [f"v1:c{c}>{c}:k3x3:s1x1:p1x1:d1x1:g1:n4:48x48:float32:nchw:fwd" for c in (16, 32, 64, 128)]


def leave_in_flight(run_dir: Path, key: str | None) -> None:
    """The crash trail a training process leaves when it dies with ``key`` on the vendor library
    (None: no conv in flight). Each process starts a fresh trail, as its start attributes and clears
    the one before."""
    stem = breadcrumb_stem(run_dir)
    crumbs.clear(stem)
    if key is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        Path(str(stem) + ".log").write_text(key + "\n")
        Path(str(stem) + ".slot").write_bytes((1).to_bytes(8, "little"))
        assert crumbs.in_flight(stem) == (key, "abort")


def crashing_in(run_dir: Path, script: list[tuple[str | None, int]]):
    """An ``attempt`` for supervise() that never writes a checkpoint: each call dies with the next
    (conv in flight, exit status)."""
    steps = iter(script)
    calls = []

    def attempt(args: dict) -> int:
        calls.append(args)
        key, code = next(steps)
        leave_in_flight(run_dir, key)
        return code

    return attempt, calls


# -- 1: the same failure is the same cause, place and conv -----------------------------------------
def test_aborts_in_different_convs_at_one_checkpoint_are_attribution_progress_not_a_repeated_failure(tmp_path):
    """unknown=vendor, or several bad convs after the last checkpoint: each abort blames another conv."""
    run = tmp_path / "p" / "r"
    script = [(SIGS[0], -signal.SIGABRT), (SIGS[1], -signal.SIGABRT), (SIGS[2], -signal.SIGABRT), (None, 0)]
    attempt, calls = crashing_in(run, script)
    kwargs = {"data": "d.yaml", "project": str(tmp_path / "p"), "name": "r"}
    assert supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None, attempt=attempt) == run
    assert len(calls) == 4
    events = list(journal.read(run))
    assert [e.get("in_flight") for e in events if e["event"] == "restart"] == [[SIGS[0]], [SIGS[1]], [SIGS[2]]]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"


def test_the_same_conv_aborting_three_times_at_one_checkpoint_still_gives_up(tmp_path):
    run = tmp_path / "p" / "r"
    script = [(SIGS[0], -signal.SIGABRT), (SIGS[1], -signal.SIGABRT)] + [(SIGS[0], -signal.SIGABRT)] * 2
    attempt, calls = crashing_in(run, script + [(None, 0)])
    kwargs = {"data": "d.yaml", "project": str(tmp_path / "p"), "name": "r"}
    with pytest.raises(SupervisorError, match=f"'abort' 3 times at 0 completed epochs without progress with {SIGS[0]}"):
        supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None, attempt=attempt)
    assert len(calls) == 4
    end = list(journal.read(run))[-1]
    assert end["status"] == "gave_up" and end["reason"] == "same failure without progress"


def test_failures_with_no_conv_in_flight_repeat_as_before(tmp_path):
    run = tmp_path / "p" / "r"
    attempt, calls = crashing_in(run, [(None, 1)] * 3 + [(None, 0)])
    kwargs = {"data": "d.yaml", "project": str(tmp_path / "p"), "name": "r"}
    with pytest.raises(SupervisorError, match="'error' 3 times at 0 completed epochs without progress;"):
        supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None, attempt=attempt)
    assert len(calls) == 3


# -- 3: arguments the child's JSON spec cannot carry ------------------------------------------------
def test_path_arguments_reach_the_child_as_strings(tmp_path):
    run = tmp_path / "p" / "r"
    attempt, calls = crashing_in(run, [(None, 0)])
    kwargs = {
        "data": tmp_path / "d.yaml",
        "model": tmp_path / "m.yaml",
        "cache": tmp_path / "cache",
        "project": tmp_path / "p",
        "name": "r",
    }
    supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None, attempt=attempt)
    assert calls[0]["model"] == str(tmp_path / "m.yaml") and calls[0]["cache"] == str(tmp_path / "cache")
    json.dumps(calls[0])  # what the real child's spec file holds


def test_path_arguments_are_written_to_the_real_childs_spec(tmp_path, child_command):
    """The default attempt (a child process) writes the spec: no TypeError after the journal's start."""
    out = tmp_path / "out"
    out.mkdir()
    python = tmp_path / "python"  # exits at once after recording the spec's content
    python.write_text('#!/bin/sh\nfor a; do spec=$a; done\ncp "$spec" "$FAKE_OUT/spec.json"\nexit 0\n')
    python.chmod(0o755)
    os.environ["FAKE_OUT"] = str(out)
    try:
        supervise(
            {"data": "d.yaml", "model": tmp_path / "m.pt", "project": tmp_path / "p", "name": "r"},
            RestartPolicy(backoff_s=0),
            sleep=lambda s: None,
            python=str(python),
        )
    finally:
        del os.environ["FAKE_OUT"]
    assert json.loads((out / "spec.json").read_text())["model"] == str(tmp_path / "m.pt")
    assert [e["event"] for e in journal.read(tmp_path / "p" / "r")] == ["start", "end"]


def test_an_argument_the_child_cannot_take_is_one_clear_error_before_anything_is_journaled(tmp_path):
    kwargs = {"data": "d.yaml", "model": object(), "project": str(tmp_path / "p"), "name": "r"}
    with pytest.raises(SupervisorError, match="model=<object object at .*> cannot be passed") as e:
        supervise(kwargs, RestartPolicy(backoff_s=0), sleep=lambda s: None, attempt=lambda a: 0)
    assert isinstance(e.value, Rdna1Error)
    assert not (tmp_path / "p").exists(), "no run folder, no journal"


# -- 4: the backoff of endless restarts without progress --------------------------------------------
def test_the_backoff_stays_at_its_maximum_for_any_number_of_stalled_restarts():
    p = RestartPolicy(backoff_s=10.0, backoff_max_s=600.0)  # floats, as a recipe's yaml gives them
    assert [p.delay(n) for n in (1025, 1026, 5000, 10**9)] == [600.0] * 4
    assert RestartPolicy().delay(10**6) == RestartPolicy().backoff_max_s


# -- 5: a third signal while the child is being killed ----------------------------------------------
def test_a_third_signal_during_the_kill_cannot_leave_the_child_running():
    from yolo_rdna1.supervision.supervisor import _stop_child, _Stops

    stops = _Stops()

    class Child:
        """A child that ignores the forwarded signal; a second and a third signal come while it is stopped."""

        killed = False

        def send_signal(self, signum: int) -> None:
            pass

        def wait(self, timeout: float | None = None) -> int:
            if timeout is not None:
                stops._handle(signal.SIGINT, None)  # the second Ctrl-C, during the grace
            return -9

        def kill(self) -> None:
            stops._handle(signal.SIGINT, None)  # the third, just before the kill
            self.killed = True

    child = Child()
    _stop_child(child, signal.SIGINT, 60.0, stops)
    assert child.killed and not stops.armed


# -- 2: a hangup, and a supervisor that dies -------------------------------------------------------
def gone(pid: int) -> bool:
    """No such process, or only a zombie left for its new parent to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def start_supervisor(tmp_path: Path, child_command, child: str) -> tuple[subprocess.Popen, Path]:
    """``supervise`` in a process of its own, its training child the test program ``child``."""
    out = tmp_path / "out"
    out.mkdir()
    python = tmp_path / "python"  # the supervisor's interpreter: runs the test's training child instead
    python.write_text(f'#!/bin/sh\nexec {shlex.join(child_command(child))} "$@"\n')
    python.chmod(0o755)
    kwargs = {"data": "d.yaml", "project": str(tmp_path / "p"), "name": "r"}
    env = {**os.environ, "FAKE_OUT": str(out)}
    with open(tmp_path / "stderr.log", "w") as stderr:
        sup = subprocess.Popen(
            child_command("supervise", json.dumps(kwargs), json.dumps({}), python), env=env, stderr=stderr
        )
    return sup, out


def test_a_hangup_stops_the_child_journals_the_end_and_ends_the_supervisor_by_sighup(tmp_path, child_command):
    sup, out = start_supervisor(tmp_path, child_command, "fake_training")
    pid = None
    try:
        assert wait_for(lambda: (out / "pid").exists() or sup.poll() is not None, 60)
        pid = int((out / "pid").read_text())
        sup.send_signal(signal.SIGHUP)
        sup.wait(timeout=60)
        stopped = wait_for(lambda: gone(pid), 5)
    finally:
        for p in (sup.pid, pid):
            if p is not None and not gone(p):
                os.kill(p, signal.SIGKILL)
        sup.wait()
    assert sup.returncode == -signal.SIGHUP, (tmp_path / "stderr.log").read_text()[-2000:]  # 129 in a shell
    assert stopped, "the training child did not outlive the supervisor"
    end = list(journal.read(tmp_path / "p" / "r"))[-1]
    assert end["event"] == "end" and end["status"] == "interrupted" and end["cause"] == "SIGHUP"


def test_a_killed_supervisor_takes_its_training_child_with_it_and_leaves_no_conv_to_blame(tmp_path, child_command):
    sup, out = start_supervisor(tmp_path, child_command, "supervised_sleeper")
    pid = None
    try:
        assert wait_for(lambda: (out / "pid").exists() or sup.poll() is not None, 60)
        pid = int((out / "pid").read_text())
        stem = breadcrumb_stem(tmp_path / "p" / "r")
        assert crumbs.in_flight(stem) is not None, "the training has a conv in flight"
        sup.kill()
        sup.wait(timeout=10)
        stopped = wait_for(lambda: gone(pid), 15)
    finally:
        for p in (sup.pid, pid):
            if p is not None and not gone(p):
                os.kill(p, signal.SIGKILL)
        sup.wait()
    assert stopped, "the training child ended with its supervisor"
    assert (out / "terminated").exists(), "by a SIGTERM, the way a supervisor stops it"
    assert crumbs.in_flight(stem) is None, "the conv it was stopped in is not blamed by a resume"


def test_the_parent_watch_fires_when_the_parent_died_before_it_started():
    from yolo_rdna1.parent_watch import watch_parent

    fired = threading.Event()
    watch_parent(fired.set, parent=os.getppid() + 10**7, poll_s=0.01)  # a pid that is not our parent
    assert fired.wait(5)
    quiet = threading.Event()
    watch_parent(quiet.set, poll_s=0.01)  # our parent lives
    assert not quiet.wait(0.3)
