#!/usr/bin/env python3
"""Issue 4: the whole plugin against stock Ultralytics, real ``model.train`` epochs, nothing bypassed.

Runs :mod:`train_epoch` once per configuration, **each in a fresh process** (trainings that follow
each other in one process drift: RAM caches, dataloader workers, allocator state), alternating in
ABBA order (stock, plugin, plugin, stock, ...), so a slow drift of the machine cancels within each
block. Every process trains YOLOv8n for ``--epochs`` epochs on the same synthetic thermal dataset
(generated once) and measures its last epoch. The summary gives, per configuration, the median
epoch time and median batch interval, and per ABBA block the plugin/stock ratio of the block's
mean epoch times; the verdict uses the median of the block ratios.

    python3 benchmarks/plugin_overhead.py --blocks 3 --out "$OUT"      # on the GPU
    python3 benchmarks/plugin_overhead.py --device cpu --imgsz 64 --n-train 32 --batch 8 --workers 0 --blocks 1  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=3, help="ABBA blocks (4 trainings each)")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--device", default="0")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="plugin_overhead_"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")

    from yolo_rdna1 import make_synthetic_thermal

    data = make_synthetic_thermal(Path(tempfile.mkdtemp(prefix="plugin_overhead_data_")), n_train=args.n_train, n_val=32, seed=0)
    order = [c for _ in range(args.blocks) for c in ("stock", "plugin", "plugin", "stock")]
    rows = []
    for i, config in enumerate(order):
        run_out = out / f"run{i:02d}_{config}"
        cmd = [sys.executable, str(HERE / "train_epoch.py"), "--configs", config, "--data", str(data), "--n-train", str(args.n_train),
               "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--epochs", str(args.epochs), "--workers", str(args.workers),
               "--device", args.device, "--out", str(run_out)]
        log = (out / f"run{i:02d}_{config}.log").open("w")
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        row = json.loads((run_out / "train_epoch.json").read_text())["rows"][0]
        row["run"] = i
        rows.append(row)
        print(f"{i:2d} {config:6s} last epoch {row['last_epoch_s']:.3f} s, median batch {row['median_batch_ms']:.2f} ms", flush=True)
    meta = json.loads((out / "run00_stock" / "train_epoch.json").read_text())["meta"]
    (out / "plugin_overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    text = summary(rows, meta)
    (out / "plugin_overhead.md").write_text(text)
    print(text)
    return 0


def summary(rows: list[dict], meta: dict) -> str:
    lines = [f"Device: {meta['device']}; torch {meta['torch']}; ultralytics {meta['ultralytics']}; {meta['n_train']} train images, "
             f"imgsz {meta['imgsz']}, batch {meta['batch']}, workers {meta['workers']}, cache {meta['cache']}, amp=False, "
             f"epochs {meta['epochs']} (the last one measured); one fresh process per training, ABBA order.", "",
             "| run | config | last epoch s | images/s | median batch ms |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['config']} | {r['last_epoch_s']:.3f} | {r['images_per_s']:.1f} | {r['median_batch_ms']:.2f} |")
    by = {c: [r for r in rows if r["config"] == c] for c in ("stock", "plugin")}
    lines += ["", "| config | runs | median epoch s | median of median batch ms |", "|---|---|---|---|"]
    for c, rs in by.items():
        lines.append(f"| {c} | {len(rs)} | {statistics.median(r['last_epoch_s'] for r in rs):.3f} | "
                     f"{statistics.median(r['median_batch_ms'] for r in rs):.2f} |")
    ratios = []
    for b in range(0, len(rows) - 3, 4):
        block = rows[b:b + 4]
        s = statistics.mean(r["last_epoch_s"] for r in block if r["config"] == "stock")
        p = statistics.mean(r["last_epoch_s"] for r in block if r["config"] == "plugin")
        ratios.append(p / s)
    lines += ["", "plugin / stock epoch time per ABBA block: " + ", ".join(f"{x:.3f}" for x in ratios),
              f"median of the block ratios: {statistics.median(ratios):.3f} "
              f"(median epoch time ratio over all runs: "
              f"{statistics.median(r['last_epoch_s'] for r in by['plugin']) / statistics.median(r['last_epoch_s'] for r in by['stock']):.3f})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
