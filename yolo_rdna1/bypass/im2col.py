"""The reference bypass: im2col (``unfold``) + one batched GEMM per direction.

Correct for every 2-D conv (groups, depthwise, stride, dilation, transposed) and uses only what
works on RDNA1 without MIOpen: ``unfold``/``fold`` index kernels and rocBLAS/cuBLAS GEMMs.
The three directions are written out as GEMMs so the backward never reaches a vendor conv:

* forward:     ``out[n, g] = W[g] @ cols(x)[n, g]``
* bwd_data:    ``grad_x = fold(W[g]^T @ grad_out[n, g])``      (col2im of the GEMM)
* bwd_weight:  ``grad_W[g] = sum_n grad_out[n, g] @ cols(x)[n, g]^T``

A transposed conv is the bwd_data of the conv with the same weight, so it reuses these three
with the roles of input and output swapped. Faster algorithms live beside this one; this one is
the fallback they are checked against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .params import ConvParams


def supports(sig) -> bool:
    """Every 2-D conv and transposed conv: this is the universal fallback."""
    return True


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _cols(x: torch.Tensor, kernel: tuple[int, int], p: ConvParams) -> torch.Tensor:
    """im2col of ``x`` as ``(N, groups, C/groups * kh * kw, L)``."""
    n = x.shape[0]
    cols = F.unfold(x, kernel, dilation=p.dilation, padding=p.padding, stride=p.stride)
    return cols.view(n, p.groups, cols.shape[1] // p.groups, cols.shape[2])


def _weight_gemm(w: torch.Tensor, groups: int) -> torch.Tensor:
    """Conv weight ``(O, C/g, kh, kw)`` as ``(g, O/g, C/g * kh * kw)``."""
    return w.reshape(groups, w.shape[0] // groups, -1)


def conv_forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: ConvParams) -> torch.Tensor:
    """``F.conv2d(x, w, b, ...)`` (non-transposed) without a vendor conv."""
    n, _, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    oh = _out_size(h, kh, p.stride[0], p.padding[0], p.dilation[0])
    ow = _out_size(wd, kw, p.stride[1], p.padding[1], p.dilation[1])
    out = torch.matmul(_weight_gemm(w, p.groups), _cols(x, (kh, kw), p))  # (N, g, O/g, L)
    out = out.reshape(n, w.shape[0], oh, ow)
    if b is not None:
        out = out + b.view(1, -1, 1, 1)
    return out


def conv_backward_data(
    grad_out: torch.Tensor, w: torch.Tensor, input_hw: tuple[int, int], p: ConvParams
) -> torch.Tensor:
    """Gradient of a (non-transposed) conv w.r.t. its input of spatial size ``input_hw``."""
    n = grad_out.shape[0]
    kh, kw = w.shape[2], w.shape[3]
    go = grad_out.reshape(n, p.groups, w.shape[0] // p.groups, -1)  # (N, g, O/g, L)
    cols = torch.matmul(_weight_gemm(w, p.groups).transpose(1, 2), go)  # (N, g, C/g*k*k, L)
    cols = cols.reshape(n, -1, cols.shape[-1])
    return F.fold(cols, input_hw, (kh, kw), dilation=p.dilation, padding=p.padding, stride=p.stride)


def conv_backward_weight(grad_out: torch.Tensor, x: torch.Tensor, w_shape: torch.Size, p: ConvParams) -> torch.Tensor:
    """Gradient of a (non-transposed) conv w.r.t. its weight of shape ``w_shape``."""
    n = x.shape[0]
    g = p.groups
    cols = _cols(x, (w_shape[2], w_shape[3]), p)  # (N, g, K, L)
    go = grad_out.reshape(n, g, w_shape[0] // g, -1)  # (N, g, O/g, L)
    # One GEMM over (N*L): (g, O/g, N*L) @ (g, N*L, K)
    go2 = go.permute(1, 2, 0, 3).reshape(g, w_shape[0] // g, -1)
    cols2 = cols.permute(1, 0, 3, 2).reshape(g, -1, cols.shape[2])
    return torch.bmm(go2, cols2).reshape(w_shape)


def _transposed_canvas(x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> tuple[tuple[int, int], tuple[int, int]]:
    """Output size of a transposed conv, and the size of its unpadded "canvas".

    The canvas is the padded output region the conv's ``h x w`` blocks cover exactly
    (``(h - 1) * s + (k - 1) * d + 1``). fold/unfold need the block count to match the input
    exactly, which ``output_padding`` and padding can break, so the transposed paths work on the
    canvas with padding 0 and crop or zero-extend it to the real output.
    """
    out_hw, canvas_hw = [], []
    for i in range(2):
        k, s, d = w.shape[2 + i], p.stride[i], p.dilation[i]
        canvas = (x.shape[2 + i] - 1) * s + (k - 1) * d + 1
        canvas_hw.append(canvas)
        out_hw.append(canvas - 2 * p.padding[i] + p.output_padding[i])
    return (out_hw[0], out_hw[1]), (canvas_hw[0], canvas_hw[1])


def _canvas_params(p: ConvParams) -> ConvParams:
    return p._replace(padding=(0, 0), transposed=False, output_padding=(0, 0))


def _to_canvas(t: torch.Tensor, canvas_hw: tuple[int, int], p: ConvParams) -> torch.Tensor:
    """A transposed conv's output-sized tensor placed on its canvas (negative pads crop)."""
    (ph, pw), (ch, cw) = p.padding, canvas_hw
    return F.pad(t, (pw, cw - pw - t.shape[3], ph, ch - ph - t.shape[2]))


def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: ConvParams) -> torch.Tensor:
    """The forward of a conv or transposed conv (``p.transposed``)."""
    if not p.transposed:
        return conv_forward(x, w, b, p)
    (oh, ow), canvas_hw = _transposed_canvas(x, w, p)
    canvas = conv_backward_data(x, w, canvas_hw, _canvas_params(p))
    (ph, pw), (ch, cw) = p.padding, canvas_hw
    out = F.pad(canvas, (-pw, ow + pw - cw, -ph, oh + ph - ch))
    return out if b is None else out + b.view(1, -1, 1, 1)


def backward_data(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    """Gradient w.r.t. the input ``x``."""
    if not p.transposed:
        return conv_backward_data(grad_out, w, (x.shape[2], x.shape[3]), p)
    _, canvas_hw = _transposed_canvas(x, w, p)
    return conv_forward(_to_canvas(grad_out, canvas_hw, p), w, None, _canvas_params(p))


def backward_weight(grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, p: ConvParams) -> torch.Tensor:
    """Gradient w.r.t. the weight ``w``."""
    if not p.transposed:
        return conv_backward_weight(grad_out, x, w.shape, p)
    # The transposed conv's input plays the conv's output gradient, its output gradient the input.
    _, canvas_hw = _transposed_canvas(x, w, p)
    return conv_backward_weight(x, _to_canvas(grad_out, canvas_hw, p), w.shape, _canvas_params(p))
