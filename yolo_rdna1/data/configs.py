"""Dataset configs by name or path: ``data=ltdv2`` becomes a concrete Ultralytics data.yaml.

The shipped configs (``configs/datasets/<name>.yaml``) cannot hold the dataset's location: it
differs per machine, and a hard-coded home directory is wrong everywhere but one. They carry
``path: ${ENV_VAR}`` instead, and :func:`resolve_data` fills it in from an argument or that
environment variable, then writes the result where Ultralytics can read it (it needs a real
``path``; it does not expand variables). Plain data.yaml files pass through unchanged.

A config may also carry ``train_settings``: Ultralytics arguments that suit the data (no hue or
saturation jitter on grey thermal frames). :func:`resolve_training_data` is what
``yolo_rdna1.train(data=...)`` calls: the data.yaml to train on plus those settings, which the
caller's own arguments override. A dataset YAML often comes from elsewhere, so those settings
are an allow-list (:data:`TRAIN_SETTINGS`) of augmentation and hyperparameters: nothing that
names a file, a folder, a model or weights, resumes a run or changes the device or precision.

Names follow :mod:`yolo_rdna1.configs_path`: a bare name (``ltdv2``) is always the shipped
config, a file of one's own is given as a path (``./mine.yaml``).
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..configs_path import is_name, load_yaml_file, resolve_named, shipped_configs
from ..errors import Rdna1Error
from ..files import atomic_write

#: Keys of a shipped dataset config that go into the concrete data.yaml; the rest (train_settings,
#: layout notes) describe the dataset for people and for this package.
ULTRALYTICS_KEYS = ("path", "train", "val", "test", "names")
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


_NUMBER, _INT, _BOOL = "a number", "an integer >= 0", "true or false"
#: What ``train_settings`` may set, and the type of each: augmentation, loss gains, optimiser
#: hyperparameters and the schedule, which describe how to learn from the data. Everything else
#: Ultralytics takes (model, data, weights, pretrained, resume, project, name, exist_ok, save_dir,
#: device, cache, workers, amp, ...) is refused: a received dataset must not redirect or
#: overwrite runs, load a pickle, or undo the plugin's settings for the card (amp=False on gfx101x).
TRAIN_SETTINGS: dict[str, str | tuple[str, ...]] = {
    # optimiser and schedule
    **dict.fromkeys(
        (
            "lr0",
            "lrf",
            "momentum",
            "weight_decay",
            "warmup_epochs",
            "warmup_momentum",
            "warmup_bias_lr",
            "batch",
            "fraction",
            "dropout",
        ),
        _NUMBER,
    ),
    **dict.fromkeys(("epochs", "patience", "close_mosaic", "nbs", "imgsz"), _INT),
    **dict.fromkeys(("cos_lr", "rect", "single_cls", "overlap_mask"), _BOOL),
    "mask_ratio": _INT,
    "optimizer": ("auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp"),
    # loss gains
    **dict.fromkeys(("box", "cls", "cls_pw", "dfl", "pose", "kobj"), _NUMBER),
    # augmentation
    **dict.fromkeys(
        (
            "hsv_h",
            "hsv_s",
            "hsv_v",
            "degrees",
            "translate",
            "scale",
            "shear",
            "perspective",
            "flipud",
            "fliplr",
            "bgr",
            "mosaic",
            "mixup",
            "cutmix",
            "copy_paste",
            "erasing",
        ),
        _NUMBER,
    ),
    "copy_paste_mode": ("flip", "mixup"),
    "auto_augment": ("randaugment", "autoaugment", "augmix"),
}


class DatasetError(Rdna1Error):
    """A dataset, dataset config or conversion that cannot be used; the message says what to fix."""


def shipped_datasets() -> dict[str, Path]:
    """Shipped dataset configs by name (file stem)."""
    return shipped_configs("datasets")


def dataset_config(spec: str | os.PathLike) -> dict[str, Any]:
    """The raw mapping of a dataset config given by shipped name or by path (no path resolution).

    Besides the Ultralytics keys a shipped config may hold ``train_settings`` (augmentation that
    suits the data, e.g. no hue and saturation jitter on grey thermal frames), for callers that
    build a training from it.
    """
    return read_mapping(_config_path(spec))


def read_mapping(path: Path) -> dict[str, Any]:
    """A dataset YAML (config or data.yaml) as a mapping; one message naming the file otherwise."""
    return load_yaml_file(path, DatasetError, "dataset config")


def resolve_data(spec: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A data.yaml Ultralytics can open, from a shipped name (``"ltdv2"``) or a YAML path.

    A file without a ``${VAR}`` placeholder in its ``path`` is returned as it is (resolved). A
    shipped name, or a file whose ``path`` is a placeholder, gets its root from ``root``, else
    from the environment variable of the placeholder (``LTDV2_ROOT`` for ``ltdv2``); the concrete
    YAML is written to ``<cache>/datasets/<name>-<hash>.yaml`` (``$YOLO_RDNA1_CACHE``, else
    ``~/.cache/yolo_rdna1``), leaving the dataset folder untouched, and its path is returned.

    Raises :class:`DatasetError` for an unknown name, a missing or unconverted root, or a
    placeholder with neither ``root`` nor its variable set; the message says which to set.
    """
    path = _config_path(spec)
    data = dataset_config(path)
    if "names" not in data:
        raise DatasetError(
            f"{path} is not a dataset config (it has no names); "
            f"dataset configs: {', '.join(_dataset_names()) or 'none'}"
        )
    raw_path = data.get("path")
    variable = _PLACEHOLDER.fullmatch(str(raw_path)) if raw_path is not None else None
    if variable is None and root is None:
        return path.resolve()
    name = path.stem
    env = variable.group(1) if variable else ""
    if root is None:
        value = os.environ.get(env)
        if not value:
            raise DatasetError(
                f"data={name} needs the folder of the converted dataset: pass root=... or set {env}=/path/to/it "
                f"(convert the download first: yolo-rdna1 data convert-ltdv2 src=<download> dst=<folder>)"
            )
        root = value
    root_path = Path(root).expanduser().resolve()
    _check_root(name, root_path, data, env)
    concrete = {k: data[k] for k in ULTRALYTICS_KEYS if k in data and k != "path"}
    concrete = {"path": str(root_path), **concrete}
    if "test" in concrete and not (root_path / str(concrete["test"])).exists():
        del concrete["test"]  # test frames are optional (TestNoLabels is not converted by default)
    digest = hashlib.sha1(f"{path.resolve()}\n{root_path}".encode()).hexdigest()[:10]
    out = _cache_dir() / "datasets" / f"{name}-{digest}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = f"# written by yolo_rdna1.data.resolve_data from {path} for the root {root_path}\n" + yaml.safe_dump(
        concrete, sort_keys=False
    )
    if not out.is_file() or out.read_text() != text:
        atomic_write(out, text)  # a concurrent run never reads half a file
    return out


