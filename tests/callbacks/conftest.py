"""Small synthetic datasets for every Ultralytics task, and one guarded training of each.

The trainings run once per session, all in one child process (one import of torch and
Ultralytics) under the ``gfx1010`` fault profile with the session's shared verdict cache; the
task tests and the val/predict/export tests read what they left. Images are 96x72 (LTDV2's
4:3, so validation batches are the 64x96 ones other 64 px trainings of the session probed, and
YOLOv8's backbone signatures are shared with them); classification gets them in class folders.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

#: The rdna1 columns results.csv carries in every row: what a reader of a guarded run relies on.
RDNA1_COLUMNS = (
    "rdna1/bypass_rate",
    "rdna1/fallbacks",
    "rdna1/temp_edge_max",
    "rdna1/temp_junction_max",
    "rdna1/temp_mem_max",
    "rdna1/power_mean_w",
    "rdna1/busy_mean",
    "rdna1/thermal_pause_s",
)


def _results_rows(run_dir: Path) -> list[dict[str, str]]:
    """A run's results.csv as rows (keys stripped), after checking each row has every rdna1 column as a number."""
    with open(run_dir / "results.csv", newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    for i, row in enumerate(rows):
        for col in RDNA1_COLUMNS:
            assert col in row, f"{run_dir.name}: {col} missing from results.csv"
            assert float(row[col]) == float(row[col]), f"{run_dir.name}: {col} is NaN in row {i + 1}"
    return rows


@pytest.fixture(scope="session")
def results_rows():
    """Reads a run's results.csv, checking the rdna1 columns of every row on the way."""
    return _results_rows


W, H = 96, 72
N_TRAIN, N_VAL = 8, 8
KPT_SHAPE = [4, 3]


def _frame(rng: np.random.Generator, box: tuple[float, float, float, float], angle: float = 0.0) -> np.ndarray:
    """A noisy grey frame with one warm rotated rectangle (centre x, y, width, height in px)."""
    import cv2

    img = (rng.normal(60, 12, (H, W))).clip(0, 255).astype(np.uint8)
    cx, cy, w, h = box
    corners = cv2.boxPoints(((cx, cy), (w, h), angle)).astype(np.int32)
    cv2.fillPoly(img, [corners], 200)
    return np.dstack([img] * 3)


def _write(path: Path, img: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def _corners(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    import cv2

    return cv2.boxPoints(((cx, cy), (w, h), angle))


def make_task_dataset(root: Path, task: str, seed: int = 0) -> Path:
    """A YOLO dataset for ``detect``, ``segment``, ``pose`` or ``obb`` (data.yaml), or a ``classify`` folder."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for i in range(n):
            cx, cy = rng.uniform(30, 66), rng.uniform(24, 48)
            w, h = rng.uniform(16, 30), rng.uniform(12, 22)
            angle = float(rng.uniform(0, 60)) if task == "obb" else 0.0
            img = _frame(rng, (cx, cy, w, h), angle)
            if task == "classify":
                cls = i % 2
                if cls:  # the second class is darker
                    img = (img * 0.5).astype(np.uint8)
                _write(root / split / f"class{cls}" / f"{split}_{i}.jpg", img)
                continue
            _write(root / "images" / split / f"{split}_{i}.jpg", img)
            if task == "detect":
                label = f"0 {cx / W:.5f} {cy / H:.5f} {w / W:.5f} {h / H:.5f}"
            elif task == "segment":
                poly = _corners(cx, cy, w, h, 0.0) / [W, H]
                label = "0 " + " ".join(f"{v:.5f}" for v in poly.ravel())
            elif task == "obb":
                label = "0 " + " ".join(f"{v:.5f}" for v in (_corners(cx, cy, w, h, angle) / [W, H]).ravel())
            else:  # pose: box + the 4 corners as visible keypoints
                kpts = _corners(cx, cy, w, h, 0.0) / [W, H]
                label = f"0 {cx / W:.5f} {cy / H:.5f} {w / W:.5f} {h / H:.5f} " + " ".join(
                    f"{x:.5f} {y:.5f} 2" for x, y in kpts
                )
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{split}_{i}.txt").write_text(label + "\n")
    if task == "classify":
        return root
    cfg = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "thing"}}
    if task == "pose":
        cfg.update(kpt_shape=KPT_SHAPE, flip_idx=[1, 0, 3, 2])
    (root / "data.yaml").write_text(yaml.safe_dump(cfg))
    return root / "data.yaml"


#: The model YAML each task trains (Ultralytics' default YOLO11 for detection).
TASK_MODELS = {
    "detect": "yolo11n.yaml",
    "segment": "yolov8n-seg.yaml",
    "pose": "yolov8n-pose.yaml",
    "obb": "yolov8n-obb.yaml",
    "classify": "yolov8n-cls.yaml",
}


@pytest.fixture(scope="session")
def task_runs(tmp_path_factory, shared_cache, run_child_file) -> dict:
    """One epoch of each task, guarded (``auto``) under ``gfx1010``: {task: {"dir", "data", "device", "env", "probe"}}.

    Detection trains YOLO11n (the val/predict/export tests use its best.pt). One child runs them
    all; a hang there fails the fixture at the timeout.
    """
    base = tmp_path_factory.mktemp("tasks")
    data = {task: str(make_task_dataset(base / f"data-{task}", task)) for task in TASK_MODELS}
    project = base / "runs"
    common = dict(
        guard="auto",
        faults="gfx1010",
        cache=str(shared_cache),
        epochs=1,
        imgsz=64,
        batch=4,
        device="cpu",
        workers=0,
        project=str(project),
        exist_ok=True,
        plots=False,
        verbose=False,
        telemetry=0,
    )
    runs = [dict(data=data[task], model=model, name=task, **common) for task, model in TASK_MODELS.items()]
    r = run_child_file("train", json.dumps(runs), timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            row = json.loads(line[len("RESULT ") :])
            task = row["name"]
            run = {"task": task, "device": row["device"], "env": row["env"], "probe": row["probe"]}
            out[task] = {**run, "dir": project / task, "data": data[task]}
    assert set(out) == set(TASK_MODELS), r.stdout[-3000:]
    return out
