"""Ultralytics callbacks of yolo_rdna1: guard every conv of a training, and of ``val``,
``predict`` and ``export``; count what the guard routes.

In the style of ``ultralytics/utils/callbacks/*.py``: one plain function per event and a
``callbacks`` dict. The events that need the plugin's options receive them through
``functools.partial`` (see :func:`add_callbacks`), which cloudpickle sends by reference to DDP
ranks. All the work lives in :class:`yolo_rdna1.run.GuardedRun` (training) and
:mod:`yolo_rdna1.callbacks.lifecycle` (the other calls); these functions only glue.
"""

from __future__ import annotations

import functools
import json
import logging
import weakref
from pathlib import Path
from typing import Any

from .. import runfiles
from .._ultralytics import add_results_columns, check_contract, check_version
from ..files import atomic_write
from ..options import PluginOptions
from ..run import GuardedRun
from ..supervision.checkpoint import MidEpochCheckpoints
from . import lifecycle

LOGGER = logging.getLogger("yolo_rdna1")

#: The run of this process (Ultralytics trains one model per process at a time), and the last
#: one that ended (its totals and routes stay readable after training returns).
_RUN: GuardedRun | None = None
_LAST: GuardedRun | None = None
#: Mid-epoch checkpoints and resume position of the trainer of this process (None under DDP).
#: The trainer holds them (attribute ``_MID_ATTR``) and this module only a weak reference, so a
#: trainer dropped without its teardown is collected and its run seen to be over.
_MID: weakref.ref | None = None
_MID_ATTR = "_yolo_rdna1_mid_epoch"


def _mid() -> MidEpochCheckpoints | None:
    return _MID() if _MID is not None else None


#: The trainer whose run ``_RUN`` is: a run whose trainer was collected without its teardown is over.
_TRAINER: weakref.ref | None = None


def current_run() -> GuardedRun | None:
    """The training run in progress, None when there is none (a run whose trainer is gone ends here)."""
    if _RUN is not None and _TRAINER is not None and _TRAINER() is None:
        try:
            end_run()
        except Exception as e:  # the guard is off and the run over; a failing close must not fail the caller
            LOGGER.warning("yolo_rdna1: ending the run of a trainer that is gone failed (%r)", e)
    return _RUN


def end_run() -> None:
    """End the run of this process: record what was learned, unpatch, drop the mid-epoch checkpoints.

    ``teardown`` calls it (also after a crash in training); so does the ``Model.train`` wrapper
    when the trainer failed before ``train()``'s own teardown could run (Ultralytics 8.4 fires
    ``on_pretrain_routine_start`` in the trainer's constructor, before the dataset check). The run
    is over and the guard off whatever the closing steps raise.
    """
    global _RUN, _LAST, _MID, _TRAINER
    run, mid = _RUN, _mid()
    _RUN, _MID, _TRAINER = None, None, None
    try:
        if mid is not None:
            mid.close()
    finally:
        if run is not None:
            _LAST = run
            lifecycle.forget_last_call()
            run.finish()


def last_run() -> GuardedRun | lifecycle.CallSummary | None:
    """The training in progress, else what ended last: a training (its :class:`GuardedRun`) or a
    val/predict/export call (a :class:`~yolo_rdna1.callbacks.lifecycle.CallSummary`, whose
    ``summary`` is one line and ``final_totals`` the counts)."""
    return _RUN or lifecycle.last_call() or _LAST


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", -1))


def _options_for(trainer: Any, options: PluginOptions | None) -> PluginOptions:
    """The run's options; a resumed run keeps the ones it started with (a sidecar, not trainer.args)."""
    sidecar = Path(trainer.save_dir) / runfiles.OPTIONS
    if getattr(trainer.args, "resume", False) and sidecar.is_file():
        try:
            return PluginOptions.from_mapping(json.loads(sidecar.read_text()))
        except (ValueError, TypeError) as e:
            LOGGER.warning("yolo_rdna1: ignoring unreadable %s (%s)", sidecar, e)
    opts = options or PluginOptions()
    if _rank() <= 0:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(json.dumps(opts.as_dict(), indent=1))
    return opts


