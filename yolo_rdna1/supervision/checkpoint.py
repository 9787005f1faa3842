"""Mid-epoch checkpoints: a crash costs minutes of a 5-hour epoch, not the epoch.

Ultralytics writes ``last.pt`` once per epoch. With ``checkpoint_minutes`` set, the plugin also
writes ``weights/mid.pt`` every that many minutes, right after an optimizer step (so no
accumulated gradient is lost). It holds everything Ultralytics' ``save_model`` puts in
``last.pt`` (so ``YOLO("mid.pt")`` loads it like any checkpoint; its ``epoch`` is the last fully
finished epoch, or 0 in the first one) plus, under :data:`RESUME_KEY`, the position inside the
epoch and what a continuation needs to see the same batches:

* ``epoch``, ``batch`` (batches done in that epoch), ``batches`` (batches per epoch);
* ``order``: the epoch's sample order. The train loader's batch sampler is replaced by
  :class:`EpochBatches`, whose order depends only on (seed, epoch), like torch's
  ``DistributedSampler.set_epoch``; Ultralytics' own ``RandomSampler`` draws each epoch from one
  generator whose history a restarted process does not have;
* ``rng``: torch, CUDA, numpy and ``random`` states; ``buffer``: the dataset's mosaic buffer
  (the recently loaded images mosaic picks partners from);
* ``model``: the trained weights in fp32 (Ultralytics resumes from the EMA, in fp16), and the EMA
  and optimizer in fp32 (Ultralytics halves both);
* ``tloss``: the running mean of the epoch's losses, ``names`` and ``train_images`` of the dataset.

Writes are atomic: a temp file in the same folder, flushed and fsynced, the older ``mid.pt``
renamed to ``mid.prev.pt``, then the temp file renamed to ``mid.pt``. A newest checkpoint that
cannot be read falls back to the next one, with one warning (:func:`newest`).

**How a resume skips the done batches.** Ultralytics keeps the batch index, the warmup position
(``ni``), the step counter and the running-loss divisor in local variables of its training
loop. Starting the loader late would shift all of them. So the resumed epoch's first ``batch``
batches go through the loop as *placeholders*: the sampler yields empty index lists (no image is
read), the collate function turns them into an empty batch, and for those batches the trainer's
``preprocess_batch``, ``optimizer_step`` and ``plot_training_samples`` and the model's ``loss`` are
replaced on the instances by no-ops (a zero loss). The loop's own counters then advance exactly as
they did, the warmup learning rate and ``accumulate`` follow the true batch index, and when the
placeholders are through the running loss, the RNG states and the mosaic buffer are set back to
what they were when the checkpoint was written. Nothing in Ultralytics' source is changed; the
instance attributes are removed again after the placeholders.

Exact with ``workers=0`` (Ultralytics' default on the CPU): with worker processes the sample order
is the same but their augmentation RNGs and mosaic buffers are not restored. With gradient accumulation
(``nbs > batch``) the first optimizer step after a resume can come up to ``accumulate - 1``
batches early, as after Ultralytics' own resume at an epoch boundary (the step counter is one of
those local variables). Single-process training only: under DDP (and with ``compile``), only the
end-of-epoch ``last.pt`` is written.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import _ultralytics as ul
from .. import runfiles
from ..errors import Rdna1Error
from ..files import aside_path, atomic_write
from . import journal

LOGGER = logging.getLogger("yolo_rdna1")

#: Top-level key of a mid-epoch checkpoint holding the position and what a continuation needs.
RESUME_KEY = "rdna1_resume"
MID_NAME, PREV_NAME, LAST_NAME = runfiles.MID, runfiles.MID_PREV, runfiles.LAST
#: Key marking the empty batch a resumed epoch passes through instead of a done batch.
PLACEHOLDER_KEY = "rdna1_placeholder"
#: Exit code of a supervised child that stopped on bad input (a resume that cannot be right).
BAD_INPUT_EXIT_CODE = 85

_REQUIRED = ("epoch", "ema", "optimizer", "updates", "train_args")
_REQUIRED_RESUME = ("epoch", "batch", "batches", "order", "rng", "buffer", "tloss", "model", "names", "train_images")


class ResumeError(Rdna1Error):
    """A resume that cannot be right (another model or dataset, not a run, nothing to resume).

    Raised before training starts; the message names the problem and the fix.
    """


class CorruptCheckpoint(Rdna1Error):
    """A checkpoint file that cannot be resumed from: truncated, unpickleable or missing keys."""


class CheckpointUnloadable(ResumeError):
    """A checkpoint that this environment cannot load although the file looks intact (a module
    missing or of another version, no memory, an I/O or permission error): it is kept as it is,
    and the run stops with the message, since resuming from an older one would overwrite it."""


#: Errors of ``torch.load`` that say the file itself is damaged (its bytes, not this environment).
_DAMAGED = (pickle.UnpicklingError, EOFError, KeyError, ValueError, zipfile.BadZipFile)
#: Phrases of torch's zip reader about an archive that is not whole.
_BAD_ARCHIVE = re.compile(
    r"PytorchStreamReader|zip archive|central directory|archive is corrupt|not a ZIP|failed finding", re.I
)


@dataclass(frozen=True, order=True)
class Position:
    """Where training stands: ``batch`` batches of ``epoch`` (0-based) are done."""

    epoch: int
    batch: int = 0

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, batch {self.batch}"


@dataclass(frozen=True)
class Found:
    """A readable checkpoint of a run dir: what :func:`newest` returns."""

    path: Path
    position: Position
    finished: bool
    architecture: tuple | None


# -- reading ---------------------------------------------------------------------------------------
def load(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint and check it can be resumed from (or is a finished run's last.pt).

    ``weights_only=False`` on purpose, as Ultralytics loads its checkpoints: they pickle the
    model classes. Only files of the run being resumed are loaded this way.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        if _damaged(path, e):
            raise CorruptCheckpoint(f"{path.name} cannot be read ({why})") from e
        raise CheckpointUnloadable(
            f"{path} cannot be loaded here ({why}), but the file does not look damaged, so it is "
            "kept as it is: fix what the error names (a missing module or another torch/Ultralytics "
            "version than the one that wrote it, memory, disk or permissions) and resume again"
        ) from e
    if not isinstance(ckpt, dict):
        raise CorruptCheckpoint(f"{path.name} is not a checkpoint (a {type(ckpt).__name__}, not a dict)")
    if _finished(ckpt):
        return ckpt
    missing = [k for k in _REQUIRED if k not in ckpt]
    state = ckpt.get(RESUME_KEY)
    if isinstance(state, dict):
        missing += [f"{RESUME_KEY}.{k}" for k in _REQUIRED_RESUME if k not in state]
    elif state is not None:
        missing.append(RESUME_KEY)
    if missing or not isinstance(ckpt.get("ema"), torch.nn.Module) or ckpt.get("optimizer") is None:
        raise CorruptCheckpoint(f"{path.name} lacks what a resume needs ({', '.join(missing) or 'ema, optimizer'})")
    return ckpt


def _damaged(path: Path, error: Exception) -> bool:
    """Whether ``torch.load`` failed on the file's bytes (True) or on this environment (False).

    Only a file known to be damaged is moved aside: an import, memory or I/O error says nothing
    about the file, and moving an intact checkpoint aside loses it. Torch's zip reader reports
    a truncated archive as ``OSError(EINVAL)`` or a ``RuntimeError``; which it is decides
    :func:`_archive_damaged`, by reading the archive's own structure and checksums.
    """
    if isinstance(error, (ImportError, MemoryError)):
        return False
    if isinstance(error, _DAMAGED):
        return True
    if isinstance(error, RuntimeError) and _BAD_ARCHIVE.search(str(error)):
        return True
    return _archive_damaged(path) is True


def _archive_damaged(path: Path) -> bool | None:
    """True: a zip archive that is not whole or fails a checksum; False: an intact archive;
    None: not a zip (torch's legacy format) or not readable here (the environment's problem)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return None
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is not None
    except (zipfile.BadZipFile, EOFError, zlib.error):
        return True
    except (OSError, MemoryError):
        return None


