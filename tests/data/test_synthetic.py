"""The synthetic thermal dataset: YOLO layout, valid labels, deterministic, thermal-looking."""

import cv2
import numpy as np
import pytest
import yaml

from yolo_rdna1.data import CLASS_NAMES, make_synthetic_thermal


def labels_of(root, split):
    return {p.name: p.read_text() for p in sorted((root / "labels" / split).glob("*.txt"))}


def test_layout_labels_and_ultralytics_accepts_it(tmp_path):
    path = make_synthetic_thermal(tmp_path / "d", n_train=24, n_val=6, seed=1)
    root = path.parent
    assert len(list((root / "images" / "train").glob("*.jpg"))) == 24 and len(labels_of(root, "val")) == 6
    cfg = yaml.safe_load(path.read_text())
    assert cfg["names"] == {0: "person", 1: "bicycle", 2: "motorcycle", 3: "vehicle"} and len(CLASS_NAMES) == 4
    img = cv2.imread(str(next((root / "images" / "train").glob("*.jpg"))), cv2.IMREAD_UNCHANGED)
    assert img.shape == (288, 384) and img.dtype == np.uint8  # grey, LTDV2's size
    for text in labels_of(root, "train").values():
        for line in text.splitlines():
            c, x, y, w, h = line.split()
            assert int(c) in range(4)
            x, y, w, h = map(float, (x, y, w, h))
            assert 0 < w <= 1 and 0 < h <= 1 and 0 <= x - w / 2 + 1e-6 and x + w / 2 <= 1 + 1e-6 and 0 <= y - h / 2 + 1e-6 and y + h / 2 <= 1 + 1e-6
    from ultralytics.data.utils import check_det_dataset

    checked = check_det_dataset(str(path))
    assert checked["nc"] == 4 and checked["names"][3] == "vehicle"


def test_deterministic_per_frame_and_seed(tmp_path):
    a = make_synthetic_thermal(tmp_path / "a", n_train=8, n_val=2, seed=3).parent
    b = make_synthetic_thermal(tmp_path / "b", n_train=12, n_val=2, seed=3).parent
    c = make_synthetic_thermal(tmp_path / "c", n_train=8, n_val=2, seed=4).parent
    la, lb = labels_of(a, "train"), labels_of(b, "train")
    assert all(lb[k] == v for k, v in la.items()), "more frames must not change earlier frames"
    ia = cv2.imread(str(a / "images/train/thermal_train_000002.jpg"), 0)
    ib = cv2.imread(str(b / "images/train/thermal_train_000002.jpg"), 0)
    assert np.array_equal(ia, ib)
    assert la != labels_of(c, "train")


def test_objects_are_warmer_than_their_surroundings_and_some_frames_are_empty(tmp_path):
    root = make_synthetic_thermal(tmp_path / "d", n_train=60, n_val=1, seed=0).parent
    warmer = empty = boxes = 0
    for lbl in sorted((root / "labels" / "train").glob("*.txt")):
        lines = lbl.read_text().splitlines()
        empty += not lines
        img = cv2.imread(str(root / "images" / "train" / (lbl.stem + ".jpg")), 0).astype(float)
        H, W = img.shape
        for line in lines:
            _, x, y, w, h = map(float, line.split())
            x0, x1, y0, y1 = int((x - w / 2) * W), int((x + w / 2) * W), int((y - h / 2) * H), int((y + h / 2) * H)
            inside = img[y0:y1, x0:x1].max()
            ring = np.concatenate([img[max(y0 - 6, 0):y0, x0:x1].ravel(), img[y1:y1 + 6, x0:x1].ravel()])
            if ring.size:
                boxes += 1
                warmer += inside > ring.mean() + 15
    assert empty > 0
    assert boxes > 50 and warmer / boxes > 0.9


def test_same_call_is_idempotent_and_other_content_is_protected(tmp_path):
    path = make_synthetic_thermal(tmp_path / "d", n_train=4, n_val=2)
    stamp = path.stat().st_mtime_ns
    assert make_synthetic_thermal(tmp_path / "d", n_train=4, n_val=2) == path and path.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_synthetic_thermal(tmp_path / "d", n_train=5, n_val=2)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    make_synthetic_thermal(tmp_path / "mine", n_train=2, n_val=1, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("kw, name", [(dict(n_train=0), "n_train"), (dict(n_val=-1), "n_val"), (dict(size=(32, 288)), "size"), (dict(max_objects=-1), "max_objects")])
def test_bad_arguments_name_the_argument(tmp_path, kw, name):
    with pytest.raises(ValueError, match=name):
        make_synthetic_thermal(tmp_path / "d", **kw)
