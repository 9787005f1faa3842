#!/usr/bin/env python3
"""YOLOv8n train step (forward + backward) on the vendor conv vs the vendor-free bypass.

Issue 5. Every path runs the same ``DetectionModel('yolov8n.yaml', nc=4)`` in train mode; the
step is ``model(x)`` then ``backward`` of its ``boxes``/``scores`` outputs with fixed random
gradients (no loss, no optimizer: the conv paths are what differs). Paths:

* ``cudnn_nchw`` / ``cudnn_cl``: torch's conv on the vendor library, NCHW / channels_last.
* ``cudnn_off``: torch's own conv with cuDNN disabled (NCHW), forward and backward.
* ``im2col``: the reference bypass (unfold + GEMM, fold) for every conv, through the guard.
* ``bypass``: the guard with ``policy="bypass"`` and the per-signature algorithm
  (:func:`yolo_rdna1.bypass.algorithm_for`), channels_last (what Ultralytics trains on CUDA),
  the backward on the calling thread as the plugin runs it (``serial_backward``);
  ``bypass_nchw`` the same in NCHW; ``bypass_ieee`` with TF32 off for the bypass GEMMs.
* ``cudnn_cl_ieee``: cuDNN channels_last with TF32 off (``torch.backends.cudnn.allow_tf32``):
  with ``bypass_ieee``, both sides in plain float32 FMA, as on a GPU without TF32 tensor cores
  (RDNA1 has none); ``_ieee`` paths are also paired with ``cudnn_cl_ieee``.
* suffixes: ``_mt`` keeps autograd's per-GPU backward thread (torch's default; for a guard path
  that prices ``serial_backward``), ``_st`` runs a cuDNN path's backward on the calling thread
  (``cudnn_cl_st``: cuDNN given the same switch, like for like).
* ``auto``: the guard with ``policy="auto"`` (on NVIDIA nothing is bypassed: the guard's cost).
* ``bypass_narrow`` / ``bypass_wide2``: A/B of the 16-byte copy path: off (pads and im2col
  copies in the tensor's own dtype) / on from 2 MiB tensors (``_common.WIDE_MIN_BYTES``, the
  default; ``bypass`` itself runs with whatever the module default is).
* ``bypass_nopool``: ``bypass`` without the kept zero-bordered pad buffers
  (``bypass.bordered.BUDGET_BYTES = 0``: every pad is a ``constant_pad_nd``, fill + copy), the
  A/B of that change.
* ``bypass_lt``: ``bypass`` with torch's preferred BLAS library set to cuBLASLt (the default is
  cuBLAS on CUDA), the A/B of what a GEMM call costs the host.

Timing: all paths of a config are built, warmed up, then stepped in interleaved rounds
(``--rounds`` x ``--per-round`` steps each), so a drift of the machine's speed hits every path
alike. A step's time is its wall time from the call to the end of its GPU work (a device sync
after each step, as a training loop has when it reads the loss; the queue is drained before a
round too, so one path's backlog never counts as another's), median and quartiles; the host time
to issue a step is reported beside it. Each path's round medians are also paired with cuDNN
channels_last's of the same round (median of the ratios), and the fastest steps compared. Python's GC is off while timing.

Host spells: the lent machines' host runs Python and dispatcher work at about half speed for
seconds at a time (``bypass_diag.py --parts modes``: a pure-Python loop and tiny view ops take
2x as long in those spells, kernel launches 1.4x). A host-bound step slows by how much of its
time is such work, so the bypass, which issues about twice cuDNN's host ops, is hit harder and
the ratio depends on the spell. Each round is therefore bracketed by a *canary* (a fixed run of
tiny view ops, no GPU work) and classed fast (canary within 25% of its fastest) or slow (60%
over it or more); the paired ratios are also given per class. Peak memory is
``torch.cuda.max_memory_allocated`` over a path's timed steps. Also: a per-signature table (each
YOLOv8n conv signature, forward + backward, cuDNN vs im2col vs the chosen algorithm), kernel
launches per conv from torch.profiler, and the profiler proof that the bypass step runs no
vendor conv kernel. ``--out DIR`` writes ``bypass_step.md`` and ``bypass_step.json`` there.

    python3 benchmarks/bypass_step.py --out "$OUT"              # on the GPU
    python3 benchmarks/bypass_step.py --device cpu --quick      # smoke test
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yolo_rdna1.bypass as bypass  # noqa: E402
import yolo_rdna1.bypass._common as bypass_common  # noqa: E402
import yolo_rdna1.bypass.bordered as bordered  # noqa: E402
import yolo_rdna1.guard.router as router  # noqa: E402
from yolo_rdna1.guard import ConvGuard, guarded  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Kernel names of a vendor conv (cuDNN / MIOpen), forward or backward. cuDNN's batchnorm
#: kernels (``cudnn::batchnorm_*``) are not convs: BatchNorm is not what the guard routes.
_CONV_NAME = re.compile(r"implicit_?gemm|xmma_(fprop|dgrad|wgrad)|fprop|dgrad|wgrad|conv2d|convolution|\dconv\d|conv_|_conv", re.I)
_VENDOR_LIB = re.compile(r"cudnn|miopen", re.I)
_NOT_CONV = re.compile(r"batchnorm|bn_fw|bn_bw", re.I)


class _VendorConv:
    @staticmethod
    def search(name: str) -> bool:
        return bool(_CONV_NAME.search(name) or (_VENDOR_LIB.search(name) and not _NOT_CONV.search(name)))


VENDOR_CONV = _VendorConv()


# -- paths ------------------------------------------------------------------------------------
@contextlib.contextmanager
def path_context(name: str, guard=None):
    """Enter the conv path ``name``: vendor flags, guard policy, forced algorithm.

    ``guard``: a :class:`ConvGuard` made by :func:`make_guard` for this path, reused so its
    routes persist across calls (a new one is made and dropped when None)."""
    # Guard paths run the backward on the calling thread, as the plugin does (serial_backward);
    # "_mt" keeps autograd's device thread (the experiment that prices it), "_st" gives a vendor
    # path the plugin's serial backward (cuDNN like for like).
    if name.endswith(("_st", "_mt")):
        serial, name = name.endswith("_st"), name[:-3]
    else:
        serial = not name.startswith("cudnn")
    if serial:
        with torch.autograd.set_multithreading_enabled(False), path_context(name + "_mt", guard) as g:
            yield g
        return
    if name.startswith("cudnn_off"):
        with torch.backends.cudnn.flags(enabled=False):
            yield None
        return
    if name == "cudnn_cl_ieee":
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield None
        return
    if name.startswith("cudnn"):
        yield None
        return
    saved_alg, saved_tf32, saved_budget = router.algorithm_for, bypass_common.FOLLOW_CUDNN_TF32, bordered.BUDGET_BYTES
    saved_wide = bypass_common.WIDE_COPIES, bypass_common.WIDE_MIN_BYTES
    saved_blas = torch.backends.cuda.preferred_blas_library() if name == "bypass_lt" else None
    try:
        if name == "bypass_lt":
            torch.backends.cuda.preferred_blas_library("cublaslt")
        if name == "bypass_narrow":
            bypass_common.WIDE_COPIES = False
        if name == "bypass_wide2":
            bypass_common.WIDE_MIN_BYTES = 2 << 20
        if name == "bypass_nopool":
            bordered.BUDGET_BYTES = 0
        if name.startswith("im2col"):
            router.algorithm_for = lambda sig: bypass.im2col
        if name == "bypass_ieee":
            bypass_common.FOLLOW_CUDNN_TF32 = False
        with guarded(guard if guard is not None else make_guard(name)) as g:
            yield g
    finally:
        router.algorithm_for, bypass_common.FOLLOW_CUDNN_TF32 = saved_alg, saved_tf32
        bordered.BUDGET_BYTES = saved_budget
        bypass_common.WIDE_COPIES, bypass_common.WIDE_MIN_BYTES = saved_wide
        if saved_blas is not None:
            torch.backends.cuda.preferred_blas_library(saved_blas)


def base_path(name: str) -> str:
    """A path's name without its autograd-threading suffix (``_mt`` / ``_st``)."""
    return name[:-3] if name.endswith(("_st", "_mt")) else name