def _aside(path: Path) -> Path:
    """Move a damaged checkpoint out of the way under a name no earlier one has: ``mid.pt.corrupt``,
    then ``mid.pt.corrupt.1``, ``.2``, ... (each may be the only copy of something)."""
    aside = aside_path(path)
    os.replace(path, aside)
    return aside


def _finished(ckpt: dict[str, Any]) -> bool:
    """Ultralytics' ``strip_optimizer`` (end of training) leaves epoch -1 and the EMA as 'model'."""
    return ckpt.get("epoch") == -1 and ckpt.get("optimizer") is None and isinstance(ckpt.get("model"), torch.nn.Module)


def position(ckpt: dict[str, Any]) -> Position:
    """How far training had got when ``ckpt`` was written."""
    state = ckpt.get(RESUME_KEY)
    if state is not None:
        return Position(int(state["epoch"]), int(state["batch"]))
    if _finished(ckpt):
        return Position(int(ckpt.get("train_args", {}).get("epochs", 0)), 0)
    return Position(int(ckpt["epoch"]) + 1, 0)


def _family(yaml_file: Any) -> str:
    """``yolov8n.yaml`` and ``yolov8.yaml`` -> ``yolov8`` (the scale is separate), as Ultralytics unifies them."""
    return re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", Path(str(yaml_file)).stem)


