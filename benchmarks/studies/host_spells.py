"""The bypass step benchmark with every round classed by the host's speed (a study of the lent hosts).

The lent machines' host runs Python and dispatcher work at about half speed for seconds at a
time (``bypass_diag --parts modes``: a pure-Python loop and tiny view ops take 2x as long in
those spells, kernel launches 1.4x). A host-bound step slows by how much of its time is such
work, so the bypass, which issues about twice cuDNN's host ops, is hit harder and its ratio to
cuDNN depends on the spell. This runs :mod:`benchmarks.bypass_step` with each round bracketed by
a *canary* (a fixed run of tiny view ops, no GPU work) and classed fast (canary within 25% of
its fastest) or slow (60% over it or more), and gives the paired ratios per class, with what the
kernel saw per round (the share of all CPUs' time stolen by the hypervisor, this process's
involuntary context switches, CPU moves, timestamps). ``--pool-spells`` pools saved runs by
canary bin.

    python3 -m benchmarks.studies.host_spells --configs 640x16:fp32 --paths cudnn_cl,bypass --extra-fp32-paths '' \\
        --sig-configs '' --no-profile --rounds 80 --per-round 2 --out "$OUT"          # on the GPU
    python3 -m benchmarks.studies.host_spells --pool-spells run*/bypass_step.json     # no GPU
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import bypass_step
from benchmarks.harness import fmt

#: canary time over its fastest: at most this for a fast-spell round, at least SLOW for a slow one
FAST, SLOW = 1.25, 1.6
#: canary bins (ms) of the pooled table: full speed ... half-speed spell
CANARY_BINS = (0.0, 2.2, 3.0, 4.5, float("inf"))


def host_canary(device: torch.device, n: int = 2000) -> float:
    """Milliseconds for ``n`` tiny view ops: Python + dispatcher work only, no kernel, no GPU wait."""
    t = torch.empty(64, 16, device=device)
    t0 = time.perf_counter()
    for _ in range(n):
        t.as_strided((16, 64), (1, 16))
    return (time.perf_counter() - t0) * 1e3


def host_state() -> dict[str, Any] | None:
    """What the kernel knows about this process's CPU time (Linux; None elsewhere): the CPU ticks
    of every state summed over all CPUs (``/proc/stat``), this process's involuntary context
    switches and the CPU it last ran on.

    Why: the slow spells could be the hypervisor taking the vCPUs (steal time), other work on
    this VM preempting the process (involuntary switches), or neither (the physical core slows,
    say a busy hyperthread sibling, which no counter here shows). Deltas over a round say which.
    """
    try:
        import resource  # Unix only

        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # the CPU a process last ran on is field 39 of /proc/self/stat (after the parenthesised name)
        cpu = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (ImportError, OSError, IndexError, ValueError):
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return {
        "steal": ticks[7],
        "total": sum(ticks),
        "nivcsw": resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw,
        "cpu": cpu,
        "t": time.time(),
    }


def host_delta(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per round: steal % of all CPUs' time, involuntary switches, whether the process changed
    CPU, and when the round started and ended (to line rounds up with other processes' logs)."""
    if a is None or b is None:
        return None
    total = max(1, b["total"] - a["total"])
    return {
        "steal_pct": round(100 * (b["steal"] - a["steal"]) / total, 2),
        "nivcsw": b["nivcsw"] - a["nivcsw"],
        "moved": a["cpu"] != b["cpu"],
        "t0": round(a["t"], 3),
        "t1": round(b["t"], 3),
    }


def spell_classes(canary: list[float]) -> dict[str, list[int]]:
    """Round indices of the host's fast spell (canary within FAST of its fastest) and slow spell
    (SLOW or more over it); rounds in between are in neither."""
    low = min(canary)
    return {
        "fast": [i for i, c in enumerate(canary) if c <= FAST * low],
        "slow": [i for i, c in enumerate(canary) if c >= SLOW * low],
    }


