"""The route table ``auto`` reads: verdicts of one device and MIOpen env profile."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable, Iterable

from ..faults import FaultProfile
from ..signature import ConvSignature
from .store import Verdict

LOGGER = logging.getLogger("yolo_rdna1")

UNKNOWN_POLICIES = ("probe", "bypass", "vendor")


def device_key(fingerprint: str, profile: FaultProfile | None) -> str:
    """The verdict key of a device: its fingerprint, plus the fault profile when one simulates.

    Verdicts measured under simulation must never be read as facts about the real card.
    """
    if profile is None:
        return fingerprint
    try:
        digest = hashlib.sha256(Path(profile.source).read_bytes()).hexdigest()[:8]
    except OSError:
        digest = "inline"
    return f"{fingerprint}|faults={profile.name}@{digest}"


def route_of(v: Verdict, prefer_faster: bool = True, margin: float = 0.9) -> str:
    """The route a verdict gives: bad -> bypass; ok -> vendor, or bypass where measured faster."""
    if v.bad:
        return "bypass"
    if prefer_faster and v.vendor_ms and v.bypass_ms is not None and v.bypass_ms < margin * v.vendor_ms:
        return "bypass"
    return "vendor"


class VerdictRouteTable:
    """``sig -> "vendor" | "bypass"`` from stored verdicts; called once per signature-direction.

    Args:
        verdicts: signature key -> verdict, for one device and env profile.
        unknown: what a signature with no verdict gets. ``probe`` (default): an isolated probe
            judges it first (a few seconds, once; its verdict is stored for every later run);
            ``bypass``: safe and never stalls, slower where the vendor would have been fine;
            ``vendor``: fastest, relies on crash attribution and the supervisor if it kills the run.
        prober: called with the signatures to judge when ``unknown == "probe"``; returns verdicts
            (and stores them).
        prefer_faster: route an ``ok`` signature to the bypass when the probe measured the bypass
            faster than the vendor library (by ``margin``).
    """

    def __init__(
        self,
        verdicts: dict[str, Verdict],
        unknown: str = "probe",
        prober: Callable[[list[ConvSignature]], Iterable[Verdict]] | None = None,
        prefer_faster: bool = True,
        margin: float = 0.9,
    ) -> None:
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown value {unknown!r} for unknown-signature policy; valid: {', '.join(UNKNOWN_POLICIES)}")
        if unknown == "probe" and prober is None:
            raise ValueError("unknown='probe' needs a prober")
        self.verdicts = dict(verdicts)
        self.unknown = unknown
        self.prober = prober
        self.prefer_faster = prefer_faster
        self.margin = margin
        self.unknown_seen: list[str] = []

    def __call__(self, sig: ConvSignature) -> str:
        key = sig.key()
        v = self.verdicts.get(key)
        if v is None:
            self.unknown_seen.append(key)
            if self.unknown == "probe":
                directions = [sig.with_direction(d) for d in ("fwd", "bwd_data", "bwd_weight")]
                fresh = [s for s in directions if s.key() not in self.verdicts]
                for verdict in self.prober(fresh):  # type: ignore[misc]
                    self.verdicts[verdict.signature] = verdict
                v = self.verdicts.get(key)
            if v is None:
                return "bypass" if self.unknown == "bypass" else "vendor"
        return route_of(v, self.prefer_faster, self.margin)
