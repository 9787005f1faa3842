"""Every bypass algorithm, direction by direction, against torch's own conv (issue 5).

Each algorithm's ``forward`` / ``backward_data`` / ``backward_weight`` is called directly on
random cases it ``supports()`` (strides, dilation, padding, groups/depthwise, bias, NCHW,
channels_last and channel slices of channels_last tensors as C2f hands them out, both
grad_out layouts) and compared with autograd through ``F.conv2d``: float64 to 1e-9, float32 to
1e-4. Then: the batch chunking, the 16-byte copy path, ``algorithm_for`` and ``supports()``,
every YOLOv8n signature, a whole YOLOv8n train step through the guard, autocast.
"""

from __future__ import annotations

import random
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from yolo_rdna1.bypass import (
    ALGORITHMS,
    PREFERENCE,
    ConvParams,
    _common,
    algorithm_for,
    depthwise,
    im2col,
    nhwc_gemm,
    pointwise,
)
from yolo_rdna1.guard import guarded
from yolo_rdna1.signature import ConvSignature

CL = torch.channels_last
FAST = ("pointwise", "nhwc_gemm", "depthwise")


def _case(rng: random.Random, name: str) -> dict:
    """A random conv that leans towards what ``name`` supports."""
    groups = rng.choice([1, 1, 2, 3])
    cin = groups * rng.randint(1, 3)
    cout = groups * rng.randint(1, 3)
    k = (rng.randint(1, 4), rng.randint(1, 4))
    stride = (rng.randint(1, 3), rng.randint(1, 3))
    dil = (rng.randint(1, 2), rng.randint(1, 2))
    pad = (rng.randint(0, 2), rng.randint(0, 2))
    if name == "pointwise" and rng.random() < 0.8:
        k, pad, groups, cin, cout = (1, 1), (0, 0), 1, rng.randint(1, 6), rng.randint(1, 6)
    if name == "nhwc_gemm" and rng.random() < 0.8:
        groups, cin, cout = 1, rng.randint(1, 6), rng.randint(1, 5)
        stride = (rng.randint(1, 2), rng.randint(1, 2))
        dil = tuple(1 if s == 2 else d for s, d in zip(stride, dil))
    if name == "depthwise" and rng.random() < 0.8:
        cin = cout = groups = rng.randint(2, 6)
        stride = (1, 1)
    h = rng.randint(max(k[0] * dil[0] - 2 * pad[0], 1) + 1, 10)
    w = rng.randint(max(k[1] * dil[1] - 2 * pad[1], 1) + 1, 10)
    return dict(
        n=rng.randint(1, 3),
        cin=cin,
        cout=cout,
        k=k,
        stride=stride,
        dil=dil,
        pad=pad,
        groups=groups,
        h=h,
        w=w,
        layout=rng.choice(["nchw", "cl", "slice"]),
        w_cl=rng.random() < 0.5,
        go_cl=rng.random() < 0.5,
        bias=rng.random() < 0.5,
    )


def _sig(c: dict) -> ConvSignature:
    return ConvSignature(
        c["cin"],
        c["cout"],
        c["k"],
        c["stride"],
        c["pad"],
        c["dil"],
        c["groups"],
        c["h"],
        c["w"],
        c["n"],
        "float64",
        c["layout"] != "nchw",
    )


