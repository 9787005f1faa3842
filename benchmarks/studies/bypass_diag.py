"""Where the bypass step's time goes: host overhead per call, device kernel time, GEMM modes.

A diagnostic companion of :mod:`benchmarks.bypass_step` (issue 5), for tuning, not for the report:

* ``host``: host microseconds per call of each bypass direction and of its building blocks,
  on tiny CUDA tensors (device work negligible, so this is Python + dispatcher + launch cost);
* ``kernels``: torch.profiler of one whole YOLOv8n train step per path: device busy time and the
  kernels that take it, grouped by name;
* ``gemm``: the GEMM shapes of a few YOLOv8n convs in TF32 and IEEE float32, and bf16;
* ``gather``: the bwd_data gather-reduction against a plain copy of the same bytes;
* ``ops``: host microseconds per call of each kind of op a bypassed conv issues;
* ``overhead``: the plans' own Python: plan calls against the bare op sequence they issue;
* ``modes``: cuDNN and bypass steps interleaved with small fixed host workloads, per round: what
  kind of host work this host's slow spells hit;
* ``machinery``, ``cprofile``, ``sync``: a guarded conv's host time peeled layer by layer,
  whole-step host hotspots, and whether anything on the bypass path waits for the GPU.

    python3 -m benchmarks.studies.bypass_diag --parts machinery --out "$OUT"
"""

from __future__ import annotations

import argparse
import collections
import functools
import gc
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks import bypass_step as bs
from benchmarks.harness import device_ms as dev_ms
from benchmarks.harness import host_us
from benchmarks.harness import sync as _sync
from benchmarks.studies.host_spells import host_canary
from yolo_rdna1.bypass import ConvParams, im2col, nhwc_gemm, pointwise
from yolo_rdna1.bypass import _common as C_


def host_table(dev) -> dict:
    cl = torch.channels_last
    x = torch.randn(1, 16, 8, 8, device=dev).contiguous(memory_format=cl)
    w3 = torch.randn(16, 16, 3, 3, device=dev).contiguous(memory_format=cl)
    w1 = torch.randn(16, 16, 1, 1, device=dev).contiguous(memory_format=cl)
    go = torch.randn(1, 16, 8, 8, device=dev).contiguous(memory_format=cl)
    p3, p1, p3s2 = ConvParams((1, 1), (1, 1)), ConvParams(), ConvParams((2, 2), (1, 1))
    go2 = torch.randn(1, 16, 4, 4, device=dev).contiguous(memory_format=cl)
    xh = x.permute(0, 2, 3, 1)
    m = torch.randn(64, 16, device=dev)
    y = torch.randn(100, 144, device=dev)
    res = {
        "F.conv2d 3x3": host_us(lambda: F.conv2d(x, w3, None, 1, 1)),
        "aten conv bwd 3x3 (both)": host_us(
            lambda: torch.ops.aten.convolution_backward(
                go, x, w3, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False]
            )
        ),
        "nhwc_gemm fwd": host_us(lambda: nhwc_gemm.forward(x, w3, None, p3)),
        "nhwc_gemm bwd_data": host_us(lambda: nhwc_gemm.backward_data(go, x, w3, p3)),
        "nhwc_gemm bwd_weight": host_us(lambda: nhwc_gemm.backward_weight(go, x, w3, p3)),
        "nhwc_gemm bwd_data s2": host_us(lambda: nhwc_gemm.backward_data(go2, x, w3, p3s2)),
        "pointwise fwd": host_us(lambda: pointwise.forward(x, w1, None, p1)),
        "pointwise bwd_data": host_us(lambda: pointwise.backward_data(go, x, w1, p1)),
        "pointwise bwd_weight": host_us(lambda: pointwise.backward_weight(go, x, w1, p1)),
        "im2col fwd": host_us(lambda: im2col.forward(x, w3, None, p3)),
        "im2col bwd_data": host_us(lambda: im2col.backward_data(go, x, w3, p3)),
        "im2col bwd_weight": host_us(lambda: im2col.backward_weight(go, x, w3, p3)),
        "F.pad nhwc": host_us(lambda: F.pad(xh, (0, 0, 1, 1, 1, 1))),
        "torch.mm": host_us(lambda: torch.mm(m, m.t())),
        "as_strided+reshape copy": host_us(
            lambda: xh.as_strided((1, 6, 6, 3, 3, 16), (1024, 128, 16, 128, 16, 1)).reshape(36, 144)
        ),
        "strided sum": host_us(
            lambda: y.as_strided((1, 8, 1, 8, 1, 3, 3, 16), (1440, 144, 0, 16, 0, 16, 16, 1)).sum((5, 6))
        ),
    }
    conv = nn.Conv2d(16, 16, 3, 1, 1, bias=False).to(dev).to(memory_format=cl)
    xg = x.clone().requires_grad_()

    def fb():
        conv(xg).backward(go)

    for path in ("cudnn", "auto", "bypass", "im2col"):
        with bs.path_context(path):
            res[f"module fwd+bwd 3x3 [{path}]"] = host_us(fb)
    conv1 = nn.Conv2d(16, 16, 1, bias=False).to(dev).to(memory_format=cl)

    def fb1():
        conv1(xg).backward(go)

    for path in ("cudnn", "bypass"):
        with bs.path_context(path):
            res[f"module fwd+bwd 1x1 [{path}]"] = host_us(fb1)
    return res