def make_guard(name: str):
    """The guard a path runs under: ``policy="auto"`` for ``auto``, else ``"bypass"``."""
    name = base_path(name)
    if name.startswith("cudnn"):
        return None
    return ConvGuard(policy="auto" if name == "auto" else "bypass", faults=False)


def channels_last_path(name: str) -> bool:
    name = base_path(name)
    return not (name.endswith("nchw") or name.startswith("cudnn_off"))


# -- timing -----------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, device: torch.device, warmup: int, steps: int) -> tuple[float, float, float]:
    """(median ms by CUDA events, mean wall ms, peak MiB over the timed calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    wall0 = time.perf_counter()
    if device.type == "cuda":
        evs = []
        for _ in range(steps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            evs.append((s, e))
        sync(device)
        times = [s.elapsed_time(e) for s, e in evs]
    else:
        for _ in range(steps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    wall = (time.perf_counter() - wall0) * 1e3 / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times), wall, peak


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
    """One conv path of one config: its own model, input and guard, stepped in rounds."""

    pools: list[tuple] = []

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
        # this path's own kept pad buffers (``bypass.bordered``), swapped in while it runs: so
        # one path's buffers never serve another, and are subtracted from the others' peaks
        self.pool: tuple = (collections.OrderedDict(), {})
        ModelPath.pools.append(self.pool)
        self.row = {"path": path, "size": size, "batch": batch, "dtype": dtype_name}
        self.steps = 0

    def run(self, n: int, timed: bool) -> None:
        outer = bordered._SLOTS, bordered._BYTES
        bordered._SLOTS, bordered._BYTES = self.pool
        try:
            self._run(n, timed)
        finally:
            bordered._SLOTS, bordered._BYTES = outer

    def _run(self, n: int, timed: bool) -> None:
        with path_context(self.path, self.guard):
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
                others = sum(sum(pool[1].values()) for pool in ModelPath.pools if pool is not self.pool)
                self.peak = max(self.peak, (torch.cuda.max_memory_allocated(self.device) - others) / 2**20)

    def result(self) -> dict:
        times = self.wall
        row = dict(self.row, ms=statistics.median(times), host_ms=statistics.median(self.host),
                   q25=statistics.quantiles(times, n=4)[0] if len(times) > 1 else times[0],
                   q75=statistics.quantiles(times, n=4)[2] if len(times) > 1 else times[0],
                   peak_mib=self.peak if self.device.type == "cuda" else float("nan"), timed_steps=len(times),
                   ms_all=[round(t, 3) for t in times], host_all=[round(t, 3) for t in self.host])
        row["round_ms"], i = [], 0
        for n in self.round_sizes:
            row["round_ms"].append(statistics.median(times[i:i + n]))
            i += n
        if self.guard is not None:
            t = self.guard.totals()
            row["bypassed_per_step"] = t["bypassed"] / max(1, self.steps)
            row["calls_per_step"] = t["calls"] / max(1, self.steps)
            if self.path.startswith(("bypass", "im2col")):
                row["algorithms"] = sorted({r["algorithm"] for r in self.guard.per_signature()})
        return row


#: canary time over its fastest: at most this for a fast-spell round, at least SLOW for a slow one
FAST, SLOW = 1.25, 1.6


def host_canary(device: torch.device, n: int = 2000) -> float:
    """Milliseconds for ``n`` tiny view ops: Python + dispatcher work only, no kernel, no GPU
    wait. It tracks the host's speed spells (see the module docstring)."""
    t = torch.empty(64, 16, device=device)
    t0 = time.perf_counter()
    for _ in range(n):
        t.as_strided((16, 64), (1, 16))
    return (time.perf_counter() - t0) * 1e3