def _tensors(c: dict, dtype: torch.dtype, gen: torch.Generator):
    extra, off = (3, 1) if c["layout"] == "slice" else (0, 0)
    big = torch.randn(c["n"], c["cin"] + extra, c["h"], c["w"], generator=gen, dtype=dtype)
    x = big.contiguous(memory_format=CL)[:, off : off + c["cin"]] if c["layout"] == "slice" else big
    if c["layout"] == "cl":
        x = x.contiguous(memory_format=CL)
    w = torch.randn(c["cout"], c["cin"] // c["groups"], *c["k"], generator=gen, dtype=dtype)
    if c["w_cl"]:
        w = w.contiguous(memory_format=CL)
    b = torch.randn(c["cout"], generator=gen, dtype=dtype) if c["bias"] else None
    return x, w, b


def _check(alg, c: dict, dtype: torch.dtype, tol: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, w, b = _tensors(c, dtype, gen)
    xr, wr = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = F.conv2d(xr, wr, b, c["stride"], c["pad"], c["dil"], c["groups"])
    go = torch.randn(ref.shape, generator=gen, dtype=dtype)
    rgx, rgw = torch.autograd.grad(ref, [xr, wr], go)
    go = go.contiguous(memory_format=CL if c["go_cl"] else torch.contiguous_format)
    p = ConvParams(c["stride"], c["pad"], c["dil"], c["groups"])
    out = alg.forward(x, w, b, p)
    gx = alg.backward_data(go, x, w, p)
    gw = alg.backward_weight(go, x, w, p)
    for got, want, what in ((out, ref, "forward"), (gx, rgx, "bwd_data"), (gw, rgw, "bwd_weight")):
        assert got.shape == want.shape, (what, c)
        assert got.dtype == want.dtype, (what, c)
        torch.testing.assert_close(
            got, want, rtol=tol, atol=tol, msg=lambda m, what=what: f"{alg.__name__} {what} {c}: {m}"
        )
    if alg is not im2col:
        # channels_last in -> channels_last out (a channel slice counts as channels_last)
        if c["layout"] != "nchw" and c["cin"] > 1 and min(out.shape[1], out.shape[2] * out.shape[3]) > 1:
            assert out.is_contiguous(memory_format=CL), c
            assert gx.is_contiguous(memory_format=CL), c
        if c["layout"] == "nchw" and not c["w_cl"]:
            assert out.is_contiguous() and gx.is_contiguous(), c


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_directions_match_torch_float64(name):
    alg, rng, done = ALGORITHMS[name], random.Random(name), 0
    for i in range(400):
        c = _case(rng, name)
        if not alg.supports(_sig(c)):
            continue
        _check(alg, c, torch.float64, 1e-9, i)
        done += 1
        if done == 60:
            break
    assert done >= 40, done


@pytest.mark.parametrize("name", FAST)
def test_directions_match_torch_float32_yolo_like(name):
    alg = ALGORITHMS[name]
    cases = [
        dict(n=2, cin=16, cout=32, k=(3, 3), stride=(2, 2), dil=(1, 1), pad=(1, 1), groups=1, h=24, w=24),
        dict(n=2, cin=32, cout=32, k=(3, 3), stride=(1, 1), dil=(1, 1), pad=(1, 1), groups=1, h=16, w=16),
        dict(n=2, cin=3, cout=16, k=(3, 3), stride=(2, 2), dil=(1, 1), pad=(1, 1), groups=1, h=32, w=32),
        dict(n=2, cin=64, cout=4, k=(1, 1), stride=(1, 1), dil=(1, 1), pad=(0, 0), groups=1, h=8, w=8),
        dict(n=2, cin=48, cout=32, k=(1, 1), stride=(1, 1), dil=(1, 1), pad=(0, 0), groups=1, h=16, w=16),
        dict(n=2, cin=32, cout=32, k=(3, 3), stride=(1, 1), dil=(1, 1), pad=(1, 1), groups=32, h=16, w=16),
        dict(n=2, cin=16, cout=16, k=(5, 5), stride=(1, 1), dil=(2, 2), pad=(4, 4), groups=16, h=16, w=16),
    ]
    done = 0
    for i, c in enumerate(cases):
        for layout in ("cl", "slice", "nchw"):
            c = dict(c, layout=layout, w_cl=layout != "nchw", go_cl=layout != "nchw", bias=i % 2 == 0)
            if alg.supports(_sig(c)):
                _check(alg, c, torch.float32, 1e-4, i)
                done += 1
    assert done >= 3


@pytest.mark.parametrize("name", ["nhwc_gemm", "depthwise"])
def test_chunked_over_the_batch_equals_one_piece(name, monkeypatch):
    """Above the workspace budget the batch is split; the result does not change."""
    alg, rng = ALGORITHMS[name], random.Random(7)
    monkeypatch.setattr(_common, "WORKSPACE_BYTES", 2000)
    done = 0
    for i in range(200):
        c = dict(_case(rng, name), n=3)
        if alg.supports(_sig(c)):
            _check(alg, c, torch.float64, 1e-9, i)
            done += 1
        if done == 15:
            break
    assert done == 15


def test_pad_and_columns_copy_16_byte_units_when_they_can(monkeypatch):
    monkeypatch.setattr(_common, "WIDE_MIN_BYTES", 0)
    x = torch.randn(2, 32, 9, 9).contiguous(memory_format=CL)
    assert _common.wide_dtype(x) == (4, torch.complex128)
    assert _common.wide_dtype(x.to(torch.bfloat16)) == (8, torch.complex128)
    assert _common.wide_dtype(torch.randn(2, 3, 9, 9).contiguous(memory_format=CL)) == (1, None)  # 12-byte pixels
    assert _common.wide_dtype(torch.randn(2, 32, 9, 9)) == (1, None)  # NCHW: channels not unit-strided
    odd = torch.randn(2, 33, 9, 9).contiguous(memory_format=CL)[:, 1:]  # a slice: offset 1, strides of 33
    assert _common.wide_dtype(odd) == (1, None)
    monkeypatch.setattr(_common, "WIDE_MIN_BYTES", 1 << 21)
    xp, wide = _common.padded_nhwc(x, (0, 0, 1, 1, 1, 1), True, 4, torch.complex128)
    assert not wide and xp.dtype == x.dtype  # small: the plain copy costs less host time
    monkeypatch.setattr(_common, "WIDE_MIN_BYTES", 0)
    xp, wide = _common.padded_nhwc(x, (0, 0, 1, 1, 1, 1), True, 4, torch.complex128)
    assert wide and xp.dtype == torch.complex128 and xp.shape == (2, 11, 11, 8)
    w = torch.randn(8, 32, 3, 3).contiguous(memory_format=CL)
    for xx in (x, odd):
        for s in (1, 2):
            p = ConvParams((s, s), (1, 1))
            ref = F.conv2d(xx.double(), w.double(), None, s, 1).float()
            torch.testing.assert_close(nhwc_gemm.forward(xx, w, None, p), ref, rtol=1e-4, atol=1e-4)
    # a slice whose storage offset is not a multiple of the unit falls back at call time
    big = torch.randn(2, 36, 9, 9).contiguous(memory_format=CL)
    for off in (0, 2, 4):
        xs = big[:, off : off + 32]
        ref = F.conv2d(xs.double(), w.double(), None, 1, 1).float()
        torch.testing.assert_close(
            nhwc_gemm.forward(xs, w, None, ConvParams((1, 1), (1, 1))), ref, rtol=1e-4, atol=1e-4
        )


def test_plan_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(_common, "MAX_PLANS", 3)
    w = torch.randn(4, 4, 3, 3)
    for h in range(5, 12):
        nhwc_gemm.forward(torch.randn(1, 4, h, h), w, None, ConvParams((1, 1), (1, 1)))
        pointwise.forward(torch.randn(1, 4, h, h), w[:, :, :1, :1].contiguous(), None, ConvParams())
    assert len(nhwc_gemm._PLANS) <= 3 and len(pointwise._PLANS) <= 3


def _random_sig(rng: random.Random) -> ConvSignature:
    groups = rng.choice([1, 1, 2, 4])
    cin = groups * rng.randint(1, 4)
    depthwise_ = rng.random() < 0.3
    cout = cin if depthwise_ else groups * rng.randint(1, 4)
    if depthwise_:
        groups = cin
    k = rng.choice([1, 2, 3, 5])
    s = rng.choice([1, 1, 2, 3])
    return ConvSignature(
        cin,
        cout,
        (k, k),
        (s, rng.choice([1, s])),
        (rng.randint(0, 2),) * 2,
        (rng.choice([1, 1, 2]),) * 2,
        groups,
        16,
        16,
        2,
        rng.choice(["float32", "bfloat16"]),
        rng.random() < 0.5,
        transposed=rng.random() < 0.1,
    )


def test_algorithm_for_takes_the_first_supporting_algorithm():
    rng = random.Random(3)
    assert PREFERENCE[-1] == "im2col" and set(PREFERENCE) == set(ALGORITHMS)
    seen = set()
    for _ in range(500):
        sig = _random_sig(rng)
        alg = algorithm_for(sig)
        assert alg.supports(sig)
        first = next(ALGORITHMS[n] for n in PREFERENCE if ALGORITHMS[n].supports(sig))
        assert alg is first
        seen.add(alg.__name__.rsplit(".", 1)[-1])
        if sig.transposed:
            assert alg is im2col
    assert seen == set(ALGORITHMS)


def test_supports_rules():
    base = dict(
        in_channels=8,
        out_channels=8,
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        dilation=(1, 1),
        groups=1,
        height=16,
        width=16,
        batch=2,
    )
    sig = lambda **kw: ConvSignature(**{**base, **kw})  # noqa: E731
    assert pointwise.supports(sig(kernel=(1, 1), padding=(0, 0)))
    assert not pointwise.supports(sig(kernel=(1, 1), padding=(1, 1)))
    assert not pointwise.supports(sig(kernel=(1, 1), padding=(0, 0), groups=2))
    assert (
        nhwc_gemm.supports(sig())
        and nhwc_gemm.supports(sig(stride=(2, 2)))
        and nhwc_gemm.supports(sig(dilation=(2, 2)))
    )
    assert not nhwc_gemm.supports(sig(stride=(3, 3)))
    assert not nhwc_gemm.supports(sig(stride=(2, 2), dilation=(2, 2)))
    assert not nhwc_gemm.supports(sig(groups=2))
    assert not nhwc_gemm.supports(sig(transposed=True))
    assert depthwise.supports(sig(groups=8)) and not depthwise.supports(sig(groups=8, stride=(2, 2)))
    assert not depthwise.supports(sig(groups=4))
    assert im2col.supports(sig(transposed=True, stride=(3, 3), groups=4))


def _yolov8n():
    pytest.importorskip("ultralytics")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=4, verbose=False).train()


def test_every_yolov8n_signature_gets_a_fast_supporting_algorithm():
    model = _yolov8n().to(memory_format=CL)
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=CL)
    with guarded(policy="bypass", faults=False) as g:
        model(x)
        rows = g.per_signature()
    assert len(rows) >= 20
    for r in rows:
        sig = ConvSignature.from_key(r["signature"])
        alg = ALGORITHMS[r["algorithm"]]
        assert alg.supports(sig) and alg is algorithm_for(sig)
        assert r["algorithm"] in ("pointwise", "nhwc_gemm"), r  # no YOLOv8n conv falls back to im2col
        assert all(d == "bypass" for d in r["routes"].values())


