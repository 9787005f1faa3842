"""The synthetic thermal dataset: YOLO layout, valid tight labels, deterministic, thermal-looking, safe."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Ultralytics reads these at import time; tests/conftest.py sets them too, this keeps the module
# safe to run on its own (no network, no pip, no writes to the user's settings).
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo_rdna1_synthetic_cfg_"))

from yolo_rdna1.data import CLASS_NAMES, make_synthetic_thermal  # noqa: E402

LINE = re.compile(r"[0-3] (\d\.\d{6}) (\d\.\d{6}) (\d\.\d{6}) (\d\.\d{6})")


def files(root: Path, kind: str, split: str) -> dict[str, bytes]:
    ext = "jpg" if kind == "images" else "txt"
    return {p.name: p.read_bytes() for p in sorted((root / kind / split).glob(f"*.{ext}"))}


def boxes(label: Path, W: int, H: int) -> list[tuple[int, int, int, int, int]]:
    """(cls, x0, y0, x1, y1) in pixels."""
    out = []
    for line in label.read_text().splitlines():
        c, x, y, w, h = map(float, line.split())
        out.append(
            (int(c), round((x - w / 2) * W), round((y - h / 2) * H), round((x + w / 2) * W), round((y + h / 2) * H))
        )
    return out


@pytest.fixture(scope="module")
def sixty(tmp_path_factory) -> Path:
    """60 training frames at LTDV2's size, shared by the content tests."""
    return make_synthetic_thermal(tmp_path_factory.mktemp("sixty") / "d", n_train=60, n_val=2, seed=0).parent


def test_layout_counts_yaml_and_grey_frames(tmp_path):
    path = make_synthetic_thermal(tmp_path / "d", n_train=7, n_val=3, seed=1)
    root = (tmp_path / "d").resolve()
    assert path == root / "data.yaml"
    for split, n in (("train", 7), ("val", 3)):
        images, labels = files(root, "images", split), files(root, "labels", split)
        assert len(images) == n and len(labels) == n
        assert {Path(k).stem for k in images} == {Path(k).stem for k in labels}
    cfg = yaml.safe_load(path.read_text())
    assert cfg == {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }
    assert CLASS_NAMES == ("person", "bicycle", "motorcycle", "vehicle")
    for p in (root / "images" / "val").glob("*.jpg"):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.shape == (288, 384) and img.dtype == np.uint8  # single channel, LTDV2's 384x288
    small = make_synthetic_thermal(tmp_path / "s", n_train=1, n_val=1, size=(160, 96)).parent
    assert cv2.imread(str(next((small / "images" / "train").glob("*.jpg"))), cv2.IMREAD_UNCHANGED).shape == (96, 160)


def test_labels_are_yolo_lines_inside_the_frame(sixty):
    per_class = dict.fromkeys(range(4), 0)
    for label in sorted((sixty / "labels" / "train").glob("*.txt")):
        text = label.read_text()
        assert text == "" or text.endswith("\n")
        lines = text.splitlines()
        assert len(lines) <= 6  # max_objects
        for line in lines:
            assert LINE.fullmatch(line), line
            c, x, y, w, h = map(float, line.split())
            per_class[int(c)] += 1
            assert 0 < w <= 1 and 0 < h <= 1
            assert x - w / 2 >= -1e-6 and x + w / 2 <= 1 + 1e-6 and y - h / 2 >= -1e-6 and y + h / 2 <= 1 + 1e-6
            assert w * 384 >= 2.99 and h * 288 >= 2.99  # no degenerate boxes
    assert all(per_class.values()), per_class  # every class appears in 60 frames
    assert per_class[0] == max(per_class.values())  # people dominate, as in LTDV2


def test_same_seed_same_bytes_more_frames_keep_earlier_ones_other_seed_differs(tmp_path):
    a = make_synthetic_thermal(tmp_path / "a", n_train=6, n_val=2, seed=3).parent
    b = make_synthetic_thermal(tmp_path / "b", n_train=9, n_val=2, seed=3).parent
    c = make_synthetic_thermal(tmp_path / "c", n_train=6, n_val=2, seed=4).parent
    for kind in ("images", "labels"):
        for split in ("train", "val"):
            fa, fb = files(a, kind, split), files(b, kind, split)
            assert all(fb[k] == v for k, v in fa.items()), f"{kind}/{split} changed with n_train"
    ia = cv2.imread(str(a / "images/train/thermal_train_000002.jpg"), 0)
    ib = cv2.imread(str(b / "images/train/thermal_train_000002.jpg"), 0)
    assert np.array_equal(ia, ib)
    assert files(a, "labels", "train") != files(c, "labels", "train")
    assert not np.array_equal(ia, cv2.imread(str(c / "images/train/thermal_train_000002.jpg"), 0))


