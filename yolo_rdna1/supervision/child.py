"""The training process a supervisor starts: ``python -m yolo_rdna1.supervision.child [--parent PID] SPEC.json``."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path


def _end_with_parent(run_dir: Path, parent: int | None) -> None:
    """End this training when the supervisor is gone (killed, or its terminal closed without
    passing the hangup on): unsupervised, it would run on beside the second trainer a later
    ``resume=True`` starts in the same folder.

    It ends as a SIGTERM from the supervisor ends it: checkpoints are written atomically, so a
    stop at any point leaves the newest one readable, and the conv in flight is no crash cause,
    so its trail goes first (the next start must not blame it).
    """
    from ..parent_watch import watch_parent
    from .supervisor import clear_breadcrumbs

    def stop() -> None:
        clear_breadcrumbs(run_dir)
        os.kill(os.getpid(), signal.SIGTERM)

    watch_parent(stop, parent=parent)


def main(argv: list[str] | None = None) -> int:
    """Train; a resume that cannot be right ends with :data:`~.checkpoint.BAD_INPUT_EXIT_CODE`.

    Its message goes to the journal, where the supervisor reads it: restarting would only
    repeat it. ``--parent PID``: the supervisor's pid; the training ends when that process is gone.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    parent = None
    if len(args) >= 3 and args[0] == "--parent":
        parent, args = int(args[1]), args[2:]
    with open(args[0]) as f:
        kwargs = json.load(f)
    run_dir = Path(kwargs["project"]) / str(kwargs["name"])
    _end_with_parent(run_dir, parent)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..training import train
    from . import journal
    from .checkpoint import BAD_INPUT_EXIT_CODE, ResumeError

    try:
        train(**kwargs)
    except KeyboardInterrupt:  # the supervisor passed on a Ctrl-C: it says what happened, no traceback here
        return 130
    except ResumeError as e:
        logging.getLogger("yolo_rdna1").error("yolo_rdna1: %s", e)
        journal.append(run_dir, "bad_input", message=str(e))
        return BAD_INPUT_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
