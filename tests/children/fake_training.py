"""Child program of tests/supervision/test_supervisor.py: a training child that only waits for a signal.

    FAKE_OUT=DIR [FAKE_STUBBORN=1] python tests/children/fake_training.py ARGS... SPEC

Stands in for the supervisor's training child (a wrapper script execs it): writes the path of its
spec (the last argument) to ``DIR/spec`` and its pid to ``DIR/pid`` (atomically), then sleeps.
Interrupted (SIGINT) it writes ``DIR/interrupted`` and exits 130; with ``FAKE_STUBBORN`` set it
ignores SIGTERM and SIGINT, so only a SIGKILL ends it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """130 when interrupted; a stubborn child never returns."""
    out = Path(os.environ["FAKE_OUT"])
    if os.environ.get("FAKE_STUBBORN"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    (out / "spec").write_text(argv[-1])
    (out / "pid.tmp").write_text(str(os.getpid()))
    os.replace(out / "pid.tmp", out / "pid")
    try:
        time.sleep(300)
    except KeyboardInterrupt:
        (out / "interrupted").write_text("yes")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
