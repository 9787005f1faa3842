"""Each effect behaves as the contract says; hang and abort only ever in child processes."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn
import yaml

from yolo_rdna1.guard import guarded

CHILD = """
import sys, torch, torch.nn as nn
import yolo_rdna1
conv = nn.Conv2d(16, 32, 3, padding=1)
x = torch.randn(2, 16, 48, 48)
with yolo_rdna1.guarded(policy="vendor"):
    print("calling", flush=True)
    {before}
    out = conv(x)
print("returned", flush=True)
"""


def profile(tmp_path, effect, **extra):
    f = tmp_path / f"{effect}.yaml"
    rule = {"match": {"kernel": 3, "hw": {"min": 43}}, "direction": "fwd", "effect": effect, **extra}
    f.write_text(yaml.safe_dump({"name": effect, "rules": [rule]}))
    return str(f)


def test_abort_kills_the_process_with_sigabrt(tmp_path, run_child):
    r = run_child(CHILD.format(before=""), env={"YOLO_RDNA1_FAULTS": profile(tmp_path, "abort")}, timeout=120)
    assert r.returncode == -signal.SIGABRT
    assert "calling" in r.stdout and "returned" not in r.stdout
    assert "Memory access fault" in r.stderr


def test_hang_never_returns_and_ignores_python_signal_handlers(tmp_path):
    # A Python-level timeout armed right before the call: it must not end the hang.
    code = "import signal\ndef boom(*a): raise TimeoutError('python-level timeout')\n" + CHILD.format(
        before="signal.signal(signal.SIGALRM, boom); signal.alarm(1)"
    )
    env = {**os.environ, "YOLO_RDNA1_FAULTS": profile(tmp_path, "hang")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "calling"
        time.sleep(3)  # the SIGALRM handler would have raised by now if the call could be interrupted
        proc.send_signal(signal.SIGINT)  # KeyboardInterrupt is a Python-level handler too
        time.sleep(1)
        assert proc.poll() is None, "a simulated hang must not return"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert "returned" not in proc.stdout.read()


def test_error_raises_the_vendor_message(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", profile(tmp_path, "error", message="miopenStatusInternalError"))
    conv = nn.Conv2d(16, 32, 3, padding=1)
    with guarded(policy="vendor"):
        with pytest.raises(RuntimeError, match="miopenStatusInternalError"):
            conv(torch.randn(2, 16, 48, 48))
        # a signature that no rule matches is untouched
        assert conv(torch.randn(2, 16, 40, 40)).shape == (2, 32, 40, 40)


def test_nan_and_wrong_return_the_right_shape(tmp_path, monkeypatch):
    conv = nn.Conv2d(16, 32, 3, padding=1)
    x = torch.randn(2, 16, 48, 48)
    ref = conv(x)
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", profile(tmp_path, "nan"))
    with guarded(policy="vendor"):
        out = conv(x)
    assert out.shape == ref.shape and torch.isnan(out).all()
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", profile(tmp_path, "wrong"))
    with guarded(policy="vendor"):
        out = conv(x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert ((out - ref).norm() / ref.norm()).item() > 1e-2


def test_backward_directions_are_simulated_separately(tmp_path, monkeypatch):
    f = tmp_path / "bw.yaml"
    f.write_text(
        yaml.safe_dump({"name": "bw", "rules": [{"match": {"kernel": 3}, "direction": "bwd_weight", "effect": "nan"}]})
    )
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", str(f))
    conv = nn.Conv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 16, 16, requires_grad=True)
    with guarded(policy="vendor"):
        out = conv(x)
        out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert torch.isnan(conv.weight.grad).all()


def test_bypass_route_is_never_affected(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", profile(tmp_path, "nan"))
    conv = nn.Conv2d(16, 32, 3, padding=1)
    x = torch.randn(2, 16, 48, 48)
    with guarded(policy="bypass"):
        out = conv(x)
    torch.testing.assert_close(out, conv(x), rtol=1e-4, atol=1e-4)