def host_state() -> dict | None:
    """A snapshot of what the kernel knows about this process's CPU time (Linux; None elsewhere):
    the CPU ticks of every state summed over all CPUs (``/proc/stat``), this process's
    involuntary context switches and the CPU it last ran on.

    Why: the slow spells could be the hypervisor taking the vCPUs (steal time), other work on
    this VM preempting the process (involuntary switches), or neither (the physical core slows,
    say a busy hyperthread sibling, which no counter here shows). Deltas over a round say which.
    """
    try:
        import resource  # Unix only

        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # the CPU a process last ran on is field 39 of /proc/self/stat (after the parenthesised name)
        cpu = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (ImportError, OSError, IndexError, ValueError):
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return {"steal": ticks[7], "total": sum(ticks), "nivcsw": resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw, "cpu": cpu,
            "t": time.time()}


def host_delta(a: dict | None, b: dict | None) -> dict | None:
    """Per round: the share of all CPUs' time stolen by the hypervisor (%), this process's
    involuntary context switches, whether it ended on another CPU than it started, and when it
    started and ended (Unix time, to line rounds up with other processes' logs)."""
    if a is None or b is None:
        return None
    total = max(1, b["total"] - a["total"])
    return {"steal_pct": round(100 * (b["steal"] - a["steal"]) / total, 2), "nivcsw": b["nivcsw"] - a["nivcsw"], "moved": a["cpu"] != b["cpu"],
            "t0": round(a["t"], 3), "t1": round(b["t"], 3)}


