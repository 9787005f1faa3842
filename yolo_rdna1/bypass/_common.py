"""Helpers shared by the NHWC bypass algorithms: layouts, padding, TF32 policy, chunking.

Everything here is a view, a zero-padded copy (one copy kernel into a kept zero-bordered
buffer, see ``bordered``; a fill + a copy when none is free) or a flag flip; no helper launches
more than that. The algorithms count launches and host ops per conv, because a
YOLOv8n train step is launch/host-bound (docs/benchmarks.md, "Fast bypass (issue 5)").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import bordered

#: Transient workspace (im2col columns, per-tap GEMM outputs) one conv direction may allocate
#: before the algorithms split the batch into chunks. YOLOv8n at 640 px, batch 16 needs at most
#: ~0.45 GB in fp32 (the bwd_data of the 16->32 stride-2 conv), so it runs unchunked; larger
#: images or batches are chunked (more GEMM launches, bounded memory). Tests set it small.
WORKSPACE_BYTES = 1 << 30

#: On CUDA, float32 GEMMs of the bypass use TF32 exactly when cuDNN convs would
#: (``torch.backends.cudnn.allow_tf32``, True by default): the bypass replaces a conv, so it
#: follows the conv's precision policy, not the matmul one. Set False to keep the matmul policy.
FOLLOW_CUDNN_TF32 = True

_get_cublas_tf32 = getattr(torch._C, "_get_cublas_allow_tf32", None)
_set_cublas_tf32 = getattr(torch._C, "_set_cublas_allow_tf32", None)
_get_cudnn_tf32 = getattr(torch._C, "_get_cudnn_allow_tf32", None)


def out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


CL = torch.channels_last

#: Below this many bytes a tensor is padded / copied in its own dtype: the two extra view ops of
#: the 16-byte path cost more host time than its faster copy saves on a small tensor.
WIDE_MIN_BYTES = 2 << 20

#: Master switch of the 16-byte copy path (benchmarks A/B it; results are identical either way).
WIDE_COPIES = True

#: Plans (sizes, strides, layout decisions) per call key are cached per algorithm and
#: direction; a dict holds at most this many before it is cleared (shapes vary in validation).
MAX_PLANS = 4096


def is_cl(t: torch.Tensor) -> bool:
    """True for a 4-D tensor in channels_last layout (and not also plain contiguous)."""
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def cl_like(t: torch.Tensor) -> bool:
    """channels_last storage order, also for a channel slice of a channels_last tensor (C2f's
    ``chunk`` hands such views to its bottlenecks): what torch's ``suggest_memory_format`` says."""
    return is_cl(t) or (t.stride(1) == 1 and t.shape[1] > 1 and not t.is_contiguous())


def wants_cl(x: torch.Tensor, w: torch.Tensor) -> bool:
    """The output layout torch's own conv picks: channels_last if the input or weight is."""
    return cl_like(x) or is_cl(w)


def cl_strides(n: int, c: int, h: int, w: int) -> tuple[int, int, int, int]:
    """Strides of a contiguous channels_last ``(n, c, h, w)`` tensor."""
    return (h * w * c, 1, w * c, c)


def wide_dtype(t: torch.Tensor) -> tuple[int, torch.dtype | None]:
    """(ratio, dtype) to copy the channel vectors of ``t`` (N, C, H, W) as 16-byte units, or
    (1, None) when its channels are not unit-strided or its strides are not multiples.

    Pads and im2col copies read and write whole pixels' channel vectors; viewed as
    ``complex128`` they move 16 bytes per element instead of 2 or 4, so the (non-vectorized,
    strided) copy kernel does 4-8x fewer index computations for the same bytes.
    """
    size = t.element_size()
    if size < 16 and (t.shape[1] * size) % 16 == 0 and t.stride(1) == 1:
        ratio = 16 // size
        if all(st % ratio == 0 for st in (t.stride(0), t.stride(2), t.stride(3))):
            return ratio, torch.complex128
    return 1, None


