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
from ._common import CL, WeightView, cl_like, cl_strides, tf32_enter, tf32_exit
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


class Plan:
    """One call key's 1x1 conv: the GEMM operands as views, or how to make them.

    Built once per (input shape/strides, weight shape, params); the guard keeps one per module
    and input shape and calls :meth:`forward` / :meth:`backward` directly (no cache lookups per
    call). The grad_out row strides are worked out once per grad_out layout.
    """

    __slots__ = (
        "cl",
        "n",
        "c",
        "o",
        "h",
        "w",
        "oh",
        "ow",
        "m",
        "sub",
        "rx",
        "osize",
        "ostride",
        "xsize",
        "xstride",
        "params",
        "w_stride",
        "w2",
        "w2t",
        "_rows_go",
    )

    def __init__(self, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> None:
        n, c, h, wd = x.shape
        sh, sw = p.stride
        self.sub = sh != 1 or sw != 1
        xs = x[:, :, ::sh, ::sw] if self.sub else x
        oh, ow = xs.shape[2], xs.shape[3]
        o = w.shape[0]
        self.cl = cl_like(x)
        self.n, self.c, self.o, self.h, self.w, self.oh, self.ow, self.m = n, c, o, h, wd, oh, ow, n * oh * ow
        self.rx = _rows(xs)  # 0: x needs a channels_last copy first
        self.osize, self.ostride = (n, o, oh, ow), cl_strides(n, o, oh, ow)
        self.xsize, self.xstride = (n, c, h, wd), cl_strides(n, c, h, wd)
        self.params = p
        self.w_stride = w.stride()
        # the (O, C) weight matrix and its transpose: views of a contiguous or channels_last 1x1
        # weight, kept; otherwise made per call
        if w.is_contiguous() or w.is_contiguous(memory_format=CL):
            self.w2 = WeightView(lambda w: w.as_strided((o, c), (c, 1)))
            self.w2t = WeightView(lambda w: w.as_strided((c, o), (1, c)))
        else:
            self.w2 = lambda w: w.reshape(o, c)
            self.w2t = lambda w: w.reshape(o, c).t()
        self._rows_go: dict = {}

    def _x2d(self, x: torch.Tensor) -> torch.Tensor:
        xs = x[:, :, :: self.params.stride[0], :: self.params.stride[1]] if self.sub else x
        if self.rx:
            return xs.as_strided((self.m, self.c), (self.rx, 1))
        return xs.contiguous(memory_format=CL).as_strided((self.m, self.c), (self.c, 1))

    def _g2d(self, grad_out: torch.Tensor) -> torch.Tensor:
        key = grad_out.stride()
        rg = self._rows_go.get(key)
        if rg is None:
            rg = self._rows_go[key] = _rows(grad_out)
        if rg:
            return grad_out.as_strided((self.m, self.o), (rg, 1))
        return grad_out.contiguous(memory_format=CL).as_strided((self.m, self.o), (self.o, 1))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, train: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, the tensor to save for :meth:`backward`: ``x`` itself); ``train`` is for the
        plan interface (nothing is padded here)."""
        prev = tf32_enter(x)
        try:
            if self.cl:  # one GEMM over all pixels; the result is the NHWC output
                x2, w2t = self._x2d(x), self.w2t(w)
                out = torch.mm(x2, w2t) if b is None else torch.addmm(b, x2, w2t)
                return out.as_strided(self.osize, self.ostride), x
            xs = x[:, :, :: self.params.stride[0], :: self.params.stride[1]] if self.sub else x
            out = torch.matmul(self.w2(w), xs.reshape(self.n, self.c, self.oh * self.ow))
            if b is not None:
                out += b.view(1, self.o, 1)
            return out.view(self.osize), x
        finally:
            tf32_exit(prev)

    def backward(self, grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, need_x: bool, need_w: bool):
        """(grad_input, grad_weight) from grad_out, the saved input and the weight."""
        prev = tf32_enter(grad_out)
        try:
            if self.cl:  # both GEMMs read grad_out as one (M, O) view
                g2 = self._g2d(grad_out)
                gx = self._data_grad_cl(g2, w) if need_x else None
                gw = torch.mm(g2.t(), self._x2d(x)).view(self.o, self.c, 1, 1) if need_w else None
                return gx, gw
            return (self._data_grad_nchw(grad_out, w) if need_x else None), (
                self._weight_grad_nchw(grad_out, x) if need_w else None
            )
        finally:
            tf32_exit(prev)

    def _data_grad_cl(self, g2: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        g = torch.mm(g2, self.w2(w))
        if not self.sub:
            return g.as_strided(self.xsize, self.xstride)
        st = self.params.stride
        full = g.new_zeros(self.n, self.h, self.w, self.c)
        full[:, :: st[0], :: st[1]] = g.view(self.n, self.oh, self.ow, self.c)
        return full.permute(0, 3, 1, 2)

    def _data_grad_nchw(self, grad_out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """NCHW: one batched GEMM over (N, C, H*W) per direction."""
        st = self.params.stride
        g = torch.matmul(self.w2t(w), grad_out.reshape(self.n, self.o, self.oh * self.ow)).view(
            self.n, self.c, self.oh, self.ow
        )
        if self.sub:
            full = g.new_zeros(self.n, self.c, self.h, self.w)
            full[:, :, :: st[0], :: st[1]] = g
            g = full
        return g

    def _weight_grad_nchw(self, grad_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        st = self.params.stride
        xs = x[:, :, :: st[0], :: st[1]] if self.sub else x
        gw = torch.matmul(
            grad_out.reshape(self.n, self.o, self.oh * self.ow),
            xs.reshape(self.n, self.c, self.oh * self.ow).transpose(1, 2),
        ).sum(0)
        return gw.view(self.o, self.c, 1, 1)


_PLANS: dict = {}


def plan_for(x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> Plan:
    """The (cached) plan of a call key: what the functional API below uses; the guard keeps its
    own per module and input shape."""
    key = (x.shape, x.stride(), w.shape, w.stride(), p)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= C_.MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[key] = Plan(x, w, p)
    return plan


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: ConvParams) -> torch.Tensor:
    return plan_for(x, w, p).forward(x, w, b)[0]


def backward_data(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    return plan_for(x, w, p).backward(grad_out, x, w, True, False)[0]


def backward_weight(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    return plan_for(x, w, p).backward(grad_out, x, w, False, True)[1]
