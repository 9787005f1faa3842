"""The supervisor: runs training in a child process and brings it back after a crash or a hang.

``yolo_rdna1.train(..., supervise=True)`` and ``yolo-rdna1 train supervise=True ...``. The loop is
the one torch.distributed.run's elastic agent has (``--max-restarts``: run, watch the exit,
restart with a bound), with what a single GPU run needs on top:

* the cause of every abnormal end is classified (signal, watchdog stall, error) and journaled;
* the conv in flight is attributed by the child's next start (its breadcrumb), so it is bypassed;
* a restart resumes from the newest readable checkpoint of the same run dir: the end-of-epoch
  ``last.pt`` or a mid-epoch ``mid.pt``/``mid.prev.pt``, whichever is further along;
* a restart waits ``backoff_s``; the wait doubles only over restarts in a row that made no
  progress (no checkpoint further along than at the restart before), and ``max_restarts`` bounds
  those, not the restarts of the whole run: a ten-day run that crashes every few hours and
  resumes further along each time is restarted after ``backoff_s`` every time, for as long as
  it takes. ``max_restarts_per_hour`` spaces out a storm of crashes (it waits, never gives up);
* the supervisor gives up with a summary when the same failure repeats without progress (the
  same cause, at the same checkpoint, with the same conv in flight or none: a crash in another
  conv is progress of the attribution, each such conv being bypassed from the next start), or
  after ``max_restarts`` restarts in a row without progress;
* a child that stops on bad input (a checkpoint of another model or dataset) is not restarted:
  its message ends the supervisor;
* SIGINT (Ctrl-C) and SIGTERM are passed on to the child, and a SIGHUP (the terminal closed) as
  a SIGTERM; the child gets ``stop_grace_s`` to end before it is killed; the journal gets an
  ``end`` with the signal, and the run is left for ``resume=True``. SIGINT then raises
  ``KeyboardInterrupt`` (exit code 130 when uncaught), and SIGTERM and SIGHUP end the process by
  the same signal (exit codes 143 and 129), as they would have without a supervisor;
* a supervisor that dies without passing anything on (SIGKILL) takes the training with it: the
  child watches its parent and stops itself (:mod:`yolo_rdna1.supervision.child`), so a later
  ``resume=True`` never finds a trainer still running in the folder.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import runfiles
from ..errors import Rdna1Error
from ..files import atomic_write
from ..verdicts import breadcrumb as crumbs
from . import checkpoint, journal
from .watchdog import STALL_EXIT_CODE

LOGGER = logging.getLogger("yolo_rdna1")


class SupervisorError(Rdna1Error):
    """The supervisor gave up; the message summarises why and what was tried."""


class SupervisorGaveUp(SupervisorError):
    """Training kept failing (not bad input): restarts ran out or brought no progress."""

    exit_code = 1


@dataclass(frozen=True)
class RestartPolicy:
    """When a training that ended abnormally is restarted, and when the supervisor gives up.

    A restart *made progress* when the newest checkpoint is further along (epoch, then batch)
    than the newest one at the restart before (or at the start of supervision).
    """

    #: Restarts in a row without progress before giving up; a restart with progress resets it.
    max_restarts: int = 10
    #: Wait before a restart that made progress, and before the first one in a row without.
    backoff_s: float = 10.0
    backoff_max_s: float = 600.0
    #: Give up when the same cause ends the run this often at the same checkpoint.
    same_failure_limit: int = 3
    #: At most this many restarts in any hour: more wait until the hour allows one (None: no limit).
    max_restarts_per_hour: int | None = 12
    #: Seconds the child gets to end after a forwarded SIGINT/SIGTERM before it is killed.
    stop_grace_s: float = 60.0

    def delay(self, stalled: int) -> float:
        """The wait before a restart; ``stalled``: restarts in a row without progress, this one
        included (0 when it made progress). ``backoff_s``, then doubling up to ``backoff_max_s``."""
        # 2**64 outgrows any backoff_max_s over backoff_s; a larger power overflows a float
        return min(self.backoff_max_s, self.backoff_s * 2 ** min(64, max(0, stalled - 1)))

    def brake(self, restarts_at: list[float], now: float) -> float:
        """The wait that keeps ``max_restarts_per_hour`` (``restarts_at``: earlier restarts' clock times)."""
        limit = self.max_restarts_per_hour
        recent = [t for t in restarts_at if now - t < 3600.0]
        if not limit or len(recent) < limit:
            return 0.0
        return recent[-limit] + 3600.0 - now


def classify(returncode: int) -> str:
    """Why a training child ended: ``ok``, ``hang``, ``abort``, ``killed``, ``signal:NAME``, ``bad_input`` or
    ``error``."""
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


#: The training arguments of the child, in the run dir while it runs (removed after it ends).
SPEC_FILE = runfiles.CHILD_SPEC


class _Stop(BaseException):
    """SIGINT, SIGTERM or SIGHUP reached the supervisor (raised only while it waits)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Stops:
    """SIGINT, SIGTERM and SIGHUP while supervising: the child is stopped first, then the supervisor.

    The handlers raise :class:`_Stop` only while the supervisor waits (for the child, or before a
    restart), and once per wait: raising disarms them, so a further signal cannot cut the
    handling of the first short (the kill of a child that ignores it). A signal that comes
    between is kept and raised at the next wait, so no journal write or checkpoint move is cut
    in half. Installed only over Python's default handlers, and only in the main thread (where
    signals are delivered); a handler of the host program is left in charge.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.armed = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stops:
        if threading.current_thread() is threading.main_thread():
            for sig, default in _HANDLED:
                if signal.getsignal(sig) is default:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        if self.armed:
            self.armed = False
            raise _Stop(signum)

    def check(self) -> None:
        """Raise the signal that came while the supervisor was busy, if one did."""
        if self.signum is not None:
            raise _Stop(self.signum)

    @contextmanager
    def waiting(self, check: bool = True) -> Iterator[None]:
        """Within, a signal raises :class:`_Stop` (one kept from before first, unless ``check`` is off)."""
        if check:
            self.check()
        self.armed = True
        try:
            yield
        finally:
            self.armed = False


