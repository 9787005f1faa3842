"""Child program of tests/probe/test_prober.py: a parent whose probe child hangs in a vendor call.

    python tests/children/probe_parent.py PIDFILE SIGNATURE_KEY

Starts a probe child (``python -m yolo_rdna1.probe.child cpu``), asks it to probe SIGNATURE_KEY
(hung by the fault profile in ``YOLO_RDNA1_FAULTS``), writes the probe child's pid to PIDFILE
once it is inside the vendor call, and sleeps: the test kills this parent there and expects the
probe child to end with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Sleeps until killed; returns only if nobody kills it within a minute."""
    pidfile, key = argv
    argv = [sys.executable, "-m", "yolo_rdna1.probe.child", "cpu"]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child.stdout.readline()  # ready
    child.stdin.write(json.dumps({"id": 0, "sig": key}) + "\n")
    child.stdin.flush()
    while '"vendor"' not in child.stdout.readline():  # the child is now in the hung vendor call
        pass
    Path(pidfile).write_text(str(child.pid))
    time.sleep(60)  # the parent is killed here
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