def spell_classes(canary: list[float]) -> dict[str, list[int]]:
    """Round indices of the host's fast spell (canary within FAST of its fastest) and slow spell
    (SLOW or more over it); rounds in between are in neither."""
    low = min(canary)
    return {"fast": [i for i, c in enumerate(canary) if c <= FAST * low], "slow": [i for i, c in enumerate(canary) if c >= SLOW * low]}


def spell_ratios(rows: list[dict], canary: list[float]) -> None:
    """Per path: round medians and paired ratios to cuDNN channels_last within the host's fast
    and slow spells (rounds classed by their canary), added to the rows."""
    ref = next((r for r in rows if r["path"] == "cudnn_cl" and "round_ms" in r), None)
    if ref is None or not canary:
        return
    spells = spell_classes(canary)
    for r in rows:
        if not r.get("round_ms"):
            continue
        for name, idx in spells.items():
            r[f"{name}_rounds"] = len(idx)
            r[f"{name}_ms"] = statistics.median(r["round_ms"][i] for i in idx) if idx else float("nan")
            r[f"{name}_paired"] = statistics.median(r["round_ms"][i] / ref["round_ms"][i] for i in idx) if idx else float("nan")


def spell_host(canary: list[float], states: list[dict]) -> dict:
    """Per spell class (:func:`spell_classes`): median steal %, median involuntary context
    switches per round, and the share of rounds that moved CPU."""
    out = {}
    for name, idx in spell_classes(canary).items():
        sel = [states[i] for i in idx]
        if sel:
            out[name] = {"rounds": len(sel), "steal_pct": statistics.median(st["steal_pct"] for st in sel),
                         "nivcsw": statistics.median(st["nivcsw"] for st in sel), "moved": sum(st["moved"] for st in sel) / len(sel)}
    return out


#: canary bins (ms) of the pooled table: full speed ... half-speed spell
CANARY_BINS = (0.0, 2.2, 3.0, 4.5, float("inf"))


