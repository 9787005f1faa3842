"""Child program of the guarded-training tests: ``yolo_rdna1.train`` runs, one after another.

    python tests/children/train.py RUNS_JSON

RUNS_JSON is a list of keyword dicts for ``yolo_rdna1.train`` (one import of torch and
Ultralytics for them all). After each run one line ``RESULT <json>`` says what ``last_run()``
kept: ``name``, ``totals``, ``routes``, ``attributed``, ``probe`` (the probe's summary),
``device`` and ``env`` (the verdict table's keys).
"""

from __future__ import annotations

import json
import sys

import yolo_rdna1
from yolo_rdna1.callbacks import last_run


def main(argv: list[str]) -> int:
    """0 when every training finished; a failed one raises (or the process dies, as a crash would)."""
    (runs,) = argv
    for kwargs in json.loads(runs):
        yolo_rdna1.train(**kwargs)
        run = last_run()
        result = {
            "name": kwargs.get("name"),
            "totals": run.final_totals,
            "routes": run.final_routes,
            "attributed": run.attributed,
            "probe": run.probe_summary,
            "device": run.device_key,
            "env": run.env_profile,
        }
        print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
