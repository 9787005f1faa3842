"""Zero-bordered NHWC buffers, kept and reused: a k x k conv's padding as one copy.

Why: ``constant_pad_nd`` makes a new tensor per call with two kernels (a fill of the whole
output, then a copy of the interior) and ~10 host ops (empty, fill, narrows, slices, copy). The
bypass pads twice per 3x3 conv and step (the forward's input, bwd_data's grad_out), and a
YOLOv8n step on the bypass is host-bound (docs/benchmarks.md, "Fast bypass (issue 5)"). The
border of a buffer of a given shape never changes, so it is zeroed once, when the buffer is
made; every later use copies the interior only: one op, one kernel.

When is a buffer free again? A buffer handed out is an *alias* (a new tensor on its storage);
it stays busy while anything outside the pool holds a tensor on that storage -- the autograd
graph that saved it for backward, a GEMM operand still in Python. The pool reads that from the
storage's reference count, calibrated when the buffer is made (not assumed). So a forward's
padded input, saved for backward, is reused by the next step's forward once its backward has
freed it; a graph kept with ``retain_graph=True`` keeps its buffers busy, and a graph dropped
without backward frees them, with no bookkeeping. Buffers are keyed by (shape, dtype, border,
device, stream) and only reused on the stream that made them, as the caching allocator does
with its blocks.

Memory: kept buffers are not returned to the caching allocator (``torch.cuda.empty_cache``
does not free them). The convs of one forward that share an input shape get one buffer each
(they are all saved for backward at once); a YOLOv8n step at 640 px, batch 16, keeps ~0.7 GB in
fp32 for the forward (memory the saved padded inputs take anyway) and ~0.3 GB for bwd_data's
grad pads (one per shape). :data:`BUDGET_BYTES` bounds the total per device; a buffer that does
not fit evicts idle ones, least recently used first, or the call pads the old way. Multi-scale
training (a new shape every few batches) therefore stays bounded and falls back gracefully.
:func:`release` drops everything (the plugin calls it when a run ends).

Where torch lacks the storage reference count (``torch._C._storage_Use_Count``: CUDA/ROCm
builds of torch 2.0+ have it) or while ``torch.compile`` traces, every call pads the old way.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from .._compat import is_compiling

_use_count = getattr(torch._C, "_storage_Use_Count", None)
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)

#: Bytes of kept buffers per device (busy or idle); 0 turns reuse off (every call pads with
#: ``constant_pad_nd``, as before). 1.5 GiB covers YOLOv8n at 640 px, batch 16, fp32 (~1.0 GB);
#: larger images or batches keep what fits and pad the rest the old way.
BUDGET_BYTES = 3 << 29


class _Slot:
    """One kept buffer: the whole padded tensor, its interior view, and its idle refcount."""

    __slots__ = ("buf", "interior", "cdata", "idle", "nbytes", "device")

    def __init__(self, buf: torch.Tensor, interior: torch.Tensor, device: int) -> None:
        self.buf = buf
        self.interior = interior
        self.cdata = buf.untyped_storage()._cdata
        self.nbytes = buf.numel() * buf.element_size()
        self.device = device
        # what the storage's count reads with only the pool's own tensors on it
        self.idle = _use_count(self.cdata)

    def is_idle(self) -> bool:
        return _use_count(self.cdata) == self.idle


_LOCK = threading.Lock()
#: key -> slots, least recently used key first
_SLOTS: "OrderedDict[tuple, list[_Slot]]" = OrderedDict()
_BYTES: dict[int, int] = {}


def _stream(device: int) -> int:
    if device < 0:
        return 0
    if _raw_stream is not None:
        return _raw_stream(device)
    return torch.cuda.current_stream(device).cuda_stream  # pragma: no cover - torch without the raw call


def padded(src: torch.Tensor, pad6: tuple[int, int, int, int, int, int]) -> torch.Tensor:
    """``src`` (N, H, W, C), any strides, zero-padded by ``pad6 = (0, 0, left, right, top,
    bottom)`` into a contiguous (N, H + top + bottom, W + left + right, C) tensor.

    A kept buffer's alias when one of that shape is idle (one copy kernel) or can be made within
    the budget; otherwise ``constant_pad_nd`` (fill + copy). Either way the caller owns the
    result until it drops it.
    """
    if _use_count is None or BUDGET_BYTES <= 0 or is_compiling():
        return torch.constant_pad_nd(src, pad6)
    device = src.get_device()
    key = (src.shape, src.dtype, pad6, device, _stream(device))
    with _LOCK:
        slots = _SLOTS.get(key)
        if slots is not None:
            _SLOTS.move_to_end(key)
            for slot in slots:
                if slot.is_idle():
                    out = slot.buf.detach()  # busy from here on, until the caller lets go
                    break
            else:
                slot = out = None
        else:
            slot = out = None
    if slot is None:
        return _new(key, src, pad6)
    slot.interior.copy_(src)
    return out


def _new(key: tuple, src: torch.Tensor, pad6: tuple[int, ...]) -> torch.Tensor:
    """A fresh padded copy; kept as a new slot when it fits the budget (evicting idle slots)."""
    out = torch.constant_pad_nd(src, pad6)
    nbytes = out.numel() * out.element_size()
    device = key[3]
    with _LOCK:
        if not _make_room(device, nbytes):
            return out
        _, _, left, right, top, bottom = pad6
        n, h, w, c = src.shape
        slot = _Slot(out, out[:, top:top + h, left:left + w], device)
        _SLOTS.setdefault(key, []).append(slot)
        _SLOTS.move_to_end(key)
        _BYTES[device] = _BYTES.get(device, 0) + nbytes
        return out.detach()


def _make_room(device: int, nbytes: int) -> bool:
    """Evict idle slots of this device, least recently used first, until ``nbytes`` fit."""
    used = _BYTES.get(device, 0)
    if used + nbytes <= BUDGET_BYTES:
        return True
    if nbytes > BUDGET_BYTES:
        return False
    for key in list(_SLOTS):
        if key[3] != device:
            continue
        slots = _SLOTS[key]
        for slot in [s for s in slots if s.is_idle()]:
            slots.remove(slot)
            used -= slot.nbytes
            if used + nbytes <= BUDGET_BYTES:
                break
        if not slots:
            del _SLOTS[key]
        if used + nbytes <= BUDGET_BYTES:
            break
    _BYTES[device] = used
    return used + nbytes <= BUDGET_BYTES


def kept_bytes(device: int | None = None) -> int:
    """Bytes of kept buffers on ``device`` (a CUDA index, -1 for the CPU), or on all devices."""
    with _LOCK:
        return sum(_BYTES.values()) if device is None else _BYTES.get(device, 0)


def release() -> None:
    """Drop every kept buffer (busy ones live on with their holders, then go back to the
    caching allocator)."""
    with _LOCK:
        _SLOTS.clear()
        _BYTES.clear()
