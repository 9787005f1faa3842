"""2-epoch guarded trainings through each entry point: train(), add_callbacks, the CLI.

Each runs in a child process with a timeout. They check what a user reads afterwards:
results.csv with the rdna1 columns from row 1 (and Ultralytics reading it back: results.png,
train_results in the checkpoint), rdna1_report.json agreeing with the CSV, resume.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

RDNA1_COLUMNS = [
    "rdna1/bypass_rate",
    "rdna1/fallbacks",
    "rdna1/temp_edge_max",
    "rdna1/temp_junction_max",
    "rdna1/temp_mem_max",
    "rdna1/power_mean_w",
    "rdna1/busy_mean",
    "rdna1/thermal_pause_s",
]


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


def rows(run):
    with open(run / "results.csv", newline="") as f:
        return [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]


def check_run(run, expect_bypass: bool):
    table = rows(run)
    assert len(table) == 2
    for col in RDNA1_COLUMNS:
        assert col in table[0], f"{col} missing from results.csv"
        assert all(float(r[col]) == float(r[col]) for r in table), f"{col} is NaN"
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
def test_train_api_under_gfx1010(synthetic_data, tmp_path, run_child, shared_cache):
    kw = {**common(synthetic_data, tmp_path, "api", shared_cache), "faults": "gfx1010"}
    r = run_child(f"import yolo_rdna1\nyolo_rdna1.train(model='yolov8n.yaml', **{kw!r})", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = check_run(tmp_path / "api", expect_bypass=True)
    assert report["bypassed"] > 0 and report["policy"] == "auto"
    assert any(m.startswith("model.") and v["bypass_share"] > 0 for m, v in report["modules"].items())
    assert any(m.startswith("model.model.") for s in report["signatures"] if s["bypassed"] for m in s["modules"])


@pytest.mark.slow
def test_add_callbacks_on_a_yolo_model_without_profile_bypasses_nothing(synthetic_data, tmp_path, run_child):
    kw = common(synthetic_data, tmp_path, "cb", tmp_path / "cache")
    cache = kw.pop("cache")
    code = textwrap.dedent(f"""
        from ultralytics import YOLO
        import yolo_rdna1
        model = yolo_rdna1.add_callbacks(YOLO("yolov8n.yaml"), guard="auto", cache={cache!r})
        model.train(**{kw!r})
    """)
    r = run_child(code, env={"YOLO_RDNA1_FAULTS": ""}, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = check_run(tmp_path / "cb", expect_bypass=False)
    assert report["calls"] > 0 and report["bypassed"] == 0


@pytest.mark.slow
def test_cli_train_then_resume_keeps_the_columns(synthetic_data, tmp_path, shared_cache):
    kw = {**common(synthetic_data, tmp_path, "cli", shared_cache), "faults": "gfx1010", "thermal_limit": 90}
    args = [f"{k}={v}" for k, v in kw.items()]
    env = {**os.environ}
    # The first run is stopped after epoch 1 (as a crash would); resume=True finishes epoch 2.
    stop_after_one = textwrap.dedent("""
        import os, sys
        from ultralytics.engine.trainer import BaseTrainer
        save = BaseTrainer.save_model
        def save_then_die(self):
            save(self)
            if self.epoch == 0:
                os._exit(3)
        BaseTrainer.save_model = save_then_die
        from yolo_rdna1.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    first = subprocess.run(
        [sys.executable, "-c", stop_after_one, "train", "model=yolov8n.yaml", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert first.returncode == 3, first.stderr[-3000:]
    assert len(rows(tmp_path / "cli")) == 1
    last = tmp_path / "cli" / "weights" / "last.pt"
    second = subprocess.run(
        [sys.executable, "-m", "yolo_rdna1.cli", "train", f"model={last}", f"data={synthetic_data}", "resume=True"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    check_run(tmp_path / "cli", expect_bypass=True)
    options = json.loads((tmp_path / "cli" / "rdna1_options.json").read_text())
    assert options["faults"] == "gfx1010" and options["thermal_limit"] == 90