def architecture(ckpt: dict[str, Any]) -> tuple | None:
    """(model family, scale, classes) of the checkpoint's model; None for a model without a yaml."""
    model = ckpt.get("ema") or ckpt.get("model")
    cfg = getattr(model, "yaml", None)
    if not isinstance(cfg, dict):
        return None
    return _family(cfg.get("yaml_file", "")), cfg.get("scale"), cfg.get("nc")


def _describe(arch: tuple | None) -> str:
    if arch is None:
        return "an unknown model"
    family, scale, nc = arch
    name = re.sub(r"^(\D*\d+)", rf"\g<1>{scale}", family, count=1) if scale else family
    return f"{name} ({nc} classes)"


def newest(weights_dir: str | os.PathLike) -> Found | None:
    """The readable checkpoint of a run that is furthest along: last.pt, mid.pt or mid.prev.pt.

    A damaged file is renamed to ``<name>.corrupt`` (``.corrupt.1``, ... when that exists; kept
    for inspection, never tried again) with one warning naming the checkpoint used instead. Raises
    :class:`CheckpointUnloadable` (nothing renamed) when a file fails to load for a reason of this
    environment, and :class:`ResumeError` when the readable ones hold different models.
    """
    wdir = Path(weights_dir)
    found: list[Found] = []
    corrupt: list[tuple[Path, str]] = []
    for name in (LAST_NAME, MID_NAME, PREV_NAME):
        path = wdir / name
        if not path.is_file():
            continue
        try:
            ckpt = load(path)
        except CorruptCheckpoint as e:
            corrupt.append((_aside(path), str(e)))
            continue
        found.append(Found(path, position(ckpt), _finished(ckpt), architecture(ckpt)))
        del ckpt  # one checkpoint in memory at a time
    archs = {f.architecture for f in found if f.architecture is not None}
    if len(archs) > 1:
        listing = ", ".join(f"{f.path.name}: {_describe(f.architecture)}" for f in found)
        raise ResumeError(
            f"{wdir} holds checkpoints of different models ({listing}): one of them comes from another run. "
            f"Move the one that does not belong out of {wdir} and resume again"
        )
    best = max(found, key=lambda f: f.position, default=None)
    for aside, why in corrupt:
        instead = f"resuming from {best.path.name} ({best.position})" if best else "no other checkpoint is readable"
        LOGGER.warning("yolo_rdna1: %s; moved it to %s, %s", why, aside.name, instead)
    return best