def on_pretrain_routine_start(trainer: Any, options: PluginOptions | None = None) -> None:
    """Before the trainer builds its model: attribute a crash, probe, enable the guard."""
    global _RUN, _MID, _TRAINER
    if _RUN is not None:
        end_run()
    check_contract(trainer)  # what Ultralytics changed turns its feature off here, not mid-run
    lifecycle.close_session()  # the training sets up its own guard, env profile and crash trail
    opts = _options_for(trainer, options)
    mid = MidEpochCheckpoints.attach(trainer, opts.checkpoint_minutes)  # a bad resume fails before probing
    setattr(trainer, _MID_ATTR, mid)
    _MID = weakref.ref(mid) if mid is not None else None
    _RUN = GuardedRun(opts, Path(trainer.save_dir), trainer.device, rank=_rank())
    try:
        _TRAINER = weakref.ref(trainer)
    except TypeError:  # a trainer without weak references: only teardown or Model.train end its run
        _TRAINER = None
    _RUN.start(trainer.args)


def on_pretrain_routine_end(trainer: Any, options: PluginOptions | None = None) -> None:
    """Label the modules for reports; put the rdna1 columns into every results row.

    DDP ranks above 0 never get on_pretrain_routine_start: they are set up here.
    """
    if _RUN is None:
        on_pretrain_routine_start(trainer, options)
    run = _RUN
    mid = _mid()
    if mid is not None:
        mid.setup_loader(trainer)
    if run is None or run.guard is None:
        return
    run.guard.label(getattr(trainer.model, "module", trainer.model), prefix="model")
    if getattr(trainer, "ema", None) is not None:
        run.guard.label(trainer.ema.ema, prefix="ema")
    if getattr(trainer.args, "resume", False) and _rank() <= 0:
        _trim_results(Path(trainer.save_dir), int(getattr(trainer, "start_epoch", 0)))
    add_results_columns(trainer, run.epoch_metrics)


def _trim_results(save_dir: Path, epochs_done: int) -> None:
    """Drop results.csv rows of epochs the checkpoint does not hold.

    A crash between save_metrics and save_model leaves a row for an epoch that the resumed run
    trains again; without this, that epoch would appear twice.
    """
    csv = save_dir / runfiles.RESULTS_CSV
    if not csv.is_file():
        return
    lines = csv.read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.strip() and float(line.split(",")[0]) <= epochs_done]
    if len(keep) != len(lines):
        atomic_write(csv, "\n".join(keep) + "\n")
        LOGGER.warning(
            "yolo_rdna1: removed %d results.csv row(s) of epochs past the checkpoint", len(lines) - len(keep)
        )


def on_train_start(trainer: Any) -> None:
    if _RUN is not None:
        _RUN.enter_training()
    mid = _mid()
    if mid is not None:
        mid.train_start(trainer)


def on_train_epoch_start(trainer: Any) -> None:
    if _RUN is not None:
        _RUN.epoch_start()
    mid = _mid()
    if mid is not None:
        mid.epoch_start(trainer)


def on_train_epoch_end(trainer: Any) -> None:
    """All ranks are here (rank 0 alone validates next): sum the ranks' counts for the CSV row."""
    if _RUN is not None:
        _RUN.train_epoch_end()


def _counting(on: bool) -> None:
    if _RUN is not None and _RUN.guard is not None:
        _RUN.guard.counting = on


def on_train_batch_start(trainer: Any) -> None:
    _counting(True)


def on_train_batch_end(trainer: Any) -> None:
    _counting(False)
    if _RUN is not None:
        _RUN.between_batches()
    mid = _mid()
    if mid is not None:
        mid.batch_end(trainer)


def on_val_start(validator: Any, options: PluginOptions | None = None) -> None:
    """In a training: building the val loader of a big dataset takes a while (progress, not a
    stall). A standalone validator (``model.val()``) runs under the plugin's guard."""
    if _RUN is not None:
        _RUN.heartbeat()
    else:
        lifecycle.event_start("val", validator, options)


def on_val_batch_start(validator: Any) -> None:
    if _RUN is not None:
        _counting(True)
    else:
        lifecycle.event_batch(validator, True)


def on_val_batch_end(validator: Any) -> None:
    if _RUN is not None:
        _counting(False)
        _RUN.heartbeat()
    else:
        lifecycle.event_batch(validator, False)


def on_val_end(validator: Any) -> None:
    if _RUN is None:
        lifecycle.event_end("val", validator)


def on_predict_start(predictor: Any, options: PluginOptions | None = None) -> None:
    lifecycle.event_start("predict", predictor, options)


def on_predict_batch_start(predictor: Any) -> None:
    lifecycle.event_batch(predictor, True)


