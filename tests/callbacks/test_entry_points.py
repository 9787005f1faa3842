"""2-epoch guarded trainings through each entry point: train(), add_callbacks, the CLI.

Each runs in a child process with a timeout. They check what a user reads afterwards:
results.csv with the rdna1 columns from row 1 (and Ultralytics reading it back: results.png,
train_results in the checkpoint), rdna1_report.json agreeing with the CSV, resume.
"""

import json
import os
import subprocess
import sys

import pytest


def common(data, project, name, cache):
    return dict(
        data=str(data),
        epochs=2,
        imgsz=64,
        batch=4,
        device="cpu",
        workers=0,
        project=str(project),
        name=name,
        exist_ok=True,
        cache=str(cache),
        verbose=False,
    )


def check_run(table, run, expect_bypass: bool):
    """Two epochs of rdna1 columns agreeing with the report, Ultralytics' plot, the columns in last.pt."""
    assert len(table) == 2
    report = json.loads((run / "rdna1_report.json").read_text())
    for r, e in zip(table, report["epochs"]):
        assert float(r["rdna1/bypass_rate"]) == pytest.approx(e["bypassed"] / e["calls"], rel=1e-4)
    rates = [float(r["rdna1/bypass_rate"]) for r in table]
    assert all(x > 0 for x in rates) if expect_bypass else all(x == 0 for x in rates)
    assert (run / "results.png").is_file(), "Ultralytics could not read results.csv back"
    import torch

    ckpt = torch.load(run / "weights" / "last.pt", map_location="cpu", weights_only=False)
    assert ckpt["train_results"] and "rdna1/bypass_rate" in ckpt["train_results"]
    return report


@pytest.mark.slow
def test_train_api_under_gfx1010(synthetic_data, tmp_path, run_child_file, shared_cache, results_rows):
    kw = {**common(synthetic_data, tmp_path, "api", shared_cache), "faults": "gfx1010", "model": "yolov8n.yaml"}
    r = run_child_file("train", json.dumps([kw]), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = check_run(results_rows(tmp_path / "api"), tmp_path / "api", expect_bypass=True)
    assert report["bypassed"] > 0 and report["policy"] == "auto"
    assert any(m.startswith("model.") and v["bypass_share"] > 0 for m, v in report["modules"].items())
    assert any(m.startswith("model.model.") for s in report["signatures"] if s["bypassed"] for m in s["modules"])


@pytest.mark.slow
def test_add_callbacks_on_a_yolo_model_without_profile_bypasses_nothing(
    synthetic_data, tmp_path, run_child_file, results_rows
):
    kw = common(synthetic_data, tmp_path, "cb", tmp_path / "cache")
    plugin = {"guard": "auto", "cache": kw.pop("cache")}
    args = ("yolov8n.yaml", json.dumps(plugin), json.dumps(kw))
    r = run_child_file("train_add_callbacks", *args, env={"YOLO_RDNA1_FAULTS": ""}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = check_run(results_rows(tmp_path / "cb"), tmp_path / "cb", expect_bypass=False)
    assert report["calls"] > 0 and report["bypassed"] == 0


@pytest.mark.slow
def test_cli_train_then_resume_keeps_the_columns(synthetic_data, tmp_path, shared_cache, child_command, results_rows):
    kw = {**common(synthetic_data, tmp_path, "cli", shared_cache), "faults": "gfx1010", "thermal_limit": 90}
    args = [f"{k}={v}" for k, v in kw.items()]
    env = {**os.environ}
    # The first run is stopped after epoch 1 (as a crash would); resume=True finishes epoch 2.
    first = subprocess.run(
        child_command("cli_dies_after_first_epoch", "train", "model=yolov8n.yaml", *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert first.returncode == 3, first.stderr[-3000:]
    assert len(results_rows(tmp_path / "cli")) == 1
    last = tmp_path / "cli" / "weights" / "last.pt"
    second = subprocess.run(
        [sys.executable, "-m", "yolo_rdna1.cli", "train", f"model={last}", f"data={synthetic_data}", "resume=True"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    check_run(results_rows(tmp_path / "cli"), tmp_path / "cli", expect_bypass=True)
    options = json.loads((tmp_path / "cli" / "rdna1_options.json").read_text())
    assert options["faults"] == "gfx1010" and options["thermal_limit"] == 90
