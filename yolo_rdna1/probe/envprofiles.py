"""MIOpen env profiles: shipped sets of solver switches (``configs/miopen/<name>.yaml``).

MIOpen reads its ``MIOPEN_DEBUG_*`` switches once per process, so trying another set means
another process: the probe runs each profile's children with its variables, and training
exports the chosen profile's variables before the first GPU conv.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..configs_path import load_named_yaml, shipped_configs
from ..errors import Rdna1Error

#: The only variables a profile may set: those that tune the GPU stack (MIOpen, HIP, the HSA
#: runtime, ROCr, AMD's and the older HCC switches, OpenCL/HIP GPU_* tunables, PyTorch's
#: allocator and backends). A profile from elsewhere must not reach the interpreter
#: (PYTHONPATH), the loader (LD_PRELOAD, LD_LIBRARY_PATH) or the shell (PATH) of the probe
#: children and the training.
ALLOWED_PREFIXES = ("MIOPEN_", "HIP_", "HSA_", "ROCR_", "AMD_", "HCC_", "GPU_", "PYTORCH_")
_KEYS = ("name", "env", "description")
_VAR = re.compile(r"[A-Z][A-Z0-9_]*")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EnvProfileError(Rdna1Error):
    """An env profile that does not exist, cannot be read, or sets what it may not."""


@dataclass(frozen=True)
class EnvProfile:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


def shipped_env_profiles() -> dict[str, Path]:
    return shipped_configs("miopen")


def load_env_profile(spec: str | os.PathLike) -> EnvProfile:
    """A shipped profile by name, or a YAML file (by path) with ``name``, ``env`` (and ``description``).

    ``env`` maps variables with one of :data:`ALLOWED_PREFIXES` to strings or numbers; anything
    else is refused, as is a file of one's own that takes a shipped profile's name (verdicts are
    stored per profile name, so it would pass its verdicts off as that profile's).
    """
    path, data = load_named_yaml("miopen", spec, EnvProfileError)
    unknown = sorted(set(map(str, data)) - set(_KEYS))
    if unknown:
        raise EnvProfileError(f"{path}: unknown key(s) {unknown}; valid keys: {', '.join(_KEYS)}")
    env = data.get("env") or {}
    if not isinstance(env, dict):
        raise EnvProfileError(f"{path}: 'env' must map variable names to values")
    name = str(data.get("name") or path.stem)
    shipped = shipped_env_profiles()
    if not _PROFILE_NAME.fullmatch(name):
        raise EnvProfileError(f"{path}: name {name!r} must be letters, digits, '_', '.' or '-' (at most 64)")
    if name in shipped and path.resolve() != shipped[name].resolve():
        raise EnvProfileError(f"{path}: name {name!r} is a shipped profile's; give your profile a name of its own")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise EnvProfileError(f"{path}: 'description' must be text")
    return EnvProfile(name, {_variable(path, k): _value(path, k, v) for k, v in env.items()}, description)


def _variable(path: Path, key: object) -> str:
    """A variable name a profile may set, or the one-line refusal."""
    if not isinstance(key, str) or not _VAR.fullmatch(key) or not key.startswith(ALLOWED_PREFIXES):
        raise EnvProfileError(
            f"{path}: env may not set {key!r}: a profile sets only GPU stack variables starting with "
            f"{', '.join(ALLOWED_PREFIXES)}"
        )
    return key


def _value(path: Path, key: str, value: object) -> str:
    """A variable's value as the environment holds it: text or a number, one line."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise EnvProfileError(f"{path}: env {key} must be a string or a number, got {value!r:.80}")
    text = str(value)
    if _CONTROL.search(text):
        raise EnvProfileError(f"{path}: env {key} holds a control character (newline, NUL, ...)")
    return text


def apply_env_profile(profile: EnvProfile) -> dict[str, str | None]:
    """Export a profile's variables in this process (before its first GPU conv); returns the old values."""
    old = {k: os.environ.get(k) for k in profile.env}
    os.environ.update(profile.env)
    return old


def restore_env(old: Mapping[str, str | None]) -> None:
    """Put back the values :func:`apply_env_profile` returned; a variable that was absent is removed."""
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