def on_predict_batch_end(predictor: Any) -> None:
    lifecycle.event_batch(predictor, False)


def on_predict_end(predictor: Any) -> None:
    lifecycle.event_end("predict", predictor)


def on_export_start(exporter: Any, options: PluginOptions | None = None) -> None:
    lifecycle.event_start("export", exporter, options)


def on_export_end(exporter: Any) -> None:
    lifecycle.event_end("export", exporter)


def on_model_save(trainer: Any) -> None:
    """A checkpoint is on disk: the journal's resume point (rank 0 only, as Ultralytics saves)."""
    from ..supervision import journal

    if _RUN is not None:
        _RUN.heartbeat()
    journal.append(trainer.save_dir, "checkpoint", epoch=int(trainer.epoch) + 1, batch=0, path=str(trainer.last))


def on_train_end(trainer: Any) -> None:
    """Write rdna1_report.json and print its summary; drop the mid-epoch checkpoints of the finished run."""
    mid = _mid()
    if mid is not None:
        mid.train_end()
    if _RUN is None or _RUN.guard is None:
        return
    from ..report import summary_lines

    path = _RUN.write_report()
    for line in summary_lines(json.loads(path.read_text())):
        LOGGER.info(line)


def teardown(trainer: Any) -> None:
    """Also runs after a crash: record what was learned, unpatch torch."""
    end_run()


_NEEDS_OPTIONS = {
    "on_pretrain_routine_start",
    "on_pretrain_routine_end",
    "on_val_start",
    "on_predict_start",
    "on_export_start",
}

callbacks = {
    "on_pretrain_routine_start": on_pretrain_routine_start,
    "on_pretrain_routine_end": on_pretrain_routine_end,
    "on_train_start": on_train_start,
    "on_train_epoch_start": on_train_epoch_start,
    "on_train_epoch_end": on_train_epoch_end,
    "on_train_batch_start": on_train_batch_start,
    "on_train_batch_end": on_train_batch_end,
    "on_val_start": on_val_start,
    "on_val_batch_start": on_val_batch_start,
    "on_val_batch_end": on_val_batch_end,
    "on_val_end": on_val_end,
    "on_model_save": on_model_save,
    "on_train_end": on_train_end,
    "teardown": teardown,
    "on_predict_start": on_predict_start,
    "on_predict_batch_start": on_predict_batch_start,
    "on_predict_batch_end": on_predict_batch_end,
    "on_predict_end": on_predict_end,
    "on_export_start": on_export_start,
    "on_export_end": on_export_end,
}


def _ours(fn: Any) -> bool:
    fn = getattr(fn, "func", fn)
    return getattr(fn, "__module__", None) == __name__


def plugin_options(model_or_engine: Any) -> PluginOptions | None:
    """The options :func:`add_callbacks` registered on a model (or engine), None without them."""
    registry = getattr(model_or_engine, "callbacks", None)
    for fn in registry.get("on_predict_start", ()) if isinstance(registry, dict) else ():
        if _ours(fn) and isinstance(getattr(fn, "keywords", None), dict):
            return fn.keywords.get("options")
    return None


def add_callbacks(model_or_trainer: Any, **options: Any) -> Any:
    """Register the plugin on a ``YOLO`` model or a trainer and return it.

    Training, ``val()``, ``predict()`` (also ``stream=True`` and ``track()``) and ``export()``
    then run under the guard (see :mod:`yolo_rdna1.callbacks.lifecycle`). Options are validated
    now (see :class:`~yolo_rdna1.options.PluginOptions`), not when training starts. Calling it
    again replaces the earlier registration instead of adding to it.
    """
    opts = PluginOptions.from_mapping(options)
    check_version()  # before any training: one warning for a release outside the supported range
    registry = getattr(model_or_trainer, "callbacks", None)
    if not isinstance(registry, dict):
        raise TypeError(
            f"add_callbacks takes an Ultralytics YOLO model or trainer, got {type(model_or_trainer).__name__}"
        )
    for event, fn in callbacks.items():
        registry.setdefault(event, [])
        registry[event] = [f for f in registry[event] if not _ours(f)]
        registry[event].append(functools.partial(fn, options=opts) if event in _NEEDS_OPTIONS else fn)
    from ultralytics.engine.model import Model

    if isinstance(model_or_trainer, Model):
        lifecycle.install_model_scope()
    return model_or_trainer
