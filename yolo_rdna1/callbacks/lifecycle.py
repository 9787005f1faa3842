"""Guarded ``val``, ``predict`` (also streamed, and ``track``) and ``export``: the training's guard
policy, verdicts and fault simulation around Ultralytics' inference-side calls.

Two layers, because Ultralytics' events come too late and not always:

* **Model scope.** The events fire after Ultralytics' own first forward passes: a standalone
  validator warms its model up on a GPU before ``on_val_start``, the exporter counts FLOPs in
  ``fuse()`` and runs a dry pass before ``on_export_start`` (8.3's predictor warms up before
  ``on_predict_start`` too), and no event fires when one of these calls raises or a predict
  stream is abandoned. So :func:`install_model_scope` wraps ``Model.val``, ``Model.predict``
  (which ``track`` and ``__call__`` go through) and ``Model.export`` once, at class level. The
  wrapper does nothing for a model without the plugin's callbacks; for one with them the guard
  is on from the first line of the call to its last, also when it raises. A ``stream=True``
  generator holds the guard only while it computes (between two ``next()`` calls it is off, so
  an abandoned stream leaves nothing on) and ends the call when it is exhausted, closed or
  collected after its first ``next()``. A stream never started computes nothing and ends no
  call: Python never runs a generator's body, nor its ``finally``, before the first ``next()``,
  so it gives no summary (its guard is already off).
* **Events.** ``on_predict_start``/``on_val_start``/``on_export_start`` of an engine built by
  hand with the plugin's callbacks (no ``Model``) start the guard from the event on; a predict
  stream holds it per batch (``on_predict_batch_start`` to ``on_predict_batch_end``). Such an
  engine's pre-event warmup is not guarded, and after an error (no end event) its guard stays
  on until the next val/predict/export call of the process starts, which ends the stale call
  first: use a ``YOLO`` model where that matters.

A validation inside a guarded training (every epoch's, and ``final_eval``'s) is the training's:
nothing here acts while a training run is active.

The calls of one process with the same options on the same device share one *session*
(:class:`_Session`): the verdict store, the route table (``unknown=probe`` probes new signatures
in the background, as in training), the routes the guard resolved and the crash trail are set up
once, so ``model.predict(frame)`` in a loop costs the guard's bookkeeping, not a setup per frame.
The crash trail lives in the verdict cache (``inflight/pid<N>@<host>``), never in a predict
folder; the next session of any process attributes what a dead one left in flight.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import logging
import os
import shutil
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..options import PluginOptions
from ..run.counters import signature_row
from ..runfiles import INFLIGHT, REPORT
from ..runfiles import SESSION as SESSION_FILE

LOGGER = logging.getLogger("yolo_rdna1")

KINDS = ("val", "predict", "export")


@dataclass
class CallSummary:
    """What the guard did in one val/predict/export call (``yolo_rdna1.callbacks.last_run()``).

    ``final_totals``: conv calls, bypassed calls and in-process fallbacks (val and predict count
    their batches, export every conv of the export); ``final_routes``: one row per signature that
    ran (routes per direction, algorithm, counts, ``verdict`` False where none existed);
    ``unknown``: the keys of signatures that ran without a verdict and took ``unknown_policy``.
    """

    kind: str
    policy: str
    device: str
    env_profile: str
    unknown_policy: str
    final_totals: dict[str, int]
    final_routes: list[dict]
    unknown: list[str]
    seconds: float
    written: float = field(default_factory=time.time)

    @property
    def summary(self) -> str:
        """One line: ``yolo_rdna1 val: 2112 conv calls, 640 bypassed (30.3%), 0 in-process fallbacks; guard auto``."""
        t = self.final_totals
        rate = t["bypassed"] / t["calls"] if t["calls"] else 0.0
        line = (
            f"yolo_rdna1 {self.kind}: {t['calls']} conv calls, {t['bypassed']} bypassed ({rate:.1%}), "
            f"{t['fallbacks']} in-process fallbacks; guard {self.policy}"
        )
        if self.unknown:
            line += f"; {len(self.unknown)} signature(s) without a verdict took unknown={self.unknown_policy}"
        return line

    def as_dict(self) -> dict[str, Any]:
        t = self.final_totals
        return {
            "kind": self.kind,
            "device": self.device,
            "env_profile": self.env_profile,
            "policy": self.policy,
            "unknown_policy": self.unknown_policy,
            **t,
            "bypass_rate": t["bypassed"] / t["calls"] if t["calls"] else 0.0,
            "seconds": self.seconds,
            "signatures": self.final_routes,
            "unknown": self.unknown,
            "written": self.written,
        }


def _process_tag() -> str:
    return f"pid{os.getpid()}@{socket.gethostname()}"


def _cache_root(options: PluginOptions) -> Path:
    from ..verdicts.store import default_cache_dir

    return Path(options.cache) if options.cache else default_cache_dir()


def _trail_root(options: PluginOptions) -> Path:
    """``<verdict cache>/inflight``, or one in the temp folder where the cache cannot be written
    (the verdict store then lives in memory; a read-only cache must not stop a predict)."""
    import tempfile

    root = _cache_root(options) / INFLIGHT
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK | os.X_OK):
            return root
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / "yolo_rdna1" / INFLIGHT
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _session_meta(path: Path) -> dict[str, str]:
    """A trail's ``session.json``: ``{"device": ..., "env_profile": ...}``; ``ValueError`` for any other content."""
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k), str) for k in ("device", "env_profile")):
        raise ValueError(f"{path.name} is not an object with the strings 'device' and 'env_profile'")
    return meta


