"""The one place yolo_rdna1 touches Ultralytics internals, and the check that they still hold.

Callbacks and the trainer attributes documented on ``BaseTrainer`` (``args``, ``save_dir``,
``epoch``, ``ema``, ``tloss``, ...) are Ultralytics' public face. Everything beyond it that the
plugin reads, wraps or replaces goes through a function here, and each says what it relies on.
Checked against Ultralytics 8.3 (8.3.213 to 8.3.253) and 8.4 (8.4.190).

:func:`check_contract` runs at ``on_pretrain_routine_start`` (before the trainer builds its
model, so it looks at the trainer's class and at Ultralytics' modules, not at a model). Where a
relied-on internal is missing or changed, the feature that needs it is turned off for the
process, with one warning naming the Ultralytics version, and training goes on guarded:

* :data:`RESUME`: continuing a mid-epoch checkpoint at its batch, and the dataset check of a
  resume (a wrapped ``resume_training``, the private ``_load_checkpoint_state``);
* :data:`MID_EPOCH`: writing mid-epoch checkpoints (the train loader's batch sampler, per-batch
  stubs for the batches a resume passes over, ``save_model``'s payload; needs :data:`RESUME`);
* :data:`CSV_COLUMNS`: the rdna1 columns of results.csv (a wrapped ``save_metrics``);
* :data:`VAL_SHAPES`: discovering the validation batches' shapes before training (the
  validator's batch size and rectangular padding, re-derived); without it the validation
  signatures get the ``unknown`` policy when they first run.

Call sites ask :func:`enabled`. Nothing here runs per batch; the check reads a few signatures
and three short function sources (a few ms).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterable
from copy import deepcopy
from typing import Any, Callable

LOGGER = logging.getLogger("yolo_rdna1")

RESUME = "resume position"
MID_EPOCH = "mid-epoch checkpoints"
CSV_COLUMNS = "rdna1 columns in results.csv"
VAL_SHAPES = "validation-shape discovery"
FEATURES = (RESUME, MID_EPOCH, CSV_COLUMNS, VAL_SHAPES)

#: The oldest release supported: the first trainer with ``_load_checkpoint_state``, which a resume
#: within the first epoch needs (bisected over 8.3 wheels).
OLDEST = (8, 3, 213)
#: (major, minor) releases whose internals this module was checked against.
KNOWN = ((8, 3), (8, 4))
#: Releases every feature was seen to work with (for the warning's "what to do").
TESTED = "8.3.213, 8.3.253 and 8.4.190"

#: Tasks whose validator runs at the training batch size (8.4's ``_setup_train``; 8.3: obb only).
_VAL_AT_TRAIN_BATCH = frozenset({"obb", "semantic", "depth"})
#: Rectangular validation batches are padded by this many strides (``build_yolo_dataset``).
RECT_PAD = 0.5
#: Keys of ``save_model``'s payload that Ultralytics' resume reads back.
_PAYLOAD_KEYS = ("epoch", "best_fitness", "ema", "updates", "optimizer", "train_args")

#: Features turned off in this process (feature -> why), from the last :func:`check_contract`;
#: None until one ran.
_off: dict[str, str] | None = None
_warned: set[str] = set()


# -- the check -------------------------------------------------------------------------------------
def version() -> str:
    import ultralytics

    return str(getattr(ultralytics, "__version__", "unknown"))


def untested(text: str) -> str | None:
    """Why release ``text`` of Ultralytics is outside what the plugin supports, or None inside it."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    if m is None:
        return f"Ultralytics {text} has a version yolo_rdna1 cannot read"
    release = tuple(int(p) for p in m.groups())
    if release[:2] > KNOWN[-1]:
        newest = ".".join(map(str, KNOWN[-1]))
        return (
            f"Ultralytics {text} is newer than {newest}, the last release yolo_rdna1 was checked against "
            f"(pin 'ultralytics<{KNOWN[-1][0]}.{KNOWN[-1][1] + 1}' if something breaks)"
        )
    if release < OLDEST:
        oldest = ".".join(map(str, OLDEST))
        return f"Ultralytics {text} is older than {oldest}, the first release yolo_rdna1 supports (upgrade Ultralytics)"
    return None


def check_version() -> str | None:
    """Warn once per process when the installed Ultralytics is outside the supported range."""
    why = untested(version())
    if why and why not in _warned:
        _warned.add(why)
        LOGGER.warning("yolo_rdna1: %s", why)
    return why


