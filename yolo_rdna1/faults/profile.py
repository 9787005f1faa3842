"""Fault profiles: which vendor conv calls misbehave, and how (``YOLO_RDNA1_FAULTS``).

The format is a fixed contract (``shared/fault-profile-format.md``): external tools write
profiles too, so parsing is strict about what it understands and says exactly what is wrong
with a profile when it is loaded, never in the middle of training.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configs_path import load_named_yaml, shipped_configs
from ..errors import Rdna1Error
from ..signature import ConvSignature

ENV_VAR = "YOLO_RDNA1_FAULTS"
EFFECTS = ("error", "hang", "abort", "nan", "wrong")
RULE_DIRECTIONS = ("fwd", "bwd_data", "bwd_weight", "any")
DEFAULT_ERROR_MESSAGE = "miopenStatusUnknownError"

_INT_KEYS = ("in_channels", "out_channels", "groups", "batch", "height", "width", "hw")
_PAIR_KEYS = ("kernel", "stride", "padding", "dilation")
_MATCH_KEYS = _INT_KEYS + _PAIR_KEYS + ("dtype", "transposed")
_DTYPES = ("float32", "float16", "bfloat16")
_RULE_KEYS = ("match", "direction", "effect", "message", "after", "unless_env")


class FaultProfileError(Rdna1Error):
    """A fault profile that cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class Condition:
    """One ``match`` key: an exact value, a list of exact values, or an inclusive range."""

    key: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None

    def test(self, value: Any) -> bool:
        if self.values:
            return value in self.values
        if isinstance(value, tuple):  # a range on a pair key must hold for both dims
            return all(self._in_range(v) for v in value)
        return self._in_range(value)

    def _in_range(self, value: Any) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass
class FaultRule:
    """One rule of a profile; ``seen`` counts matching calls for ``after`` (per process)."""

    index: int
    conditions: tuple[Condition, ...]
    effect: str
    direction: str = "any"
    message: str = DEFAULT_ERROR_MESSAGE
    after: int = 0
    unless_env: dict[str, str] = field(default_factory=dict)
    seen: int = 0

    def matches(self, sig: ConvSignature) -> bool:
        """Static part of matching: the conv's parameters and the rule's direction."""
        if self.direction != "any" and self.direction != sig.direction:
            return False
        fields = sig.describe()
        return all(c.test(fields[c.key]) for c in self.conditions)

    def disabled_by_env(self, environ: Mapping[str, str]) -> bool:
        return bool(self.unless_env) and all(environ.get(k) == v for k, v in self.unless_env.items())


@dataclass
class FaultProfile:
    """A parsed profile. :meth:`rules_for` is per signature; :meth:`fire` is per call."""

    name: str
    rules: list[FaultRule]
    source: str = ""

    def rules_for(self, sig: ConvSignature, environ: Mapping[str, str] | None = None) -> tuple[FaultRule, ...]:
        """The rules that can fire for this signature in this process's environment, in order."""
        env = os.environ if environ is None else environ
        return tuple(r for r in self.rules if r.matches(sig) and not r.disabled_by_env(env))

    @staticmethod
    def fire(rules: Iterable[FaultRule]) -> FaultRule | None:
        """Count one call against each candidate rule; the first whose ``after`` is reached fires.

        A rule still below its ``after`` count lets the call fall through to later rules, which
        is how a profile says "this conv is fine for the first N calls, then hangs".
        """
        for rule in rules:
            rule.seen += 1
            if rule.seen > rule.after:
                return rule
        return None


