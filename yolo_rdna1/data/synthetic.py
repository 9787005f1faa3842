"""A synthetic thermal dataset in YOLO layout, for the demo, the tests and the notebooks.

LTDV2 (Long-term Thermal Drift v2, the dataset this project is for) is about a million grey
384x288 thermal frames of a harbour with people, bicycles, motorcycles and vehicles. Its size
keeps it out of CI and out of a first demo, so this module draws look-alikes that
exercise the same code paths (single-channel JPEGs, small warm objects, LTDV2's class ids):

* a cool scene: a cold sky with a skyline, water with horizontal ripples and a warmer quay,
  slow blotches, the camera's fixed-pattern stripes and vignetting (shared by every frame of a
  seed, as on a real sensor), per-pixel noise and a per-frame gain/offset drift;
* warm objects standing on the quay, larger nearer the camera, with blurred edges and hot parts
  (heads, engines, tyres), drawn from cv2 primitives on small canvases. The box of an object is
  the extent of its drawn shape inside the frame, so boxes are tight, and objects that leave the
  frame are truncated the way annotators box them.

Every frame depends only on ``(seed, split, index)`` (and the frame size), so the same call
writes the same labels and pixels, and adding frames never changes earlier ones. Drawing is
vectorised numpy/cv2 on small per-object canvases: 300 frames at 384x288 take about 0.9 s of
CPU (1.3-2.4 s wall on a busy 2-core machine), mostly noise, blotch upsampling and JPEG encoding,
so tests and the demo can make their data on the fly instead of shipping it.

Only numpy, cv2, yaml and the standard library are imported: the generator must work before
(and without) torch or Ultralytics being importable.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import yaml

from ..files import atomic_write

LOGGER = logging.getLogger(__name__)

#: LTDV2's classes, in its id order (a model trained here keeps its ids on the real data).
CLASS_NAMES: tuple[str, ...] = ("person", "bicycle", "motorcycle", "vehicle")

# Roughly LTDV2's mix: people dominate, then vehicles; two-wheelers are rare.
_CLASS_P = np.array([0.5, 0.15, 0.1, 0.25])
_EMPTY_P = 0.1  # share of frames with no object at all: background-only frames must go through YOLO too
_SPLITS = ("train", "val")
_SPLIT_IDS = {"train": 0, "val": 1}
_SENSOR_TAG = 7  # entropy tag of the per-seed sensor pattern (distinct from the split ids)
_MARKER = ".synthetic.json"
_GENERATOR = "yolo_rdna1.data.synthetic"
_VERSION = 2  # bump when the drawing changes, so an old folder is not taken for the new output
_MIN_SIZE, _MAX_SIZE = 64, 4096
_PAD = 4  # canvas margin around a shape, room for the blur to spill into
_REF_W, _REF_H = 384, 288  # object sizes below are in pixels of an LTDV2 frame


def _stem(split: str, index: int) -> str:
    return f"thermal_{split}_{index:06d}"


_OUR_FILE = re.compile(r"thermal_(train|val)_\d{6}\.(jpg|txt)")


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def _rounded_rect(canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float, r: float, value: float) -> None:
    """Filled rectangle with round corners (cv2 has none); coordinates in canvas pixels."""
    r = max(0, min(int(round(r)), int((x1 - x0) / 2), int((y1 - y0) / 2)))
    a, b, c, d = (int(round(v)) for v in (x0, y0, x1, y1))
    cv2.rectangle(canvas, (a + r, b), (c - r, d), value, -1)
    cv2.rectangle(canvas, (a, b + r), (c, d - r), value, -1)
    if r:
        for cx, cy in ((a + r, b + r), (c - r, b + r), (a + r, d - r), (c - r, d - r)):
            cv2.circle(canvas, (cx, cy), r, value, -1)


def _person(c: np.ndarray, W: float, H: float, rng: np.random.Generator) -> None:
    """Walking figure: torso ellipse, two legs, hotter head (faces are the warmest skin)."""
    warm = rng.uniform(35, 80)
    t = max(1, int(round(W * 0.26)))  # leg thickness
    hip_y = 0.52 * H
    for hip_x, foot_x in ((0.4 * W, rng.uniform(0.12, 0.4) * W), (0.6 * W, rng.uniform(0.6, 0.88) * W)):
        cv2.line(c, _pt(hip_x, hip_y), _pt(foot_x, H - 1 - t / 2), warm * 0.85, t)
    cv2.ellipse(c, _pt(W / 2, 0.37 * H), _pt(max(W / 2 - 0.5, 1), 0.2 * H), 0, 0, 360, warm, -1)
    r = max(1.0, min(0.1 * H, 0.32 * W))
    cv2.circle(c, _pt(W / 2, r), int(round(r)), warm + rng.uniform(5, 20), -1)


def _wheels(c: np.ndarray, W: float, H: float, r: float, thick: int, value: float) -> tuple[tuple[int, int], ...]:
    hubs = (_pt(r, H - 1 - r), _pt(W - 1 - r, H - 1 - r))
    for hub in hubs:
        cv2.circle(c, hub, max(1, int(round(r - thick / 2))), value, thick)
    return hubs


def _bicycle(c: np.ndarray, W: float, H: float, rng: np.random.Generator) -> None:
    """Two thin rings and a thin frame; only modestly warm (metal and rubber, no engine)."""
    warm = rng.uniform(18, 35)
    r = 0.22 * W
    t = max(1, int(round(W / 30)))
    rear, front = _wheels(c, W, H, r, max(1, int(round(r * 0.18))), warm * 0.8)
    crank, seat, head = _pt(0.47 * W, rear[1]), _pt(0.38 * W, 0.22 * H), _pt(0.7 * W, 0.2 * H)
    for p, q in ((rear, seat), (rear, crank), (crank, seat), (seat, head), (crank, head), (head, front)):
        cv2.line(c, p, q, warm, t)
    cv2.line(c, head, _pt(0.74 * W, 0), warm, t)  # stem and handlebar
    cv2.line(c, _pt(0.32 * W, 0.18 * H), _pt(0.44 * W, 0.18 * H), warm, t)  # saddle


def _motorcycle(c: np.ndarray, W: float, H: float, rng: np.random.Generator) -> None:
    """Two thick tyres, tank and seat, and a hot engine and exhaust between the wheels."""
    warm = rng.uniform(30, 55)
    r = 0.2 * W
    rear, front = _wheels(c, W, H, r, max(2, int(round(r * 0.35))), warm)
    t = max(1, int(round(W / 22)))
    cv2.ellipse(c, _pt(0.5 * W, 0.42 * H), _pt(0.24 * W, 0.13 * H), 0, 0, 360, warm * 0.8, -1)  # tank + seat
    cv2.line(c, front, _pt(0.78 * W, 0.05 * H), warm * 0.8, t)  # fork
    cv2.line(c, _pt(0.72 * W, 0.05 * H), _pt(0.86 * W, 0.02 * H), warm * 0.8, t)  # handlebar
    cv2.line(c, rear, _pt(0.45 * W, 0.5 * H), warm * 0.9, t)  # swing arm
    cv2.ellipse(c, _pt(0.5 * W, 0.66 * H), _pt(0.13 * W, 0.17 * H), 0, 0, 360, warm * rng.uniform(1.4, 1.8), -1)
    cv2.line(c, _pt(0.5 * W, 0.8 * H), _pt(0.1 * W, 0.75 * H), warm * 1.5, max(1, t))  # exhaust


def _vehicle(c: np.ndarray, W: float, H: float, rng: np.random.Generator) -> None:
    """Side view: rounded body and cabin, cold windows, hot tyres and an engine at the front."""
    body = rng.uniform(15, 35)
    _rounded_rect(c, 0, 0.36 * H, W - 1, 0.86 * H, 0.12 * H, body)
    front_right = bool(rng.random() < 0.5)
    cab0, cab1 = (0.12 * W, 0.7 * W) if front_right else (0.3 * W, 0.88 * W)
    _rounded_rect(c, cab0, 0, cab1, 0.5 * H, 0.18 * H, body)
    _rounded_rect(
        c, cab0 + 0.05 * W, 0.08 * H, cab1 - 0.05 * W, 0.34 * H, 0.05 * H, body * 0.35
    )  # glass mirrors the sky
    r = 0.17 * H
    tyre = rng.uniform(40, 70)
    for x in (0.2 * W, 0.8 * W):
        cv2.circle(c, _pt(x, H - 1 - r), max(1, int(round(r))), tyre, -1)
    ex = 0.9 * W if front_right else 0.1 * W
    cv2.ellipse(c, _pt(ex, 0.6 * H), _pt(0.08 * W, 0.16 * H), 0, 0, 360, rng.uniform(55, 95), -1)  # engine
    cv2.circle(c, _pt(W - ex, 0.8 * H), max(1, int(round(0.05 * H))), rng.uniform(50, 80), -1)  # exhaust


# cls -> (drawer, nominal width and height-to-width range at scale 1, in LTDV2 pixels).
# Scales run from about 0.33 (far quay edge) to 1.76 (at the camera): a person (given by its
# height) is then about 17-90 px tall and 5-38 px wide, a vehicle up to 150 px wide.
_SHAPES: dict[int, tuple[Callable[..., None], float, tuple[float, float]]] = {
    0: (_person, 51.0, (0.26, 0.42)),  # (height, width/height range)
    1: (_bicycle, 48.0, (0.55, 0.65)),  # (width, height/width range)
    2: (_motorcycle, 62.0, (0.5, 0.6)),
    3: (_vehicle, 85.0, (0.38, 0.5)),
}


def _object(
    cls: int, rng: np.random.Generator, scale: float, w: int, h: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one object on its own padded canvas: (heat, blurred coverage, sharp mask)."""
    draw, nominal, (lo, hi) = _SHAPES[cls]
    ratio = rng.uniform(lo, hi)
    if cls == 0:
        H = nominal * scale
        W = H * ratio
    else:
        W = nominal * scale
        H = W * ratio
    fit = min(1.0, 0.9 * w / W, 0.9 * h / H)  # never larger than the frame
    W, H = max(4.0, W * fit), max(4.0, H * fit)
    cw, ch = int(math.ceil(W)) + 2 * _PAD, int(math.ceil(H)) + 2 * _PAD
    heat = np.zeros((ch, cw), np.float32)
    draw(heat[_PAD:-_PAD, _PAD:-_PAD], W, H, rng)
    mask = heat > 0
    sigma = rng.uniform(0.7, 1.3)  # thermal optics and the bolometer smear every edge
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    heat = cv2.GaussianBlur(heat, (0, 0), sigma)
    return heat, alpha, mask