#: The signals the supervisor stops on, each with the Python default it is installed over.
_HANDLED = tuple(
    (getattr(signal, name), default)
    for name, default in (
        ("SIGINT", signal.default_int_handler),
        ("SIGTERM", signal.SIG_DFL),
        ("SIGHUP", signal.SIG_DFL),
    )
    if hasattr(signal, name)  # no SIGHUP on Windows
)


def plain_args(train_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The training arguments as the child's JSON spec carries them: path-like values (also inside
    lists and dicts) become strings. Anything else JSON cannot carry (a model object, a callback)
    is a :class:`SupervisorError` naming the argument, raised before anything is journaled."""

    def plain(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError(type(value).__name__)

    out = {}
    for key, value in train_kwargs.items():
        try:
            out[key] = json.loads(json.dumps(value, default=plain))
        except (TypeError, ValueError) as e:
            raise SupervisorError(
                f"{key}={value!r} cannot be passed to the supervised training process ({e}): it takes paths, "
                "strings, numbers, booleans, None, and lists and dicts of those"
            ) from None
    return out


def supervise(
    train_kwargs: dict[str, Any],
    policy: RestartPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    python: str = sys.executable,
    clock: Callable[[], float] = time.monotonic,
    attempt: Callable[[dict[str, Any]], int] | None = None,
) -> Path:
    """Train under supervision; returns the run dir, raises :class:`SupervisorError` on giving up.

    ``sleep`` and ``clock`` (seconds) time the waits before restarts; ``attempt`` runs one
    training with the given arguments and returns its exit status as ``Popen.returncode`` does
    (default: a child process of ``python``). Tests replace them to play long runs in moments.
    """
    policy = policy or RestartPolicy()
    kwargs = plain_args(train_kwargs)
    kwargs.setdefault("project", str(Path("runs") / "rdna1"))
    kwargs.setdefault("name", "train")
    run_dir = Path(kwargs["project"]).resolve() / str(kwargs["name"])
    kwargs["project"] = str(Path(kwargs["project"]).resolve())
    weights = run_dir / runfiles.WEIGHTS
    resuming = bool(kwargs.pop("resume", False))
    held = [
        p.name
        for p in (weights / checkpoint.LAST_NAME, weights / checkpoint.MID_NAME, weights / checkpoint.PREV_NAME)
        if p.is_file()
    ]
    if held and not resuming:
        raise SupervisorError(
            f"{run_dir} already holds a run (weights/{', '.join(held)}); "
            "pass resume=True to continue it, or another name="
        )
    try:
        point = checkpoint.resume_point(run_dir) if resuming else None
        if point is not None:
            checkpoint.check_model_arg(kwargs.get("model"), point)
    except checkpoint.ResumeError as e:
        raise SupervisorError(str(e)) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    journal.append(run_dir, "start", supervised=True, resume=resuming, pid=os.getpid())

    stops = _Stops()
    spec = run_dir / SPEC_FILE
    run_attempt = attempt or (lambda args: _run_child(args, python, spec, stops, policy.stop_grace_s))
    state = _Restarts(point.position if point is not None else None)
    with stops:
        try:
            return _loop(kwargs, run_dir, point, policy, sleep, clock, run_attempt, stops, state)
        except (_Stop, KeyboardInterrupt) as e:
            signum = e.signum if isinstance(e, _Stop) else signal.SIGINT
            clear_breadcrumbs(run_dir)  # the conv in flight was stopped, not faulty
            journal.append(
                run_dir,
                "end",
                status="interrupted",
                cause=signal.Signals(signum).name,
                restarts=state.restarts,
                epochs=completed_epochs(run_dir),
            )
    # the handlers are back: end the way the signal would have ended this process
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    os.kill(os.getpid(), signum)
    raise SupervisorError(f"stopped by {signal.Signals(signum).name}; resume=True continues the run in {run_dir}")


@dataclass
class _Restarts:
    """What the restart decisions remember: the progress reference and the recent restarts."""

    reference: checkpoint.Position | None  # the newest checkpoint position at the last restart
    restarts: int = 0
    stalled: int = 0  # restarts in a row without progress
    at: list[float] = field(default_factory=list)  # clock times of the restarts
    #: (cause, newest checkpoint position, conv left in flight) of each abnormal end
    history: list[tuple[str, checkpoint.Position | None, tuple[str, ...]]] = field(default_factory=list)


def _loop(
    kwargs: dict[str, Any],
    run_dir: Path,
    point: checkpoint.Found | None,
    policy: RestartPolicy,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    attempt: Callable[[dict[str, Any]], int],
    stops: _Stops,
    state: _Restarts,
) -> Path:
    """Run, watch the exit, restart or give up: the supervisor's loop (see :func:`supervise`)."""
    weights = run_dir / "weights"
    while True:
        args = dict(kwargs, exist_ok=True)
        if point is not None and point.finished:  # killed after the last epoch was saved, in the final validation
            journal.append(
                run_dir,
                "end",
                status="completed",
                restarts=state.restarts,
                epochs=completed_epochs(run_dir),
                note="final validation cut short",
            )
            return run_dir
        if point is not None:
            args.update(model=str(point.path), resume=True)
            journal.append(
                run_dir,
                "resume",
                checkpoint=str(point.path),
                epoch=point.position.epoch,
                batch=point.position.batch,
                epochs_done=completed_epochs(run_dir),
            )
        stops.check()
        code = attempt(args)
        cause = classify(code)
        epochs = completed_epochs(run_dir)
        if cause == "ok":
            journal.append(run_dir, "end", status="completed", restarts=state.restarts, epochs=epochs)
            return run_dir
        if cause == "bad_input":
            message = next(
                (e.get("message") for e in reversed(list(journal.read(run_dir))) if e["event"] == "bad_input"), None
            )
            journal.append(run_dir, "end", status="bad_input", restarts=state.restarts, epochs=epochs)
            raise SupervisorError(
                str(message) if message else f"training stopped on bad input (exit {code}); see its output above"
            )
        if cause == "killed":
            clear_breadcrumbs(
                run_dir
            )  # SIGKILL from outside (OOM killer, a user) says nothing about the conv in flight
        blamed = in_flight(run_dir)  # what the next start attributes and bypasses
        try:
            point = checkpoint.newest(weights)  # the next attempt's resume point, and the progress measure
        except checkpoint.ResumeError as e:
            status = "environment" if isinstance(e, checkpoint.CheckpointUnloadable) else "bad_input"
            journal.append(run_dir, "end", status=status, restarts=state.restarts, epochs=epochs)
            raise SupervisorError(str(e)) from None
        position = point.position if point is not None else None
        progressed = position is not None and (state.reference is None or position > state.reference)
        if progressed:
            state.reference, state.stalled = position, 0
        else:
            state.stalled += 1
        failure = (cause, position, blamed)  # another conv in flight is another failure: it gets bypassed
        state.history.append(failure)
        same = state.history.count(failure)
        if same >= policy.same_failure_limit:
            conv = f" with {', '.join(blamed)} in flight" if blamed else ""
            why = (
                f"training ended with '{cause}' {same} times at {epochs} completed epochs without progress{conv}; "
                f"giving up. See {run_dir / runfiles.WATCHDOG_LOG} and {run_dir / journal.JOURNAL_FILE}; "
                "'yolo-rdna1 verdicts list bad=True' shows what was attributed"
            )
            reason = "same failure without progress"
        elif state.stalled > policy.max_restarts:
            why = (
                f"training ended with '{cause}' and {state.stalled} restarts in a row made no progress (no checkpoint "
                f"further along); max_restarts={policy.max_restarts} reached. See {run_dir / journal.JOURNAL_FILE}"
            )
            reason = "max_restarts without progress"
        else:
            why = reason = ""
        wait = 0.0 if why else max(policy.delay(state.stalled), policy.brake(state.at, clock()))
        journal.append(
            run_dir,
            "restart",
            cause=cause,
            returncode=code,
            epochs=epochs,
            restart=state.restarts + 1,
            progress=progressed,
            **({"in_flight": list(blamed)} if blamed else {}),
            **({} if why else {"wait_s": wait}),
        )
        if why:
            journal.append(
                run_dir, "end", status="gave_up", reason=reason, cause=cause, restarts=state.restarts, epochs=epochs
            )
            raise SupervisorGaveUp(why)
        state.restarts += 1
        LOGGER.warning(
            "yolo_rdna1 supervisor: training ended with '%s' (exit %s), %s; restart %d in %.0f s",
            cause,
            code,
            "after progress"
            if progressed
            else f"{state.stalled} in a row without progress (at most {policy.max_restarts})",
            state.restarts,
            wait,
        )
        with stops.waiting():
            sleep(wait)
        state.at.append(clock())


