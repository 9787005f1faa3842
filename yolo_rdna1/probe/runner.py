"""Isolated probes: each signature's vendor route runs in a child process under a timeout.

A hang never returns and an abort kills the process, so the only safe place to meet them is a
child. Children run many signatures in sequence and stream each result; when one dies or
stalls, the signature in flight gets its verdict (``abort`` / ``hang``) and a fresh child, already
started and warm, takes the rest. Each child has its own MIOpen user db and kernel cache, wiped
after an abort or a hang so a bad solver choice is never persisted.

Temp folders carry the pid of the process that owns them (``yolo_rdna1-probe-<pid>-*`` in the
temp dir, ``probe-<pid>-*`` per child): they are removed on every way out of a probe (an error
and Ctrl-C included), and a probe that starts removes those whose owner is gone (killed).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..files import pid_alive
from ..signature import ConvSignature
from .child import MARK

LOGGER = logging.getLogger("yolo_rdna1")


@dataclass
class ProbeResult:
    """The verdict for one signature (with its direction)."""

    signature: str
    verdict: str
    detail: str = ""
    vendor_ms: float | None = None
    bypass_ms: float | None = None


@dataclass
class Timeouts:
    """How long a vendor call may take before it counts as a hang.

    The first vendor call may take ``compile_allowance + max(minimum, factor * bypass_ms)``: the
    bypass time says how much work the conv is; the allowance covers a first call that compiles
    kernels (MIOpen's Find on a db miss, which takes seconds on gfx101x, where no system db
    exists). The timed repeats after it get ``repeats * max(minimum, factor * bypass_ms)``.
    """

    compile_allowance: float = 1.0
    minimum: float = 0.5
    factor: float = 10.0
    startup: float = 180.0
    bypass: float = 300.0

    @classmethod
    def for_device(cls, backend: str) -> Timeouts:
        """ROCm gets a long compile allowance (Find + kernel builds); CPU/CUDA a short one."""
        return cls(compile_allowance=60.0, minimum=5.0, factor=20.0) if backend == "rocm" else cls()

    def first_call(self, bypass_ms: float) -> float:
        return self.compile_allowance + max(self.minimum, self.factor * bypass_ms / 1e3)

    def repeats(self, bypass_ms: float, repeats: int) -> float:
        return max(1, repeats) * max(self.minimum, self.factor * bypass_ms / 1e3)


#: Prefixes of the temp folders of a probe run and of each of its children.
RUN_PREFIX, CHILD_PREFIX = "yolo_rdna1-probe-", "probe-"


def owned_temp_dir(prefix: str, parent: str | os.PathLike | None = None) -> Path:
    """A new temp folder whose name says which process owns it: ``<prefix><pid>-<random>``."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def sweep_dead(folder: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove the folders :func:`owned_temp_dir` made in ``folder`` whose owner process is dead."""
    gone = []
    for path in Path(folder).glob(f"{prefix}*"):
        owner = path.name[len(prefix) :].split("-", 1)
        if (
            len(owner) == 2
            and owner[0].isdigit()
            and path.is_dir()
            and not path.is_symlink()
            and not pid_alive(int(owner[0]))
        ):
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
    return gone