def train_settings(config: dict[str, Any], source: str | os.PathLike = "dataset config") -> dict[str, Any]:
    """The ``train_settings`` of a dataset config (read from ``source``, named in messages): a
    mapping of :data:`TRAIN_SETTINGS` keys, or the name of the shipped config whose settings
    apply (the LTDV2 sample has LTDV2's frames, so it names ``ltdv2``).

    Raises :class:`DatasetError` naming the key for anything outside the allow-list or of the
    wrong type, before any training.
    """
    value = config.get("train_settings")
    if isinstance(value, str):
        if not is_name(value):
            raise DatasetError(
                f"{source}: train_settings {value!r} must be the name "
                "of a shipped dataset config (e.g. ltdv2), not a file"
            )
        source, value = resolve_named("datasets", value, DatasetError), dataset_config(value).get("train_settings")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DatasetError(
            f"{source}: train_settings must be a mapping of augmentation and "
            f"hyperparameter keys (or a shipped dataset config's name), got {value!r:.80}"
        )
    return {str(k): _setting(source, k, v) for k, v in value.items()}


def _setting(source: str | os.PathLike, key: Any, value: Any) -> Any:
    """One ``train_settings`` value, checked against :data:`TRAIN_SETTINGS`."""
    kind = TRAIN_SETTINGS.get(key) if isinstance(key, str) else None
    if kind is None:
        raise DatasetError(
            f"{source}: train_settings may not set {key!r}: a dataset config sets only augmentation and "
            f"hyperparameters ({', '.join(TRAIN_SETTINGS)}); give other arguments on the command line or in a recipe"
        )
    integer = isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUMBER:
        ok = integer or (isinstance(value, float) and math.isfinite(value))
    elif kind == _INT:
        ok = integer and value >= 0
    elif kind == _BOOL:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str) and value in kind
    if not ok:
        want = kind if isinstance(kind, str) else f"one of {', '.join(kind)}"
        raise DatasetError(f"{source}: train_settings {key} must be {want}, got {value!r:.80}")
    return value