def sides(x0: int, y0: int, x1: int, y1: int, d0: int, d1: int) -> list[tuple[slice, slice]]:
    """The four strips from d0 to d1 px outside the box (negative: inside), as (rows, cols)."""
    return [
        (slice(y0, y1), slice(x0 - d1, x0 - d0)),
        (slice(y0, y1), slice(x1 + d0, x1 + d1)),
        (slice(y0 - d1, y0 - d0), slice(x0, x1)),
        (slice(y1 + d0, y1 + d1), slice(x0, x1)),
    ]


def test_objects_are_warm_and_their_boxes_are_tight(sixty):
    diffs, warm, tight, n = [], 0, 0, 0
    for label in sorted((sixty / "labels" / "train").glob("*.txt")):
        img = cv2.imread(str(sixty / "images" / "train" / f"{label.stem}.jpg"), 0).astype(np.float32)
        smooth = cv2.GaussianBlur(img, (3, 3), 0)  # tames the sensor noise for the edge test
        H, W = img.shape
        bxs = boxes(label, W, H)
        for i, (_, x0, y0, x1, y1) in enumerate(bxs):
            others = np.zeros((H, W), bool)  # other objects and their blur
            for j, (_, a0, b0, a1, b1) in enumerate(bxs):
                if j != i:
                    others[max(b0 - 4, 0) : b1 + 4, max(a0 - 4, 0) : a1 + 4] = True
            # local background: an 8 px frame around the box, minus every object
            ring = np.zeros((H, W), bool)
            ring[max(y0 - 8, 0) : y1 + 8, max(x0 - 8, 0) : x1 + 8] = True
            ring[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3] = False
            ring &= ~others
            if ring.sum() < 30:
                continue
            n += 1
            bg, inside = float(np.median(img[ring])), img[y0:y1, x0:x1]
            diffs.append(inside.mean() - bg)
            warm += float(np.percentile(inside, 95)) - bg > 10
            # Tight, on every side: the 2 px just inside the box hold something warmer than anything
            # 3-6 px outside it (else the side is loose), and are warmer on average than the 2 px
            # just outside it (else the side cuts the object). Sides on the frame edge and sides
            # hidden by other objects are not judged.
            ok = True
            strips = zip(sides(x0, y0, x1, y1, -2, 0), sides(x0, y0, x1, y1, 0, 2), sides(x0, y0, x1, y1, 3, 6))
            for (ri, ci), (rn, cn), (rf, cf) in strips:
                if rf.start < 0 or cf.start < 0 or rf.stop > H or cf.stop > W:
                    continue
                near, far = smooth[rn, cn][~others[rn, cn]], smooth[rf, cf][~others[rf, cf]]
                if near.size >= 5 and far.size >= 5:
                    ok &= smooth[ri, ci].max() > far.max() and smooth[ri, ci].mean() > near.mean()
            tight += ok
    assert n > 100
    assert np.mean(diffs) > 8 and warm / n > 0.95, (np.mean(diffs), warm / n)
    assert tight / n > 0.9, tight / n


def test_some_frames_are_empty_and_scene_is_cold_sky_warm_quay(sixty):
    labels = sorted((sixty / "labels" / "train").glob("*.txt"))
    empty = sum(not p.read_text() for p in labels)
    assert 0 < empty <= 0.25 * len(labels)
    means = np.stack([cv2.imread(str(p), 0).mean(1) for p in sorted((sixty / "images" / "train").glob("*.jpg"))])
    rows = means.mean(0)
    assert rows[:40].mean() + 15 < rows[-60:].mean()  # cold sky on top, warmer ground at the bottom
    img = cv2.imread(str(sixty / "images" / "train" / "thermal_train_000000.jpg"), 0).astype(np.float32)
    assert 0.5 < np.std(img - cv2.GaussianBlur(img, (5, 5), 0)) < 6  # sensor noise, not clean rendering


def test_ultralytics_accepts_the_dataset(tmp_path):
    path = make_synthetic_thermal(tmp_path / "d", n_train=8, n_val=4)
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    checked = check_det_dataset(str(path))
    assert checked["nc"] == 4
    assert checked["names"] == dict(enumerate(CLASS_NAMES))
    assert Path(checked["train"]).is_dir() and Path(checked["val"]) == (tmp_path / "d" / "images" / "val").resolve()
    # Ultralytics' own per-file check (the one its label cache runs): images readable, labels sane.
    n_boxes = 0
    for im in sorted((tmp_path / "d" / "images").glob("*/*.jpg")):
        lb = tmp_path / "d" / "labels" / im.parent.name / f"{im.stem}.txt"
        result = verify_image_label((str(im), str(lb), "", False, 4, 0, 0, False))
        _, labels, shape, _, _, nm, nf, ne, nc, msg = result
        assert (nm, nf, nc, msg) == (0, 1, 0, ""), msg
        assert tuple(shape) == (288, 384) and len(labels) == len(lb.read_text().splitlines())
        n_boxes += len(labels)
    assert n_boxes > 0


