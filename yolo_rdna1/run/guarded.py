"""One guarded process (a training, or a val/predict/export call): what the callbacks set up
when it starts and tear down when it ends.

:class:`GuardedRun` puts three parts together: the :class:`~.plan.RoutingPlan` (verdicts, crash
attribution, probes, env profile, route table), the guard built from it, the
:class:`~.services.RunServices` beside the training (telemetry, thermal pause, watchdog, serial
backward) and the :class:`~.counters.RunCounters` behind the rdna1 columns and the run report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..bypass import bordered
from ..files import atomic_write
from ..guard import ConvGuard, disable, enable
from ..options import PluginOptions
from ..runfiles import REPORT
from .counters import RunCounters
from .plan import RoutingPlan
from .services import RunServices

LOGGER = logging.getLogger("yolo_rdna1")


class GuardedRun:
    """The guard, verdicts, crash trail, services and counts of one process."""

    def __init__(self, options: PluginOptions, save_dir: Path, device: torch.device, rank: int = -1) -> None:
        self.options = options
        self.save_dir = Path(save_dir)
        self.device = device
        self.rank = rank
        self.plan = RoutingPlan(options, self.save_dir, device, rank)
        self.services = RunServices(options, self.save_dir, rank)
        self.counters = RunCounters()
        self.guard: ConvGuard | None = None
        self.final_totals: dict[str, int] = {}
        self.final_routes: list[dict] = []

    # the plan's decisions, as a reader of a run asks for them
    @property
    def store(self) -> Any:
        return self.plan.store

    @property
    def device_key(self) -> str:
        return self.plan.device_key

    @property
    def env_profile(self) -> str:
        return self.plan.env_profile

    @property
    def attributed(self) -> list[tuple[str, str]]:
        return self.plan.attributed

    @property
    def probe_summary(self) -> str:
        return self.plan.probe_summary

    @property
    def thermal_pause_total_s(self) -> float:
        return self.counters.thermal_pause_s

    def start(self, args: Any = None) -> ConvGuard:
        """Make the routing plan, enable the guard, start telemetry; ``args`` are the trainer's."""
        plan = self.plan.make(args)
        self.guard = ConvGuard(
            policy=self.options.guard,
            faults=plan.profile or False,
            route_table=plan.table,
            counting=False,
            breadcrumb=plan.crumb,
        )
        enable(self.guard)
        self.services.start_telemetry(plan.info)
        return self.guard

    # -- during training ---------------------------------------------------------------------------
    def enter_training(self) -> None:
        """Training batches begin: unknown signatures get the configured policy (until now they
        took the bypass), and the services that watch training start."""
        if self.plan.table is not None:
            self.plan.table.unknown = self.options.unknown
        self.services.enter_training(guarded=self.guard is not None)

    def heartbeat(self) -> None:
        self.services.heartbeat()

    def between_batches(self) -> None:
        """Called after every train batch: the heartbeat, and the only place training may pause for heat."""
        self.services.check_heat()
        if self.guard is not None:
            self.guard.refresh()
        self.services.heartbeat()

    def epoch_start(self) -> None:
        self.counters.accumulate(self.guard)
        self.services.heartbeat()
        self.services.reset_window()

    def train_epoch_end(self) -> None:
        self.counters.train_epoch_end(self.guard)

    def epoch_metrics(self) -> dict[str, float]:
        """The rdna1 columns of this epoch (see :meth:`RunCounters.epoch_metrics`)."""
        return self.counters.epoch_metrics(self.guard, self.services.take_paused(), self.services.window())

    def run_totals(self) -> dict[str, int]:
        """Calls, bypassed calls and fallbacks of the whole run so far."""
        return self.counters.totals(self.guard)

    # -- the end -----------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """``rdna1_report.json``: routes and counts of the whole run, per signature and module."""
        head = {
            "device": self.device_key,
            "env_profile": self.env_profile,
            "policy": self.options.guard,
            "options": self.options.as_dict(),
            "probe": self.probe_summary,
            "attributed_crashes": [{"signature": k, "cause": c} for k, c in self.attributed],
            "telemetry_source": self.services.telemetry_source,
        }
        return self.counters.report(self.guard, head)

    def write_report(self) -> Path:
        return atomic_write(self.save_dir / REPORT, json.dumps(self.report(), indent=1))

    def record_runtime_failures(self) -> int:
        """Store what failed in-process (vendor errors that fell back), so later runs skip it."""
        return self.plan.record_runtime_failures(self.guard)

    def finish(self) -> None:
        """Clean end of the process: record what was learned, drop the crash trail, unpatch.

        Every step runs whatever an earlier one raises, and the first error is raised once all
        ran (later ones are logged): a failing close never leaves torch patched.
        """
        error: BaseException | None = None
        for step in (
            self._keep_totals,
            self.services.close,
            self.record_runtime_failures,
            self.plan.close,
            disable,
            bordered.release,  # the bypass's kept pad buffers go back to the caching allocator
        ):
            try:
                step()
            except BaseException as e:  # noqa: BLE001 - re-raised below, after the remaining steps
                if error is None:
                    error = e
                else:
                    LOGGER.warning("yolo_rdna1: ending the run also failed in %s: %r", step.__name__, e)
        if error is not None:
            raise error

    def _keep_totals(self) -> None:
        """What stays readable after the run ended (totals and routes of the whole run)."""
        if self.guard is not None:
            self.final_totals = self.run_totals()
            self.final_routes = self.guard.per_signature()
