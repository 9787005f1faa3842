"""How long the probe takes to judge every conv signature of a YOLOv8n training, cold and warm.

Cold: an empty verdict store, so every (signature, direction) of the train batches (the mosaic
path at ``--imgsz``) and validation batches (rect shapes of the synthetic 384x288 frames, like
LTDV2) runs in probe children, simulated hangs and aborts included (``--faults``, the
``gfx1010`` profile by default). Warm: the same call again, answered from the store. The store
is ``--verdicts``/verdicts.sqlite, where the plugin looks with ``cache=`` the same folder, so a
training run after this starts warm.

    python3 -m benchmarks.probe_time --imgsz 640 --batch 4                 # the CPU figure
    python3 -m benchmarks.probe_time --device 0 --batch 16 --out "$OUT"    # on the GPU
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

from benchmarks import harness


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default=None, help="an existing data.yaml (else a small synthetic set is made)")
    ap.add_argument("--verdicts", default=None, help="verdict store folder (must start empty for a cold figure)")
    ap.add_argument("--faults", default="gfx1010", help="fault profile the probe children simulate ('' for none)")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="probe_time_"))
    harness.offline(work / "yolo_config")
    from yolo_rdna1.faults import ENV_VAR

    if args.faults:
        os.environ[ENV_VAR] = args.faults  # the documented switch; probe children inherit it
    else:
        os.environ.pop(ENV_VAR, None)

    from yolo_rdna1.data import make_synthetic_thermal
    from yolo_rdna1.probe.api import print_report, probe
    from yolo_rdna1.verdicts import VerdictStore

    data = Path(args.data) if args.data else make_synthetic_thermal(work / "data", n_train=64, n_val=16, seed=0)
    folder = Path(args.verdicts) if args.verdicts else work / "verdicts"
    folder.mkdir(parents=True, exist_ok=True)
    store = VerdictStore(folder / "verdicts.sqlite")
    t = time.perf_counter()
    cold = probe(
        "yolov8n.yaml", imgsz=args.imgsz, batch=args.batch, data=data, device=args.device, store=store, progress=False
    )
    cold_s = time.perf_counter() - t
    t = time.perf_counter()
    warm = probe(
        "yolov8n.yaml", imgsz=args.imgsz, batch=args.batch, data=data, device=args.device, store=store, progress=False
    )
    warm_s = time.perf_counter() - t
    print_report(cold)
    kinds = dict(collections.Counter(v.verdict for v in cold.verdicts))
    result = {
        "meta": harness.meta(args.device, imgsz=args.imgsz, batch=args.batch, faults=args.faults),
        "cold_s": cold_s,
        "warm_s": warm_s,
        "pairs": len(cold.verdicts),
        "verdicts": kinds,
        "cold_probed": cold.probed,
        "warm_probed": warm.probed,
        "warm_cached": warm.cached,
        "summary": cold.summary(),
    }
    print(f"\ncold: {cold_s:.1f} s for {len(cold.verdicts)} (signature, direction) pairs {kinds}")
    print(f"warm: {warm_s:.2f} s ({warm.probed} probed, {warm.cached} from the store)")
    if args.out:
        harness.write_json(Path(args.out) / "probe_time.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