def _pair(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise FaultProfileError(f"{where}: expected an int or [h, w], got {value!r}")
    if isinstance(value, int):
        return value, value
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise FaultProfileError(f"{where}: expected an int or [h, w], got {value!r}")


def _scalar(key: str, value: Any, where: str) -> Any:
    if key in _PAIR_KEYS:
        return _pair(value, where)
    if key == "dtype":
        if value not in _DTYPES:
            raise FaultProfileError(f"{where}: unknown dtype {value!r}; valid: {', '.join(_DTYPES)}")
        return value
    if key == "transposed":
        if not isinstance(value, bool):
            raise FaultProfileError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultProfileError(f"{where}: expected an int, got {value!r}")
    return value


def _condition(key: str, spec: Any, where: str) -> Condition:
    if key not in _MATCH_KEYS:
        raise FaultProfileError(f"{where}: unknown match key {key!r}; valid keys: {', '.join(_MATCH_KEYS)}")
    if isinstance(spec, dict):
        unknown = set(spec) - {"min", "max"}
        if unknown or not spec:
            raise FaultProfileError(
                f"{where}: a range takes 'min' and/or 'max', got {sorted(map(str, spec)) or 'nothing'}"
            )
        if key in ("dtype", "transposed"):
            raise FaultProfileError(f"{where}: {key!r} takes a value or a list of values, not a range")
        bounds = {}
        for b in ("min", "max"):
            if b in spec:
                v = spec[b]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise FaultProfileError(f"{where}: range bound {b!r} must be a number, got {v!r}")
                bounds[b] = v
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            raise FaultProfileError(f"{where}: empty range, min {bounds['min']} > max {bounds['max']}")
        return Condition(key, low=bounds.get("min"), high=bounds.get("max"))
    if isinstance(spec, list) and not (key in _PAIR_KEYS and len(spec) == 2 and all(isinstance(v, int) for v in spec)):
        if not spec:
            raise FaultProfileError(f"{where}: an empty list matches nothing")
        return Condition(key, values=tuple(_scalar(key, v, where) for v in spec))
    return Condition(key, values=(_scalar(key, spec, where),))


def _rule(i: int, raw: Any, where: str) -> FaultRule:
    where = f"{where}: rule {i + 1}"
    if not isinstance(raw, dict):
        raise FaultProfileError(f"{where}: expected a mapping with 'match' and 'effect', got {raw!r}")
    unknown = sorted(set(map(str, raw)) - set(_RULE_KEYS))
    if unknown:
        raise FaultProfileError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(_RULE_KEYS)}")
    effect = raw.get("effect")
    if effect not in EFFECTS:
        raise FaultProfileError(f"{where}: unknown effect {effect!r}; valid effects: {', '.join(EFFECTS)}")
    direction = raw.get("direction", "any")
    if direction not in RULE_DIRECTIONS:
        raise FaultProfileError(f"{where}: unknown direction {direction!r}; valid: {', '.join(RULE_DIRECTIONS)}")
    match = raw.get("match") or {}
    if not isinstance(match, dict):
        raise FaultProfileError(f"{where}: 'match' must be a mapping of conv keys, got {match!r}")
    conditions = tuple(_condition(str(k), v, f"{where}: match.{k}") for k, v in match.items())
    after = raw.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise FaultProfileError(f"{where}: 'after' must be an int >= 0, got {after!r}")
    message = raw.get("message", DEFAULT_ERROR_MESSAGE)
    if not isinstance(message, str):
        raise FaultProfileError(f"{where}: 'message' must be text, got {message!r}")
    unless_env = raw.get("unless_env") or {}
    if not isinstance(unless_env, dict):
        raise FaultProfileError(f"{where}: 'unless_env' must map variable names to values, got {unless_env!r}")
    return FaultRule(
        index=i,
        conditions=conditions,
        effect=effect,
        direction=direction,
        message=message,
        after=after,
        unless_env={str(k): str(v) for k, v in unless_env.items()},
    )


def parse_profile(data: Any, source: str = "<profile>") -> FaultProfile:
    """Validate a profile already read from YAML; raises :class:`FaultProfileError`."""
    if not isinstance(data, dict):
        raise FaultProfileError(f"{source}: a fault profile is a mapping with 'name' and 'rules'")
    unknown = sorted(set(map(str, data)) - {"name", "rules"})
    if unknown:
        raise FaultProfileError(f"{source}: unknown top-level key(s) {unknown}; valid keys: name, rules")
    rules = data.get("rules")
    if not isinstance(rules, list):
        raise FaultProfileError(f"{source}: 'rules' must be a list of rules")
    return FaultProfile(
        name=str(data.get("name") or Path(source).stem),
        rules=[_rule(i, r, source) for i, r in enumerate(rules)],
        source=source,
    )


def shipped_profiles() -> dict[str, Path]:
    """Profiles shipped in the package (``configs/faults/<name>.yaml``), by name."""
    return shipped_configs("faults")


def load_profile(spec: str | os.PathLike) -> FaultProfile:
    """Load a shipped profile by name (``gfx1010``) or a profile file by path (``./mine.yaml``).

    The naming rule is :mod:`yolo_rdna1.configs_path`'s: a bare name is always the shipped file.
    """
    path, data = load_named_yaml("faults", spec, FaultProfileError)
    return parse_profile(data, str(path))


def profile_from_env(environ: Mapping[str, str] | None = None) -> FaultProfile | None:
    """The profile ``YOLO_RDNA1_FAULTS`` names, or None when it is unset or empty."""
    spec = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if not spec:
        return None
    try:
        return load_profile(spec)
    except FaultProfileError as e:
        raise FaultProfileError(f"{ENV_VAR}={spec}: {e}; fix it or unset {ENV_VAR}") from None
