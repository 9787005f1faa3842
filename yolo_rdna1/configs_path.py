"""The shipped YAML configs, and the one way a config is found by name or by path.

Fault profiles, MIOpen env profiles, recipes and dataset configs are all given as text (an
option, a command-line key, ``YOLO_RDNA1_FAULTS``), and all follow one rule, so that a file a
user did not mean cannot stand in for a shipped one:

* a bare **name** (no ``/``, no path separator, not ending in ``.yaml``/``.yml``) always means
  the shipped file ``configs/<kind>/<name>.yaml``; a file in the working directory named like it
  is never read in its place;
* anything else is a **path** to a file of the user's own (``./mine.yaml``, ``mine.yaml``,
  ``/etc/x/y``); so is a ``pathlib.Path``.

Every such file is read with ``yaml.safe_load`` (no Python objects, no code) and must hold a
mapping at the top level; each problem is one line naming the file, raised as the caller's own
error class (a subclass of :class:`~yolo_rdna1.errors.Rdna1Error`).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from .errors import Rdna1Error

#: Config kinds (folders under ``configs/``) and how messages call one of their files.
KINDS = {"faults": "fault profile", "miopen": "MIOpen env profile", "recipes": "recipe", "datasets": "dataset config"}
_SUFFIXES = (".yaml", ".yml")


def config_dir(*parts: str) -> Path:
    """The folder ``configs/<parts>``: ``yolo_rdna1/configs`` in a wheel, ``configs/`` in a checkout.

    The repository keeps configs at its top level for people to read and copy; the wheel maps
    that folder into the package (pyproject's package-dir), so both layouts are looked up here.
    """
    try:
        import yolo_rdna1.configs as pkg  # the wheel (or an editable install that maps it)

        base = Path(next(iter(pkg.__path__)))
    except (ImportError, StopIteration):
        base = Path(__file__).resolve().parent.parent / "configs"
    return base.joinpath(*parts)


def shipped_configs(kind: str) -> dict[str, Path]:
    """The shipped files of one kind by name (file stem), sorted."""
    folder = config_dir(kind)
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def is_name(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a shipped config rather than a file (see the module's rule)."""
    if not isinstance(spec, str):
        return False
    separators = {"/", os.sep, os.altsep} - {None}
    return bool(spec) and not any(s in spec for s in separators) and not spec.lower().endswith(_SUFFIXES)


def resolve_named(kind: str, spec: str | os.PathLike, error: type[Rdna1Error] = Rdna1Error) -> Path:
    """The file behind ``spec``: the shipped ``configs/<kind>/<spec>.yaml`` for a name, else the path.

    Raises ``error`` for an unknown name (listing the shipped ones) or a path that is not a file.
    """
    what = KINDS[kind]
    shipped = shipped_configs(kind)
    if is_name(spec):
        text = str(spec)
        if text in shipped:
            return shipped[text]
        close = difflib.get_close_matches(text, shipped, n=1, cutoff=0.8)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise error(
            f"unknown {what} {text!r}; {hint}shipped {what}s: {', '.join(shipped) or 'none'}; "
            f"for a file of your own give its path (e.g. ./{text}.yaml)"
        )
    path = Path(os.fspath(spec)).expanduser()
    if not path.is_file():
        stem = path.stem if isinstance(spec, str) and len(Path(spec).parts) == 1 else None
        hint = f"; the shipped {what} is named {stem!r}, without {path.suffix}" if stem in shipped else ""
        raise error(f"{what} {path}: {'not a file' if path.exists() else 'no such file'}{hint}")
    return path


def load_yaml_file(path: Path, error: type[Rdna1Error] = Rdna1Error, what: str = "config") -> dict[str, Any]:
    """A YAML file's top-level mapping, read safely; ``error`` with one line naming the file otherwise."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{what} {path}: cannot be read ({_one_line(e)})") from None
    try:
        data = yaml.safe_load(text)
    except (
        yaml.YAMLError,
        ValueError,
        RecursionError,
    ) as e:  # ValueError: a date like 2020-13-45, an int of 5000 digits
        raise error(f"{what} {path}: not valid YAML ({_one_line(e)})") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise error(f"{what} {path}: expected a mapping of keys at the top level, got {got}")
    return data


def load_named_yaml(
    kind: str, spec: str | os.PathLike, error: type[Rdna1Error] = Rdna1Error
) -> tuple[Path, dict[str, Any]]:
    """A config of ``kind`` given by shipped name or path: (its file, its top-level mapping)."""
    path = resolve_named(kind, spec, error)
    return path, load_yaml_file(path, error, KINDS[kind])


def _one_line(e: BaseException) -> str:
    """An exception's text on one line (YAML errors span several, with a caret diagram)."""
    text = getattr(e, "strerror", None) if isinstance(e, OSError) else None
    return " ".join(str(text or e).split()) or type(e).__name__