def _trails(run_dir: Path) -> list[Path]:
    """The breadcrumb stems of the run's processes (one per DDP rank)."""
    return sorted(slot.with_suffix("") for slot in run_dir.glob(f"{runfiles.BREADCRUMB}*.slot"))


def clear_breadcrumbs(run_dir: str | os.PathLike) -> None:
    """Forget the convs in flight: the process was stopped from outside, they did not fail."""
    for stem in _trails(Path(run_dir)):
        crumbs.clear(stem)


def in_flight(run_dir: Path) -> tuple[str, ...]:
    """The signature keys the dead training left in flight (its next start blames them), sorted; () if none."""
    found = (crumbs.in_flight(stem) for stem in _trails(run_dir))
    return tuple(sorted({f[0] for f in found if f is not None}))


def _run_child(kwargs: dict[str, Any], python: str, spec: Path, stops: _Stops, grace: float) -> int:
    """One training process; a SIGINT/SIGTERM/SIGHUP of the supervisor is passed on to it (see :class:`_Stops`).

    The child has a session of its own, so a Ctrl-C in the terminal reaches it once, through
    the supervisor; it gets the supervisor's pid, and ends when that process is gone. The spec
    file is removed on every way out.
    """
    try:
        atomic_write(spec, json.dumps(kwargs))
        proc = subprocess.Popen(
            [python, "-m", "yolo_rdna1.supervision.child", "--parent", str(os.getpid()), str(spec)],
            start_new_session=True,
        )
        try:
            with stops.waiting():
                return proc.wait()
        except (_Stop, KeyboardInterrupt) as e:
            _stop_child(proc, e.signum if isinstance(e, _Stop) else signal.SIGINT, grace, stops)
            raise
    finally:
        spec.unlink(missing_ok=True)


def _stop_child(proc: subprocess.Popen, signum: int, grace: float, stops: _Stops) -> None:
    """Pass the signal on (a hangup as SIGTERM: the child has no terminal) and wait ``grace``
    seconds; a child still there (a hung conv ignores signals), or a second signal meanwhile,
    gets SIGKILL. The second signal disarms the handlers, so a third cannot skip the kill."""
    proc.send_signal(signal.SIGTERM if signum == getattr(signal, "SIGHUP", None) else signum)
    try:
        with stops.waiting(check=False):
            proc.wait(timeout=grace)
    except (_Stop, KeyboardInterrupt, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
