"""YOLOv8n train step (forward + backward) on the vendor conv against the vendor-free bypass.

Every path runs the same ``DetectionModel('yolov8n.yaml', nc=4)`` in train mode; the step is
``model(x)`` then ``backward`` of its ``boxes``/``scores`` outputs with fixed random gradients
(no loss, no optimizer: the conv paths are what differs). Paths:

* ``cudnn_nchw`` / ``cudnn_cl``: torch's conv on the vendor library, NCHW / channels_last;
  ``cudnn_cl_ieee`` the latter with TF32 off (``torch.backends.cudnn.flags(allow_tf32=False)``).
* ``cudnn_off``: torch's own conv with cuDNN disabled (NCHW), forward and backward.
* ``im2col``: the reference bypass (unfold + GEMM, fold) for every conv, through the guard.
* ``bypass``: the guard with ``policy="bypass"`` and the per-signature algorithm
  (:func:`yolo_rdna1.bypass.algorithm_for`), channels_last (what Ultralytics trains on CUDA), the
  backward on the calling thread as the plugin runs it (``serial_backward``); ``bypass_nchw`` the
  same in NCHW; ``bypass_ieee`` with TF32 off for its GEMMs (paired with ``cudnn_cl_ieee`` too:
  both sides plain float32 FMA, as on a GPU without tensor cores); ``bypass_nopool`` without the
  kept pad buffers.
* suffixes: ``_mt`` keeps autograd's per-GPU backward thread (torch's default; for a guard path
  that prices ``serial_backward``), ``_st`` gives a cuDNN path the serial backward (like for like).
* ``auto``: the guard with ``policy="auto"`` (on NVIDIA nothing is bypassed: the guard's cost).

Bypass variants are set with :func:`yolo_rdna1.bypass.settings`, and every path keeps its own kept
pad buffers (:func:`yolo_rdna1.bypass.bordered.pool`), so one path's buffers never serve another
and each path's peak memory is its own.

Timing: all paths of a config are built, warmed up, then stepped in interleaved rounds
(``--rounds`` x ``--per-round`` steps each), so a drift of the machine's speed hits every path
alike. A step's time is its wall time from the call to the end of its GPU work (a device sync
after each step, as a training loop has when it reads the loss; the queue is drained before a
round too, so one path's backlog never counts as another's), median and quartiles; the host time
to issue a step is beside it. Each path's round medians are also paired with cuDNN
channels_last's of the same round (median of the ratios), and the fastest steps compared. Python's
GC is off while timing. Peak memory is ``torch.cuda.max_memory_allocated`` over a path's timed
steps. Also: a per-signature table (each YOLOv8n conv signature, forward + backward, cuDNN vs
im2col vs the chosen algorithm), ``--check`` (float64 / bf16 exactness of every signature on the
device), kernel launches per conv and the profiler proof that the bypass step runs no vendor conv
kernel. ``--out DIR`` writes ``bypass_step.md`` and ``bypass_step.json``. The same rounds classed
by the host's speed spells: :mod:`benchmarks.studies.host_spells`.

    python3 -m benchmarks.bypass_step --out "$OUT"              # on the GPU
    python3 -m benchmarks.bypass_step --device cpu --quick      # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn

from benchmarks import harness
from benchmarks.harness import fmt, sync
from yolo_rdna1 import bypass
from yolo_rdna1.bypass import bordered
from yolo_rdna1.guard import ConvGuard, guarded

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Kernel names of a vendor conv (cuDNN / MIOpen), forward or backward. cuDNN's batchnorm
#: kernels (``cudnn::batchnorm_*``) are not convs: BatchNorm is not what the guard routes.
_CONV_NAME = re.compile(
    r"implicit_?gemm|xmma_(fprop|dgrad|wgrad)|fprop|dgrad|wgrad|conv2d|convolution|\dconv\d|conv_|_conv", re.I
)
_VENDOR_LIB = re.compile(r"cudnn|miopen", re.I)
_NOT_CONV = re.compile(r"batchnorm|bn_fw|bn_bw", re.I)


def vendor_conv(name: str) -> bool:
    """True for a kernel name of a vendor conv (see the patterns above)."""
    return bool(_CONV_NAME.search(name) or (_VENDOR_LIB.search(name) and not _NOT_CONV.search(name)))


#: bypass.settings(...) per bypass variant
VARIANTS: dict[str, dict[str, Any]] = {
    "im2col": {"preference": ("im2col",)},
    "bypass_ieee": {"follow_cudnn_tf32": False},
    "bypass_nopool": {"pad_budget_bytes": 0},
}


# -- paths ------------------------------------------------------------------------------------
def base_path(name: str) -> str:
    """A path's name without its autograd-threading suffix (``_mt`` / ``_st``)."""
    return name[:-3] if name.endswith(("_st", "_mt")) else name


