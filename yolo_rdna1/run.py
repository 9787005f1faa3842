"""One guarded training process: what the callbacks set up when a run starts, and tear down.

Order at start (``on_pretrain_routine_start``, before the trainer builds its model):

1. crash attribution: a conv the previous process of this run left in flight becomes a
   ``hang``/``abort`` verdict, so the restarted run bypasses it;
2. the MIOpen env profile is exported (before the first GPU conv of the process);
3. the run's signatures are discovered and whatever has no verdict is probed in children;
4. the guard is enabled with a route table over the stored verdicts and this run's breadcrumb.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._compat import set_autograd_multithreading
from .bypass import bordered
from .faults import ENV_VAR as FAULTS_ENV
from .faults import FaultProfile, load_profile, profile_from_env
from .files import atomic_write
from .guard import ConvGuard, disable, enable
from .options import PluginOptions
from .runfiles import REPORT, TRAIL_ENV_SUFFIX, VERDICTS_DB, WATCHDOG_LOG, breadcrumb_stem
from .verdicts import breadcrumb as crumbs
from .verdicts.store import Verdict, VerdictStore
from .verdicts.table import VerdictRouteTable, device_key

LOGGER = logging.getLogger("yolo_rdna1")


def trail_env(stem: Path) -> str | None:
    """The env profile a (dead) process's breadcrumb trail was written under; None if unknown."""
    try:
        name = Path(str(stem) + TRAIL_ENV_SUFFIX).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if name and name.isprintable() and len(name) <= 200 else None


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