def kernel_table(dev, size: int, batch: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for dt in ("fp32", "bf16", "fp16"):
        for path in ("cudnn_cl", "bypass", "bypass_nopool"):
            model = bs.build_model(dev, True)
            x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
            with bs.path_context(path):
                step = bs.make_step(model, x, dev, bs.DTYPES[dt])
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                t = time.perf_counter()
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    step()
                    torch.cuda.synchronize()
                wall = (time.perf_counter() - t) * 1e3
            groups: dict[str, list[float]] = collections.defaultdict(list)
            api: dict[str, list[float]] = collections.defaultdict(list)
            busy = 0.0
            for e in prof.events():
                if str(getattr(e, "device_type", "")).endswith("CUDA"):
                    d = e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
                    busy += d
                    groups[e.name[:90]].append(d)
                elif e.name.startswith(("cuda", "cu", "hip")) and not e.name.startswith("cutlass"):
                    api[e.name[:60]].append(e.cpu_time_total)
            top = sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:25]
            out[f"{path}/{dt}"] = {
                "busy_ms": round(busy / 1e3, 2),
                "profiled_wall_ms": round(wall, 1),
                "top": [(k, len(v), round(sum(v) / 1e3, 3)) for k, v in top],
                "runtime_api": sorted(
                    ((k, len(v), round(sum(v) / 1e3, 3)) for k, v in api.items()), key=lambda t: -t[2]
                )[:12],
            }
            del model, x
            torch.cuda.empty_cache()
    return out


def cprofile_table(dev, size: int, batch: int) -> dict:
    """Host hotspots of whole train steps: cProfile of 5 steps per path, top 30 by own time."""
    import cProfile
    import io
    import pstats

    out = {}
    for dt in ("fp32", "bf16"):
        for path in ("cudnn_cl", "bypass"):
            model = bs.build_model(dev, True)
            x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
            with bs.path_context(path):
                step = bs.make_step(model, x, dev, bs.DTYPES[dt])
                for _ in range(3):
                    step()
                _sync()
                t = time.perf_counter()
                for _ in range(5):
                    step()
                host_plain = (time.perf_counter() - t) / 5 * 1e3
                _sync()
                pr = cProfile.Profile()
                pr.enable()
                for _ in range(5):
                    step()
                pr.disable()
                _sync()
            buf = io.StringIO()
            pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(30)
            out[f"{path}/{dt}"] = {
                "host_ms_per_step_unprofiled": round(host_plain, 2),
                "top": buf.getvalue().splitlines()[-38:],
            }
            del model, x
    return out


