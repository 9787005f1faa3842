"""Study: a bystander for the host-spell experiments (issue 5): times a fixed pure-Python workload
every ``--every`` seconds and logs ``unix_time ms`` lines, so another process's slow rounds can
be lined up with this one's. Run it pinned to a CPU the measured process does not use: if its
slow periods coincide with the measured process's, the spells are the whole host's (a shared
physical machine), not one vCPU's.

    taskset -c 12 python3 -m benchmarks.studies.bystander_canary --seconds 300 > bystander.txt
"""

from __future__ import annotations

import argparse
import time


def workload(n: int = 20000) -> float:
    """Milliseconds for ``n`` iterations of a small pure-Python loop body."""
    t0 = time.perf_counter()
    acc = 0
    for i in range(n):
        acc += i * i % 7
    return (time.perf_counter() - t0) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--every", type=float, default=0.25)
    args = ap.parse_args()
    end = time.time() + args.seconds
    while time.time() < end:
        print(f"{time.time():.3f} {workload():.3f}", flush=True)
        time.sleep(args.every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
