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
(they are all saved for backward at once); bwd_data's grad pads mostly find the forward buffer
of their shape already freed by the backward and take it. A YOLOv8n step at 640 px, batch 16
keeps ~0.75 GB in fp32 -- memory the saved padded inputs take during the step anyway, but kept
through its end, where the first layers' backward needs its largest temporaries: measured on
an H200, the training's peak is ~0.5 GB higher than with ``constant_pad_nd`` (1.23x of stock
instead of 1.08x; docs/benchmarks.md).

Only training calls make new buffers: inference (validation, the EMA model, anything under
``no_grad``) reuses idle ones of its shape and otherwise pads with ``constant_pad_nd``, so validation's
batch size holds no memory through the epochs. A sweep drops idle buffers no call took for a
while (the smaller last batch of an epoch, a finished scale of multi-scale training).
:data:`BUDGET_BYTES`, and :data:`BUDGET_FRACTION` of a GPU's memory for 6-8 GB cards, bound
the total per device; a buffer that does not fit evicts idle ones, least recently used first,
or the call pads with ``constant_pad_nd``. :func:`release` drops everything (the plugin calls it when a run
ends).

The storage reference count is ``torch._C._storage_Use_Count`` (torch 2.0+) or, on torch 1.13,
the same counter read from the storage object (``yolo_rdna1._compat.storage_use_count``, checked
at import to follow references). Where neither works, or while ``torch.compile`` traces, every
call pads the old way.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator

import torch

from .._compat import is_compiling, storage_cdata
from .._compat import storage_use_count as _use_count

_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)

#: Bytes of kept buffers per device (busy or idle); 0 turns reuse off (every call pads with
#: ``constant_pad_nd``). 1.5 GiB covers YOLOv8n at 640 px, batch 16, fp32 (~0.75 GB);
#: larger images or batches keep what fits and pad the rest with ``constant_pad_nd``.
BUDGET_BYTES = 3 << 29
#: ... and at most this share of a GPU's memory (an RX 5600 XT has 6 GB): the buffers stay
#: allocated through the whole step, so on a small card they cost batch size.
BUDGET_FRACTION = 0.1


class _Slot:
    """One kept buffer: the padded tensor, the interior view the copy writes, the views plans
    read (cached: each is a host op saved per call), and the storage count when idle."""

    __slots__ = ("buf", "interior", "rows", "views", "cdata", "idle", "nbytes", "device", "last")

    def __init__(self, buf: torch.Tensor, pad6: tuple[int, ...], h: int, w: int, nchw: bool, device: int) -> None:
        self.buf = buf
        _, _, left, _, top, _ = pad6
        # the copy's destination: (N, H, W, C') or, for a copy that also transposes, (N, C, H, W)
        self.interior = (
            buf[:, top : top + h, left : left + w].permute(0, 3, 1, 2)
            if nchw
            else buf[:, top : top + h, left : left + w]
        )
        self.rows = (buf.shape[0] * buf.shape[1] * buf.shape[2], buf.shape[3])
        self.views: dict = {}
        self.cdata = storage_cdata(buf)
        self.nbytes = buf.numel() * buf.element_size()
        self.device = device
        self.last = _tick  # the pad call that last took it
        # what the storage's count reads with only the pool's own tensors on it (no temporaries
        # are alive here: an extra one would make a busy buffer look idle later)
        self.idle = _use_count(self.cdata)

    def is_idle(self) -> bool:
        return _use_count(self.cdata) == self.idle


_LOCK = threading.Lock()
#: key -> slots, least recently used key first
_SLOTS: OrderedDict[tuple, list[_Slot]] = OrderedDict()
_BYTES: dict[int, int] = {}
#: buffer address -> slot, to find the cached views of a handed-out buffer
_BY_PTR: dict[int, _Slot] = {}
#: pad calls so far (a clock for staleness), and the call at which the next sweep runs
_tick = 0
_next_sweep = 0
#: the sweep's horizon is this many times the kept buffers (at least _MIN_SLOTS), in pad calls
_HORIZON = 4
_MIN_SLOTS = 64


