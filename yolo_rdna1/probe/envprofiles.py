"""MIOpen env profiles: shipped sets of solver switches (``configs/miopen/<name>.yaml``).

MIOpen reads its ``MIOPEN_DEBUG_*`` switches once per process, so trying another set means
another process: the probe runs each profile's children with its variables, and training
exports the chosen profile's variables before the first GPU conv.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..configs_path import config_dir
from ..errors import Rdna1Error


class EnvProfileError(Rdna1Error):
    """An env profile that does not exist or cannot be read."""


@dataclass(frozen=True)
class EnvProfile:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


def shipped_env_profiles() -> dict[str, Path]:
    folder = config_dir("miopen")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def load_env_profile(spec: str | os.PathLike) -> EnvProfile:
    """A shipped profile by name, or a YAML file with ``name``, ``env`` (and ``description``)."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    shipped = shipped_env_profiles()
    if not path.is_file():
        if text not in shipped:
            raise EnvProfileError(f"unknown MIOpen env profile {text!r}; shipped profiles: {', '.join(shipped)}; or give a YAML file")
        path = shipped[text]
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise EnvProfileError(f"{path}: not valid YAML ({e})") from None
    unknown = sorted(set(map(str, data)) - {"name", "env", "description"}) if isinstance(data, dict) else ["<not a mapping>"]
    if unknown:
        raise EnvProfileError(f"{path}: unknown key(s) {unknown}; valid keys: name, env, description")
    env = data.get("env") or {}
    if not isinstance(env, dict):
        raise EnvProfileError(f"{path}: 'env' must map variable names to values")
    return EnvProfile(str(data.get("name") or path.stem), {str(k): str(v) for k, v in env.items()}, str(data.get("description") or ""))


def apply_env_profile(profile: EnvProfile) -> dict[str, str | None]:
    """Export a profile's variables in this process (before its first GPU conv); returns the old values."""
    old = {k: os.environ.get(k) for k in profile.env}
    os.environ.update(profile.env)
    return old
