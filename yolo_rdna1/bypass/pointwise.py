"""1x1 convs (padding 0, groups 1) as plain GEMMs: no im2col at all.

Why it exists: half of YOLOv8n's convs are 1x1 (C2f's cv1/cv2, SPPF, the Detect head's last
layer). A 1x1 conv over a channels_last input *is* a matrix product of the ``(N*H*W, C)`` view
of the input with the ``(C, O)`` weight, so each direction is one cuBLAS/rocBLAS call, the same
launch count as cuDNN:

* forward    ``out (M, O) = x (M, C) @ W^T``  (``addmm`` with the bias): **1** launch
* bwd_data   ``gx (M, C) = grad_out (M, O) @ W``: **1** launch
* bwd_weight ``gW (O, C) = grad_out^T (O, M) @ x (M, C)``: **1** launch

No transient memory beyond the result. For an NCHW input the GEMMs are batched over images
instead (``W @ x[n]``; the weight gradient as one batched GEMM + a sum over images, 2 launches),
so NCHW stays NCHW without a layout copy. A stride ``s > 1`` subsamples the input first (one
copy) and scatters the input gradient back into zeros (fill + copy).
"""

from __future__ import annotations

import torch

from . import _common as C_
from ._common import CL, cl_like, cl_strides, tf32_enter, tf32_exit
from .params import ConvParams


def supports(sig) -> bool:
    """1x1 kernel, padding 0, groups 1, not transposed (any stride; dilation is moot at 1x1)."""
    return not sig.transposed and sig.groups == 1 and tuple(sig.kernel) == (1, 1) and tuple(sig.padding) == (0, 0)


def _rows(t: torch.Tensor) -> int:
    """Row stride of ``t`` (N, C, H, W) seen as an (N*H*W, C) matrix without a copy, or 0.

    True for channels_last tensors and for channel slices of them (C2f's ``chunk``): channels
    unit-strided, pixels evenly strided. cuBLAS takes such a matrix as is (lda = row stride).
    """
    n, c, h, w = t.shape
    s = t.stride()
    if (s[1] == 1 or c == 1) and s[3] >= c and s[2] == w * s[3] and (s[0] == h * s[2] or n == 1):
        return s[3]
    return 0


def _w2(w: torch.Tensor, o: int, c: int) -> torch.Tensor:
    """The (O, C) weight matrix: a view for a contiguous or channels_last 1x1 weight."""
    if w.is_contiguous() or w.is_contiguous(memory_format=CL):
        return w.as_strided((o, c), (c, 1))
    return w.reshape(o, c)


class _Plan:
    """Per (shapes, strides, params): the GEMM operands as views, or how to make them."""

    __slots__ = ("cl", "n", "c", "o", "h", "w", "oh", "ow", "m", "sub", "rx", "rg", "osize", "ostride", "xsize", "xstride")

    def __init__(self, x: torch.Tensor, w: torch.Tensor, p: ConvParams, grad_out: torch.Tensor | None) -> None:
        n, c, h, wd = x.shape
        sh, sw = p.stride
        self.sub = sh != 1 or sw != 1
        xs = x[:, :, ::sh, ::sw] if self.sub else x
        oh, ow = xs.shape[2], xs.shape[3]
        o = w.shape[0]
        self.cl = cl_like(x)
        self.n, self.c, self.o, self.h, self.w, self.oh, self.ow, self.m = n, c, o, h, wd, oh, ow, n * oh * ow
        self.rx = _rows(xs)  # 0: x needs a channels_last copy first
        self.rg = _rows(grad_out) if grad_out is not None else 0
        self.osize, self.ostride = (n, o, oh, ow), cl_strides(n, o, oh, ow)
        self.xsize, self.xstride = (n, c, h, wd), cl_strides(n, c, h, wd)


_FWD: dict = {}
_BWD: dict = {}


def _plan(cache: dict, key: tuple, x, w, p, grad_out=None) -> _Plan:
    plan = cache.get(key)
    if plan is None:
        if len(cache) >= C_.MAX_PLANS:
            cache.clear()
        plan = cache[key] = _Plan(x, w, p, grad_out)
    return plan


def _x2d(x: torch.Tensor, P: _Plan, p: ConvParams) -> torch.Tensor:
    xs = x[:, :, :: p.stride[0], :: p.stride[1]] if P.sub else x
    if P.rx:
        return xs.as_strided((P.m, P.c), (P.rx, 1))
    return xs.contiguous(memory_format=CL).as_strided((P.m, P.c), (P.c, 1))


def _g2d(grad_out: torch.Tensor, P: _Plan) -> torch.Tensor:
    if P.rg:
        return grad_out.as_strided((P.m, P.o), (P.rg, 1))
    return grad_out.contiguous(memory_format=CL).as_strided((P.m, P.o), (P.o, 1))


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: ConvParams) -> torch.Tensor:
    P = _plan(_FWD, (x.shape, x.stride(), w.shape, p), x, w, p)
    w2 = _w2(w, P.o, P.c)
    prev = tf32_enter(x)
    try:
        if P.cl:  # one GEMM over all pixels; the result is the NHWC output
            x2 = _x2d(x, P, p)
            out = torch.mm(x2, w2.t()) if b is None else torch.addmm(b, x2, w2.t())
            return out.as_strided(P.osize, P.ostride)
        xs = x[:, :, :: p.stride[0], :: p.stride[1]] if P.sub else x
        out = torch.matmul(w2, xs.reshape(P.n, P.c, P.oh * P.ow))
        if b is not None:
            out += b.view(1, P.o, 1)
        return out.view(P.osize)
    finally:
        tf32_exit(prev)


def backward_data(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    P = _plan(_BWD, (grad_out.shape, grad_out.stride(), x.shape, x.stride(), w.shape, p), x, w, p, grad_out)
    w2 = _w2(w, P.o, P.c)
    prev = tf32_enter(x)
    try:
        if P.cl:
            g = torch.mm(_g2d(grad_out, P), w2)
            if not P.sub:
                return g.as_strided(P.xsize, P.xstride)
            full = g.new_zeros(P.n, P.h, P.w, P.c)
            full[:, :: p.stride[0], :: p.stride[1]] = g.view(P.n, P.oh, P.ow, P.c)
            return full.permute(0, 3, 1, 2)
        g = torch.matmul(w2.t(), grad_out.reshape(P.n, P.o, P.oh * P.ow)).view(P.n, P.c, P.oh, P.ow)
        if P.sub:
            full = g.new_zeros(P.n, P.c, P.h, P.w)
            full[:, :, :: p.stride[0], :: p.stride[1]] = g
            g = full
        return g
    finally:
        tf32_exit(prev)


def backward_weight(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    P = _plan(_BWD, (grad_out.shape, grad_out.stride(), x.shape, x.stride(), w.shape, p), x, w, p, grad_out)
    prev = tf32_enter(x)
    try:
        if P.cl:
            gw = torch.mm(_g2d(grad_out, P).t(), _x2d(x, P, p))
        else:
            xs = x[:, :, :: p.stride[0], :: p.stride[1]] if P.sub else x
            gw = torch.matmul(grad_out.reshape(P.n, P.o, P.oh * P.ow), xs.reshape(P.n, P.c, P.oh * P.ow).transpose(1, 2)).sum(0)
    finally:
        tf32_exit(prev)
    return gw.view(P.o, P.c, 1, 1)
