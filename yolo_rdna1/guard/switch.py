"""The process-wide switch: which :class:`ConvGuard` (if any) ``nn.Conv2d`` calls go through.

Like ``torch.backends.cudnn.flags``, the guard is a global you can scope. It is installed as a
*class-level* patch of ``nn.Conv2d._conv_forward`` and ``nn.ConvTranspose2d.forward``: methods
are looked up at call time, so it reaches every instance, including the EMA's deepcopy, the
validator's model, DDP/compiled wrappers and the fused best.pt of the final evaluation, and it
leaves nothing on the instances: checkpoints pickle and load without this package.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch.nn as nn

from .router import ORIGINAL_CONV2D_FORWARD, ORIGINAL_CONV_TRANSPOSE2D_FORWARD, ConvGuard

_LOCK = threading.Lock()
_ACTIVE: ConvGuard | None = None


def _patched_methods(guard: ConvGuard):
    """The class-level replacements, bound to one guard (a closure saves a lookup per call)."""
    conv2d, conv_transpose2d = guard.conv2d, guard.conv_transpose2d

    def _conv_forward(self: nn.Conv2d, input, weight, bias):  # noqa: A002 - torch's own names
        return conv2d(self, input, weight, bias)

    def forward(self: nn.ConvTranspose2d, input, output_size=None):  # noqa: A002
        return conv_transpose2d(self, input, output_size)

    _conv_forward.__yolo_rdna1_guard__ = forward.__yolo_rdna1_guard__ = True  # type: ignore[attr-defined]
    return _conv_forward, forward


def _install(guard: ConvGuard | None) -> None:
    global _ACTIVE
    if guard is None or guard.policy == "off":
        _ACTIVE = None
        nn.Conv2d._conv_forward = ORIGINAL_CONV2D_FORWARD
        nn.ConvTranspose2d.forward = ORIGINAL_CONV_TRANSPOSE2D_FORWARD
    else:
        _ACTIVE = guard
        nn.Conv2d._conv_forward, nn.ConvTranspose2d.forward = _patched_methods(guard)


def current() -> ConvGuard | None:
    """The guard conv calls go through now, or None."""
    return _ACTIVE


def is_patched() -> bool:
    return getattr(nn.Conv2d._conv_forward, "__yolo_rdna1_guard__", False)


def enable(guard: ConvGuard | None = None, **options: Any) -> ConvGuard:
    """Route every conv of this process through ``guard`` (or a new ``ConvGuard(**options)``)."""
    if guard is None:
        guard = ConvGuard(**options)
    elif options:
        raise TypeError("pass either a ConvGuard or options, not both")
    with _LOCK:
        _install(guard)
    return guard


def disable() -> None:
    """Restore torch's own conv methods exactly."""
    with _LOCK:
        _install(None)


@contextlib.contextmanager
def guarded(guard: ConvGuard | None = None, **options: Any) -> Iterator[ConvGuard]:
    """Scope a guard: ``with yolo_rdna1.guarded(policy="bypass") as g: model(x)``.

    On exit the previous state (another guard, or none) comes back.
    """
    previous = _ACTIVE
    g = enable(guard, **options)
    try:
        yield g
    finally:
        with _LOCK:
            _install(previous)
