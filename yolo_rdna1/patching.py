"""``patch_model``: the one-call way to guard a model (and every other conv in the process)."""

from __future__ import annotations

from typing import Any, TypeVar

import torch.nn as nn

from .guard import ConvGuard, current, enable

M = TypeVar("M")


def patch_model(model: M, guard: ConvGuard | None = None, **options: Any) -> M:
    """Route the convs of ``model`` through the guard and return ``model`` unchanged.

    The guard is a class-level switch, so it also covers copies of the model made later (EMA,
    fused, reloaded checkpoints). With no ``guard`` and no options, an already active guard is
    reused; otherwise a new ``ConvGuard(**options)`` (policy, faults, ...) becomes active.
    ``yolo_rdna1.unpatch()`` restores torch's conv exactly. ``model`` may be an ``nn.Module``
    or an Ultralytics ``YOLO`` object (its ``.model`` is labelled for per-module reports).
    """
    g = current()
    if guard is not None or options or g is None:
        g = enable(guard, **options)
    target = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    if isinstance(target, nn.Module):
        g.label(target)
    return model
