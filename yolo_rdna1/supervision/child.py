"""The training process a supervisor starts: ``python -m yolo_rdna1.supervision.child SPEC.json``."""

from __future__ import annotations

import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as f:
        kwargs = json.load(f)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..training import train

    train(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
