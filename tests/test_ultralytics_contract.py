"""The contract with Ultralytics: what the plugin relies on is checked, and a change turns one feature off."""

import csv
import json
import logging

import pytest

from yolo_rdna1 import _ultralytics as ul


@pytest.fixture
def fresh(monkeypatch):
    """No earlier check in this process: each test sees its own result, and leaves none behind."""
    monkeypatch.setattr(ul, "_off", None)
    monkeypatch.setattr(ul, "_warned", set())
    return ul


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "yolo_rdna1" and r.levelno == logging.WARNING]


def test_the_installed_ultralytics_meets_the_contract(fresh, caplog):
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer.__new__(DetectionTrainer)  # the class is what is checked; no model is built
    assert ul.check_contract(trainer) == {}
    assert all(ul.enabled(f) for f in ul.FEATURES)
    assert _warnings(caplog) == []


def test_a_missing_internal_turns_off_what_needs_it_with_one_warning(fresh, monkeypatch, caplog):
    from ultralytics.engine.trainer import BaseTrainer

    monkeypatch.delattr(BaseTrainer, "_load_checkpoint_state")
    off = ul.check_contract()
    assert set(off) == {ul.RESUME, ul.MID_EPOCH}, "the mid-epoch checkpoints need the resume position"
    assert ul.enabled(ul.CSV_COLUMNS) and ul.enabled(ul.VAL_SHAPES)
    ul.check_contract()  # a resume builds a new trainer: the same news is not repeated
    (warning,) = _warnings(caplog)
    assert f"Ultralytics {ul.version()}" in warning and "BaseTrainer._load_checkpoint_state is missing" in warning
    assert "mid-epoch checkpoints off" in warning and "training goes on guarded" in warning


def test_changed_internals_turn_off_their_own_feature(fresh, monkeypatch):
    from ultralytics.data import build
    from ultralytics.engine.trainer import BaseTrainer

    def save_metrics(self, metrics, epoch):  # a second required argument: the plugin's wrapper would break it
        pass

    def build_yolo_dataset(cfg, img_path, batch, data, mode="train", rect=False, stride=32):  # no pad 0.5 any more
        return None

    monkeypatch.setattr(BaseTrainer, "save_metrics", save_metrics)
    monkeypatch.setattr(build, "build_yolo_dataset", build_yolo_dataset)
    off = ul.check_contract()
    assert set(off) == {ul.CSV_COLUMNS, ul.VAL_SHAPES}
    assert (
        "save_metrics takes other arguments" in off[ul.CSV_COLUMNS]
        and "build_yolo_dataset no longer has" in off[ul.VAL_SHAPES]
    )


def test_a_moved_module_or_class_turns_its_feature_off_instead_of_raising(fresh, monkeypatch, caplog):
    from ultralytics.nn import tasks

    monkeypatch.delattr(tasks, "BaseModel")  # as if a release renamed it: only the mid-epoch check reads it
    off = ul.check_contract()
    assert set(off) == {ul.MID_EPOCH}
    assert "its check failed (AttributeError" in off[ul.MID_EPOCH] and "BaseModel" in off[ul.MID_EPOCH]
    (warning,) = _warnings(caplog)
    assert "mid-epoch checkpoints off" in warning and "training goes on guarded" in warning


def test_off_features_are_skipped_where_they_are_used(fresh, monkeypatch):
    from yolo_rdna1.probe.discovery import discover

    monkeypatch.setattr(ul, "_off", {ul.VAL_SHAPES: "test", ul.CSV_COLUMNS: "test"})
    assert discover("yolov8n.yaml", imgsz=64, batch=2, train=False, val=True) == [], (
        "val shapes left to the unknown policy"
    )

    class Trainer:
        def save_metrics(self, metrics):
            pass

    trainer = Trainer()
    ul.add_results_columns(trainer, lambda: {"rdna1/bypass_rate": 0.0})
    assert "save_metrics" not in vars(trainer)


@pytest.mark.parametrize(
    "version, warned", [("8.3.253", False), ("8.4.190", False), ("8.5.0", True), ("9.0.1", True), ("8.2.103", True)]
)
def test_only_releases_outside_8_3_and_8_4_get_a_version_warning(fresh, monkeypatch, caplog, version, warned):
    import ultralytics

    monkeypatch.setattr(ultralytics, "__version__", version)
    assert ul.check_contract() == {}, "a newer release with the same internals keeps every feature"
    assert bool(_warnings(caplog)) == warned
    if warned:
        assert f"Ultralytics {version} is" in _warnings(caplog)[0]


def test_ultralytics_input_errors_are_told_from_bugs():
    from ultralytics.cfg import check_cfg

    with pytest.raises(TypeError) as e:
        check_cfg({"epochs": "abc"})
    assert (
        ul.is_input_error(e.value)
        and ul.message(e.value) == "'epochs=abc' is of invalid type str. 'epochs' must be an int (i.e. 'epochs=8')"
    )
    with pytest.raises(TypeError) as e:
        len(3)
    assert not ul.is_input_error(e.value)
    assert (
        ul.message(SyntaxError("'\x1b[31m\x1b[1mepoch\x1b[0m' is not a valid YOLO argument.\n"))
        == "'epoch' is not a valid YOLO argument."
    )


def test_training_finishes_guarded_when_an_internal_is_gone(fresh, monkeypatch, caplog, synthetic_data, tmp_path):
    """``_load_checkpoint_state`` removed: no mid-epoch checkpoints (one warning), the rest of the plugin works."""
    from ultralytics import YOLO
    from ultralytics.engine.trainer import BaseTrainer

    from yolo_rdna1 import add_callbacks
    from yolo_rdna1.supervision import journal
    from yolo_rdna1.supervision.checkpoint import EpochBatches

    monkeypatch.delattr(BaseTrainer, "_load_checkpoint_state")
    model = add_callbacks(YOLO("yolov8n.yaml"), checkpoint_minutes=0.0001, telemetry=0, thermal=False, probe=False)
    model.train(
        data=str(synthetic_data),
        epochs=1,
        imgsz=64,
        batch=4,
        device="cpu",
        workers=0,
        project=str(tmp_path),
        name="run",
        plots=False,
        val=True,
        seed=0,
    )
    run = tmp_path / "run"
    assert any("mid-epoch checkpoints off" in w and f"Ultralytics {ul.version()}" in w for w in _warnings(caplog))
    assert not isinstance(model.trainer.train_loader.batch_sampler, EpochBatches), (
        "the loader stays as Ultralytics built it"
    )
    assert [e for e in journal.read(run) if e["event"] == "checkpoint" and e.get("batch")] == [], (
        "no mid-epoch checkpoint"
    )
    with open(run / "results.csv", newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    assert len(rows) == 1 and "rdna1/bypass_rate" in rows[0], "the rdna1 columns still reach results.csv"
    assert json.loads((run / "rdna1_report.json").read_text())["calls"] > 0, "every conv still went through the guard"
