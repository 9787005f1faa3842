import pytest
import torch.nn.functional as F
import torch

from yolo_rdna1.signature import ConvSignature


def _sig(**kw):
    base = dict(in_channels=16, out_channels=32, kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                groups=1, height=48, width=64, batch=4)
    base.update(kw)
    return ConvSignature(**base)


def test_key_is_stable_text_and_round_trips():
    sig = _sig()
    # The key is an on-disk format: this exact text must not change without a migration.
    assert sig.key() == "v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:48x64:float32:nchw:fwd"
    for s in (sig, _sig(transposed=True, output_padding=(1, 0), stride=(2, 2)), _sig(channels_last=True, dtype="bfloat16").with_direction("bwd_weight")):
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


@pytest.mark.parametrize("kw", [dict(), dict(stride=(2, 2)), dict(dilation=(2, 2), padding=(2, 2)), dict(transposed=True, stride=(2, 2), output_padding=(1, 1))])
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
