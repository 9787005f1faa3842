"""Signature discovery: train (square, mosaic) and val (rect) shapes, directions, dtype, layout."""

import pytest

from yolo_rdna1.probe.discovery import DiscoveryError, discover, rect_batches


def test_rect_batches_follow_ultralytics_set_rectangle():
    # LTDV2 frames are 384x288 (h/w = 0.75): 640 px val batches are 512x672, with pad 0.5
    assert rect_batches([(288, 384)] * 10, 640, 8) == [(8, 512, 672), (2, 512, 672)]
    assert rect_batches([(400, 300)] * 3, 320, 8) == [(3, 352, 256)]


def test_discover_yolov8n_train_and_val(synthetic_data):
    sigs = discover("yolov8n.yaml", imgsz=128, batch=4, data=synthetic_data, backend="cpu")
    fwd = [s for s in sigs if s.direction == "fwd"]
    assert len(sigs) == len(set(sigs))
    train = [s for s in fwd if s.batch == 4 and s.height == s.width]
    assert len({(s.in_channels, s.out_channels, s.kernel, s.stride, s.height) for s in train}) > 30
    # the stem reads the image: no input gradient, but a weight gradient
    stem = [s for s in sigs if s.in_channels == 3]
    assert {s.direction for s in stem if s.batch == 4 and s.height == 128} == {"fwd", "bwd_weight"}
    # val batches are 2 x batch and rectangular (the synthetic frames are 384x288)
    val = [s for s in fwd if s.batch == 8]
    assert val and all(s.in_channels == 3 or s.direction == "fwd" for s in val)
    assert any(s.height == 128 - 32 + 32 and s.width == 160 for s in val if s.in_channels == 3)
    # 16 train images at batch 4: no partial batch; 8 val images at 8: one batch
    assert {s.batch for s in sigs} == {4, 8}
    assert {s.dtype for s in sigs} == {"float32"} and not any(s.channels_last for s in sigs)


def test_gpu_backends_set_dtype_and_layout():
    sigs = discover("yolov8n.yaml", imgsz=64, batch=2, backend="cuda", amp=True, val=False)
    assert {s.dtype for s in sigs} == {"float16"}
    assert not [s for s in sigs if s.in_channels == 3][0].channels_last
    assert all(s.channels_last for s in sigs if s.in_channels != 3)


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(DiscoveryError, match="model file .*nope.pt not found"):
        discover(str(tmp_path / "nope.pt"))
    with pytest.raises(DiscoveryError, match="dataset YAML .* not found"):
        discover("yolov8n.yaml", data=tmp_path / "none.yaml")
