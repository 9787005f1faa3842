"""A real Ultralytics training of YOLOv8n per configuration, its last epoch timed.

Configurations (``--configs``, comma list; ``name#n`` repeats one, in the order given):

* ``stock``: plain Ultralytics, no guard (the vendor convs);
* ``plugin``: the whole plugin, ``yolo_rdna1.add_callbacks(model, guard="auto")``: guard,
  counters, per-epoch rdna1 columns, telemetry, thermal guard, watchdog, report; on NVIDIA it
  bypasses nothing, so this is the plugin's own cost;
* ``plugin_gfx1010``: the same under the ``gfx1010`` fault profile (``faults="gfx1010"``): the
  probe judges every signature, bad ones and ones the bypass runs faster take the bypass, as on
  an RDNA1 card;
* ``plugin_bypass``: the plugin with ``guard="bypass"``: every conv on the bypass;
  ``plugin_bypass_nopool`` the same without the kept pad buffers (``bypass.settings(pad_budget_bytes=0)``);
* ``bypass`` / ``auto``: the bare guard, ``yolo_rdna1.guarded(policy=...)``, none of the plugin.

Each trains ``--epochs`` epochs (2 by default) and the *last* is measured, so the first absorbs
the warm-up (dataloader workers, cuDNN/cuBLAS heuristics, routes, kept buffers): its wall seconds
(``on_train_epoch_start`` to ``on_train_epoch_end``, device synced), the images per second that
gives, and the median interval between training batches. Offline, ``amp=False`` (the AMP check
would download weights), ``plots=False``, ``val=False`` (Ultralytics still validates once after
the last epoch; not timed). Several configurations in one process drift (RAM caches, workers,
allocator): compare configurations with :mod:`benchmarks.headline`, a fresh process each.

    python3 -m benchmarks.train_epoch --configs stock,plugin_bypass --out "$OUT"      # on the GPU
    python3 -m benchmarks.train_epoch --device cpu --imgsz 64 --n-train 16 --batch 8 --workers 0  # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

#: The plugin configurations: name -> add_callbacks options.
PLUGIN = {
    "plugin": {"guard": "auto"},
    "plugin_gfx1010": {"guard": "auto", "faults": "gfx1010"},
    "plugin_bypass": {"guard": "bypass"},
    "plugin_bypass_nopool": {"guard": "bypass"},
}
CONFIGS = ("stock", "bypass", "auto", *PLUGIN)


def run_config(name: str, data: Path, args: argparse.Namespace, project: Path) -> dict[str, Any]:
    """Train one configuration in this process and time its last epoch."""
    import torch
    from ultralytics import YOLO

    import yolo_rdna1
    from yolo_rdna1 import bypass
    from yolo_rdna1.bypass import bordered

    base = name.split("#")[0]
    if base not in CONFIGS:
        raise SystemExit(f"unknown configuration {base!r}; valid: {', '.join(CONFIGS)}")
    cuda = args.device != "cpu" and torch.cuda.is_available()
    marks: dict[str, list[float]] = {"epoch_start": [], "epoch_end": [], "batch_end": []}

    def on_epoch_start(trainer: Any) -> None:
        harness.sync(trainer.device if cuda else "cpu")
        marks["epoch_start"].append(time.perf_counter())
        marks["batch_end"].append(-1.0)  # epoch separator

    def on_batch_end(trainer: Any) -> None:
        marks["batch_end"].append(time.perf_counter())

    def on_epoch_end(trainer: Any) -> None:
        harness.sync(trainer.device if cuda else "cpu")
        marks["epoch_end"].append(time.perf_counter())

    model = YOLO("yolov8n.yaml")
    plugin = base in PLUGIN
    if plugin:
        verdicts = args.verdicts or str(project / "verdict-cache")
        yolo_rdna1.add_callbacks(model, cache=verdicts, **PLUGIN[base])
    model.add_callback("on_train_epoch_start", on_epoch_start)
    model.add_callback("on_train_batch_end", on_batch_end)
    model.add_callback("on_train_epoch_end", on_epoch_end)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    guard_ctx = (
        yolo_rdna1.guarded(policy=base, faults=False) if base in ("bypass", "auto") else contextlib.nullcontext(None)
    )
    knobs = bypass.settings(pad_budget_bytes=0) if base == "plugin_bypass_nopool" else contextlib.nullcontext()
    t0 = time.perf_counter()
    try:
        with knobs, guard_ctx as g:
            model.train(
                data=str(data),
                epochs=args.epochs,
                imgsz=args.imgsz,
                batch=args.batch,
                workers=args.workers,
                device=args.device,
                amp=False,
                plots=False,
                val=False,
                cache=args.cache,
                seed=0,
                project=str(project),
                name=name,
                exist_ok=True,
                verbose=False,
            )
            if plugin:
                report = json.loads((project / name / "rdna1_report.json").read_text())
                last = report["epochs"][-1] if report["epochs"] else {}
                totals = {
                    "calls": report["calls"],
                    "bypassed": report["bypassed"],
                    "telemetry": report["telemetry_source"],
                    "probe": report.get("probe"),
                    "last_epoch_calls": last.get("calls"),
                    "last_epoch_bypassed": last.get("bypassed"),
                }
                routes = report["signatures"]
            else:
                totals = g.totals() if g is not None else None
                routes = g.per_signature() if g is not None else []
    finally:
        bordered.release()  # a bare guard keeps its pad buffers; the next configuration must not see them
    total = time.perf_counter() - t0
    seps = [i for i, v in enumerate(marks["batch_end"]) if v < 0]
    last_batches = marks["batch_end"][seps[-1] + 1 :] if seps else []
    gaps = [(b - a) * 1e3 for a, b in zip(last_batches, last_batches[1:])]
    epoch_s = marks["epoch_end"][-1] - marks["epoch_start"][-1]
    return {
        "config": name,
        "epochs": len(marks["epoch_end"]),
        "last_epoch_s": epoch_s,
        "images_per_s": args.n_train / epoch_s,
        "median_batch_ms": statistics.median(gaps) if gaps else float("nan"),
        "first_epoch_s": marks["epoch_end"][0] - marks["epoch_start"][0],
        "whole_run_s": total,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"),
        "guard_totals": totals,
        "bypass_algorithms": sorted(
            {r["algorithm"] for r in routes if r.get("routes") and "bypass" in r["routes"].values()}
        ),
        "cudnn_tf32_after": torch.backends.cudnn.allow_tf32,  # read back: did anything in the run switch it?
    }


def bypassed(row: dict[str, Any]) -> str:
    """The measured epoch's bypassed conv calls (the whole run's for a bare guard)."""
    t = row.get("guard_totals")
    if not t:
        return "n/a (no guard)"
    if t.get("last_epoch_calls"):
        return (
            f"{t['last_epoch_bypassed']}/{t['last_epoch_calls']} "
            f"({t['last_epoch_bypassed'] / t['last_epoch_calls']:.0%})"
        )
    return f"{t['bypassed']}/{t['calls']}"


def report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Markdown: one row per training, and medians per configuration when one repeats."""
    stock = next((r for r in rows if r["config"].split("#")[0] == "stock"), rows[0])
    lines = [
        f"Device: {meta['device']}; torch {meta['torch']}; ultralytics {meta['ultralytics']}; commit "
        f"{meta['commit']}; {meta['n_train']} train images (synthetic thermal), imgsz {meta['imgsz']}, batch "
        f"{meta['batch']}, workers {meta['workers']}, cache {meta['cache']}, amp=False, epochs {meta['epochs']}: the "
        f"last epoch is measured; cuDNN TF32 {'on' if meta['cudnn_tf32'] else 'off (both sides plain float32)'}.",
        "",
        "| config | last epoch s | images/s | vs stock | median batch ms | first epoch s | peak MiB | convs bypassed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {harness.fmt(r['last_epoch_s'], 2)} | {harness.fmt(r['images_per_s'])} | "
            f"{harness.fmt(r['images_per_s'] / stock['images_per_s'], 2)} | {harness.fmt(r['median_batch_ms'])} | "
            f"{harness.fmt(r['first_epoch_s'], 2)} | {harness.fmt(r['peak_mib'], 0)} | {bypassed(r)} |"
        )
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r["config"].split("#")[0], []).append(r["images_per_s"])
    if any(len(v) > 1 for v in groups.values()):
        ref = statistics.median(groups.get("stock", next(iter(groups.values()))))
        lines += ["", "| config | runs | median images/s | epoch time vs stock |", "|---|---|---|---|"]
        for k, v in groups.items():
            m = statistics.median(v)
            lines.append(f"| {k} | {len(v)} | {m:.1f} | {ref / m:.3f} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="stock,plugin_bypass,plugin")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-val", type=int, default=32)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cache", default="ram", help="Ultralytics 'cache' (ram keeps image decoding out of the way)")
    ap.add_argument("--device", default="0")
    ap.add_argument(
        "--data", default=None, help="an existing data.yaml (else a synthetic set of --n-train images is made)"
    )
    ap.add_argument(
        "--verdicts", default=None, help="the plugin's verdict store folder (default: a new empty one per training)"
    )
    ap.add_argument(
        "--no-tf32",
        action="store_true",
        help="cuDNN convs without TF32 (torch.backends.cudnn.allow_tf32 = False); the bypass follows cuDNN's "
        "policy, so both sides run plain float32 FMA, as on a GPU without tensor cores (RDNA1)",
    )
    ap.add_argument("--out", default=os.environ.get("OUT"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.cache = {"false": False, "true": True}.get(args.cache.lower(), args.cache)
    work = Path(tempfile.mkdtemp(prefix="train_epoch_"))
    harness.offline(work / "yolo_config")

    import torch

    from yolo_rdna1 import make_synthetic_thermal

    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False  # torch's own switch, read by cuDNN and by the bypass
    t = time.perf_counter()
    data = (
        Path(args.data)
        if args.data
        else make_synthetic_thermal(work / "data", n_train=args.n_train, n_val=args.n_val, seed=0)
    )
    print(f"dataset: {data} in {time.perf_counter() - t:.1f} s", flush=True)
    meta = harness.meta(
        args.device,
        n_train=args.n_train,
        imgsz=args.imgsz,
        batch=args.batch,
        workers=args.workers,
        cache=args.cache,
        epochs=args.epochs,
        cudnn_tf32=torch.backends.cudnn.allow_tf32,
    )
    rows: list[dict[str, Any]] = []
    out = Path(args.out) if args.out else None
    for name in args.configs.split(","):
        try:
            row = run_config(name, data, args, work / "runs")
        except Exception as e:  # noqa: BLE001 - report and go on with the next configuration
            import traceback

            traceback.print_exc()
            row = {
                "config": name,
                "error": repr(e)[:300],
                "last_epoch_s": float("nan"),
                "images_per_s": float("nan"),
                "median_batch_ms": float("nan"),
                "first_epoch_s": float("nan"),
                "peak_mib": float("nan"),
            }
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        if out:
            harness.write_json(out / "train_epoch.json", {"meta": meta, "rows": rows})
            (out / "train_epoch.md").write_text(report(rows, meta))
    print(report(rows, meta), flush=True)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
