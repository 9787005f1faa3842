"""``yolo_rdna1.train(...)``: one call that builds the YOLO model, adds the plugin and trains."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .options import OptionError, PluginOptions

if TYPE_CHECKING:
    from .supervision import RestartPolicy

LOGGER = logging.getLogger("yolo_rdna1")

#: Dataloader workers on ROCm: many workers forking after HIP initialised stalled the person this
#: project is for; a few keep the GPU fed at batch 4 without that.
ROCM_WORKERS = 2


def split_options(kwargs: dict[str, Any]) -> tuple[PluginOptions, dict[str, Any]]:
    """Separate plugin options from Ultralytics arguments and check both; raises before training."""
    names = set(PluginOptions.names())
    plugin = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    options = PluginOptions.from_mapping(plugin)
    check_ultralytics_args(rest)
    return options, rest


def check_ultralytics_args(args: dict[str, Any]) -> None:
    """The same checks (and messages) ``yolo train`` gives an unknown argument or a bad value (``epochs=abc``)."""
    from ._ultralytics import check_args, message

    try:
        check_args(args)
    except SyntaxError as e:
        raise OptionError(message(e) + f" yolo_rdna1 options: {', '.join(PluginOptions.names())}") from None
    except (TypeError, ValueError) as e:
        raise OptionError(message(e)) from None


def check_data(data: str) -> None:
    """Fail now, not after probing, on a dataset YAML Ultralytics cannot use (missing file, keys, images)."""
    if not str(data).endswith((".yaml", ".yml")):
        return  # a classification folder or a name Ultralytics resolves itself
    import yaml

    from ._ultralytics import check_dataset, is_input_error, message

    try:
        check_dataset(str(data))
    except Exception as e:  # noqa: BLE001 - only Ultralytics' own dataset errors become a DatasetError
        if not (is_input_error(e) or isinstance(e, yaml.YAMLError)):
            raise
        from .data.configs import DatasetError

        raise DatasetError(f"data={data}: {message(e)}; pass data=<a dataset YAML with train, val and names>") from None


def check_writable(args: dict[str, Any]) -> None:
    """Fail now, not after probing, when the results folder (``project``) cannot be written."""
    from pathlib import Path

    from ultralytics.utils import SETTINGS

    project = Path(args.get("project") or SETTINGS["runs_dir"]).expanduser().absolute()
    existing = next((p for p in (project, *project.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OptionError(
            f"cannot write training results under {project} ({existing} is not a writable folder); "
            "pass project=<a folder you can write to>"
        )


def device_defaults(args: dict[str, Any]) -> dict[str, Any]:
    """Settings a device needs that the user did not set, each logged once with its reason."""
    from .device import describe_device, parse_device

    try:
        info = describe_device(parse_device(args.get("device")))
    except ValueError:
        return {}
    out: dict[str, Any] = {}
    if info.is_rdna1 and "amp" not in args:
        out["amp"] = False
        LOGGER.info("yolo_rdna1: amp=False on %s: fp16 convs give NaN on gfx101x (ROCm/ROCm#1857)", info.arch)
    if info.backend == "rocm" and "workers" not in args:
        out["workers"] = ROCM_WORKERS
        LOGGER.info(
            "yolo_rdna1: workers=%d on ROCm: many forked dataloader workers stalled long RDNA1 runs", ROCM_WORKERS
        )
    return out


def dataset_args(data: str, root: str | os.PathLike[str] | None, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``data`` as Ultralytics needs it, and ``args`` over the dataset config's training settings.

    A shipped dataset name (``ltdv2``) or a config with a ``${VAR}`` root becomes a concrete
    data.yaml here, so a missing root fails before any probing or training; the config's
    ``train_settings`` (no hue/saturation jitter on grey thermal frames) fill in only what the
    caller did not set. A dataset YAML may come from anyone, so those settings are checked
    against an allow-list of augmentation and hyperparameters
    (:data:`~yolo_rdna1.data.configs.TRAIN_SETTINGS`) before they get here.
    """
    from .data.configs import resolve_training_data

    data, defaults = resolve_training_data(data, root)
    applied = {k: v for k, v in defaults.items() if k not in args}
    if applied:
        check_ultralytics_args(applied)
        LOGGER.info(
            "yolo_rdna1: the dataset config's training settings: %s", ", ".join(f"{k}={v}" for k, v in applied.items())
        )
    return data, {**applied, **args}


