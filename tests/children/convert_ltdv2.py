"""Child program of the interruption tests in tests/data/test_ltdv2_convert.py: ``yolo-rdna1 data
convert-ltdv2`` (its command function, without the torch-importing error set-up of ``main``) with
every frame's link slowed down, so that a signal lands mid-conversion.

    python tests/children/convert_ltdv2.py SRC DST
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yolo_rdna1.data.ltdv2 as ltdv2
from yolo_rdna1.cli import cmd_data

_link = ltdv2._link


def slow_link(source: Path, target: Path, mode: str) -> None:
    """The converter's own link, 20 ms later: a 255-frame sample takes seconds, not a blink."""
    time.sleep(0.02)
    _link(source, target, mode)


def main(argv: list[str]) -> int:
    """Convert ``argv[0]`` (an LTDV2 download) into ``argv[1]``; the command's exit code."""
    src, dst = argv
    ltdv2._link = slow_link
    return cmd_data(["convert-ltdv2", f"src={src}", f"dst={dst}", "progress=False"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
