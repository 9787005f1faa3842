"""Old stacks: every module imports and a guarded conv trains without the torch APIs that torch
1.13 lacks; the Ultralytics version check; the storage use count of the kept pad buffers."""

from __future__ import annotations

import logging

import pytest
import torch

from yolo_rdna1 import _compat
from yolo_rdna1 import _ultralytics as ul


def test_every_module_imports_and_a_guarded_conv_trains_without_the_apis_torch_113_lacks(run_child_file):
    # tests/children/as_torch_113.py removes what torch 1.13.1 lacks, imports every module, trains a conv
    r = run_child_file("as_torch_113", timeout=300)
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