@contextlib.contextmanager
def path_context(name: str, guard: ConvGuard | None = None) -> Iterator[ConvGuard | None]:
    """Enter the conv path ``name``: vendor flags, guard policy, bypass variant, backward thread.

    ``guard``: the :func:`make_guard` of this path, reused so its routes persist across calls
    (a new one is made and dropped when None)."""
    base = base_path(name)
    # guard paths run the backward on the calling thread, as the plugin does (serial_backward);
    # "_mt" keeps autograd's device thread, "_st" gives a vendor path the serial backward
    serial = name.endswith("_st") or (not name.endswith("_mt") and not base.startswith("cudnn"))
    with contextlib.ExitStack() as stack:
        if serial:
            stack.enter_context(torch.autograd.set_multithreading_enabled(False))
        if base == "cudnn_off":
            stack.enter_context(torch.backends.cudnn.flags(enabled=False))
        elif base == "cudnn_cl_ieee":
            stack.enter_context(torch.backends.cudnn.flags(enabled=True, allow_tf32=False))
        if base.startswith("cudnn"):
            yield None
            return
        stack.enter_context(bypass.settings(**VARIANTS.get(base.replace("_nchw", ""), {})))
        yield stack.enter_context(guarded(guard if guard is not None else make_guard(name)))


def make_guard(name: str) -> ConvGuard | None:
    """The guard a path runs under: ``policy="auto"`` for ``auto``, else ``"bypass"``."""
    name = base_path(name)
    if name.startswith("cudnn"):
        return None
    return ConvGuard(policy="auto" if name == "auto" else "bypass", faults=False)


def channels_last_path(name: str) -> bool:
    name = base_path(name)
    return not (name.endswith("nchw") or name.startswith("cudnn_off"))


# -- whole model ------------------------------------------------------------------------------
def autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# -- whole model ------------------------------------------------------------------------------
def build_model(device: torch.device, channels_last: bool) -> nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=4, verbose=False).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def outputs(out) -> list[torch.Tensor]:
    if isinstance(out, dict):
        return [out["boxes"], out["scores"]]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for t in out if isinstance(t, torch.Tensor)]


def make_step(model: nn.Module, x: torch.Tensor, device: torch.device, dtype):
    params = [p for p in model.parameters() if p.requires_grad]
    grads: list[torch.Tensor] = []

    def step() -> None:
        for p in params:
            p.grad = None
        with autocast(device, dtype):
            ts = outputs(model(x))
        if not grads:
            g = torch.Generator(device="cpu").manual_seed(1)
            grads.extend(torch.randn(t.shape, generator=g).to(device=device, dtype=t.dtype) for t in ts)
        torch.autograd.backward(ts, grads)

    return step


