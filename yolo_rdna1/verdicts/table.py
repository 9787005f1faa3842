"""The route table ``auto`` reads: verdicts of one device and MIOpen env profile."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Callable

from ..faults import FaultProfile
from ..route import Route
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


def route_of(v: Verdict, prefer_faster: bool = True, margin: float = 0.9) -> Route:
    """The route a verdict gives: bad -> bypass; ok -> vendor, or bypass where measured faster."""
    if v.bad:
        return Route.BYPASS
    if prefer_faster and v.vendor_ms and v.bypass_ms is not None and v.bypass_ms < margin * v.vendor_ms:
        return Route.BYPASS
    return Route.VENDOR


class VerdictRouteTable:
    """``sig -> Route`` from stored verdicts; called once per signature-direction (a
    :class:`~yolo_rdna1.route.RouteTable`).

    Args:
        verdicts: signature key -> verdict, for one device and env profile.
        unknown: what a signature with no verdict gets. ``probe`` (default): the bypass at once,
            and an isolated probe judges it in the background (a child process, a few seconds,
            once; its verdict is stored for every later run); :meth:`lookup` then has the
            verdict and the guard's ``refresh`` moves the signature to its real route.
            ``bypass``: safe and never stalls, slower where the vendor would have been fine;
            ``vendor``: fastest, relies on crash attribution and the supervisor if it kills the run.
        prober: called (on the background thread) with the signatures to judge when
            ``unknown == "probe"``; returns their verdicts (and stores them).
        prefer_faster: route an ``ok`` signature to the bypass when the probe measured the bypass
            faster than the vendor library (by ``margin``).

    Training never waits for a probe: a first-seen shape (the final evaluation of a fused model,
    a last partial batch) would otherwise stall training for seconds per signature, and the
    watchdog could take the wait for a hang.
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
            raise ValueError(
                f"unknown value {unknown!r} for unknown-signature policy; valid: {', '.join(UNKNOWN_POLICIES)}"
            )
        if unknown == "probe" and prober is None:
            raise ValueError("unknown='probe' needs a prober")
        self.verdicts = dict(verdicts)
        self.unknown = unknown
        self.prober = prober
        self.prefer_faster = prefer_faster
        self.margin = margin
        self.unknown_seen: list[str] = []
        #: Bumped each time background verdicts arrive; the guard refreshes when it changes.
        self.generation = 0
        self._todo: list[ConvSignature] = []
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def lookup(self, sig: ConvSignature) -> Route | None:
        """The route a stored verdict gives, or None; no side effects."""
        v = self.verdicts.get(sig.key())
        return None if v is None else route_of(v, self.prefer_faster, self.margin)

    def __call__(self, sig: ConvSignature) -> Route:
        route = self.lookup(sig)
        if route is not None:
            return route
        self.unknown_seen.append(sig.key())
        if self.unknown == "probe":
            self._enqueue(sig)
        return Route.VENDOR if self.unknown == "vendor" else Route.BYPASS

    # -- the background prober -------------------------------------------------------------------
    def _enqueue(self, sig: ConvSignature) -> None:
        """Queue the signature's three directions (each once) for the background prober."""
        with self._lock:
            if self._stop:
                return
            for d in ("fwd", "bwd_data", "bwd_weight"):
                s = sig.with_direction(d)
                if s.key() not in self.verdicts and s.key() not in self._queued:
                    self._queued.add(s.key())
                    self._todo.append(s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="yolo_rdna1-probe", daemon=True)
                self._thread.start()
            self._wake.set()

    def _work(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                if self._stop:
                    return
                todo, self._todo = self._todo, []
                self._wake.clear()
            if not todo:
                continue
            try:
                found = list(self.prober(todo))  # type: ignore[misc]
            except Exception as e:  # noqa: BLE001 - a failed probe leaves them on the bypass
                LOGGER.warning(
                    "yolo_rdna1: background probe of %d signature(s) failed (%s); they stay on the bypass", len(todo), e
                )
                continue
            for v in found:
                self.verdicts[v.signature] = v
            self.generation += 1
            bad = sum(v.bad for v in found)
            LOGGER.info(
                "yolo_rdna1: background probe judged %d signature-direction(s) first seen in training: %d bad",
                len(found),
                bad,
            )

    def pending(self) -> int:
        """Signature-directions queued or being probed in the background."""
        with self._lock:
            return sum(1 for k in self._queued if k not in self.verdicts)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background prober after the probe in progress (waits at most ``timeout`` s)."""
        with self._lock:
            self._stop = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
