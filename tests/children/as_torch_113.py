"""Child program of tests/test_compat.py: the plugin on this torch with what torch 1.13.1 lacks removed.

    python tests/children/as_torch_113.py

Removes the attributes torch 1.13 lacks (and makes ``torch._dynamo`` and ``torch.compiler`` fail
to import), then imports every yolo_rdna1 module and trains one bypassed 3x3 conv against the
vendor conv's values, in float32 and under bfloat16 autocast. Prints ``MODULES <count>``; a
failed check raises (exit code 1).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import torch


class Missing:
    """A descriptor whose attribute reads as absent: ``hasattr`` answers False."""

    def __get__(self, obj: object, cls: type) -> None:
        raise AttributeError("untyped_storage")


def remove_what_torch_113_lacks() -> None:
    """Strip this torch down to 1.13's API, as far as the plugin can tell."""
    sys.modules["torch._dynamo"] = None
    sys.modules["torch.compiler"] = None
    for name in ("_dynamo", "compiler", "compile", "get_autocast_dtype"):
        vars(torch).pop(name, None)
    for name in (
        "_storage_Use_Count",
        "_set_multithreading_enabled",
        "_is_multithreading_enabled",
        "_is_any_autocast_enabled",
    ):
        if hasattr(torch._C, name):
            delattr(torch._C, name)
    untyped = getattr(torch.Tensor, "untyped_storage", None)
    if untyped is not None:
        torch.Tensor.untyped_storage = Missing()
        torch.Tensor.storage = lambda self: untyped(self)  # 1.13's storage() is native, not through untyped_storage()
    assert not hasattr(torch.Tensor, "untyped_storage") and not hasattr(torch, "compile")


def main(argv: list[str]) -> int:
    """0 when every module imported and the bypassed conv matched the vendor's."""
    if argv:
        raise SystemExit(f"no arguments expected, got {argv}")
    get_autocast_dtype = getattr(torch, "get_autocast_dtype", None)
    remove_what_torch_113_lacks()

    import yolo_rdna1

    names = [m.name for m in pkgutil.walk_packages(yolo_rdna1.__path__, "yolo_rdna1.")]
    for name in names:
        importlib.import_module(name)

    from yolo_rdna1 import _compat, guarded
    from yolo_rdna1.bypass import bordered

    if get_autocast_dtype is not None:  # this torch's own autocast needs it; _compat chose without it
        torch.get_autocast_dtype = get_autocast_dtype

    assert _compat.is_compiling() is False
    assert _compat.set_autograd_multithreading(False) is None
    assert _compat.storage_use_count is _compat._raw_use_count, "the kept pad buffers lost their use count"

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    ref = conv(x)
    ref.sum().backward()
    want = (ref.detach(), x.grad.clone(), conv.weight.grad.clone())
    x.grad = None
    conv.weight.grad = None
    with guarded(policy="bypass", faults=False) as g:
        out = conv(x)
        out.sum().backward()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert _compat.any_autocast_enabled() and _compat.autocast_dtype("cpu") == torch.bfloat16
            low = conv(x)
        assert not _compat.any_autocast_enabled() and _compat.autocast_dtype("cpu") is None
    assert g.totals()["bypassed"] >= 2, g.totals()
    assert low.dtype == torch.bfloat16
    for got, exp in zip((out.detach(), x.grad, conv.weight.grad), want):
        torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-4)
    assert bordered._SLOTS, "the bypass kept no pad buffer"
    print("MODULES", len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
