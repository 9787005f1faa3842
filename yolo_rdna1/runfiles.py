"""The files of a run folder (Ultralytics' ``save_dir``): each name once, with who writes and reads it.

Names only, no I/O: every module that opens one of these files takes its name from here, so a
reader of a run folder (a person, ``yolo-rdna1 report``, the supervisor) finds the same names
the writers use.
"""

from __future__ import annotations

import os
from pathlib import Path

# -- written by yolo_rdna1 -------------------------------------------------------------------------
#: Routes and counts of the whole run; ``GuardedRun.write_report`` at train end, read by ``yolo-rdna1 report``.
REPORT = "rdna1_report.json"
#: Bypass share and temperatures per epoch, drawn by ``report.plot`` beside Ultralytics' results.png.
PLOT = "rdna1.png"
#: The plugin options a run started with; the callbacks write it at start, a resumed run reads it back.
OPTIONS = "rdna1_options.json"
#: What the stall watchdog saw when it ended a hung process; ``StallWatchdog`` writes, people read.
WATCHDOG_LOG = "rdna1_watchdog.log"
#: Stem of the crash trail (``.slot``, ``.log``, ``.cause``; ``_rank<N>`` for DDP ranks above 0):
#: ``verdicts.breadcrumb`` writes it during training, the next start and the supervisor read it.
BREADCRUMB = "rdna1_breadcrumb"
#: Beside a breadcrumb (``<stem>.env``): the MIOpen env profile its trail was written under, so a
#: conv left in flight is blamed (and, with ``env_profile=auto``, avoided) under that profile.
TRAIL_ENV_SUFFIX = ".env"
#: Beside a breadcrumb (``<stem>.unstored``): crash verdicts the verdict store could not write (read-only,
#: full disk, in memory), one JSON object a line; each start stores them again until the store keeps them.
UNSTORED_SUFFIX = ".unstored"
#: The supervisor's spec of the training child (its arguments); written at each start, removed on every exit.
CHILD_SPEC = "rdna1_child.json"
#: The supervisor's story of a run, one JSON object a line; ``supervision.journal`` appends, ``report`` reads.
JOURNAL = "journal.jsonl"
#: Mid-epoch checkpoint and the one before it, in :data:`WEIGHTS`; ``supervision.checkpoint`` writes and reads.
MID, MID_PREV = "mid.pt", "mid.prev.pt"

# -- written by Ultralytics, read by yolo_rdna1 ----------------------------------------------------
#: One row per epoch; the callbacks add rdna1 columns and trim it on resume; report and supervisor read it.
RESULTS_CSV = "results.csv"
#: The run's arguments: its presence marks a folder as a training run (``checkpoint.resume_point``).
ARGS_YAML = "args.yaml"
#: Checkpoint folder; Ultralytics writes ``last.pt`` (every epoch) and ``best.pt`` into it.
WEIGHTS = "weights"
LAST = "last.pt"

# -- the verdict cache folder (``cache=``, not a run folder) ----------------------------------------
#: Crash trails of val/predict/export calls, one folder per process (``pid<N>@<host>``) under the
#: cache; ``callbacks.lifecycle`` writes them, its next start attributes the dead ones.
INFLIGHT = "inflight"
#: In such a folder: the device and env profile the process's trail was written under.
SESSION = "session.json"
#: The verdict store's SQLite file; ``verdicts.store`` reads and writes it.
VERDICTS_DB = "verdicts.sqlite"


def breadcrumb_stem(save_dir: str | os.PathLike, rank: int = -1) -> Path:
    """The crash trail of one process of a run: rank 0 (or no DDP) has the plain stem."""
    return Path(save_dir) / (f"{BREADCRUMB}_rank{rank}" if rank > 0 else BREADCRUMB)
