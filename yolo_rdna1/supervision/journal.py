"""``journal.jsonl``: what happened to a long run, one JSON object a line, appended and fsynced.

Events: ``start``, ``restart`` (with its cause), ``attributed`` (a conv blamed for a crash),
``checkpoint`` (``epoch``, ``batch``: the position it holds, ``batch`` 0 for the end-of-epoch
``last.pt``), ``resume`` (the checkpoint and position a restart continues from),
``thermal_pause``, ``bad_input`` (a resume that cannot be right; the supervisor stops on it),
``end``. ``yolo-rdna1 report RUN_DIR`` reads it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from .. import runfiles

JOURNAL_FILE = runfiles.JOURNAL


def append(run_dir: str | os.PathLike, event: str, **fields: Any) -> dict[str, Any]:
    """Add one event; a crash right after still leaves it on disk."""
    path = Path(run_dir) / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"time": time.time(), "event": event, **fields}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def read(run_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The events in order; a torn last line (a crash mid-write) is skipped."""
    path = Path(run_dir) / JOURNAL_FILE
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def summarize(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Restarts, their causes, and minutes of training lost to them.

    Lost time of a restart is the time from the last checkpoint before the crash to the crash:
    the work the resumed run has to do again.
    """
    events = list(read(run_dir))
    restarts = [e for e in events if e["event"] == "restart"]
    causes: dict[str, int] = {}
    lost = 0.0
    last_checkpoint = next((e["time"] for e in events if e["event"] == "start"), None)
    for e in events:
        if e["event"] in ("start", "checkpoint", "resume"):
            last_checkpoint = e["time"] if e["event"] != "resume" else last_checkpoint
        elif e["event"] == "restart":
            causes[e.get("cause", "unknown")] = causes.get(e.get("cause", "unknown"), 0) + 1
            if last_checkpoint is not None:
                lost += max(0.0, e["time"] - last_checkpoint)
    return {
        "events": len(events),
        "restarts": len(restarts),
        "causes": causes,
        "lost_minutes": lost / 60,
        "attributed": [e.get("signature") for e in events if e["event"] == "attributed"],
        "ended": next((e.get("status") for e in reversed(events) if e["event"] == "end"), None),
    }
