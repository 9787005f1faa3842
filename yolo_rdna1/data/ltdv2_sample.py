"""A tiny LTDV2 look-alike in LTDV2's own format, so conversion and drift run with no download.

It mirrors what is publicly known of the real files (the challenge's starting kit
MarcoParola/RTIOD, and public code that reads Train.json):

* ``data/{Train,Valid,TestNoLabels}.json`` in COCO style, as in the Hugging Face repository;
  ``categories`` lists a ``background`` entry first (id 0), then person, bicycle, motorcycle and
  vehicle (ids 1-4), so numbering classes by position is wrong, as it is on the real data;
* ``images[]`` entries with an integer ``id`` starting with the date (as in the challenge's
  submission templates), ``file_name`` ``frames/YYYYMMDD/clip_<n>_<hhmm>/image_<nnnn>.jpg``,
  ``width``/``height`` 384x288, ``date_captured`` (ISO 8601) and ``meta``: the weather of the
  clip under the names of LTD's metadata (Temperature, Humidity, Precipitation latest 10 min,
  Dew Point, Wind Direction, Wind Speed, Sun Radiation Intensity, Min of sunshine latest 10 min);
* ``annotations[]`` with ``bbox`` ``[x, y, w, h]`` in pixels, ``category_id``, ``area``,
  ``iscrowd`` and ``uid``; TestNoLabels has no annotations;
* frames under ``data/frames/`` (where ``unzip data/frames.zip -d data`` puts them), grey JPEGs
  drawn by :mod:`yolo_rdna1.data.synthetic`, warmer in warmer weather (the drift the dataset is
  about), months one after another from May 2020, LTDV2's first month.

Two defects real annotation files have are planted so the converter's handling is tested: boxes
that touch the frame edge reach 3 px past it (the converter clips them), and the third frame of
every labelled clip has an extra zero-width box (the converter drops and counts it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .synthetic import CLASS_NAMES, _check_int, _frame, _sensor

LOGGER = logging.getLogger(__name__)

#: COCO categories as LTDV2 lists them: background first, so a category's position is not its class.
CATEGORIES: tuple[dict[str, Any], ...] = ({"id": 0, "name": "background"},) + tuple(
    {"id": i + 1, "name": name} for i, name in enumerate(CLASS_NAMES)
)
_CATEGORY_IDS = {c["name"]: c["id"] for c in CATEGORIES}
#: The weather fields of an image's ``meta`` (LTD's metadata column names).
META_KEYS: tuple[str, ...] = (
    "Temperature",
    "Humidity",
    "Precipitation latest 10 min",
    "Dew Point",
    "Wind Direction",
    "Wind Speed",
    "Sun Radiation Intensity",
    "Min of sunshine latest 10 min",
)
SIZE = (384, 288)  # LTDV2's frame size (width, height)
_START = (2020, 5)
_MARKER = ".ltdv2_sample.json"
_GENERATOR = "yolo_rdna1.data.ltdv2_sample"
_VERSION = 1
_RNG_TAG = 11  # entropy tag of the clip schedule and weather (frames use synthetic's own streams)
_MAX_OBJECTS = 6
_OVERSHOOT = 3.0  # px an edge box reaches past the frame
# Approximate monthly mean air temperature in Aalborg, deg C.
_MONTH_TEMP = {1: 1.0, 2: 1.0, 3: 3.5, 4: 7.5, 5: 11.5, 6: 15.0, 7: 17.0, 8: 17.0, 9: 13.5, 10: 9.5, 11: 5.5, 12: 2.5}


@dataclass
class _Split:
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)


def _weather(rng: np.random.Generator, when: datetime) -> dict[str, float]:
    """Plausible weather at the start of a clip: a seasonal and daily temperature cycle, sun by day."""
    hour = when.hour + when.minute / 60
    temp = _MONTH_TEMP[when.month] + 4.0 * math.cos(2 * math.pi * (hour - 15) / 24) + rng.normal(0, 1.5)
    humidity = float(np.clip(85 - 2.5 * (temp - _MONTH_TEMP[when.month]) + rng.normal(0, 6), 35, 100))
    daylight = 12.25 + 5.25 * math.cos(2 * math.pi * (when.month - 6) / 12)  # hours: ~17.5 in June, ~7 in December
    sun = max(0.0, math.cos(math.pi * (hour - 13) / daylight)) if abs(hour - 13) < daylight / 2 else 0.0
    radiation = 850 * sun * rng.uniform(0.3, 1.0) * (daylight / 17.5)
    return {
        "Temperature": round(temp, 1),
        "Humidity": round(humidity, 1),
        "Precipitation latest 10 min": 0.0 if rng.random() < 0.8 else round(rng.uniform(0.1, 1.5), 1),
        "Dew Point": round(temp - (100 - humidity) / 5, 1),
        "Wind Direction": float(round(rng.uniform(0, 360))),
        "Wind Speed": round(float(rng.gamma(2.0, 2.0)), 1),
        "Sun Radiation Intensity": round(radiation, 1),
        "Min of sunshine latest 10 min": round(10 * sun * rng.uniform(0, 1), 1) if radiation > 0 else 0.0,
    }


def _boxes(labels: list[str], w: int, h: int) -> list[tuple[int, float, float, float, float]]:
    """Synthetic's YOLO lines back to (class, x0, y0, x1, y1) in pixels; its boxes are whole pixels."""
    out = []
    for line in labels:
        cls, cx, cy, bw, bh = line.split()
        x0, x1 = round((float(cx) - float(bw) / 2) * w), round((float(cx) + float(bw) / 2) * w)
        y0, y1 = round((float(cy) - float(bh) / 2) * h), round((float(cy) + float(bh) / 2) * h)
        out.append((int(cls), float(x0), float(y0), float(x1), float(y1)))
    return out