@dataclass
class GuardedRun:
    """The guard, verdicts and crash trail of one training process."""

    options: PluginOptions
    save_dir: Path
    device: torch.device
    rank: int = -1
    guard: ConvGuard | None = None
    store: VerdictStore | None = None
    device_key: str = ""
    env_profile: str = "default"
    attributed: list[tuple[str, str]] = field(default_factory=list)
    probe_summary: str = ""
    final_totals: dict[str, int] = field(default_factory=dict)
    final_routes: list[dict] = field(default_factory=list)
    thermal_pause_total_s: float = 0.0
    _crumb: crumbs.Breadcrumb | None = None
    _sampler: Any = None
    _thermal: Any = None
    _sig_totals: dict[str, list[int]] = field(default_factory=dict)
    _module_totals: dict[str, list[int]] = field(default_factory=dict)
    _telemetry_source: str = "none"
    _fallbacks_total: int = 0
    _epochs: list[dict[str, float]] = field(default_factory=list)
    _watchdog: Any = None
    _table: Any = None
    _other_ranks: dict[str, int] = field(default_factory=dict)
    _serial: tuple[int, bool] | None = None  # (thread, previous autograd multithreading flag)

    def start(self, args: Any = None) -> ConvGuard:
        """Set everything up and enable the guard; ``args`` are the trainer's (imgsz, batch, data, amp)."""
        from .device import describe_device, routes_by_default
        from .probe.api import run_probe
        from .probe.discovery import discover
        from .probe.envprofiles import apply_env_profile, load_env_profile, shipped_env_profiles

        opts = self.options
        if opts.faults:
            os.environ[FAULTS_ENV] = opts.faults  # probe children and DDP ranks simulate the same
        profile: FaultProfile | None = load_profile(opts.faults) if opts.faults else profile_from_env()
        info = describe_device(self.device)
        self.device_key = device_key(info.fingerprint, profile)
        self.store = VerdictStore(Path(opts.cache) / VERDICTS_DB if opts.cache else None)
        stem = breadcrumb_stem(self.save_dir, self.rank)
        before = trail_env(stem)
        self._attribute_crash(before)

        routes = opts.guard == "auto" and (profile is not None or routes_by_default(info))
        amp = bool(getattr(args, "amp", False)) and self.device.type == "cuda"
        data = getattr(args, "data", None)
        data = data if data and Path(str(data)).is_file() else None

        def probe_signatures(sigs, env_name: str):
            return run_probe(sigs, self.device, env_name, self.store, progress=self.rank <= 0, faults=profile or False)

        env_name = opts.env_profile
        if env_name == "auto" and before in shipped_env_profiles():
            # the run's earlier process died under this profile: its crash verdicts apply here only
            env_name = before
            LOGGER.info("yolo_rdna1: MIOpen env profile %s, as in the earlier process of this run", env_name)
        if routes and opts.probe and args is not None:
            sigs = discover(getattr(args, "model", "yolov8n.yaml"), imgsz=int(args.imgsz), batch=int(args.batch), data=data, backend=info.backend, amp=amp)
            if env_name == "auto":
                from .probe.api import flops_ok_share

                scores = {n: flops_ok_share(probe_signatures(sigs, n).verdicts) for n in shipped_env_profiles()}
                env_name = max(scores, key=lambda n: (scores[n], n == "default"))
                LOGGER.info("yolo_rdna1: MIOpen env profile %s (ok share of conv FLOPs: %s)", env_name, ", ".join(f"{k} {v:.0%}" for k, v in scores.items()))
            report = probe_signatures(sigs, env_name)
            self.probe_summary = report.summary()
            LOGGER.info("yolo_rdna1: %s", self.probe_summary)
        elif env_name == "auto":
            env_name = "default"
        env = load_env_profile(env_name)
        env_name = self.env_profile = env.name  # the name verdicts are stored under (a file's own name)
        apply_env_profile(env)

        # Until training starts, convs without a verdict (the stride probe at 256 px when the model
        # is built, thop's FLOPs count) take the bypass: a few forwards, not worth a probe each.
        # From then on ``unknown=probe`` judges them in the background (see VerdictRouteTable).
        # On a device whose conv library is trusted (and no fault profile), ``auto`` routes
        # nothing: no table, so no signature is ever probed at run time.
        table = None
        if routes:
            table = VerdictRouteTable(
                self.store.table(self.device_key, env_name),
                unknown="bypass" if opts.unknown == "probe" else opts.unknown,
                prober=lambda sigs: run_probe(sigs, self.device, env, self.store, progress=False, faults=profile or False).verdicts,
                prefer_faster=opts.prefer_faster,
            )
        self._table = table
        self._crumb = None
        if routes:
            atomic_write(Path(str(stem) + TRAIL_ENV_SUFFIX), env_name + "\n")  # before the first conv can be in flight
            self._crumb = crumbs.Breadcrumb(stem)
        self.guard = ConvGuard(policy=opts.guard, faults=profile or False, route_table=table, counting=False, breadcrumb=self._crumb)
        enable(self.guard)
        self._start_telemetry(info)
        return self.guard

    # -- telemetry and the thermal guard ---------------------------------------------------------
    def _start_telemetry(self, info: Any) -> None:
        from .telemetry import TelemetrySampler, open_reader
        from .telemetry.thermal import ThermalGuard, default_limits

        reader = open_reader(info)
        self._telemetry_source = getattr(reader, "source", "none")
        if self.options.telemetry > 0:
            self._sampler = TelemetrySampler(reader, interval=float(self.options.telemetry))
            self._sampler.start()
        if self.options.thermal:
            limit, resume = default_limits(info)
            limit = self.options.thermal_limit if self.options.thermal_limit is not None else limit
            resume = self.options.thermal_resume if self.options.thermal_resume is not None else min(resume, limit - 5)
            read = self._sampler.latest if self._sampler is not None else reader.read
            self._thermal = ThermalGuard(limit, resume, read)

    def enter_training(self) -> None:
        """Training batches begin: unknown signatures get the configured policy, the watchdog
        starts, and (``serial_backward``) this thread's backward calls stay on this thread."""
        if self._table is not None:
            self._table.unknown = self.options.unknown
        if self.options.serial_backward and self.guard is not None and self._serial is None:
            prev = set_autograd_multithreading(False)
            if prev is not None:
                self._serial = (threading.get_ident(), prev)
        if self.options.stall_timeout and self._watchdog is None:
            from .supervision import StallWatchdog

            self._watchdog = StallWatchdog(
                self.options.stall_timeout, self.save_dir / WATCHDOG_LOG, breadcrumb_stem(self.save_dir, self.rank)
            ).start()

    def heartbeat(self) -> None:
        if self._watchdog is not None:
            self._watchdog.beat()

    def between_batches(self) -> None:
        """Called after every train batch: the heartbeat, and the only place training may pause for heat."""
        if self._thermal is not None:
            self._thermal.check()
        if self.guard is not None:
            self.guard.refresh()
        self.heartbeat()

    # -- per-epoch metrics -----------------------------------------------------------------------
    def _accumulate(self) -> None:
        """Move the guard's counters (since the last reset) into the run's totals, and reset."""
        if self.guard is None:
            return
        self._fallbacks_total += self.guard.totals()["fallbacks"]
        for row in self.guard.per_signature():
            t = self._sig_totals.setdefault(row["signature"], [0, 0])
            t[0] += row["calls"]
            t[1] += row["bypassed"]
        for name, row in self.guard.per_module().items():
            t = self._module_totals.setdefault(name, [0, 0])
            t[0] += row["calls"]
            t[1] += row["bypassed"]
        self.guard.reset_counts()

    def run_totals(self) -> dict[str, int]:
        """Calls, bypassed calls and fallbacks of the whole run so far."""
        self._accumulate()
        return {
            "calls": sum(c for c, _ in self._sig_totals.values()),
            "bypassed": sum(b for _, b in self._sig_totals.values()),
            "fallbacks": self._fallbacks_total,
        }

    def epoch_start(self) -> None:
        self._accumulate()
        self.heartbeat()
        if self._sampler is not None:
            self._sampler.reset_window()

    def train_epoch_end(self) -> None:
        """Every rank's train counts of this epoch, summed (DDP); before rank 0 validates alone.

        Ultralytics runs ``on_train_epoch_end`` on every rank and then validates and saves the
        CSV row on rank 0 only, so this is the last point where all ranks can meet: the other
        ranks' share is kept and added to rank 0's own counts in :meth:`epoch_metrics`.
        """
        if self.guard is None:
            return
        local = self.guard.totals()
        total = reduce_counts(local)
        self._other_ranks = {k: total[k] - local[k] for k in local}

    def epoch_metrics(self) -> dict[str, float]:
        """The rdna1 columns of this epoch: always the same keys, always numbers (job-wide under DDP)."""
        from .telemetry import window_metrics

        t = self.guard.totals() if self.guard is not None else {"calls": 0, "bypassed": 0, "fallbacks": 0}
        t = {k: v + self._other_ranks.get(k, 0) for k, v in t.items()}
        self._other_ranks = {}
        paused = self._thermal.take_paused() if self._thermal is not None else 0.0
        self.thermal_pause_total_s += paused
        window = self._sampler.window() if self._sampler is not None else {}
        metrics = {
            "rdna1/bypass_rate": t["bypassed"] / t["calls"] if t["calls"] else 0.0,
            "rdna1/fallbacks": float(t["fallbacks"]),
            **window_metrics(window, paused),
        }
        self._epochs.append({"calls": t["calls"], "bypassed": t["bypassed"], **metrics})
        return metrics

    # -- the run report ---------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """``rdna1_report.json``: routes and counts of the whole run, per signature and module."""
        totals = self.run_totals()
        routes = {r["signature"]: r for r in (self.guard.per_signature() if self.guard else [])}
        signatures = []
        for key, (calls, bypassed) in sorted(self._sig_totals.items()):
            r = routes.get(key, {})
            signatures.append({"signature": key, "routes": r.get("routes"), "algorithm": r.get("algorithm"), "calls": calls,
                               "bypassed": bypassed, "reasons": r.get("reasons", {}), "modules": r.get("modules", [])})
        calls, bypassed = totals["calls"], totals["bypassed"]
        return {
            "device": self.device_key,
            "env_profile": self.env_profile,
            "policy": self.options.guard,
            "options": self.options.as_dict(),
            "probe": self.probe_summary,
            "attributed_crashes": [{"signature": k, "cause": c} for k, c in self.attributed],
            "calls": calls,
            "bypassed": bypassed,
            "bypass_rate": bypassed / calls if calls else 0.0,
            "fallbacks": totals["fallbacks"],
            "thermal_pause_s": self.thermal_pause_total_s,
            "telemetry_source": self._telemetry_source,
            "epochs": self._epochs,
            "signatures": signatures,
            "modules": {name: {"calls": c, "bypassed": b, "bypass_share": b / c if c else 0.0} for name, (c, b) in sorted(self._module_totals.items())},
            "written": time.time(),
        }

    def write_report(self) -> Path:
        path = self.save_dir / REPORT
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.report(), indent=1))
        tmp.replace(path)
        return path

    def _attribute_crash(self, env: str | None) -> None:
        """Blame the conv the last process of this run died in (if any) and store the verdict.

        ``env`` is the profile the dead process ran under (:func:`trail_env`); a trail that does
        not say falls back to the profile this process is configured with.
        """
        stem = breadcrumb_stem(self.save_dir, self.rank)
        found = crumbs.in_flight(stem)
        if found is not None:
            key, cause = found
            if env is None:
                from .probe.envprofiles import load_env_profile

                env = load_env_profile(self.options.env_profile).name if self.options.env_profile != "auto" else "default"
            self.store.put(Verdict(self.device_key, env, key, cause, "in flight when the training process died", source="crash"))
            self.attributed.append((key, cause))
            from .supervision import journal

            journal.append(self.save_dir, "attributed", signature=key, cause=cause)
            LOGGER.warning("yolo_rdna1: the last training process died (%s) in %s; it takes the bypass from now on", cause, key)
        crumbs.clear(stem)

    def record_runtime_failures(self) -> int:
        """Store what failed in-process (vendor errors that fell back), so later runs skip it."""
        if self.guard is None or self.store is None:
            return 0
        found = [
            Verdict(self.device_key, self.env_profile, r.sig.with_direction(d).key(), "error", reason, source="runtime")
            for r in self.guard.routes()
            for d, reason in r.reasons.items()
        ]
        return self.store.put(found)

    def finish(self) -> None:
        """Clean end of the process: record what was learned, drop the crash trail, unpatch."""
        if self.guard is not None:
            self.final_totals = self.run_totals()
            self.final_routes = self.guard.per_signature()
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._table is not None:
            self._table.close()
        if self._serial is not None and self._serial[0] == threading.get_ident():  # the flag is per thread
            set_autograd_multithreading(self._serial[1])
            self._serial = None
        try:
            self.record_runtime_failures()
        finally:
            if self._crumb is not None:
                self._crumb.close()
                self._crumb = None
                Path(str(breadcrumb_stem(self.save_dir, self.rank)) + TRAIL_ENV_SUFFIX).unlink(missing_ok=True)
            disable()
            bordered.release()  # the bypass's kept pad buffers go back to the caching allocator