def padded_nhwc(
    x: torch.Tensor, pad6: tuple[int, ...], cl: bool, ratio: int, wdt, rows: bool = False, keep_new: bool = True
) -> tuple[torch.Tensor, bool]:
    """``x`` (N, C, H, W) as a zero-padded contiguous ``(N, Hp, Wp, C')`` tensor (``rows``: as
    ``(N * Hp * Wp, C')``): one copy into a kept zero-bordered buffer (:func:`bordered.padded`;
    fill + copy when none is free; ``keep_new``: see there), just a copy or nothing without
    padding.

    ``pad6 = (0, 0, left, right, top, bottom)``. For a channels_last-like ``x`` (``cl``) the
    pixels' channel vectors are copied as 16-byte units when ``ratio > 1`` (then ``C' = C /
    ratio`` elements of ``wdt``; the second result says so); otherwise the copy also transposes
    NCHW to NHWC.
    """
    wide = (
        ratio > 1
        and WIDE_COPIES
        and cl
        and x.storage_offset() % ratio == 0
        and x.numel() * x.element_size() >= WIDE_MIN_BYTES
    )
    if any(pad6):
        return bordered.padded(x, pad6, wdt if wide else None, rows, keep_new), wide
    xh = x.permute(0, 2, 3, 1)
    xh = (xh.view(wdt) if wide else xh).contiguous()
    return (xh.view(-1, xh.shape[3]) if rows else xh), wide


def nhwc(t: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` as an ``(N, H, W, C)`` view (contiguous iff ``t`` is channels_last)."""
    return t.permute(0, 2, 3, 1)


def from_nhwc(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A contiguous ``(N, H, W, C)`` tensor as ``(N, C, H, W)``: a view, or one copy for NCHW."""
    t = t.permute(0, 3, 1, 2)
    return t if channels_last else t.contiguous()


def pad_nhwc(t: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """An ``(N, H, W, C)`` tensor zero-padded to a contiguous one; also fixes a permuted input.

    Two kernels (fill + copy) when padding, none when the input is already contiguous and
    needs no padding.
    """
    if top == bottom == left == right == 0:
        return t.contiguous()
    return F.pad(t, (0, 0, left, right, top, bottom))


class WeightView:
    """A view of a conv weight, made once and reused while the weight keeps its memory.

    Why: making it is a host op per call (``as_strided``, ``t``), and a YOLOv8n step on the
    bypass is host-bound. The optimizer updates weights in place, so the view stays valid; a
    weight given new memory (``param.data = ...``, ``.to()``, autocast's cast of each step) has a
    new address and gets a new view. The cached view keeps the memory it was made from alive, so
    an address can only come back for that same memory. Only for views: a copy would go stale.
    """

    __slots__ = ("ptr", "view", "make")

    def __init__(self, make) -> None:
        self.make = make
        self.ptr = -1
        self.view: torch.Tensor | None = None

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        ptr = w.data_ptr()
        if ptr != self.ptr:
            self.view, self.ptr = self.make(w), ptr
        return self.view


def tf32_enter(t: torch.Tensor):
    """Make float32 CUDA GEMMs follow cuDNN's TF32 setting; returns what :func:`tf32_exit`
    restores (None: nothing changed). Under a microsecond on the host."""
    if t.dtype is torch.float32 and FOLLOW_CUDNN_TF32 and t.is_cuda and _set_cublas_tf32 is not None:
        want = _get_cudnn_tf32()
        if want != _get_cublas_tf32():
            _set_cublas_tf32(want)
            return not want
    return None


def tf32_exit(prev) -> None:
    if prev is not None:
        _set_cublas_tf32(prev)


def chunks(n: int, bytes_per_image: int) -> list[tuple[int, int]]:
    """Image ranges ``[a, b)`` whose transient workspace stays under :data:`WORKSPACE_BYTES`."""
    per = max(1, WORKSPACE_BYTES // max(1, bytes_per_image))
    if per >= n:
        return [(0, n)]
    return [(a, min(n, a + per)) for a in range(0, n, per)]
