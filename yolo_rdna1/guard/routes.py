"""Per-signature routes and the two ways a conv call is executed on them.

A :class:`SignatureRoute` belongs to one conv signature and says, per direction (fwd, bwd_data,
bwd_weight), whether the vendor library or the bypass runs it. A route whose three directions
are on the vendor library, with no fault simulation and no backward checking, is *plain*: the
guard then calls the original ``nn.Conv2d`` code with no wrapper at all, which is what keeps the
guard's cost under a microsecond or two per call. Every other route runs through
:class:`RoutedConv`, a custom autograd function whose backward picks the route per direction,
so a signature that only aborts in bwd_weight keeps its forward on the fast vendor library.
A route with all three directions on the bypass runs through :class:`PlannedConv` instead, when
its algorithm plans per call key: the same arithmetic with the least host work per call.
"""

from __future__ import annotations

import logging
import re
from types import ModuleType
from typing import Callable

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..bypass import ConvParams
from ..faults import FaultProfile, FaultRule, corrupt, raise_or_block
from ..route import Route
from ..signature import DIRECTIONS, ConvSignature
from ..verdicts.breadcrumb import Breadcrumb

LOGGER = logging.getLogger("yolo_rdna1")

#: The two routes under the names the hot paths compare with (module globals: one lookup, no attribute).
VENDOR, BYPASS = Route.VENDOR, Route.BYPASS

# Messages of the vendor conv stack (MIOpen, cuDNN, HIP runtime). Only these are retried on the
# bypass; a shape error or an out-of-memory is the caller's problem and propagates unchanged.
_VENDOR_ERROR = re.compile(r"miopen|cudnn|hip ?error|hipErr|invalid device function|HIPBLAS|rocblas", re.IGNORECASE)


def is_vendor_error(exc: BaseException) -> bool:
    """True for an exception raised by the vendor conv library, not by the caller's inputs."""
    if not isinstance(exc, RuntimeError) or isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return False
    text = str(exc)
    return "out of memory" not in text.lower() and bool(_VENDOR_ERROR.search(text))