def resume_point(run_dir: str | os.PathLike) -> Found:
    """The checkpoint ``resume=True`` continues from; :class:`ResumeError` says why there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResumeError(
            f"resume=True but {run_dir} does not exist: nothing to resume; "
            "drop resume=True to start a new run, or fix project=/name="
        )
    if not (run_dir / runfiles.ARGS_YAML).is_file() and not (run_dir / runfiles.WEIGHTS).is_dir():
        raise ResumeError(
            f"resume=True but {run_dir} is not a training run (no args.yaml, no weights/): "
            "pass the project=/name= of a run to continue it, or drop resume=True to start a new one"
        )
    found = newest(run_dir / runfiles.WEIGHTS)
    if found is None:
        raise ResumeError(
            f"resume=True but {run_dir} holds no readable checkpoint: nothing to resume (training ended before its "
            "first checkpoint); start it again without resume=True (same name=, exist_ok=True) or with another name="
        )
    if found.finished:
        raise ResumeError(
            f"resume=True but {run_dir} finished training ({found.path.name}): "
            "nothing to resume; start a new run with another name="
        )
    return found


def check_model_arg(model: Any, found: Found) -> None:
    """A model yaml given for a resume must be the run's model (the checkpoint's wins otherwise)."""
    if found.architecture is None or not str(model).endswith((".yaml", ".yml")):
        return
    try:
        cfg = ul.model_yaml(str(model))
    except Exception:  # a missing or broken yaml: the child reports it as Ultralytics does
        return
    family, scale, _ = found.architecture
    if (_family(cfg.get("yaml_file", "")), cfg.get("scale")) != (family, scale):
        raise ResumeError(
            f"model={model} but {found.path} is a checkpoint of {_describe(found.architecture)}: a run continues with "
            f"its own model. Resume with model={found.path}, or start a new run (another name=) to train {model}"
        )


def check_dataset(ckpt: dict[str, Any], names: dict, train_images: int, data: Any) -> None:
    """A resumed checkpoint must come from this dataset: the same classes (and images, mid-epoch)."""
    model = ckpt.get("ema") or ckpt.get("model")
    have = {int(k): v for k, v in dict(getattr(model, "names", {}) or {}).items()}
    want = {int(k): v for k, v in dict(names).items()}
    then = ckpt.get("train_args", {}).get("data")
    if have and have != want:
        raise ResumeError(
            f"the checkpoint was trained on classes {list(have.values())}, but data={data} "
            f"has {list(want.values())}: it is a checkpoint of another dataset. Resume "
            f"with the run's dataset (data={then}), or start a new run (another name=)"
        )
    state = ckpt.get(RESUME_KEY)
    if state is not None and int(state["train_images"]) != int(train_images):
        raise ResumeError(
            f"the mid-epoch checkpoint was written for {state['train_images']} training images, "
            f"data={data} has {train_images}: the epoch cannot be continued on another set of "
            f"images. Resume with the run's dataset (data={then}), or start a new run (another name=)"
        )


# -- writing ---------------------------------------------------------------------------------------
def save_atomic(obj: Any, path: str | os.PathLike, prev: str | os.PathLike | None = None) -> Path:
    """Write ``obj`` to ``path`` so that a crash at any moment leaves a complete file behind.

    ``path``'s earlier version becomes ``prev`` only once the new one is complete on disk, so the
    previous checkpoint stays until then (see :func:`yolo_rdna1.files.atomic_write`). A crash
    between the two renames leaves ``prev`` and a stale temp file, removed by :func:`remove_stale`.
    """
    return atomic_write(path, lambda f: torch.save(obj, f), prev=prev)


def remove_stale(weights_dir: str | os.PathLike, mids: bool = False) -> list[Path]:
    """Remove temp files of interrupted writes (and, for a new run, older mid-epoch checkpoints)."""
    wdir = Path(weights_dir)
    gone = list(wdir.glob(f".{MID_NAME}.*.tmp"))
    if mids:
        gone += [p for p in (wdir / MID_NAME, wdir / PREV_NAME) if p.exists()]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda, "numpy": np.random.get_state(), "random": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP/compile wrappers (Ultralytics' ``unwrap_model`` is not in every 8.4)."""
    return getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model


def _detached(loss: Any) -> Any:
    if isinstance(loss, dict):
        return {k: v.detach().cpu().clone() for k, v in loss.items()}
    return loss.detach().cpu().clone() if isinstance(loss, torch.Tensor) else loss


def _to(loss: Any, device: torch.device) -> Any:
    if isinstance(loss, dict):
        return {k: v.to(device) for k, v in loss.items()}
    return loss.to(device) if isinstance(loss, torch.Tensor) else loss


def checkpoint_dict(trainer: Any, pos: Position, batches: int, order: list[int]) -> dict[str, Any]:
    """Ultralytics' ``save_model`` payload (fp32) plus :data:`RESUME_KEY`."""
    dataset = trainer.train_loader.dataset
    return {
        **ul.save_model_payload(trainer, max(pos.epoch - 1, 0)),  # Ultralytics' resume rejects epoch < 0 (a new run)
        RESUME_KEY: {
            "epoch": pos.epoch,
            "batch": pos.batch,
            "batches": batches,
            "order": torch.as_tensor(order, dtype=torch.int64),
            "rng": rng_state(),
            "buffer": ul.mosaic_buffer(dataset),
            "tloss": _detached(trainer.tloss),
            "model": _unwrap(trainer.model).state_dict(),
            "names": dict(trainer.data["names"]),
            "train_images": len(dataset),
        },
    }


