"""Child program of tests/verdicts/test_breadcrumb.py: a process that dies by SIGABRT inside a conv.

    python tests/children/breadcrumb_abort.py STEM DONE_KEY IN_FLIGHT_KEY

It logs DONE_KEY entered and left, then enters IN_FLIGHT_KEY and aborts: the next start must
find IN_FLIGHT_KEY in flight under the breadcrumb STEM.
"""

from __future__ import annotations

import os
import sys

from yolo_rdna1.verdicts.breadcrumb import Breadcrumb


def main(argv: list[str]) -> int:
    """Never returns: the process aborts with the second signature in flight."""
    stem, done, bad = argv
    crumb = Breadcrumb(stem)
    crumb.enter(crumb.register(done))
    crumb.leave()
    crumb.enter(crumb.register(bad))
    os.abort()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
