"""Recipes: plain YAML files of training settings (``configs/recipes/<name>.yaml``) to copy and edit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .configs_path import load_named_yaml, shipped_configs
from .options import OptionError, PluginOptions

#: Keys a recipe may hold besides Ultralytics' own arguments and the plugin options.
RUN_KEYS = ("model", "data", "supervise", "max_restarts", "backoff_s", "max_restarts_per_hour", "stop_grace_s")


def shipped_recipes() -> dict[str, Path]:
    return shipped_configs("recipes")


def load_recipe(spec: str | os.PathLike) -> dict[str, Any]:
    """A shipped recipe by name, or a recipe file by path, checked key by key before anything runs."""
    path, data = load_named_yaml("recipes", spec, OptionError)
    from ultralytics.cfg import DEFAULT_CFG_DICT

    valid = set(DEFAULT_CFG_DICT) | set(PluginOptions.names()) | set(RUN_KEYS)
    unknown = sorted(str(k) for k in data if k not in valid)
    if unknown:
        raise OptionError(
            f"recipe {path}: unknown key(s) {unknown}; keys are Ultralytics train arguments, "
            f"yolo_rdna1 options ({', '.join(PluginOptions.names())}) or {', '.join(RUN_KEYS)}"
        )
    return data
