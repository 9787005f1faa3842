"""Probe what is missing, store it, and say what it means: the ``yolo-rdna1 probe`` job."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from ..device import describe_device, parse_device
from ..faults import FaultProfile, profile_from_env
from ..route import Route
from ..signature import ConvSignature
from ..verdicts.store import Verdict, VerdictStore
from ..verdicts.table import device_key, route_of
from .discovery import DiscoveryError, discover
from .envprofiles import EnvProfile, load_env_profile, shipped_env_profiles
from .runner import Prober, ProbeResult, Timeouts

LOGGER = logging.getLogger("yolo_rdna1")


@dataclass
class ProbeReport:
    """What a probe run found for one device and env profile."""

    device: str
    env_profile: str
    verdicts: list[Verdict]
    probed: int = 0
    cached: int = 0
    seconds: float = 0.0
    profile_scores: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.verdicts:
            out[v.verdict] = out.get(v.verdict, 0) + 1
        return out

    def summary(self) -> str:
        """``57 signatures: 49 vendor, 8 bypass (5 hang, 2 abort, 1 wrong); profile implicit_gemm``.

        Counted per (signature, direction); "faster" are ok signatures the bypass beat.
        """
        kinds: dict[str, int] = {}
        bypass = 0
        for v in self.verdicts:
            if route_of(v) == Route.BYPASS:
                bypass += 1
                kind = v.verdict if v.bad else "faster"
                kinds[kind] = kinds.get(kind, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        return (
            f"{len(self.verdicts)} signatures: {len(self.verdicts) - bypass} vendor, {bypass} bypass"
            + (f" ({detail})" if detail else "")
            + f"; profile {self.env_profile}"
        )

    def table(self) -> str:
        """One row per signature and direction: verdict, vendor ms, bypass ms, route."""
        rows = [("signature", "direction", "verdict", "vendor ms", "bypass ms", "route")]
        for v in sorted(self.verdicts, key=lambda v: (v.bad is False, v.signature)):
            s = v.sig
            fmt = lambda t: "-" if t is None else f"{t:.2f}"  # noqa: E731
            rows.append(
                (
                    str(s.with_direction("fwd")).rsplit(" ", 1)[0],
                    s.direction,
                    v.verdict,
                    fmt(v.vendor_ms),
                    fmt(v.bypass_ms),
                    route_of(v),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _progress(total: int, desc: str):
    """Ultralytics' own progress bar when it is importable, else None."""
    try:
        from ultralytics.utils import TQDM

        return TQDM(total=total, desc=desc)
    except Exception:  # noqa: BLE001 - a progress bar is never worth failing a probe
        return None


def flops_ok_share(verdicts: Iterable[Verdict]) -> float:
    """The share of conv work (FLOPs) that may stay on the vendor library."""
    total = ok = 0
    for v in verdicts:
        f = v.sig.flops
        total += f
        ok += 0 if v.bad else f
    return ok / total if total else 1.0


def run_probe(
    signatures: Sequence[ConvSignature],
    device: str | torch.device | None = None,
    env_profile: str | EnvProfile = "default",
    store: VerdictStore | None = None,
    refresh: bool = False,
    progress: bool = True,
    timeouts: Timeouts | None = None,
    faults: FaultProfile | None | bool = None,
) -> ProbeReport:
    """Probe the signatures that have no stored verdict (all of them with ``refresh``)."""
    t0 = time.perf_counter()
    dev = parse_device(device)
    info = describe_device(dev)
    profile = profile_from_env() if faults is None else (faults or None)
    key = device_key(info.fingerprint, profile)
    env = env_profile if isinstance(env_profile, EnvProfile) else load_env_profile(env_profile)
    store = store or VerdictStore()
    known = {} if refresh else store.table(key, env.name)
    wanted = list(dict.fromkeys(signatures))
    todo = [s for s in wanted if s.key() not in known]
    bar = _progress(len(todo), f"probing {len(todo)} conv signatures ({env.name})") if progress and todo else None
    fresh: list[Verdict] = []
    kept: list[Verdict] = []

    def record(r: ProbeResult) -> None:
        v = Verdict(key, env.name, r.signature, r.verdict, r.detail, r.vendor_ms, r.bypass_ms, source="probe")
        if not store.put(v):  # streamed: a probe that is interrupted keeps what it learned
            # the store kept a crash's, a runtime failure's or an import's bad verdict over this ok
            stored = store.get(key, env.name, r.signature)
            if stored is not None and stored.bad:
                v = stored
                kept.append(stored)
        fresh.append(v)
        if bar is not None:
            bar.update(1)

    if todo:
        prober = Prober(str(dev), env=env.env, timeouts=timeouts or Timeouts.for_device(info.backend))
        try:
            prober.probe(todo, on_result=record)
        finally:
            if bar is not None:
                bar.close()
    if kept:
        LOGGER.warning(
            "yolo_rdna1: kept %d bad verdict(s) that the probe found ok: a crash, a runtime failure or an import "
            "found them under real training conditions (first: %s %s, %s); "
            "'yolo-rdna1 verdicts clear' forgets all verdicts of the device, these too",
            len(kept),
            kept[0].verdict,
            kept[0].signature,
            kept[0].source,
        )
    by_key = {**known, **{v.signature: v for v in fresh}}
    verdicts = [by_key[s.key()] for s in wanted if s.key() in by_key]
    return ProbeReport(
        key, env.name, verdicts, probed=len(fresh), cached=len(wanted) - len(todo), seconds=time.perf_counter() - t0
    )


def probe(
    model: str | os.PathLike = "yolov8n.yaml",
    imgsz: int = 640,
    batch: int = 16,
    data: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    amp: bool = False,
    env_profile: str = "default",
    store: VerdictStore | None = None,
    refresh: bool = False,
    progress: bool = True,
    timeouts: Timeouts | None = None,
) -> ProbeReport:
    """Discover the signatures of a training and probe what is not known yet.

    ``env_profile="auto"`` probes under every shipped MIOpen env profile and reports the one
    under which the most conv work (FLOPs) is ``ok``; training then runs under it.
    """
    for name, value in (("imgsz", imgsz), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DiscoveryError(f"{name}={value!r} must be a whole number of at least 1, e.g. imgsz=640 batch=16")
    dev = parse_device(device)
    info = describe_device(dev)
    sigs = discover(model, imgsz=imgsz, batch=batch, data=data, backend=info.backend, amp=amp)
    if env_profile != "auto":
        return run_probe(sigs, dev, env_profile, store, refresh, progress, timeouts)
    reports = {name: run_probe(sigs, dev, name, store, refresh, progress, timeouts) for name in shipped_env_profiles()}
    scores = {name: flops_ok_share(r.verdicts) for name, r in reports.items()}
    best = max(scores, key=lambda n: (scores[n], n == "default"))
    report = reports[best]
    report.profile_scores = scores
    report.seconds = sum(r.seconds for r in reports.values())
    return report


def print_report(report: ProbeReport, file=sys.stdout) -> None:
    print(report.table(), file=file)
    if report.profile_scores:
        print(
            "share of conv FLOPs ok per env profile: "
            + ", ".join(f"{k} {v:.1%}" for k, v in report.profile_scores.items()),
            file=file,
        )
    print(f"{report.summary()} ({report.probed} probed, {report.cached} known, {report.seconds:.1f} s)", file=file)
