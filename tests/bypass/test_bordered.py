"""Kept zero-bordered buffers (``bypass.bordered``): reused only when nothing holds them.

A buffer that is handed out while still saved for a backward would silently corrupt gradients,
so every case here checks the numbers against ``F.conv2d`` as well as what the pool kept.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from yolo_rdna1._compat import storage_cdata
from yolo_rdna1.bypass import bordered
from yolo_rdna1.guard import guarded

CL = torch.channels_last

pytestmark = pytest.mark.skipif(
    bordered._use_count is None,
    reason=(
        "no storage use count in this torch build (yolo_rdna1._compat.storage_use_count is None); "
        "kept pad buffers are off there and every pad is a plain constant_pad_nd"
    ),
)


@pytest.fixture(autouse=True)
def _fresh_pool(monkeypatch):
    bordered.release()
    monkeypatch.setattr(bordered, "BUDGET_BYTES", 1 << 30)
    yield
    bordered.release()


def _convs(seed: int = 0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(4, 5, 3, 1, 1).double().to(memory_format=CL)
    ref = nn.Conv2d(4, 5, 3, 1, 1).double()
    ref.load_state_dict(conv.state_dict())
    return conv, ref


def _x(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 7, 6, dtype=torch.float64, generator=g).contiguous(memory_format=CL)


def _expected(ref: nn.Module, x: torch.Tensor, go: torch.Tensor):
    xr = x.detach().clone().requires_grad_()
    ref.zero_grad()
    out = ref(xr)
    out.backward(go)
    return out.detach(), xr.grad, ref.weight.grad.clone()


def _storages() -> set[int]:
    return {s.cdata for slots in bordered._SLOTS.values() for s in slots}


def _ref(x: torch.Tensor, pad6) -> torch.Tensor:
    return torch.constant_pad_nd(x.permute(0, 2, 3, 1), pad6)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "wide"])
def test_padded_equals_constant_pad_nd_and_keeps_its_border_zero(layout):
    """Each way the copy can go: transposing NCHW, channels_last, 16-byte units (complex128)."""
    pad6 = (0, 0, 1, 2, 2, 1)
    make = lambda: torch.randn(2, 4, 5, 3).contiguous(memory_format=CL if layout != "nchw" else torch.contiguous_format)  # noqa: E731
    wdt = torch.complex128 if layout == "wide" else None

    def expect(x):
        r = _ref(x, pad6)
        return r.contiguous().view(torch.complex128) if wdt else r

    x = make()
    first = bordered.padded(x, pad6, wdt)
    assert torch.equal(first, expect(x))
    del first  # idle again: the next call reuses the buffer and must not see stale interior data
    x2 = make()
    second = bordered.padded(x2, pad6, wdt)
    assert torch.equal(second, expect(x2))
    assert len(_storages()) == 1 and storage_cdata(second) in _storages()
    held = bordered.padded(x, pad6, wdt, rows=True)  # the buffer is busy (second): a new one
    assert held.shape == (2 * 8 * 6, 4 // (4 if wdt else 1)) and torch.equal(second, expect(x2))
    assert len(_storages()) == 2


@pytest.mark.parametrize("nchw", [True, False])
def test_a_held_buffer_is_not_handed_out_again(nchw):
    pad6 = (0, 0, 1, 1, 1, 1)
    fmt = torch.contiguous_format if nchw else CL
    x = torch.randn(1, 2, 3, 3).contiguous(memory_format=fmt)
    held = bordered.padded(x, pad6)
    for _ in range(3):  # a view the pool caches must not count as a holder either
        bordered.strided(held, (1, 2), (1, 1))
    other = bordered.padded(torch.randn(1, 2, 3, 3).contiguous(memory_format=fmt), pad6)
    assert storage_cdata(held) != storage_cdata(other)
    assert torch.equal(held, _ref(x, pad6)), "the second call overwrote the first one's buffer"
    del held, other
    again = bordered.padded(x, pad6)
    assert storage_cdata(again) in _storages() and len(_storages()) == 2, "idle buffers were not reused"


def test_train_steps_reuse_the_forward_buffers_and_match_torch():
    conv, ref = _convs()
    with guarded(policy="bypass", faults=False):
        kept = None
        for step in range(3):
            x = _x(step).requires_grad_()
            go = torch.randn(2, 5, 7, 6, dtype=torch.float64)
            out = conv(x)
            conv.zero_grad()
            out.backward(go)
            e_out, e_gx, e_gw = _expected(ref, x, go)
            torch.testing.assert_close(out.detach(), e_out, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(x.grad, e_gx, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(conv.weight.grad, e_gw, rtol=1e-9, atol=1e-9)
            if kept is None:
                kept = _storages()
                assert kept, "the forward's padded input and bwd_data's padded grad_out were not kept"
            else:
                assert _storages() == kept, "a later step made new buffers instead of reusing the idle ones"


def test_two_graphs_alive_at_once_get_their_own_buffers():
    """Two forwards before either backward (gradient accumulation by hand): the first graph's
    saved padded input must survive the second forward."""
    conv, ref = _convs(1)
    xa, xb = _x(10).requires_grad_(), _x(11).requires_grad_()
    go = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    with guarded(policy="bypass", faults=False):
        out_a = conv(xa)
        out_b = conv(xb)
        conv.zero_grad()
        out_a.backward(go)
        gw_a = conv.weight.grad.clone()
        conv.zero_grad()
        out_b.backward(go)
        gw_b = conv.weight.grad.clone()
    torch.testing.assert_close(gw_a, _expected(ref, xa, go)[2], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gw_b, _expected(ref, xb, go)[2], rtol=1e-9, atol=1e-9)


def test_a_retained_graph_keeps_its_buffer_busy():
    conv, ref = _convs(2)
    x1 = _x(20).requires_grad_()
    go = torch.randn(2, 5, 7, 6, dtype=torch.float64)
    with guarded(policy="bypass", faults=False):
        out1 = conv(x1)
        out1.backward(go, retain_graph=True)
        conv(_x(21).requires_grad_()).backward(go)  # would take out1's buffer if it looked idle
        conv.zero_grad()
        out1.backward(go)
    torch.testing.assert_close(conv.weight.grad, _expected(ref, x1, go)[2], rtol=1e-9, atol=1e-9)


def test_inference_reuses_idle_buffers_but_never_keeps_new_ones():
    """Validation and the EMA model run under no_grad at their own batch size: their shapes
    must not hold memory through the training epochs."""
    conv, ref = _convs(5)
    with guarded(policy="bypass", faults=False):
        conv(_x(50).requires_grad_()).sum().backward()
        trained = _storages()
        with torch.no_grad():
            x = _x(51)
            torch.testing.assert_close(conv(x), ref(x), rtol=1e-9, atol=1e-9)  # the training shape: reused
            big = torch.randn(3, 4, 7, 6, dtype=torch.float64)
            torch.testing.assert_close(conv(big), ref(big), rtol=1e-9, atol=1e-9)  # a new shape: not kept
        frozen = _x(52)  # nothing requires grad, grad mode on: inference too
        conv.requires_grad_(False)
        conv(frozen.repeat(2, 1, 1, 1))
    assert _storages() == trained


def test_a_graph_dropped_without_backward_frees_its_buffer():
    conv, _ = _convs(3)
    with guarded(policy="bypass", faults=False):
        out = conv(_x(30).requires_grad_())
        busy = _storages()
        del out
        with torch.no_grad():
            conv(_x(31))
    assert _storages() == busy


def test_budget_bounds_the_kept_bytes_and_evicts_idle_buffers_first(monkeypatch):
    pad6 = (0, 0, 1, 1, 1, 1)
    one = 2 * 6 * 6 * 3 * 4  # a (2, 3, 4, 4) float32 input padded by 1
    monkeypatch.setattr(bordered, "BUDGET_BYTES", 2 * one)
    held = bordered.padded(torch.randn(2, 3, 4, 4), pad6)
    bordered.padded(torch.randn(2, 3, 4, 5)[:, :, :, :4], pad6)  # same shape, other strides: same key
    assert bordered.kept_bytes() == 2 * one
    x = torch.randn(1, 3, 4, 4)
    small = bordered.padded(x, pad6)  # a new key: evicts the idle buffer, never the held one
    assert torch.equal(small, _ref(x, pad6))
    assert storage_cdata(held) in _storages()
    assert bordered.kept_bytes() == one + one // 2
    monkeypatch.setattr(bordered, "BUDGET_BYTES", 0)
    before = _storages()
    out = bordered.padded(torch.randn(3, 3, 4, 4), pad6)
    assert storage_cdata(out) not in _storages() and _storages() == before


def test_a_shape_that_stopped_coming_is_dropped_and_the_current_one_kept(monkeypatch):
    """The smaller last batch of an epoch must not hold its buffers through the next epoch,
    and the sweep must never drop the buffers the steps keep using."""
    monkeypatch.setattr(bordered, "_MIN_SLOTS", 1)
    conv, _ = _convs(6)

    def step(n: int, seed: int) -> None:
        x = torch.randn(n, 4, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_()
        conv(x).sum().backward()

    with guarded(policy="bypass", faults=False):
        step(2, 0)
        step(3, 1)  # the "last batch"
        assert {k[0][0] for k in bordered._SLOTS} == {2, 3}

        def current() -> set[int]:
            return {sl.cdata for k, v in bordered._SLOTS.items() if k[0][0] == 2 for sl in v}

        steady = current()
        for i in range(20):
            step(2, 10 + i)
            assert current() == steady, "a buffer of the current steps was dropped and made again"
    assert {k[0][0] for k in bordered._SLOTS} == {2}, "the batch-3 buffers were kept"


def test_release_drops_every_buffer_but_not_what_callers_hold():
    x = torch.randn(1, 1, 2, 2)
    held = bordered.padded(x, (0, 0, 1, 1, 1, 1))
    bordered.release()
    assert bordered.kept_bytes() == 0 and not _storages()
    assert torch.equal(held, _ref(x, (0, 0, 1, 1, 1, 1)))
    assert storage_cdata(bordered.strided(held, (2, 2), (1, 1))) == storage_cdata(held)


def test_without_the_storage_count_every_call_pads_fresh(monkeypatch):
    monkeypatch.setattr(bordered, "_use_count", None)
    x = torch.randn(1, 1, 2, 2)
    a = bordered.padded(x, (0, 0, 1, 1, 1, 1))
    b = bordered.padded(x, (0, 0, 1, 1, 1, 1))
    assert storage_cdata(a) != storage_cdata(b) and not _storages()
    assert torch.equal(a, F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1)))


def test_the_end_of_a_guarded_run_releases_the_kept_buffers(tmp_path):
    from yolo_rdna1.guard import ConvGuard
    from yolo_rdna1.options import PluginOptions
    from yolo_rdna1.run import GuardedRun

    run = GuardedRun(PluginOptions(telemetry=0, thermal=False, stall_timeout=0), tmp_path, torch.device("cpu"))
    run.guard = ConvGuard(policy="bypass", faults=False)
    run.enter_training()
    conv, _ = _convs(4)
    with guarded(run.guard):
        conv(_x(40).requires_grad_()).sum().backward()
    assert bordered.kept_bytes() > 0
    run.finish()
    assert bordered.kept_bytes() == 0


def test_a_small_gpu_gets_a_share_of_its_memory_not_the_whole_budget(monkeypatch):
    """An RX 5600 XT has 6 GB: the kept buffers may take a tenth of it, an H200 the fixed cap."""
    import types

    sizes = {0: 6 << 30, 1: 141 << 30}
    monkeypatch.setattr(bordered, "_DEVICE_BYTES", {})
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=sizes[i]))
    monkeypatch.setattr(bordered, "BUDGET_BYTES", 3 << 29)
    assert bordered.budget(0) == int(0.1 * (6 << 30))
    assert bordered.budget(1) == 3 << 29
    assert bordered.budget(-1) == 3 << 29


def test_mixed_routes_keep_buffers_for_training_only():
    """A signature with only some directions bypassed runs the functional API: a forward whose
    operands need no gradient (the EMA model in validation) must not keep a new buffer."""
    from yolo_rdna1.bypass import ConvParams, nhwc_gemm

    p = ConvParams((1, 1), (1, 1))
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    nhwc_gemm.forward(_x(60), w, None, p)
    assert not _storages()
    nhwc_gemm.forward(_x(61), w.requires_grad_(), None, p)
    assert len(_storages()) == 1
