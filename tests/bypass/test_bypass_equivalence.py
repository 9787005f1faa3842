"""The bypass equals F.conv2d / F.conv_transpose2d: outputs and every gradient.

A randomized sweep (hypothesis) over the parameters a conv can have, run through the guard
with policy ``bypass`` against the same module on torch's own conv.
"""

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from yolo_rdna1.bypass import ALGORITHMS
from yolo_rdna1.guard import guarded


def grads(module: nn.Module, x: torch.Tensor, seed: int):
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(out.shape, generator=g, dtype=out.dtype)
    params = [p for p in module.parameters()]
    res = torch.autograd.grad(out, [x, *params], go)
    return out.detach(), res


def assert_same(module, x, seed=0, **tol):
    ref_out, ref_grads = grads(module, x, seed)
    with guarded(policy="bypass", faults=False) as g:
        out, gs = grads(module, x, seed)
        assert g.totals()["bypassed"] == 1
    torch.testing.assert_close(out, ref_out, **tol)
    for a, b in zip(gs, ref_grads):
        torch.testing.assert_close(a, b, **tol)


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    depthwise = draw(st.booleans())
    cin = groups * draw(st.integers(1, 3))
    cout = cin if depthwise else groups * draw(st.integers(1, 3))
    if depthwise:
        groups = cin
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    stride = (1, 1) if mode == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = {
        "int": draw(st.integers(0, 2)),
        "pair": (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
        "same": "same",
        "valid": "valid",
    }[mode]
    padding_mode = (
        draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
        if mode in ("int", "pair")
        else "zeros"
    )
    h = draw(st.integers(max(k[0] * dilation[0], 3), 11))
    w = draw(st.integers(max(k[1] * dilation[1], 3), 11))
    return dict(
        cin=cin,
        cout=cout,
        k=k,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        bias=draw(st.booleans()),
        n=draw(st.integers(1, 3)),
        h=h,
        w=w,
        channels_last=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_case())
def test_conv2d_sweep_float64(case):
    torch.manual_seed(case["seed"])
    conv = nn.Conv2d(
        case["cin"],
        case["cout"],
        case["k"],
        case["stride"],
        case["padding"],
        case["dilation"],
        case["groups"],
        bias=case["bias"],
        padding_mode=case["padding_mode"],
    ).double()
    x = torch.randn(case["n"], case["cin"], case["h"], case["w"], dtype=torch.float64)
    if case["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
    assert_same(conv, x, case["seed"], rtol=1e-9, atol=1e-9)


@st.composite
def transposed_case(draw):
    groups = draw(st.sampled_from([1, 2]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    # output_padding must be smaller than stride or dilation
    op = tuple(draw(st.integers(0, max(stride[i], dilation[i]) - 1)) for i in range(2))
    hw = (draw(st.integers(2, 7)), draw(st.integers(2, 7)))
    # torch itself rejects an empty output
    assume(all((hw[i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + op[i] + 1 > 0 for i in range(2)))
    return dict(
        cin=cin,
        cout=cout,
        k=k,
        stride=stride,
        dilation=dilation,
        padding=padding,
        op=op,
        groups=groups,
        bias=draw(st.booleans()),
        n=draw(st.integers(1, 2)),
        h=hw[0],
        w=hw[1],
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transposed_case())
def test_conv_transpose2d_sweep_float64(case):
    torch.manual_seed(case["seed"])
    conv = nn.ConvTranspose2d(
        case["cin"],
        case["cout"],
        case["k"],
        case["stride"],
        case["padding"],
        case["op"],
        case["groups"],
        bias=case["bias"],
        dilation=case["dilation"],
    ).double()
    x = torch.randn(case["n"], case["cin"], case["h"], case["w"], dtype=torch.float64)
    assert_same(conv, x, case["seed"], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_float32_yolo_shapes(name, monkeypatch):
    """The shapes YOLOv8n actually has, in float32, for every registered algorithm, through the
    guard (the algorithm forced for every signature it supports; the others are skipped)."""
    import yolo_rdna1.guard.router as router
    from yolo_rdna1.signature import ConvSignature

    monkeypatch.setattr(router, "algorithm_for", lambda sig: ALGORITHMS[name])
    torch.manual_seed(0)
    ran = 0
    for cin, cout, k, s, groups in [
        (3, 16, 3, 2, 1),
        (32, 32, 1, 1, 1),
        (16, 16, 3, 1, 1),
        (64, 64, 3, 1, 64),
        (64, 4, 1, 1, 1),
        (32, 64, 3, 2, 1),
    ]:
        for channels_last in (False, True):
            sig = ConvSignature(
                cin, cout, (k, k), (s, s), (k // 2, k // 2), (1, 1), groups, 20, 20, 2, "float32", channels_last
            )
            if not ALGORITHMS[name].supports(sig):
                continue
            conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups)
            x = torch.randn(2, cin, 20, 20)
            if channels_last:
                conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            assert_same(conv, x, rtol=1e-4, atol=1e-4)
            ran += 1
    assert ran >= 2


def test_no_bias_and_frozen_weight():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False).double().requires_grad_(False)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    ref = torch.autograd.grad(conv(x).sum(), x)[0]
    with guarded(policy="bypass", faults=False):
        got = torch.autograd.grad(conv(x).sum(), x)[0]
    torch.testing.assert_close(got, ref)


def test_autocast_bfloat16_matches_vendor_autocast():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = conv(x)
    ref_gx, ref_gw = torch.autograd.grad(ref.float().sum(), [x, conv.weight])
    with guarded(policy="bypass", faults=False) as g, torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    gx, gw = torch.autograd.grad(out.float().sum(), [x, conv.weight])
    assert out.dtype == ref.dtype == torch.bfloat16
    assert gx.dtype == x.dtype and gw.dtype == conv.weight.dtype
    # bf16 operands: errors between 1e-3 and 1e-2 relative are expected
    for a, b in [(out.float(), ref.float()), (gx, ref_gx), (gw, ref_gw)]:
        assert ((a - b).norm() / b.norm()).item() < 2e-2
    assert next(iter(g.per_signature()))["signature"].split(":")[9] == "bfloat16"
