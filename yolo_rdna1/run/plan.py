"""The routing plan of one process: which conv goes where, decided before the first conv runs.

In order (each step needs the one before):

1. the fault profile (simulation) and the device's fingerprint give the verdicts' device key;
2. crash attribution: a conv the previous process of this run left in flight becomes a
   ``hang``/``abort`` verdict under the env profile that process ran under (a verdict the store
   cannot keep on disk is kept in the run folder and attributed again at every start);
3. the run's signatures are discovered and whatever has no verdict is probed in children
   (``env_profile=auto`` probes under each shipped profile and keeps the best);
4. the MIOpen env profile is exported, before the first GPU conv of the process;
5. the route table over the stored verdicts, and the breadcrumb that attributes the next crash.

The environment variables the plan sets (the fault profile, the env profile's) stay for the
process's children (probes, DDP ranks) while the plan is open; :meth:`RoutingPlan.close` puts
back what was there before.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..faults import ENV_VAR as FAULTS_ENV
from ..faults import FaultProfile, load_profile, profile_from_env
from ..files import atomic_write
from ..options import PluginOptions
from ..runfiles import TRAIL_ENV_SUFFIX, UNSTORED_SUFFIX, VERDICTS_DB, breadcrumb_stem
from ..verdicts import breadcrumb as crumbs
from ..verdicts.store import Verdict, VerdictStore
from ..verdicts.table import VerdictRouteTable, device_key

LOGGER = logging.getLogger("yolo_rdna1")

_CRASH_DETAIL = "in flight when the training process died"


def trail_env(stem: Path) -> str | None:
    """The env profile a (dead) process's breadcrumb trail was written under; None if unknown."""
    try:
        name = Path(str(stem) + TRAIL_ENV_SUFFIX).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if name and name.isprintable() and len(name) <= 200 else None