class ModelPath:
    """One conv path of one config: its own model, input, guard and kept pad buffers."""

    def __init__(self, path: str, size: int, batch: int, dtype_name: str, device: torch.device) -> None:
        self.path, self.device = path, device
        cl = channels_last_path(path)
        self.model = build_model(device, cl)
        self.x = torch.rand(batch, 3, size, size, device=device)
        if cl:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.guard = make_guard(path)
        self.step = make_step(self.model, self.x, device, DTYPES[dtype_name])
        self.wall: list[float] = []
        self.host: list[float] = []
        self.round_sizes: list[int] = []  # steps per timed round, to pair rounds across paths
        self.peak = 0.0
        self.pool = bordered.Pool()
        self.row = {"path": path, "size": size, "batch": batch, "dtype": dtype_name}
        self.steps = 0

    def run(self, n: int, timed: bool, others_bytes: int = 0) -> None:
        """``n`` steps; timed ones are recorded. ``others_bytes``: the other paths' kept buffers,
        taken out of this path's peak."""
        with bordered.pool(self.pool), path_context(self.path, self.guard):
            if timed and self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            sync(self.device)  # the previous path's queued work must not count as this one's
            for _ in range(n):
                if not timed:
                    self.step()
                    continue
                t0 = time.perf_counter()
                self.step()
                t1 = time.perf_counter()
                sync(self.device)  # as a training loop does when it reads the loss
                self.wall.append((time.perf_counter() - t0) * 1e3)
                self.host.append((t1 - t0) * 1e3)
            self.steps += n
            if timed:
                self.round_sizes.append(n)
            if timed and self.device.type == "cuda":
                self.peak = max(self.peak, (torch.cuda.max_memory_allocated(self.device) - others_bytes) / 2**20)

    def result(self) -> dict:
        times = self.wall
        q25, median, q75 = harness.quartiles(times)
        row = dict(
            self.row,
            ms=median,
            host_ms=statistics.median(self.host),
            q25=q25,
            q75=q75,
            peak_mib=self.peak if self.device.type == "cuda" else float("nan"),
            timed_steps=len(times),
            ms_all=[round(t, 3) for t in times],
            host_all=[round(t, 3) for t in self.host],
        )
        row["round_ms"], i = [], 0
        for n in self.round_sizes:
            row["round_ms"].append(statistics.median(times[i : i + n]))
            i += n
        if self.guard is not None:
            t = self.guard.totals()
            row["bypassed_per_step"] = t["bypassed"] / max(1, self.steps)
            row["calls_per_step"] = t["calls"] / max(1, self.steps)
            if self.path.startswith(("bypass", "im2col")):
                row["algorithms"] = sorted({r["algorithm"] for r in self.guard.per_signature()})
        return row


class RoundObserver(Protocol):
    """Something that watches every round of :func:`bench_config` (the host-spell study)."""

    def start_round(self) -> None: ...

    def end_round(self) -> None: ...

    def annotate(self, rows: list[dict]) -> None: ...


def bench_config(
    paths: list[str],
    size: int,
    batch: int,
    dtype_name: str,
    device: torch.device,
    warmup: int,
    rounds: int,
    per_round: int,
    observer: RoundObserver | None = None,
) -> list[dict]:
    """All paths of one config, interleaved: ``rounds`` x (``per_round`` steps of each path), so a
    drift of the machine's speed hits every path alike. Python's GC is off while timing."""
    runners, rows = [], []
    for path in paths:
        try:
            r = ModelPath(path, size, batch, dtype_name, device)
            r.run(warmup, timed=False)
            runners.append(r)
        except Exception as e:  # noqa: BLE001 - report and go on
            rows.append(
                {
                    "path": path,
                    "size": size,
                    "batch": batch,
                    "dtype": dtype_name,
                    "ms": float("nan"),
                    "host_ms": float("nan"),
                    "peak_mib": float("nan"),
                    "error": repr(e)[:300],
                }
            )
    sync(device)
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            if observer is not None:
                observer.start_round()
            for r in runners:
                others = sum(o.pool.kept_bytes() for o in runners if o is not r)
                r.run(per_round if not r.path.startswith("cudnn_off") else 1, timed=True, others_bytes=others)
            if observer is not None:
                observer.end_round()
        sync(device)
    finally:
        gc.enable()
    rows += [r.result() for r in runners]
    # The host's speed drifts within seconds on a shared VM: besides the medians over all steps,
    # each path's round medians are divided by cuDNN channels_last's of the same round
    # (interleaved, seconds apart) and the median of those ratios is reported, and so is the
    # ratio of the fastest steps (noise on a host-bound step only ever adds time).
    ref = next((r for r in rows if r["path"] == "cudnn_cl" and "round_ms" in r), None)
    ieee = next((r for r in rows if r["path"] == "cudnn_cl_ieee" and "round_ms" in r), None)
    for r in rows:
        if ref is not None and r.get("round_ms"):
            r["paired_vs_cudnn_cl"] = statistics.median(a / b for a, b in zip(r["round_ms"], ref["round_ms"]))
            r["min_vs_cudnn_cl"] = min(r["ms_all"]) / min(ref["ms_all"])
        if ieee is not None and r.get("round_ms") and r["path"].endswith("_ieee"):
            r["paired_vs_cudnn_cl_ieee"] = statistics.median(a / b for a, b in zip(r["round_ms"], ieee["round_ms"]))
    if observer is not None:
        observer.annotate(rows)
    order = {p: i for i, p in enumerate(paths)}
    rows.sort(key=lambda r: order[r["path"]])
    del runners
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