def _schedule(
    rng: np.random.Generator, months: int, days_per_month: int, clips_per_day: int
) -> list[tuple[str, datetime, int]]:
    """(split, clip start, clip number) for every clip, in date order."""
    clips = []
    for m in range(months):
        year, month = _START[0] + (_START[1] - 1 + m) // 12, (_START[1] - 1 + m) % 12 + 1
        labelled = []
        for d in range(days_per_month):
            day = 2 + d * (24 // days_per_month)
            for hour in sorted(rng.choice(24, clips_per_day, replace=False)):
                labelled.append(datetime(year, month, day, int(hour), int(rng.integers(0, 60))))
        clips += [("Valid" if i == len(labelled) - 1 else "Train", t, t.hour) for i, t in enumerate(labelled)]
        test = datetime(year, month, 27, int(rng.integers(0, 24)), int(rng.integers(0, 60)))
        clips.append(("TestNoLabels", test, test.hour))
    return clips


def make_ltdv2_sample(
    root: str | os.PathLike,
    months: int = 3,
    clips_per_day: int = 2,
    frames_per_clip: int = 20,
    seed: int = 0,
    days_per_month: int = 2,
) -> Path:
    """Write the sample under ``root`` and return ``root`` (the ``src`` of the converter).

    Per month ``days_per_month`` days with ``clips_per_day`` labelled clips of
    ``frames_per_clip`` frames (the month's last clip is Valid, the others Train), plus one
    TestNoLabels clip of a quarter the length. The defaults give 255 frames in about a second.
    The same arguments give the same bytes; a folder that already holds this exact sample is
    returned untouched, and one holding anything else raises ``FileExistsError`` (a sample of
    ours with other arguments is replaced).
    """
    months = _check_int("months", months, 1)
    clips_per_day = _check_int("clips_per_day", clips_per_day, 1)
    frames_per_clip = _check_int("frames_per_clip", frames_per_clip, 1)
    days_per_month = _check_int("days_per_month", days_per_month, 1)
    seed = _check_int("seed", seed, 0)
    if clips_per_day > 24 or days_per_month > 12 or frames_per_clip > 9999:
        raise ValueError("clips_per_day must be <= 24, days_per_month <= 12 and frames_per_clip <= 9999 (image_<nnnn>)")
    if clips_per_day * days_per_month < 2:
        raise ValueError(
            "each month needs at least 2 labelled clips (one Train, one Valid): raise clips_per_day or days_per_month"
        )

    root = Path(root).expanduser().resolve()
    params = {
        "months": months,
        "clips_per_day": clips_per_day,
        "frames_per_clip": frames_per_clip,
        "seed": seed,
        "days_per_month": days_per_month,
    }
    marker_path = root / _MARKER
    try:
        state = json.loads(marker_path.read_text())
    except (OSError, ValueError):
        state = None
    ours = isinstance(state, dict) and state.get("generator") == _GENERATOR
    if ours and state.get("version") == _VERSION and state.get("params") == params and state.get("complete"):
        return root
    if root.exists() and any(root.iterdir()) and not ours:
        raise FileExistsError(f"{root} already holds other files; the LTDV2 sample needs an empty or new folder")
    if ours:
        shutil.rmtree(root / "data", ignore_errors=True)  # our own sample with other arguments
    root.mkdir(parents=True, exist_ok=True)
    marker = {"generator": _GENERATOR, "version": _VERSION, "params": params, "complete": False}
    marker_path.write_text(json.dumps(marker))

    w, h = SIZE
    sensor = _sensor(seed, w, h)
    rng = np.random.default_rng([seed, _RNG_TAG])
    splits = {name: _Split() for name in ("Train", "Valid", "TestNoLabels")}
    index = ann_id = 0
    for split, start, clip in _schedule(rng, months, days_per_month, clips_per_day):
        meta = _weather(rng, start)
        folder = f"frames/{start:%Y%m%d}/clip_{clip}_{start:%H%M}"
        (root / "data" / folder).mkdir(parents=True, exist_ok=True)
        n = frames_per_clip if split != "TestNoLabels" else max(1, frames_per_clip // 4)
        for i in range(n):
            img, labels = _frame(seed, "train", index, w, h, _MAX_OBJECTS, sensor)
            index += 1
            warmer = img.astype(np.float32) + 1.5 * (meta["Temperature"] - 10.0)  # ambient heat lifts the whole scene
            file_name = f"{folder}/image_{i:04d}.jpg"
            if not cv2.imwrite(
                str(root / "data" / file_name), np.clip(warmer, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90]
            ):
                raise OSError(f"cv2.imwrite could not write {root / 'data' / file_name}")
            image_id = int(f"{start:%Y%m%d}{clip}{start:%H%M}{i:04d}")
            when = start + timedelta(seconds=i)
            splits[split].images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "width": w,
                    "height": h,
                    "date_captured": when.isoformat(),
                    "meta": meta,
                }
            )
            if split == "TestNoLabels":
                continue
            boxes = [
                (
                    c,
                    x0 - _OVERSHOOT if x0 == 0 else x0,
                    y0 - _OVERSHOOT if y0 == 0 else y0,
                    x1 + _OVERSHOOT if x1 == w else x1,
                    y1 + _OVERSHOOT if y1 == h else y1,
                )
                for c, x0, y0, x1, y1 in _boxes(labels, w, h)
            ]
            if i == 2:  # a click without a drag: zero width
                c, x0, y0, _, y1 = boxes[0] if boxes else (0, 10.0, 10.0, 0.0, 15.0)
                boxes.append((c, x0, y0, x0, y1))
            for c, x0, y0, x1, y1 in boxes:
                ann_id += 1
                bbox = [x0, y0, x1 - x0, y1 - y0]
                splits[split].annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": _CATEGORY_IDS[CLASS_NAMES[c]],
                        "bbox": bbox,
                        "area": bbox[2] * bbox[3],
                        "iscrowd": 0,
                        "uid": ann_id,
                    }
                )
    for name, content in splits.items():
        doc: dict[str, Any] = {
            "info": {
                "description": "LTDV2-shaped sample written by yolo_rdna1.data.ltdv2_sample",
                "version": str(_VERSION),
            },
            "images": content.images,
        }
        if name != "TestNoLabels":
            doc["annotations"] = content.annotations
        doc["categories"] = list(CATEGORIES)  # last, as in many COCO files: a reader must not need it first
        (root / "data" / f"{name}.json").write_text(json.dumps(doc))
    marker_path.write_text(json.dumps({**marker, "complete": True}))
    LOGGER.info("wrote LTDV2 sample %s: %d frames over %d months", root, index, months)
    return root