def attribute_dead_sessions(options: PluginOptions) -> list[tuple[str, str]]:
    """Blame the conv that each dead val/predict/export process of this host left in flight.

    Each session writes its device key and env profile next to its breadcrumb; a process that
    hung or aborted in a vendor conv leaves the breadcrumb's slot set. Its signature gets a
    ``crash`` verdict (``abort``: nobody said it hung), so no later process runs it on the vendor
    library, and the trail is removed. Returns the (signature, cause) pairs it stored.
    """
    from ..files import pid_alive
    from ..run import breadcrumb_stem
    from ..verdicts import breadcrumb as crumbs
    from ..verdicts.store import Verdict, VerdictStore

    root = _trail_root(options)
    host = socket.gethostname()
    found: list[tuple[str, str]] = []
    for trail in sorted(root.glob(f"pid*@{host}")):
        pid_text = trail.name.split("@", 1)[0][3:]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        try:
            meta = _session_meta(trail / SESSION_FILE)
            hit = crumbs.in_flight(breadcrumb_stem(trail))
        except (OSError, ValueError) as e:  # the plugin's own scratch: removed below either way
            LOGGER.warning("yolo_rdna1: ignoring the unreadable crash trail %s (%s)", trail, e)
            hit = None
        if hit is not None:
            key, cause = hit
            store = VerdictStore(_cache_root(options) / "verdicts.sqlite")
            store.put(
                Verdict(
                    str(meta["device"]),
                    str(meta["env_profile"]),
                    key,
                    cause,
                    "in flight when a val/predict/export process died",
                    source="crash",
                )
            )
            found.append((key, cause))
            LOGGER.warning(
                "yolo_rdna1: a val/predict/export process died (%s) in %s; it takes the bypass from now on", cause, key
            )
        shutil.rmtree(trail, ignore_errors=True)
    return found


class _Session:
    """The guard of this process's val/predict/export calls with one set of options on one device."""

    def __init__(self, options: PluginOptions, device: Any) -> None:
        from ..guard import current
        from ..run import GuardedRun

        self.options = options
        self.device = device
        self.closed = False
        attribute_dead_sessions(options)  # before the route table reads the store
        self.trail = _trail_root(options) / _process_tag()
        # a call is no training: no sensors, thermal pauses, stall watchdog or mid-epoch checkpoints
        runtime = replace(
            options, telemetry=0.0, thermal=False, stall_timeout=0.0, checkpoint_minutes=0.0, serial_backward=False
        )
        self.run = GuardedRun(runtime, self.trail, device)
        before = current()
        try:
            self.run.start(None)  # enables its guard; the calls switch it on and off
            self.run.enter_training()  # signatures without a verdict get unknown= from the first call on
        finally:
            _restore(before)
        if self.trail.is_dir():  # a breadcrumb is kept (routing device): say whose it is
            from ..files import atomic_write

            atomic_write(
                self.trail / SESSION_FILE,
                json.dumps({"device": self.run.device_key, "env_profile": self.run.env_profile}),
            )

    @property
    def guard(self):
        return self.run.guard

    def close(self) -> None:
        """Record what failed in-process, drop the crash trail, leave whichever guard is on as it is."""
        from ..guard import current

        if self.closed:
            return
        self.closed = True
        active = current()
        try:
            self.run.finish()
        finally:
            if active is not None and active is not self.run.guard:
                _restore(active)
            shutil.rmtree(self.trail, ignore_errors=True)


def _restore(guard: Any) -> None:
    from ..guard import disable, enable

    if guard is None:
        disable()
    else:
        enable(guard)


