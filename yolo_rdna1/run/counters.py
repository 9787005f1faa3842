"""The guard's counts of one training process, per epoch and for the whole run, and the run report.

The guard counts since its last reset; :meth:`RunCounters.accumulate` moves those counts into the
run's totals (per signature and per module) at each epoch start and at the end, so the per-epoch
rdna1 columns and the whole-run report come from the same numbers.
"""

from __future__ import annotations

import time
from typing import Any

import torch


def reduce_counts(counts: dict[str, int]) -> dict[str, int]:
    """Sum ``counts`` over the ranks of a DDP job (every rank must call it); as is without one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return dict(counts)
    keys = sorted(counts)
    # NCCL reduces only GPU tensors; gloo (CPU jobs) only CPU tensors.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(counts[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: int(v) for k, v in zip(keys, t.tolist())}


_NO_COUNTS = {"calls": 0, "bypassed": 0, "fallbacks": 0}


def signature_row(key: str, calls: int, bypassed: int, route: dict[str, Any]) -> dict[str, Any]:
    """One signature of a report: its counts and what the guard's ``per_signature()`` says of it."""
    return {
        "signature": key,
        "routes": route.get("routes"),
        "algorithm": route.get("algorithm"),
        "calls": calls,
        "bypassed": bypassed,
        "reasons": route.get("reasons", {}),
        "modules": route.get("modules", []),
    }


class RunCounters:
    """Totals per signature and module, the rows of each epoch, and other DDP ranks' share."""

    def __init__(self) -> None:
        self.signatures: dict[str, list[int]] = {}  # key -> [calls, bypassed]
        self.modules: dict[str, list[int]] = {}  # module name -> [calls, bypassed]
        self.fallbacks = 0
        self.epochs: list[dict[str, float]] = []
        self.thermal_pause_s = 0.0
        self._other_ranks: dict[str, int] = {}

    def accumulate(self, guard: Any) -> None:
        """Move ``guard``'s counters (since its last reset) into the run's totals, and reset them."""
        if guard is None:
            return
        self.fallbacks += guard.totals()["fallbacks"]
        for row in guard.per_signature():
            t = self.signatures.setdefault(row["signature"], [0, 0])
            t[0] += row["calls"]
            t[1] += row["bypassed"]
        for name, row in guard.per_module().items():
            t = self.modules.setdefault(name, [0, 0])
            t[0] += row["calls"]
            t[1] += row["bypassed"]
        guard.reset_counts()

    def totals(self, guard: Any) -> dict[str, int]:
        """Calls, bypassed calls and fallbacks of the whole run so far."""
        self.accumulate(guard)
        return {
            "calls": sum(c for c, _ in self.signatures.values()),
            "bypassed": sum(b for _, b in self.signatures.values()),
            "fallbacks": self.fallbacks,
        }

    def train_epoch_end(self, guard: Any) -> None:
        """Every rank's train counts of this epoch, summed (DDP); before rank 0 validates alone.

        Ultralytics runs ``on_train_epoch_end`` on every rank and then validates and saves the
        CSV row on rank 0 only, so this is the last point where all ranks can meet: the other
        ranks' share is kept and added to rank 0's own counts in :meth:`epoch_metrics`.
        """
        if guard is None:
            return
        local = guard.totals()
        total = reduce_counts(local)
        self._other_ranks = {k: total[k] - local[k] for k in local}

    def epoch_metrics(self, guard: Any, paused_s: float, window: dict[str, Any]) -> dict[str, float]:
        """The rdna1 columns of this epoch: always the same keys, always numbers (job-wide under DDP)."""
        from ..telemetry import window_metrics

        t = guard.totals() if guard is not None else dict(_NO_COUNTS)
        t = {k: v + self._other_ranks.get(k, 0) for k, v in t.items()}
        self._other_ranks = {}
        self.thermal_pause_s += paused_s
        metrics = {
            "rdna1/bypass_rate": t["bypassed"] / t["calls"] if t["calls"] else 0.0,
            "rdna1/fallbacks": float(t["fallbacks"]),
            **window_metrics(window, paused_s),
        }
        self.epochs.append({"calls": t["calls"], "bypassed": t["bypassed"], **metrics})
        return metrics

    def report(self, guard: Any, head: dict[str, Any]) -> dict[str, Any]:
        """``rdna1_report.json``: ``head`` (device, profile, options, ...) and the whole run's counts."""
        totals = self.totals(guard)
        routes = {r["signature"]: r for r in (guard.per_signature() if guard else [])}
        signatures = [signature_row(k, c, b, routes.get(k, {})) for k, (c, b) in sorted(self.signatures.items())]
        calls, bypassed = totals["calls"], totals["bypassed"]
        return {
            **head,
            "calls": calls,
            "bypassed": bypassed,
            "bypass_rate": bypassed / calls if calls else 0.0,
            "fallbacks": totals["fallbacks"],
            "thermal_pause_s": self.thermal_pause_s,
            "epochs": self.epochs,
            "signatures": signatures,
            "modules": {
                name: {"calls": c, "bypassed": b, "bypass_share": b / c if c else 0.0}
                for name, (c, b) in sorted(self.modules.items())
            },
            "written": time.time(),
        }