def _method(cls: type, name: str, nargs: int) -> str | None:
    """Why ``cls.name`` cannot be called (or replaced) with ``nargs`` positional arguments, or None."""
    fn = getattr(cls, name, None)
    if not callable(fn):
        return f"{cls.__name__}.{name} is missing"
    try:
        inspect.signature(fn).bind(None, *([None] * nargs))
    except TypeError:
        return f"{cls.__name__}.{name} takes other arguments now"
    except ValueError:  # no signature to read (a builtin): cannot tell
        return None
    return None


def _source_lacks(obj: Any, needles: Iterable[str]) -> str | None:
    """Which of ``needles`` is no longer in ``obj``'s source; None when all are (or it cannot be read)."""
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):  # an install without sources: nothing to compare
        return None
    missing = [n for n in needles if n not in source]
    return (
        f"{getattr(obj, '__qualname__', None) or getattr(obj, '__name__', obj)} no longer has {missing[0]!r}"
        if missing
        else None
    )


def _first(*reasons: str | None) -> str | None:
    return next((r for r in reasons if r), None)


def _resume_off(cls: type) -> str | None:
    return _first(_method(cls, "resume_training", 1), _method(cls, "_load_checkpoint_state", 1))


def _mid_epoch_off(cls: type) -> str | None:
    from ultralytics.data import base, build
    from ultralytics.nn import tasks

    return _first(
        _method(cls, "preprocess_batch", 1),
        _method(cls, "optimizer_step", 0),
        _method(cls, "plot_training_samples", 2),
        _method(tasks.BaseModel, "loss", 1),
        _method(tasks.BaseModel, "init_criterion", 0),
        None
        if callable(getattr(getattr(build, "InfiniteDataLoader", None), "reset", None))
        else "InfiniteDataLoader.reset is missing",
        _method(base.BaseDataset, "load_image", 1),
        _source_lacks(cls.save_model, [f'"{k}"' for k in _PAYLOAD_KEYS])
        if callable(getattr(cls, "save_model", None))
        else "save_model is missing",
    )


def _csv_columns_off(cls: type) -> str | None:
    return _method(cls, "save_metrics", 1)


def _val_shapes_off(cls: type) -> str | None:
    from ultralytics.data import base, build
    from ultralytics.engine import trainer

    return _first(
        _source_lacks(trainer, ["batch_size * 2"]),  # the val loader's batch (_setup_train, 8.4: _build_train_pipeline)
        _source_lacks(build.build_yolo_dataset, ["else 0.5"])
        if hasattr(build, "build_yolo_dataset")
        else "build_yolo_dataset is missing",
        _source_lacks(base.BaseDataset.set_rectangle, ["self.imgsz / self.stride + self.pad"])
        if hasattr(base.BaseDataset, "set_rectangle")
        else "BaseDataset.set_rectangle is missing",
    )


#: Feature -> the check of what it relies on (None: all there), in dependency order.
_CHECKS = (
    (RESUME, _resume_off),
    (MID_EPOCH, _mid_epoch_off),
    (CSV_COLUMNS, _csv_columns_off),
    (VAL_SHAPES, _val_shapes_off),
)


def _why_off(cls: type) -> dict[str, str]:
    """Feature -> why it cannot work with trainer class ``cls`` and the installed Ultralytics.

    A check that itself fails (a module or class of Ultralytics moved or renamed) turns its
    feature off: the training goes on without it rather than ending at the check.
    """
    off: dict[str, str] = {}
    for feature, check in _CHECKS:
        if feature == MID_EPOCH and RESUME in off:
            off[feature] = "it needs the resume position"
            continue
        try:
            why = check(cls)
        except Exception as e:  # noqa: BLE001 - any change of an internal turns the feature off
            why = f"its check failed ({type(e).__name__}: {e})"
        if why:
            off[feature] = why
    return off


def check_contract(trainer: Any = None) -> dict[str, str]:
    """Check what the plugin relies on against ``trainer``'s class (or ``BaseTrainer``).

    Turns off, for this process, each feature whose internals are missing or changed, and warns
    once (per process and message) naming the Ultralytics version; a release outside the supported
    range gets :func:`check_version`'s one warning even when everything checks out. Returns the
    features turned off.
    """
    global _off
    from ultralytics.engine.trainer import BaseTrainer

    ver = version()
    off = _why_off(type(trainer) if trainer is not None else BaseTrainer)
    _off = off
    check_version()
    if off:
        changed = ", ".join(f"{f} off ({why})" for f, why in off.items())
        message = (
            f"yolo_rdna1: Ultralytics {ver} changed what yolo_rdna1 relies on: {changed}; "
            f"training goes on guarded (every feature works with Ultralytics {TESTED})"
        )
        if message not in _warned:
            _warned.add(message)
            LOGGER.warning(message)
    return dict(off)


