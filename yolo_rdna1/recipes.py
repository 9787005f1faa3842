"""Recipes: plain YAML files of training settings (``configs/recipes/<name>.yaml``) to copy and edit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .configs_path import config_dir
from .options import OptionError, PluginOptions

#: Keys a recipe may hold besides Ultralytics' own arguments and the plugin options.
RUN_KEYS = ("model", "data", "supervise", "max_restarts")


def shipped_recipes() -> dict[str, Path]:
    folder = config_dir("recipes")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def load_recipe(spec: str | os.PathLike) -> dict[str, Any]:
    """A recipe by name or path, checked key by key before anything runs."""
    path = Path(os.fspath(spec)).expanduser()
    if not path.is_file():
        shipped = shipped_recipes()
        if os.fspath(spec) not in shipped:
            raise OptionError(f"recipe {os.fspath(spec)!r} not found; shipped recipes: {', '.join(shipped) or 'none'}; or give a YAML path")
        path = shipped[os.fspath(spec)]
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise OptionError(f"recipe {path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise OptionError(f"recipe {path}: expected a mapping of settings")
    from ultralytics.cfg import DEFAULT_CFG_DICT

    valid = set(DEFAULT_CFG_DICT) | set(PluginOptions.names()) | set(RUN_KEYS)
    unknown = sorted(k for k in data if k not in valid)
    if unknown:
        raise OptionError(f"recipe {path}: unknown key(s) {unknown}; keys are Ultralytics train arguments, yolo_rdna1 options ({', '.join(PluginOptions.names())}) or {', '.join(RUN_KEYS)}")
    return data
