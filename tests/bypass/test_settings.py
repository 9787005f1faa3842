"""``bypass.settings`` and ``bordered.pool``: the switches benchmarks use for A/B runs instead of
assigning module globals; each must restore what it changed, also when the block raises."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from yolo_rdna1 import bypass
from yolo_rdna1.bypass import _common, bordered
from yolo_rdna1.guard import guarded


def _tunables() -> tuple:
    return (
        bypass.PREFERENCE,
        _common.FOLLOW_CUDNN_TF32,
        _common.WIDE_COPIES,
        _common.WIDE_MIN_BYTES,
        bordered.BUDGET_BYTES,
    )


def test_settings_change_the_tunables_inside_the_block_and_restore_them_after_an_error():
    before = _tunables()
    with pytest.raises(RuntimeError, match="inside"):
        with bypass.settings(
            preference=("im2col",), follow_cudnn_tf32=False, wide_copies=False, wide_min_bytes=7, pad_budget_bytes=0
        ):
            assert _tunables() == (("im2col",), False, False, 7, 0)
            raise RuntimeError("inside")
    assert _tunables() == before


def test_a_preference_reaches_the_routes_a_guard_resolves_inside_the_block():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with bypass.settings(preference=("im2col",)), guarded(policy="bypass", faults=False) as g:
        conv(torch.randn(1, 3, 6, 6))
    assert [r["algorithm"] for r in g.per_signature()] == ["im2col"]
    with guarded(policy="bypass", faults=False) as g:
        conv(torch.randn(1, 3, 6, 6))
    assert [r["algorithm"] for r in g.per_signature()] == ["nhwc_gemm"]


@pytest.mark.skipif(bordered._use_count is None, reason="no torch._C._storage_Use_Count: kept pad buffers are off")
def test_a_pool_keeps_the_buffers_made_inside_it_apart_from_the_shared_ones():
    bordered.release()
    conv = nn.Conv2d(4, 4, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    own = bordered.Pool()
    try:
        with bypass.settings(pad_budget_bytes=1 << 30), bordered.pool(own), guarded(policy="bypass", faults=False):
            conv(x).sum().backward()
        assert own.kept_bytes() > 0 and bordered.kept_bytes() == 0
    finally:
        bordered.release()
