"""Child program of the supervisor tests: ``supervise`` in a process of its own.

    python tests/children/supervise.py KWARGS_JSON POLICY_JSON PYTHON [--no-sleep]

Trains ``supervise(KWARGS, RestartPolicy(**POLICY), python=PYTHON)``; PYTHON is the interpreter
(or a wrapper script) that runs each training child. ``--no-sleep`` skips the waits between
restarts. Warnings go to stderr, one line each. SIGINT raises ``KeyboardInterrupt`` and SIGTERM
and SIGHUP end the process, as in a terminal, whatever the parent process had set.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time

from yolo_rdna1.supervision import RestartPolicy, supervise


def main(argv: list[str]) -> int:
    """0 when the supervised training completed; ``supervise`` raises when it gave up."""
    kwargs, policy, python, *flags = argv
    if flags not in ([], ["--no-sleep"]):
        raise SystemExit(f"unknown flags {flags}")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)  # a test run under nohup must not hide it
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sleep = (lambda s: None) if flags else time.sleep
    supervise(json.loads(kwargs), RestartPolicy(**json.loads(policy)), sleep=sleep, python=python)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