# -- the train loader ------------------------------------------------------------------------------
class EpochBatches:
    """Batch sampler of the train loader: each epoch's order is a function of (seed, epoch).

    Installed in place of Ultralytics' ``_RepeatSampler`` (it repeats forever the same way, so
    ``InfiniteDataLoader`` keeps its persistent workers). ``sampler`` is the original
    ``BatchSampler``: ``len(train_loader)`` reads it. For the epoch a resume continues, the first
    ``skip`` batches are empty index lists (placeholders) and the states in ``rng`` are set just
    before the first real batch is loaded.
    """

    def __init__(self, batch_sampler: Any, shuffle: bool, seed: int) -> None:
        self.sampler = batch_sampler
        self.n = len(batch_sampler.sampler)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0  # the epoch a new iterator starts in; set at every epoch start
        self.skip_epoch = -1
        self.skip = 0
        self.skip_order: list[int] | None = None
        self.rng: dict[str, Any] | None = None
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.sampler)

    def order(self, epoch: int) -> list[int]:
        if epoch == self.skip_epoch and self.skip_order is not None:
            return self.skip_order
        if epoch not in self._orders:
            if self.shuffle:
                g = torch.Generator()
                g.manual_seed(self.seed + epoch)
                order = torch.randperm(self.n, generator=g).tolist()
            else:
                order = list(range(self.n))
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}  # workers prefetch one ahead
            self._orders[epoch] = order
        return self._orders[epoch]

    def __iter__(self):
        from torch.utils.data import BatchSampler

        epoch = self.epoch
        while True:
            skip = self.skip if epoch == self.skip_epoch else 0
            for b, indices in enumerate(
                BatchSampler(self.order(epoch), self.sampler.batch_size, self.sampler.drop_last)
            ):
                if b < skip:
                    yield []
                    continue
                if self.rng is not None:
                    set_rng_state(self.rng)
                    self.rng = None
                yield indices
            epoch += 1


class PlaceholderCollate:
    """The train loader's ``collate_fn``: an empty index list becomes a placeholder batch.

    A class (not a closure) so that worker processes started with ``spawn`` can unpickle it.
    """

    def __init__(self, collate_fn: Callable, imgsz: int) -> None:
        self.collate_fn = collate_fn
        self.imgsz = int(imgsz)

    def __call__(self, samples: list) -> Any:
        if not samples:
            return {
                "img": torch.empty(0, 3, self.imgsz, self.imgsz, dtype=torch.uint8),
                "cls": torch.empty(0, 1),
                PLACEHOLDER_KEY: True,
            }
        return self.collate_fn(samples)


_MISSING = object()