def pool_spells(files: list[str], path: str = "bypass") -> str:
    """Markdown: the per-round ratio of ``path`` to cuDNN channels_last against the round's
    canary, pooled over the runs saved in ``files`` (``bypass_step.json``), per config."""
    pts: dict[tuple, list[tuple[float, float, float, float]]] = collections.defaultdict(list)
    for f in files:
        model = json.loads(Path(f).read_text())["model"]
        for size, batch, dt in {(r["size"], r["batch"], r["dtype"]) for r in model}:
            rows = {r["path"]: r for r in model if (r["size"], r["batch"], r["dtype"]) == (size, batch, dt)}
            ref, r = rows.get("cudnn_cl"), rows.get(path)
            if ref and r and ref.get("canary_ms"):
                pts[(size, batch, dt)] += [(c, a / b, b, a) for c, a, b in zip(ref["canary_ms"], r["round_ms"], ref["round_ms"])]
    bins = list(zip(CANARY_BINS, CANARY_BINS[1:]))
    lines = [f"| canary ms | {' | '.join(f'{s} px b{b} {d}' for s, b, d in sorted(pts))} |", "|---|" + "---|" * len(pts)]
    for lo, hi in bins:
        cells = []
        for key in sorted(pts):
            sel = [p for p in pts[key] if lo <= p[0] < hi]
            cells.append(f"{statistics.median(p[1] for p in sel):.2f} ({len(sel)} rounds; {statistics.median(p[2] for p in sel):.1f} vs "
                         f"{statistics.median(p[3] for p in sel):.1f} ms)" if sel else "-")
        lines.append(f"| {lo}-{hi} | {' | '.join(cells)} |")
    return "\n".join(lines)


def bench_config(paths: list[str], size: int, batch: int, dtype_name: str, device: torch.device, warmup: int, rounds: int, per_round: int) -> list[dict]:
    """All paths of one config, interleaved: ``rounds`` x (``per_round`` steps of each path), so a
    drift of the machine's speed hits every path alike; each round bracketed by the host canary.
    Python's GC is off while timing."""
    runners, rows = [], []
    for path in paths:
        try:
            r = ModelPath(path, size, batch, dtype_name, device)
            r.run(warmup, timed=False)
            runners.append(r)
        except Exception as e:  # noqa: BLE001 - report and go on
            rows.append({"path": path, "size": size, "batch": batch, "dtype": dtype_name, "ms": float("nan"), "host_ms": float("nan"),
                         "peak_mib": float("nan"), "error": repr(e)[:300]})
    sync(device)
    gc.collect()
    gc.disable()
    canary, states = [], []
    try:
        for _ in range(rounds):
            s0 = host_state()
            before = host_canary(device)
            for r in runners:
                r.run(per_round if not r.path.startswith("cudnn_off") else 1, timed=True)
            canary.append((before + host_canary(device)) / 2)
            states.append(host_delta(s0, host_state()))
        sync(device)
    finally:
        gc.enable()
    rows += [r.result() for r in runners]
    ModelPath.pools.clear()  # this config's kept buffers go with its runners
    # The host's speed drifts a lot within seconds on a shared VM: besides the medians over all
    # steps, each path's round medians are divided by cuDNN channels_last's of the same round
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
    spell_ratios(rows, canary)
    for r in rows:
        r["canary_ms"] = [round(c, 3) for c in canary]
        if all(st is not None for st in states):
            r["host_state"] = states
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
        key = (x.shape[1], mod.out_channels, tuple(mod.kernel_size), tuple(mod.stride), tuple(mod.padding), mod.groups, mod.bias is not None, x.shape[2], x.shape[3])
        row = seen.setdefault(key, dict(zip(("cin", "cout", "k", "s", "p", "groups", "bias", "h", "w"), key), count=0, first=len(seen) == 0))
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


