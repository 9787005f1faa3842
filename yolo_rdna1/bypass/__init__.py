"""Vendor-free conv kernels: GEMMs and index ops only, never cuDNN/MIOpen, forward or backward.

Every algorithm module exposes ``forward(x, w, b, params)``, ``backward_data(grad_out, x, w,
params)``, ``backward_weight(grad_out, x, w, params)`` and ``supports(sig) -> bool``.
:func:`algorithm_for` picks one per signature; the guard calls it once per signature, never per
call.

Algorithms (each module's docstring gives its launches and transient bytes per direction):

* ``pointwise``  1x1 convs: one GEMM per direction, no im2col (cuDNN's launch count).
* ``nhwc_gemm``  k x k convs, groups 1, strides 1 and 2: one NHWC im2col copy (a single
  ``as_strided`` view) + one GEMM for forward and bwd_weight; bwd_data as one GEMM + one
  gather-reduction instead of col2im. 3 launches for forward and bwd_data (the padding is one
  copy into a kept zero-bordered buffer, ``bordered``), 2 for bwd_weight (it reuses the padded
  input the forward saved).
* ``depthwise``  depthwise stride-1 convs: broadcast multiply + sum over a strided view.
* ``im2col``     the reference: ``unfold`` + batched GEMM, ``fold`` for bwd_data; every conv,
  groups and transposed convs included. The universal fallback.

``pointwise`` and ``nhwc_gemm`` also expose a ``Plan(x, w, params)`` whose ``forward`` returns
the output and the tensor to save, and whose ``backward`` gives both gradients; the guard keeps
one per module and input shape and runs fully bypassed convs through it
(``guard.routes.PlannedConv``); ``plan_for`` is the functional API's shared cache of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

from . import _common, bordered, depthwise, im2col, nhwc_gemm, pointwise
from .params import ConvParams

ALGORITHMS: dict[str, ModuleType] = {
    "pointwise": pointwise,
    "nhwc_gemm": nhwc_gemm,
    "depthwise": depthwise,
    "im2col": im2col,
}

#: Preference order of :func:`algorithm_for`: the first that supports a signature wins.
#: pointwise before nhwc_gemm (a 1x1 conv needs no columns at all); im2col last, it takes all.
PREFERENCE: tuple[str, ...] = ("pointwise", "depthwise", "nhwc_gemm", "im2col")


def algorithm_for(sig: object) -> ModuleType:
    """The bypass algorithm for a signature: the first in :data:`PREFERENCE` that supports it.

    Why this order: a 1x1 conv needs no columns at all (``pointwise``: one GEMM per direction,
    cuDNN's launch count); a depthwise conv is elementwise work, too thin for a GEMM; every other
    groups-1 conv with stride 1 or 2 takes ``nhwc_gemm`` (2-4 launches per direction, no
    unfold/fold, nothing saved beyond the padded input and w); ``im2col`` takes the rest.
    Measured on an H200 (docs/benchmarks.md, "Fast bypass (issue 5)"): every YOLOv8n signature
    gets ``pointwise`` or ``nhwc_gemm`` and runs forward + backward faster than im2col, fp32
    and bf16, channels_last and NCHW (fp32 channels_last: 0.07-0.76x).

    The choice depends on the conv's geometry only, not on the dtype or the memory format: the
    NHWC algorithms take NCHW inputs through their padding copy and return NCHW with one copy.
    It is made once per signature (the guard caches the route), never per call.
    """
    for name in PREFERENCE:
        module = ALGORITHMS[name]
        if module.supports(sig):
            return module
    return im2col


@contextlib.contextmanager
def settings(
    *,
    preference: tuple[str, ...] | None = None,
    follow_cudnn_tf32: bool | None = None,
    wide_copies: bool | None = None,
    wide_min_bytes: int | None = None,
    pad_budget_bytes: int | None = None,
) -> Iterator[None]:
    """Change the bypass's tunables inside a block and restore them after; ``None`` leaves one as is.

    The one switch for A/B comparisons (benchmarks): :data:`PREFERENCE` (``("im2col",)`` forces
    the reference algorithm), ``_common.FOLLOW_CUDNN_TF32``, ``_common.WIDE_COPIES`` /
    ``WIDE_MIN_BYTES`` and ``bordered.BUDGET_BYTES`` (0: no kept pad buffers). Process-wide like
    ``torch.backends`` flags, so not for blocks that overlap in several threads. A guard caches
    each signature's algorithm at its first call: ``preference`` reaches guards that resolve
    their routes inside the block.
    """
    global PREFERENCE
    saved = (PREFERENCE, _common.FOLLOW_CUDNN_TF32, _common.WIDE_COPIES, _common.WIDE_MIN_BYTES, bordered.BUDGET_BYTES)
    try:
        if preference is not None:
            PREFERENCE = tuple(preference)
        if follow_cudnn_tf32 is not None:
            _common.FOLLOW_CUDNN_TF32 = follow_cudnn_tf32
        if wide_copies is not None:
            _common.WIDE_COPIES = wide_copies
        if wide_min_bytes is not None:
            _common.WIDE_MIN_BYTES = wide_min_bytes
        if pad_budget_bytes is not None:
            bordered.BUDGET_BYTES = pad_budget_bytes
        yield
    finally:
        (PREFERENCE, _common.FOLLOW_CUDNN_TF32, _common.WIDE_COPIES, _common.WIDE_MIN_BYTES, bordered.BUDGET_BYTES) = (
            saved
        )


__all__ = [
    "ALGORITHMS",
    "PREFERENCE",
    "ConvParams",
    "algorithm_for",
    "depthwise",
    "im2col",
    "nhwc_gemm",
    "pointwise",
    "settings",
]