def enabled(feature: str) -> bool:
    """Whether ``feature`` works with the installed Ultralytics (checks ``BaseTrainer`` if nothing was checked yet)."""
    if _off is None:
        check_contract()
    return feature not in (_off or {})


# -- results.csv -----------------------------------------------------------------------------------
def add_results_columns(trainer: Any, columns: Callable[[], dict[str, float]]) -> None:
    """Put ``columns()`` into every results.csv row and into ``trainer.metrics``.

    Relies on ``save_metrics(metrics)`` writing the CSV row (header once, positional values)
    before ``on_fit_epoch_end`` fires, so keys added in that callback miss the file; loggers
    (TensorBoard, W&B, MLflow, ...) read ``trainer.metrics`` in ``on_fit_epoch_end``, after it.
    Wraps the method on the instance, once per trainer; off without :data:`CSV_COLUMNS`.
    """
    if not enabled(CSV_COLUMNS) or "save_metrics" in vars(trainer):
        return
    save_metrics = trainer.save_metrics

    def save_metrics_with_rdna1(metrics: dict) -> None:
        extra = columns()
        if isinstance(getattr(trainer, "metrics", None), dict):
            trainer.metrics.update(extra)
        save_metrics({**metrics, **extra})

    trainer.save_metrics = save_metrics_with_rdna1


# -- resume ----------------------------------------------------------------------------------------
def replace_resume_training(trainer: Any, replacement: Callable[[Any], None]) -> Callable[[Any], None]:
    """Put ``replacement`` in place of ``trainer.resume_training``; returns the original.

    Relies on ``_setup_train`` calling ``self.resume_training(ckpt)`` once, after the train
    loader, optimizer and EMA exist and before ``on_pretrain_routine_end``: the only point
    between Ultralytics loading a resume checkpoint and training with it.
    """
    original = trainer.resume_training
    trainer.resume_training = replacement
    return original


def restore_resume_training(trainer: Any) -> None:
    """Undo :func:`replace_resume_training` (the class's method shows through again)."""
    trainer.__dict__.pop("resume_training", None)