@pytest.mark.parametrize("channels_last", [True, False])
def test_yolov8n_train_steps_on_the_bypass_match_torch(channels_last):
    """Forward + backward of the whole model, outputs and every parameter gradient, over two
    steps with different images: the second reuses the kept pad buffers and weight views of the
    first, after an in-place weight update (what an optimizer step does)."""
    model = _yolov8n()
    xs = [torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)]
    if channels_last:
        model, xs = model.to(memory_format=CL), [x.contiguous(memory_format=CL) for x in xs]
    start = {n: p.detach().clone() for n, p in model.named_parameters()}

    def steps():
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(start[n])
        results = []
        for x in xs:
            model.zero_grad(set_to_none=True)
            out = model(x)
            # Ultralytics 8.4's Detect head returns a dict in training mode, 8.3's the list of per-level maps
            heads = (out["boxes"], out["scores"]) if isinstance(out, dict) else out
            loss = sum((t.float() * torch.linspace(-1, 1, t.numel()).view(t.shape)).sum() for t in heads)
            loss.backward()
            results.append(
                (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            )
            with torch.no_grad():  # an in-place update the same in both runs
                for p in model.parameters():
                    p.mul_(0.9)
        return results

    ref = steps()
    with guarded(policy="bypass", faults=False) as g:
        got = steps()
        assert g.totals()["bypassed"] == g.totals()["calls"] == 2 * 63
    for (loss, grads), (ref_loss, ref_grads) in zip(got, ref):
        torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-3)
        assert grads.keys() == ref_grads.keys()
        for n in ref_grads:
            err = ((grads[n] - ref_grads[n]).norm() / ref_grads[n].norm().clamp_min(1e-12)).item()
            assert err < 1e-3, (n, err)


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (1, 1)])
def test_autocast_bfloat16_channels_last(k, s):
    conv = nn.Conv2d(16, 24, k, s, k // 2).to(memory_format=CL)
    x = torch.randn(2, 16, 12, 12).contiguous(memory_format=CL).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = conv(x)
    ref_g = torch.autograd.grad(ref.float().square().sum(), [x, conv.weight, conv.bias])
    with guarded(policy="bypass", faults=False), torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    got_g = torch.autograd.grad(out.float().square().sum(), [x, conv.weight, conv.bias])
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=CL)
    for a, b in [(out.float(), ref.float()), *zip(got_g, ref_g)]:
        assert ((a - b).norm() / b.norm()).item() < 2e-2


