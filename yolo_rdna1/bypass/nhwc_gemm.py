"""k x k convs (groups 1) as one GEMM per direction over NHWC data, no unfold/fold.

Why it exists: the 3x3 convs carry most of YOLOv8n's conv cost, and the reference im2col path
(``unfold`` + matmul, autograd through ``fold``) pays for it with NCHW<->NHWC flips, an
``unfold`` kernel, a scatter-add ``fold`` in the backward and, through autograd, 9x the input
saved for backward. Here the guard saves only ``w`` and ``x`` (or its padded copy) and each
direction is written out:

* **forward** ``out (M, O) = cols (M, k*k*C) @ W (k*k*C, O)`` with ``M = N*OH*OW``.
  ``cols`` is a *single* ``as_strided`` view of the zero-padded NHWC input
  ``(N, OH, OW, kh, kw, C)`` (any stride, dilation, padding) made contiguous by one copy kernel;
  the GEMM's result already is the NHWC (channels_last) output, the weight matrix is a view of a
  channels_last weight, and a bias rides in the GEMM (``addmm``).
  Launches: pad 1 (a copy into a kept zero-bordered buffer, :mod:`.bordered`; fill + copy when
  none is free) + cols 1 + GEMM 1 = **3**. Transient bytes: ``k*k`` times the input (the
  columns), freed before the call returns; the padded input is saved for backward.
* **bwd_weight** ``gW (O, k*k*C) = grad_out^T (O, M) @ cols (M, k*k*C)``, the forward's columns
  rebuilt (not saved: saving them is what doubled the unfold path's peak memory) from the padded
  input the forward saved in place of ``x``. Launches: **2** (cols 1, GEMM 1); 3 through the
  functional :func:`backward_weight`, which pads ``x`` first.
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

  Launches: pad 1 (kept buffer) + GEMM 1 + reduction 1 = **3** (plus 1 small weight pad for k
  odd, stride 2).
  Transient bytes: ``Y``, ``kk*kk*C`` per padded output position (9x the input gradient for a
  3x3 stride-1 conv, 4x for 3x3 stride 2).

Strides above 2 and dilation with stride 2 have no gather form here (:func:`supports` says no;
the reference im2col takes them). All GEMMs go through ``torch.mm``/``addmm`` (cuBLAS/rocBLAS);
on CUDA, float32 GEMMs use TF32 exactly when cuDNN convs would (see ``_common``). When a
direction's transient workspace exceeds ``_common.WORKSPACE_BYTES`` the batch is processed in
chunks (one more GEMM launch per chunk), which bounds peak memory for large images.

Host cost (the YOLOv8n step is launch/host-bound): everything that depends only on shapes,
strides, dtype and params (output sizes, view strides, the gather's offsets, layout decisions)
is computed once per call key into a :class:`Plan` (the guard keeps one per module and input
shape; the functional API caches them in ``_PLANS``, bounded by ``_common.MAX_PLANS``); a call
then issues the ops listed above plus a few view ops: the weight-matrix views are kept while the
weight keeps its memory (``_common.WeightView``) and the im2col view of a kept pad buffer is
made once per buffer. The plan's ``forward`` hands back the padded input as the tensor to save,
so bwd_weight rebuilds its columns without padding again. Pads and column copies of channels_last
tensors of at least ``_common.WIDE_MIN_BYTES`` move 16-byte units (``complex128`` views of the
channel vectors): same bytes, 4-8x fewer elements for the strided copy kernel (measured on an
H100: a YOLOv8n step's copies take 5.5 ms this way, 8.7 ms element by element).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _common as C_
from . import bordered
from ._common import CL, WeightView, cl_like, cl_strides, out_size, padded_nhwc, tf32_enter, tf32_exit, wide_dtype
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
class Plan:
    """One call key's conv: im2col as one view of the padded NHWC input, the weight/output
    layouts, and (per grad_out layout) the bwd_data gather.

    Built once per (input shape/strides/dtype, weight shape/strides, params); the guard keeps one
    per module and input shape and calls :meth:`forward` / :meth:`backward` directly, so a
    training step pays no cache lookups. :meth:`forward` returns the padded input it made for
    the columns as the tensor to save: :meth:`backward` rebuilds bwd_weight's columns from it
    without padding ``x`` again (it replaces ``x`` as the saved tensor, so memory stays the same
    up to the zero border).
    """

    __slots__ = (
        "n",
        "c",
        "o",
        "kh",
        "kw",
        "oh",
        "ow",
        "k",
        "m",
        "lpos",
        "x_cl",
        "pad6",
        "ratio",
        "wdt",
        "views",
        "w_cl",
        "w_stride",
        "wmat",
        "out_cl",
        "osize",
        "ostride",
        "wshape",
        "params",
        "x_meta",
        "_gathers",
    )

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
            self.views.append(
                ((n, oh, ow, kh, kw, cc), (hp * wp * cc, sh * wp * cc, sw * cc, dh * wp * cc, dw * cc, 1), kh * kw * cc)
            )
        self.w_cl = w.is_contiguous(memory_format=CL)
        self.w_stride = w.stride()
        # the (k*k*C, O) GEMM operand: a view of a channels_last (O, kh, kw, C) weight, kept;
        # a copy of any other layout, made per call
        k = self.k
        self.wmat = (
            WeightView(lambda w: w.as_strided((k, o), (1, k)))
            if self.w_cl
            else (lambda w: w.permute(0, 2, 3, 1).reshape(o, k).t())
        )
        self.out_cl = self.x_cl or C_.is_cl(w)
        self.osize = (n, o, oh, ow)
        self.ostride = cl_strides(n, o, oh, ow)
        self.wshape = (o, c, kh, kw)
        self.params = p
        # the input's shape and strides for the gather plans, without holding on to the input
        self.x_meta = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device="meta")
        self._gathers: dict = {}

    # -- pieces ------------------------------------------------------------------------------
    def pad(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        """The zero-padded NHWC copy of ``x`` the columns are a view of (16-byte units when it
        can: then its dtype is ``complex128``)."""
        return padded_nhwc(x, self.pad6, self.x_cl, self.ratio, self.wdt, keep_new=train)[0]

    def cols(self, xp: torch.Tensor, dtype: torch.dtype, a: int = 0, z: int | None = None) -> torch.Tensor:
        """The im2col matrix ``(M, k*k*C)`` (images ``a:z``) of a padded input: one copy."""
        wide = xp.dtype != dtype
        size, stride, k = self.views[wide]
        v = bordered.strided(xp, size, stride)
        if z is not None:
            v = v[a:z]
        cols = v.reshape(v.shape[0] * self.lpos, k)
        return cols.view(dtype) if wide else cols

    def _ranges(self, itemsize: int) -> list[tuple[int, int]] | None:
        """Image ranges when the columns exceed the workspace budget, else None (one GEMM)."""
        if self.m * self.k * itemsize <= C_.WORKSPACE_BYTES:
            return None
        return C_.chunks(self.n, self.lpos * self.k * itemsize)

    # -- directions ----------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, train: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, the padded input to save for :meth:`backward`). ``train``: a training step's
        call (its padded input may go into a new kept buffer; inference only reuses idle ones)."""
        wmat = self.wmat(w)
        xp = self.pad(x, train)
        prev = tf32_enter(x)
        try:
            ranges = self._ranges(x.element_size())
            if ranges is None:
                cols = self.cols(xp, x.dtype)
                out = torch.mm(cols, wmat) if b is None else torch.addmm(b, cols, wmat)
            else:
                out = x.new_empty(self.m, self.o)
                lp = self.lpos
                for a, z in ranges:
                    cols = self.cols(xp, x.dtype, a, z)
                    if b is None:
                        torch.mm(cols, wmat, out=out[a * lp : z * lp])
                    else:
                        torch.addmm(b, cols, wmat, out=out[a * lp : z * lp])
        finally:
            tf32_exit(prev)
        if self.out_cl:
            return out.as_strided(self.osize, self.ostride), xp
        return out.view(self.n, self.oh, self.ow, self.o).permute(0, 3, 1, 2).contiguous(), xp

    def backward(self, grad_out: torch.Tensor, xp: torch.Tensor, w: torch.Tensor, need_x: bool, need_w: bool):
        """(grad_input, grad_weight) from grad_out, the saved padded input and the weight."""
        prev = tf32_enter(grad_out)
        try:
            gx = self._data_grad(grad_out, w) if need_x else None
            gw = self._weight_grad(grad_out, xp) if need_w else None
        finally:
            tf32_exit(prev)
        return gx, gw

    def _weight_grad(self, grad_out: torch.Tensor, xp: torch.Tensor) -> torch.Tensor:
        if grad_out.is_contiguous(memory_format=CL):  # (O, M) operand as a view of NHWC grad_out
            go_t = grad_out.as_strided((self.o, self.m), (1, self.o))
        else:
            go_t = grad_out.permute(1, 0, 2, 3).reshape(self.o, self.m)
        ranges = self._ranges(grad_out.element_size())
        if ranges is None:
            gw = torch.mm(go_t, self.cols(xp, grad_out.dtype))
        else:
            gw = None
            lp = self.lpos
            for a, z in ranges:
                g, cols = go_t[:, a * lp : z * lp], self.cols(xp, grad_out.dtype, a, z)
                gw = torch.mm(g, cols) if gw is None else gw.addmm_(g, cols)
        if self.w_cl:
            return gw.as_strided(self.wshape, cl_strides(*self.wshape))
        return gw.view(self.o, self.kh, self.kw, self.c).permute(0, 3, 1, 2).contiguous()

    def _data_grad(self, grad_out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        key = grad_out.stride()
        G = self._gathers.get(key)
        if G is None:
            G = self._gathers[key] = _GatherPlan(grad_out, self.x_meta, w, self.params)
        return G.run(grad_out, w)


_PLANS: dict = {}


def plan_for(x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> Plan:
    """The (cached) plan of a call key: what the functional API below uses; the guard keeps its
    own per module and input shape."""
    key = (x.shape, x.stride(), x.dtype, w.shape, w.stride(), p)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= C_.MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[key] = Plan(x, w, p)
    return plan


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: ConvParams) -> torch.Tensor:
    # a conv whose operands need no gradient is inference (validation, the EMA model): it may
    # reuse a kept pad buffer but does not make one (see ``bordered``)
    return plan_for(x, w, p).forward(x, w, b, x.requires_grad or w.requires_grad)[0]


def backward_weight(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    P = plan_for(x, w, p)
    return P.backward(grad_out, P.pad(x), w, False, True)[1]


def backward_data(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    return plan_for(x, w, p).backward(grad_out, None, w, True, False)[0]


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

    __slots__ = (
        "n",
        "c",
        "h",
        "wd",
        "o",
        "kh",
        "kw",
        "kkh",
        "kkw",
        "kcols",
        "go_cl",
        "pad6",
        "ratio",
        "wdt",
        "mp",
        "lpos",
        "size",
        "stride",
        "offset",
        "img",
        "full",
        "crop",
        "wrows",
        "x_cl",
        "xstride",
        "gshape",
    )

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
            r_h,
            phase_h[0] * r_h + phase_h[1] * t_h,
            r_w,
            phase_w[0] * r_w + phase_w[1] * t_w,
            step_h[0] * r_h + step_h[1] * t_h,
            step_w[0] * r_w + step_w[1] * t_w,
            1,
        )
        self.offset = base_h[0] * r_h + base_h[1] * t_h + base_w[0] * r_w + base_w[1] * t_w
        self.full = (n, ah * sh, aw * sw, c)
        self.crop = ah * sh != h or aw * sw != wd
        kcols = self.kcols
        if kkh == kh and kkw == kw and w.is_contiguous(memory_format=CL):
            # (O, kh*kw*C) is the storage of a channels_last weight: a view, kept
            self.wrows = WeightView(lambda w: w.as_strided((o, kcols), (kcols, 1)))
        else:  # a copy (kernel zero-padded to an even size for stride 2), made per call
            pads = (0, 0, 0, kkw - kw, 0, kkh - kh)
            self.wrows = lambda w: F.pad(w.permute(0, 2, 3, 1), pads).reshape(o, kcols)
        self.x_cl = cl_like(x)
        self.xstride = cl_strides(n, c, h, wd)
        self.gshape = (n, c, h, wd)

    def run(self, grad_out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The input gradient: pad grad_out, one GEMM, one gather-sum (TF32 set by the caller)."""
        wr = self.wrows(w)
        gp, wide = padded_nhwc(grad_out, self.pad6, self.go_cl, self.ratio, self.wdt, rows=True)
        if wide:
            gp = gp.view(grad_out.dtype)
        itemsize = grad_out.element_size()
        if self.mp * self.kcols * itemsize <= C_.WORKSPACE_BYTES:
            gx = torch.mm(gp, wr).as_strided((self.n, *self.size), (self.img, *self.stride), self.offset).sum((5, 6))
        else:
            gx = grad_out.new_empty((self.n, *self.size[:4], self.c))
            lp = self.lpos
            for a, z in C_.chunks(self.n, lp * self.kcols * itemsize):
                y = torch.mm(gp[a * lp : z * lp], wr)
                torch.sum(y.as_strided((z - a, *self.size), (self.img, *self.stride), self.offset), (5, 6), out=gx[a:z])
        if self.crop:
            gx = gx.view(self.full)[:, : self.h, : self.wd].contiguous()
        if self.x_cl:
            return gx.as_strided(self.gshape, self.xstride)
        return gx.view(self.n, self.h, self.wd, self.c).permute(0, 3, 1, 2).contiguous()