def load_checkpoint_state(trainer: Any, ckpt: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer, scaler, EMA and best fitness into the trainer, nothing else.

    The private ``_load_checkpoint_state`` (8.3.213 on) is what ``resume_training`` does
    besides setting ``start_epoch``, which rejects epoch 0 (a checkpoint written in the first epoch).
    """
    trainer._load_checkpoint_state(ckpt)


# -- the train loader and the loop -----------------------------------------------------------------
def train_batch_sampler(loader: Any) -> Any:
    """The ``BatchSampler`` under the train loader's repeating sampler, or None.

    Relies on ``InfiniteDataLoader`` wrapping its batch sampler in ``_RepeatSampler`` (which keeps
    it as ``.sampler``) and taking its length from that.
    """
    return getattr(getattr(loader, "batch_sampler", None), "sampler", None)


def replace_batching(loader: Any, batch_sampler: Any, collate_fn: Callable) -> None:
    """Give a built ``InfiniteDataLoader`` another batch sampler and collate function.

    ``batch_sampler`` must repeat forever, as ``_RepeatSampler`` does (the loader keeps one
    iterator, and its workers, across epochs) and keep the original as ``.sampler``.
    ``DataLoader`` forbids setting ``batch_sampler`` after construction, so it is set the way
    ``InfiniteDataLoader.__init__`` sets its own; ``reset()`` drops an iterator made earlier.
    """
    object.__setattr__(loader, "batch_sampler", batch_sampler)
    loader.collate_fn = collate_fn
    loader.reset()


def placeholder_stubs(trainer: Any, model: Any, zero_loss: Callable) -> list[tuple[Any, str, Callable]]:
    """(object, method, no-op) for each per-batch call that a placeholder batch must not do.

    Relies on the training loop calling, per batch, ``preprocess_batch(batch)``, the model's
    ``loss(batch, preds=None)`` (through its forward), ``optimizer_step()`` and
    ``plot_training_samples(batch, ni)``, all looked up on the instances at call time.
    """
    return [
        (trainer, "preprocess_batch", lambda batch: batch),
        (trainer, "optimizer_step", lambda: None),
        (trainer, "plot_training_samples", lambda batch, ni: None),
        (model, "loss", zero_loss),
    ]


def ensure_criterion(model: Any) -> None:
    """Build the model's loss criterion as its first ``loss`` call would (the epoch end reads it)."""
    if getattr(model, "criterion", None) is None and hasattr(model, "init_criterion"):
        model.criterion = model.init_criterion()


def mosaic_buffer(dataset: Any) -> list[int]:
    """Indices of the images mosaic picks partners from (``BaseDataset.buffer``; ``load_image`` appends)."""
    return list(getattr(dataset, "buffer", []))


def restore_mosaic_buffer(dataset: Any, buffer: list[int]) -> None:
    """Reload the mosaic buffer by loading its images again, in order (``load_image`` appends each)."""
    if not buffer or not hasattr(dataset, "buffer") or not hasattr(dataset, "load_image"):
        return
    dataset.buffer.clear()
    for i in buffer:
        dataset.load_image(int(i))


# -- checkpoints -----------------------------------------------------------------------------------
def save_model_payload(trainer: Any, epoch: int) -> dict[str, Any]:
    """``save_model``'s checkpoint dict, rebuilt with the model, EMA and optimizer in fp32.

    Relies on Ultralytics' resume reading the keys of :data:`_PAYLOAD_KEYS` (checked against
    ``save_model``'s source) and on ``YOLO(path)`` loading the EMA from ``ema``.
    """
    from datetime import datetime

    import torch
    from ultralytics import __version__

    ema = deepcopy(trainer.ema.ema).to(memory_format=torch.contiguous_format)
    if hasattr(ema, "criterion"):
        ema.criterion = None  # training-only state, as save_model drops it
    return {
        "epoch": epoch,
        "best_fitness": trainer.best_fitness,
        "stopper": {"best_fitness": trainer.stopper.best_fitness, "best_epoch": trainer.stopper.best_epoch},
        "model": None,
        "ema": ema,
        "updates": trainer.ema.updates,
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "train_args": vars(trainer.args),
        "train_metrics": {**(trainer.metrics or {}), "fitness": trainer.fitness},
        "train_results": trainer.read_results_csv() if hasattr(trainer, "read_results_csv") else {},
        "date": datetime.now().astimezone().isoformat(),
        "version": __version__,
    }


def model_yaml(path: str) -> dict[str, Any]:
    """A model YAML as Ultralytics reads it (``yaml_file`` and ``scale`` filled in from the name)."""
    from ultralytics.nn.tasks import yaml_model_load

    return yaml_model_load(path)


# -- what the validator will run -------------------------------------------------------------------
def val_batch_size(batch: int, task: str = "detect") -> int:
    """The validator's batch size during training: ``_setup_train`` doubles it for most tasks."""
    return int(batch) if task in _VAL_AT_TRAIN_BATCH else 2 * int(batch)


# -- errors ----------------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Modules whose own checks raise on bad arguments, datasets and files (not on bugs).
_INPUT_MODULES = ("ultralytics/cfg/", "ultralytics/data/utils.py", "ultralytics/utils/checks.py")


def is_input_error(exc: BaseException) -> bool:
    """True for an error Ultralytics raised about its input: an argument, a dataset, a file.

    Its config checks raise SyntaxError/TypeError/ValueError/KeyError, ``check_det_dataset`` and
    ``check_file`` FileNotFoundError/SyntaxError/AssertionError; the innermost frame tells them
    apart from the same types raised by a bug.
    """
    if not isinstance(exc, (SyntaxError, TypeError, ValueError, KeyError, FileNotFoundError, AssertionError)):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and any(m in tb.tb_frame.f_code.co_filename.replace("\\", "/") for m in _INPUT_MODULES)


def message(exc: BaseException) -> str:
    """An Ultralytics error message as one plain line (8.3 colours argument names; emojis dropped)."""
    text = _ANSI.sub("", str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    text = text.replace("❌", "").replace("⚠️", "")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def check_args(args: dict[str, Any]) -> None:
    """Ultralytics' own checks of training arguments: names (SyntaxError), then types and ranges."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg, check_dict_alignment

    check_dict_alignment(DEFAULT_CFG_DICT, args)
    check_cfg(dict(args))  # it converts values in place: on a copy


def check_dataset(data: str) -> None:
    """Ultralytics' own check of a dataset YAML file: keys, class names, images (downloaded as training would).

    A name that is not a file (``coco8.yaml``) only has to be one Ultralytics can find (``check_file``
    searches its own configs); such a dataset downloads on first use, which is the training's work.
    """
    from pathlib import Path

    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils.checks import check_file

    if Path(data).is_file():
        check_det_dataset(data)
    else:
        check_file(data)
