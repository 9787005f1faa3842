"""Where one direction of a conv runs, and what the router asks to decide it.

Torch-free on purpose: the verdict table, the probe report and the run report name routes
without importing the guard.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    from .signature import ConvSignature


class Route(str, Enum):
    """The vendor conv library (cuDNN/MIOpen through aten) or the vendor-free GEMM bypass.

    A ``str``: ``Route.BYPASS == "bypass"``, so routes read back from JSON reports or answered
    as plain strings by a route function compare equal, and ``json.dumps`` writes the value.
    """

    VENDOR = "vendor"
    BYPASS = "bypass"

    def __str__(self) -> str:  # the value, as f-strings and logs show it on every Python
        return self.value

    __format__ = str.__format__


#: What ``ConvGuard(route_table=...)`` may be at its simplest: the route of one signature with a
#: direction, or None for "no verdict" (the guard then takes the vendor library).
RouteFunction = Callable[["ConvSignature"], Optional[Union[Route, str]]]


@runtime_checkable
class RouteTable(Protocol):
    """A route table that learns while training runs (:class:`~yolo_rdna1.verdicts.table.VerdictRouteTable`).

    Calling it decides a signature-direction the router meets for the first time (and may queue
    it for a background probe); :meth:`lookup` reads a stored verdict without side effects; a
    new :attr:`generation` tells the router (between batches) that verdicts arrived, so it moves
    provisionally routed signatures to what :meth:`lookup` now says.
    """

    generation: int

    def __call__(self, sig: ConvSignature) -> Route | str | None: ...

    def lookup(self, sig: ConvSignature) -> Route | str | None: ...
