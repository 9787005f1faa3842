"""Crash attribution: the conv in flight when a process dies is found by the next start."""

import signal

from yolo_rdna1.verdicts.breadcrumb import Breadcrumb, clear, in_flight, mark_hang

SIG_A = "v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:48x48:float32:nchw:fwd"
SIG_B = "v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:48x48:float32:nchw:bwd_weight"


def test_the_conv_in_flight_at_an_abort_is_found(tmp_path, run_child_file):
    stem = tmp_path / "crumb"
    r = run_child_file("breadcrumb_abort", stem, SIG_A, SIG_B)
    assert r.returncode == -signal.SIGABRT
    assert in_flight(stem) == (SIG_B, "abort")
    mark_hang(stem)
    assert in_flight(stem) == (SIG_B, "hang")
    clear(stem)
    assert in_flight(stem) is None


def test_a_clean_end_leaves_nothing_in_flight(tmp_path):
    b = Breadcrumb(tmp_path / "crumb")
    idx = b.register(SIG_A)
    assert b.register(SIG_A) == idx, "a signature is logged once per process"
    b.enter(idx)
    assert in_flight(tmp_path / "crumb") == (SIG_A, "abort")
    b.leave()
    assert in_flight(tmp_path / "crumb") is None
    b.close()
    assert not list(tmp_path.iterdir())
