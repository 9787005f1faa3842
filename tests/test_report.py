"""``yolo-rdna1 report RUN_DIR``: the run report, the journal's story, rdna1.png."""

import json
import subprocess
import sys

import pytest

from yolo_rdna1.report import ReportError, print_report

REPORT = {
    "device": "cpu|faults=gfx1010@abcd",
    "env_profile": "default",
    "policy": "auto",
    "probe": "4 signatures: 3 vendor, 1 bypass (1 hang)",
    "attributed_crashes": [{"signature": "v1:c32>32:k3x3:s1x1:p1x1:d1x1:g1:n4:8x8:float32:nchw:fwd", "cause": "hang"}],
    "calls": 200,
    "bypassed": 50,
    "bypass_rate": 0.25,
    "fallbacks": 1,
    "thermal_pause_s": 12.0,
    "telemetry_source": "sysfs",
    "epochs": [],
    "modules": {},
    "signatures": [
        {
            "signature": "v1:c32>32:k3x3:s1x1:p1x1:d1x1:g1:n4:8x8:float32:nchw:fwd",
            "routes": {"fwd": "bypass", "bwd_data": "vendor", "bwd_weight": "vendor"},
            "algorithm": "nhwc_gemm",
            "calls": 100,
            "bypassed": 50,
            "reasons": {},
        }
    ],
}
COLUMNS = [
    "epoch",
    "train/box_loss",
    "rdna1/bypass_rate",
    "rdna1/temp_edge_max",
    "rdna1/temp_junction_max",
    "rdna1/temp_mem_max",
]


def write_run(run, report=True, journal=True):
    run.mkdir(parents=True, exist_ok=True)
    if report:
        (run / "rdna1_report.json").write_text(json.dumps(REPORT))
    rows = [[1, 1.5, 0.25, 60.0, 71.0, -1.0], [2, 1.2, 0.25, 62.0, 83.0, -1.0]]
    (run / "results.csv").write_text(
        "\n".join([",".join(f"{c:>20}" for c in COLUMNS)] + [",".join(map(str, r)) for r in rows]) + "\n"
    )
    if journal:
        t0 = 1_000_000.0
        events = [
            {"time": t0, "event": "start"},
            {"time": t0 + 600, "event": "checkpoint", "epoch": 1, "batch": 10},
            {"time": t0 + 780, "event": "restart", "cause": "hang"},  # 3 minutes after the checkpoint
            {
                "time": t0 + 790,
                "event": "attributed",
                "signature": "v1:c32>32:k3x3:s1x1:p1x1:d1x1:g1:n4:8x8:float32:nchw:fwd",
                "cause": "hang",
            },
            {"time": t0 + 900, "event": "checkpoint", "epoch": 2, "batch": 0},
            {"time": t0 + 960, "event": "restart", "cause": "abort"},  # 1 minute
            {"time": t0 + 1200, "event": "end", "status": "completed"},
        ]
        (run / "journal.jsonl").write_text("\n".join(json.dumps(e) for e in events) + '\n{"torn')


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
    r = subprocess.run(
        [sys.executable, "-m", "yolo_rdna1.cli", "report", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
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
        '{"time": 1000700.0, "event": "restart", "cau'
        + json.dumps({"time": t0 + 780, "event": "restart", "cause": "hang"}),
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


def test_the_plot_ticks_whole_epochs_and_shows_the_share_on_a_0_to_100_axis():
    from yolo_rdna1.report import figure

    # two epochs at 60 % and 66 %: matplotlib's defaults would tick 1.2, 1.4, ... and span 60-66 %
    rows = [
        {"epoch": 1.0, "rdna1/bypass_rate": 0.60, "rdna1/temp_edge_max": 61.0},
        {"epoch": 2.0, "rdna1/bypass_rate": 0.66, "rdna1/temp_edge_max": 64.0},
    ]
    fig = figure(rows)
    try:
        share, temps = fig.axes
        assert share.get_ylim() == (0.0, 100.0)
        for ax in (share, temps):
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_report_names_the_modules_of_each_bypassed_signature(capsys):
    from yolo_rdna1.report import summary_lines

    sig = REPORT["signatures"][0]
    # as the plugin labels them: the trained model's layers under "model.", its EMA copy's under "ema."
    one = dict(sig, modules=["ema.model.2.cv1.conv", "model.model.10.cv1.conv", "model.model.2.cv1.conv"])
    many = dict(
        sig,
        signature=sig["signature"].replace("c32>32", "c64>64"),
        bypassed=10,
        modules=[f"model.model.{i}.m.0.cv1.conv" for i in (4, 6, 8, 12, 15)],
    )
    lines = summary_lines({**REPORT, "signatures": [one, many]})
    row = next(line for line in lines if "c32>32" in line and "<-" in line)
    assert row.endswith("<- model.2.cv1.conv, model.10.cv1.conv")  # model order, the EMA twin the same layer
    row = next(line for line in lines if "c64>64" in line and "<-" in line)
    assert row.endswith("<- model.4.m.0.cv1.conv, model.6.m.0.cv1.conv, model.8.m.0.cv1.conv (+2 more)")


def test_the_guard_records_which_labelled_modules_ran_a_signature():
    import torch
    from torch import nn

    from yolo_rdna1.guard import guarded

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))
    with guarded(policy="bypass", faults=False) as g:
        g.label(net, prefix="model")
        net(torch.randn(1, 3, 8, 8))
    by_cin = {r["signature"].split(":")[1]: r["modules"] for r in g.per_signature()}
    assert by_cin == {"c3>8": ["model.0"], "c8>8": ["model.1", "model.2"]}
