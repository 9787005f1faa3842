"""A synthetic thermal dataset in YOLO layout, for the demo, the tests and the notebooks.

LTDV2 (the dataset this project is for) is 1 M grey 384x288 thermal frames of a harbour, with
people, bicycles, motorcycles and vehicles. Its size and licence keep it out of CI, so this
module draws look-alikes: a cool, noisy background with the bands of sky, water and quay, and
warm objects shaped like the four classes, with exact boxes. Every frame depends only on
(seed, split, index), so the same call always writes the same bytes and adding frames never
changes earlier ones.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import yaml

LOGGER = logging.getLogger("yolo_rdna1")

CLASS_NAMES: tuple[str, ...] = ("person", "bicycle", "motorcycle", "vehicle")
_MARKER = ".synthetic.json"
_SPLIT_IDS = {"train": 0, "val": 1}


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Cool scene: sky / water / quay bands, slow blotches, fixed-pattern stripes, sensor noise."""
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    horizon, quay = rng.uniform(0.25, 0.4), rng.uniform(0.6, 0.75)
    base = np.where(y < horizon, 60 + 25 * y, np.where(y < quay, 70 + 10 * np.sin(y * 40), 85 + 15 * (y - quay)))
    small = rng.normal(0.0, 6.0, (h // 24 + 2, w // 24 + 2)).astype(np.float32)
    blotches = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    stripes = rng.normal(0.0, 1.5, (h, 1)).astype(np.float32)
    noise = rng.normal(0.0, 3.0, (h, w)).astype(np.float32)
    return np.broadcast_to(base, (h, w)).astype(np.float32) + blotches + stripes + noise


def _draw(cls: int, rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, int, int] | None:
    """One warm object on its own canvas: (heat patch, x0, y0) with the patch's top-left corner."""
    scale = rng.uniform(0.6, 1.4)
    if cls == 0:  # person: tall body, head
        ow, oh = int(10 * scale + 6), int(40 * scale + 20)
    elif cls == 1:  # bicycle: two rings and a thin frame
        ow, oh = int(36 * scale + 10), int(22 * scale + 8)
    elif cls == 2:  # motorcycle: two wheels and a hot engine
        ow, oh = int(40 * scale + 12), int(26 * scale + 8)
    else:  # vehicle: wide rounded body, hot engine and wheels
        ow, oh = int(90 * scale + 20), int(40 * scale + 14)
    ow, oh = min(ow, w - 2), min(oh, h - 2)
    if ow < 4 or oh < 4:
        return None
    patch = np.zeros((oh, ow), np.float32)
    warm = rng.uniform(60, 110)
    if cls == 0:
        cv2.ellipse(patch, (ow // 2, int(oh * 0.58)), (max(ow // 2 - 1, 1), int(oh * 0.4)), 0, 0, 360, warm, -1)
        cv2.circle(patch, (ow // 2, max(oh // 9, 2)), max(ow // 3, 2), warm * 1.1, -1)
    elif cls in (1, 2):
        r = max(oh // 3, 2)
        for cx in (r + 1, ow - r - 2):
            cv2.circle(patch, (cx, oh - r - 1), r, warm * 0.7, 2 if cls == 1 else 3)
        cv2.line(patch, (r + 1, oh - r - 1), (ow // 2, oh // 4), warm * 0.6, 1 if cls == 1 else 2)
        cv2.line(patch, (ow // 2, oh // 4), (ow - r - 2, oh - r - 1), warm * 0.6, 1 if cls == 1 else 2)
        cv2.ellipse(patch, (ow // 2, oh // 5 + 1), (max(ow // 8, 1), max(oh // 6, 1)), 0, 0, 360, warm, -1)  # rider
        if cls == 2:
            cv2.circle(patch, (ow // 2, oh - r), max(r // 2 + 1, 2), warm * 1.3, -1)  # engine
    else:
        cv2.rectangle(patch, (1, oh // 3), (ow - 2, oh - 4), warm * 0.55, -1)
        cv2.ellipse(patch, (ow // 2, oh // 3), (ow // 3, oh // 4), 0, 180, 360, warm * 0.5, -1)
        cv2.circle(patch, (ow // 6, oh - 5), max(oh // 7, 2), warm, -1)
        cv2.circle(patch, (5 * ow // 6, oh - 5), max(oh // 7, 2), warm, -1)
        cv2.rectangle(patch, (ow - ow // 5, oh // 3 + 2), (ow - 3, oh // 2 + 4), warm * 1.2, -1)  # engine
    patch = cv2.GaussianBlur(patch, (3, 3), 0.8)
    x0 = int(rng.integers(0, w - ow + 1))
    y0 = int(rng.integers(int(h * 0.3), h - oh + 1)) if h - oh + 1 > int(h * 0.3) else 0
    return patch, x0, y0


def _frame(seed: int, split: str, index: int, w: int, h: int, max_objects: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
    img = _background(rng, w, h)
    labels = []
    n = 0 if rng.random() < 0.12 or max_objects == 0 else int(rng.integers(1, max_objects + 1))
    for _ in range(n):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        drawn = _draw(cls, rng, w, h)
        if drawn is None:
            continue
        patch, x0, y0 = drawn
        ys, xs = np.nonzero(patch > 2.0)
        if len(xs) == 0:
            continue
        ph, pw = patch.shape
        region = img[y0:y0 + ph, x0:x0 + pw]
        np.maximum(region, region + patch, out=region)
        bx0, bx1 = x0 + xs.min(), x0 + xs.max() + 1
        by0, by1 = y0 + ys.min(), y0 + ys.max() + 1
        labels.append(f"{cls} {(bx0 + bx1) / 2 / w:.6f} {(by0 + by1) / 2 / h:.6f} {(bx1 - bx0) / w:.6f} {(by1 - by0) / h:.6f}")
    return np.clip(img, 0, 255).astype(np.uint8), labels


def make_synthetic_thermal(
    root: str | os.PathLike,
    n_train: int = 64,
    n_val: int = 16,
    seed: int = 0,
    size: tuple[int, int] = (384, 288),
    max_objects: int = 6,
    overwrite: bool = False,
) -> Path:
    """Write the dataset under ``root`` and return the path of its ``data.yaml``.

    ``size`` is (width, height), LTDV2's 384x288 by default. A folder that already holds this
    exact dataset is returned as it is; one that holds anything else is only written into with
    ``overwrite=True`` (and then only our own files are replaced).
    """
    for name, value, low in (("n_train", n_train, 1), ("n_val", n_val, 1), ("max_objects", max_objects, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if len(size) != 2 or min(size) < 64:
        raise ValueError(f"size must be (width, height) with both >= 64 px, got {size!r}")
    w, h = int(size[0]), int(size[1])
    root = Path(root).resolve()
    params = {"n_train": n_train, "n_val": n_val, "seed": seed, "size": [w, h], "max_objects": max_objects, "version": 1}
    marker = root / _MARKER
    yaml_path = root / "data.yaml"
    if marker.is_file() and yaml_path.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return yaml_path
        except json.JSONDecodeError:
            pass
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} already holds other files (another dataset or other parameters); "
            "pass overwrite=True to rewrite the synthetic dataset there, or choose another root"
        )
    for split, count in (("train", n_train), ("val", n_val)):
        img_dir, lbl_dir = root / "images" / split, root / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for old in list(img_dir.glob("thermal_*.jpg")) + list(lbl_dir.glob("thermal_*.txt")):
            old.unlink()
        for i in range(count):
            img, labels = _frame(seed, split, i, w, h, max_objects)
            stem = f"thermal_{split}_{i:06d}"
            cv2.imwrite(str(img_dir / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            (lbl_dir / f"{stem}.txt").write_text("\n".join(labels) + ("\n" if labels else ""))
    for cache in (root / "labels").glob("*.cache"):
        cache.unlink()  # Ultralytics' label cache of an older version of this folder
    yaml_path.write_text(yaml.safe_dump(
        {"path": str(root), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASS_NAMES))}, sort_keys=False
    ))
    marker.write_text(json.dumps(params))
    return yaml_path
