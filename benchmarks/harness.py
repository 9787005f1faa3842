"""What every benchmark shares: the offline set-up, timing loops, fresh processes, the ``meta`` block.

Benchmarks run as modules from the repository root (``python3 -m benchmarks.train_epoch``), so
``yolo_rdna1`` and ``benchmarks`` import without touching ``sys.path``; a child process is started
the same way (:func:`run_module`). Every result file carries :func:`meta`: the commit, the
command line, the date and the versions a reader needs to tie a number to what made it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

#: The repository root: the working directory a benchmark module is run from.
ROOT = Path(__file__).resolve().parents[1]


def offline(config_dir: Path | None = None) -> None:
    """Ultralytics without the network: no downloads, no pip installs, settings in ``config_dir``.

    Why: the device machines reach nothing, and a download attempt costs a timeout per call."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    if config_dir is not None:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))


# -- timing -----------------------------------------------------------------------------------
def sync(device: Any = None) -> None:
    """Wait for the GPU's queued work (no-op on the CPU): device work is asynchronous, so a host
    clock read without it measures how fast work was queued, not done."""
    import torch

    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize(device)


def step_ms(fn: Callable[[], Any], device: Any, warmup: int, steps: int) -> list[float]:
    """Wall milliseconds of each of ``steps`` calls, each followed by a device sync (as a
    training loop has when it reads the loss), after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def host_us(fn: Callable[[], Any], n: int = 300, warmup: int = 20) -> float:
    """Host microseconds per call, no sync inside the loop: what it costs to issue the work
    (Python, dispatcher, launches) on tensors small enough that the device keeps up."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = time.perf_counter() - t0
    sync()
    return round(elapsed / n * 1e6, 1)


def device_ms(fn: Callable[[], Any], n: int = 20, warmup: int = 3) -> float:
    """Median device milliseconds per call by CUDA events (GPU time, launch gaps included); on
    the CPU one call's wall time."""
    import torch

    if not torch.cuda.is_available():
        t0 = time.perf_counter()
        fn()
        return round((time.perf_counter() - t0) * 1e3, 4)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(n):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return round(statistics.median(s.elapsed_time(e) for s, e in events), 4)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q25, median, q75); a single value is all three."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


# -- provenance -------------------------------------------------------------------------------
def git_commit() -> str:
    """The commit the code came from: ``$BENCH_COMMIT`` when set (a copy made by ``git archive``
    has no ``.git`` of its own; the caller names the commit it archived), else ``git rev-parse``."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    head = _output(["git", "rev-parse", "--short=10", "HEAD"])
    if not head:
        return "unknown"
    return head + ("+dirty" if _output(["git", "status", "--porcelain", "--untracked-files=no"]) else "")


def _output(cmd: list[str]) -> str | None:
    """A command's stripped output, or None when it is missing or fails."""
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _driver_version() -> str | None:
    out = _output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0] if out else None


def meta(device: Any = None, **extra: Any) -> dict[str, Any]:
    """Where a result came from: commit, command line, UTC date, host, Python, torch, CUDA,
    cuDNN, the driver, the GPU's name, Ultralytics; plus ``extra`` (the benchmark's settings)."""
    import torch

    cuda = torch.cuda.is_available() and (device is None or str(device) != "cpu")
    try:
        import ultralytics

        ultra = ultralytics.__version__
    except ImportError:
        ultra = None
    return {
        "commit": git_commit(),
        "command": shlex.join(command_line()),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine()},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "driver": _driver_version() if cuda else None,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "ultralytics": ultra,
        **extra,
    }


def command_line() -> list[str]:
    """This process's command line as it was typed: ``python3 -m benchmarks.x ...`` for a module
    of this repository (``sys.argv[0]`` is then its file), else the arguments as given."""
    script = Path(sys.argv[0]).resolve()
    try:
        rel = script.relative_to(ROOT)
    except ValueError:
        return [Path(sys.executable).name, *sys.argv]
    if rel.suffix != ".py":
        return [Path(sys.executable).name, *sys.argv]
    return [Path(sys.executable).name, "-m", ".".join(rel.with_suffix("").parts), *sys.argv[1:]]


# -- processes and files ----------------------------------------------------------------------
def run_module(
    module: str, args: list[str], log: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> int:
    """Run ``python -m <module> <args>`` from the repository root in a fresh process, its output
    to ``log``; returns the exit code. Why fresh: trainings that follow each other in one
    process drift (RAM caches, dataloader workers, allocator state)."""
    with open(log, "w") as f:
        try:
            return subprocess.run(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                stdout=f,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[harness] killed after {timeout} s\n")
            return 124


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str))


def fmt(v: float, nd: int = 1) -> str:
    """A number for a markdown table; NaN as ``n/a``."""
    return "n/a" if v != v else f"{v:.{nd}f}"
