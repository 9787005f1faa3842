"""The probe child: runs conv signatures on the vendor route where a failure cannot hurt.

Started by :mod:`yolo_rdna1.probe.runner` as ``python -m yolo_rdna1.probe.child DEVICE``. Jobs
arrive on stdin, one JSON object a line; events go to stdout as lines starting with
``@@rdna1 `` (anything else on stdout is ignored by the parent). For each job the child says
``start``, runs the bypass (the reference answer, also timed), says ``vendor`` with the bypass
time, runs the vendor route (with the fault simulator, no fallback), and says ``result``. If
the vendor call hangs or kills the process, the parent knows from the last event which
signature and direction was in flight.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import torch

from ..bypass import ConvParams, algorithm_for
from ..faults import profile_from_env
from ..guard.routes import VENDOR, SignatureRoute, is_vendor_error
from ..parent_watch import watch_parent
from ..signature import DIRECTIONS, ConvSignature

MARK = "@@rdna1 "
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
#: Relative error above which the vendor answer is ``wrong``: TF32/fp16 rounding stays far below,
#: a miscompiled kernel far above.
TOLERANCE = {"float32": 1e-2, "float16": 1e-2, "bfloat16": 3e-2, "float64": 1e-6}


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(event) + "\n")
    sys.stdout.flush()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], torch.Tensor],
    device: torch.device,
    repeats: int,
    after_first: Callable[[float], None] | None = None,
) -> tuple[torch.Tensor, float, float]:
    """(result, first-call ms, median ms of ``repeats`` further calls)."""
    t = time.perf_counter()
    out = fn()
    _sync(device)
    first = (time.perf_counter() - t) * 1e3
    if after_first is not None:
        after_first(first)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return out, first, times[len(times) // 2] if times else first


def make_inputs(sig: ConvSignature, device: torch.device, seed: int = 0):
    """Random input, weight, bias and output gradient of this signature (never zeros)."""
    g = torch.Generator().manual_seed(seed)
    dtype = _DTYPES[sig.dtype]
    fmt = torch.channels_last if sig.channels_last else torch.contiguous_format
    x = torch.randn(sig.batch, sig.in_channels, sig.height, sig.width, generator=g)
    if sig.transposed:
        w = torch.randn(sig.in_channels, sig.out_channels // sig.groups, *sig.kernel, generator=g)
    else:
        w = torch.randn(sig.out_channels, sig.in_channels // sig.groups, *sig.kernel, generator=g)
    w = w / (w[0].numel() ** 0.5)
    b = torch.randn(sig.out_channels, generator=g)
    oh, ow = sig.output_size
    go = torch.randn(sig.batch, sig.out_channels, oh, ow, generator=g)

    def move(t):
        return (
            t.to(device=device, dtype=dtype).contiguous(memory_format=fmt)
            if t.dim() == 4
            else t.to(device=device, dtype=dtype)
        )

    return move(x), move(w), move(b), move(go)


def rel_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    a64, r64 = a.double(), ref.double()
    return float((a64 - r64).norm() / r64.norm().clamp_min(1e-30))


def probe_one(sig: ConvSignature, device: torch.device, job_id: int, repeats: int) -> dict[str, Any]:
    direction = sig.direction
    base = sig.with_direction("fwd")
    params = ConvParams(base.stride, base.padding, base.dilation, base.groups, base.transposed, base.output_padding)
    profile = profile_from_env()
    rules = {d: profile.rules_for(base.with_direction(d)) if profile else () for d in DIRECTIONS}
    route = SignatureRoute(
        base, params, {d: VENDOR for d in DIRECTIONS}, rules, algorithm_for(base), check_vendor=True, fallback=False
    )
    x, w, b, go = make_inputs(sig, device)
    emit({"event": "start", "id": job_id})
    ref, _, bypass_ms = timed(lambda: route.bypass_call(direction, x, w, b, go), device, repeats)
    emit({"event": "vendor", "id": job_id, "bypass_ms": bypass_ms})
    result: dict[str, Any] = {"event": "result", "id": job_id, "bypass_ms": bypass_ms}
    try:
        out, first_ms, vendor_ms = timed(
            lambda: route.run(direction, lambda: route.vendor_call(direction, x, w, b, go), lambda: ref),
            device,
            repeats,
            after_first=lambda ms: emit({"event": "first", "id": job_id, "first_ms": ms}),
        )
    except RuntimeError as e:
        if not is_vendor_error(e):
            raise
        return {**result, "verdict": "error", "detail": str(e).splitlines()[0][:300]}
    result.update(vendor_ms=vendor_ms, first_ms=first_ms)
    if not torch.isfinite(out).all() and torch.isfinite(ref).all():
        return {**result, "verdict": "nan", "detail": "non-finite values from the vendor route"}
    err = rel_error(out, ref)
    if err > TOLERANCE.get(sig.dtype, 1e-2):
        return {**result, "verdict": "wrong", "detail": f"relative error {err:.3g} vs the bypass"}
    return {**result, "verdict": "ok", "detail": f"relative error {err:.2g}"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    watch_parent()  # a training that exits mid-probe must not leave a child stuck in a hung conv behind
    device = torch.device(args[0] if args else "cpu")
    repeats = int(os.environ.get("YOLO_RDNA1_PROBE_REPEATS", "2"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.zeros(1, device=device).add_(1)  # context creation is not charged to the first job
    emit({"event": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        if job.get("quit"):
            break
        try:
            emit(probe_one(ConvSignature.from_key(job["sig"]), device, job["id"], repeats))
        except Exception as e:  # a broken job must not take the remaining jobs with it
            emit(
                {
                    "event": "result",
                    "id": job["id"],
                    "verdict": "error",
                    "detail": f"probe failed: {type(e).__name__}: {e}"[:300],
                    "internal": True,
                }
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
