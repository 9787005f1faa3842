"""The plugin's options: one validated set, the same from Python, the CLI and a recipe."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import Rdna1Error
from .guard.router import POLICIES
from .verdicts.table import UNKNOWN_POLICIES


class OptionError(Rdna1Error):
    """An unknown option or a value that makes no sense; raised before any long work starts."""


@dataclass(frozen=True)
class PluginOptions:
    """Options of :func:`yolo_rdna1.add_callbacks` / :func:`yolo_rdna1.train` (the ``guard=...`` family).

    Attributes:
        guard: conv routing policy: ``auto`` (verdicts), ``bypass``, ``vendor``, ``off``.
        faults: fault profile (name or YAML path) to simulate; ``None`` reads ``YOLO_RDNA1_FAULTS``.
        env_profile: MIOpen env profile (``default``, ``no_gemm``, ... or ``auto`` to let the
            probe pick the one under which the most conv work is ok).
        unknown: what a signature without a verdict gets at run time: ``probe`` (bypass until a
            background probe has judged it) | ``bypass`` | ``vendor``.
        probe: probe the run's signatures before training (isolated; cached per device).
        cache: folder of the verdict store (default ``$YOLO_RDNA1_CACHE`` or the user cache dir).
        prefer_faster: route an ok signature to the bypass where the probe measured it faster.
        telemetry: GPU sensor sampling interval in seconds (0 turns the sampler off).
        thermal: pause between batches when the GPU runs hot.
        thermal_limit: pause at this junction (else edge) temperature in C; None = vendor default.
        thermal_resume: resume below this temperature in C; None = vendor default.
        stall_timeout: seconds without a finished batch before the watchdog ends a hung process
            (0 turns it off); the default leaves room for MIOpen's first-call Find.
        checkpoint_minutes: write a resumable mid-epoch checkpoint (``weights/mid.pt``) every this
            many minutes, so a crash loses at most that much of a multi-hour epoch (0 turns it
            off); a fraction of a minute is allowed (tests checkpoint every batch).
        serial_backward: run autograd's backward on the training thread instead of handing it
            to autograd's per-GPU worker thread (``torch.autograd.set_multithreading_enabled``);
            a bypassed conv's backward is Python, and the hand-off cost a YOLOv8n epoch on the
            bypass a fifth of its speed on an H200 (docs/benchmarks.md). Only while the guard
            is on.
        report: ``val``, ``predict`` and ``export`` on a model with the plugin's callbacks also
            write ``rdna1_report.json`` (what the guard did in that call) into their output
            folder; off, they write nothing Ultralytics does not (a training always writes it).
    """

    guard: str = "auto"
    faults: str | None = None
    env_profile: str = "default"
    unknown: str = "probe"
    probe: bool = True
    cache: str | None = None
    prefer_faster: bool = True
    telemetry: float = 1.0
    thermal: bool = True
    thermal_limit: float | None = None
    thermal_resume: float | None = None
    stall_timeout: float = 1200.0
    checkpoint_minutes: float = 15.0
    serial_backward: bool = True
    report: bool = False

    def __post_init__(self) -> None:
        if self.guard not in POLICIES:
            raise OptionError(f"guard={self.guard!r} is not a policy; valid: {', '.join(POLICIES)}")
        if self.unknown not in UNKNOWN_POLICIES:
            raise OptionError(f"unknown={self.unknown!r} is not valid; valid: {', '.join(UNKNOWN_POLICIES)}")
        for name in ("probe", "prefer_faster", "thermal", "serial_backward", "report"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name}={getattr(self, name)!r} must be True or False")
        if (
            isinstance(self.telemetry, bool)
            or not isinstance(self.telemetry, (int, float))
            or not 0 <= self.telemetry <= 3600
        ):
            raise OptionError(f"telemetry={self.telemetry!r} must be a sampling interval in seconds, 0 (off) to 3600")
        if (
            isinstance(self.stall_timeout, bool)
            or not isinstance(self.stall_timeout, (int, float))
            or not (self.stall_timeout == 0 or 10 <= self.stall_timeout <= 86400)
        ):
            raise OptionError(f"stall_timeout={self.stall_timeout!r} must be 0 (off) or 10 to 86400 seconds")
        if (
            isinstance(self.checkpoint_minutes, bool)
            or not isinstance(self.checkpoint_minutes, (int, float))
            or not 0 <= self.checkpoint_minutes <= 10080
        ):
            raise OptionError(
                f"checkpoint_minutes={self.checkpoint_minutes!r} must "
                "be 0 (off) or a number of minutes up to 10080 (a week)"
            )
        for name in ("thermal_limit", "thermal_resume"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 30 <= v <= 125):
                raise OptionError(
                    f"{name}={v!r} must be a temperature in C between 30 and 125, or None for the vendor default"
                )
        if (
            self.thermal_limit is not None
            and self.thermal_resume is not None
            and self.thermal_resume >= self.thermal_limit
        ):
            raise OptionError(
                f"thermal_resume={self.thermal_resume} must be below thermal_limit={self.thermal_limit} "
                "(training resumes once the GPU has cooled below it)"
            )

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PluginOptions:
        """Build from keyword arguments; an unknown name gets the closest valid one suggested."""
        unknown = [k for k in values if k not in cls.names()]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, cls.names(), n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise OptionError(
                f"unknown yolo_rdna1 option(s) {', '.join(hints)}; valid options: {', '.join(cls.names())}"
            )
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
