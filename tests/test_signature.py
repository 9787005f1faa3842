import pytest
import torch
import torch.nn.functional as F

from yolo_rdna1.errors import Rdna1Error
from yolo_rdna1.signature import ConvSignature, SignatureError


def _sig(**kw):
    base = dict(
        in_channels=16,
        out_channels=32,
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        dilation=(1, 1),
        groups=1,
        height=48,
        width=64,
        batch=4,
    )
    base.update(kw)
    return ConvSignature(**base)


def test_key_is_stable_text_and_round_trips():
    sig = _sig()
    # The key is an on-disk format: this exact text must not change without a migration.
    assert sig.key() == "v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:48x64:float32:nchw:fwd"
    for s in (
        sig,
        _sig(transposed=True, output_padding=(1, 0), stride=(2, 2)),
        _sig(channels_last=True, dtype="bfloat16").with_direction("bwd_weight"),
    ):
        assert ConvSignature.from_key(s.key()) == s


def test_hashable_and_equal_by_value():
    assert {_sig(): 1}[_sig()] == 1
    assert _sig() != _sig(direction="bwd_data")
    assert hash(_sig()) == hash(_sig())


def test_bad_key_and_direction_are_rejected():
    with pytest.raises(ValueError, match="not a conv signature key"):
        ConvSignature.from_key("v9:whatever")
    with pytest.raises(ValueError, match="direction"):
        _sig(direction="sideways")


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(stride=(2, 2)),
        dict(dilation=(2, 2), padding=(2, 2)),
        dict(transposed=True, stride=(2, 2), output_padding=(1, 1)),
    ],
)
def test_output_size_matches_torch(kw):
    sig = _sig(**kw)
    x = torch.zeros(1, sig.in_channels, sig.height, sig.width)
    if sig.transposed:
        w = torch.zeros(sig.in_channels, sig.out_channels, *sig.kernel)
        out = F.conv_transpose2d(x, w, None, sig.stride, sig.padding, sig.output_padding, 1, sig.dilation)
    else:
        w = torch.zeros(sig.out_channels, sig.in_channels, *sig.kernel)
        out = F.conv2d(x, w, None, sig.stride, sig.padding, sig.dilation)
    assert tuple(out.shape[2:]) == sig.output_size


def test_str_is_readable():
    assert str(_sig()) == "conv 16->32 k3x3 s1 p1 d1 g1 4x48x64 float32 fwd"
    assert _sig().hw == 64


GOOD = "v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:48x64:float32:nchw:fwd"


@pytest.mark.parametrize(
    "key,problem",
    [
        (GOOD.replace("c16>", "c0>"), "channels must be from 1"),
        (GOOD.replace(">32", ">-32"), "channels must be a number"),
        (GOOD.replace("n4", "n0"), "batch must be from 1"),
        (GOOD.replace("s1x1", "s0x1"), "stride must be from 1"),
        (GOOD.replace("48x64", "48x99999999999"), "height/width must be a number"),
        (GOOD.replace("48x64", "48x4294967296"), "height/width must be from 1 to 2147483647"),
        (GOOD.replace("float32", "int8"), "unknown dtype 'int8'"),
        (GOOD.replace("nchw", "chwn"), "unknown layout"),
        (GOOD.replace("g1", "g3"), "groups 3 do not divide"),
        (GOOD + "\x1b[2J", "unknown direction 'fwd\\x1b[2J'"),
        (GOOD.replace("c16", "c016"), "not in the canonical form"),
        (GOOD.replace("c16", "c\u0661\u0666"), "channels must be a number"),  # Arabic-Indic digits int() would take
        (GOOD.replace(":fwd", ":x:fwd"), "expected the output padding as tAxB, got 'x'"),
        (GOOD + ":fwd:fwd", "14 fields"),
    ],
)
def test_defect3_from_key_is_strict_and_says_what_is_wrong(key, problem):
    with pytest.raises(SignatureError) as err:
        ConvSignature.from_key(key)
    assert isinstance(err.value, Rdna1Error) and problem in str(err.value)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
