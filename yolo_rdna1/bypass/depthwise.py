"""Depthwise convs (groups == in == out channels, stride 1) as one broadcast multiply + one sum.

Why it exists: a depthwise conv has ``K = k*k`` per output, far too small for a GEMM (the
im2col path runs it as ``C`` batched GEMMs of width 1). It is elementwise work: the padded NHWC
input seen as ``(N, H, W, kh, kw, C)`` through one ``as_strided`` view, times the weight
broadcast as ``(kh, kw, C)``, summed over the taps. YOLOv8 itself has no depthwise conv; later
Ultralytics heads (YOLO11's DWConv) do.

* forward: pad 2 + multiply 1 + sum 1 (+ bias add 1) = **4** launches; transient ``k*k`` x the
  output (the product), chunked over images above ``_common.WORKSPACE_BYTES``.
* bwd_data: the same over the padded ``grad_out`` with the flipped weight (stride 1 makes the
  transposed conv a conv): pad 2 + flip 1 + multiply 1 + sum 1 = **5**.
* bwd_weight: ``(cols(x) * grad_out).sum(over images and positions)``: pad 2 + multiply 1 +
  sum 1 = **4**; transient ``k*k`` x the input.

Stride > 1 has no gather form here (:func:`supports` says no; the reference im2col takes it).
"""

from __future__ import annotations

import torch

from . import _common as C_
from ._common import cl_like, from_nhwc, is_cl, nhwc, out_size, pad_nhwc, wants_cl
from .params import ConvParams


def supports(sig) -> bool:
    """Depthwise (one filter per channel, multiplier 1), stride 1, any kernel/dilation/padding."""
    return (
        not sig.transposed
        and sig.groups > 1
        and sig.groups == sig.in_channels == sig.out_channels
        and tuple(sig.stride) == (1, 1)
    )


def _taps(t: torch.Tensor, kh: int, kw: int, oh: int, ow: int, dh: int, dw: int, top: int, left: int) -> torch.Tensor:
    """``(N, OH, OW, kh, kw, C)`` stride-1 view of a padded contiguous NHWC tensor."""
    n, hp, wp, c = t.shape
    return t.as_strided(
        (n, oh, ow, kh, kw, c), (hp * wp * c, wp * c, c, dh * wp * c, dw * c, 1), top * wp * c + left * c
    )


def _mul_sum(view: torch.Tensor, wt: torch.Tensor, out_dtype_like: torch.Tensor) -> torch.Tensor:
    """``(view * wt).sum over the two tap dims``, chunked over images to bound the product."""
    n = view.shape[0]
    per = view[0].numel() * view.element_size()
    ranges = C_.chunks(n, per)
    if len(ranges) == 1:
        return (view * wt).sum((3, 4))
    out = out_dtype_like.new_empty(view.shape[:3] + view.shape[5:])
    for a, z in ranges:
        torch.sum(view[a:z] * wt, (3, 4), out=out[a:z])
    return out


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: ConvParams) -> torch.Tensor:
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    (sh, sw), (ph, pw), (dh, dw) = p.stride, p.padding, p.dilation
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
    xp = pad_nhwc(nhwc(x), ph, ph, pw, pw)
    hp, wp = xp.shape[1], xp.shape[2]
    view = xp.as_strided((n, oh, ow, kh, kw, c), (hp * wp * c, sh * wp * c, sw * c, dh * wp * c, dw * c, 1))
    out = _mul_sum(view, w[:, 0].permute(1, 2, 0), x)
    if b is not None:
        out += b
    return from_nhwc(out, wants_cl(x, w))


def backward_data(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    (ph, pw), (dh, dw) = p.padding, p.dilation
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    # gx[i] = sum_u go[i + p - (k-1)d + u*d] * w[k-1-u]: a stride-1 conv of the padded grad_out
    # with the flipped weight.
    bh, bw = max(0, (kh - 1) * dh - ph), max(0, (kw - 1) * dw - pw)
    gp = pad_nhwc(nhwc(grad_out), bh, max(0, h + ph - oh), bw, max(0, wd + pw - ow))
    view = _taps(gp, kh, kw, h, wd, dh, dw, ph - (kh - 1) * dh + bh, pw - (kw - 1) * dw + bw)
    gx = _mul_sum(view, w[:, 0].flip(1, 2).permute(1, 2, 0), x)
    return from_nhwc(gx, cl_like(x))


def backward_weight(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    (sh, sw), (ph, pw), (dh, dw) = p.stride, p.padding, p.dilation
    oh, ow = grad_out.shape[2], grad_out.shape[3]
    xp = pad_nhwc(nhwc(x), ph, ph, pw, pw)
    hp, wp = xp.shape[1], xp.shape[2]
    view = xp.as_strided((n, oh, ow, kh, kw, c), (hp * wp * c, sh * wp * c, sw * c, dh * wp * c, dw * c, 1))
    go = nhwc(grad_out).unsqueeze(3).unsqueeze(3)  # (N, OH, OW, 1, 1, C)
    ranges = C_.chunks(n, view[0].numel() * view.element_size())
    gw = None
    for a, z in ranges:
        part = (view[a:z] * go[a:z]).sum((0, 1, 2))
        gw = part if gw is None else gw.add_(part)
    gw = gw.permute(2, 0, 1).unsqueeze(1)  # (C, 1, kh, kw)
    return gw.contiguous(memory_format=torch.channels_last) if is_cl(w) else gw.contiguous()
