"""Edges of the guard's lifecycle: a trainer that fails to build, a run whose closing steps raise,
an engine that raises before its end event, ``device=-1`` and a malformed crash trail."""

from __future__ import annotations

import gc
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo_rdna1.guard import current, is_patched

IMAGES = [np.full((72, 96, 3), 60, np.uint8)] * 2


@pytest.fixture
def yolo(tmp_path):
    from ultralytics import YOLO

    import yolo_rdna1

    return yolo_rdna1.add_callbacks(YOLO("yolov8n.yaml"), guard="bypass", cache=str(tmp_path / "cache"))


def _train_missing_data(model_or_none, tmp_path: Path, **extra):
    return dict(
        data=str(tmp_path / "typo.yaml"),
        epochs=1,
        imgsz=64,
        batch=2,
        device="cpu",
        workers=0,
        project=str(tmp_path / "runs"),
        name="bad",
        plots=False,
        verbose=False,
        **extra,
    )


# -- 1: a trainer that fails to build ends its run --------------------------------------------------
def test_a_training_whose_data_file_is_missing_leaves_no_guard_and_the_next_predict_gets_its_own_summary(
    yolo, tmp_path
):
    from yolo_rdna1.callbacks import current_run, last_run

    with pytest.raises(RuntimeError, match="typo.yaml"):
        yolo.train(**_train_missing_data(yolo, tmp_path))
    assert current_run() is None and current() is None and not is_patched()
    yolo.predict(IMAGES, imgsz=64, verbose=False)
    summary = last_run()
    assert summary.kind == "predict" and summary.final_totals["calls"] > 0 and not is_patched()


def test_a_hand_built_trainer_that_fails_to_build_ends_its_run_once_collected(yolo, tmp_path):
    from ultralytics.models.yolo.detect import DetectionTrainer

    from yolo_rdna1.callbacks import current_run, last_run
    from yolo_rdna1.callbacks.lifecycle import _training_active

    overrides = {**_train_missing_data(yolo, tmp_path), "model": "yolov8n.yaml"}
    with pytest.raises(RuntimeError, match="typo.yaml"):
        DetectionTrainer(overrides=overrides, _callbacks={k: list(v) for k, v in yolo.callbacks.items()})
    gc.collect()  # the trainer is gone without train(): its teardown never ran
    assert not _training_active() and current_run() is None and not is_patched()
    yolo.predict(IMAGES, imgsz=64, verbose=False)
    assert last_run().kind == "predict" and not is_patched()


# -- 2: a run's closing steps that raise still unpatch -----------------------------------------------
@pytest.mark.parametrize("failing", ["services.close", "plan.close", "record_runtime_failures", "run_totals"])
def test_a_failing_closing_step_still_takes_the_guard_off_and_ends_the_run(failing, tmp_path, monkeypatch):
    from yolo_rdna1.callbacks import rdna1
    from yolo_rdna1.options import PluginOptions
    from yolo_rdna1.run import GuardedRun

    run = GuardedRun(PluginOptions(guard="bypass", cache=str(tmp_path / "cache")), tmp_path, torch.device("cpu"))
    run.start(None)
    assert is_patched()

    def boom(*args, **kwargs):
        raise OSError(f"{failing} failed")

    owner, _, name = failing.rpartition(".")
    monkeypatch.setattr(getattr(run, owner) if owner else run, name, boom)
    monkeypatch.setattr(rdna1, "_RUN", run)
    try:
        with pytest.raises(OSError, match=f"{failing} failed"):
            rdna1.teardown(None)
        assert not is_patched() and current() is None
        assert rdna1.current_run() is None and rdna1._LAST is run
    finally:
        monkeypatch.undo()
        run.services.close()  # what the stubbed close left running (the telemetry sampler's thread)


# -- 3: an event-owned call that raised ------------------------------------------------------------
def test_a_hand_built_predictor_that_raised_mid_batch_does_not_keep_the_guard_for_the_next_call(yolo):
    from ultralytics.models.yolo.detect import DetectionPredictor

    from yolo_rdna1.callbacks import last_run

    own = {k: list(v) for k, v in yolo.callbacks.items()}  # the model's callbacks stay as they are
    predictor = DetectionPredictor(overrides={"imgsz": 64, "verbose": False, "save": False}, _callbacks=own)

    def boom(engine):
        raise RuntimeError("user callback failed")

    predictor.add_callback("on_predict_postprocess_end", boom)
    with pytest.raises(RuntimeError, match="user callback failed"):
        predictor(IMAGES, model=yolo.model)
    stale = current()
    assert stale is not None  # no end event came: its guard is on until the next call
    seen = []
    yolo.add_callback("on_predict_postprocess_end", lambda engine: seen.append(current()))
    yolo.predict(IMAGES, imgsz=64, verbose=False)
    summary = last_run()
    assert seen and seen[0] is not None and not is_patched() and current() is None
    assert summary.kind == "predict" and summary.final_totals["calls"] > 0


