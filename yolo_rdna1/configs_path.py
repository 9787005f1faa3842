"""Where the shipped YAML configs live, installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path


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
