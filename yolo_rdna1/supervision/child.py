"""The training process a supervisor starts: ``python -m yolo_rdna1.supervision.child SPEC.json``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Train; a resume that cannot be right ends with :data:`~.checkpoint.BAD_INPUT_EXIT_CODE`.

    Its message goes to the journal, where the supervisor reads it: restarting would only
    repeat it.
    """
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as f:
        kwargs = json.load(f)
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
        journal.append(Path(kwargs["project"]) / str(kwargs["name"]), "bad_input", message=str(e))
        return BAD_INPUT_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
