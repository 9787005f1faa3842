"""Crash attribution: which conv was on the vendor library when the process died.

A hang or an abort cannot be caught in-process, so the process leaves a trail the *next* start
reads. Two files per run (and rank):

* ``<stem>.log``: one line per signature, appended (flushed and fsynced) before the
  signature's first vendor call in this process; the line number is the signature's index;
* ``<stem>.slot``: 8 bytes, memory-mapped, holding ``index + 1`` of the signature whose vendor
  call is in flight, 0 when none. Setting it is a single store into shared memory (well under a
  microsecond) and survives the process: the kernel owns the pages of a shared file mapping.

The first vendor call of each signature is synchronized with the device before the slot is
cleared, so an asynchronous fault of a first call is blamed on the right conv. Later calls are
not synchronized (that would cost the overlap of the whole step); a fault is then blamed on the
conv whose launch was in flight, which is what a synchronous fault and a hang look like.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
from pathlib import Path

from ..signature import ConvSignature, SignatureError

LOGGER = logging.getLogger("yolo_rdna1")

#: Written next to the slot by a watchdog that kills a stalled process, so the next start knows
#: the in-flight conv hung rather than aborted.
CAUSE_SUFFIX = ".cause"


class Breadcrumb:
    """The trail of one training process (one rank)."""

    def __init__(self, stem: str | os.PathLike) -> None:
        self.stem = Path(stem)
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self._path(".log"), "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the run
        self._index: dict[str, int] = {}
        with open(self._path(".slot"), "wb") as f:
            f.write(b"\0" * 8)
            f.flush()
            os.fsync(f.fileno())
        self._slot_file = open(self._path(".slot"), "r+b")  # noqa: SIM115
        self._mm = mmap.mmap(self._slot_file.fileno(), 8)
        self._slot = ctypes.c_int64.from_buffer(self._mm)
        self._lines = 0

    def _path(self, suffix: str) -> Path:
        return self.stem.with_name(self.stem.name + suffix)

    def register(self, key: str) -> int:
        """Log a signature before its first vendor call; returns the value to put in the slot."""
        idx = self._index.get(key)
        if idx is None:
            self._log.write(key + "\n")
            self._log.flush()
            os.fsync(self._log.fileno())
            self._lines += 1
            idx = self._index[key] = self._lines
        return idx

    def enter(self, idx: int) -> None:
        self._slot.value = idx

    def leave(self) -> None:
        self._slot.value = 0

    def close(self) -> None:
        """End of a clean run: nothing is in flight, remove the trail."""
        self.leave()
        del self._slot
        self._mm.close()
        self._slot_file.close()
        self._log.close()
        for suffix in (".log", ".slot", CAUSE_SUFFIX):
            self._path(suffix).unlink(missing_ok=True)


def mark_hang(stem: str | os.PathLike) -> None:
    """Called by whoever ends a stalled process: the in-flight conv hung."""
    Path(str(stem) + CAUSE_SUFFIX).write_text("hang\n")


def in_flight(stem: str | os.PathLike) -> tuple[str, str] | None:
    """The (signature key, cause) a dead process left in flight, or None after a clean end.

    ``cause`` is ``hang`` when a watchdog said so, else ``abort``. A line that is not a conv
    signature key (a damaged or foreign file) is never blamed: it is skipped with a warning, so
    it can neither become a verdict nor reach a reproducer line.
    """
    stem = Path(stem)
    slot_path, log_path = Path(str(stem) + ".slot"), Path(str(stem) + ".log")
    if not slot_path.is_file() or not log_path.is_file():
        return None
    raw = slot_path.read_bytes()[:8]
    idx = int.from_bytes(raw, "little", signed=True) if len(raw) == 8 else 0
    if idx <= 0:
        return None
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    if idx > len(lines):
        return None
    try:
        ConvSignature.from_key(lines[idx - 1])
    except SignatureError as e:
        LOGGER.warning(
            "yolo_rdna1: skipped 1 crash breadcrumb: line %d of %s is %s; no verdict is recorded for it",
            idx,
            log_path,
            e,
        )
        return None
    cause_path = Path(str(stem) + CAUSE_SUFFIX)
    cause = "hang" if cause_path.is_file() and cause_path.read_text().strip() == "hang" else "abort"
    return lines[idx - 1], cause


def clear(stem: str | os.PathLike) -> None:
    for suffix in (".log", ".slot", CAUSE_SUFFIX):
        Path(str(stem) + suffix).unlink(missing_ok=True)