class _Call:
    """One val/predict/export call: switches its session's guard on and off, counts what ran."""

    def __init__(self, kind: str, session: _Session, scoped: bool = False) -> None:
        self.kind = kind
        self.session = session
        #: True for a call of the Model scope (it ends the call itself, also when it raises); False
        #: for an event-owned one, which only its end event ends.
        self.scoped = scoped
        self.engine: Any = None  # the predictor, validator or exporter, once its start event names it
        self.active = False
        self._previous: Any = None
        self._calls: dict[str, list[int]] = {}
        self._fallbacks = 0
        self._t0 = time.perf_counter()

    def activate(self) -> None:
        """Route every conv of the process through this call's guard (until :meth:`deactivate`)."""
        global _ACTIVE
        from ..guard import current, enable

        if self.active:
            return
        if self.session.closed:  # a training or other options came in between (a suspended stream)
            self.session = _session_for(self.session.options, self.session.device)
        guard = self.session.guard
        self._previous = current()
        # Counts start from zero in each window where a call's guard is on; windows never overlap
        # (one call is active at a time), so a call that waits in between (a stream) loses nothing.
        guard.reset_counts()
        guard.counting = self.kind == "export"  # val and predict count their batches only
        enable(guard)
        self.active = True
        _ACTIVE = self

    def deactivate(self) -> None:
        """Put back the guard that was on before, and keep what this call ran."""
        global _ACTIVE
        if not self.active:
            return
        guard = self.session.guard
        guard.counting = False
        for r in guard.per_signature():
            self._fallbacks += r["fallbacks"]
            if r["calls"]:
                row = self._calls.setdefault(r["signature"], [0, 0])
                row[0] += r["calls"]
                row[1] += r["bypassed"]
        self.active = False
        if _ACTIVE is self:
            _ACTIVE = None
        _restore(self._previous)

    def counting(self, on: bool) -> None:
        if self.active:
            self.session.guard.counting = on

    def finish(self) -> CallSummary:
        from ..signature import ConvSignature

        self.deactivate()
        run = self.session.run
        run.record_runtime_failures()
        table = self.session.guard.route_table
        routes = {r["signature"]: r for r in self.session.guard.per_signature()}
        rows, unknown = [], []
        for key, (calls, bypassed) in sorted(self._calls.items()):
            known = table is None or table.lookup(ConvSignature.from_key(key)) is not None
            rows.append({**signature_row(key, calls, bypassed, routes.get(key, {})), "verdict": known})
            if not known:
                unknown.append(key)
        totals = {
            "calls": sum(r["calls"] for r in rows),
            "bypassed": sum(r["bypassed"] for r in rows),
            "fallbacks": self._fallbacks,
        }
        opts = self.session.options
        return CallSummary(
            self.kind,
            opts.guard,
            run.device_key,
            run.env_profile,
            opts.unknown,
            totals,
            rows,
            unknown,
            time.perf_counter() - self._t0,
        )


_LOCK = threading.Lock()
_SESSION: _Session | None = None
#: The call whose guard is on now (a suspended stream's call is not).
_ACTIVE: _Call | None = None
#: Event-owned calls by engine (predictor, validator, exporter built without a Model).
_EVENT_CALLS: weakref.WeakKeyDictionary[Any, _Call] = weakref.WeakKeyDictionary()
_LAST: CallSummary | None = None


def _session_for(options: PluginOptions, device: Any) -> _Session:
    """This process's session for these options and device (a new one replaces another)."""
    global _SESSION
    from ..device import parse_device

    device = parse_device(device)
    with _LOCK:
        if _SESSION is not None and not _SESSION.closed and _SESSION.options == options and _SESSION.device == device:
            return _SESSION
        if _SESSION is not None:
            _SESSION.close()
        _SESSION = _Session(options, device)
        return _SESSION


def close_session() -> None:
    """End this process's session (at exit, and before a guarded training sets up its own guard)."""
    global _SESSION
    with _LOCK:
        if _SESSION is not None:
            _SESSION.close()
            _SESSION = None


atexit.register(close_session)


def last_call() -> CallSummary | None:
    """The last val/predict/export call that ended in this process."""
    return _LAST


def forget_last_call() -> None:
    """A training ended after it: ``last_run()`` is the training again."""
    global _LAST
    _LAST = None


def _training_active() -> bool:
    from .rdna1 import current_run

    return current_run() is not None


def _begin(kind: str, options: PluginOptions, device: Any, scoped: bool = False) -> _Call:
    return _Call(kind, _session_for(options, device), scoped)