def _sensor(seed: int, w: int, h: int) -> np.ndarray:
    """Per-seed fixed pattern: faint row/column stripes and vignetting (the same in every frame)."""
    rng = np.random.default_rng([seed, _SENSOR_TAG, w * _MAX_SIZE + h])
    rows = rng.normal(0.0, 0.9, (h, 1)).astype(np.float32)
    cols = rng.normal(0.0, 0.5, (1, w)).astype(np.float32)
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    return rows + cols - rng.uniform(4.0, 9.0) * (xx * xx + yy * yy) / 2


def _background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, float]:
    """Cool harbour scene without noise: (image, row of the quay's far edge).

    Sky is coldest, then water, then the quay, which is warmest nearest the camera.
    """
    y = np.arange(h, dtype=np.float32)
    horizon = h * rng.uniform(0.22, 0.4)
    shore = horizon + (h - horizon) * rng.uniform(0.2, 0.45)
    sky0, sky1 = rng.uniform(25, 45), rng.uniform(50, 68)  # sky warms towards the horizon
    water = rng.uniform(55, 78)
    ground0 = rng.uniform(68, 92)
    ground1 = ground0 + rng.uniform(5, 25)
    profile = np.where(
        y < horizon,
        sky0 + (sky1 - sky0) * (y / horizon) ** 2,
        np.where(
            y < shore,
            water + 3.0 * np.sin(y * rng.uniform(0.4, 0.9)),
            ground0 + (ground1 - ground0) * (y - shore) / (h - shore),
        ),
    )
    kernel = np.exp(-0.5 * (np.arange(-4, 5) / 1.5) ** 2)
    profile = np.convolve(np.pad(profile, 4, mode="edge"), kernel / kernel.sum(), mode="valid").astype(np.float32)
    img = np.repeat(profile[:, None], w, axis=1)

    # Skyline (warehouses, cranes) a little warmer than the sky, and the quay wall at the shore.
    for _ in range(int(rng.integers(2, 8))):
        bw, bh = w * rng.uniform(0.03, 0.18), h * rng.uniform(0.02, 0.12)
        bx = rng.uniform(0, w - bw)
        cv2.rectangle(img, _pt(bx, horizon - bh), _pt(bx + bw, horizon), float(sky1 + rng.uniform(3, 18)), -1)
    cv2.line(img, _pt(0, shore), _pt(w - 1, shore), float(ground0 + rng.uniform(4, 12)), 2)

    # Slow blotches everywhere, horizontal streaks on the water.
    small = rng.normal(0.0, 4.0, (h // 24 + 2, w // 24 + 2)).astype(np.float32)
    img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    r0, r1 = int(horizon), int(shore)
    if r1 > r0:
        streaks = rng.normal(0.0, 3.0, (max(2, (r1 - r0) // 3), w // 48 + 2)).astype(np.float32)
        img[r0:r1] += cv2.resize(streaks, (w, r1 - r0), interpolation=cv2.INTER_LINEAR)
    return img, float(shore)


def _noise(rng: np.random.Generator, w: int, h: int, sigma: float) -> np.ndarray:
    """Per-pixel sensor noise, zero-mean with deviation ``sigma``.

    A sum of four uniform bytes (Irwin-Hall, indistinguishable from Gaussian at 8 bits) costs
    about half of ``standard_normal``, which would be the largest single cost of a frame.
    """
    u = np.frombuffer(rng.bytes(4 * h * w), np.uint8).reshape(4, h, w)
    noise = u[0].astype(np.float32)
    noise += u[1]
    noise += u[2]
    noise += u[3]
    noise -= 510.0  # 4 x 127.5
    noise *= sigma / 147.8  # sd of the sum: sqrt(4 * (256**2 - 1) / 12)
    return noise


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _frame(
    seed: int, split: str, index: int, w: int, h: int, max_objects: int, sensor: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """One grey frame and its YOLO label lines; depends only on (seed, split, index, size)."""
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    img, shore = _background(rng, w, h)
    k = min(w / _REF_W, h / _REF_H)  # object sizes follow the frame size
    n = 0 if max_objects == 0 or rng.random() < _EMPTY_P else int(rng.integers(1, max_objects + 1))
    boxes: list[tuple[int, tuple[int, int, int, int]]] = []
    for _ in range(4 * n):
        if len(boxes) == n:
            break
        cls = int(rng.choice(len(CLASS_NAMES), p=_CLASS_P))
        foot = rng.uniform(shore - 0.02 * h, h)  # objects stand on the quay, none on the water
        depth = max(0.0, (foot - shore) / (h - shore))  # 0 at the far quay edge, 1 at the camera
        heat, alpha, mask = _object(cls, rng, (0.36 + 1.24 * depth) * rng.uniform(0.9, 1.1) * k, w, h)
        ch, cw = mask.shape
        ow, oh = cw - 2 * _PAD, ch - 2 * _PAD
        if rng.random() < 0.12:  # leaving the frame at a side or at the bottom
            x0 = int(rng.integers(-ow // 2, w - ow // 2 + 1))
            y_foot = int(round(foot + (rng.uniform(0, 0.4 * oh) if rng.random() < 0.3 else 0)))
        else:
            x0 = int(rng.integers(0, max(1, w - ow + 1)))
            y_foot = min(int(round(foot)), h)
        fx, fy = x0 - _PAD, y_foot - oh - _PAD  # canvas origin in frame pixels
        ix0, iy0, ix1, iy1 = max(fx, 0), max(fy, 0), min(fx + cw, w), min(fy + ch, h)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        sub = (slice(iy0 - fy, iy1 - fy), slice(ix0 - fx, ix1 - fx))
        vis = mask[sub]
        cols, rows = np.flatnonzero(vis.any(0)), np.flatnonzero(vis.any(1))
        if cols.size < 3 or rows.size < 3 or vis.sum() < 0.3 * mask.sum():
            continue  # mostly outside the frame: an annotator would not box it
        box = (ix0 + int(cols[0]), iy0 + int(rows[0]), ix0 + int(cols[-1]) + 1, iy0 + int(rows[-1]) + 1)
        if any(_iou(box, other) > 0.35 for _, other in boxes):
            continue  # heavy overlap makes ambiguous labels
        region = img[iy0:iy1, ix0:ix1]
        level = float(region.mean())  # objects are warm relative to where they stand
        a = alpha[sub]
        region *= 1.0 - a
        region += level * a + heat[sub]
        boxes.append((cls, box))

    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)  # the long-term drift LTDV2 is about
    img *= gain
    img += sensor + offset
    img += _noise(rng, w, h, rng.uniform(1.5, 3.5))
    labels = [
        f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
        for cls, (x0, y0, x1, y1) in boxes
    ]
    return np.clip(img, 0, 255).astype(np.uint8), labels


# --------------------------------------------------------------------------------------------
# Folder handling
# --------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}") from None
    if number < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return number


def _check_size(size: Any) -> tuple[int, int]:
    message = f"size must be (width, height) with both integers in {_MIN_SIZE}..{_MAX_SIZE} px, got {size!r}"
    try:
        w, h = (operator.index(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if isinstance(size, (str, bytes)) or not (_MIN_SIZE <= w <= _MAX_SIZE and _MIN_SIZE <= h <= _MAX_SIZE):
        raise ValueError(message)
    return w, h


def _read_marker(root: Path) -> dict[str, Any] | None:
    """Our marker's content, or None where there is none (or it is not ours / not readable)."""
    try:
        state = json.loads((root / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _yaml_text(root: Path) -> str:
    cfg = {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASS_NAMES))}
    return yaml.safe_dump(cfg, sort_keys=False)


def _yaml_is_ours(path: Path) -> bool:
    """A data.yaml equal to the one we write up to ``path`` (losing it loses nothing)."""
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(cfg, dict) and {k: v for k, v in cfg.items() if k != "path"} == {
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }


def _complete(root: Path, counts: dict[str, int]) -> bool:
    """Every frame and label of the recorded dataset is still there (cheap: names only)."""
    for split, count in counts.items():
        for kind in ("images", "labels"):
            d = root / kind / split
            if not d.is_dir() or sum(1 for p in d.iterdir() if _OUR_FILE.fullmatch(p.name)) != count:
                return False
    return True


def _foreign_files(root: Path) -> list[Path]:
    """Files in our split folders that we did not write: they would join the dataset."""
    found = []
    for kind in ("images", "labels"):
        for split in _SPLITS:
            d = root / kind / split
            if d.is_dir():
                found += [p for p in sorted(d.iterdir()) if not _OUR_FILE.fullmatch(p.name)]
    return found


def _update_moved_yaml(root: Path, yaml_path: Path) -> None:
    """Point a complete dataset's data.yaml at ``root`` again where the folder was moved (or the
    file is unreadable): Ultralytics resolves the splits from its absolute ``path``."""
    try:
        recorded = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError:
        recorded = None
    if not isinstance(recorded, dict) or recorded.get("path") != str(root):
        LOGGER.info("synthetic dataset %s was moved; updating the path in its data.yaml", root)
        atomic_write(yaml_path, _yaml_text(root))


def _check_may_write(root: Path, yaml_path: Path, state: dict[str, Any] | None, same: bool, overwrite: bool) -> None:
    """Raise FileExistsError unless writing the dataset into ``root`` loses nothing of anyone else's.

    ``root`` does not hold this exact, complete dataset. Without ``overwrite`` it may be written
    only if it is empty or holds our own unfinished or damaged copy of it; with ``overwrite``,
    still never where a split folder or the data.yaml holds files this generator did not write.
    """
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory; choose another root")
    if root.exists() and any(root.iterdir()) and not same and not overwrite:
        what = "a synthetic dataset with other parameters" if state is not None else "other files"
        raise FileExistsError(
            f"{root} already holds {what}; pass overwrite=True to write the synthetic dataset there "
            "(only files this generator wrote are replaced), or choose another root"
        )
    foreign = _foreign_files(root) if root.exists() else []
    if foreign or (yaml_path.exists() and state is None and not _yaml_is_ours(yaml_path)):
        example = foreign[0] if foreign else yaml_path
        raise FileExistsError(
            f"{root} holds files this generator did not write (e.g. {example}); they would be "
            "mixed into or replaced by the synthetic dataset, even with overwrite=True: choose another root"
        )


def _write_split(root: Path, split: str, count: int, draw: Callable[[str, int], tuple[np.ndarray, list[str]]]) -> int:
    """Write frames ``0..count-1`` of ``split`` and their labels; return how many objects they hold.

    Our frames beyond ``count`` (of a larger dataset of ours in the same folder) are removed so
    they do not join this one, and so is Ultralytics' label cache of the split.
    """
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    n_objects = 0
    wanted = set()
    for i in range(count):
        img, labels = draw(split, i)
        n_objects += len(labels)
        stem = _stem(split, i)
        wanted.update((f"{stem}.jpg", f"{stem}.txt"))
        if not cv2.imwrite(str(img_dir / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError(f"cv2.imwrite could not write {img_dir / f'{stem}.jpg'}")
        (lbl_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in labels))
    for d in (img_dir, lbl_dir):  # frames of an earlier, larger dataset of ours
        for p in d.iterdir():
            if _OUR_FILE.fullmatch(p.name) and p.name not in wanted:
                p.unlink()
    # Ultralytics' label cache of this split describes our files only (foreign ones were refused
    # before writing); a stale one could survive its size-based hash check, so it goes.
    (root / "labels" / f"{split}.cache").unlink(missing_ok=True)
    return n_objects


def make_synthetic_thermal(
    root: str | os.PathLike,
    n_train: int = 64,
    n_val: int = 16,
    seed: int = 0,
    size: tuple[int, int] = (384, 288),
    max_objects: int = 6,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic LTDV2-like thermal dataset under ``root``; return its ``data.yaml`` path.

    Layout: ``images/{train,val}/*.jpg`` (single-channel 8-bit JPEGs, ``size`` = (width, height),
    LTDV2's 384x288 by default), ``labels/{train,val}/*.txt`` (YOLO ``cls cx cy w h``, normalised,
    an empty file for a frame without objects, about 10% of them), and ``data.yaml`` with the
    absolute ``path`` and LTDV2's four class names, ready for ``YOLO.train(data=...)``.

    The call is cheap to repeat: the parameters are recorded in ``root/.synthetic.json`` and a
    folder that already holds this exact dataset is returned untouched (a moved folder only gets
    its ``data.yaml`` path updated; missing frames are redrawn). Anything else in ``root`` (other
    parameters, other files) is a ``FileExistsError`` unless ``overwrite=True``, and even then
    only files this generator wrote are replaced or removed: a folder whose image/label split
    folders hold files of another dataset, or whose data.yaml is someone else's, is refused,
    since writing there would silently mix or destroy data.

    Raises ValueError for ``n_train``/``n_val`` < 1, ``max_objects`` < 0, ``seed`` < 0 or a
    ``size`` outside 64..4096 px, before anything is written.
    """
    n_train = _check_int("n_train", n_train, 1)
    n_val = _check_int("n_val", n_val, 1)
    max_objects = _check_int("max_objects", max_objects, 0)
    seed = _check_int("seed", seed, 0)
    w, h = _check_size(size)

    root = Path(root).expanduser().resolve()
    yaml_path = root / "data.yaml"
    marker_path = root / _MARKER
    params = {"n_train": n_train, "n_val": n_val, "seed": seed, "size": [w, h], "max_objects": max_objects}
    counts = {"train": n_train, "val": n_val}
    state = _read_marker(root)
    same = (
        state is not None
        and state.get("generator") == _GENERATOR
        and state.get("version") == _VERSION
        and state.get("params") == params
    )

    if same and state.get("complete") and yaml_path.is_file() and _complete(root, counts):
        _update_moved_yaml(root, yaml_path)
        return yaml_path
    _check_may_write(root, yaml_path, state, same, overwrite)

    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    marker = {"generator": _GENERATOR, "version": _VERSION, "params": params, "complete": False}
    atomic_write(marker_path, json.dumps(marker, indent=1))  # claims the folder before the first frame
    sensor = _sensor(seed, w, h)

    def draw(split: str, index: int) -> tuple[np.ndarray, list[str]]:
        return _frame(seed, split, index, w, h, max_objects, sensor)

    n_objects = sum(_write_split(root, split, count, draw) for split, count in counts.items())
    atomic_write(yaml_path, _yaml_text(root))
    atomic_write(marker_path, json.dumps({**marker, "complete": True}, indent=1))
    LOGGER.info(
        "wrote synthetic thermal dataset %s: %d train + %d val frames, %d objects, %dx%d, %.1fs",
        root,
        n_train,
        n_val,
        n_objects,
        w,
        h,
        time.perf_counter() - start,
    )
    return yaml_path