def test_tf32_follows_cudnn_flag_for_float32_cuda_gemms(monkeypatch):
    """On CUDA float32 the GEMMs use TF32 exactly when cuDNN convs would; restored after."""
    flags = {"cublas": False, "cudnn": True}
    monkeypatch.setattr(_common, "_get_cublas_tf32", lambda: flags["cublas"])
    monkeypatch.setattr(_common, "_set_cublas_tf32", lambda v: flags.__setitem__("cublas", v))
    monkeypatch.setattr(_common, "_get_cudnn_tf32", lambda: flags["cudnn"])
    cuda32 = types.SimpleNamespace(dtype=torch.float32, is_cuda=True)
    prev = _common.tf32_enter(cuda32)
    assert flags["cublas"] is True
    _common.tf32_exit(prev)
    assert flags["cublas"] is False
    for t in (
        types.SimpleNamespace(dtype=torch.bfloat16, is_cuda=True),
        types.SimpleNamespace(dtype=torch.float32, is_cuda=False),
    ):
        assert _common.tf32_enter(t) is None and flags["cublas"] is False
    monkeypatch.setattr(_common, "FOLLOW_CUDNN_TF32", False)
    assert _common.tf32_enter(cuda32) is None and flags["cublas"] is False


def test_grad_out_of_a_channel_slice_stays_channels_last():
    """The guard keeps grad_out channels_last for C2f's channel-sliced inputs (no NCHW copy)."""
    from yolo_rdna1.guard.routes import _memory_format

    big = torch.randn(2, 8, 5, 5).contiguous(memory_format=CL)
    assert _memory_format(big[:, 4:]) == CL
    assert _memory_format(big) == CL
    assert _memory_format(torch.randn(2, 8, 5, 5)) == torch.contiguous_format
    assert _memory_format(torch.randn(2, 8, 5, 5)[:, 4:]) == torch.contiguous_format


