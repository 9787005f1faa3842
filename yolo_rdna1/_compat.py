"""Small shims over torch APIs that moved between torch 2.1 (ROCm users) and 2.14."""

from __future__ import annotations

import torch

try:  # torch >= 2.3
    from torch.compiler import is_compiling as _is_compiling
except ImportError:  # pragma: no cover - torch 2.1/2.2
    from torch._dynamo import is_compiling as _is_compiling


def is_compiling() -> bool:
    """True while torch.compile traces; the guard then skips its Python bookkeeping."""
    return _is_compiling()


#: One C call that says whether autocast is on for any device: the guard's per-call check, so
#: the device type is only looked up when autocast is actually on (torch >= 2.1 has it).
any_autocast_enabled = getattr(torch._C, "_is_any_autocast_enabled", None) or (lambda: True)


if "device_type" in (getattr(torch.is_autocast_enabled, "__text_signature__", None) or "") or hasattr(
    torch, "get_autocast_dtype"
):

    def autocast_dtype(device_type: str) -> torch.dtype | None:
        """The dtype autocast would run a conv in on this device type, or None when it is off."""
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None

else:  # pragma: no cover - torch < 2.4

    def autocast_dtype(device_type: str) -> torch.dtype | None:
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        if device_type == "cuda":
            return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
        return None


_get_autograd_mt = getattr(torch._C, "_is_multithreading_enabled", None)
_set_autograd_mt = getattr(torch._C, "_set_multithreading_enabled", None)


def set_autograd_multithreading(enabled: bool) -> bool | None:
    """Switch autograd's device worker threads on or off for backward calls made from *this*
    thread (a thread-local flag, torch >= 2.0); returns the previous setting, None where torch
    has no such switch. Off, a CUDA/HIP backward runs on the calling thread."""
    if _set_autograd_mt is None or _get_autograd_mt is None:
        return None
    prev = bool(_get_autograd_mt())
    _set_autograd_mt(enabled)
    return prev
