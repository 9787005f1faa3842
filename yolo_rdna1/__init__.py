"""yolo_rdna1: Ultralytics YOLO training that finishes on GPUs whose conv library misbehaves.

Public API (documented in the README):

* :func:`patch_model` / :func:`unpatch`: route every conv through the guard;
* :func:`guarded`: the same as a scoped context manager, like ``torch.backends.cudnn.flags``;
* :class:`ConvGuard`: the router itself (policy, fault profile, route table, counters);
* :func:`make_synthetic_thermal`: a small thermal dataset in YOLO layout for demos and tests.

Submodules are imported lazily so ``import yolo_rdna1`` stays cheap next to torch/ultralytics.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ConvGuard": ("yolo_rdna1.guard", "ConvGuard"),
    "guarded": ("yolo_rdna1.guard", "guarded"),
    "current_guard": ("yolo_rdna1.guard", "current"),
    "unpatch": ("yolo_rdna1.guard", "disable"),
    "patch_model": ("yolo_rdna1.patching", "patch_model"),
    "train": ("yolo_rdna1.training", "train"),
    "add_callbacks": ("yolo_rdna1.callbacks", "add_callbacks"),
    "PluginOptions": ("yolo_rdna1.options", "PluginOptions"),
    "make_synthetic_thermal": ("yolo_rdna1.data", "make_synthetic_thermal"),
    "describe_device": ("yolo_rdna1.device", "describe_device"),
    "ConvSignature": ("yolo_rdna1.signature", "ConvSignature"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'yolo_rdna1' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
