"""k x k convs (groups 1) as one GEMM per direction over NHWC data, no unfold/fold.

Why it exists: the 3x3 convs carry most of YOLOv8n's conv cost, and the reference im2col path
(``unfold`` + matmul, autograd through ``fold``) pays for it with NCHW<->NHWC flips, an
``unfold`` kernel, a scatter-add ``fold`` in the backward and, through autograd, 9x the input
saved for backward. Here the guard's :class:`RoutedConv` saves only ``x`` and ``w`` and each
direction is written out:

* **forward** ``out (M, O) = cols (M, k*k*C) @ W (k*k*C, O)`` with ``M = N*OH*OW``.
  ``cols`` is a *single* ``as_strided`` view of the zero-padded NHWC input
  ``(N, OH, OW, kh, kw, C)`` (any stride, dilation, padding) made contiguous by one copy kernel;
  the GEMM's result already is the NHWC (channels_last) output, the weight matrix is a view of a
  channels_last weight, and a bias rides in the GEMM (``addmm``).
  Launches: pad 2 (fill + copy) + cols 1 + GEMM 1 = **4**. Transient bytes: the padded input
  plus ``k*k`` times the input (the columns), freed before the call returns.
* **bwd_weight** ``gW (O, k*k*C) = grad_out^T (O, M) @ cols (M, k*k*C)``, the forward's columns
  rebuilt (not saved: saving them is what doubled the unfold path's peak memory).
  Launches: **4** (pad 2, cols 1, GEMM 1).
* **bwd_data** without col2im: ``Y = pad(grad_out) (M', O) @ W (O, kk*kk*C)`` gives every
  output position's contribution to every tap; the input gradient is then a *gather* -- a sum
  over ``U x U`` taps of one ``as_strided`` view of ``Y`` -- instead of fold's scatter-add:

  - stride 1 (any dilation): ``gx[i] = sum_u Y[i + p - (k-1)d + u*d, tap k-1-u]``; walking the
    taps backwards while the position walks forwards is a single positive stride
    ``d*row - tap`` once ``grad_out`` is padded by ``(k-1)d - p``.
  - stride 2 (dilation 1), sub-pixel form: the kernel is zero-padded to an even ``kk``, so each
    of the two output phases per axis (even/odd input rows) sees exactly ``kk/2`` taps; phase,
    position and tap are again linear, so the whole gradient, both phases interleaved, is one
    view summed by one reduction kernel that writes the NHWC gradient directly.

  Launches: pad 2 + GEMM 1 + reduction 1 = **4** (plus 1 small weight pad for k odd, stride 2).
  Transient bytes: ``Y``, ``kk*kk*C`` per padded output position (9x the input gradient for a
  3x3 stride-1 conv, 4x for 3x3 stride 2).

Strides above 2 and dilation with stride 2 have no gather form here (:func:`supports` says no;
the reference im2col takes them). All GEMMs go through ``torch.mm``/``addmm`` (cuBLAS/rocBLAS);
on CUDA, float32 GEMMs use TF32 exactly when cuDNN convs would (see ``_common``). When a
direction's transient workspace exceeds ``_common.WORKSPACE_BYTES`` the batch is processed in
chunks (one more GEMM launch per chunk), which bounds peak memory for large images.

Host cost (the YOLOv8n step is launch/host-bound): everything that depends only on shapes,
strides, dtype and params (output sizes, view strides, the gather's offsets, layout decisions)
is computed once per call key and cached (``_FWD``/``_BWD_W``/``_BWD_D``, bounded by
``_common.MAX_PLANS``); a call then issues the ops listed above plus a few view ops. Pads and
column copies of channels_last tensors of at least ``_common.WIDE_MIN_BYTES`` move 16-byte
units (``complex128`` views of the channel vectors): same bytes, 4-8x fewer elements for the
strided copy kernel (on an H100 the step's copy time fell from 8.7 to 5.5 ms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _common as C_
from ._common import CL, cl_like, cl_strides, out_size, padded_nhwc, tf32_enter, tf32_exit, wide_dtype
from .params import ConvParams


def supports(sig) -> bool:
    """Plain (groups 1, not transposed) convs whose bwd_data has a gather form: per axis,
    stride 1 with any dilation, or stride 2 with dilation 1."""
    if sig.transposed or sig.groups != 1:
        return False
    for s, d in zip(sig.stride, sig.dilation):
        if s == 2 and d != 1 or s not in (1, 2):
            return False
    return True


# -- plans: everything that depends only on shapes, strides and params, computed once ----------
class _ColsPlan:
    """im2col of ``x`` as one view of its padded NHWC copy, and the weight/output layouts."""

    __slots__ = ("n", "c", "o", "kh", "kw", "oh", "ow", "k", "m", "lpos", "x_cl", "pad6", "ratio", "wdt", "views",
                 "w_cl", "out_cl", "osize", "ostride", "wshape")

    def __init__(self, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> None:
        n, c, h, wd = x.shape
        o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        (sh, sw), (ph, pw), (dh, dw) = p.stride, p.padding, p.dilation
        oh, ow = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
        hp, wp = h + 2 * ph, wd + 2 * pw
        self.n, self.c, self.o, self.kh, self.kw, self.oh, self.ow = n, c, o, kh, kw, oh, ow
        self.k = kh * kw * c
        self.lpos = oh * ow
        self.m = n * self.lpos
        self.x_cl = cl_like(x)
        self.pad6 = (0, 0, pw, pw, ph, ph)
        self.ratio, self.wdt = wide_dtype(x)
        # (size, stride, columns) of the im2col view, per element width: narrow, wide
        self.views = []
        for cc in (c, c // self.ratio):
            self.views.append(((n, oh, ow, kh, kw, cc), (hp * wp * cc, sh * wp * cc, sw * cc, dh * wp * cc, dw * cc, 1), kh * kw * cc))
        self.w_cl = w.is_contiguous(memory_format=CL)
        self.out_cl = self.x_cl or C_.is_cl(w)
        self.osize = (n, o, oh, ow)
        self.ostride = cl_strides(n, o, oh, ow)
        self.wshape = (o, c, kh, kw)

    def cols(self, x: torch.Tensor, a: int = 0, z: int | None = None) -> torch.Tensor:
        """The im2col matrix ``(M, k*k*C)`` (images ``a:z``): pad (2 kernels) + one copy."""
        xp, wide = padded_nhwc(x, self.pad6, self.x_cl, self.ratio, self.wdt)
        size, stride, k = self.views[wide]
        v = xp.as_strided(size, stride)
        if z is not None:
            v = v[a:z]
        cols = v.reshape(v.shape[0] * self.lpos, k)
        return cols.view(x.dtype) if wide else cols

    def cols_chunks(self, x: torch.Tensor, ranges):
        """im2col per image range, padding ``x`` once."""
        xp, wide = padded_nhwc(x, self.pad6, self.x_cl, self.ratio, self.wdt)
        size, stride, k = self.views[wide]
        v = xp.as_strided(size, stride)
        for a, z in ranges:
            cols = v[a:z].reshape((z - a) * self.lpos, k)
            yield a, z, (cols.view(x.dtype) if wide else cols)


_FWD: dict = {}
_BWD_W: dict = {}
_BWD_D: dict = {}


def _plan(cache: dict, key: tuple, make):
    plan = cache.get(key)
    if plan is None:
        if len(cache) >= C_.MAX_PLANS:
            cache.clear()
        plan = cache[key] = make()
    return plan


def _chunked(plan, itemsize: int) -> list[tuple[int, int]] | None:
    """Image ranges when the columns exceed the workspace budget, else None (one GEMM)."""
    if plan.m * plan.k * itemsize <= C_.WORKSPACE_BYTES:
        return None
    return C_.chunks(plan.n, plan.lpos * plan.k * itemsize)


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: ConvParams) -> torch.Tensor:
    P = _plan(_FWD, (x.shape, x.stride(), x.dtype, w.shape, w.stride(), p), lambda: _ColsPlan(x, w, p))
    if P.w_cl:  # (O, kh, kw, C) storage: the (k*k*C, O) GEMM operand is a view
        wmat = w.as_strided((P.k, P.o), (1, P.k))
    else:
        wmat = w.permute(0, 2, 3, 1).reshape(P.o, P.k).t()
    prev = tf32_enter(x)
    try:
        ranges = _chunked(P, x.element_size())
        if ranges is None:
            cols = P.cols(x)
            out = torch.mm(cols, wmat) if b is None else torch.addmm(b, cols, wmat)
        else:
            out = x.new_empty(P.m, P.o)
            lp = P.lpos
            for a, z, cols in P.cols_chunks(x, ranges):
                if b is None:
                    torch.mm(cols, wmat, out=out[a * lp:z * lp])
                else:
                    torch.addmm(b, cols, wmat, out=out[a * lp:z * lp])
    finally:
        tf32_exit(prev)
    if P.out_cl:
        return out.as_strided(P.osize, P.ostride)
    return out.view(P.n, P.oh, P.ow, P.o).permute(0, 3, 1, 2).contiguous()


def backward_weight(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    P = _plan(_BWD_W, (x.shape, x.stride(), x.dtype, w.shape, w.stride(), p), lambda: _ColsPlan(x, w, p))
    if grad_out.is_contiguous(memory_format=CL):  # (O, M) operand as a view of NHWC grad_out
        go_t = grad_out.as_strided((P.o, P.m), (1, P.o))
    else:
        go_t = grad_out.permute(1, 0, 2, 3).reshape(P.o, P.m)
    prev = tf32_enter(x)
    try:
        ranges = _chunked(P, x.element_size())
        if ranges is None:
            gw = torch.mm(go_t, P.cols(x))
        else:
            gw = None
            lp = P.lpos
            for a, z, cols in P.cols_chunks(x, ranges):
                g = go_t[:, a * lp:z * lp]
                gw = torch.mm(g, cols) if gw is None else gw.addmm_(g, cols)
    finally:
        tf32_exit(prev)
    if P.w_cl:
        return gw.as_strided(P.wshape, cl_strides(*P.wshape))
    return gw.view(P.o, P.kh, P.kw, P.c).permute(0, 3, 1, 2).contiguous()


def _gather_axis(size: int, osize: int, k: int, s: int, p: int, d: int):
    """Per axis: padded kernel ``kk``, taps per phase ``U``, rows per phase ``A``, grad_out pads
    (before, after), and the gather as coefficients of (position stride ``R``, tap stride ``T``):
    ``base``, phase step, tap step (the position step is ``R``)."""
    if s == 1:
        kk, u, a = k, k, size
        before = max(0, (k - 1) * d - p)
        after = max(0, size + p - osize)
        # offset = (i + c0 + u*d) * R + (k-1-u) * T
        c0 = p - (k - 1) * d + before
        return kk, u, a, before, after, (c0, k - 1), (0, 0), (d, -1)
    kk = 2 * ((k + 1) // 2)
    u = kk // 2
    a = (size + 1) // 2
    (q0, e0), (q1, e1) = divmod(p, 2), divmod(p + 1, 2)
    before = max(0, u - 1 - q0)
    after = max(0, a + q1 - osize)
    # phase r: pos = a + q_r - (u-1) + u' + before, tap = e_r + 2(u-1) - 2u'
    base0 = (q0 - u + 1 + before, e0 + 2 * u - 2)
    base1 = (q1 - u + 1 + before, e1 + 2 * u - 2)
    return kk, u, a, before, after, base0, (base1[0] - base0[0], base1[1] - base0[1]), (1, -2)


class _GatherPlan:
    """bwd_data: padded grad_out (M', O) @ W (O, kk*kk*C) = Y, then one gather-sum over Y."""

    __slots__ = ("n", "c", "h", "wd", "o", "kh", "kw", "kkh", "kkw", "kcols", "go_cl", "pad6", "ratio", "wdt", "mp", "lpos",
                 "size", "stride", "offset", "img", "full", "crop", "w_direct", "x_cl", "xstride", "gshape")

    def __init__(self, go: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> None:
        n, c, h, wd = x.shape
        o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        oh, ow = go.shape[2], go.shape[3]
        (sh, sw), (ph, pw), (dh, dw) = p.stride, p.padding, p.dilation
        kkh, uh, ah, bh, eh, base_h, phase_h, step_h = _gather_axis(h, oh, kh, sh, ph, dh)
        kkw, uw, aw, bw, ew, base_w, phase_w, step_w = _gather_axis(wd, ow, kw, sw, pw, dw)
        ohp, owp = oh + bh + eh, ow + bw + ew
        self.n, self.c, self.h, self.wd, self.o, self.kh, self.kw, self.kkh, self.kkw = n, c, h, wd, o, kh, kw, kkh, kkw
        self.kcols = kkh * kkw * c
        self.go_cl = cl_like(go)
        self.pad6 = (0, 0, bw, ew, bh, eh)
        self.ratio, self.wdt = wide_dtype(go)
        self.lpos = ohp * owp
        self.mp = n * self.lpos
        # Y (N, OHp, OWp, kkh, kkw, C): position and tap strides per axis
        t_w, t_h = c, kkw * c
        r_w = kkh * kkw * c
        r_h = owp * r_w
        self.img = ohp * r_h
        self.size = (ah, sh, aw, sw, uh, uw, c)
        self.stride = (
            r_h, phase_h[0] * r_h + phase_h[1] * t_h,
            r_w, phase_w[0] * r_w + phase_w[1] * t_w,
            step_h[0] * r_h + step_h[1] * t_h, step_w[0] * r_w + step_w[1] * t_w, 1,
        )
        self.offset = base_h[0] * r_h + base_h[1] * t_h + base_w[0] * r_w + base_w[1] * t_w
        self.full = (n, ah * sh, aw * sw, c)
        self.crop = ah * sh != h or aw * sw != wd
        self.w_direct = kkh == kh and kkw == kw and w.is_contiguous(memory_format=CL)
        self.x_cl = cl_like(x)
        self.xstride = cl_strides(n, c, h, wd)
        self.gshape = (n, c, h, wd)


def backward_data(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    P = _plan(_BWD_D, (grad_out.shape, grad_out.stride(), grad_out.dtype, x.shape, x.stride(), w.shape, w.stride(), p),
              lambda: _GatherPlan(grad_out, x, w, p))
    if P.w_direct:  # (O, kh*kw*C) is the storage of a channels_last weight
        wr = w.as_strided((P.o, P.kcols), (P.kcols, 1))
    else:
        wr = w.permute(0, 2, 3, 1)
        if P.kkh != P.kh or P.kkw != P.kw:
            wr = F.pad(wr, (0, 0, 0, P.kkw - P.kw, 0, P.kkh - P.kh))
        wr = wr.reshape(P.o, P.kcols)
    gp, wide = padded_nhwc(grad_out, P.pad6, P.go_cl, P.ratio, P.wdt)
    gp = (gp.view(grad_out.dtype) if wide else gp).view(P.mp, P.o)
    prev = tf32_enter(x)
    try:
        if P.mp * P.kcols * x.element_size() <= C_.WORKSPACE_BYTES:
            gx = torch.mm(gp, wr).as_strided((P.n, *P.size), (P.img, *P.stride), P.offset).sum((5, 6))
        else:
            gx = x.new_empty((P.n, *P.size[:4], P.c))
            lp = P.lpos
            for a, z in C_.chunks(P.n, lp * P.kcols * x.element_size()):
                y = torch.mm(gp[a * lp:z * lp], wr)
                torch.sum(y.as_strided((z - a, *P.size), (P.img, *P.stride), P.offset), (5, 6), out=gx[a:z])
    finally:
        tf32_exit(prev)
    if P.crop:
        gx = gx.view(P.full)[:, :P.h, :P.wd].contiguous()
    if P.x_cl:
        return gx.as_strided(P.gshape, P.xstride)
    return gx.view(P.n, P.h, P.wd, P.c).permute(0, 3, 1, 2).contiguous()
