"""A key read from a file names a conv that can exist: one torch would run, with an output."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from yolo_rdna1.signature import ConvSignature, SignatureError


def _key(size, k, p, s, d, op=None):
    sig = ConvSignature(
        1,
        1,
        (k, k),
        (s, s),
        (p, p),
        (d, d),
        1,
        size,
        size,
        1,
        transposed=op is not None,
        output_padding=(op, op) if op is not None else (0, 0),
    )
    return sig.key()


def _torch_runs(size, k, p, s, d, op=None) -> bool:
    x, w = torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k)
    try:
        if op is None:
            y = F.conv2d(x, w, stride=s, padding=p, dilation=d)
        else:
            y = F.conv_transpose2d(x, w, stride=s, padding=p, output_padding=op, dilation=d)
    except RuntimeError:
        return False
    return y.numel() > 0


@pytest.mark.parametrize(
    "key, field",
    [
        ("v1:c16>32:k99x99:s1x1:p0x0:d1x1:g1:n4:1x1:float32:nchw:fwd", "kernel k99x99"),
        ("v1:c16>32:k3x3:s1x1:p0x0:d3x3:g1:n4:5x64:float32:nchw:bwd_data", "kernel k3x3"),
        ("v1:c16>32:k1x1:s1x1:p2x2:d1x1:g1:n4:1x1:float32:nchw:t0x0:fwd", "padding p2x2"),
        ("v1:c16>32:k3x3:s2x2:p1x1:d1x1:g1:n4:8x8:float32:nchw:t2x0:fwd", "output padding t2x0"),
        ("v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:8x8:float32:nchw:t0x1:fwd", "output padding t0x1"),
    ],
)
def test_from_key_refuses_a_conv_that_cannot_exist_naming_the_field(key, field):
    with pytest.raises(SignatureError) as e:
        ConvSignature.from_key(key)
    assert field in str(e.value) and "\n" not in str(e.value)


def test_from_key_accepts_exactly_the_convs_torch_runs():
    """Every small conv and transposed conv: the key is read back if and only if torch runs the conv
    and its output has a pixel (the boundaries: output size 1, output padding one below the stride
    or the dilation)."""
    wrong = []
    for size, k, p, s, d in itertools.product((1, 2, 3), (1, 2, 3, 4), (0, 1, 2), (1, 2), (1, 2)):
        for op in (None, 0, 1, 2):
            runs = _torch_runs(size, k, p, s, d, op)
            try:
                ConvSignature.from_key(_key(size, k, p, s, d, op))
                accepted = True
            except SignatureError:
                accepted = False
            if accepted != runs:
                wrong.append((size, k, p, s, d, op, runs))
    assert not wrong, f"from_key and torch disagree on (size, k, p, s, d, op, torch runs): {wrong[:5]}"