def _stream(device: int) -> int:
    if device < 0:
        return 0
    if _raw_stream is not None:
        return _raw_stream(device)
    return torch.cuda.current_stream(device).cuda_stream  # pragma: no cover - torch without the raw call


def _nhwc(x: torch.Tensor, wdt: torch.dtype | None) -> torch.Tensor:
    xh = x.permute(0, 2, 3, 1)
    return xh if wdt is None else xh.view(wdt)


def padded(
    x: torch.Tensor,
    pad6: tuple[int, int, int, int, int, int],
    wdt: torch.dtype | None = None,
    rows: bool = False,
    keep_new: bool = True,
) -> torch.Tensor:
    """``x`` (N, C, H, W), any layout, as a zero-padded contiguous NHWC tensor ``(N, H + top +
    bottom, W + left + right, C)``, ``pad6 = (0, 0, left, right, top, bottom)``.

    ``wdt``: copy the channel vectors as that (16-byte) dtype instead (``x`` channels_last-like,
    ``C * itemsize`` a multiple of its size); the result then has that dtype and ``C'`` channels.
    ``rows``: return it as ``(N * Hp * Wp, C')``, the GEMM operand.

    A kept buffer's alias when one of that shape is idle (one copy kernel) or can be made within
    the budget; otherwise ``constant_pad_nd`` (fill + copy). Either way the caller owns the
    result until it drops it. ``keep_new=False`` (inference: validation, the EMA model) uses an
    idle kept buffer but never makes one, so shapes only inference sees hold no memory.
    """
    global _tick
    if _use_count is None or BUDGET_BYTES <= 0 or is_compiling():
        return _fresh(x, pad6, wdt, rows)
    device = x.get_device()
    key = (x.shape, x.dtype, wdt, pad6, device, _stream(device))
    slot = None
    with _LOCK:
        _tick += 1
        if _tick >= _next_sweep:
            _sweep()
        slots = _SLOTS.get(key)
        if slots is not None:
            _SLOTS.move_to_end(key)
            for i, s in enumerate(slots):
                if s.is_idle():
                    slot = s
                    out = s.buf.view(s.rows) if rows else s.buf.detach()  # busy until the caller lets go
                    # least recently taken first: the convs of one forward that share a shape
                    # each find an idle buffer at the front instead of scanning the busy ones
                    slots.append(slots.pop(i))
                    s.last = _tick
                    break
    if slot is None:
        return _new(key, x, pad6, wdt, rows) if keep_new else _fresh(x, pad6, wdt, rows)
    slot.interior.copy_(x if wdt is None else _nhwc(x, wdt))
    return out


def _fresh(x: torch.Tensor, pad6: tuple[int, ...], wdt: torch.dtype | None, rows: bool) -> torch.Tensor:
    out = torch.constant_pad_nd(_nhwc(x, wdt), pad6)
    return out.view(-1, out.shape[3]) if rows else out


def _new(key: tuple, x: torch.Tensor, pad6: tuple[int, ...], wdt: torch.dtype | None, rows: bool) -> torch.Tensor:
    """A fresh padded copy; kept as a new slot when it fits the budget (evicting idle slots)."""
    out = _fresh(x, pad6, wdt, False)
    nbytes = out.numel() * out.element_size()
    device = key[4]
    with _LOCK:
        if _make_room(device, nbytes):
            slot = _Slot(out, pad6, x.shape[2], x.shape[3], wdt is None, device)
            _SLOTS.setdefault(key, []).append(slot)
            _SLOTS.move_to_end(key)
            _BYTES[device] = _BYTES.get(device, 0) + nbytes
            _BY_PTR[out.data_ptr()] = slot
            out = out.detach()
    return out.view(-1, out.shape[3]) if rows else out


