"""Issue 3 benchmark: probe every conv signature of a YOLOv8n training, cold and warm.

    YOLO_RDNA1_FAULTS=gfx1010 python3 benchmarks/probe_time.py --imgsz 640 --batch 4

Cold: an empty verdict store, so every (signature, direction) of the train batches (640x640,
the mosaic path) and validation batches (rect shapes of the synthetic 384x288 frames, like
LTDV2) runs in probe children, hangs and aborts included. Warm: the same call again, answered
from the store.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from yolo_rdna1.data import make_synthetic_thermal
    from yolo_rdna1.probe.api import print_report, probe
    from yolo_rdna1.verdicts import VerdictStore

    work = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    data = make_synthetic_thermal(work / "data", n_train=64, n_val=16, seed=0)
    store = VerdictStore(work / "verdicts.sqlite")
    t = time.perf_counter()
    cold = probe("yolov8n.yaml", imgsz=args.imgsz, batch=args.batch, data=data, device=args.device, store=store, progress=False)
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    warm = probe("yolov8n.yaml", imgsz=args.imgsz, batch=args.batch, data=data, device=args.device, store=store, progress=False)
    warm_s = time.perf_counter() - t
    print_report(cold)
    kinds = collections.Counter(v.verdict for v in cold.verdicts)
    print(f"\ncold: {cold_s:.1f} s for {len(cold.verdicts)} (signature, direction) pairs {dict(kinds)}")
    print(f"warm: {warm_s:.2f} s ({warm.probed} probed, {warm.cached} from the store)")


if __name__ == "__main__":
    main()