def sync_table(dev, size: int, batch: int) -> dict:
    """Does anything on the bypass path wait for the GPU? Host time of TF32 flag flips behind a
    long GEMM, and allocator activity (cudaMalloc segments, retries) over whole bypass steps."""
    res = {}
    a = torch.randn(8192, 8192, device=dev)
    torch.cuda.synchronize()
    t = time.perf_counter()
    torch.mm(a, a)
    torch.cuda.synchronize()
    res["long_gemm_ms"] = round((time.perf_counter() - t) * 1e3, 2)
    torch.mm(a, a)
    t = time.perf_counter()
    for _ in range(100):
        C_._set_cublas_tf32(True)
        C_._set_cublas_tf32(False)
    res["100_tf32_flips_behind_gemm_ms"] = round((time.perf_counter() - t) * 1e3, 2)
    torch.cuda.synchronize()
    del a
    for dt in ("fp32", "bf16"):
        for path in ("cudnn_cl", "bypass"):
            model = bs.build_model(dev, True)
            x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
            with bs.path_context(path):
                step = bs.make_step(model, x, dev, bs.DTYPES[dt])
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                m0 = torch.cuda.memory_stats()
                t = time.perf_counter()
                for _ in range(10):
                    step()
                host = (time.perf_counter() - t) / 10 * 1e3
                torch.cuda.synchronize()
                wall = (time.perf_counter() - t) / 10 * 1e3
                m1 = torch.cuda.memory_stats()
            res[f"{path}/{dt}"] = {
                "host_ms": round(host, 2),
                "wall_ms": round(wall, 2),
                **{
                    k: m1.get(k, 0) - m0.get(k, 0)
                    for k in (
                        "num_alloc_retries",
                        "segment.all.allocated",
                        "segment.all.freed",
                        "num_device_alloc",
                        "num_device_free",
                    )
                },
            }
            del model, x, step
            torch.cuda.empty_cache()
    return res


def gemm_table(dev) -> list:
    shapes = [  # (label, M, K, N) for C = A(M,K) @ B(K,N)
        ("fwd 3>16 s2 640 (cols)", 16 * 320 * 320, 27, 16),
        ("bww 3>16 s2 640", 16, 16 * 320 * 320, 27),
        ("fwd 16>32 s2 320", 16 * 160 * 160, 144, 32),
        ("bww 16>32 s2 320", 32, 16 * 160 * 160, 144),
        ("bwd 16>32 s2 320 (Y)", 16 * 161 * 161, 32, 256),
        ("fwd 16>16 s1 160", 16 * 160 * 160, 144, 16),
        ("bww 16>16 s1 160", 16, 16 * 160 * 160, 144),
        ("bwd 16>16 s1 160 (Y)", 16 * 162 * 162, 16, 144),
        ("fwd 32>32 s1 80", 16 * 80 * 80, 288, 32),
        ("bww 32>32 s1 80", 32, 16 * 80 * 80, 288),
        ("bwd 32>32 s1 80 (Y)", 16 * 82 * 82, 32, 288),
        ("fwd 64>64 s1 40", 16 * 40 * 40, 576, 64),
        ("bww 64>64 s1 40", 64, 16 * 40 * 40, 576),
        ("pw 64>64 80 fwd", 16 * 80 * 80, 64, 64),
        ("pw 64>64 80 bww", 64, 16 * 80 * 80, 64),
    ]
    rows = []
    for label, m, k, n in shapes:
        rows.append(_gemm_row(dev, label, m, k, n))
        torch.cuda.empty_cache()
    return rows