def strided(t: torch.Tensor, size: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """``t.as_strided(size, stride)``; when ``t`` is a kept buffer handed out by :func:`padded`,
    the view is made once per buffer and cached (the im2col view of a padded input, read by the
    forward and again by bwd_weight)."""
    slot = _BY_PTR.get(t.data_ptr())
    if slot is None or slot.buf.dtype != t.dtype:
        return t.as_strided(size, stride)
    vkey = (size, stride)
    v = slot.views.get(vkey)
    if v is None:
        with _LOCK:
            # the caller holds the buffer, so only this view changes the count
            before = _use_count(slot.cdata)
            v = slot.buf.as_strided(size, stride)
            slot.idle += _use_count(slot.cdata) - before
            slot.views[vkey] = v
    return v


def _drop(key: tuple, slot: _Slot) -> None:
    """Forget one idle slot (the caller holds the lock); its memory goes back to the allocator."""
    slots = _SLOTS[key]
    slots.remove(slot)
    if not slots:
        del _SLOTS[key]
    _BY_PTR.pop(slot.buf.data_ptr(), None)
    _BYTES[slot.device] -= slot.nbytes


def _sweep() -> None:
    """Drop idle buffers no pad call took for a while (the caller holds the lock).

    Why: a shape that stopped coming -- the smaller last batch of an epoch, an earlier scale of
    multi-scale training -- would otherwise hold its memory through every later step. A training
    step takes each of its kept buffers at least once and makes about as many pad calls as it
    keeps buffers (its forward's saved inputs) plus fewer for bwd_data, so a buffer of the
    current pattern is never older than about two kept-buffer counts; a shape that left is
    dropped after a few steps, and made again (one fill per conv) if it comes back.
    """
    global _next_sweep
    n = max(_MIN_SLOTS, sum(len(v) for v in _SLOTS.values()))
    _next_sweep = _tick + n
    for key in list(_SLOTS):
        for slot in [s for s in _SLOTS[key] if _tick - s.last > _HORIZON * n and s.is_idle()]:
            _drop(key, slot)


_DEVICE_BYTES: dict[int, int] = {}


def budget(device: int) -> int:
    """Bytes of kept buffers allowed on ``device`` (a CUDA index, -1 for the CPU)."""
    if device < 0:
        return BUDGET_BYTES
    total = _DEVICE_BYTES.get(device)
    if total is None:
        total = _DEVICE_BYTES[device] = torch.cuda.get_device_properties(device).total_memory
    return min(BUDGET_BYTES, int(BUDGET_FRACTION * total))


def _make_room(device: int, nbytes: int) -> bool:
    """Evict idle slots of this device, least recently used first, until ``nbytes`` fit."""
    limit = budget(device)
    if _BYTES.get(device, 0) + nbytes <= limit:
        return True
    if nbytes > limit:
        return False
    for key in [k for k in _SLOTS if k[4] == device]:
        for slot in [s for s in _SLOTS[key] if s.is_idle()]:
            _drop(key, slot)
            if _BYTES[device] + nbytes <= limit:
                return True
    return False


def kept_bytes(device: int | None = None) -> int:
    """Bytes of kept buffers on ``device`` (a CUDA index, -1 for the CPU), or on all devices."""
    with _LOCK:
        return sum(_BYTES.values()) if device is None else _BYTES.get(device, 0)


class Pool:
    """A set of kept buffers of its own, for :func:`pool`."""

    __slots__ = ("slots", "bytes")

    def __init__(self) -> None:
        self.slots: OrderedDict[tuple, list[_Slot]] = OrderedDict()
        self.bytes: dict[int, int] = {}

    def kept_bytes(self) -> int:
        return sum(self.bytes.values())


@contextlib.contextmanager
def pool(own: Pool) -> Iterator[Pool]:
    """Inside the block kept buffers come from and go to ``own``: a benchmark that compares
    paths in one process gives each its own, so one path's buffers never serve another and
    each path's memory is its own. Process-wide, like :data:`BUDGET_BYTES`."""
    global _SLOTS, _BYTES
    with _LOCK:
        outer = _SLOTS, _BYTES
        _SLOTS, _BYTES = own.slots, own.bytes
    try:
        yield own
    finally:
        with _LOCK:
            _SLOTS, _BYTES = outer


def release() -> None:
    """Drop every kept buffer (busy ones live on with their holders, then go back to the
    caching allocator)."""
    global _tick, _next_sweep
    with _LOCK:
        _SLOTS.clear()
        _BYTES.clear()
        _BY_PTR.clear()
        _tick = _next_sweep = 0