class Canary:
    """A :class:`benchmarks.bypass_step.RoundObserver`: the canary and host state around each round."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.canary: list[float] = []
        self.states: list[dict[str, Any] | None] = []

    def start_round(self) -> None:
        self._state = host_state()
        self._before = host_canary(self.device)

    def end_round(self) -> None:
        self.canary.append((self._before + host_canary(self.device)) / 2)
        self.states.append(host_delta(self._state, host_state()))

    def annotate(self, rows: list[dict[str, Any]]) -> None:
        """Per path: round medians and paired ratios to cuDNN channels_last within each spell class."""
        ref = next((r for r in rows if r["path"] == "cudnn_cl" and "round_ms" in r), None)
        for r in rows:
            r["canary_ms"] = [round(c, 3) for c in self.canary]
            if all(st is not None for st in self.states):
                r["host_state"] = self.states
        if ref is None or not self.canary:
            return
        for r in rows:
            if not r.get("round_ms"):
                continue
            for name, idx in spell_classes(self.canary).items():
                r[f"{name}_rounds"] = len(idx)
                r[f"{name}_ms"] = statistics.median(r["round_ms"][i] for i in idx) if idx else float("nan")
                r[f"{name}_paired"] = (
                    statistics.median(r["round_ms"][i] / ref["round_ms"][i] for i in idx) if idx else float("nan")
                )


def spell_host(canary: list[float], states: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per spell class: median steal %, median involuntary switches per round, share of rounds that moved CPU."""
    out = {}
    for name, idx in spell_classes(canary).items():
        sel = [states[i] for i in idx]
        if sel:
            out[name] = {
                "rounds": len(sel),
                "steal_pct": statistics.median(st["steal_pct"] for st in sel),
                "nivcsw": statistics.median(st["nivcsw"] for st in sel),
                "moved": sum(st["moved"] for st in sel) / len(sel),
            }
    return out


def spell_report(model_rows: list[dict[str, Any]]) -> str:
    """Markdown: per config, the paired ratios by spell class and the host state per class."""
    lines: list[str] = []
    for size, batch, dt in bypass_step.configs_of(model_rows):
        rows = [
            r for r in model_rows if (r["size"], r["batch"], r["dtype"]) == (size, batch, dt) and "fast_rounds" in r
        ]
        if not rows:
            continue
        c = rows[0]["canary_ms"]
        lines += [
            f"### {size} px, batch {batch}, {dt}: by host spell (canary fastest {fmt(min(c), 2)} ms, median "
            f"{fmt(statistics.median(c), 2)}, slowest {fmt(max(c), 2)}; fast <= {FAST}x its fastest, slow >= {SLOW}x)",
            "",
            "| path | fast rounds | ms/step, fast | paired vs cuDNN "
            "channels_last, fast | slow rounds | ms/step, slow | paired, slow |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['path']} | {r['fast_rounds']} | {fmt(r['fast_ms'])} | {fmt(r['fast_paired'], 2)} | "
                f"{r['slow_rounds']} | {fmt(r['slow_ms'])} | {fmt(r['slow_paired'], 2)} |"
            )
        lines.append("")
        st = rows[0].get("host_state")
        if st:
            lines += [
                "Host state per round (median; steal: % of all CPUs' time taken by the hypervisor; switches: this "
                "process's involuntary context switches; moved: rounds that ended on another CPU):",
                "",
            ]
            for name, v in spell_host(c, st).items():
                lines.append(
                    f"* {name} rounds ({v['rounds']}): steal {v['steal_pct']:.2f} %, "
                    f"switches {v['nivcsw']:g}, moved {v['moved']:.0%}"
                )
            lines.append("")
    return "\n".join(lines)


def pool_spells(files: list[str], path: str = "bypass") -> str:
    """Markdown: the per-round ratio of ``path`` to cuDNN channels_last against the round's
    canary, pooled over saved runs (``bypass_step.json``), per config."""
    pts: dict[tuple, list[tuple[float, float, float, float]]] = collections.defaultdict(list)
    for f in files:
        model = json.loads(Path(f).read_text())["model"]
        for size, batch, dt in {(r["size"], r["batch"], r["dtype"]) for r in model}:
            rows = {r["path"]: r for r in model if (r["size"], r["batch"], r["dtype"]) == (size, batch, dt)}
            ref, r = rows.get("cudnn_cl"), rows.get(path)
            if ref and r and ref.get("canary_ms"):
                pts[(size, batch, dt)] += [
                    (c, a / b, b, a) for c, a, b in zip(ref["canary_ms"], r["round_ms"], ref["round_ms"])
                ]
    lines = [
        f"| canary ms | {' | '.join(f'{s} px b{b} {d}' for s, b, d in sorted(pts))} |",
        "|---|" + "---|" * len(pts),
    ]
    for lo, hi in zip(CANARY_BINS, CANARY_BINS[1:]):
        cells = []
        for key in sorted(pts):
            sel = [p for p in pts[key] if lo <= p[0] < hi]
            cells.append(
                f"{statistics.median(p[1] for p in sel):.2f} ({len(sel)} rounds; "
                f"{statistics.median(p[2] for p in sel):.1f} vs {statistics.median(p[3] for p in sel):.1f} ms)"
                if sel
                else "-"
            )
        lines.append(f"| {lo}-{hi} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--pool-spells"]:
        print(pool_spells(argv[1:]))
        return 0
    return bypass_step.main(argv, observer=Canary, extra_report=spell_report)


if __name__ == "__main__":
    raise SystemExit(main())
