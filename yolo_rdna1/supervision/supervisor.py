"""The supervisor: runs training in a child process and brings it back after a crash or a hang.

``yolo_rdna1.train(..., supervise=True)`` and ``yolo-rdna1 train supervise=True ...``. The loop is
the one torch.distributed.run's elastic agent has (``--max-restarts``: run, watch the exit,
restart with a bound), with what a single GPU run needs on top:

* the cause of every abnormal end is classified (signal, watchdog stall, error) and journaled;
* the conv in flight is attributed by the child's next start (its breadcrumb), so it is bypassed;
* a restart resumes from the newest readable checkpoint of the same run dir: the end-of-epoch
  ``last.pt`` or a mid-epoch ``mid.pt``/``mid.prev.pt``, whichever is further along;
* restarts back off exponentially, and the supervisor gives up with a summary when the same
  failure repeats without progress (no checkpoint further along in between);
* a child that stops on bad input (a checkpoint of another model or dataset) is not restarted:
  its message ends the supervisor;
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

from .. import runfiles
from ..verdicts import breadcrumb as crumbs
from . import checkpoint, journal
from .watchdog import STALL_EXIT_CODE
from ..errors import Rdna1Error

LOGGER = logging.getLogger("yolo_rdna1")


class SupervisorError(Rdna1Error):
    """The supervisor gave up; the message summarises why and what was tried."""


class SupervisorGaveUp(SupervisorError):
    """Training kept failing (not bad input): restarts ran out or brought no progress."""

    exit_code = 1


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 10
    backoff_s: float = 10.0
    backoff_max_s: float = 600.0
    same_failure_limit: int = 3

    def delay(self, restart: int) -> float:
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, restart - 1))


def classify(returncode: int) -> str:
    """Why a training child ended: ``ok``, ``hang``, ``abort``, ``killed``, ``signal:NAME``, ``bad_input`` or ``error``."""
    if returncode == 0:
        return "ok"
    if returncode == STALL_EXIT_CODE:
        return "hang"
    if returncode == checkpoint.BAD_INPUT_EXIT_CODE:
        return "bad_input"
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
    csv = run_dir / runfiles.RESULTS_CSV
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
    weights = run_dir / runfiles.WEIGHTS
    resuming = bool(kwargs.pop("resume", False))
    held = [p.name for p in (weights / checkpoint.LAST_NAME, weights / checkpoint.MID_NAME, weights / checkpoint.PREV_NAME) if p.is_file()]
    if held and not resuming:
        raise SupervisorError(f"{run_dir} already holds a run (weights/{', '.join(held)}); pass resume=True to continue it, or another name=")
    try:
        point = checkpoint.resume_point(run_dir) if resuming else None
        if point is not None:
            checkpoint.check_model_arg(kwargs.get("model"), point)
    except checkpoint.ResumeError as e:
        raise SupervisorError(str(e)) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    journal.append(run_dir, "start", supervised=True, resume=resuming, pid=os.getpid())

    restarts = 0
    history: list[tuple[str, checkpoint.Position | None]] = []
    while True:
        attempt = dict(kwargs, exist_ok=True)
        if point is not None and point.finished:  # killed after the last epoch was saved, in the final validation
            journal.append(run_dir, "end", status="completed", restarts=restarts, epochs=completed_epochs(run_dir), note="final validation cut short")
            return run_dir
        if point is not None:
            attempt.update(model=str(point.path), resume=True)
            journal.append(run_dir, "resume", checkpoint=str(point.path), epoch=point.position.epoch, batch=point.position.batch, epochs_done=completed_epochs(run_dir))
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
        if cause == "bad_input":
            message = next((e.get("message") for e in reversed(list(journal.read(run_dir))) if e["event"] == "bad_input"), None)
            journal.append(run_dir, "end", status="bad_input", restarts=restarts, epochs=epochs)
            raise SupervisorError(message or f"training stopped on bad input (exit {code}); see its output above")
        if cause == "killed":
            # SIGKILL from outside (OOM killer, a user) says nothing about the conv in flight.
            for stem in run_dir.glob(f"{runfiles.BREADCRUMB}*.slot"):
                crumbs.clear(stem.with_suffix(""))
        try:
            point = checkpoint.newest(weights)  # the next attempt's resume point, and the progress measure
        except checkpoint.ResumeError as e:
            journal.append(run_dir, "end", status="bad_input", restarts=restarts, epochs=epochs)
            raise SupervisorError(str(e)) from None
        progress = point.position if point is not None else None
        history.append((cause, progress))
        journal.append(run_dir, "restart", cause=cause, returncode=code, epochs=epochs, restart=restarts + 1)
        same = [h for h in history if h == (cause, progress)]
        if len(same) >= policy.same_failure_limit:
            journal.append(run_dir, "end", status="gave_up", reason="same failure without progress", cause=cause)
            raise SupervisorGaveUp(
                f"training ended with '{cause}' {len(same)} times at {epochs} completed epochs without progress; "
                f"giving up. See {run_dir / runfiles.WATCHDOG_LOG} and {run_dir / journal.JOURNAL_FILE}; "
                "'yolo-rdna1 verdicts list bad=True' shows what was attributed"
            )
        if restarts >= policy.max_restarts:
            journal.append(run_dir, "end", status="gave_up", reason="max_restarts", cause=cause)
            raise SupervisorGaveUp(f"training failed {restarts + 1} times (last cause '{cause}'); max_restarts={policy.max_restarts} reached")
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