def discovery_sizes(args: Any, world_size: int = 1) -> tuple[int, int] | None:
    """(imgsz, batch per process) a training with the trainer's ``args`` runs at, as Ultralytics derives them.

    The image size as the trainer's ``check_imgsz(..., max_dim=1)`` takes it: an int, ``'640'``,
    or the largest of a list (``[640, 480]``, ``'[640,480]'``); training is square. The batch is
    divided among the DDP processes, as the trainer does. None when the batch is not known before
    training: AutoBatch's (``batch`` below 1: ``-1``, or a fraction of GPU memory such as ``0.7``),
    or sizes that are not numbers.
    """
    batch = getattr(args, "batch", 16)
    if isinstance(batch, bool) or not isinstance(batch, (int, float)) or not batch >= 1:
        return None
    if isinstance(batch, float) and not batch.is_integer():
        return None
    size = getattr(args, "imgsz", 640)
    try:
        if isinstance(size, str):
            import ast

            size = int(size) if size.strip().isdigit() else ast.literal_eval(size)
        if isinstance(size, (list, tuple)):
            size = max(size)
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not size >= 1:
            return None
        size = int(size)
    except (ValueError, TypeError, SyntaxError, OverflowError):
        return None
    return size, max(int(batch) // max(world_size, 1), 1)


def _world_size(rank: int) -> int:
    """How many DDP processes share the batch: torch.distributed's ``WORLD_SIZE`` in a DDP rank, else 1."""
    if rank < 0:
        return 1
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def _read_unstored(path: Path) -> list[tuple[str, str, str, str]]:
    """The (device, env profile, signature, cause) crash verdicts an earlier start could not store."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            row = json.loads(line)
            found = tuple(row[k] for k in ("device", "env_profile", "signature", "cause"))
        except (ValueError, TypeError, KeyError):
            continue  # a damaged line: the store's validation would refuse it anyway
        if all(isinstance(x, str) for x in found) and found[3] in ("hang", "abort"):
            out.append(found)
    return out


@dataclass
class RoutingPlan:
    """What :meth:`make` decided for one process; the guard is built from it."""

    options: PluginOptions
    save_dir: Path
    device: torch.device
    rank: int = -1
    profile: FaultProfile | None = None
    info: Any = None  # yolo_rdna1.device.DeviceInfo
    device_key: str = ""
    store: VerdictStore | None = None
    env_profile: str = "default"
    table: VerdictRouteTable | None = None
    crumb: crumbs.Breadcrumb | None = None
    probe_summary: str = ""
    attributed: list[tuple[str, str]] = field(default_factory=list)
    #: The variables :meth:`make` set, with their values before (None: absent); :meth:`close` restores them.
    env_before: dict[str, str | None] = field(default_factory=dict)

    @property
    def stem(self) -> Path:
        return breadcrumb_stem(self.save_dir, self.rank)

    def make(self, args: Any = None) -> RoutingPlan:
        """Decide everything (steps 1-5 of the module docstring); ``args`` are the trainer's.

        If a step fails, the environment is put back before the error goes on.
        """
        try:
            return self._make(args)
        except BaseException:
            self._restore_env()
            raise

    def _make(self, args: Any) -> RoutingPlan:
        from ..device import describe_device, routes_by_default

        opts = self.options
        self.profile = load_profile(opts.faults) if opts.faults else profile_from_env()
        if opts.faults:  # once it loads: a bad one must not stay in this process's environment
            self.env_before.setdefault(FAULTS_ENV, os.environ.get(FAULTS_ENV))
            os.environ[FAULTS_ENV] = opts.faults  # probe children and DDP ranks simulate the same
        self.info = describe_device(self.device)
        self.device_key = device_key(self.info.fingerprint, self.profile)
        self.store = VerdictStore(Path(opts.cache) / VERDICTS_DB if opts.cache else None)
        before = trail_env(self.stem)
        self._attribute_crash(before)
        routes = opts.guard == "auto" and (self.profile is not None or routes_by_default(self.info))
        env = self._choose_env_profile(args, routes, before)
        self.env_profile = env.name  # the name verdicts are stored under (a file's own name)
        from ..probe.envprofiles import apply_env_profile

        for k, v in apply_env_profile(env).items():
            self.env_before.setdefault(k, v)
        if routes:
            self.table = self._route_table(env)
            self.stem.parent.mkdir(parents=True, exist_ok=True)  # a val/predict call's trail folder is new
            atomic_write(Path(str(self.stem) + TRAIL_ENV_SUFFIX), self.env_profile + "\n")  # before a conv is in flight
            self.crumb = crumbs.Breadcrumb(self.stem)
        return self

    # -- steps -------------------------------------------------------------------------------------
    def _attribute_crash(self, env: str | None) -> None:
        """Blame the conv the last process of this run died in (if any) and store the verdict.

        ``env`` is the profile the dead process ran under (:func:`trail_env`); a trail that does
        not say falls back to the profile this process is configured with.
        """
        unstored = Path(str(self.stem) + UNSTORED_SUFFIX)
        crashes = {c[:3]: c for c in _read_unstored(unstored)}
        found = crumbs.in_flight(self.stem)
        if found is not None:
            key, cause = found
            if env is None:
                from ..probe.envprofiles import load_env_profile

                configured = self.options.env_profile
                env = load_env_profile(configured).name if configured != "auto" else "default"
            crashes[(self.device_key, env, key)] = (self.device_key, env, key, cause)
            self.attributed.append((key, cause))
            from ..supervision import journal

            journal.append(self.save_dir, "attributed", signature=key, cause=cause)
            LOGGER.warning(
                "yolo_rdna1: the last training process died (%s) in %s; it takes the bypass from now on", cause, key
            )
        if crashes:
            self.store.put([Verdict(d, e, k, c, _CRASH_DETAIL, source="crash") for d, e, k, c in crashes.values()])
        if not crashes or self.store.durable:
            unstored.unlink(missing_ok=True)
            crumbs.clear(self.stem)
            return
        # the store keeps them in memory only: the run folder keeps them for the next start (this
        # process's own trail replaces the breadcrumb, so the breadcrumb alone would not)
        rows = [dict(zip(("device", "env_profile", "signature", "cause"), c)) for c in crashes.values()]
        try:
            atomic_write(unstored, "".join(json.dumps(r) + "\n" for r in rows))
        except OSError as e:
            LOGGER.warning(
                "yolo_rdna1: the verdict store cannot keep %d crash verdict(s) on disk, nor can %s be written (%s); "
                "the crash breadcrumb is left in place for the next start",
                len(rows),
                unstored,
                e,
            )
            return
        crumbs.clear(self.stem)
        LOGGER.warning(
            "yolo_rdna1: the verdict store cannot keep %d crash verdict(s) on disk; they are kept in %s and "
            "attributed again at each start of this run until the store can be written",
            len(rows),
            unstored,
        )

    def _probe(self, sigs: Any, env: Any, progress: bool) -> Any:
        from ..probe.api import run_probe

        return run_probe(sigs, self.device, env, self.store, progress=progress, faults=self.profile or False)

    def _choose_env_profile(self, args: Any, routes: bool, before: str | None) -> Any:
        """The env profile of this process, probing the run's signatures under it (or under each)."""
        from ..probe.envprofiles import load_env_profile, shipped_env_profiles

        name = self.options.env_profile
        if name == "auto" and before in shipped_env_profiles():
            # the run's earlier process died under this profile: its crash verdicts apply here only
            name = before
            LOGGER.info("yolo_rdna1: MIOpen env profile %s, as in the earlier process of this run", name)
        sigs = self._discover(args) if routes and self.options.probe and args is not None else None
        if sigs is not None:
            if name == "auto":
                from ..probe.api import flops_ok_share

                progress = self.rank <= 0
                scores = {n: flops_ok_share(self._probe(sigs, n, progress).verdicts) for n in shipped_env_profiles()}
                name = max(scores, key=lambda n: (scores[n], n == "default"))
                LOGGER.info(
                    "yolo_rdna1: MIOpen env profile %s (ok share of conv FLOPs: %s)",
                    name,
                    ", ".join(f"{k} {v:.0%}" for k, v in scores.items()),
                )
            self.probe_summary = self._probe(sigs, name, self.rank <= 0).summary()
            LOGGER.info("yolo_rdna1: %s", self.probe_summary)
        elif name == "auto":
            name = "default"
        return load_env_profile(name)

    def _discover(self, args: Any) -> Any:
        """The conv signatures the trainer's model, data and sizes will run (training and validation).

        None when the batch size is not known before training (AutoBatch): nothing is probed ahead.
        """
        from ..probe.discovery import discover

        sizes = discovery_sizes(args, _world_size(self.rank))
        if sizes is None:
            LOGGER.info(
                "yolo_rdna1: batch=%s imgsz=%s: the sizes are set when training starts (AutoBatch), so no conv "
                "signatures are probed ahead; each is judged as it first appears (unknown=%s)",
                getattr(args, "batch", None),
                getattr(args, "imgsz", None),
                self.options.unknown,
            )
            return None
        imgsz, batch = sizes
        task = getattr(args, "task", None)
        data = getattr(args, "data", None)
        # a dataset YAML, or a classification dataset's folder; a dataset name Ultralytics downloads is not read
        readable = data and (Path(str(data)).is_file() or (task == "classify" and Path(str(data)).is_dir()))
        return discover(
            getattr(args, "model", "yolov8n.yaml"),
            imgsz=imgsz,
            batch=batch,
            data=data if readable else None,
            backend=self.info.backend,
            amp=bool(getattr(args, "amp", False)) and self.device.type == "cuda",
            task=task,
        )

    def _route_table(self, env: Any) -> VerdictRouteTable:
        """Routes from the stored verdicts.

        Until training starts, convs without a verdict (the stride probe at 256 px when the model
        is built, thop's FLOPs count) take the bypass: a few forwards, not worth a probe each. From
        then on ``unknown=probe`` judges them in the background (see VerdictRouteTable). On a device
        whose conv library is trusted (and no fault profile), ``auto`` builds no table at all, so no
        signature is ever probed at run time.
        """
        opts = self.options
        return VerdictRouteTable(
            self.store.table(self.device_key, self.env_profile),
            unknown="bypass" if opts.unknown == "probe" else opts.unknown,
            prober=lambda sigs: self._probe(sigs, env, False).verdicts,
            prefer_faster=opts.prefer_faster,
        )

    # -- the end of the process ----------------------------------------------------------------------
    def record_runtime_failures(self, guard: Any) -> int:
        """Store what failed in-process (vendor errors that fell back), so later runs skip it."""
        if guard is None or self.store is None:
            return 0
        found = [
            Verdict(self.device_key, self.env_profile, r.sig.with_direction(d).key(), "error", reason, source="runtime")
            for r in guard.routes()
            for d, reason in r.reasons.items()
        ]
        return self.store.put(found)

    def close(self) -> None:
        """Stop the background prober, drop this process's crash trail (a clean end) and put the
        environment back as it was before :meth:`make`."""
        try:
            if self.table is not None:
                self.table.close()
            if self.crumb is not None:
                self.crumb.close()
                self.crumb = None
                Path(str(self.stem) + TRAIL_ENV_SUFFIX).unlink(missing_ok=True)
        finally:
            self._restore_env()

    def _restore_env(self) -> None:
        from ..probe.envprofiles import restore_env

        restore_env(self.env_before)
        self.env_before.clear()