def bench_signatures(rows: list[dict], device: torch.device, dtype_name: str, cl: bool, warmup: int, steps: int, rounds: int = 5) -> list[dict]:
    """Forward + backward of each signature alone, cuDNN vs im2col vs the chosen algorithm,
    interleaved in ``rounds`` (like the whole-model table) so machine drift hits all three."""
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
                    for _ in range(per_round):
                        if device.type == "cuda":
                            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                            s.record()
                            fb()
                            e.record()
                            times.append((s, e))
                        else:
                            t0 = time.perf_counter()
                            fb()
                            times.append((time.perf_counter() - t0) * 1e3)
        sync(device)
        for path, (guard, fb, times) in runs.items():
            res[path] = statistics.median(t if isinstance(t, float) else t[0].elapsed_time(t[1]) for t in times)
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
        sig = ConvSignature(r["cin"], r["cout"], tuple(r["k"]), tuple(r["s"]), tuple(r["p"]), (1, 1), r["groups"], r["h"], r["w"], 2, channels_last=True)
        alg = algorithm_for(sig)
        prm = ConvParams(sig.stride, sig.padding, (1, 1), sig.groups)
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(2, r["cin"], r["h"], r["w"], generator=g, dtype=torch.float64).to(device).contiguous(memory_format=torch.channels_last)
        w = torch.randn(r["cout"], r["cin"] // r["groups"], *r["k"], generator=g, dtype=torch.float64).to(device).contiguous(memory_format=torch.channels_last)
        b = torch.randn(r["cout"], generator=g, dtype=torch.float64).to(device) if r["bias"] else None
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        ref = F.conv2d(xr, wr, b, sig.stride, sig.padding, 1, sig.groups)
        go = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(device).contiguous(memory_format=torch.channels_last)
        rgx, rgw = torch.autograd.grad(ref, [xr, wr], go)
        row = {"sig": sig_label(r), "algorithm": alg.__name__.rsplit(".", 1)[-1]}
        for dt in (torch.float64, torch.bfloat16):
            cast = (lambda t: t.to(dt).contiguous(memory_format=torch.channels_last))
            xb, wb, gb = cast(x), cast(w), cast(go)
            outs = (alg.forward(xb, wb, None if b is None else b.to(dt), prm), alg.backward_data(gb, xb, wb, prm), alg.backward_weight(gb, xb, wb, prm))
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
            vendor = sorted({n for n in names if VENDOR_CONV.search(n)})
            res["steps"][f"{path}/{dtype_name}"] = {"kernels": len(names), "vendor_conv_kernels": sum(1 for n in names if VENDOR_CONV.search(n)), "vendor_names": vendor[:8]}
            del model, x
    # launches per conv (forward + backward) for one signature of each kind
    kinds: dict[str, dict] = {}
    for r in sig_rows:
        kind = "first 3x3 s2 (no input grad)" if r["first"] else f"{r['k'][0]}x{r['k'][1]} s{r['s'][0]}" + (" +bias" if r["bias"] else "")
        kinds.setdefault(kind, r)
    for kind, r in kinds.items():
        row = {"kind": kind, "sig": sig_label(r)}
        for path in ("cudnn", "im2col", "bypass"):
            with path_context(path):
                names = kernels_of(conv_case(r, device, True, None), device)
            row[path] = len(names)
            row[path + "_vendor"] = sum(1 for n in names if VENDOR_CONV.search(n))
        res["per_conv"].append(row)
    return res


# -- report -----------------------------------------------------------------------------------
def fmt(v: float, nd: int = 1) -> str:
    return "n/a" if v != v else f"{v:.{nd}f}"


def report(model_rows: list[dict], sig_tables: dict, prof: dict | None, meta: dict) -> str:
    lines = [f"Device: {meta['device']}; torch {meta['torch']}; cudnn {meta['cudnn']}. Whole model: {meta['warmup']} warm-up steps per path, "
             f"then {meta['rounds']} rounds x {meta['per_round']} steps per path, paths interleaved; median of the steps' wall times (synced) "
             f"(q25-q75 beside it); host ms = time to issue a step. Per signature: median of {meta['sig_steps']} after 3 warm-up.", ""]
    configs = []
    for r in model_rows:
        c = (r["size"], r["batch"], r["dtype"])
        if c not in configs:
            configs.append(c)
    for size, batch, dt in configs:
        rows = [r for r in model_rows if (r["size"], r["batch"], r["dtype"]) == (size, batch, dt)]
        vend = [r for r in rows if r["path"] in ("cudnn_nchw", "cudnn_cl")]
        best = min(vend, key=lambda r: r["ms"]) if vend else rows[0]
        cl = next((r for r in rows if r["path"] == "cudnn_cl"), best)
        lines += [f"### {size} px, batch {batch}, {dt}{'' if dt == 'fp32' else ' autocast'}", "",
                  f"| path | ms/step | q25-q75 | vs best cuDNN ({best['path']}) | vs cuDNN channels_last | same, paired by round | fastest step vs fastest | host ms/step | peak MiB | peak vs cuDNN channels_last |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['path']} | {fmt(r['ms'])} | {fmt(r.get('q25', float('nan')))}-{fmt(r.get('q75', float('nan')))} | {fmt(r['ms'] / best['ms'], 2)} | "
                         f"{fmt(r['ms'] / cl['ms'], 2)} | {fmt(r.get('paired_vs_cudnn_cl', float('nan')), 2)} | {fmt(r.get('min_vs_cudnn_cl', float('nan')), 2)} | "
                         f"{fmt(r['host_ms'])} | {fmt(r['peak_mib'], 0)} | {fmt(r['peak_mib'] / cl['peak_mib'], 2)} |")
        lines.append("")
        ieee = [r for r in rows if "paired_vs_cudnn_cl_ieee" in r and r["path"] != "cudnn_cl_ieee"]
        if ieee:
            lines += ["Without TF32 on either side, paired by round with cudnn_cl_ieee: " +
                      ", ".join(f"{r['path']} {fmt(r['paired_vs_cudnn_cl_ieee'], 2)}" for r in ieee), ""]
        if any("fast_rounds" in r for r in rows):
            c = next(r["canary_ms"] for r in rows if "canary_ms" in r)
            lines += [f"By host spell (rounds classed by the canary: fastest {fmt(min(c), 2)} ms, median {fmt(statistics.median(c), 2)}, "
                      f"slowest {fmt(max(c), 2)}; fast <= {FAST}x its fastest, slow >= {SLOW}x):", "",
                      "| path | fast rounds | ms/step, fast | paired vs cuDNN channels_last, fast | slow rounds | ms/step, slow | paired, slow |",
                      "|---|---|---|---|---|---|---|"]
            for r in rows:
                if "fast_rounds" in r:
                    lines.append(f"| {r['path']} | {r['fast_rounds']} | {fmt(r['fast_ms'])} | {fmt(r['fast_paired'], 2)} | "
                                 f"{r['slow_rounds']} | {fmt(r['slow_ms'])} | {fmt(r['slow_paired'], 2)} |")
            lines.append("")
            st = next((r["host_state"] for r in rows if "host_state" in r), None)
            if st:
                lines += ["Host state per round (median; steal: % of all CPUs' time taken by the hypervisor; switches: this "
                          "process's involuntary context switches; moved: rounds that ended on another CPU):", ""]
                for name, v in spell_host(c, st).items():
                    lines.append(f"* {name} rounds ({v['rounds']}): steal {v['steal_pct']:.2f} %, switches {v['nivcsw']:g}, moved {v['moved']:.0%}")
                lines.append("")
    for key, table in sig_tables.items():
        lines += [f"### Per signature, {key}: forward + backward ms (median)", "",
                  "| signature | convs | cuDNN | im2col | bypass | bypass / im2col | bypass / cuDNN | algorithm |",
                  "|---|---|---|---|---|---|---|---|"]
        tot = {"cudnn": 0.0, "im2col": 0.0, "bypass": 0.0}
        for r in table:
            for k in tot:
                tot[k] += r[k] * r["count"]
            lines.append(f"| {r['sig']} | {r['count']} | {fmt(r['cudnn'], 3)} | {fmt(r['im2col'], 3)} | {fmt(r['bypass'], 3)} | "
                         f"{fmt(r['bypass'] / r['im2col'], 2)} | {fmt(r['bypass'] / r['cudnn'], 2)} | {r['algorithm']} |")
        slower = [r["sig"] for r in table if r["bypass"] > r["im2col"]]
        lines += [f"| **sum x count** | | {fmt(tot['cudnn'], 2)} | {fmt(tot['im2col'], 2)} | {fmt(tot['bypass'], 2)} | "
                  f"{fmt(tot['bypass'] / tot['im2col'], 2)} | {fmt(tot['bypass'] / tot['cudnn'], 2)} | |", "",
                  f"Signatures where the bypass is slower than im2col: {', '.join(slower) if slower else 'none'}.", ""]
    if prof:
        lines += ["### Profiler: device kernels per train step (channels_last)", "",
                  "| step | kernels | vendor conv kernels | vendor kernel names (first) |", "|---|---|---|---|"]
        for k, v in prof["steps"].items():
            lines.append(f"| {k} | {v['kernels']} | {v['vendor_conv_kernels']} | {', '.join(n[:60] for n in v['vendor_names'][:3]) or '-'} |")
        lines += ["", "### Kernel launches per conv (forward + backward, fp32, channels_last)", "",
                  "| kind | signature | cuDNN | im2col | bypass | vendor conv kernels in bypass |", "|---|---|---|---|---|---|"]
        for r in prof["per_conv"]:
            lines.append(f"| {r['kind']} | {r['sig']} | {r['cudnn']} | {r['im2col']} | {r['bypass']} | {r['bypass_vendor']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--configs", default="640x16:fp32,640x16:bf16,640x16:fp16,320x64:fp32,320x64:bf16",
                    help="comma list of SIZExBATCH:DTYPE")
    ap.add_argument("--paths", default="cudnn_nchw,cudnn_cl,cudnn_off,im2col,bypass,bypass_nchw,auto")
    ap.add_argument("--extra-fp32-paths", default="bypass_ieee", help="paths run for fp32 configs only")
    ap.add_argument("--extra-amp-paths", default="", help="paths run for autocast configs only")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per config; each runs every path in turn")
    ap.add_argument("--per-round", type=int, default=3, help="timed steps of a path per round (cudnn_off: 1)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--sig-configs", default="640x16:fp32:nhwc,640x16:bf16:nhwc,640x16:fp32:nchw", help="per-signature tables; '' for none")
    ap.add_argument("--sig-steps", type=int, default=20)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--check", action="store_true", help="first: float64/bf16 exactness of every signature on the device")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few steps (CPU smoke test)")
    ap.add_argument("--pool-spells", nargs="+", metavar="JSON", help="only print the bypass's per-round ratio by host canary, pooled over saved runs")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args(argv)
    if args.pool_spells:
        print(pool_spells(args.pool_spells))
        return 0
    device = torch.device(args.device)
    if args.quick:
        args.configs, args.rounds, args.per_round, args.warmup, args.sig_steps = "64x2:fp32,64x2:bf16", 2, 1, 1, 2
        args.sig_configs = "64x2:fp32:nhwc,64x2:fp32:nchw"
        if device.type == "cpu":
            args.paths = "cudnn_nchw,cudnn_cl,im2col,bypass,bypass_nchw,auto"

    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None, "rounds": args.rounds, "per_round": args.per_round,
            "warmup": args.warmup, "sig_steps": args.sig_steps}
    print(json.dumps(meta), flush=True)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    result = {"meta": meta, "model": [], "signatures": {}, "profile": None}

    def save() -> None:
        if out_dir:
            (out_dir / "bypass_step.json").write_text(json.dumps(result, indent=1, default=str))
            (out_dir / "bypass_step.md").write_text(report(result["model"], result["signatures"], result["profile"], meta))

    if args.check:
        size, batch = map(int, args.configs.split(",")[0].split(":")[0].split("x"))
        result["check"] = check_signatures(model_signatures(size, batch), device)
        for r in result["check"]:
            print(json.dumps(r), flush=True)
        worst = {k: max(r[k] for r in result["check"]) for k in ("float64", "bfloat16")}
        print("CHECK worst relative error:", worst, "all channels_last out:", all(r["cl_out"] for r in result["check"]), flush=True)
        save()

    for cfg in filter(None, args.configs.split(",")):
        sb, dt = cfg.split(":")
        size, batch = map(int, sb.split("x"))
        extra = args.extra_fp32_paths if dt == "fp32" else args.extra_amp_paths
        paths = args.paths.split(",") + (extra.split(",") if extra else [])
        rows = bench_config(paths, size, batch, dt, device, args.warmup, args.rounds, args.per_round)
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
    print(report(result["model"], result["signatures"], result["profile"], meta), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
