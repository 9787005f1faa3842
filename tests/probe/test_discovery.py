"""Signature discovery: train (square, mosaic) and val (rect) shapes, directions, dtype, layout, every task."""

from dataclasses import replace

import pytest
import yaml

from yolo_rdna1.probe.discovery import DiscoveryError, autobackend_channels_last, discover, model_task, rect_batches


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
    assert {s.dtype for s in sigs} == {"float32"}
    # training and its per-epoch validation are NCHW on a CPU; the final evaluation of best.pt runs
    # through AutoBackend, which makes it channels_last on 8.4 on an x86 CPU: the same val shapes in NHWC
    nhwc = [s for s in sigs if s.channels_last]
    if autobackend_channels_last("cpu"):
        assert nhwc and all(
            s.direction == "fwd" and s.batch == 8 and replace(s, channels_last=False) in set(sigs) for s in nhwc
        )
    else:
        assert not nhwc


def test_gpu_backends_set_dtype_and_layout():
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from yolo_rdna1.guard import guarded

    sigs = discover("yolov8n.yaml", imgsz=64, batch=2, backend="cuda", amp=True, val=False)
    assert {s.dtype for s in sigs} == {"float16"}
    assert not [s for s in sigs if s.in_channels == 3][0].channels_last
    assert sum(s.channels_last for s in sigs) > len(sigs) / 2
    # the layouts are what a channels_last training model feeds each conv (C2f's channel halves
    # are views, neither NCHW nor NHWC contiguous): the guard names them the same at run time
    model = DetectionModel("yolov8n.yaml", verbose=False).to(memory_format=torch.channels_last).train()
    with guarded(policy="vendor", faults=False) as guard:
        model(torch.zeros(2, 3, 64, 64))
    ran = {r["signature"] for r in guard.per_signature() if r["calls"]}
    assert ran == {replace(s, dtype="float32").key() for s in sigs if s.direction == "fwd"}


def _tiny_dataset(root, kpt_shape=None):
    from PIL import Image

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (96, 72)).save(root / "images" / split / f"{i}.jpg")
    cfg = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "a", 1: "b"}}
    if kpt_shape:
        cfg["kpt_shape"] = kpt_shape
    (root / "data.yaml").write_text(yaml.safe_dump(cfg))
    return root / "data.yaml"


def test_every_task_gets_its_model_head_and_validation_batches(tmp_path):
    assert [
        model_task(m)
        for m in ("yolo11n.yaml", "yolov8n-seg.yaml", "yolov8n-pose.yaml", "yolov8n-obb.yaml", "yolov8n-cls.yaml")
    ] == ["detect", "segment", "pose", "obb", "classify"]
    # segmentation: the mask head's ConvTranspose2d, with both of its backward directions in training
    seg = discover("yolov8n-seg.yaml", imgsz=64, batch=2)
    up = [s for s in seg if s.transposed]
    assert {(s.batch, s.direction) for s in up if not s.channels_last} >= {
        (2, "fwd"),
        (2, "bwd_data"),
        (2, "bwd_weight"),
        (4, "fwd"),
    }
    # pose: the keypoint head is sized by the dataset's kpt_shape (4 keypoints x 3 = 12 channels)
    pose = discover("yolov8n-pose.yaml", imgsz=64, batch=2, data=_tiny_dataset(tmp_path / "pose", [4, 3]))
    assert any(s.out_channels == 12 and s.kernel == (1, 1) for s in pose) and not any(
        s.out_channels == 51 for s in pose
    )
    # 3 val images of 96x72 at 2 x 2: one rectangular 64x96 batch of 3;
    # 3 train images at batch 2 leave a last batch of 1
    assert {(s.batch, s.height, s.width) for s in pose if s.in_channels == 3 and s.direction == "fwd"} == {
        (2, 64, 64),
        (1, 64, 64),
        (3, 64, 96),
    }
    # OBB validates at the training batch size, the other tasks at twice it
    obb = discover("yolov8n-obb.yaml", imgsz=64, batch=2, train=False)
    assert {s.batch for s in obb} == {2}
    # classification: square center crops at 2 x batch, the imgsz rounded up to the stride
    cls = discover("yolov8n-cls.yaml", imgsz=50, batch=2)
    assert {(s.batch, s.height, s.width) for s in cls if s.in_channels == 3} == {(2, 64, 64), (4, 64, 64)}


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(DiscoveryError, match="model file .*nope.pt not found"):
        discover(str(tmp_path / "nope.pt"))
    with pytest.raises(DiscoveryError, match="dataset YAML .* not found"):
        discover("yolov8n.yaml", data=tmp_path / "none.yaml")


def test_a_checkpoint_trains_with_gradients_like_its_yaml(tmp_path):
    from ultralytics import YOLO

    path = tmp_path / "m.pt"
    model = YOLO("yolov8n.yaml")
    model.model.requires_grad_(False)  # as strip_optimizer leaves best.pt and last.pt
    model.save(path)
    from_yaml = discover("yolov8n.yaml", imgsz=64, batch=2, val=False)
    assert set(discover(str(path), imgsz=64, batch=2, val=False)) == set(from_yaml)
    assert any(s.direction == "bwd_weight" for s in from_yaml)
