"""``yolo-rdna1 report RUN_DIR``: the run report, the journal's story, rdna1.png."""

import json
import subprocess
import sys

import pytest

from yolo_rdna1.report import ReportError, print_report

REPORT = {
    "device": "cpu|faults=gfx1010@abcd", "env_profile": "default", "policy": "auto", "probe": "4 signatures: 3 vendor, 1 bypass (1 hang)",
    "attributed_crashes": [{"signature": "v1:c32>32:k3x3:s1x1:p1x1:d1x1:g1:n4:8x8:float32:nchw:fwd", "cause": "hang"}],
    "calls": 200, "bypassed": 50, "bypass_rate": 0.25, "fallbacks": 1, "thermal_pause_s": 12.0, "telemetry_source": "sysfs",
    "epochs": [], "modules": {},
    "signatures": [{"signature": "v1:c32>32:k3x3:s1x1:p1x1:d1x1:g1:n4:8x8:float32:nchw:fwd", "routes": {"fwd": "bypass", "bwd_data": "vendor",
                    "bwd_weight": "vendor"}, "algorithm": "nhwc_gemm", "calls": 100, "bypassed": 50, "reasons": {}}],
}
COLUMNS = ["epoch", "train/box_loss", "rdna1/bypass_rate", "rdna1/temp_edge_max", "rdna1/temp_junction_max", "rdna1/temp_mem_max"]


def write_run(run, report=True, journal=True):
    run.mkdir(parents=True, exist_ok=True)
    if report:
        (run / "rdna1_report.json").write_text(json.dumps(REPORT))
    rows = [[1, 1.5, 0.25, 60.0, 71.0, -1.0], [2, 1.2, 0.25, 62.0, 83.0, -1.0]]
    (run / "results.csv").write_text("\n".join([",".join(f"{c:>20}" for c in COLUMNS)] + [",".join(map(str, r)) for r in rows]) + "\n")
    if journal:
        t0 = 1_000_000.0
        events = [
            {"time": t0, "event": "start"},
            {"time": t0 + 600, "event": "checkpoint", "epoch": 1, "batch": 10},
            {"time": t0 + 780, "event": "restart", "cause": "hang"},  # 3 minutes after the checkpoint
            {"time": t0 + 790, "event": "attributed", "signature": "v1:c32>32:k3x3:s1x1:p1x1:d1x1:g1:n4:8x8:float32:nchw:fwd", "cause": "hang"},
            {"time": t0 + 900, "event": "checkpoint", "epoch": 2, "batch": 0},
            {"time": t0 + 960, "event": "restart", "cause": "abort"},  # 1 minute
            {"time": t0 + 1200, "event": "end", "status": "completed"},
        ]
        (run / "journal.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n{\"torn")


def test_report_prints_totals_crashes_signatures_and_the_journal_and_draws_the_plot(tmp_path, capsys):
    write_run(tmp_path / "run")
    assert print_report(tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "50 of 200 conv calls bypassed (25.0%), 1 in-process fallbacks, 12 s thermal pause" in out
    assert "attributed hang: v1:c32>32:k3x3" in out and "b/v/v" in out
    assert "journal: 2 restart(s) (1 abort, 1 hang), 4.0 min of training lost to them, ended: completed" in out
    png = tmp_path / "run" / "rdna1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_supervised_run_that_never_finished_still_has_its_journal_read(tmp_path, capsys):
    write_run(tmp_path / "run", report=False)
    assert print_report(tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "journal: 2 restart(s)" in out and "conv calls bypassed" not in out


def test_a_folder_that_is_not_a_run_gets_one_message(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="has no rdna1_report.json"):
        print_report(tmp_path / "empty")
    r = subprocess.run([sys.executable, "-m", "yolo_rdna1.cli", "report", str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "is not a folder" in r.stderr and "Traceback" not in r.stderr


def test_defect12_report_keeps_every_complete_line_and_says_how_many_it_skipped(tmp_path, capsys):
    """A crash mid-write leaves a torn line; the next writer's event landed on the same line. A line
    without an event (or not an object) is skipped and counted, never a KeyError."""
    run = tmp_path / "run"
    write_run(run, report=False, journal=False)
    t0 = 1_000_000.0
    lines = [
        json.dumps({"time": t0, "event": "start"}),
        json.dumps({"time": t0 + 600, "event": "checkpoint", "epoch": 1, "batch": 10}),
        '{"time": 1000700.0, "event": "restart", "cau' + json.dumps({"time": t0 + 780, "event": "restart", "cause": "hang"}),
        json.dumps({"time": t0 + 790, "note": "no event"}),
        json.dumps({"time": t0 + 791, "event": 7}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"event": "restart", "cause": ["odd"]}),  # no time: counted, adds no lost time
        json.dumps({"time": t0 + 1200, "event": "end", "status": "completed"}),
    ]
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")
    assert print_report(run) == 0
    out = capsys.readouterr().out
    assert "journal: 2 restart(s) (1 ['odd'], 1 hang), 3.0 min of training lost to them, ended: completed" in out
    assert "journal: 4 line(s) skipped" in out
