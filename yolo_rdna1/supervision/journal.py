"""``journal.jsonl``: what happened to a long run, one JSON object a line, appended and fsynced.

Events: ``start``, ``restart`` (with its cause, whether the run had progressed and the wait
before the next attempt), ``attributed`` (a conv blamed for a crash), ``checkpoint`` (``epoch``,
``batch``: the position it holds, ``batch`` 0 for the end-of-epoch ``last.pt``), ``resume`` (the
checkpoint and position a restart continues from), ``thermal_pause``, ``bad_input`` (a resume that
cannot be right; the supervisor stops on it), ``end``. ``yolo-rdna1 report RUN_DIR`` reads it.

A process killed in the middle of a write leaves a torn line without its newline; the next
append starts on a line of its own, and the reader keeps every complete event (also one that an
older writer glued to a torn line) and counts what it skipped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runfiles

JOURNAL_FILE = runfiles.JOURNAL


def append(run_dir: str | os.PathLike, event: str, **fields: Any) -> dict[str, Any]:
    """Add one event; a crash right after still leaves it on disk."""
    path = Path(run_dir) / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"time": time.time(), "event": event, **fields}
    line = (json.dumps(entry) + "\n").encode("utf-8")
    with open(path, "a+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # a writer died mid-line: end that line, keep this event whole
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    return entry


@dataclass
class Contents:
    """The events of a journal, in order, and how many lines (or torn pieces) were skipped."""

    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0


def _event(text: str) -> dict[str, Any] | None:
    """``text`` as an event: a JSON object whose ``event`` is a string; None otherwise."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("event"), str) else None


def _glued(line: str) -> dict[str, Any] | None:
    """A complete event after a torn prefix on the same line (an older writer appended to a torn line)."""
    start = line.find("{", 1)
    while start != -1:
        found = _event(line[start:])
        if found is not None:
            return found
        start = line.find("{", start + 1)
    return None


def load(run_dir: str | os.PathLike) -> Contents:
    """Every complete event; torn lines and lines that are not events are skipped and counted."""
    path = Path(run_dir) / JOURNAL_FILE
    out = Contents()
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        found = _event(line)
        if found is None:
            found = _glued(line)
            out.skipped += 1
        if found is not None:
            out.events.append(found)
    return out


def read(run_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The events in order (see :func:`load`)."""
    yield from load(run_dir).events


def _time(event: dict[str, Any]) -> float | None:
    t = event.get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) else None


def summarize(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Restarts, their causes, and minutes of training lost to them.

    Lost time of a restart is the time from the last checkpoint before the crash to the crash:
    the work the resumed run has to do again. Events without a usable time add no lost time.
    """
    contents = load(run_dir)
    events = contents.events
    restarts = [e for e in events if e["event"] == "restart"]
    causes: dict[str, int] = {}
    lost = 0.0
    last_checkpoint = next((_time(e) for e in events if e["event"] == "start"), None)
    for e in events:
        if e["event"] in ("start", "checkpoint"):
            last_checkpoint = _time(e)
        elif e["event"] == "restart":
            cause = str(e.get("cause", "unknown"))
            causes[cause] = causes.get(cause, 0) + 1
            t = _time(e)
            if last_checkpoint is not None and t is not None:
                lost += max(0.0, t - last_checkpoint)
    return {
        "events": len(events),
        "skipped": contents.skipped,
        "restarts": len(restarts),
        "causes": causes,
        "lost_minutes": lost / 60,
        "attributed": [str(e.get("signature")) for e in events if e["event"] == "attributed" and e.get("signature")],
        "ended": next((str(e.get("status", "unknown")) for e in reversed(events) if e["event"] == "end"), None),
    }