def resolve_training_data(spec: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[str, dict[str, Any]]:
    """``data=spec`` of a training: the data.yaml Ultralytics gets, and the dataset's training defaults.

    ``spec`` is a shipped config by name (``ltdv2``, ``ltdv2-sample``, ``ltdv2-drift``), a YAML
    path, or anything else Ultralytics takes (``coco8.yaml``, a URL), which passes through as it
    is. Names and ``${VAR}`` paths are resolved by :func:`resolve_data` (root from ``root`` or
    the variable; a missing root raises :class:`DatasetError` naming both, before any training).
    ``ltdv2-drift`` (a config of experiments, not of a dataset) trains on the first months of the
    converted LTDV2 folder: its drift splits are (re)built from the folder's index with the
    config's scheme and ``train_months``, and their ``train.yaml`` is returned.
    The second value is the config's :func:`train_settings` (``{}`` for other files).
    """
    path = _training_config(spec)
    if path is None:
        if root is not None:
            raise DatasetError(
                f"root={os.fspath(root)} applies to dataset configs "
                f"({', '.join(_dataset_names())}); data={os.fspath(spec)!r} is not one"
            )
        return os.fspath(spec), {}
    config = dataset_config(path)
    if "schemes" in config:
        from .ltdv2 import make_drift_splits

        dataset = config.get("dataset")
        if not isinstance(dataset, str) or not is_name(dataset):
            raise DatasetError(
                f"{path}: 'dataset' must name a shipped dataset config (e.g. ltdv2), got {dataset!r:.80}"
            )
        converted = read_mapping(resolve_data(dataset, root))["path"]
        path, root = make_drift_splits(converted).train_yaml, None
        config = dataset_config(path)
    if root is None and _PLACEHOLDER.fullmatch(str(config.get("path"))) is None:
        return os.fspath(path), train_settings(config, path)  # a plain data.yaml: Ultralytics reads it as it is
    return str(resolve_data(path, root)), train_settings(config, path)


def _training_config(spec: str | os.PathLike) -> Path | None:
    """The YAML behind ``data=spec`` when it is ours to read: a shipped config by name, or a YAML file.

    Anything else goes to Ultralytics as it is: its own dataset names (``coco8.yaml``,
    ``mnist160``), URLs, folders. A name one typo away from a shipped config is an error.
    """
    if is_name(spec):
        shipped = shipped_datasets()
        if spec in shipped or difflib.get_close_matches(str(spec), shipped, n=1, cutoff=0.8):
            return resolve_named("datasets", spec, DatasetError)
        return None
    path = Path(os.fspath(spec)).expanduser()
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    if isinstance(spec, str) and len(Path(spec).parts) == 1 and path.stem in shipped_datasets():
        return resolve_named("datasets", spec, DatasetError)  # ltdv2.yaml, not a file here: says to drop .yaml
    return None


def _cache_dir() -> Path:
    """The verdict store's rule (``$YOLO_RDNA1_CACHE``, else ``$XDG_CACHE_HOME/yolo_rdna1``),
    restated so that resolving a dataset name does not import torch through the verdict store."""
    env = os.environ.get("YOLO_RDNA1_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yolo_rdna1"


def _config_path(spec: str | os.PathLike) -> Path:
    return resolve_named("datasets", spec, DatasetError)


def _dataset_names() -> list[str]:
    """Shipped configs that describe a dataset (ltdv2-drift describes experiments on one)."""
    return [name for name, path in shipped_datasets().items() if "names" in read_mapping(path)]


def _check_root(name: str, root: Path, data: dict[str, Any], env: str) -> None:
    """Refuse a root Ultralytics would fail on minutes later, with the reason."""
    if not root.is_dir():
        where = f"pass root=... or set {env}" if env else "pass root=..."
        raise DatasetError(f"data={name}: the dataset root {root} does not exist ({where})")
    val = root / str(data.get("val", ""))
    if not val.exists():
        raw = [f.name for folder in (root, root / "data") for f in folder.glob("*.json") if not f.name.startswith(".")]
        hint = (
            f"; it holds {', '.join(sorted(raw)[:3])}: that is the download, convert it first with "
            f"'yolo-rdna1 data convert-ltdv2 src={root} dst=<new folder>' and point at the new folder"
            if raw
            else "; point root at the folder the converter wrote (it holds images/ and labels/)"
        )
        raise DatasetError(f"data={name}: {val} does not exist{hint}")