def test_an_engine_started_inside_a_running_hand_built_engine_keeps_the_outer_call(yolo):
    from ultralytics.models.yolo.detect import DetectionPredictor

    from yolo_rdna1.callbacks import lifecycle

    own = {k: list(v) for k, v in yolo.callbacks.items()}
    predictor = DetectionPredictor(overrides={"imgsz": 64, "verbose": False, "save": False}, _callbacks=own)
    outer = []

    def nested(engine):
        if not outer:
            outer.append(lifecycle._ACTIVE)
            yolo.predict(IMAGES[:1], imgsz=64, verbose=False)  # a call from inside the hand-built one's batch
            outer.append(lifecycle._ACTIVE)

    predictor.add_callback("on_predict_postprocess_end", nested)
    predictor(IMAGES, model=yolo.model)
    assert outer[0] is not None and outer[1] is outer[0] and not outer[0].scoped
    assert not is_patched() and lifecycle._ACTIVE is None


# -- 4: device=-1 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", [-1, "-1", [-1], "cuda:-1"])
def test_device_minus_one_resolves_to_the_default_device_instead_of_skipping_the_guard(yolo, device):
    from yolo_rdna1.callbacks.lifecycle import _call_device
    from yolo_rdna1.device import parse_device

    assert _call_device(yolo, "predict", {"device": device}) == parse_device(None)


def test_a_predict_with_device_minus_one_is_guarded(yolo):
    from yolo_rdna1.callbacks import last_run

    seen = []
    yolo.add_callback("on_predict_postprocess_end", lambda engine: seen.append(current()))
    yolo.predict(IMAGES, imgsz=64, verbose=False, device=-1)
    assert seen and seen[0] is not None and last_run().kind == "predict" and not is_patched()


def test_a_device_the_plugin_cannot_name_is_said_unguarded(yolo, caplog):
    with pytest.raises(Exception):  # noqa: B017 - Ultralytics rejects it; the point is the plugin's warning
        yolo.predict(IMAGES, imgsz=64, verbose=False, device="tpu")
    assert "predict is not guarded" in caplog.text and not is_patched()


# -- 5: a malformed session.json in a dead process's trail -------------------------------------------
@pytest.mark.parametrize("content", ["[1, 2]", '{"device": "cardA"}', '{"device": 1, "env_profile": "default"}', "7"])
def test_a_crash_trail_with_a_malformed_session_file_is_removed_with_a_warning(content, tmp_path, caplog):
    from yolo_rdna1.callbacks.lifecycle import INFLIGHT, SESSION_FILE, attribute_dead_sessions
    from yolo_rdna1.options import PluginOptions
    from yolo_rdna1.run import breadcrumb_stem
    from yolo_rdna1.signature import ConvSignature
    from yolo_rdna1.verdicts.breadcrumb import Breadcrumb

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    trail = tmp_path / INFLIGHT / f"pid{dead}@{socket.gethostname()}"
    crumb = Breadcrumb(breadcrumb_stem(trail))
    key = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 1).key()
    crumb.enter(crumb.register(key))
    (trail / SESSION_FILE).write_text(content)
    caplog.set_level(logging.WARNING, logger="yolo_rdna1")
    assert attribute_dead_sessions(PluginOptions(cache=str(tmp_path))) == []
    assert not trail.exists() and "unreadable crash trail" in caplog.text
    json.loads(content)  # the file parsed: only its shape was wrong


def test_a_hand_built_predictor_that_raised_mid_batch_gets_a_call_of_its_own_when_run_again(yolo):
    from ultralytics.models.yolo.detect import DetectionPredictor

    from yolo_rdna1.callbacks import last_run

    own = {k: list(v) for k, v in yolo.callbacks.items()}
    predictor = DetectionPredictor(overrides={"imgsz": 64, "verbose": False, "save": False}, _callbacks=own)
    failed = []

    def boom_once(engine):
        if not failed:
            failed.append(True)
            raise RuntimeError("user callback failed")

    predictor.add_callback("on_predict_postprocess_end", boom_once)
    with pytest.raises(RuntimeError, match="user callback failed"):
        predictor(IMAGES, model=yolo.model)
    stale = last_run()
    predictor(IMAGES, model=yolo.model)
    summary = last_run()
    assert summary is not stale and summary.kind == "predict" and not is_patched()
    # the second call's batches only (the failed call's first batch is in the stale call's summary)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in yolo.model.modules())
    assert summary.final_totals["calls"] == convs