# -- per signature ----------------------------------------------------------------------------
def model_signatures(size: int, batch: int) -> list[dict]:
    """The distinct Conv2d signatures one YOLOv8n train forward runs, with their counts."""
    model = build_model(torch.device("cpu"), False)
    seen: dict[tuple, dict] = {}

    def hook(mod: nn.Conv2d, inp, out) -> None:
        x = inp[0]
        key = (
            x.shape[1],
            mod.out_channels,
            tuple(mod.kernel_size),
            tuple(mod.stride),
            tuple(mod.padding),
            mod.groups,
            mod.bias is not None,
            x.shape[2],
            x.shape[3],
        )
        row = seen.setdefault(
            key,
            dict(zip(("cin", "cout", "k", "s", "p", "groups", "bias", "h", "w"), key), count=0, first=len(seen) == 0),
        )
        row["count"] += 1

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    rows = list(seen.values())
    for r in rows:
        r["batch"] = batch
    return rows


def sig_label(r: dict) -> str:
    k, s = r["k"], r["s"]
    return f"{r['cin']}>{r['cout']} k{k[0]} s{s[0]} {r['h']}x{r['w']}" + (" +b" if r["bias"] else "")


def conv_case(r: dict, device: torch.device, cl: bool, dtype):
    torch.manual_seed(0)
    conv = nn.Conv2d(r["cin"], r["cout"], r["k"], r["s"], r["p"], groups=r["groups"], bias=r["bias"]).to(device)
    x = torch.randn(r["batch"], r["cin"], r["h"], r["w"], device=device)
    if cl:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(not r["first"])  # the image needs no gradient
    with autocast(device, dtype), torch.no_grad():
        y = conv(x)
    go = torch.randn(y.shape, device=device, dtype=y.dtype)
    if cl:
        go = go.contiguous(memory_format=torch.channels_last)

    def fb() -> None:
        conv.weight.grad = None
        x.grad = None
        with autocast(device, dtype):
            out = conv(x)
        out.backward(go)

    return fb


