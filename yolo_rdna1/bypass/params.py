"""Conv parameters in the explicit form every bypass algorithm takes."""

from __future__ import annotations

from typing import NamedTuple

Pair = tuple[int, int]


class ConvParams(NamedTuple):
    """Explicit, symmetric conv parameters (string paddings and padding modes already applied).

    For a transposed conv the weight is laid out ``(in, out // groups, kh, kw)`` as in
    ``nn.ConvTranspose2d``, and ``output_padding`` adds rows/cols at the bottom/right.
    """

    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    transposed: bool = False
    output_padding: Pair = (0, 0)
