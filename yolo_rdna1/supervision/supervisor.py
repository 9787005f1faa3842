"""The supervisor: runs training in a child process and brings it back after a crash or a hang.

``yolo_rdna1.train(..., supervise=True)`` and ``yolo-rdna1 train supervise=True ...``. The loop is
the one torch.distributed.run's elastic agent has (``--max-restarts``: run, watch the exit,
restart with a bound), with what a single GPU run needs on top:

* the cause of every abnormal end is classified (signal, watchdog stall, error) and journaled;
* the conv in flight is attributed by the child's next start (its breadcrumb), so it is bypassed;
* a restart resumes from the newest checkpoint of the same run dir;
* restarts back off exponentially, and the supervisor gives up with a summary when the same
  failure repeats without progress (no new epoch finished in between);
* Ctrl-C stops child and supervisor and leaves a run that ``resume=True`` continues.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..verdicts import breadcrumb as crumbs
from . import journal
from .watchdog import STALL_EXIT_CODE

LOGGER = logging.getLogger("yolo_rdna1")


class SupervisorError(RuntimeError):
    """The supervisor gave up; the message summarises why and what was tried."""


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 10
    backoff_s: float = 10.0
    backoff_max_s: float = 600.0
    same_failure_limit: int = 3

    def delay(self, restart: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, restart - 1))


def classify(returncode: int) -> str:
    """Why a training child ended: ``ok``, ``hang``, ``abort``, ``killed``, ``signal:NAME`` or ``error``."""
    if returncode == 0:
        return "ok"
    if returncode == STALL_EXIT_CODE:
        return "hang"
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGABRT:
            return "abort"
        if sig == signal.SIGKILL:
            return "killed"
        try:
            return f"signal:{signal.Signals(sig).name}"
        except ValueError:
            return f"signal:{sig}"
    return "error"


def completed_epochs(run_dir: Path) -> int:
    """Epochs with a row in results.csv: the progress measure between restarts."""
    csv = run_dir / "results.csv"
    if not csv.is_file():
        return 0
    return max(0, len([line for line in csv.read_text().splitlines() if line.strip()]) - 1)


def supervise(
    train_kwargs: dict[str, Any],
    policy: RestartPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    python: str = sys.executable,
) -> Path:
    """Train under supervision; returns the run dir, raises :class:`SupervisorError` on giving up."""
    policy = policy or RestartPolicy()
    kwargs = dict(train_kwargs)
    kwargs.setdefault("project", str(Path("runs") / "rdna1"))
    kwargs.setdefault("name", "train")
    run_dir = Path(kwargs["project"]).resolve() / str(kwargs["name"])
    kwargs["project"] = str(Path(kwargs["project"]).resolve())
    last = run_dir / "weights" / "last.pt"
    resuming = bool(kwargs.pop("resume", False))
    if last.is_file() and not resuming:
        raise SupervisorError(f"{run_dir} already holds a run (weights/last.pt); pass resume=True to continue it, or another name=")
    if resuming and not last.is_file():
        raise SupervisorError(f"resume=True but {last} does not exist: nothing to resume; drop resume or fix project/name")
    run_dir.mkdir(parents=True, exist_ok=True)
    journal.append(run_dir, "start", supervised=True, resume=resuming, pid=os.getpid())

    restarts = 0
    history: list[tuple[str, int]] = []
    while True:
        attempt = dict(kwargs, exist_ok=True)
        if last.is_file():
            attempt.update(model=str(last), resume=True)
            journal.append(run_dir, "resume", checkpoint=str(last), epochs_done=completed_epochs(run_dir))
        try:
            code = _run_child(attempt, python)
        except KeyboardInterrupt:
            journal.append(run_dir, "end", status="interrupted", restarts=restarts, epochs=completed_epochs(run_dir))
            raise
        cause = classify(code)
        epochs = completed_epochs(run_dir)
        if cause == "ok":
            journal.append(run_dir, "end", status="completed", restarts=restarts, epochs=epochs)
            return run_dir
        if cause == "killed":
            # SIGKILL from outside (OOM killer, a user) says nothing about the conv in flight.
            for stem in run_dir.glob("rdna1_breadcrumb*.slot"):
                crumbs.clear(stem.with_suffix(""))
        history.append((cause, epochs))
        journal.append(run_dir, "restart", cause=cause, returncode=code, epochs=epochs, restart=restarts + 1)
        same = [h for h in history if h == (cause, epochs)]
        if len(same) >= policy.same_failure_limit:
            journal.append(run_dir, "end", status="gave_up", reason="same failure without progress", cause=cause)
            raise SupervisorError(
                f"training ended with '{cause}' {len(same)} times at {epochs} completed epochs without progress; "
                f"giving up. See {run_dir / 'rdna1_watchdog.log'} and {run_dir / journal.JOURNAL_FILE}; "
                "'yolo-rdna1 verdicts list bad=True' shows what was attributed"
            )
        if restarts >= policy.max_restarts:
            journal.append(run_dir, "end", status="gave_up", reason="max_restarts", cause=cause)
            raise SupervisorError(f"training failed {restarts + 1} times (last cause '{cause}'); max_restarts={policy.max_restarts} reached")
        restarts += 1
        delay = policy.delay(restarts)
        LOGGER.warning("yolo_rdna1 supervisor: training ended with '%s' (exit %s); restart %d of %d in %.0f s", cause, code, restarts, policy.max_restarts, delay)
        sleep(delay)


def _run_child(kwargs: dict[str, Any], python: str) -> int:
    """One training process; Ctrl-C is passed on to it, then re-raised."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(kwargs, f)
        spec = f.name
    proc = subprocess.Popen([python, "-m", "yolo_rdna1.supervision.child", spec])
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        Path(spec).unlink(missing_ok=True)