class _Child:
    """One probe process and the thread that reads its events."""

    def __init__(self, device: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.workdir = owned_temp_dir(CHILD_PREFIX, log_dir)
        try:
            self._start(device, env)
        except BaseException:  # no child to close: nothing else would remove the folder
            if getattr(self, "_stderr", None) is not None:
                self._stderr.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise

    def _start(self, device: str, env: Mapping[str, str]) -> None:
        child_env = {
            **env,
            "MIOPEN_USER_DB_PATH": str(self.workdir / "miopen-db"),
            "MIOPEN_CUSTOM_CACHE_DIR": str(self.workdir / "miopen-cache"),
            "PYTHONUNBUFFERED": "1",
            # the child imports this very copy of the package, installed or not
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")])
            ),
        }
        self.stderr_path = self.workdir / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "yolo_rdna1.probe.child", device],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_env,
            start_new_session=True,
            text=True,
        )
        self.events: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = False

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                try:
                    self.events.put(json.loads(line[len(MARK) :]))
                except json.JSONDecodeError:
                    continue
        self.events.put(None)  # EOF: the child is gone

    def send(self, job: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def wait_event(self, timeout: float) -> dict | None | str:
        """The next event, None when the child died, or ``"timeout"``."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return "timeout"

    def death(self) -> str:
        code = self.proc.wait(timeout=30)
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def stderr_tail(self) -> str:
        try:
            lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:200] if lines else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        self._stderr.close()

    def close(self, wipe: bool) -> None:
        """End the child; ``wipe`` removes its MIOpen dbs (after an abort or a hang)."""
        if self.proc.poll() is None:
            try:
                self.send({"quit": True})
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        self.kill()
        if wipe:
            shutil.rmtree(self.workdir / "miopen-db", ignore_errors=True)
            shutil.rmtree(self.workdir / "miopen-cache", ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Prober:
    """Probes signatures on ``device`` under an environment (a MIOpen env profile's variables).

    Results stream through ``on_result`` as they finish; :meth:`probe` returns them all.
    """

    def __init__(
        self,
        device: str = "cpu",
        env: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        repeats: int = 2,
        work_dir: str | os.PathLike | None = None,
    ) -> None:
        self.device = device
        self.env = {**os.environ, **(env or {}), "YOLO_RDNA1_PROBE_REPEATS": str(repeats)}
        self.timeouts = timeouts or Timeouts()
        self.repeats = repeats
        self._given = Path(work_dir) if work_dir else None
        self.work_dir: Path | None = self._given  # a temp folder of its own while :meth:`probe` runs
        self._spare: _Child | None = None

    def _spawn(self) -> _Child:
        assert self.work_dir is not None
        return _Child(self.device, self.env, self.work_dir)

    def _next_child(self) -> _Child:
        """A ready child: the spare if there is one (started while the last one worked)."""
        child = self._spare or self._spawn()
        self._spare = None
        if not child.ready:
            event = child.wait_event(self.timeouts.startup)
            if not isinstance(event, dict) or event.get("event") != "ready":
                why = "did not start in time" if event == "timeout" else child.stderr_tail() or "died at start"
                child.close(wipe=True)
                raise RuntimeError(f"probe child could not start on {self.device}: {why}")
            child.ready = True
        return child

    def probe(
        self, signatures: Iterable[ConvSignature], on_result: Callable[[ProbeResult], None] | None = None
    ) -> list[ProbeResult]:
        pending = list(signatures)
        results: list[ProbeResult] = []
        child: _Child | None = None
        if self._given is None:
            sweep_dead(tempfile.gettempdir(), RUN_PREFIX)
            self.work_dir = owned_temp_dir(RUN_PREFIX)
        else:
            self._given.mkdir(parents=True, exist_ok=True)
            sweep_dead(self._given, CHILD_PREFIX)
        try:
            for job_id, sig in enumerate(pending):
                if child is None:
                    child = self._next_child()
                    if self._spare is None and job_id + 1 < len(pending):
                        self._spare = self._spawn()  # warms up while this one works
                result, alive = self._run_job(child, job_id, sig)
                if not alive:
                    child.close(wipe=True)
                    child = None
                results.append(result)
                if on_result:
                    on_result(result)
        finally:
            try:
                if child is not None:
                    child.close(wipe=False)
                if self._spare is not None:
                    self._spare.close(wipe=False)
                    self._spare = None
            finally:
                if self._given is None and self.work_dir is not None:
                    shutil.rmtree(self.work_dir, ignore_errors=True)
                    self.work_dir = None
        return results

    def _run_job(self, child: _Child, job_id: int, sig: ConvSignature) -> tuple[ProbeResult, bool]:
        key = sig.key()
        child.send({"id": job_id, "sig": key})
        phase, bypass_ms = "start", None
        deadline = self.timeouts.bypass
        while True:
            event = child.wait_event(deadline)
            if event == "timeout":
                child.kill()
                if phase == "vendor":
                    return ProbeResult(key, "hang", f"no return within {deadline:.1f} s", None, bypass_ms), False
                return ProbeResult(
                    key, "error", f"probe stalled before the vendor call ({phase})", None, bypass_ms
                ), False
            if event is None:
                how = child.death()
                tail = child.stderr_tail()
                if phase == "vendor":
                    return ProbeResult(key, "abort", f"{how}: {tail}" if tail else how, None, bypass_ms), False
                return ProbeResult(
                    key, "error", f"probe child died before the vendor call ({how}: {tail})", None, bypass_ms
                ), False
            assert isinstance(event, dict)
            if event.get("id") != job_id:
                continue
            kind = event.get("event")
            if kind == "start":
                phase = "bypass"
            elif kind == "vendor":
                phase, bypass_ms = "vendor", float(event["bypass_ms"])
                deadline = self.timeouts.first_call(bypass_ms)
            elif kind == "first":
                deadline = self.timeouts.repeats(bypass_ms or 0.0, self.repeats)
            elif kind == "result":
                return (
                    ProbeResult(
                        key, event["verdict"], event.get("detail", ""), event.get("vendor_ms"), event.get("bypass_ms")
                    ),
                    True,
                )
