"""Which conv signatures a training will use, found without running a training step.

One forward pass at batch 1 on the CPU per kind of batch (train mode for the train batches,
eval mode for the validation batches) records every conv's input shape and layout and whether
autograd will run its two backward directions; the batch sizes and dtype that the real run uses
are then filled in from what Ultralytics does, for every task (detect, segment, pose, obb,
classify; the model class and its head come from the model YAML's task and the dataset's class
count and ``kpt_shape``):

* train batches are ``imgsz x imgsz`` at ``batch`` (and the last, smaller batch of an epoch);
* detect/segment/pose/obb validation batches are rectangular (Ultralytics' ``set_rectangle``:
  images sorted by aspect ratio, each batch padded to a multiple of the stride with pad 0.5);
  classification validates square ``imgsz`` center crops;
* validation batches hold ``2 * batch`` images, except for OBB, which validates at ``batch``;
* the validation after the last epoch (``final_eval``) runs best.pt through ``AutoBackend``: a
  fused model, and on Ultralytics 8.4 channels_last on an x86 CPU (NCHW on a GPU);
* AMP on a GPU runs convs in float16 (autocast in training, a half model in validation);
* on CUDA the training model is channels_last, so the convs after the one that reads the image
  get NHWC input; on ROCm MIOpen returns NCHW unless ``PYTORCH_MIOPEN_SUGGEST_NHWC=1``. Which
  convs see NHWC is read off a channels_last forward pass (a conv after a view, such as the DFL
  of a detection head, does not), where the CPU's conv follows the weights' layout as cuDNN does.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from .. import _ultralytics as ul
from ..configs_path import load_yaml_file
from ..errors import Rdna1Error
from ..guard.router import build_signature
from ..signature import ConvSignature

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"}

#: The model class of each task whose training discovery can derive (``ultralytics.nn.tasks``).
TASK_MODELS = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
}


class DiscoveryError(Rdna1Error):
    """A model or dataset discovery cannot use; the message names it and the fix."""


@dataclass
class DatasetShape:
    """What discovery needs from a dataset: class count, train count, val image sizes (h, w).

    ``kpt_shape`` sizes a pose head; ``channels`` the stem. A classification dataset (a folder
    of class folders) gives ``n_val`` instead of sizes: its val images are center-cropped squares.
    """

    nc: int
    n_train: int | None
    val_sizes: list[tuple[int, int]]
    kpt_shape: list[int] | None = None
    channels: int = 3
    n_val: int = 0


def _list_images(root: Path, spec: str | list | None) -> list[Path]:
    if spec is None:
        return []
    files: list[Path] = []
    for item in spec if isinstance(spec, list) else [spec]:
        p = Path(item)
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                line = line.strip()
                if line:
                    f = Path(line)
                    files.append(f if f.is_absolute() else (p.parent / f))
        elif p.is_file():
            files.append(p)
        else:
            raise DiscoveryError(
                f"dataset split {item!r} not found (looked at {p}); fix 'path'/'train'/'val' in the dataset YAML"
            )
    return files


def read_dataset(data: str | os.PathLike, task: str | None = None) -> DatasetShape:
    """Class count, train image count and val image sizes of a YOLO dataset YAML.

    For ``task="classify"`` ``data`` is a classification folder (``train/<class>/*``,
    ``val/<class>/*`` or ``test/<class>/*``), as Ultralytics' ``check_cls_dataset`` reads it.
    """
    if task == "classify":
        return _read_classify_folder(Path(data))
    path = Path(data)
    if not path.is_file():
        raise DiscoveryError(f"dataset YAML {path} not found; pass data=<path to data.yaml>")
    cfg = load_yaml_file(path, DiscoveryError, "dataset YAML")
    if "names" not in cfg or "train" not in cfg or "val" not in cfg:
        raise DiscoveryError(f"{path}: a dataset YAML needs 'train', 'val' and 'names'")
    root = Path(cfg.get("path") or path.parent)
    root = root if root.is_absolute() else path.parent / root
    names = cfg["names"]
    train = _list_images(root, cfg["train"])
    val = _list_images(root, cfg["val"])
    from PIL import Image  # reads the header only

    sizes = []
    for f in val:
        with Image.open(f) as im:
            sizes.append((im.height, im.width))
    kpt = cfg.get("kpt_shape")
    return DatasetShape(
        len(names), len(train), sizes, kpt_shape=list(kpt) if kpt else None, channels=int(cfg.get("channels", 3))
    )


def _read_classify_folder(root: Path) -> DatasetShape:
    """Class count and image counts of a classification folder, with Ultralytics' split names."""
    if not root.is_dir():
        raise DiscoveryError(
            f"classification dataset folder {root} not found; pass data=<folder with train/ and val/ class folders>"
        )
    train = root / "train"
    val = next((root / n for n in ("val", "validation", "valid", "test") if (root / n).is_dir()), None)
    if not train.is_dir() or val is None:
        raise DiscoveryError(
            f"{root}: a classification dataset needs train/ and val/ (or test/) folders of class folders"
        )

    def count(split: Path) -> int:
        return sum(1 for f in split.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)

    classes = [d for d in train.iterdir() if d.is_dir()]
    return DatasetShape(len(classes), count(train), [], n_val=count(val))


def rect_batches(
    sizes: list[tuple[int, int]], imgsz: int, batch: int, stride: int = 32, pad: float = ul.RECT_PAD
) -> list[tuple[int, int, int]]:
    """(batch size, height, width) of each validation batch, as Ultralytics' ``set_rectangle``."""
    if not sizes:
        return []
    ar = sorted(h / w for h, w in sizes)
    out = []
    for start in range(0, len(ar), batch):
        chunk = ar[start : start + batch]
        lo, hi = min(chunk), max(chunk)
        shape = [1.0, 1.0]
        if hi < 1:
            shape = [hi, 1.0]
        elif lo > 1:
            shape = [1.0, 1.0 / lo]
        h, w = (int(math.ceil(s * imgsz / stride + pad)) * stride for s in shape)
        out.append((len(chunk), h, w))
    return out


def _record(model: nn.Module, x: torch.Tensor, train: bool) -> list[tuple[ConvSignature, bool, bool]]:
    """Signatures (at the batch of ``x``, float32, in the layout this forward gives each conv)
    with (runs bwd_data, runs bwd_weight) flags."""
    seen: list[tuple[ConvSignature, bool, bool]] = []

    def hook(module: nn.Module, args: tuple) -> None:
        inp = args[0]
        transposed = isinstance(module, nn.ConvTranspose2d)
        op = (0, 0)
        if transposed:
            op = tuple(
                module._output_padding(inp, None, module.stride, module.padding, module.kernel_size, 2, module.dilation)
            )
        sig = build_signature(module, inp, module.weight, None, transposed, op)[0]
        seen.append((sig, train and inp.requires_grad, train and module.weight.requires_grad))

    handles = [
        m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        model.train(train)
        with torch.set_grad_enabled(train):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def model_task(model: str | os.PathLike | nn.Module) -> str:
    """The Ultralytics task of a model YAML (its head), a model or a .pt checkpoint."""
    from ultralytics.nn import tasks

    if isinstance(model, nn.Module):
        return tasks.guess_model_task(model)
    text = os.fspath(model)
    if text.endswith((".yaml", ".yml")):
        try:
            return tasks.guess_model_task(tasks.yaml_model_load(text))
        except FileNotFoundError:
            raise DiscoveryError(f"model config {text!r} not found; use a name like yolov8n.yaml or a path") from None
    return model_task(load_model(text))


def load_model(
    model: str | os.PathLike | nn.Module, nc: int | None = None, kpt_shape: list[int] | None = None, channels: int = 3
) -> nn.Module:
    """The task's model (detect, segment, pose, obb, classify) from a YAML name/path, or a .pt file (CPU, float32)."""
    if isinstance(model, nn.Module):
        return model
    text = os.fspath(model)
    if text.endswith((".yaml", ".yml")):
        from ultralytics.nn import tasks

        task = model_task(text)
        if task not in TASK_MODELS:
            raise DiscoveryError(
                f"{text}: signature discovery knows the tasks {', '.join(TASK_MODELS)}, not {task!r}; "
                "train it with probe=False (its signatures are then judged as they appear, see unknown=)"
            )
        extra = {"data_kpt_shape": tuple(kpt_shape)} if task == "pose" and kpt_shape else {}
        return getattr(tasks, TASK_MODELS[task])(text, ch=channels, nc=nc, verbose=False, **extra)
    path = Path(text)
    if not path.is_file():
        raise DiscoveryError(f"model file {path} not found; give a .pt checkpoint or a model YAML such as yolov8n.yaml")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    m = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(m, nn.Module):
        raise DiscoveryError(f"{path} holds no model ('ema' or 'model'); is it an Ultralytics checkpoint?")
    # a saved checkpoint has its gradients off; the trainer turns them on again, all but the DFL's
    for name, p in m.named_parameters():
        p.requires_grad_(".dfl" not in name)
    return m.float()


def _runs_nhwc(backend: str, channels_last_weights: bool) -> bool:
    """Whether convs after the first get NHWC input when the model's weights are channels_last."""
    if not channels_last_weights:
        return False
    return backend != "rocm" or os.environ.get("PYTORCH_MIOPEN_SUGGEST_NHWC") == "1"


def autobackend_channels_last(backend: str) -> bool:
    """Whether Ultralytics' ``AutoBackend`` makes a .pt model channels_last (with its default
    ``channels_last=None``): on 8.4 on an x86 CPU with oneDNN under Linux or Windows, never on a
    GPU; 8.3's AutoBackend has no such argument and keeps the model as it is."""
    from ultralytics.nn.autobackend import AutoBackend

    if "channels_last" not in inspect.signature(AutoBackend.__init__).parameters or backend != "cpu":
        return False
    return (
        platform.machine() in ("AMD64", "x86_64")
        and torch.backends.mkldnn.is_available()
        and bool(torch.backends.mkldnn.enabled)
        and platform.system() in ("Linux", "Windows")
    )


def _conv_follows_weight_layout() -> bool:
    """Whether this CPU's conv returns channels_last for channels_last weights (oneDNN does), as
    cuDNN does: then a channels_last forward here shows which convs the GPU feeds NHWC input."""
    w = torch.zeros(2, 2, 1, 1).to(memory_format=torch.channels_last)
    out = torch.nn.functional.conv2d(torch.zeros(1, 2, 2, 2), w)
    return out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()


def discover(
    model: str | os.PathLike | nn.Module = "yolov8n.yaml",
    imgsz: int = 640,
    batch: int = 16,
    data: str | os.PathLike | None = None,
    backend: str = "cpu",
    amp: bool = False,
    train: bool = True,
    val: bool = True,
    task: str | None = None,
) -> list[ConvSignature]:
    """Every (signature, direction) a training with these settings runs on the conv library.

    ``backend`` is ``cpu``, ``cuda`` or ``rocm`` (memory format and AMP depend on it). ``task``
    defaults to the model's. ``val`` covers the validation after each epoch and the final one.
    Without ``data`` the validation batches are assumed square and no partial batches are added.
    """
    built = isinstance(model, nn.Module) or not os.fspath(model).endswith((".yaml", ".yml"))
    net = load_model(model) if built else None  # a model or checkpoint brings its own head
    task = task or model_task(net if built else model)
    shape = read_dataset(data, task) if data is not None else None
    channels = shape.channels if shape else 3
    if net is None:
        net = load_model(
            model, nc=shape.nc if shape else None, kpt_shape=shape.kpt_shape if shape else None, channels=channels
        )
    stride = int(max(getattr(net, "stride", torch.tensor([32])).max().item(), 32))
    imgsz = math.ceil(imgsz / stride) * stride  # Ultralytics' check_imgsz
    on_gpu = backend in ("cuda", "rocm")
    dtype = "float16" if amp and on_gpu else "float32"
    observe = _conv_follows_weight_layout()

    found: dict[ConvSignature, None] = {}

    def add(module: nn.Module, hw: tuple[int, int], sizes: Iterable[int], is_train: bool, nhwc: bool) -> None:
        x = torch.zeros(2 if is_train else 1, channels, *hw)  # BatchNorm trains on 2 values per channel at least
        if nhwc and observe:
            module = copy.deepcopy(module).to(memory_format=torch.channels_last)
        records = _record(module, x, train=is_train)
        for i, (sig, bwd_data, bwd_weight) in enumerate(records):
            directions = ["fwd"] + (["bwd_data"] if bwd_data else []) + (["bwd_weight"] if bwd_weight else [])
            layout = sig.channels_last if observe else nhwc and i > 0
            for n in sizes:
                s = replace(sig, batch=n, dtype=dtype, channels_last=layout)
                for d in directions:
                    found[s.with_direction(d)] = None

    if train:
        train_sizes = {batch}
        if shape and shape.n_train and shape.n_train % batch:
            train_sizes.add(shape.n_train % batch)
        add(net, (imgsz, imgsz), sorted(train_sizes, reverse=True), True, _runs_nhwc(backend, on_gpu))
    if val and ul.enabled(ul.VAL_SHAPES):  # else the validation shapes get the unknown policy when they first run
        vb = ul.val_batch_size(batch, task)
        if task == "classify":
            n_val = shape.n_val if shape else vb
            batches = [(n, imgsz, imgsz) for n in {min(vb, n_val), n_val % vb} if n] or [(vb, imgsz, imgsz)]
        else:
            batches = (
                rect_batches(shape.val_sizes, imgsz, vb, stride) if shape and shape.val_sizes else [(vb, imgsz, imgsz)]
            )
        by_hw: dict[tuple[int, int], set[int]] = {}
        for n, h, w in batches:
            by_hw.setdefault((h, w), set()).add(n)
        fused = copy.deepcopy(net)  # final_eval: best.pt through AutoBackend, fused (an Ultralytics model)
        fused = fused.fuse(verbose=False) if hasattr(fused, "fuse") else fused
        # in-training validation runs the EMA copy of the training model (channels_last on a GPU)
        passes = ((net, _runs_nhwc(backend, on_gpu)), (fused, _runs_nhwc(backend, autobackend_channels_last(backend))))
        for module, nhwc in passes:
            for hw, ns in by_hw.items():
                add(module, hw, sorted(ns, reverse=True), False, nhwc)
    return list(found)
