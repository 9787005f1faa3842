"""A progress bar for the dataset commands that needs neither torch nor Ultralytics.

Ultralytics' ``TQDM`` comes with ``ultralytics.utils``, which imports torch: ~1.7 s and ~0.5 GB
for a converter that reads JSON and links files. On a terminal the bar redraws in place (at most
five times a second); in a log file it writes one line when done.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _amount(n: float, binary: bool) -> str:
    if not binary:
        return f"{n:.0f}"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} GiB"


class ProgressBar:
    """``desc: 42% 1234/2938 img 3.1s``; ``binary=True`` shows a byte count in KiB/MiB/GiB."""

    def __init__(
        self, total: int, desc: str, unit: str = "it", binary: bool = False, stream: TextIO | None = None
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = "" if binary else f" {unit}"
        self.binary = binary
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = self._drawn = time.monotonic()
        self._live = bool(getattr(self.stream, "isatty", lambda: False)())

    def _line(self) -> str:
        share = f"{100 * self.done / self.total:3.0f}% " if self.total else ""
        of = f"/{_amount(self.total, self.binary)}" if self.total else ""
        return (
            f"{self.desc}: {share}{_amount(self.done, self.binary)}{of}{self.unit} "
            f"{time.monotonic() - self._start:.1f}s"
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._live and now - self._drawn >= 0.2:
            self._drawn = now
            self.stream.write("\r" + self._line())
            self.stream.flush()

    def close(self) -> None:
        self.stream.write(("\r" if self._live else "") + self._line() + "\n")
        self.stream.flush()
