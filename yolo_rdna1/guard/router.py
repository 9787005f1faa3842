"""The router every guarded conv call goes through: signature -> route -> vendor | bypass.

The hot path (:meth:`ConvGuard.conv2d`) is a weak-dict lookup of the module, a tuple of the
input's shape, dtype, autocast dtype and memory format, a dict lookup of that tuple, two counter
increments and, for a plain vendor route, a call of the original ``nn.Conv2d`` code. Everything
else (building the :class:`ConvSignature`, asking the route table, matching fault rules, picking
a bypass algorithm) happens once per module and shape in :meth:`ConvGuard._resolve`.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._compat import any_autocast_enabled, autocast_dtype, is_compiling
from ..bypass import ConvParams, algorithm_for
from ..errors import Rdna1Error
from ..faults import FaultProfile, load_profile, profile_from_env
from ..route import Route, RouteFunction, RouteTable
from ..signature import DIRECTIONS, ConvSignature, dtype_name
from ..verdicts.breadcrumb import Breadcrumb
from .routes import BYPASS, VENDOR, PlannedConv, RoutedConv, SignatureRoute, is_vendor_error

POLICIES = ("off", "vendor", "bypass", "auto")

#: Not None while torch.jit.trace records; one C call (bypassed and checked routes only).
_tracing_state = torch._C._get_tracing_state

# The original methods, captured at import so unpatching restores them exactly.
ORIGINAL_CONV2D_FORWARD = nn.Conv2d._conv_forward
ORIGINAL_CONV_TRANSPOSE2D_FORWARD = nn.ConvTranspose2d.forward


class GuardConfigError(Rdna1Error):
    """A guard option that cannot be used; raised when the guard is configured, not mid-run."""


class _Entry:
    """One module at one input shape: its shared route and its own counters."""

    __slots__ = ("route", "calls", "bypassed", "pre_pad", "pad_mode", "plan")

    def __init__(self, route: SignatureRoute, pre_pad: tuple[int, ...] | None, pad_mode: str) -> None:
        self.route = route
        self.calls = 0
        self.bypassed = 0
        self.pre_pad = pre_pad
        self.pad_mode = pad_mode
        #: the bypass algorithm's plan for this module and input shape, made at its first call
        self.plan = None


def _resolve_padding(module: nn.Module, kernel: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, ...] | None, str]:
    """Explicit symmetric padding + an input pre-pad, as aten does before calling the library.

    ``padding_mode != 'zeros'`` pads the input with that mode and convolves with padding 0;
    ``'same'`` pads symmetrically where it can and adds the odd extra row/col at the bottom/right.
    """
    mode = module.padding_mode
    if mode != "zeros":
        return (0, 0), tuple(module._reversed_padding_repeated_twice), mode
    padding = module.padding
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), None, "constant"
        sym, extra = [], []
        for i in range(2):
            total = module.dilation[i] * (kernel[i] - 1)
            sym.append(total // 2)
            extra.append(total - 2 * (total // 2))
        pre = (0, extra[1], 0, extra[0]) if any(extra) else None
        return (sym[0], sym[1]), pre, "constant"
    return (int(padding[0]), int(padding[1])), None, "constant"


def build_signature(
    module: nn.Module,
    x: torch.Tensor,
    w: torch.Tensor,
    ac: torch.dtype | None,
    transposed: bool = False,
    output_padding: tuple = (0, 0),
) -> tuple[ConvSignature, tuple[int, ...] | None, str]:
    """The signature the conv library will see for this module and input, plus the pre-pad.

    Shared by the router and by signature discovery, so both name a conv identically.
    """
    kernel = (int(w.shape[2]), int(w.shape[3]))
    if transposed:
        padding, pre_pad, pad_mode = (int(module.padding[0]), int(module.padding[1])), None, "constant"
    else:
        padding, pre_pad, pad_mode = _resolve_padding(module, kernel)
    h, wd = int(x.shape[2]), int(x.shape[3])
    if pre_pad is not None:
        h += pre_pad[2] + pre_pad[3]
        wd += pre_pad[0] + pre_pad[1]
    groups = int(module.groups)
    sig = ConvSignature(
        in_channels=int(x.shape[1]),
        out_channels=int(w.shape[1]) * groups if transposed else int(w.shape[0]),
        kernel=kernel,
        stride=(int(module.stride[0]), int(module.stride[1])),
        padding=padding,
        dilation=(int(module.dilation[0]), int(module.dilation[1])),
        groups=groups,
        height=h,
        width=wd,
        batch=int(x.shape[0]),
        dtype=dtype_name(ac or x.dtype),
        channels_last=bool(x.is_contiguous(memory_format=torch.channels_last)) and not x.is_contiguous(),
        transposed=transposed,
        output_padding=(int(output_padding[0]), int(output_padding[1])),
    )
    return sig, pre_pad, pad_mode


class ConvGuard:
    """Routes each conv signature to the vendor library or to the bypass.

    Args:
        policy: ``off`` (no routing, nothing patched), ``vendor`` (everything on the vendor
            library, only counted), ``bypass`` (everything on the bypass), ``auto`` (routes from
            ``route_table`` and from what fails in this process; on devices whose conv library
            is trusted and without a fault profile it only counts).
        faults: a fault profile (name, path or parsed), ``None`` to read ``YOLO_RDNA1_FAULTS``,
            or ``False`` for none regardless of the environment.
        route_table: what ``auto`` routes by, per signature-direction: a function (a route, or
            None for the vendor library) or a :class:`~yolo_rdna1.route.RouteTable` that learns
            verdicts while training runs (the verdict store's).
        counting: count calls; the Ultralytics callbacks switch it on for train/val batches only.
        check_vendor: wrap vendor calls so errors in *backward* also fall back to the bypass.
            ``None`` decides per device: on for devices the guard routes by default (RDNA1,
            unknown AMD cards) and whenever a fault profile is active.
        breadcrumb: the crash trail of this run; wrapped vendor calls keep it up to date so the
            next start can blame the conv that killed or hung this process.
    """

    def __init__(
        self,
        policy: str = "auto",
        faults: str | os.PathLike | FaultProfile | None | bool = None,
        route_table: RouteTable | RouteFunction | None = None,
        counting: bool = True,
        check_vendor: bool | None = None,
        breadcrumb: Breadcrumb | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise GuardConfigError(f"unknown guard policy {policy!r}; valid policies: {', '.join(POLICIES)}")
        self.policy = policy
        if faults is None:
            self.profile = profile_from_env()
        elif faults is False:
            self.profile = None
        elif isinstance(faults, FaultProfile):
            self.profile = faults
        else:
            self.profile = load_profile(faults)
        self.route_table = route_table
        self.counting = counting
        self.check_vendor = check_vendor
        self.breadcrumb = breadcrumb
        self._entries: weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Entry]] = weakref.WeakKeyDictionary()
        self._routes: dict[ConvSignature, SignatureRoute] = {}
        self._names: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
        self._sig_names: dict[ConvSignature, set[str]] = {}
        self._device_routes: dict[torch.device, bool] = {}
        #: Routes with a direction the table had no verdict for; :meth:`refresh` revisits them.
        self._provisional: dict[SignatureRoute, set[str]] = {}
        #: the table whose verdicts can arrive later (None for a plain route function)
        self._learning: RouteTable | None = route_table if isinstance(route_table, RouteTable) else None
        self._table_generation = self._learning.generation if self._learning is not None else 0

    # -- hot path --------------------------------------------------------------------------------
    def conv2d(self, module: nn.Conv2d, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """``nn.Conv2d._conv_forward`` under the guard."""
        if is_compiling():
            return self._compiled(module, x, w, b)
        per = self._entries.get(module)
        if per is None:
            per = self._entries[module] = {}
        ac = autocast_dtype(x.device.type) if any_autocast_enabled() else None
        # shape + stride name the layout too (channels_last, channel-sliced views of C2f); the
        # weight's shape is the module's, fixed per module, so it is left out of the hot key
        key = (x.shape, x.stride(), x.dtype, ac)
        e = per.get(key)
        if e is None:
            e = per[key] = self._resolve(module, x, w, ac, transposed=False)
        route = e.route
        if self.counting:
            e.calls += 1
            if route.uses_bypass:
                e.bypassed += 1
        if route.plain:
            try:
                return ORIGINAL_CONV2D_FORWARD(module, x, w, b)
            except RuntimeError as exc:
                if self.policy == "vendor" or not is_vendor_error(exc):
                    raise
                route.fallbacks += 1
                route.mark_bad("fwd", str(exc).splitlines()[0][:200])
        return self._run(e, x, w, b, ac)

    def conv_transpose2d(
        self, module: nn.ConvTranspose2d, x: torch.Tensor, output_size: list[int] | None = None
    ) -> torch.Tensor:
        """``nn.ConvTranspose2d.forward`` under the guard."""
        if module.padding_mode != "zeros" or is_compiling():
            return ORIGINAL_CONV_TRANSPOSE2D_FORWARD(module, x, output_size)
        per = self._entries.get(module)
        if per is None:
            per = self._entries[module] = {}
        ac = autocast_dtype(x.device.type) if any_autocast_enabled() else None
        op = tuple(
            module._output_padding(
                x, output_size, module.stride, module.padding, module.kernel_size, 2, module.dilation
            )
        )
        key = (x.shape, x.stride(), x.dtype, ac, module.weight.shape, op)
        e = per.get(key)
        if e is None:
            e = per[key] = self._resolve(module, x, module.weight, ac, transposed=True, output_padding=op)
        route = e.route
        if self.counting:
            e.calls += 1
            if route.uses_bypass:
                e.bypassed += 1
        if route.plain:
            return ORIGINAL_CONV_TRANSPOSE2D_FORWARD(module, x, output_size)
        return self._run(e, x, module.weight, module.bias, ac)

    def _run(
        self, e: _Entry, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, ac: torch.dtype | None
    ) -> torch.Tensor:
        if e.pre_pad is not None:
            x = F.pad(x, e.pre_pad, mode=e.pad_mode)
        if ac is None:
            return self._apply(e, x, w, b)
        # Autocast casts a conv's operands to its low-precision dtype; do the same, then keep
        # autocast away from the ops inside so they run in exactly that dtype. A planned route
        # needs no scope: its ops (pads, copies, GEMMs on operands already in that dtype) are
        # ones autocast leaves alone, and the scope costs host time on every call.
        x, w = x.to(ac), w.to(ac)
        b = b.to(ac) if b is not None else None
        if e.route.planned:
            return self._apply(e, x, w, b)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._apply(e, x, w, b)

    @staticmethod
    def _apply(e: _Entry, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        route = e.route
        if _tracing_state() is not None:  # torch.jit.trace (export): no autograd Function in the graph
            return route.traced(x, w, b)
        if route.planned:
            plan = e.plan
            # the entry's key fixes x; a weight whose layout changed (model.to(channels_last)
            # mid-run) gets a new plan. The plan is this module's own (not the functional API's
            # shared one): it keeps views of this module's weight.
            if plan is None or plan.w_stride != w.stride():
                plan = e.plan = route.algorithm.Plan(x, w, route.params)
            # a training step's call may keep new pad buffers; inference (validation, the EMA
            # model) only reuses idle ones
            return PlannedConv.apply(x, w, b, plan, torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        return RoutedConv.apply(x, w, b, route)

    def _compiled(self, module: nn.Conv2d, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """Under torch.compile: routes are looked up at trace time, nothing is counted."""
        ac = autocast_dtype(x.device.type)
        e = self._resolve(module, x, w, ac, transposed=False)
        if e.route.plain:
            return ORIGINAL_CONV2D_FORWARD(module, x, w, b)
        return self._run(e, x, w, b, ac)

    # -- slow path: once per module and shape ---------------------------------------------------
    def _resolve(
        self,
        module: nn.Module,
        x: torch.Tensor,
        w: torch.Tensor,
        ac: torch.dtype | None,
        transposed: bool,
        output_padding: tuple = (0, 0),
    ) -> _Entry:
        if _tracing_state() is not None:
            # torch.jit.trace hands out sizes as tensors; a signature is a constant of the traced
            # graph by design (the export is made for one input shape), so its warnings say nothing
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                route, pre_pad, pad_mode = self._route_for(module, x, w, ac, transposed, output_padding)
        else:
            route, pre_pad, pad_mode = self._route_for(module, x, w, ac, transposed, output_padding)
        return _Entry(route, pre_pad, pad_mode)

    def _route_for(
        self,
        module: nn.Module,
        x: torch.Tensor,
        w: torch.Tensor,
        ac: torch.dtype | None,
        transposed: bool,
        output_padding: tuple = (0, 0),
    ):
        sig, pre_pad, pad_mode = build_signature(module, x, w, ac, transposed, output_padding)
        route = self._routes.get(sig)
        if route is None:
            route = self._routes[sig] = self._new_route(sig, x.device)
        return route, pre_pad, pad_mode

    def _new_route(self, sig: ConvSignature, device: torch.device) -> SignatureRoute:
        params = ConvParams(sig.stride, sig.padding, sig.dilation, sig.groups, sig.transposed, sig.output_padding)
        directions = {d: self._decide(sig.with_direction(d)) for d in DIRECTIONS}
        rules = {d: self.profile.rules_for(sig.with_direction(d)) if self.profile else () for d in DIRECTIONS}
        route = SignatureRoute(
            sig,
            params,
            directions,
            rules,
            algorithm_for(sig),
            check_vendor=self._checks_vendor(device),
            fallback=self.policy != "vendor",
            crumb=self.breadcrumb,
        )
        if self.policy == "auto" and self._learning is not None:
            unknown = {d for d in DIRECTIONS if self._learning.lookup(sig.with_direction(d)) is None}
            if unknown:
                self._provisional[route] = unknown
        return route

    def _decide(self, sig: ConvSignature) -> Route:
        if self.policy == "bypass":
            return BYPASS
        if self.policy == "auto" and self.route_table is not None:
            return Route(self.route_table(sig) or VENDOR)  # a plain "bypass" from a route function becomes the member
        return VENDOR

    def _checks_vendor(self, device: torch.device) -> bool:
        if self.policy != "auto":
            return False
        if self.check_vendor is not None:
            return self.check_vendor
        if self.profile is not None:
            return True
        if device not in self._device_routes:
            from ..device import describe_device, routes_by_default

            self._device_routes[device] = routes_by_default(describe_device(device))
        return self._device_routes[device]

    def refresh(self) -> int:
        """Give provisionally routed signatures the route their newly arrived verdicts say.

        Cheap when nothing arrived (one int compare); call it between batches, never inside a
        forward/backward. Returns how many directions changed.
        """
        if self._learning is None or self._learning.generation == self._table_generation or not self._provisional:
            return 0
        self._table_generation = self._learning.generation
        changed = 0
        for route, unknown in list(self._provisional.items()):
            for d in list(unknown):
                decided = self._learning.lookup(route.sig.with_direction(d))
                if decided is not None:
                    changed += route.directions[d] != decided
                    route.set_direction(d, Route(decided))
                    unknown.discard(d)
            if not unknown:
                del self._provisional[route]
        return changed

    # -- bookkeeping -----------------------------------------------------------------------------
    def label(self, model: nn.Module, prefix: str = "") -> None:
        """Remember the names of a model's conv modules for per-module reports."""
        for name, m in model.named_modules(prefix=prefix):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                self._names[m] = name

    def reset_counts(self) -> None:
        """Zero the call counters (not the routes): per-epoch metrics start here."""
        for per in self._entries.values():
            for e in per.values():
                e.calls = e.bypassed = 0
        for r in self._routes.values():
            r.fallbacks = 0

    def routes(self) -> Iterable[SignatureRoute]:
        return self._routes.values()

    def totals(self) -> dict[str, int]:
        """Calls, bypassed calls and fallbacks since the last :meth:`reset_counts`."""
        calls = bypassed = 0
        for per in list(self._entries.values()):
            for e in per.values():
                calls += e.calls
                bypassed += e.bypassed
        return {"calls": calls, "bypassed": bypassed, "fallbacks": sum(r.fallbacks for r in self._routes.values())}

    def per_signature(self) -> list[dict]:
        """One row per signature: routes, algorithm, calls, bypassed, fallbacks, reasons, and the
        labelled modules (:meth:`label`) that ran it, so a report can say which layers a signature is."""
        counts: dict[ConvSignature, list[int]] = {}
        names = self._sig_names  # kept across calls: the names stay when a module goes (a replaced model)
        for module, per in list(self._entries.items()):
            name = self._names.get(module)
            for e in per.values():
                c = counts.setdefault(e.route.sig, [0, 0])
                c[0] += e.calls
                c[1] += e.bypassed
                if name:
                    names.setdefault(e.route.sig, set()).add(name)
        rows = []
        for sig, route in self._routes.items():
            row = route.summary()
            row["calls"], row["bypassed"] = counts.get(sig, [0, 0])
            row["modules"] = sorted(names.get(sig, ()))
            rows.append(row)
        return rows

    def per_module(self) -> dict[str, dict[str, int]]:
        """Calls and bypassed calls per labelled module (unlabelled ones by class and id)."""
        out: dict[str, dict[str, int]] = {}
        for module, per in list(self._entries.items()):
            name = self._names.get(module) or f"{type(module).__name__}@{id(module):x}"
            row = out.setdefault(name, {"calls": 0, "bypassed": 0})
            for e in per.values():
                row["calls"] += e.calls
                row["bypassed"] += e.bypassed
        return out

    def seen_modules(self) -> list[nn.Module]:
        """Modules that went through this guard (tests use it to prove every conv is routed)."""
        return list(self._entries.keys())