def _running(engine: Any) -> bool:
    """Whether ``engine`` is executing on this thread (one of its methods is on the stack)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_locals.get("self") is engine:
            return True
        frame = frame.f_back
    return False


def _end_stale_call(starting: Any = None) -> None:
    """End the active event-owned call if its engine raised or was dropped before its end event.

    Such a call would keep its guard on for the rest of the process, and a new call would run on
    it. Its engine is no longer executing when another call starts (an engine that starts a call
    from inside its own keeps its call), or it is the engine ``starting`` a new call (one start
    event per call). The stale call's summary is logged as any call's.
    """
    call = _ACTIVE
    if call is None or call.scoped:
        return
    if call.engine is not None and call.engine is not starting and _running(call.engine):
        return
    if call.engine is not None:
        _EVENT_CALLS.pop(call.engine, None)
    LOGGER.warning(
        "yolo_rdna1: a %s ended without its end event (it raised or was dropped): its guard goes off now", call.kind
    )
    _end(call)


def _end(call: _Call, output: Any = None) -> CallSummary:
    """Finish a call: its summary becomes ``last_run()``, is logged, and (``report=True``) written."""
    global _LAST
    summary = call.finish()
    _LAST = summary
    LOGGER.info(summary.summary)
    if call.session.options.report:
        folder = _output_folder(call, output)
        if folder is not None:
            from ..files import atomic_write

            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / REPORT, json.dumps(summary.as_dict(), indent=1))
    return summary


def _output_folder(call: _Call, output: Any) -> Path | None:
    """Where a call's report goes: the val/predict folder Ultralytics chose, or the export's folder."""
    if call.kind == "export":
        target = output or getattr(call.engine, "file", None)
        return Path(str(target)).parent if target else None
    folder = getattr(call.engine, "save_dir", None)
    return Path(folder) if folder else None


# -- events (engines with the plugin's callbacks) ---------------------------------------------------
def event_start(kind: str, engine: Any, options: PluginOptions | None) -> None:
    """``on_<kind>_start``: join the Model scope's call, or start an event-owned one."""
    if _training_active():
        return
    _end_stale_call(engine)
    if _ACTIVE is not None:  # the Model scope's call, or an engine started inside a running one
        if _ACTIVE.scoped:
            _ACTIVE.engine = engine
        return
    if options is None or options.guard == "off":
        return
    earlier = _EVENT_CALLS.pop(engine, None)  # this engine's last call never saw its end event
    if earlier is not None:
        _end(earlier)
    from ..device import parse_device

    try:
        device = parse_device(getattr(engine, "device", None))
    except ValueError as e:  # a device this plugin cannot name (npu, xpu, ...): nothing to guard there
        LOGGER.warning("yolo_rdna1: %s is not guarded (%s)", kind, e)
        return
    call = _begin(kind, options, device)
    call.engine = engine
    _EVENT_CALLS[engine] = call
    if kind != "predict":  # a predict stream holds the guard per batch
        call.activate()


def event_batch(engine: Any, start: bool) -> None:
    """``on_val_batch_*``/``on_predict_batch_*``: count the batch; an event-owned stream holds the guard per batch."""
    call = _EVENT_CALLS.get(engine)
    if call is not None and call.kind == "predict":
        if start:
            call.activate()
            call.counting(True)
        else:
            call.deactivate()
        return
    call = call or _ACTIVE
    if call is not None:
        call.counting(start)


def event_end(kind: str, engine: Any) -> None:
    """``on_<kind>_end``: finish an event-owned call (the Model scope finishes its own)."""
    call = _EVENT_CALLS.pop(engine, None)
    if call is not None:
        _end(call)


# -- the Model scope ------------------------------------------------------------------------------
def _call_device(model: Any, kind: str, kwargs: dict[str, Any]) -> Any:
    """The device the call will run on, as Ultralytics picks it (export: the CPU unless told);
    ``ValueError`` for one this plugin cannot name."""
    from ..device import parse_device

    if kind == "export":
        return parse_device(_picked(kwargs.get("device") or "cpu"))
    device = kwargs.get("device")
    if device is None:
        device = (getattr(model, "overrides", None) or {}).get("device")
    return parse_device(_picked(device))


