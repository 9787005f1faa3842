"""The headline table: what a real YOLOv8n epoch costs with the plugin, against stock Ultralytics.

One GPU run, one fresh process per training (:mod:`benchmarks.train_epoch`), configurations
interleaved: each repetition runs the whole list, every other one in reverse order (ABC CBA ...),
so a slow drift of the machine cancels. Default list:

* ``stock``: plain Ultralytics;
* ``plugin``: ``guard="auto"`` on a card whose conv library is trusted: nothing is bypassed, the
  plugin's own cost;
* ``plugin_gfx1010``: ``guard="auto"`` under the ``gfx1010`` fault profile, a realistic RDNA1 mix:
  the signatures the profile breaks, and the ones the probe measured faster on the bypass, take it;
* ``plugin_bypass``: ``guard="bypass"``, every conv on the bypass;
* ``...-notf32``: the same with ``torch.backends.cudnn.allow_tf32 = False`` (cuDNN and the bypass
  both in plain float32 FMA: the stand-in for a card without tensor cores, like RDNA1), against
  ``stock-notf32``.

Before the trainings the probe times itself cold on the GPU (:mod:`benchmarks.probe_time`, the
training's own signatures, ``gfx1010``), into the verdict store the ``plugin_gfx1010`` trainings
then read warm. Each training's last epoch of ``--epochs`` is measured. Ratio: each training's
epoch time over its baseline's in the same repetition (``stock``, or ``stock-notf32`` for
``-notf32`` rows); the table gives the median of those ratios and their range. ``--budget-s``
stops starting trainings that would not end in time; the tables are rewritten after every
training. ``--pool`` prints the summary of saved runs of one machine taken as one (the headline
table pools two calls).

    python3 -m benchmarks.headline --out "$OUT"                                     # on the GPU
    python3 -m benchmarks.headline --device cpu --imgsz 64 --n-train 16 --batch 8 --workers 0 \\
        --configs stock,plugin_bypass --reps 1 --no-probe                            # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

DEFAULT = "stock,plugin,plugin_gfx1010,plugin_bypass,stock-notf32,plugin_gfx1010-notf32,plugin_bypass-notf32"
NOTF32 = "-notf32"


def baseline(config: str) -> str:
    return "stock" + NOTF32 if config.endswith(NOTF32) else "stock"


def order(configs: list[str], reps: int) -> list[tuple[int, str]]:
    """(repetition, config) in run order: forward, then backward, then forward ..."""
    return [(r, c) for r in range(reps) for c in (configs if r % 2 == 0 else configs[::-1])]


def summary(rows: list[dict[str, Any]], probes: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Markdown: the headline table (medians per configuration), then every training."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" not in r:
            by.setdefault(r["label"], []).append(r)
    lines = [
        f"{meta['device']} (driver {meta['driver']}, CUDA {meta['cuda']}, cuDNN {meta['cudnn']}), "
        f"torch {meta['torch']}, ultralytics {meta['ultralytics']}, {meta['host']['cpus']} CPUs; "
        f"commit {meta['commit']}, {meta['date']}. YOLOv8n `model.train`, {meta['n_train']} "
        f"synthetic thermal images (384x288), imgsz {meta['imgsz']}, batch {meta['batch']}, workers "
        f"{meta['workers']}, cache=ram, amp=False, {meta['epochs']} epochs, the last measured; one "
        f"fresh process per training, {len({r['rep'] for r in rows})} interleaved repetitions.",
        "",
        "| configuration | trainings | images/s (median) | epoch time vs stock (median of the "
        "repetitions' ratios) | range | peak GPU MiB | conv calls bypassed (last epoch) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rs in by.items():
        ref_by_rep = {r["rep"]: r["last_epoch_s"] for r in by.get(baseline(label), [])}
        per = sorted(r["last_epoch_s"] / ref_by_rep[r["rep"]] for r in rs if r["rep"] in ref_by_rep)
        ratio = f"**{statistics.median(per):.2f}x**" if per else "n/a"
        spread = f"{per[0]:.2f}-{per[-1]:.2f}" if per else "n/a"
        shares = [r["share"] for r in rs if r.get("share") is not None]
        share = f"{statistics.median(shares):.1%}" if shares else "none (no guard)"
        lines.append(
            f"| {label} | {len(rs)} | {statistics.median(r['images_per_s'] for r in rs):.1f} | {ratio} | {spread} | "
            f"{statistics.median(r['peak_mib'] for r in rs):.0f} | {share} |"
        )
    for probe in probes:
        lines += [
            "",
            "Probe, cold, on this GPU (`gfx1010`, the training's signatures at batch "
            f"{meta['batch']}): **{probe['cold_s']:.1f} s** for {probe['pairs']} (signature, "
            f"direction) pairs ({probe['summary']}); warm {probe['warm_s']:.2f} s.",
        ]
    lines += [
        "",
        "| # | repetition | configuration | last epoch s | images/s "
        "| first epoch s | whole process s | peak MiB | bypassed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        if "error" in r:
            lines.append(f"| {i} | {r['rep']} | {r['label']} | error: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {i} | {r['rep']} | {r['label']} | {r['last_epoch_s']:.2f} | {r['images_per_s']:.1f} | "
            f"{r['first_epoch_s']:.2f} | {r['process_s']:.1f} | {r['peak_mib']:.0f} | {r['bypassed']} |"
        )
    return "\n".join(lines) + "\n"


def pool(files: list[str]) -> str:
    """The summary of several saved runs (``headline.json``) of one machine as one: their
    repetitions numbered on, their cold probe times listed."""
    rows: list[dict[str, Any]] = []
    probes = []
    meta: dict[str, Any] = {}
    for f in files:
        saved = json.loads(Path(f).read_text())
        meta = meta or saved["meta"]
        first = 1 + max((r["rep"] for r in rows), default=-1)
        rows += [dict(r, rep=first + r["rep"]) for r in saved["rows"]]
        probes += [saved["probe"]] if saved.get("probe") else []
    return summary(rows, probes, meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=DEFAULT, help="comma list; a -notf32 suffix runs that training with TF32 off")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--device", default="0")
    ap.add_argument(
        "--no-probe", action="store_true", help="skip the cold probe timing (plugin_gfx1010 then probes at its start)"
    )
    ap.add_argument("--probe-timeout-s", type=float, default=240.0)
    ap.add_argument(
        "--budget-s", type=float, default=float("inf"), help="start no training that would end after this many seconds"
    )
    ap.add_argument(
        "--pool", nargs="+", metavar="JSON", help="only print the summary of saved runs (headline.json) taken as one"
    )
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args(argv)
    if args.pool:
        print(pool(args.pool), end="")
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="headline_"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="headline_work_"))
    harness.offline(work / "yolo_config")
    t_start = time.perf_counter()

    from yolo_rdna1 import make_synthetic_thermal

    data = make_synthetic_thermal(work / "data", n_train=args.n_train, n_val=32, seed=0)
    print(f"dataset: {args.n_train} images in {time.perf_counter() - t_start:.1f} s", flush=True)
    verdicts = work / "verdicts"
    meta = harness.meta(
        args.device,
        n_train=args.n_train,
        imgsz=args.imgsz,
        batch=args.batch,
        workers=args.workers,
        epochs=args.epochs,
        reps=args.reps,
        configs=args.configs,
    )
    common = [
        "--n-train",
        str(args.n_train),
        "--imgsz",
        str(args.imgsz),
        "--batch",
        str(args.batch),
        "--epochs",
        str(args.epochs),
        "--workers",
        str(args.workers),
        "--device",
        args.device,
        "--data",
        str(data),
        "--verdicts",
        str(verdicts),
    ]
    logs = work / "logs"
    logs.mkdir()
    probe = None
    if not args.no_probe:
        t = time.perf_counter()
        rc = harness.run_module(
            "benchmarks.probe_time",
            [
                "--device",
                args.device,
                "--imgsz",
                str(args.imgsz),
                "--batch",
                str(args.batch),
                "--data",
                str(data),
                "--verdicts",
                str(verdicts),
                "--out",
                str(work / "probe"),
            ],
            logs / "probe.log",
            timeout=args.probe_timeout_s,
        )
        if rc == 0:
            probe = json.loads((work / "probe" / "probe_time.json").read_text())
        print(
            f"probe: rc {rc} in {time.perf_counter() - t:.1f} s" + (f", cold {probe['cold_s']:.1f} s" if probe else ""),
            flush=True,
        )

    rows: list[dict[str, Any]] = []
    took: dict[str, float] = {}
    for i, (rep, label) in enumerate(order(args.configs.split(","), args.reps)):
        guess = took.get(label, max(took.values(), default=0.0))
        if time.perf_counter() - t_start + guess > args.budget_s:
            print(f"budget: skipping {label} (rep {rep}) and the rest", flush=True)
            break
        name = label[: -len(NOTF32)] if label.endswith(NOTF32) else label
        run_out = work / f"run{i:02d}"
        t = time.perf_counter()
        rc = harness.run_module(
            "benchmarks.train_epoch",
            ["--configs", name, "--out", str(run_out), *common] + (["--no-tf32"] if label.endswith(NOTF32) else []),
            logs / f"run{i:02d}_{label}.log",
        )
        took[label] = time.perf_counter() - t
        row: dict[str, Any] = {"rep": rep, "label": label, "rc": rc, "process_s": took[label]}
        try:
            trained = json.loads((run_out / "train_epoch.json").read_text())["rows"][0]
        except (OSError, ValueError, IndexError, KeyError):
            trained = {"error": f"exit code {rc}, no result (see run{i:02d}_{label}.log)"}
        row.update(trained, config=label)
        totals = trained.get("guard_totals") or {}
        row["share"] = (
            totals["last_epoch_bypassed"] / totals["last_epoch_calls"] if totals.get("last_epoch_calls") else None
        )
        row["bypassed"] = (
            f"{totals['last_epoch_bypassed']}/{totals['last_epoch_calls']}" if totals.get("last_epoch_calls") else "-"
        )
        rows.append(row)
        print(
            f"{i:2d} rep {rep} {label:24s} "
            + (
                f"epoch {row['last_epoch_s']:.2f} s, {row['images_per_s']:.1f} img/s, peak {row['peak_mib']:.0f} MiB, "
                f"bypassed {row['bypassed']}"
                if "error" not in row
                else row["error"]
            )
            + f" ({took[label]:.0f} s)",
            flush=True,
        )
        harness.write_json(out / "headline.json", {"meta": meta, "probe": probe, "rows": rows})
        (out / "headline.md").write_text(summary(rows, [probe] if probe else [], meta))
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    text = summary(rows, [probe] if probe else [], meta) if rows else "no training ran\n"
    print(text, flush=True)
    return 0 if rows and all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