class SignatureRoute:
    """The route of each direction of one signature, shared by every module and call that has this signature."""

    __slots__ = (
        "sig",
        "params",
        "directions",
        "rules",
        "algorithm",
        "plain",
        "uses_bypass",
        "planned",
        "reasons",
        "fallbacks",
        "fallback",
        "crumb",
        "crumb_ids",
        "check_vendor",
    )

    def __init__(
        self,
        sig: ConvSignature,
        params: ConvParams,
        directions: dict[str, Route],
        rules: dict[str, tuple[FaultRule, ...]],
        algorithm: ModuleType,
        check_vendor: bool,
        fallback: bool = True,
        crumb: Breadcrumb | None = None,
    ) -> None:
        self.sig = sig
        self.params = params
        self.directions = directions
        self.rules = rules
        self.algorithm = algorithm
        self.reasons: dict[str, str] = {}
        self.fallbacks = 0
        self.fallback = fallback
        self.crumb = crumb
        self.crumb_ids: dict[str, int] = {}
        self.check_vendor = check_vendor
        self._update_flags()

    def _update_flags(self) -> None:
        self.uses_bypass = any(d == BYPASS for d in self.directions.values())
        self.plain = not self.check_vendor and not any(self.rules.values()) and not self.uses_bypass
        # every direction on an algorithm that plans per call key: :class:`PlannedConv` runs it
        self.planned = all(d == BYPASS for d in self.directions.values()) and hasattr(self.algorithm, "Plan")

    def set_direction(self, direction: str, route: Route) -> None:
        """Move one direction to ``route`` (a verdict arrived); not for one marked bad in-process."""
        if direction in self.reasons or self.directions[direction] == route:
            return
        self.directions[direction] = route
        self._update_flags()

    def mark_bad(self, direction: str, reason: str) -> None:
        """Route ``direction`` to the bypass for the rest of the process, and warn once."""
        if self.directions[direction] == BYPASS:
            return
        self.directions[direction] = BYPASS
        self.reasons[direction] = reason
        self._update_flags()
        LOGGER.warning(
            "yolo_rdna1: vendor conv failed for %s (%s); it takes the bypass for the rest of this process",
            self.sig.with_direction(direction),
            reason,
        )

    # -- one direction ---------------------------------------------------------------------------
    def run(
        self, direction: str, vendor: Callable[[], torch.Tensor], bypass: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """Run one direction on its route; a vendor error falls back to the bypass."""
        if self.directions[direction] == BYPASS:
            return bypass()
        rules = self.rules[direction]
        crumb = self.crumb
        first = False
        if crumb is not None:
            idx = self.crumb_ids.get(direction)
            if idx is None:
                first = True
                idx = self.crumb_ids[direction] = crumb.register(self.sig.with_direction(direction).key())
            crumb.enter(idx)
        try:
            rule = FaultProfile.fire(rules) if rules else None
            if rule is not None and rule.effect in ("error", "hang", "abort"):
                raise_or_block(rule)
            out = vendor()
            if first and out.is_cuda:
                torch.cuda.synchronize(out.device)  # a first call's async fault is blamed right
            return out if rule is None else corrupt(rule, out)
        except RuntimeError as e:
            if not self.fallback or not is_vendor_error(e):
                raise
            self.fallbacks += 1
            self.mark_bad(direction, str(e).splitlines()[0][:200])
            return bypass()
        finally:
            if crumb is not None:
                crumb.leave()

    # -- the three directions ------------------------------------------------------------------
    def vendor_call(
        self,
        direction: str,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        grad_out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One direction on the vendor library: cuDNN/MIOpen through aten, forward or backward."""
        p = self.params
        if direction == "fwd":
            if p.transposed:
                return F.conv_transpose2d(x, w, b, p.stride, p.padding, p.output_padding, p.groups, p.dilation)
            return F.conv2d(x, w, b, p.stride, p.padding, p.dilation, p.groups)
        mask = [direction == "bwd_data", direction == "bwd_weight", False]
        gx, gw, _ = torch.ops.aten.convolution_backward(
            grad_out,
            x,
            w,
            None,
            list(p.stride),
            list(p.padding),
            list(p.dilation),
            p.transposed,
            list(p.output_padding),
            p.groups,
            mask,
        )
        return gx if mask[0] else gw

    def bypass_call(
        self,
        direction: str,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        grad_out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One direction on the bypass algorithm of this signature."""
        if direction == "fwd":
            return self.algorithm.forward(x, w, b, self.params)
        if direction == "bwd_data":
            return self.algorithm.backward_data(grad_out, x, w, self.params)
        return self.algorithm.backward_weight(grad_out, x, w, self.params)

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if self.directions["fwd"] == BYPASS:  # hot path of a bypassed direction: no closures
            return self.algorithm.forward(x, w, b, self.params)
        return self.run("fwd", lambda: self.vendor_call("fwd", x, w, b), lambda: self.bypass_call("fwd", x, w, b))

    def traced(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """The forward while ``torch.jit.trace`` records (TorchScript/ONNX export): plain aten ops only.

        A trace records ops, not Python: an autograd Function becomes a ``PythonOp`` that cannot be
        saved, and a kept pad buffer becomes a constant the graph writes into. So a vendor route is
        the library's conv (the graph holds an ordinary conv) and a bypassed one is the im2col
        reference (unfold + GEMM): the exported file loads and runs without this package, and never
        calls the vendor library for a signature this device cannot run.
        """
        from ..bypass import im2col

        return self.run("fwd", lambda: self.vendor_call("fwd", x, w, b), lambda: im2col.forward(x, w, b, self.params))

    def backward(
        self, grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, need_x: bool, need_w: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        grad_out = grad_out.contiguous(memory_format=_memory_format(x))
        d = self.directions
        if d["bwd_data"] == BYPASS and d["bwd_weight"] == BYPASS:  # hot path: no closures
            alg, p = self.algorithm, self.params
            return (
                alg.backward_data(grad_out, x, w, p) if need_x else None,
                alg.backward_weight(grad_out, x, w, p) if need_w else None,
            )
        gx = gw = None
        for direction, needed in (("bwd_data", need_x), ("bwd_weight", need_w)):
            if needed:
                g = self.run(
                    direction,
                    lambda: self.vendor_call(direction, x, w, None, grad_out),  # noqa: B023 - called at once
                    lambda: self.bypass_call(direction, x, w, None, grad_out),  # noqa: B023
                )
                if direction == "bwd_data":
                    gx = g
                else:
                    gw = g
        return gx, gw

    def summary(self) -> dict:
        return {
            "signature": self.sig.key(),
            "routes": dict(self.directions),
            "algorithm": self.algorithm.__name__.rsplit(".", 1)[-1],
            "fallbacks": self.fallbacks,
            "reasons": dict(self.reasons),
        }


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a channels_last input, also for a channel slice of one (C2f's
    ``chunk``), as torch's own conv decides; a grad_out arriving channels_last then stays as is."""
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and (x.is_contiguous(memory_format=torch.channels_last) or (x.stride(1) == 1 and x.shape[1] > 1))
    ):
        return torch.channels_last
    return torch.contiguous_format


class RoutedConv(torch.autograd.Function):
    """A conv whose forward and two backward directions each run on their own route."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, route: SignatureRoute) -> torch.Tensor:  # type: ignore[override]
        ctx.route = route
        ctx.has_bias = b is not None
        ctx.save_for_backward(x, w)
        return route.forward(x, w, b)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, w = ctx.saved_tensors
        gx, gw = ctx.route.backward(grad_out, x, w, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        gb = grad_out.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


class PlannedConv(torch.autograd.Function):
    """A conv whose three directions all run on the bypass, through one algorithm plan.

    The lean twin of :class:`RoutedConv` for the case that matters for speed (every direction
    bypassed): the plan (an algorithm's ``Plan``, kept by the guard per module and input shape)
    does the forward and both backward directions in one call each, with no route dispatch and no
    cache lookups, and it chooses what to save: ``x`` for a 1x1 conv, the padded NHWC input for
    a k x k conv (so bwd_weight does not pad again). A YOLOv8n train step is host-bound; this is
    where a bypassed conv's host time goes (docs/benchmarks.md, "Fast bypass (issue 5)").
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, plan, train: bool) -> torch.Tensor:  # type: ignore[override]
        out, keep = plan.forward(x, w, b, train)
        ctx.plan = plan
        ctx.has_bias = b is not None
        ctx.save_for_backward(keep, w)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        keep, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx, gw = ctx.plan.backward(grad_out, keep, w, need[0], need[1])
        gb = grad_out.sum((0, 2, 3)) if ctx.has_bias and need[2] else None
        return gx, gw, gb, None, None


def directions_all(route: Route) -> dict[str, Route]:
    return {d: route for d in DIRECTIONS}
