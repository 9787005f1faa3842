"""Which conv signatures a training will use, found without running a training step.

One forward pass at batch 1 on the CPU (train mode for the mosaic batches, eval mode for the
validation batches) records every conv's input shape and whether autograd will run its two
backward directions; the batch sizes, dtype and memory format that the real run uses are then
filled in from what Ultralytics does:

* train batches are ``imgsz x imgsz`` at ``batch`` (and the last, smaller batch of an epoch);
* validation batches are rectangular (Ultralytics' ``set_rectangle``: images sorted by aspect
  ratio, each batch padded to a multiple of the stride with pad 0.5) at ``2 * batch``;
* AMP on a GPU runs convs in float16 (autocast in training, a half model in validation);
* on CUDA the model is channels_last, so every conv but the one that reads the image gets NHWC
  input; on ROCm MIOpen returns NCHW unless ``PYTORCH_MIOPEN_SUGGEST_NHWC=1``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import torch
import torch.nn as nn

from .. import _ultralytics as ul
from ..configs_path import load_yaml_file
from ..guard.router import build_signature
from ..signature import ConvSignature
from ..errors import Rdna1Error

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"}


class DiscoveryError(Rdna1Error):
    """A model or dataset discovery cannot use; the message names it and the fix."""


@dataclass
class DatasetShape:
    """What discovery needs from a dataset: class count, train count, val image sizes (h, w)."""

    nc: int
    n_train: int | None
    val_sizes: list[tuple[int, int]]


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
            raise DiscoveryError(f"dataset split {item!r} not found (looked at {p}); fix 'path'/'train'/'val' in the dataset YAML")
    return files


def read_dataset(data: str | os.PathLike) -> DatasetShape:
    """Class count, train image count and val image sizes of a YOLO dataset YAML."""
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
    return DatasetShape(len(names), len(train), sizes)


def rect_batches(sizes: list[tuple[int, int]], imgsz: int, batch: int, stride: int = 32, pad: float = ul.RECT_PAD) -> list[tuple[int, int, int]]:
    """(batch size, height, width) of each validation batch, as Ultralytics' ``set_rectangle``."""
    if not sizes:
        return []
    ar = sorted(h / w for h, w in sizes)
    out = []
    for start in range(0, len(ar), batch):
        chunk = ar[start:start + batch]
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
    """Signatures (at batch 1, NCHW, float32) with (runs bwd_data, runs bwd_weight) flags."""
    seen: list[tuple[ConvSignature, bool, bool]] = []

    def hook(module: nn.Module, args: tuple) -> None:
        inp = args[0]
        transposed = isinstance(module, nn.ConvTranspose2d)
        op = (0, 0)
        if transposed:
            op = tuple(module._output_padding(inp, None, module.stride, module.padding, module.kernel_size, 2, module.dilation))
        sig = build_signature(module, inp, module.weight, None, transposed, op)[0]
        seen.append((sig, train and inp.requires_grad, train and module.weight.requires_grad))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        model.train(train)
        with torch.set_grad_enabled(train):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def load_model(model: str | os.PathLike | nn.Module, nc: int | None = None) -> nn.Module:
    """A DetectionModel from a YAML name/path or a .pt file (CPU, float32)."""
    if isinstance(model, nn.Module):
        return model
    text = os.fspath(model)
    if text.endswith((".yaml", ".yml")):
        from ultralytics.nn.tasks import DetectionModel

        try:
            return DetectionModel(text, nc=nc, verbose=False)
        except FileNotFoundError:
            raise DiscoveryError(f"model config {text!r} not found; use a name like yolov8n.yaml or a path") from None
    path = Path(text)
    if not path.is_file():
        raise DiscoveryError(f"model file {path} not found; give a .pt checkpoint or a model YAML such as yolov8n.yaml")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    m = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(m, nn.Module):
        raise DiscoveryError(f"{path} holds no model ('ema' or 'model'); is it an Ultralytics checkpoint?")
    return m.float()


def discover(
    model: str | os.PathLike | nn.Module = "yolov8n.yaml",
    imgsz: int = 640,
    batch: int = 16,
    data: str | os.PathLike | None = None,
    backend: str = "cpu",
    amp: bool = False,
    train: bool = True,
    val: bool = True,
) -> list[ConvSignature]:
    """Every (signature, direction) a training with these settings runs on the conv library.

    ``backend`` is ``cpu``, ``cuda`` or ``rocm`` (memory format and AMP depend on it). Without
    ``data`` the validation batches are assumed square and no partial batches are added.
    """
    shape = read_dataset(data) if data is not None else None
    net = load_model(model, nc=shape.nc if shape else None)
    stride = int(max(getattr(net, "stride", torch.tensor([32])).max().item(), 32))
    on_gpu = backend in ("cuda", "rocm")
    dtype = "float16" if amp and on_gpu else "float32"
    nhwc = backend == "cuda" or (backend == "rocm" and os.environ.get("PYTORCH_MIOPEN_SUGGEST_NHWC") == "1")

    found: dict[ConvSignature, None] = {}

    def add(records: Iterable[tuple[ConvSignature, bool, bool]], sizes: Iterable[int]) -> None:
        for i, (sig, bwd_data, bwd_weight) in enumerate(records):
            directions = ["fwd"] + (["bwd_data"] if bwd_data else []) + (["bwd_weight"] if bwd_weight else [])
            for n in sizes:
                s = replace(sig, batch=n, dtype=dtype, channels_last=nhwc and i > 0)
                for d in directions:
                    found[s.with_direction(d)] = None

    if train:
        train_sizes = {batch}
        if shape and shape.n_train and shape.n_train % batch:
            train_sizes.add(shape.n_train % batch)
        add(_record(net, torch.zeros(1, 3, imgsz, imgsz), train=True), sorted(train_sizes, reverse=True))
    if val and ul.enabled(ul.VAL_SHAPES):  # else the validation shapes get the unknown policy when they first run
        vb = ul.val_batch_size(batch)
        batches = rect_batches(shape.val_sizes, imgsz, vb, stride) if shape and shape.val_sizes else [(vb, imgsz, imgsz)]
        by_hw: dict[tuple[int, int], set[int]] = {}
        for n, h, w in batches:
            by_hw.setdefault((h, w), set()).add(n)
        for (h, w), ns in by_hw.items():
            add(_record(net, torch.zeros(1, 3, h, w), train=False), sorted(ns, reverse=True))
    return list(found)
