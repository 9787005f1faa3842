"""Old stacks: every module imports and a guarded conv trains without the torch APIs that torch
1.13 lacks; the Ultralytics version check; the storage use count of the kept pad buffers."""

from __future__ import annotations

import logging

import pytest
import torch

from yolo_rdna1 import _compat
from yolo_rdna1 import _ultralytics as ul

#: Removes what torch 1.13.1 lacks from this torch (attributes, and modules so that their import
#: fails), then imports every yolo_rdna1 module and trains one bypassed 3x3 conv.
_AS_TORCH_113 = r"""
import importlib, pkgutil, sys
import torch

get_autocast_dtype = getattr(torch, "get_autocast_dtype", None)
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


class Missing:
    def __get__(self, obj, cls):
        raise AttributeError("untyped_storage")


untyped = getattr(torch.Tensor, "untyped_storage", None)
if untyped is not None:
    torch.Tensor.untyped_storage = Missing()
    torch.Tensor.storage = lambda self: untyped(self)  # 1.13's storage() is native, not through untyped_storage()
assert not hasattr(torch.Tensor, "untyped_storage") and not hasattr(torch, "compile")

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
"""


def test_every_module_imports_and_a_guarded_conv_trains_without_the_apis_torch_113_lacks(run_child):
    r = run_child(_AS_TORCH_113, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    modules = int(r.stdout.split("MODULES", 1)[1].split()[0])
    assert modules >= 40, f"walk_packages found only {modules} modules"


def test_storage_use_count_follows_the_references_to_a_storage():
    assert _compat.storage_use_count is not None, "no use count: the kept pad buffers are off on this torch"
    buf = torch.zeros(3, 4)
    cdata = _compat.storage_cdata(buf)
    idle = _compat.storage_use_count(cdata)
    alias, view = buf[1:], buf.view(12)
    assert _compat.storage_use_count(cdata) == idle + 2
    del alias, view
    assert _compat.storage_use_count(cdata) == idle


def test_the_raw_count_is_refused_when_it_does_not_follow_references():
    assert _compat._counts_references(lambda cdata: 7) is False
    assert _compat._counts_references(lambda cdata: 1 / 0) is False


@pytest.mark.parametrize(
    "version, known",
    [
        ("8.3.213", True),
        ("8.3.253", True),
        ("8.4.0", True),
        ("8.4.190", True),
        ("8.3.212", False),
        ("8.5.0", False),
        ("9.0.1", False),
        ("8.5.0rc1", False),
        ("main", False),
    ],
)
def test_ultralytics_versions_outside_the_supported_range_are_named(version, known):
    why = ul.untested(version)
    assert (why is None) is known
    if why is not None:
        assert version in why and "\n" not in why


def test_an_untested_ultralytics_warns_once(monkeypatch, caplog):
    import ultralytics

    monkeypatch.setattr(ul, "_warned", set())
    monkeypatch.setattr(ultralytics, "__version__", "8.5.2")
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        ul.check_version()
        ul.check_version()
    warnings = [r.getMessage() for r in caplog.records if "8.5.2" in r.getMessage()]
    assert len(warnings) == 1 and "ultralytics<8.5" in warnings[0]


def test_without_the_multithreading_switch_serial_backward_says_so_once_on_a_gpu_machine(monkeypatch, caplog):
    monkeypatch.setattr(_compat, "_set_autograd_mt", None)
    monkeypatch.setattr(_compat, "_told_no_switch", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.INFO, logger="yolo_rdna1"):
        assert _compat.set_autograd_multithreading(False) is None
        assert _compat.set_autograd_multithreading(False) is None
        assert _compat.set_autograd_multithreading(True) is None
    said = [r.getMessage() for r in caplog.records if "serial_backward" in r.getMessage()]
    assert len(said) == 1 and torch.__version__ in said[0]
