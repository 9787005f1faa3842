"""``yolo_rdna1.train(...)``: one call that builds the YOLO model, adds the plugin and trains."""

from __future__ import annotations

import logging
from typing import Any

from .options import OptionError, PluginOptions

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
    """The same check (and message) ``yolo train`` gives an unknown argument."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_dict_alignment

    try:
        check_dict_alignment(DEFAULT_CFG_DICT, args)
    except SyntaxError as e:
        raise OptionError(str(e).strip() + f"\nyolo_rdna1 options: {', '.join(PluginOptions.names())}") from None


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
        LOGGER.info("yolo_rdna1: workers=%d on ROCm: many forked dataloader workers stalled long RDNA1 runs", ROCM_WORKERS)
    return out


def train(
    data: str, model: str = "yolov8n.yaml", guard: str = "auto", supervise: bool = False, max_restarts: int = 10, **kwargs: Any
) -> Any:
    """Train a YOLO model with every conv guarded; returns what ``YOLO.train`` returns.

    ``kwargs`` are Ultralytics training arguments (``epochs``, ``imgsz``, ``batch``, ``device``,
    ...) and yolo_rdna1 options (``faults``, ``env_profile``, ``unknown``, ``probe``, ``cache``,
    ``prefer_faster``, ...); an unknown name raises :class:`~yolo_rdna1.options.OptionError` at once.
    With ``supervise=True`` training runs in a child process that is restarted (at most
    ``max_restarts`` times) after a crash or a hang; the run dir is returned.
    """
    options, args = split_options({"guard": guard, **kwargs})
    if supervise:
        from .supervision import RestartPolicy, supervise as run_supervised

        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise OptionError(f"max_restarts={max_restarts!r} must be an int >= 0")
        return run_supervised({"data": data, "model": model, **options.as_dict(), **args}, RestartPolicy(max_restarts=max_restarts))
    args = {**device_defaults(args), **args}
    from ultralytics import YOLO

    from .callbacks import add_callbacks

    yolo = YOLO(model)
    add_callbacks(yolo, **options.as_dict())
    return yolo.train(data=data, **args)
