"""Child program of tests/supervision/test_kill_resume.py: four trainings cut into segments.

    python tests/children/resume_segments.py KWARGS_JSON OUT

KWARGS_JSON holds the training arguments (Ultralytics' and yolo_rdna1's, ``model`` and ``data``
included). A trains uninterrupted; B stops after 3 batches; C resumes from B's mid.pt and stops
after 3 more batches (across the epoch boundary); D resumes as a user would (resume=True with
last.pt) after C's newest checkpoint was truncated. Each records the images and the losses of
every batch it trained; all of it goes to OUT/segments.json.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from ultralytics import YOLO

import yolo_rdna1


class Stop(Exception):
    """Ends a training after a chosen number of batches, as a crash would."""


def train(plugin: dict[str, Any], model: str | Path, stop_after: int | None = None, **args: Any) -> list[dict]:
    """One training; per batch trained, its epoch, image names and loss items."""
    seen: list[dict] = []

    def record_images(trainer) -> None:
        preprocess = trainer.preprocess_batch

        def recorded(batch):
            seen.append({"epoch": trainer.epoch, "images": [Path(f).name for f in batch["im_file"]]})
            return preprocess(batch)

        trainer.preprocess_batch = recorded

    def record_loss(trainer) -> None:
        if seen and "loss" not in seen[-1]:
            items = trainer.loss_items  # a dict in Ultralytics 8.4, a tensor in 8.3
            seen[-1]["loss"] = [float(v) for v in (items.values() if isinstance(items, dict) else items)]
            if len(seen) == stop_after:
                raise Stop()

    yolo = yolo_rdna1.add_callbacks(YOLO(str(model)), **plugin)
    yolo.add_callback("on_pretrain_routine_end", record_images)
    yolo.add_callback("on_train_batch_end", record_loss)
    try:
        yolo.train(**args)
    except Stop:
        pass
    return seen


def main(argv: list[str]) -> int:
    """Runs A, B, C, D in turn and writes what they saw to OUT/segments.json."""
    kw, out_dir = json.loads(argv[0]), Path(argv[1])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    names = set(yolo_rdna1.PluginOptions.names())
    plugin = {k: v for k, v in kw.items() if k in names}
    ultra = {k: v for k, v in kw.items() if k not in names and k != "model"}
    out = {"A": train(plugin, "yolov8n.yaml", **ultra, project=str(out_dir), name="a")}
    out["B"] = train(plugin, "yolov8n.yaml", stop_after=3, **ultra, project=str(out_dir), name="r")
    weights = out_dir / "r" / "weights"
    out["files_after_B"] = sorted(p.name for p in weights.iterdir())
    out["C"] = train(plugin, weights / "mid.pt", stop_after=3, data=kw["data"], resume=True)
    mid = weights / "mid.pt"
    mid.write_bytes(mid.read_bytes()[: mid.stat().st_size // 3])
    out["D"] = train(plugin, weights / "last.pt", data=kw["data"], resume=True)
    out["files_after_D"] = sorted(p.name for p in weights.iterdir())
    (out_dir / "segments.json").write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