def bench_signatures(
    rows: list[dict], device: torch.device, dtype_name: str, cl: bool, warmup: int, steps: int, rounds: int = 5
) -> list[dict]:
    """Forward + backward of each signature alone, cuDNN vs im2col vs the chosen algorithm,
    interleaved in ``rounds`` (like the whole-model table) so machine drift hits all three; the
    median of the rounds' median device times."""
    dtype = DTYPES[dtype_name]
    out = []
    per_round = max(1, steps // rounds)
    for r in rows:
        res = {"sig": sig_label(r), "count": r["count"], "dtype": dtype_name, "layout": "nhwc" if cl else "nchw"}
        runs = {}
        for path in ("cudnn", "im2col", "bypass"):
            guard = make_guard(path)
            with path_context(path, guard):
                fb = conv_case(r, device, cl, dtype)
                for _ in range(warmup):
                    fb()
            runs[path] = (guard, fb, [])
        sync(device)
        for _ in range(rounds):
            for path, (guard, fb, times) in runs.items():
                with path_context(path, guard):
                    times.append(harness.device_ms(fb, n=per_round, warmup=0))
        for path, (_guard, _fb, times) in runs.items():
            res[path] = statistics.median(times)
        res["algorithm"] = runs["bypass"][0].per_signature()[0]["algorithm"]
        out.append(res)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def check_signatures(rows: list[dict], device: torch.device) -> list[dict]:
    """Chosen algorithm vs the device's own conv on every signature (batch 2): max relative
    error of output and both gradients in float64 (exactness) and bf16 (vs the float64 result)."""
    import torch.nn.functional as F

    from yolo_rdna1.bypass import ConvParams, algorithm_for
    from yolo_rdna1.signature import ConvSignature

    res = []
    for r in rows:
        sig = ConvSignature(
            r["cin"],
            r["cout"],
            tuple(r["k"]),
            tuple(r["s"]),
            tuple(r["p"]),
            (1, 1),
            r["groups"],
            r["h"],
            r["w"],
            2,
            channels_last=True,
        )
        alg = algorithm_for(sig)
        prm = ConvParams(sig.stride, sig.padding, (1, 1), sig.groups)
        g = torch.Generator(device="cpu").manual_seed(0)
        x = (
            torch.randn(2, r["cin"], r["h"], r["w"], generator=g, dtype=torch.float64)
            .to(device)
            .contiguous(memory_format=torch.channels_last)
        )
        w = (
            torch.randn(r["cout"], r["cin"] // r["groups"], *r["k"], generator=g, dtype=torch.float64)
            .to(device)
            .contiguous(memory_format=torch.channels_last)
        )
        b = torch.randn(r["cout"], generator=g, dtype=torch.float64).to(device) if r["bias"] else None
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        ref = F.conv2d(xr, wr, b, sig.stride, sig.padding, 1, sig.groups)
        go = (
            torch.randn(ref.shape, generator=g, dtype=torch.float64)
            .to(device)
            .contiguous(memory_format=torch.channels_last)
        )
        rgx, rgw = torch.autograd.grad(ref, [xr, wr], go)
        row = {"sig": sig_label(r), "algorithm": alg.__name__.rsplit(".", 1)[-1]}
        for dt in (torch.float64, torch.bfloat16):
            xb, wb, gb = (t.to(dt).contiguous(memory_format=torch.channels_last) for t in (x, w, go))
            outs = (
                alg.forward(xb, wb, None if b is None else b.to(dt), prm),
                alg.backward_data(gb, xb, wb, prm),
                alg.backward_weight(gb, xb, wb, prm),
            )
            errs = [((o.double() - rf).norm() / rf.norm()).item() for o, rf in zip(outs, (ref, rgx, rgw))]
            row[str(dt).split(".")[-1]] = max(errs)
            row["cl_out"] = bool(outs[0].is_contiguous(memory_format=torch.channels_last))
        res.append(row)
    return res


# -- profiler ---------------------------------------------------------------------------------
def kernels_of(fn, device: torch.device) -> list[str]:
    """Names of the device kernels one call of ``fn`` launches."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    names = []
    for e in prof.events():
        dt = getattr(e, "device_type", None)
        if dt is not None and str(dt).endswith("CUDA"):
            names.append(e.name)
    return names


def profile_checks(sig_rows: list[dict], device: torch.device, size: int, batch: int) -> dict:
    res: dict = {"steps": {}, "per_conv": []}
    for dtype_name in ("fp32", "bf16"):
        for path in ("cudnn_cl", "bypass"):
            model = build_model(device, True)
            x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
            with path_context(path):
                names = kernels_of(make_step(model, x, device, DTYPES[dtype_name]), device)
            vendor = sorted({n for n in names if vendor_conv(n)})
            res["steps"][f"{path}/{dtype_name}"] = {
                "kernels": len(names),
                "vendor_conv_kernels": sum(1 for n in names if vendor_conv(n)),
                "vendor_names": vendor[:8],
            }
            del model, x
    # launches per conv (forward + backward) for one signature of each kind
    kinds: dict[str, dict] = {}
    for r in sig_rows:
        kind = (
            "first 3x3 s2 (no input grad)"
            if r["first"]
            else f"{r['k'][0]}x{r['k'][1]} s{r['s'][0]}" + (" +bias" if r["bias"] else "")
        )
        kinds.setdefault(kind, r)
    for kind, r in kinds.items():
        row = {"kind": kind, "sig": sig_label(r)}
        for path in ("cudnn", "im2col", "bypass"):
            with path_context(path):
                names = kernels_of(conv_case(r, device, True, None), device)
            row[path] = len(names)
            row[path + "_vendor"] = sum(1 for n in names if vendor_conv(n))
        res["per_conv"].append(row)
    return res


# -- report -----------------------------------------------------------------------------------
def configs_of(model_rows: list[dict]) -> list[tuple[int, int, str]]:
    """(size, batch, dtype) of the rows, in their order."""
    out: list[tuple[int, int, str]] = []
    for r in model_rows:
        c = (r["size"], r["batch"], r["dtype"])
        if c not in out:
            out.append(c)
    return out


def report(model_rows: list[dict], sig_tables: dict, prof: dict | None, meta: dict) -> str:
    lines = [
        f"Device: {meta['device']}; torch {meta['torch']}; cudnn {meta['cudnn']}; commit "
        f"{meta['commit']}. Whole model: {meta['warmup']} warm-up steps per path, then {meta['rounds']} "
        f"rounds x {meta['per_round']} steps per path, paths interleaved; median of the steps' wall "
        "times (synced) (q25-q75 beside it); host ms = time to issue a step. Per signature: median of "
        f"the rounds' median device times, {meta['sig_steps']} steps after 3 warm-up.",
        "",
    ]
    for size, batch, dt in configs_of(model_rows):
        rows = [r for r in model_rows if (r["size"], r["batch"], r["dtype"]) == (size, batch, dt)]
        vend = [r for r in rows if r["path"] in ("cudnn_nchw", "cudnn_cl")]
        best = min(vend, key=lambda r: r["ms"]) if vend else rows[0]
        cl = next((r for r in rows if r["path"] == "cudnn_cl"), best)
        lines += [
            f"### {size} px, batch {batch}, {dt}{'' if dt == 'fp32' else ' autocast'}",
            "",
            f"| path | ms/step | q25-q75 | vs best cuDNN ({best['path']}) | vs cuDNN channels_last | same, paired "
            "by round | fastest step vs fastest | host ms/step | peak MiB | peak vs cuDNN channels_last |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['path']} | {fmt(r['ms'])} | {fmt(r.get('q25', float('nan')))}-{fmt(r.get('q75', float('nan')))} "
                f"| {fmt(r['ms'] / best['ms'], 2)} | {fmt(r['ms'] / cl['ms'], 2)} | "
                f"{fmt(r.get('paired_vs_cudnn_cl', float('nan')), 2)} | "
                f"{fmt(r.get('min_vs_cudnn_cl', float('nan')), 2)} | {fmt(r['host_ms'])} | {fmt(r['peak_mib'], 0)} | "
                f"{fmt(r['peak_mib'] / cl['peak_mib'], 2)} |"
            )
        lines.append("")
        ieee = [r for r in rows if "paired_vs_cudnn_cl_ieee" in r and r["path"] != "cudnn_cl_ieee"]
        if ieee:
            lines += [
                "Without TF32 on either side, paired by round with cudnn_cl_ieee: "
                + ", ".join(f"{r['path']} {fmt(r['paired_vs_cudnn_cl_ieee'], 2)}" for r in ieee),
                "",
            ]
    for key, table in sig_tables.items():
        lines += [
            f"### Per signature, {key}: forward + backward ms (median)",
            "",
            "| signature | convs | cuDNN | im2col | bypass | bypass / im2col | bypass / cuDNN | algorithm |",
            "|---|---|---|---|---|---|---|---|",
        ]
        tot = {"cudnn": 0.0, "im2col": 0.0, "bypass": 0.0}
        for r in table:
            for k in tot:
                tot[k] += r[k] * r["count"]
            lines.append(
                f"| {r['sig']} | {r['count']} | {fmt(r['cudnn'], 3)} | {fmt(r['im2col'], 3)} | {fmt(r['bypass'], 3)} | "
                f"{fmt(r['bypass'] / r['im2col'], 2)} | {fmt(r['bypass'] / r['cudnn'], 2)} | {r['algorithm']} |"
            )
        slower = [r["sig"] for r in table if r["bypass"] > r["im2col"]]
        lines += [
            f"| **sum x count** | | {fmt(tot['cudnn'], 2)} | {fmt(tot['im2col'], 2)} | {fmt(tot['bypass'], 2)} | "
            f"{fmt(tot['bypass'] / tot['im2col'], 2)} | {fmt(tot['bypass'] / tot['cudnn'], 2)} | |",
            "",
            f"Signatures where the bypass is slower than im2col: {', '.join(slower) if slower else 'none'}.",
            "",
        ]
    if prof:
        lines += [
            "### Profiler: device kernels per train step (channels_last)",
            "",
            "| step | kernels | vendor conv kernels | vendor kernel names (first) |",
            "|---|---|---|---|",
        ]
        for k, v in prof["steps"].items():
            lines.append(
                f"| {k} | {v['kernels']} | {v['vendor_conv_kernels']} | "
                f"{', '.join(n[:60] for n in v['vendor_names'][:3]) or '-'} |"
            )
        lines += [
            "",
            "### Kernel launches per conv (forward + backward, fp32, channels_last)",
            "",
            "| kind | signature | cuDNN | im2col | bypass | vendor conv kernels in bypass |",
            "|---|---|---|---|---|---|",
        ]
        for r in prof["per_conv"]:
            lines.append(
                f"| {r['kind']} | {r['sig']} | {r['cudnn']} | {r['im2col']} | {r['bypass']} | {r['bypass_vendor']} |"
            )
        lines.append("")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--configs",
        default="640x16:fp32,640x16:bf16,640x16:fp16,320x64:fp32,320x64:bf16",
        help="comma list of SIZExBATCH:DTYPE",
    )
    ap.add_argument("--paths", default="cudnn_nchw,cudnn_cl,cudnn_off,im2col,bypass,bypass_nchw,auto")
    ap.add_argument("--extra-fp32-paths", default="bypass_ieee", help="paths run for fp32 configs only")
    ap.add_argument("--extra-amp-paths", default="", help="paths run for autocast configs only")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per config; each runs every path in turn")
    ap.add_argument("--per-round", type=int, default=3, help="timed steps of a path per round (cudnn_off: 1)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument(
        "--sig-configs",
        default="640x16:fp32:nhwc,640x16:bf16:nhwc,640x16:fp32:nchw",
        help="per-signature tables; '' for none",
    )
    ap.add_argument("--sig-steps", type=int, default=20)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument(
        "--check", action="store_true", help="first: float64/bf16 exactness of every signature on the device"
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few steps (CPU smoke test)")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    return ap


def main(
    argv: list[str] | None = None,
    observer: Callable[[torch.device], RoundObserver] | None = None,
    extra_report: Callable[[list[dict]], str] | None = None,
) -> int:
    """The benchmark; ``observer`` (one per config) and ``extra_report`` let a study watch the
    rounds and add its own tables (:mod:`benchmarks.studies.host_spells`)."""
    args = parser().parse_args(argv)
    device = torch.device(args.device)
    if args.quick:
        args.configs, args.rounds, args.per_round, args.warmup, args.sig_steps = "64x2:fp32,64x2:bf16", 2, 1, 1, 2
        args.sig_configs = "64x2:fp32:nhwc,64x2:fp32:nchw"
        if device.type == "cpu":
            args.paths = "cudnn_nchw,cudnn_cl,im2col,bypass,bypass_nchw,auto"
    meta = harness.meta(
        device, rounds=args.rounds, per_round=args.per_round, warmup=args.warmup, sig_steps=args.sig_steps
    )
    print(json.dumps(meta), flush=True)
    out_dir = Path(args.out) if args.out else None
    result: dict[str, Any] = {"meta": meta, "model": [], "signatures": {}, "profile": None}

    def text() -> str:
        return report(result["model"], result["signatures"], result["profile"], meta) + (
            extra_report(result["model"]) if extra_report else ""
        )

    def save() -> None:
        if out_dir:
            harness.write_json(out_dir / "bypass_step.json", result)
            (out_dir / "bypass_step.md").write_text(text())

    if args.check:
        size, batch = map(int, args.configs.split(",")[0].split(":")[0].split("x"))
        result["check"] = check_signatures(model_signatures(size, batch), device)
        for r in result["check"]:
            print(json.dumps(r), flush=True)
        worst = {k: max(r[k] for r in result["check"]) for k in ("float64", "bfloat16")}
        print(
            "CHECK worst relative error:",
            worst,
            "all channels_last out:",
            all(r["cl_out"] for r in result["check"]),
            flush=True,
        )
        save()

    for cfg in filter(None, args.configs.split(",")):
        sb, dt = cfg.split(":")
        size, batch = map(int, sb.split("x"))
        extra = args.extra_fp32_paths if dt == "fp32" else args.extra_amp_paths
        paths = args.paths.split(",") + (extra.split(",") if extra else [])
        rows = bench_config(
            paths,
            size,
            batch,
            dt,
            device,
            args.warmup,
            args.rounds,
            args.per_round,
            observer(device) if observer else None,
        )
        for row in rows:
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("_all")}, default=str), flush=True)
        result["model"].extend(rows)
        save()

    for cfg in filter(None, args.sig_configs.split(",")):
        sb, dt, layout = cfg.split(":")
        size, batch = map(int, sb.split("x"))
        table = bench_signatures(model_signatures(size, batch), device, dt, layout == "nhwc", 3, args.sig_steps)
        result["signatures"][f"{size} px batch {batch}, {dt}, {layout}"] = table
        for r in table:
            print(json.dumps(r), flush=True)
        save()

    if not args.no_profile:
        size, batch = map(int, args.configs.split(",")[0].split(":")[0].split("x"))
        result["profile"] = profile_checks(model_signatures(size, batch), device, size, batch)
        print(json.dumps(result["profile"]), flush=True)
        save()
    print(text(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
