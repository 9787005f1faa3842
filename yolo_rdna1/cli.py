"""The ``yolo-rdna1`` command: ``yolo``-style ``key=value`` arguments.

    yolo-rdna1 demo [epochs=2 imgsz=256 ...]        short guarded training on synthetic thermal data
    yolo-rdna1 train data=... [model=... guard=auto supervise=True recipe=ltdv2_yolov8n_long ...]
                     data=ltdv2|ltdv2-drift|ltdv2-sample [root=FOLDER]   a shipped dataset config by name
    yolo-rdna1 probe [model=yolov8n.yaml imgsz=640 batch=16 data=... device=0 env_profile=auto]
    yolo-rdna1 verdicts list|export|import|clear|miopen [file=... device=... replace=True]
    yolo-rdna1 report RUN_DIR                        what the guard did in a run (+ rdna1.png)
    yolo-rdna1 doctor [device=0]                     device, ROCm/MIOpen setup, what to change
    yolo-rdna1 data convert-ltdv2 src=DOWNLOAD dst=FOLDER [splits=Train,Valid link=symlink frames=...]
                                                     LTDV2's COCO files -> YOLO folder (classes by name)
    yolo-rdna1 data check data=DATA.yaml|ltdv2 [root=... hashes=True]   labels, images, duplicates, before training
    yolo-rdna1 data sample dst=FOLDER [months=3 clips_per_day=2 frames_per_clip=20 seed=0]
                                                     a tiny LTDV2 look-alike in LTDV2's own format
    yolo-rdna1 data drift dst=FOLDER [scheme=month|season train_months=4]   train early, val per later period
    yolo-rdna1 val model=best.pt [data=... imgsz=640 batch=16 device=0 guard=auto ...]   validate, guarded
    yolo-rdna1 predict model=best.pt source=FOLDER|FILE|VIDEO [imgsz=640 save=True guard=auto ...]   predict, guarded
    yolo-rdna1 export model=best.pt [format=torchscript imgsz=640 device=0 guard=auto ...]   export, guarded

Errors print one line and exit 2 (fix the command line or an input file), 1 (the work failed) or
130 (interrupted); YOLO_RDNA1_DEBUG=1 prints the traceback as well.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import Rdna1Error
from .runfiles import VERDICTS_DB

USAGE = __doc__ or ""


class UsageError(Rdna1Error):
    """A command line that cannot run; printed as one message, exit code 2."""


def parse_kv(tokens: list[str], allowed: list[str] | None = None, command: str = "") -> dict[str, Any]:
    """``["epochs=3", "amp=False", "max_restarts_per_hour=None"]`` -> ``{"epochs": 3, "amp": False,
    "max_restarts_per_hour": None}`` (YAML scalars; ``None`` in any case is None, as on ``yolo``'s command line)."""
    out: dict[str, Any] = {}
    for tok in tokens:
        if "=" not in tok:
            raise UsageError(f"'{tok}' is not a key=value argument of 'yolo-rdna1 {command}'")
        key, _, raw = tok.partition("=")
        try:
            value = yaml.safe_load(raw) if raw and raw.lower() != "none" else None
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = raw if isinstance(value, (dict,)) else value
    if allowed is not None:
        unknown = [k for k in out if k not in allowed]
        if unknown:
            raise UsageError(f"unknown argument(s) {unknown} for 'yolo-rdna1 {command}'; valid: {', '.join(allowed)}")
    return out


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("PIL",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- commands ---------------------------------------------------------------------------------
def cmd_train(tokens: list[str]) -> int:
    from .training import train

    args = parse_kv(tokens, command="train")
    if "recipe" in args:
        from .recipes import load_recipe

        args = {**load_recipe(args.pop("recipe")), **args}  # the command line wins
    if "data" not in args:
        raise UsageError(
            "'yolo-rdna1 train' needs data=<dataset YAML> or a dataset config name (data=ltdv2 root=<converted folder>)"
        )
    train(**args)
    return 0


DEMO_DEFAULTS: dict[str, Any] = {
    "project": "runs/rdna1",
    "name": "demo",
    "epochs": 2,
    "imgsz": 256,
    "batch": 8,
    "n_train": 64,
    "n_val": 16,
    "faults": "gfx1010",
    "guard": "auto",
    "device": "cpu",
    "seed": 0,
}


def cmd_demo(tokens: list[str]) -> int:
    """Generate the synthetic thermal dataset and train YOLOv8n on it, guarded, under a fault profile."""
    args = {**DEMO_DEFAULTS, **parse_kv(tokens, list(DEMO_DEFAULTS), "demo")}
    from .callbacks import last_run
    from .data import make_synthetic_thermal
    from .training import train

    project = Path(args["project"]).resolve()
    data = make_synthetic_thermal(
        project / "synthetic-thermal",
        n_train=int(args["n_train"]),
        n_val=int(args["n_val"]),
        seed=int(args["seed"]),
        overwrite=True,
    )
    train(
        data=str(data),
        model="yolov8n.yaml",
        guard=args["guard"],
        faults=args["faults"],
        epochs=args["epochs"],
        imgsz=args["imgsz"],
        batch=args["batch"],
        device=args["device"],
        project=str(project),
        name=args["name"],
        exist_ok=True,
        plots=False,
        workers=0,
        seed=int(args["seed"]),
    )
    run = last_run()
    report = run.report() if run else {"calls": 0, "bypassed": 0, "fallbacks": 0, "signatures": [], "probe": ""}
    used = [r for r in report["signatures"] if r["calls"]]  # counted train/val calls, not the model-building forwards
    bypassed_sigs = sum(1 for r in used if r["bypassed"])
    print()
    if report["probe"]:
        print(f"probe: {report['probe']}")
    print(
        f"yolo_rdna1 demo: {report['bypassed']} of {report['calls']} conv calls in training and validation were "
        f"bypassed ({bypassed_sigs} of {len(used)} conv signatures), {report['fallbacks']} in-process "
        f"fallbacks; fault profile {args['faults']!r}, guard {args['guard']!r}; run dir {project / args['name']}"
    )
    return 0


def cmd_probe(tokens: list[str]) -> int:
    from .probe.api import print_report, probe
    from .verdicts import VerdictStore

    allowed = ["model", "imgsz", "batch", "data", "device", "amp", "env_profile", "refresh", "cache"]
    args = parse_kv(tokens, allowed, "probe")
    cache = args.pop("cache", None)
    store = VerdictStore(Path(cache) / VERDICTS_DB) if cache else None
    report = probe(store=store, **args)
    print_report(report)
    return 0


def cmd_verdicts(tokens: list[str]) -> int:
    """Verdict management. What it prints may come from someone else's file, so every stored text
    is escaped (no control characters, no new lines) and ``miopen`` prints only comments and
    MIOpenDriver lines built from the validated numbers of a signature."""
    from .verdicts.store import VerdictStore, miopen_driver_command, printable

    if not tokens or tokens[0] not in ("list", "export", "import", "clear", "miopen"):
        raise UsageError(
            "usage: yolo-rdna1 verdicts list|export|import|clear|miopen [file=... device=... cache=... replace=True]"
        )
    action, args = (
        tokens[0],
        parse_kv(tokens[1:], ["file", "device", "cache", "bad", "replace"], f"verdicts {tokens[0]}"),
    )
    store = VerdictStore(Path(args["cache"]) / VERDICTS_DB) if args.get("cache") else VerdictStore()
    device = args.get("device")
    if action == "list":
        rows = [v for v in store.query(device) if not args.get("bad") or v.bad]
        for v in rows:
            origin = f" {v.origin}" if v.origin else ""
            print(
                printable(
                    f"{v.verdict:6} {v.signature}  [{v.env_profile}] {v.device}  ({v.source}{origin})  {v.detail}"
                )
            )
        print(printable(f"{len(rows)} verdicts in {store.path}"))
    elif action == "export":
        if not args.get("file"):
            raise UsageError("'verdicts export' needs file=<path.json>")
        n = store.export_json(args["file"], device)
        print(printable(f"exported {n} verdicts to {args['file']}"))
    elif action == "import":
        if not args.get("file"):
            raise UsageError("'verdicts import' needs file=<path.json>")
        replace = args.get("replace", False)
        if not isinstance(replace, bool):
            raise UsageError(f"replace={printable(str(replace))} is not True or False")
        for line in store.import_json(args["file"], replace=replace).lines():
            print(line)
    elif action == "clear":
        n = store.clear(device)
        print(printable(f"removed {n} verdicts from {store.path}"))
    else:
        bad = [v for v in store.query(device) if v.bad]
        shown = 0
        for v in bad:
            try:
                line = miopen_driver_command(v)
            except ValueError:  # a row no validation caught must not end the listing
                store.skipped += 1
                continue
            print(
                f"# {v.verdict} ({v.source}) on {printable(v.device)} "
                f"[{printable(v.env_profile)}]: {printable(v.detail)}\n{line}"
            )
            shown += 1
        skipped = f"; {store.skipped} stored rows left out (not valid verdicts)" if store.skipped else ""
        print(f"# {shown} bad conv signatures{skipped}")
    return 0


def cmd_report(tokens: list[str]) -> int:
    from .report import print_report

    if len(tokens) != 1 or "=" in tokens[0]:
        raise UsageError("usage: yolo-rdna1 report RUN_DIR")
    return print_report(tokens[0])


def cmd_doctor(tokens: list[str]) -> int:
    from .doctor import print_doctor

    return print_doctor(**parse_kv(tokens, ["device"], "doctor"))


DATA_ACTIONS = ("convert-ltdv2", "check", "sample", "drift")


def _required(args: dict[str, Any], key: str, action: str) -> str:
    if args.get(key) in (None, ""):
        raise UsageError(f"'yolo-rdna1 data {action}' needs {key}=...")
    return str(args[key])


def cmd_data(tokens: list[str]) -> int:
    """Datasets: convert LTDV2, check any YOLO dataset, write the LTDV2-shaped sample, drift splits.

    Ctrl-C (and SIGTERM during a conversion) ends with one line saying what a rerun does, exit
    code 128 + the signal's number; every data action is safe to run again.
    """
    if not tokens or tokens[0] not in DATA_ACTIONS:
        raise UsageError(
            f"usage: yolo-rdna1 data {'|'.join(DATA_ACTIONS)} key=value ... (yolo-rdna1 help lists the keys)"
        )
    action = tokens[0]
    try:
        return _data_action(action, tokens)
    except KeyboardInterrupt as e:
        again = (
            "running the same command again resumes where it stopped"
            if action == "convert-ltdv2"
            else "run the same command again"
        )
        print(f"yolo-rdna1 data {action}: interrupted; {again}", file=sys.stderr)
        return 128 + int(getattr(e, "signum", signal.SIGINT))


def _data_action(action: str, tokens: list[str]) -> int:
    if action == "convert-ltdv2":
        from .data.ltdv2 import convert_ltdv2

        args = parse_kv(tokens[1:], ["src", "dst", "splits", "link", "frames", "progress"], "data convert-ltdv2")
        splits = args.get("splits", "Train,Valid")
        report = convert_ltdv2(
            _required(args, "src", action),
            _required(args, "dst", action),
            splits=[str(s) for s in splits] if isinstance(splits, list) else str(splits),
            link=str(args.get("link", "symlink")),
            progress=bool(args.get("progress", True)),
            frames=args.get("frames"),
        )
        print(report.table())
        return 1 if report.problems else 0
    if action == "check":
        from .data.check import check_dataset

        args = parse_kv(tokens[1:], ["data", "root", "hashes", "progress"], "data check")
        result = check_dataset(
            _required(args, "data", action),
            root=args.get("root"),
            hashes=bool(args.get("hashes", True)),
            progress=bool(args.get("progress", True)),
        )
        print(result.summary())
        return 0 if result.ok else 1
    if action == "sample":
        from .data.ltdv2_sample import make_ltdv2_sample

        args = parse_kv(
            tokens[1:], ["dst", "months", "clips_per_day", "frames_per_clip", "days_per_month", "seed"], "data sample"
        )
        dst = _required(args, "dst", action)
        try:
            root = make_ltdv2_sample(dst, **{k: v for k, v in args.items() if k != "dst"})
        except ValueError as e:
            raise UsageError(str(e)) from None
        print(f"LTDV2-shaped sample in {root}; next: yolo-rdna1 data convert-ltdv2 src={root} dst=<folder>")
        return 0
    from .data.ltdv2 import make_drift_splits

    args = parse_kv(tokens[1:], ["dst", "scheme", "train_months"], "data drift")
    print(
        make_drift_splits(
            _required(args, "dst", action), scheme=args.get("scheme"), train_months=args.get("train_months")
        ).summary()
    )
    return 0


def _lifecycle(kind: str, tokens: list[str]) -> int:
    """``yolo-rdna1 val|predict|export``: Ultralytics' own call on ``YOLO(model)`` with the plugin.

    Bad input (no model, a missing model file, an unknown key, a bad value) is a usage error
    (exit 2) before anything runs; a call that fails (a dataset or source that does not exist,
    an export that cannot be made) is one line from :func:`main` too. No traceback either way.
    """
    from ._ultralytics import message
    from .options import OptionError
    from .training import split_options

    args = parse_kv(tokens, command=kind)
    model = args.pop("model", None)
    if not model:
        raise UsageError(f"'yolo-rdna1 {kind}' needs model=<a .pt checkpoint or a model YAML>")
    try:
        options, args = split_options(args)
        from ultralytics.cfg import check_cfg

        check_cfg(dict(args))  # value types and ranges, as 'yolo {kind}' checks them
    except (OptionError, TypeError, ValueError) as e:
        raise UsageError(message(e)) from None
    if kind == "predict":
        args.setdefault("save", True)  # as 'yolo predict': results land in runs/<task>/predict
    path = Path(str(model))
    if path.suffix not in (".yaml", ".yml") and path.parent != Path(".") and not path.exists():
        raise UsageError(f"model file {model} not found; pass model=<a .pt checkpoint or a model YAML>")
    from ultralytics import YOLO

    from .callbacks import add_callbacks

    try:
        yolo = YOLO(str(model))
    except FileNotFoundError as e:
        raise UsageError(
            f"model {model} not found ({message(e)}); pass model=<a .pt checkpoint or a model YAML>"
        ) from None
    add_callbacks(yolo, **options.as_dict())
    if kind == "val":
        yolo.val(**args)
    elif kind == "predict":
        for _ in yolo.predict(stream=True, **args):  # streamed: a long video never piles up in memory
            pass
    else:
        print(yolo.export(**args))
    return 0  # the call's one-line guard summary went to the log


def cmd_val(tokens: list[str]) -> int:
    return _lifecycle("val", tokens)


def cmd_predict(tokens: list[str]) -> int:
    return _lifecycle("predict", tokens)


def cmd_export(tokens: list[str]) -> int:
    return _lifecycle("export", tokens)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "demo": cmd_demo,
    "train": cmd_train,
    "probe": cmd_probe,
    "verdicts": cmd_verdicts,
    "report": cmd_report,
    "doctor": cmd_doctor,
    "data": cmd_data,
    "val": cmd_val,
    "predict": cmd_predict,
    "export": cmd_export,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.strip())
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"yolo-rdna1: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    _setup_logging()
    try:
        return command(argv[1:])
    except KeyboardInterrupt:
        code, text = 130, "interrupted" + (RESUME_HINT if argv[0] == "train" else "")
    except BrokenPipeError:  # the reader went away (``... | head``): nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush is quiet
        return 141
    except Exception as e:  # noqa: BLE001 - the CLI shows one line, never a traceback
        code, text = explain(e)
        if os.environ.get("YOLO_RDNA1_DEBUG"):
            import traceback

            traceback.print_exc()
    print(f"yolo-rdna1 {argv[0]}: {text}", file=sys.stderr)
    return code


RESUME_HINT = "; the same command with resume=True continues the training from its last checkpoint"


def explain(e: Exception) -> tuple[int, str]:
    """Exit code and one line for an error: 2 for bad input (what to change), 1 for a failure."""
    from ._ultralytics import is_input_error, message

    if isinstance(e, Rdna1Error):
        return e.exit_code, message(e)
    if is_input_error(e):  # Ultralytics' own check of an argument, dataset or file
        return 2, f"{message(e)}; fix that argument and run again"
    if isinstance(e, (FileNotFoundError, FileExistsError)):
        return 2, message(e)
    first = message(e)[:300] or "no message"
    return 1, f"failed: {type(e).__name__}: {first} (YOLO_RDNA1_DEBUG=1 shows where)"


if __name__ == "__main__":
    sys.exit(main())
