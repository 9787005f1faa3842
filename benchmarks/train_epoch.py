#!/usr/bin/env python3
"""A real Ultralytics training run of YOLOv8n: stock vs guard ``bypass`` vs guard ``auto``.

Issue 5. One process trains ``YOLO('yolov8n.yaml')`` on the synthetic thermal dataset
(:func:`yolo_rdna1.make_synthetic_thermal`) once per configuration, side by side:

* ``stock``:  plain Ultralytics, no guard (cuDNN convs);
* ``bypass``: under ``yolo_rdna1.guarded(policy="bypass")``: every conv on the vendor-free bypass;
* ``auto``:   under ``yolo_rdna1.guarded(policy="auto")``: on NVIDIA nothing is bypassed, so this
  measures the guard's own overhead;
* ``plugin``: the whole plugin, ``yolo_rdna1.add_callbacks(model, guard="auto")``: guard, counters,
  per-epoch rdna1 columns, telemetry sampler, thermal guard, watchdog, report (issue 4's 1%).
* ``plugin_bypass``: the whole plugin with ``guard="bypass"``: every conv on the bypass, as a
  user gets it (``serial_backward`` included); ``bypass`` above is the bare guard without it.
* ``plugin_bypass_nopool``: the same without the kept pad buffers (``bypass.bordered.BUDGET_BYTES
  = 0``), the A/B of that change in a real run.

A name may carry a ``#n`` suffix to repeat a configuration (``stock#1,plugin#1,stock#2,...``):
runs are interleaved in the order given, and the summary compares the medians per configuration.

Each configuration trains ``--epochs`` epochs (2 by default); the *last* epoch is measured, so the
first one absorbs the warm-up (dataloader workers, cuDNN/cuBLAS heuristics, route resolution):
its wall seconds (``on_train_epoch_start`` to ``on_train_epoch_end``, with a device sync), the
images per second that gives, and the median interval between training batches. Offline:
``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=false``, a temporary ``YOLO_CONFIG_DIR``, ``amp=False``
(the AMP check would download weights), ``plots=False``, ``val=False`` (Ultralytics still
validates once after the last epoch, on the small val split; not timed).

    python3 benchmarks/train_epoch.py --out "$OUT"                       # on the GPU
    python3 benchmarks/train_epoch.py --device cpu --imgsz 64 --n-train 16 --batch 8 --workers 0  # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_config(name: str, data: Path, args: argparse.Namespace, project: Path) -> dict:
    import torch
    from ultralytics import YOLO

    import yolo_rdna1
    from yolo_rdna1.bypass import bordered

    marks: dict[str, list[float]] = {"epoch_start": [], "epoch_end": [], "batch_end": []}
    cuda = args.device != "cpu" and torch.cuda.is_available()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def on_epoch_start(trainer) -> None:
        sync()
        marks["epoch_start"].append(time.perf_counter())
        marks["batch_end"].append(-1.0)  # epoch separator

    def on_batch_end(trainer) -> None:
        marks["batch_end"].append(time.perf_counter())

    def on_epoch_end(trainer) -> None:
        sync()
        marks["epoch_end"].append(time.perf_counter())

    base = name.split("#")[0]
    model = YOLO("yolov8n.yaml")
    plugin = base.startswith("plugin")
    budget = bordered.BUDGET_BYTES
    if base == "plugin_bypass_nopool":
        bordered.BUDGET_BYTES = 0
    if plugin:
        policy = "bypass" if base.startswith("plugin_bypass") else "auto"
        yolo_rdna1.add_callbacks(model, guard=policy, cache=str(project / "verdict-cache"))
    model.add_callback("on_train_epoch_start", on_epoch_start)
    model.add_callback("on_train_batch_end", on_batch_end)
    model.add_callback("on_train_epoch_end", on_epoch_end)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    guard_ctx = contextlib.nullcontext(None) if base == "stock" or plugin else yolo_rdna1.guarded(policy=base, faults=False)
    t0 = time.perf_counter()
    try:
        with guard_ctx as g:
            model.train(data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=args.workers,
                        device=args.device, amp=False, plots=False, val=False, cache=args.cache, seed=0,
                        project=str(project), name=name, exist_ok=True, verbose=False)
            if plugin:
                report = json.loads((project / name / "rdna1_report.json").read_text())
                totals = {"calls": report["calls"], "bypassed": report["bypassed"], "telemetry": report["telemetry_source"],
                          "last_epoch_metrics": report["epochs"][-1] if report["epochs"] else {}}
                routes = report["signatures"]
            else:
                totals = g.totals() if g is not None else None
                routes = g.per_signature() if g is not None else []
    finally:
        bordered.BUDGET_BYTES = budget
        bordered.release()  # a bare guard keeps its pad buffers; the next configuration must not see them
    algorithms = sorted({r["algorithm"] for r in routes if r.get("routes") and "bypass" in r["routes"].values()})
    total = time.perf_counter() - t0
    # the last epoch's batches: after the last separator
    seps = [i for i, v in enumerate(marks["batch_end"]) if v < 0]
    last = marks["batch_end"][seps[-1] + 1:] if seps else []
    gaps = [(b - a) * 1e3 for a, b in zip(last, last[1:])]
    epoch_s = marks["epoch_end"][-1] - marks["epoch_start"][-1]
    row = {
        "config": name,
        "epochs": len(marks["epoch_end"]),
        "last_epoch_s": epoch_s,
        "images_per_s": args.n_train / epoch_s,
        "median_batch_ms": statistics.median(gaps) if gaps else float("nan"),
        "images_per_s_median_batch": args.batch / (statistics.median(gaps) / 1e3) if gaps else float("nan"),
        "first_epoch_s": marks["epoch_end"][0] - marks["epoch_start"][0],
        "whole_run_s": total,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"),
        "guard_totals": totals,
        "bypass_algorithms": algorithms,
        "cudnn_tf32_after": torch.backends.cudnn.allow_tf32,  # read back: did anything in the run switch it?
    }
    return row


def report(rows: list[dict], meta: dict) -> str:
    stock = next((r for r in rows if r["config"].split("#")[0] == "stock"), rows[0])
    lines = [f"Device: {meta['device']}; torch {meta['torch']}; ultralytics {meta['ultralytics']}; {meta['n_train']} train images "
             f"(synthetic thermal, {meta['n_val']} val), imgsz {meta['imgsz']}, batch {meta['batch']}, workers {meta['workers']}, "
             f"cache {meta['cache']}, amp=False, epochs {meta['epochs']}: the last epoch is measured; cuDNN TF32 "
             f"{'on' if meta.get('cudnn_tf32', True) else 'off (both sides plain float32)'}.", "",
             "| config | last epoch s | images/s | vs stock | median batch ms | images/s from median batch | first epoch s | peak MiB | convs bypassed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r.get("guard_totals")
        byp = "n/a (no guard)" if not t else f"{t['bypassed']}/{t['calls']}"
        lines.append(f"| {r['config']} | {r['last_epoch_s']:.2f} | {r['images_per_s']:.1f} | {r['images_per_s'] / stock['images_per_s']:.2f} | "
                     f"{r['median_batch_ms']:.1f} | {r['images_per_s_median_batch']:.1f} | {r['first_epoch_s']:.2f} | {r['peak_mib']:.0f} | {byp} |")
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r["config"].split("#")[0], []).append(r["images_per_s"])
    if any(len(v) > 1 for v in groups.values()):
        ref = statistics.median(groups.get("stock", next(iter(groups.values()))))
        lines += ["", "| config | runs | median images/s | vs stock (median) | epoch time vs stock |", "|---|---|---|---|---|"]
        for k, v in groups.items():
            m = statistics.median(v)
            lines.append(f"| {k} | {len(v)} | {m:.1f} | {m / ref:.3f} | {ref / m:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="stock,bypass,auto")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=32)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cache", default="ram", help="Ultralytics 'cache' (ram keeps image decoding out of the way)")
    ap.add_argument("--device", default="0")
    ap.add_argument("--data", default=None, help="an existing data.yaml (else a synthetic set of --n-train images is generated)")
    ap.add_argument("--no-tf32", action="store_true",
                    help="cuDNN convs without TF32 (torch.backends.cudnn.allow_tf32 = False), so both stock and the bypass, which "
                         "follows cuDNN's policy, run plain float32 FMA, as on a GPU without TF32 tensor cores (RDNA1)")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args(argv)
    cache = {"false": False, "true": True}.get(args.cache.lower(), args.cache)
    args.cache = cache

    work = Path(tempfile.mkdtemp(prefix="train_epoch_"))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "yolo_config"))

    import torch
    import ultralytics

    from yolo_rdna1 import make_synthetic_thermal

    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False

    t = time.perf_counter()
    data = Path(args.data) if args.data else make_synthetic_thermal(work / "data", n_train=args.n_train, n_val=args.n_val, seed=0)
    print(f"dataset: {data} in {time.perf_counter() - t:.1f} s", flush=True)
    meta = {"device": torch.cuda.get_device_name(0) if args.device != "cpu" and torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "ultralytics": ultralytics.__version__, "n_train": args.n_train, "n_val": args.n_val,
            "imgsz": args.imgsz, "batch": args.batch, "workers": args.workers, "cache": args.cache, "epochs": args.epochs,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32}
    rows = []
    out_dir = Path(args.out) if args.out else None
    for name in args.configs.split(","):
        try:
            row = run_config(name, data, args, work / "runs")
        except Exception as e:  # noqa: BLE001 - report and go on
            import traceback

            traceback.print_exc()
            row = {"config": name, "error": repr(e)[:300], "last_epoch_s": float("nan"), "images_per_s": float("nan"),
                   "median_batch_ms": float("nan"), "images_per_s_median_batch": float("nan"), "first_epoch_s": float("nan"), "peak_mib": float("nan")}
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "train_epoch.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
            (out_dir / "train_epoch.md").write_text(report(rows, meta))
    print(report(rows, meta), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