class MidEpochCheckpoints:
    """The plugin's checkpoint side of one trainer; the callbacks in ``callbacks/rdna1.py`` drive it.

    * :meth:`attach` (``on_pretrain_routine_start``): picks the checkpoint a resume continues from
      and wraps ``trainer.resume_training`` on the instance (the only hook between Ultralytics
      loading a checkpoint and training with it);
    * :meth:`setup_loader` (``on_pretrain_routine_end``): installs :class:`EpochBatches`;
    * :meth:`epoch_start`, :meth:`batch_end`: placeholders of a resumed epoch, timed writes;
    * :meth:`train_end`: a finished run needs no mid-epoch checkpoints; :meth:`close` (teardown).
    """

    def __init__(self, trainer: Any, minutes: float) -> None:
        self.trainer = trainer
        self.interval = float(minutes) * 60.0
        self.wdir = Path(trainer.wdir)
        self.batches: EpochBatches | None = None
        self.state: dict[str, Any] | None = None  # RESUME_KEY of the checkpoint this process resumed from
        self.skip = 0
        self._loader: Any = None
        self._seen = 0
        self._due = 0.0
        self._updates = 0
        self._overrides: list[tuple[Any, str, Any]] = []
        self._original_resume = ul.replace_resume_training(trainer, self._resume_training)

    @classmethod
    def attach(cls, trainer: Any, minutes: float) -> MidEpochCheckpoints | None:
        """Set up a trainer; None under DDP (every rank would have to skip the same batches)."""
        if int(os.environ.get("RANK", -1)) != -1 or not ul.enabled(ul.RESUME):
            return None
        self = cls(trainer, minutes if ul.enabled(ul.MID_EPOCH) else 0)
        resume = getattr(trainer.args, "resume", None)
        if resume:
            self._choose_resume(Path(str(resume)))
        if any(p.name in (MID_NAME, PREV_NAME) for p in remove_stale(self.wdir, mids=not resume)):
            LOGGER.info("yolo_rdna1: a new run in %s: removed the mid-epoch checkpoints of the earlier one", self.wdir)
        return self

    def _choose_resume(self, given: Path) -> None:
        """A resume of last.pt continues from a mid-epoch checkpoint further along, if there is one."""
        if given.name != LAST_NAME or given.resolve().parent != self.wdir.resolve():
            return  # an explicit mid-epoch checkpoint, or a file outside the run: as given
        found = newest(self.wdir)
        if found is not None and found.path.name != LAST_NAME and not found.finished:
            LOGGER.info(
                "yolo_rdna1: resuming from %s (%s), further along than %s", found.path, found.position, given.name
            )
            self.trainer.args.model = self.trainer.args.resume = str(found.path)
            if isinstance(getattr(self.trainer, "model", None), (str, os.PathLike)):
                self.trainer.model = str(found.path)  # Ultralytics < 8.3.251 read args.model before this callback

    def _resume_training(self, ckpt: dict[str, Any] | None) -> None:
        """Ultralytics' resume_training, plus the dataset check and the position of a mid-epoch checkpoint."""
        trainer = self.trainer
        if not (trainer.resume and isinstance(ckpt, dict)):
            return self._original_resume(ckpt)
        check_dataset(ckpt, trainer.data["names"], len(trainer.train_loader.dataset), trainer.args.data)
        state = ckpt.get(RESUME_KEY)
        if state is None:
            return self._original_resume(ckpt)
        epoch = int(state["epoch"])
        if epoch >= 1:
            self._original_resume({**ckpt, "epoch": epoch - 1})
        else:  # Ultralytics asserts start_epoch > 0: load the same state without it
            ul.load_checkpoint_state(trainer, ckpt)
            trainer.start_epoch = 0
        _unwrap(trainer.model).load_state_dict(state["model"])
        self.state = state
        LOGGER.info(
            "yolo_rdna1: continuing %s of %d (batches done before are skipped, not run)",
            Position(epoch, int(state["batch"])),
            int(state["batches"]),
        )

    # -- the loader -------------------------------------------------------------------------------
    def _why_not(self, loader: Any) -> str | None:
        from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

        args = self.trainer.args
        if getattr(args, "compile", False):
            return "compile=True runs the model on every batch"
        if getattr(args, "distill_model", None) or getattr(args, "quantize", None):
            return "distillation and QAT keep extra state"
        inner = ul.train_batch_sampler(loader)
        if not isinstance(inner, BatchSampler) or not isinstance(inner.sampler, (RandomSampler, SequentialSampler)):
            return f"the train loader samples with {type(getattr(inner, 'sampler', inner)).__name__}"
        return None

    def setup_loader(self, trainer: Any) -> None:
        """Give the train loader the epoch-keyed order (and, resuming mid-epoch, the placeholders).

        With ``checkpoint_minutes=0`` and nothing to continue, the loader stays as Ultralytics built it.
        """
        from torch.utils.data import RandomSampler

        loader = trainer.train_loader
        if isinstance(loader.batch_sampler, EpochBatches) or not (self.interval or self.state is not None):
            return
        why = self._why_not(loader)
        if why is not None:
            if self.interval:
                LOGGER.info("yolo_rdna1: no mid-epoch checkpoints (%s); last.pt is written every epoch", why)
            self.interval = 0.0
            if self.state is not None:
                LOGGER.warning(
                    "yolo_rdna1: %s: epoch %d restarts from its first batch", why, int(self.state["epoch"]) + 1
                )
            self.state = None
            return
        inner = ul.train_batch_sampler(loader)
        self.batches = EpochBatches(inner, shuffle=isinstance(inner.sampler, RandomSampler), seed=trainer.args.seed)
        ul.replace_batching(loader, self.batches, PlaceholderCollate(loader.collate_fn, trainer.args.imgsz))
        self._loader = loader
        state = self.state
        if state is not None:
            if int(state["batches"]) != len(loader):
                LOGGER.warning(
                    "yolo_rdna1: %d batches an epoch now, %d when the checkpoint was written (another batch size?): "
                    "epoch %d restarts from its first batch",
                    len(loader),
                    int(state["batches"]),
                    int(state["epoch"]) + 1,
                )
                return
            self.skip = int(state["batch"])
            self.batches.skip_epoch, self.batches.skip = int(state["epoch"]), self.skip
            self.batches.skip_order = state["order"].tolist()
            self.batches.rng = state["rng"]
            ul.restore_mosaic_buffer(loader.dataset, state["buffer"])

    # -- during training --------------------------------------------------------------------------
    def train_start(self, trainer: Any) -> None:
        self._due = time.monotonic() + self.interval
        self._updates = trainer.ema.updates

    def epoch_start(self, trainer: Any) -> None:
        self._leave_placeholders()
        self._seen = 0
        if trainer.train_loader is not self._loader and self.batches is not None:
            self.skip, self.state = (
                0,
                None,
            )  # an OOM retry built a new loader (another batch size): the epoch starts over
            self.setup_loader(trainer)
        if self.batches is not None:
            self.batches.epoch = trainer.epoch
        if self.skip and self.state is not None and trainer.epoch == int(self.state["epoch"]):
            self._enter_placeholders(trainer)

    def batch_end(self, trainer: Any) -> None:
        """After every train batch: leave the placeholders when they are through; write when due."""
        self._seen += 1
        if self._overrides:
            if self._seen >= self.skip:
                self._leave_placeholders()
                trainer.tloss = _to(self.state["tloss"], trainer.device)
            return
        updates = trainer.ema.updates
        stepped, self._updates = updates != self._updates, updates
        if self.interval and stepped and time.monotonic() >= self._due:
            self.write(trainer)
            self._due = time.monotonic() + self.interval

    def write(self, trainer: Any) -> Path:
        """Write mid.pt (the older one becomes mid.prev.pt) and journal its position."""
        pos = Position(int(trainer.epoch), self._seen)
        batches = len(trainer.train_loader)
        ckpt = checkpoint_dict(trainer, pos, batches, self.batches.order(pos.epoch))
        path = save_atomic(ckpt, self.wdir / MID_NAME, prev=self.wdir / PREV_NAME)
        journal.append(
            trainer.save_dir, "checkpoint", epoch=pos.epoch, batch=pos.batch, batches=batches, path=str(path)
        )
        return path

    def train_end(self) -> None:
        """Training finished (last.pt is final): the mid-epoch checkpoints are of no further use."""
        remove_stale(self.wdir, mids=True)

    def close(self) -> None:
        self._leave_placeholders()
        ul.restore_resume_training(self.trainer)

    # -- placeholders -----------------------------------------------------------------------------
    def _enter_placeholders(self, trainer: Any) -> None:
        """Make the loop's work on a placeholder batch a no-op (see the module docstring)."""
        device = trainer.device
        saved = self.state["tloss"]
        items = (
            {k: torch.zeros_like(v, device=device) for k, v in saved.items()}
            if isinstance(saved, dict)
            else torch.zeros_like(saved, device=device)
        )

        def zero_loss(batch: Any, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
            return torch.zeros((), device=device, requires_grad=True), items

        model = _unwrap(trainer.model)
        ul.ensure_criterion(model)
        for obj, name, stub in ul.placeholder_stubs(trainer, model, zero_loss):
            self._override(obj, name, stub)
        LOGGER.info("yolo_rdna1: passing over the %d batches done before the checkpoint", self.skip)

    def _override(self, obj: Any, name: str, value: Any) -> None:
        self._overrides.append((obj, name, obj.__dict__.get(name, _MISSING)))
        setattr(obj, name, value)

    def _leave_placeholders(self) -> None:
        while self._overrides:
            obj, name, old = self._overrides.pop()
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)