@pytest.mark.parametrize("name,k", [("nhwc_gemm", 3), ("pointwise", 1)])
def test_kept_weight_views_follow_in_place_updates_and_new_memory(name, k):
    """Plans keep their weight-matrix views (a host op saved per call); an optimizer's in-place
    step must show through them, and a weight given new memory must get a new view."""
    torch.manual_seed(0)
    alg = ALGORITHMS[name]
    p = ConvParams((1, 1), (k // 2, k // 2))
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=CL)
    w = torch.randn(5, 4, k, k, dtype=torch.float64).contiguous(memory_format=CL)
    go = torch.randn(2, 5, 6, 6, dtype=torch.float64).contiguous(memory_format=CL)

    def check(weight):
        torch.testing.assert_close(alg.forward(x, weight, None, p), F.conv2d(x, weight, None, 1, k // 2))
        ref = torch.nn.grad.conv2d_input(x.shape, weight, go, 1, k // 2)
        torch.testing.assert_close(alg.backward_data(go, x, weight, p), ref)

    check(w)
    w.mul_(-2.0)  # the optimizer's way: same memory
    check(w)
    moved = torch.empty_strided(w.shape, w.stride(), dtype=w.dtype).copy_(w).add_(1.0)
    check(moved)  # new memory, same shape and strides: the same plan, a new view