def _gemm_row(dev, label: str, m: int, k: int, n: int) -> dict:
    """One row of gemm_table: a function of its own so that each timed closure sees only its own tensors."""
    row = {"gemm": label, "MKN": (m, k, n)}
    for mode in ("ieee", "tf32", "bf16"):
        dt = torch.bfloat16 if mode == "bf16" else torch.float32
        if label.startswith("bww"):  # A is a transposed view, as in the bypass
            a = torch.randn(k, m, device=dev, dtype=dt).t()
        else:
            a = torch.randn(m, k, device=dev, dtype=dt)
        b = torch.randn(n, k, device=dev, dtype=dt).t()
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        try:
            row[mode] = dev_ms(functools.partial(torch.mm, a, b))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    if m * n < 64 * 1024:  # split over the reduction: bmm over 16 slices + sum
        a16 = torch.randn(16, k // 16, m, device=dev).transpose(1, 2)
        b16 = torch.randn(16, k // 16, n, device=dev)
        row["ieee_split16"] = dev_ms(lambda: torch.bmm(a16, b16).sum(0))
    return row


def gather_table(dev) -> list:
    rows = []
    for label, (n, h, c, o, s) in {
        "16>16 s1 160": (16, 160, 16, 16, 1),
        "32>32 s1 80": (16, 80, 32, 32, 1),
        "16>32 s2 320": (16, 320, 16, 32, 2),
        "64>64 s1 40": (16, 40, 64, 64, 1),
    }.items():
        for dt in (torch.float32, torch.bfloat16):
            rows.append(_gather_row(dev, label, n, h, c, o, s, dt))
            torch.cuda.empty_cache()
    return rows


def _gather_row(dev, label: str, n: int, h: int, c: int, o: int, s: int, dt) -> dict:
    """One row of gather_table: a function of its own so that each timed closure sees only its own tensors."""
    x = torch.randn(n, c, h, h, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)
    w = torch.randn(o, c, 3, 3, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)
    p = ConvParams((s, s), (1, 1))
    go = torch.randn(n, o, h // s, h // s, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)
    row = {
        "case": label,
        "dtype": str(dt)[6:],
        "bwd_data": dev_ms(lambda: nhwc_gemm.backward_data(go, x, w, p)),
        "fwd": dev_ms(lambda: nhwc_gemm.forward(x, w, None, p)),
        "bwd_weight": dev_ms(lambda: nhwc_gemm.backward_weight(go, x, w, p)),
        "cudnn_fwd": dev_ms(lambda: F.conv2d(x, w, None, s, 1)),
        "cudnn_bwd_data": dev_ms(
            lambda: torch.ops.aten.convolution_backward(
                go, x, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
            )
        ),
        "cudnn_bwd_weight": dev_ms(
            lambda: torch.ops.aten.convolution_backward(
                go, x, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
            )
        ),
    }
    if s == 1:  # the alternative: bwd_data as the forward conv of grad_out with the flipped kernel
        wt = w.flip(2, 3).transpose(0, 1).contiguous(memory_format=torch.channels_last)
        row["bwd_data_as_fwd"] = dev_ms(lambda: nhwc_gemm.forward(go, wt, None, p))
    # pieces: the padded copy, the columns copy, the reduction alone
    xh = x.permute(0, 2, 3, 1)
    row["pad"] = dev_ms(lambda: F.pad(xh, (0, 0, 1, 1, 1, 1)))
    plan = nhwc_gemm.plan_for(x, w, p)
    xp = plan.pad(x)
    row["cols_copy"] = dev_ms(lambda: plan.cols(xp, x.dtype))
    kk = 3 if s == 1 else 4
    ohp = h // s + (2 if s == 1 else 1)
    y = torch.randn(n * ohp * ohp, kk * kk * c, device=dev, dtype=dt)
    row["Y_bytes_MB"] = round(y.numel() * y.element_size() / 2**20, 1)
    row["copy_Y_same_bytes"] = dev_ms(lambda: y.clone())
    return row


def ops_table(dev) -> dict:
    """Host microseconds per call of the ops a bypassed conv is made of, on tiny CUDA tensors
    (device work negligible): which kind of op the host time goes to, and whether another
    entry to the same GEMM (cuBLASLt, bmm, TF32 on) is cheaper to issue."""
    a = torch.randn(64, 16, device=dev)
    b = torch.randn(16, 64, device=dev)
    bias = torch.randn(64, device=dev)
    a16, b16 = a.bfloat16(), b.bfloat16()
    small = torch.randn(1024, device=dev)
    dst = torch.empty(1024, device=dev)
    strided_src = torch.randn(64, 32, device=dev)[:, :16]
    cl = torch.channels_last
    x = torch.randn(1, 16, 8, 8, device=dev).contiguous(memory_format=cl)
    w3 = torch.randn(16, 16, 3, 3, device=dev).contiguous(memory_format=cl)
    res = {
        "as_strided (view)": host_us(lambda: a.as_strided((16, 64), (1, 16))),
        "detach (alias)": host_us(lambda: a.detach()),
        "empty": host_us(lambda: torch.empty(64, 64, device=dev)),
        "add_ (one launch)": host_us(lambda: small.add_(1)),
        "copy_ contiguous": host_us(lambda: dst.copy_(small)),
        "contiguous() of a strided view": host_us(lambda: strided_src.contiguous()),
        "sum over dims": host_us(lambda: strided_src.sum(0)),
        "mm fp32": host_us(lambda: torch.mm(a, b)),
        "addmm fp32 (bias)": host_us(lambda: torch.addmm(bias, a, b)),
        "mm bf16": host_us(lambda: torch.mm(a16, b16)),
        "bmm fp32 (batch 1)": host_us(lambda: torch.bmm(a[None], b[None])),
        "aten.mm.default fp32": host_us(lambda: torch.ops.aten.mm.default(a, b)),
        "F.conv2d 3x3": host_us(lambda: F.conv2d(x, w3, None, 1, 1)),
    }
    out = torch.empty(64, 64, device=dev)
    res["mm fp32 out="] = host_us(lambda: torch.mm(a, b, out=out))
    prev = C_.tf32_enter(a)
    try:
        res["mm fp32, TF32 on"] = host_us(lambda: torch.mm(a, b))
    finally:
        C_.tf32_exit(prev)
    before = torch.backends.cuda.preferred_blas_library()
    try:
        torch.backends.cuda.preferred_blas_library("cublaslt")
        res["mm fp32, cuBLASLt"] = host_us(lambda: torch.mm(a, b))
        res["mm bf16, cuBLASLt"] = host_us(lambda: torch.mm(a16, b16))
        res["addmm fp32, cuBLASLt"] = host_us(lambda: torch.addmm(bias, a, b))
    finally:
        torch.backends.cuda.preferred_blas_library(before)
    res["preferred blas library"] = str(before)
    return res


def modes_table(dev, size: int, batch: int, rounds: int = 40) -> dict:
    """This host's slow spells: whole steps of cuDNN and of the bypass, interleaved with small
    fixed workloads (pure Python; tiny kernel launches; tiny GEMMs; views; a malloc-heavy
    loop), all timed per round. Which workload slows down with the bypass's steps says what
    kind of host work the spells hit."""
    small = torch.randn(1024, device=dev)
    a, b = torch.randn(64, 16, device=dev), torch.randn(16, 64, device=dev)

    def py():
        t = 0
        for i in range(20000):
            t += i & 7
        return t

    def launches():
        for _ in range(200):
            small.add_(1)

    def gemms():
        for _ in range(200):
            torch.mm(a, b)

    def allocs():
        for _ in range(200):
            bytearray(1 << 20)

    def timed(fn) -> float:
        _sync()
        t = time.perf_counter()
        fn()
        el = time.perf_counter() - t
        _sync()
        return el * 1e3

    steps = {}
    for path in ("cudnn_cl", "bypass"):
        model = bs.build_model(dev, True)
        x = torch.rand(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
        steps[path] = (bs.make_guard(path), bs.make_step(model, x, dev, None))
    for path, (g, step) in steps.items():
        with bs.path_context(path, g):
            for _ in range(3):
                step()
    work = {
        "python": py,
        "launches": launches,
        "gemms": gemms,
        "views": lambda: host_canary(dev, 1000),
        "allocs": allocs,
    }
    rows: dict[str, list[float]] = collections.defaultdict(list)
    gc_before = gc.get_count()
    for _ in range(rounds):
        for path, (g, step) in steps.items():
            with bs.path_context(path, g):
                rows[path].append(timed(step))
        for name, fn in work.items():
            rows[name].append(timed(fn))
    res = {k: [round(v, 2) for v in vs] for k, vs in rows.items()}
    # per workload: its time in the bypass's slowest third of rounds over its fastest third
    order = sorted(range(rounds), key=lambda i: rows["bypass"][i])
    third = max(1, rounds // 3)
    fast, slow = order[:third], order[-third:]
    res["slow_over_fast"] = {
        k: round(statistics.median(rows[k][i] for i in slow) / statistics.median(rows[k][i] for i in fast), 2)
        for k in rows
    }
    res["gc_counts"] = [gc_before, gc.get_count()]
    return res


def overhead_table(dev) -> dict:
    """Host microseconds of the plans' own Python: a 3x3 and a 1x1 conv's plan calls (forward,
    backward) against the bare op sequence they issue, built from the same plan's sizes and
    strides (tiny channels_last tensors, so the ops' device work is negligible)."""
    cl = torch.channels_last
    x = torch.randn(1, 16, 8, 8, device=dev).contiguous(memory_format=cl)
    w3 = torch.randn(16, 16, 3, 3, device=dev).contiguous(memory_format=cl)
    w1 = torch.randn(16, 16, 1, 1, device=dev).contiguous(memory_format=cl)
    go = torch.randn(1, 16, 8, 8, device=dev).contiguous(memory_format=cl)
    P = nhwc_gemm.Plan(x, w3, ConvParams((1, 1), (1, 1)))
    _, xp = P.forward(x, w3, None, True)
    P.backward(go, xp, w3, True, True)
    G = next(iter(P._gathers.values()))
    size, stride, k = P.views[0]
    xbuf = torch.zeros(1, 10, 10, 16, device=dev)
    gbuf = torch.zeros(1, 10, 10, 16, device=dev)
    xin, gin = xbuf[:, 1:9, 1:9], gbuf[:, 1:9, 1:9]
    xh, gh = x.permute(0, 2, 3, 1), go.permute(0, 2, 3, 1)
    cols_view = xbuf.as_strided(size, stride)
    wmat, wrows = w3.as_strided((P.k, P.o), (1, P.k)), w3.as_strided((P.o, G.kcols), (G.kcols, 1))

    def bare_fwd3():
        xin.copy_(xh)
        return torch.mm(cols_view.reshape(P.m, k), wmat).as_strided(P.osize, P.ostride)

    def bare_bwd3():
        gin.copy_(gh)
        gx = torch.mm(gbuf.view(-1, 16), wrows).as_strided((1, *G.size), (G.img, *G.stride), G.offset).sum((5, 6))
        gx = gx.as_strided(G.gshape, G.xstride)
        gw = torch.mm(go.as_strided((P.o, P.m), (1, P.o)), cols_view.reshape(P.m, k))
        return gx, gw.as_strided(P.wshape, C_.cl_strides(*P.wshape))

    P1 = pointwise.Plan(x, w1, ConvParams())
    w1t, w2 = w1.as_strided((16, 16), (1, 16)), w1.as_strided((16, 16), (16, 1))

    def bare_fwd1():
        return torch.mm(x.as_strided((64, 16), (16, 1)), w1t).as_strided(P1.osize, P1.ostride)

    def bare_bwd1():
        g2 = go.as_strided((64, 16), (16, 1))
        return torch.mm(g2, w2).as_strided(P1.xsize, P1.xstride), torch.mm(
            g2.t(), x.as_strided((64, 16), (16, 1))
        ).view(16, 16, 1, 1)

    res = {
        "3x3 plan forward": host_us(lambda: P.forward(x, w3, None, True)),
        "3x3 bare forward ops": host_us(bare_fwd3),
        "3x3 plan backward": host_us(lambda: P.backward(go, xp, w3, True, True)),
        "3x3 bare backward ops": host_us(bare_bwd3),
        "1x1 plan forward": host_us(lambda: P1.forward(x, w1, None, True)),
        "1x1 bare forward ops": host_us(bare_fwd1),
        "1x1 plan backward": host_us(lambda: P1.backward(go, x, w1, True, True)),
        "1x1 bare backward ops": host_us(bare_bwd1),
    }
    for kind in ("3x3", "1x1"):
        res[f"{kind} plans' own Python, forward + backward"] = round(
            res[f"{kind} plan forward"]
            - res[f"{kind} bare forward ops"]
            + res[f"{kind} plan backward"]
            - res[f"{kind} bare backward ops"],
            1,
        )
    return res


def machinery_table(dev) -> dict:
    """Host microseconds of one 3x3 conv's forward + backward, peeled layer by layer: the vendor
    module, a bare ``autograd.Function`` returning precomputed tensors, the guard with stubbed
    algorithms, the guard with the real ones, the algorithms called directly; plus a
    torch.profiler breakdown (host self time per op/event) of the guarded bypass call."""
    from torch.profiler import ProfilerActivity, profile

    cl = torch.channels_last
    x = torch.randn(1, 16, 8, 8, device=dev).contiguous(memory_format=cl)
    go = torch.randn(1, 16, 8, 8, device=dev).contiguous(memory_format=cl)
    p3 = ConvParams((1, 1), (1, 1))
    conv = nn.Conv2d(16, 16, 3, 1, 1, bias=False).to(dev).to(memory_format=cl)
    w = conv.weight.detach()
    xg = x.clone().requires_grad_()
    out0, gx0, gw0 = torch.zeros_like(go), torch.zeros_like(x), torch.zeros_like(w)

    def fb():
        conv(xg).backward(go)

    class Bare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return out0.view_as(out0)

        @staticmethod
        def backward(ctx, g):
            _ = ctx.saved_tensors  # unpacked, as a real backward does: part of what is priced
            return gx0, gw0

    def bare():
        Bare.apply(xg, conv.weight).backward(go)

    def native_add():
        (xg + 0).backward(go)

    def algs():
        nhwc_gemm.forward(x, w, None, p3)
        nhwc_gemm.backward_data(go, x, w, p3)
        nhwc_gemm.backward_weight(go, x, w, p3)

    res = {
        "cudnn module fwd+bwd": host_us(fb),
        "native x+0 fwd+bwd": host_us(native_add),
        "bare autograd.Function fwd+bwd": host_us(bare),
        "nhwc_gemm 3 directions, no autograd": host_us(algs),
    }
    with torch.autograd.set_multithreading_enabled(False):
        res["cudnn module fwd+bwd, single-threaded autograd"] = host_us(fb)
        res["native x+0 fwd+bwd, single-threaded autograd"] = host_us(native_add)
        res["bare autograd.Function, single-threaded autograd"] = host_us(bare)
    import threading

    box = {}
    th = threading.Thread(target=lambda: box.setdefault("t", host_us(algs)))
    th.start()
    th.join()
    res["nhwc_gemm 3 directions, no autograd, other thread"] = box["t"]
    with bs.path_context("bypass"):
        res["guard bypass fwd+bwd"] = host_us(fb)
        with torch.autograd.set_multithreading_enabled(False):
            res["guard bypass fwd+bwd, single-threaded autograd"] = host_us(fb)
        with torch.no_grad():
            res["guard bypass fwd only (no_grad)"] = host_us(lambda: conv(xg))
        saved = nhwc_gemm.Plan.forward, nhwc_gemm.Plan.backward
        try:
            nhwc_gemm.Plan.forward = lambda self, x, w, b, train=True: (out0.view_as(out0), x)
            nhwc_gemm.Plan.backward = lambda self, g, keep, w, nx, nw: (gx0, gw0)
            res["guard bypass, stubbed plan"] = host_us(fb)
        finally:
            nhwc_gemm.Plan.forward, nhwc_gemm.Plan.backward = saved
        for _ in range(20):
            fb()
        _sync()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(50):
                fb()
            _sync()
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:30]
    res["profile_guard_bypass_self_us_per_call"] = [
        (e.key[:70], e.count // 50, round(e.self_cpu_time_total / 50, 1)) for e in rows
    ]
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--parts", default="host,gather,gemm,kernels")
    args = ap.parse_args()
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    res = {}
    for part in args.parts.split(","):
        res[part] = {
            "host": lambda: host_table(dev),
            "kernels": lambda: kernel_table(dev, 640, 16),
            "gemm": lambda: gemm_table(dev),
            "gather": lambda: gather_table(dev),
            "cprofile": lambda: cprofile_table(dev, 640, 16),
            "sync": lambda: sync_table(dev, 640, 16),
            "machinery": lambda: machinery_table(dev),
            "ops": lambda: ops_table(dev),
            "overhead": lambda: overhead_table(dev),
            "modes": lambda: modes_table(dev, 640, 16),
        }[part]()
        print(part, json.dumps(res[part], indent=0), flush=True)
        if args.out:
            Path(args.out, "bypass_diag.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
