"""Crash attribution: the conv in flight when a process dies is found by the next start."""

import signal
import textwrap

from yolo_rdna1.verdicts.breadcrumb import Breadcrumb, clear, in_flight, mark_hang


def test_the_conv_in_flight_at_an_abort_is_found(tmp_path, run_child):
    stem = tmp_path / "crumb"
    r = run_child(textwrap.dedent(f"""
        import os
        from yolo_rdna1.verdicts.breadcrumb import Breadcrumb
        b = Breadcrumb({str(stem)!r})
        ok = b.register("sig-a"); b.enter(ok); b.leave()
        bad = b.register("sig-b"); b.enter(bad)
        os.abort()
    """))
    assert r.returncode == -signal.SIGABRT
    assert in_flight(stem) == ("sig-b", "abort")
    mark_hang(stem)
    assert in_flight(stem) == ("sig-b", "hang")
    clear(stem)
    assert in_flight(stem) is None


def test_a_clean_end_leaves_nothing_in_flight(tmp_path):
    b = Breadcrumb(tmp_path / "crumb")
    idx = b.register("sig-a")
    assert b.register("sig-a") == idx, "a signature is logged once per process"
    b.enter(idx)
    assert in_flight(tmp_path / "crumb") == ("sig-a", "abort")
    b.leave()
    assert in_flight(tmp_path / "crumb") is None
    b.close()
    assert not list(tmp_path.iterdir())