def test_same_call_returns_without_rewriting(tmp_path):
    path = make_synthetic_thermal(tmp_path / "d", n_train=3, n_val=1)
    frame = tmp_path / "d" / "images" / "train" / "thermal_train_000001.jpg"
    stamps = (path.stat().st_mtime_ns, frame.stat().st_mtime_ns)
    assert make_synthetic_thermal(tmp_path / "d", n_train=3, n_val=1) == path
    assert (path.stat().st_mtime_ns, frame.stat().st_mtime_ns) == stamps
    state = json.loads((tmp_path / "d" / ".synthetic.json").read_text())
    assert state["complete"] and state["params"]["n_train"] == 3

    original = frame.read_bytes()
    frame.unlink()  # a damaged copy of our own dataset is redrawn, identically
    make_synthetic_thermal(tmp_path / "d", n_train=3, n_val=1)
    assert frame.read_bytes() == original

    (tmp_path / "d").rename(tmp_path / "moved")  # a moved folder gets its path fixed
    moved = make_synthetic_thermal(tmp_path / "moved", n_train=3, n_val=1)
    assert yaml.safe_load(moved.read_text())["path"] == str((tmp_path / "moved").resolve())


def test_other_parameters_or_content_need_overwrite_and_foreign_files_survive(tmp_path):
    root = tmp_path / "d"
    make_synthetic_thermal(root, n_train=5, n_val=1)
    with pytest.raises(FileExistsError, match=r"overwrite=True") as err:
        make_synthetic_thermal(root, n_train=2, n_val=1)
    assert str(root.resolve()) in str(err.value) and "another root" in str(err.value)
    assert len(files(root, "images", "train")) == 5  # nothing touched

    (root / "labels" / "train.cache").write_bytes(b"stale")
    make_synthetic_thermal(root, n_train=2, n_val=1, overwrite=True)
    assert sorted(files(root, "images", "train")) == ["thermal_train_000000.jpg", "thermal_train_000001.jpg"]
    assert len(files(root, "labels", "train")) == 2 and not (root / "labels" / "train.cache").exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_synthetic_thermal(mine, n_train=1, n_val=1)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    make_synthetic_thermal(mine, n_train=1, n_val=1, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "data.yaml").is_file()

    real = tmp_path / "real"
    (real / "images" / "train").mkdir(parents=True)
    (real / "images" / "train" / "frame_0001.jpg").write_bytes(b"not ours")
    (real / "data.yaml").write_text("names: {0: boat}\n")
    with pytest.raises(FileExistsError, match="did not write"):
        make_synthetic_thermal(real, n_train=1, n_val=1, overwrite=True)
    assert (real / "images" / "train" / "frame_0001.jpg").read_bytes() == b"not ours"
    assert (real / "data.yaml").read_text() == "names: {0: boat}\n"
    assert not (real / ".synthetic.json").exists()


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(n_train=0), r"n_train.*>= 1"),
        (dict(n_val=-2), r"n_val.*>= 1"),
        (dict(n_train=2.5), r"n_train.*integer"),
        (dict(max_objects=-1), r"max_objects.*>= 0"),
        (dict(seed=-1), r"seed.*>= 0"),
        (dict(size=(63, 288)), r"size.*64\.\.4096"),
        (dict(size=(384, 10)), r"size.*64\.\.4096"),
        (dict(size=(384,)), r"size.*\(width, height\)"),
    ],
)
def test_bad_arguments_name_the_argument_and_write_nothing(tmp_path, kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_synthetic_thermal(tmp_path / "d", **kw)
    assert not (tmp_path / "d").exists()


def test_no_objects_when_max_objects_is_zero(tmp_path):
    root = make_synthetic_thermal(tmp_path / "d", n_train=4, n_val=1, max_objects=0).parent
    assert all(v == b"" for v in files(root, "labels", "train").values())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w=st.integers(64, 260), h=st.integers(64, 200), seed=st.integers(0, 2**32), max_objects=st.integers(1, 12))
def test_any_size_gives_valid_boxes(tmp_path, w, h, seed, max_objects):
    root = make_synthetic_thermal(
        tmp_path / f"{w}x{h}_{seed}_{max_objects}", n_train=2, n_val=1, seed=seed, size=(w, h), max_objects=max_objects
    ).parent
    for split in ("train", "val"):
        for label in (root / "labels" / split).glob("*.txt"):
            lines = label.read_text().splitlines()
            assert len(lines) <= max_objects
            for c, x0, y0, x1, y1 in boxes(label, w, h):
                assert c in range(4) and 0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h and x1 - x0 >= 3 and y1 - y0 >= 3
