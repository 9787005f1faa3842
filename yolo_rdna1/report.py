"""``yolo-rdna1 report RUN_DIR``: what the guard did in a run, as text and as ``rdna1.png``."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from .errors import Rdna1Error
from .runfiles import PLOT as PLOT_FILE
from .runfiles import REPORT as REPORT_FILE
from .runfiles import RESULTS_CSV


class ReportError(Rdna1Error):
    """A folder that is not a run, or a report that cannot be read."""


def load_report(run_dir: str | Path) -> dict[str, Any]:
    run = Path(run_dir)
    path = run / REPORT_FILE
    if not run.is_dir():
        raise ReportError(f"{run} is not a folder; give a training run dir such as runs/detect/train")
    if not path.is_file():
        raise ReportError(
            f"{run} has no {REPORT_FILE}; it is written when a guarded training ends (was yolo_rdna1 active?)"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e})") from None


def _natural(name: str) -> list[Any]:
    """Sort key that puts ``model.2`` before ``model.10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def module_names(modules: list[str], most: int = 3) -> str:
    """The layers a signature belongs to, for a reader: Ultralytics' names of the layers
    (``model.2.cv1.conv``), the training model's (``model.``) and its EMA copy's (``ema.``) under
    one name, the first ``most`` in model order and how many more."""
    layers = {m.split(".", 1)[1] if m.startswith(("model.", "ema.")) and "." in m else m for m in modules}
    names = sorted(layers, key=_natural)
    more = f" (+{len(names) - most} more)" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def summary_lines(report: dict[str, Any], top: int = 10) -> list[str]:
    """A short table: totals, then the signatures that took the bypass most, with their modules."""
    lines = [
        f"yolo_rdna1: {report['bypassed']} of {report['calls']} conv calls bypassed ({report['bypass_rate']:.1%}), "
        f"{report['fallbacks']} in-process fallbacks, {report['thermal_pause_s']:.0f} s thermal pause; "
        f"policy {report['policy']}, env profile {report['env_profile']}",
    ]
    if report.get("probe"):
        lines.append(f"yolo_rdna1: probe: {report['probe']}")
    for crash in report.get("attributed_crashes", []):
        lines.append(f"yolo_rdna1: attributed {crash['cause']}: {crash['signature']}")
    rows = sorted((s for s in report.get("signatures", []) if s["bypassed"]), key=lambda s: -s["bypassed"])[:top]
    if rows:
        lines.append(f"{'bypassed':>9} {'calls':>8}  routes (fwd/bwd_data/bwd_weight)  signature  <- modules")
        for s in rows:
            r = s.get("routes") or {}
            routes = "/".join(r.get(d, "?")[0] for d in ("fwd", "bwd_data", "bwd_weight"))
            where = f"  <- {module_names(s['modules'])}" if s.get("modules") else ""
            lines.append(f"{s['bypassed']:>9} {s['calls']:>8}  {routes:<33} {s['signature']}{where}")
    return lines


def read_results(run_dir: str | Path) -> list[dict[str, float]]:
    """results.csv rows as numbers (Ultralytics pads its header with spaces)."""
    path = Path(run_dir) / RESULTS_CSV
    if not path.is_file():
        return []
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.append({k.strip(): float(v) for k, v in row.items() if k is not None and v not in (None, "")})
    return out


def figure(rows: list[dict[str, float]]) -> Any:
    """The figure of ``rdna1.png``: the share of conv calls on the bypass per epoch, on a fixed
    0-100 % axis (a share of 60-66 % must not look like a swing), and the GPU temperatures;
    epochs are whole numbers, so both x axes tick only at integers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5), tight_layout=True)
    a.plot(epochs, [100 * r["rdna1/bypass_rate"] for r in rows], marker="o")
    a.set(title="conv calls on the bypass", xlabel="epoch", ylabel="%", ylim=(0, 100))
    for key, label in (
        ("rdna1/temp_edge_max", "edge"),
        ("rdna1/temp_junction_max", "junction"),
        ("rdna1/temp_mem_max", "memory"),
    ):
        values = [r.get(key, -1.0) for r in rows]
        if any(v >= 0 for v in values):
            b.plot(epochs, [v if v >= 0 else float("nan") for v in values], marker="o", label=label)
    b.set(title="GPU temperature (max per epoch)", xlabel="epoch", ylabel="C")
    if b.get_legend_handles_labels()[0]:
        b.legend()
    else:
        b.text(0.5, 0.5, "no temperature sensor", ha="center", va="center", transform=b.transAxes)
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot(run_dir: str | Path) -> Path | None:
    """``rdna1.png`` beside results.png: bypass rate and temperatures per epoch."""
    rows = read_results(run_dir)
    if not rows or "rdna1/bypass_rate" not in rows[0]:
        return None
    import matplotlib.pyplot as plt

    fig = figure(rows)
    path = Path(run_dir) / PLOT_FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def journal_lines(run_dir: str | Path) -> list[str]:
    """The supervisor's story of the run (``journal.jsonl``): restarts, causes, lost minutes."""
    from .supervision import journal

    if not (Path(run_dir) / journal.JOURNAL_FILE).is_file():
        return []
    j = journal.summarize(run_dir)
    causes = ", ".join(f"{n} {cause}" for cause, n in sorted(j["causes"].items())) or "none"
    lines = [
        f"yolo_rdna1: journal: {j['restarts']} restart(s) ({causes}), {j['lost_minutes']:.1f} min of "
        f"training lost to them, ended: {j['ended'] or 'not yet (running, or stopped without an end record)'}"
    ]
    lines += [f"yolo_rdna1: journal: attributed {sig}" for sig in j["attributed"]]
    if j["skipped"]:
        lines.append(f"yolo_rdna1: journal: {j['skipped']} line(s) skipped: torn by a crash mid-write, or not an event")
    return lines


def print_report(run_dir: str | Path) -> int:
    """Print the run report and the journal summary, draw rdna1.png; a supervised run that never
    finished has only its journal, and that is still worth reading."""
    story = journal_lines(run_dir) if Path(run_dir).is_dir() else []
    try:
        report = load_report(run_dir)
    except ReportError:
        if not story:
            raise
        report = None
    for line in (summary_lines(report, top=30) if report else []) + story:
        print(line)
    png = plot(run_dir)
    if png is not None:
        print(f"plot: {png}")
    return 0