def _picked(device: Any) -> Any:
    """``device`` with Ultralytics' ``-1`` ("an idle GPU") resolved as the plugin can.

    Ultralytics asks NVML for the idlest GPU and takes its default device (the current CUDA
    device, else the CPU) where none answers, as on AMD cards. The plugin takes that default; on
    a host with several CUDA devices it says so, since Ultralytics may pick another card there
    (``device=<index>`` names it). ``-1,0``-style lists keep the first named index.
    """
    items = device if isinstance(device, (list, tuple)) else str(device).lower().replace("cuda:", "").split(",")
    tokens = [str(t).strip(" []()'") for t in items]
    if "-1" not in tokens:
        return device
    if tokens[0] != "-1":
        return ",".join(t for t in tokens if t not in ("-1", ""))
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        LOGGER.warning(
            "yolo_rdna1: device=%s lets Ultralytics pick an idle GPU; the guard uses the verdicts of the current "
            "device (cuda:%d). Pass device=<index> to name the card",
            device,
            torch.cuda.current_device(),
        )
    return None


def _scoped(kind: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        from .rdna1 import plugin_options

        options = plugin_options(self)
        if not _training_active():
            _end_stale_call()
        if options is None or options.guard == "off" or _ACTIVE is not None or _training_active():
            return method(self, *args, **kwargs)
        try:
            device = _call_device(self, kind, kwargs)
        except ValueError as e:  # npu, xpu or a typo: Ultralytics runs it or says what is wrong with it
            LOGGER.warning("yolo_rdna1: %s is not guarded (%s)", kind, e)
            return method(self, *args, **kwargs)
        call = _begin(kind, options, device, scoped=True)
        call.activate()
        try:
            out = method(self, *args, **kwargs)
        except BaseException:
            _end(call)
            raise
        if inspect.isgenerator(out):
            call.deactivate()  # the caller holds the stream: the guard is on only while it computes
            return _stream(out, call)
        _end(call, out)
        return out

    guarded_call.__yolo_rdna1_scope__ = method  # type: ignore[attr-defined]
    return guarded_call


def _stream(results: Iterator[Any], call: _Call) -> Iterator[Any]:
    """A predict stream that switches the guard on for each step and ends the call with the stream.

    The call ends when the stream is exhausted, or closed or collected after its first step. A
    stream closed or collected before its first ``next()`` never runs this body (Python skips a
    generator's ``finally`` then): its call gives no summary, and Ultralytics' generator is left
    to be collected. Its guard is off already (the scope deactivated it before returning).
    """
    try:
        while True:
            call.activate()
            try:
                item = next(results)
            except StopIteration:
                return
            finally:
                call.deactivate()
            yield item
    finally:
        try:
            results.close()  # Ultralytics' own cleanup (video writers, stream threads); no convs
        finally:
            _end(call)


TUNE_WARNING = (
    "yolo_rdna1: model.tune() trains every iteration in a new process that never loads the plugin (Ultralytics' Tuner "
    "runs 'yolo train'; Ray Tune's workers drop the callbacks): those trainings are NOT guarded. Search with "
    "yolo_rdna1.train(..., supervise=True) in a loop instead (README, 'Tuning and other processes')"
)


def _warned_tune(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def tune(self: Any, *args: Any, **kwargs: Any) -> Any:
        from .rdna1 import plugin_options

        options = plugin_options(self)
        if options is not None and options.guard != "off":
            LOGGER.warning(TUNE_WARNING)
        return method(self, *args, **kwargs)

    tune.__yolo_rdna1_scope__ = method  # type: ignore[attr-defined]
    return tune


def _ended_train(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def train(self: Any, *args: Any, **kwargs: Any) -> Any:
        from . import rdna1

        before = rdna1.current_run()
        try:
            return method(self, *args, **kwargs)
        finally:
            # Ultralytics 8.4 starts the run in the trainer's constructor (on_pretrain_routine_start),
            # before the dataset check and outside train()'s teardown: a trainer that failed to build
            # leaves its run on. A run this call started is over when the call is.
            if rdna1.current_run() not in (None, before):
                try:
                    rdna1.end_run()
                except Exception as e:  # the guard is off whatever failed; the trainer's error is the one to see
                    LOGGER.warning("yolo_rdna1: ending the run of a trainer that failed to build failed too (%r)", e)

    train.__yolo_rdna1_scope__ = method  # type: ignore[attr-defined]
    return train


def install_model_scope() -> None:
    """Wrap ``Model.val``, ``Model.predict`` and ``Model.export`` once per process (idempotent),
    make ``Model.train`` end a run its trainer left on when it failed to build, and make
    ``Model.tune`` say that the trainings it starts in new processes are unguarded."""
    from ultralytics.engine.model import Model

    wrappers = {"tune": _warned_tune, "train": _ended_train}
    for kind in (*KINDS, "tune", "train"):
        method = getattr(Model, kind)
        if not hasattr(method, "__yolo_rdna1_scope__"):
            setattr(Model, kind, wrappers[kind](method) if kind in wrappers else _scoped(kind, method))