def restart_policy(max_restarts: Any, backoff_s: Any, max_restarts_per_hour: Any, stop_grace_s: Any) -> RestartPolicy:
    """The supervisor's :class:`~yolo_rdna1.supervision.RestartPolicy` from ``train``'s arguments,
    each checked first: they come from a command line or a recipe, and a bad one must stop the run
    before it starts, not when the first crash consults it days later."""
    from .supervision import RestartPolicy

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def seconds(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not whole(max_restarts) or max_restarts < 0:
        raise OptionError(f"max_restarts={max_restarts!r} must be an int >= 0")
    if not seconds(backoff_s) or backoff_s < 0:
        raise OptionError(f"backoff_s={backoff_s!r} must be a number of seconds >= 0")
    if max_restarts_per_hour is not None and (not whole(max_restarts_per_hour) or max_restarts_per_hour < 1):
        raise OptionError(f"max_restarts_per_hour={max_restarts_per_hour!r} must be an int >= 1, or None for no limit")
    if not seconds(stop_grace_s) or not 0 < stop_grace_s < float("inf"):
        raise OptionError(f"stop_grace_s={stop_grace_s!r} must be a number of seconds > 0")
    return RestartPolicy(
        max_restarts=max_restarts,
        backoff_s=float(backoff_s),
        max_restarts_per_hour=max_restarts_per_hour,
        stop_grace_s=float(stop_grace_s),
    )


def train(
    data: str,
    model: str = "yolov8n.yaml",
    guard: str = "auto",
    supervise: bool = False,
    max_restarts: int = 10,
    backoff_s: float = 10.0,
    max_restarts_per_hour: int | None = 12,
    stop_grace_s: float = 60.0,
    root: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Train a YOLO model with every conv guarded; returns what ``YOLO.train`` returns.

    ``data`` is a data.yaml, an Ultralytics dataset name, or a shipped dataset config by name
    (``ltdv2``, ``ltdv2-drift``, ``ltdv2-sample``) whose root is ``root`` or its environment
    variable (``LTDV2_ROOT``); see :func:`dataset_args`. ``kwargs`` are Ultralytics training
    arguments (``epochs``, ``imgsz``, ``batch``, ``device``, ...) and yolo_rdna1 options
    (``faults``, ``env_profile``, ``unknown``, ``probe``, ``cache``, ``prefer_faster``, ...); an
    unknown name raises :class:`~yolo_rdna1.options.OptionError` at once.
    With ``supervise=True`` training runs in a child process that is restarted after a crash or a
    hang, ``backoff_s`` seconds later; only restarts in a row that made no progress double the wait
    and count against ``max_restarts``; at most ``max_restarts_per_hour`` restarts an hour (more
    wait; ``None``: no limit); a SIGINT/SIGTERM gives the training child ``stop_grace_s`` seconds
    to end before it is killed (see :class:`~yolo_rdna1.supervision.RestartPolicy`); the run dir
    is returned.
    """
    options, args = split_options({"guard": guard, **kwargs})
    data, args = dataset_args(data, root, args)
    check_data(data)
    check_writable(args)
    if supervise:
        from .supervision import supervise as run_supervised

        policy = restart_policy(max_restarts, backoff_s, max_restarts_per_hour, stop_grace_s)
        return run_supervised({"data": data, "model": model, **options.as_dict(), **args}, policy)
    args = {**device_defaults(args), **args}
    from ultralytics import YOLO

    from .callbacks import add_callbacks

    yolo = YOLO(model)
    add_callbacks(yolo, **options.as_dict())
    return yolo.train(data=data, **args)
