"""Small shims over torch APIs that moved or are missing between torch 1.13 (ROCm 5.2 users) and
the newest release, and the check of the Ultralytics version the plugin runs under.

Every torch name here is looked up with a fallback: importing the package never fails for a
missing torch API (``tests/test_compat.py`` imports every module with them removed).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Callable

import torch

LOGGER = logging.getLogger("yolo_rdna1")

try:  # torch >= 2.3: true while dynamo and AOTAutograd trace
    from torch.compiler import is_compiling as _is_compiling
except ImportError:
    try:  # torch 2.0-2.2: dynamo's flag is false while AOTAutograd traces (fake tensors under a dispatch mode)
        from torch._dynamo import is_compiling as _dynamo_compiling

        _dispatch_modes = getattr(torch._C, "_len_torch_dispatch_stack", None) or (lambda: 0)

        def _is_compiling() -> bool:
            return _dynamo_compiling() or _dispatch_modes() > 0

    except ImportError:  # torch 1.13: no torch.compile, so nothing ever traces

        def _is_compiling() -> bool:
            return False


def is_compiling() -> bool:
    """True while torch.compile traces; the guard then skips its Python bookkeeping."""
    return _is_compiling()


def _any_autocast_enabled_old() -> bool:
    """torch < 2.1: the two devices :func:`autocast_dtype` knows (two C calls, no dtype lookup)."""
    return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


#: One C call that says whether autocast is on for any device: the guard's per-call check, so
#: the device type is only looked up when autocast is actually on (torch >= 2.1 has it).
any_autocast_enabled: Callable[[], bool] = (
    getattr(torch._C, "_is_any_autocast_enabled", None) or _any_autocast_enabled_old
)


if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4, with is_autocast_enabled(device_type)

    def autocast_dtype(device_type: str) -> torch.dtype | None:
        """The dtype autocast would run a conv in on this device type, or None when it is off."""
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None

else:  # torch < 2.4

    def autocast_dtype(device_type: str) -> torch.dtype | None:
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        if device_type == "cuda":
            return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
        return None


_get_autograd_mt = getattr(torch._C, "_is_multithreading_enabled", None)
_set_autograd_mt = getattr(torch._C, "_set_multithreading_enabled", None)
_told_no_switch = False


def set_autograd_multithreading(enabled: bool) -> bool | None:
    """Switch autograd's device worker threads on or off for backward calls made from *this*
    thread (a thread-local flag, torch >= 2.0); returns the previous setting, None where torch
    has no such switch. Off, a CUDA/HIP backward runs on the calling thread.

    torch 1.13 has no switch and no other way to keep a GPU backward on the calling thread: its
    backward runs on autograd's device thread, which costs a bypassed conv's Python backward a
    thread hand-off per node (a bypassed YOLOv8n epoch ran ~1/5 slower that way on an H200,
    docs/benchmarks.md). Said once, on a machine with a GPU (on the CPU there is no such thread).
    """
    global _told_no_switch
    if _set_autograd_mt is None or _get_autograd_mt is None:
        if not enabled and not _told_no_switch and torch.cuda.is_available():
            _told_no_switch = True
            LOGGER.info(
                "yolo_rdna1: torch %s cannot keep the backward on the training thread "
                "(serial_backward needs torch >= 2.0); bypassed convs train somewhat slower",
                torch.__version__,
            )
        return None
    prev = bool(_get_autograd_mt())
    _set_autograd_mt(enabled)
    return prev


# -- storage use count (the kept pad buffers of bypass/bordered.py) -----------------------------------
def _storage_cdata_new(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _storage_cdata_old(t: torch.Tensor) -> int:  # torch < 2.0: Tensor.storage() is the untyped one's wrapper
    return t.storage()._cdata


#: The address of a tensor's storage (a ``c10::StorageImpl``): what :data:`storage_use_count` reads.
storage_cdata: Callable[[torch.Tensor], int] = (
    _storage_cdata_new if hasattr(torch.Tensor, "untyped_storage") else _storage_cdata_old
)


def _raw_use_count(cdata: int) -> int:
    """torch < 2.0 has no ``_storage_Use_Count``: read ``intrusive_ptr_target::refcount_``, the
    first word after the vtable pointer of the ``StorageImpl`` (a live one: the caller holds a
    tensor on it). Used only after :func:`_counts_references` saw it follow references."""
    return ctypes.c_size_t.from_address(cdata + ctypes.sizeof(ctypes.c_void_p)).value


def _counts_references(count: Callable[[int], int]) -> bool:
    """Does ``count`` go up by one per tensor on a storage and back down when it is dropped?"""
    try:
        base = torch.zeros(4)
        cdata = storage_cdata(base)
        before = count(cdata)
        alias = base[1:]
        during = count(cdata)
        del alias
        return during == before + 1 and count(cdata) == before
    except Exception:  # an unexpected layout or API: no count, the pool stays off
        return False


def _pick_use_count() -> Callable[[int], int] | None:
    native = getattr(torch._C, "_storage_Use_Count", None)
    if native is not None:
        return native
    return _raw_use_count if _counts_references(_raw_use_count) else None


#: The number of references to a storage (tensors, views, autograd's saved copies) from its
#: :data:`storage_cdata`, or None where no reliable count exists (the pad buffers are then off).
storage_use_count: Callable[[int], int] | None = _pick_use_count()
