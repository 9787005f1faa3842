"""Isolated probes identify every verdict class for its signatures, and nothing else."""

import time

import yaml

from yolo_rdna1.probe.runner import Prober, Timeouts
from yolo_rdna1.signature import ConvSignature


def sig(**kw):
    base = dict(
        in_channels=8,
        out_channels=8,
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        dilation=(1, 1),
        groups=1,
        height=24,
        width=24,
        batch=2,
    )
    base.update(kw)
    return ConvSignature(**base)


PROFILE = {
    "name": "every-effect",
    "rules": [
        {"match": {"in_channels": 9}, "direction": "fwd", "effect": "hang"},
        {"match": {"in_channels": 10}, "direction": "bwd_weight", "effect": "abort"},
        {"match": {"in_channels": 11}, "effect": "error", "message": "miopenStatusInternalError"},
        {"match": {"in_channels": 12}, "direction": "bwd_data", "effect": "nan"},
        {"match": {"in_channels": 13}, "direction": "fwd", "effect": "wrong"},
        {"match": {"in_channels": 14}, "effect": "abort", "after": 50},  # beyond what a probe runs
    ],
}


def test_every_verdict_class_is_identified_and_nothing_else_flagged(tmp_path, monkeypatch):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(PROFILE))
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", str(f))
    cases = {
        sig(in_channels=9): "hang",
        sig(in_channels=9, direction="bwd_data"): "ok",
        sig(in_channels=10, direction="bwd_weight"): "abort",
        sig(in_channels=10): "ok",
        sig(in_channels=11, direction="bwd_data"): "error",
        sig(in_channels=12, direction="bwd_data"): "nan",
        sig(in_channels=12, direction="bwd_weight"): "ok",
        sig(in_channels=13): "wrong",
        sig(in_channels=14): "ok",
        sig(in_channels=16, groups=16, out_channels=16): "ok",
        sig(transposed=True, stride=(2, 2), kernel=(2, 2), padding=(0, 0)): "ok",
        sig(dtype="bfloat16", kernel=(1, 1), padding=(0, 0)): "ok",
    }
    t = time.perf_counter()
    results = Prober("cpu", timeouts=Timeouts(compile_allowance=1.0, minimum=0.5, factor=10.0)).probe(list(cases))
    got = {r.signature: r.verdict for r in results}
    assert got == {s.key(): v for s, v in cases.items()}
    by = {r.verdict: r for r in results}
    assert "miopenStatusInternalError" in by["error"].detail
    assert "SIGABRT" in by["abort"].detail
    assert all(r.bypass_ms is not None and r.bypass_ms > 0 for r in results)
    assert all(r.vendor_ms is not None for r in results if r.verdict == "ok")
    assert time.perf_counter() - t < 120


def test_results_stream_as_they_finish(tmp_path, monkeypatch):
    monkeypatch.delenv("YOLO_RDNA1_FAULTS", raising=False)
    seen = []
    Prober("cpu").probe([sig(), sig(height=16, width=16)], on_result=lambda r: seen.append(r.verdict))
    assert seen == ["ok", "ok"]


def test_a_probe_child_left_behind_in_a_hang_ends_with_its_parent(tmp_path, child_command):
    """A training that exits while a background probe hangs must not leave the child running."""
    import os
    import signal
    import subprocess

    import yaml

    pidfile = tmp_path / "child.pid"
    profile = tmp_path / "hang.yaml"
    profile.write_text(
        yaml.safe_dump({"name": "hang-all", "rules": [{"match": {}, "direction": "fwd", "effect": "hang"}]})
    )
    key = "v1:c3>4:k1x1:s1x1:p0x0:d1x1:g1:n1:4x4:float32:nchw:fwd"
    env = {**os.environ, "YOLO_RDNA1_FAULTS": str(profile)}
    parent = subprocess.Popen(child_command("probe_parent", pidfile, key), env=env, start_new_session=True)
    try:
        for _ in range(600):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the probe child outlived its parent by 10 s")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_defect11_a_probe_removes_its_temp_folders_and_sweeps_those_of_dead_probes(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile

    monkeypatch.delenv("YOLO_RDNA1_FAULTS", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what TMPDIR=tmp_path gives a fresh process
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    left = tmp_path / f"yolo_rdna1-probe-{dead}-x1y2z3"  # a probe that was killed
    (left / f"probe-{dead}-abc").mkdir(parents=True)
    alive = tmp_path / f"yolo_rdna1-probe-{os.getpid()}-live"  # a probe still running
    older = tmp_path / "yolo_rdna1-probe-k2j4l5m6"  # no owner in the name: not ours to judge
    for folder in (alive, older):
        folder.mkdir()
    assert [r.verdict for r in Prober("cpu").probe([sig()])] == ["ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, older.name]), (
        "its own folder gone, the dead probe's swept"
    )


def test_defect11_a_probe_that_is_interrupted_or_fails_leaves_no_temp_folder(tmp_path, monkeypatch):
    import tempfile

    import pytest

    monkeypatch.delenv("YOLO_RDNA1_FAULTS", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def stop(result):
        raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        Prober("cpu").probe(
            [sig(), sig(height=16, width=16)], on_result=stop
        )  # the spare child is warming up meanwhile
    assert list(tmp_path.iterdir()) == []
    given = tmp_path / "work"
    with pytest.raises(RuntimeError, match="could not start"):
        Prober("no-such-device", work_dir=given).probe([sig()])  # the child fails at start
    assert list(given.iterdir()) == [], "a given folder stays, the children's folders in it go"
