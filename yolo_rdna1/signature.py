"""The key of one convolution call: what the vendor library sees when it picks a solver.

MIOpen fails per conv *shape*, not per module: the same 3x3 conv is fine at 40x40 and hangs at
48x48. A :class:`ConvSignature` therefore holds everything that changes the vendor's solver
choice, and nothing else (no module name, no device). It is a database key (verdicts are stored
per device fingerprint + signature), so its text form :meth:`ConvSignature.key` is part of the
on-disk format: it is identical across processes, machines and versions of this package, and
changing it needs a verdict-store migration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Tuple

if TYPE_CHECKING:  # torch-free at run time: the verdict store and the CLI read keys without it
    import torch

Pair = Tuple[int, int]

#: Directions of one conv call. Autograd runs ``bwd_data`` (input gradient) and ``bwd_weight``
#: (weight gradient) as separate vendor calls, and MIOpen picks separate solvers for them.
DIRECTIONS: tuple[str, ...] = ("fwd", "bwd_data", "bwd_weight")

_KEY_VERSION = "v1"


def dtype_name(dtype: torch.dtype) -> str:
    """The short, stable name of a floating dtype (``float32``), as used in keys and profiles."""
    return str(dtype).replace("torch.", "")  # torch.half prints as torch.float16


@dataclass(frozen=True)
class ConvSignature:
    """One conv call: shapes and parameters the vendor library dispatches on.

    ``padding`` is always explicit and symmetric here: string paddings (``'same'``) and non-zero
    padding modes are resolved before the call reaches the conv library (the guard pads the
    input itself), so the library sees exactly this.  For a transposed conv, ``in_channels`` is
    the channels of the transposed conv's input and ``output_padding`` is kept.
    """

    in_channels: int
    out_channels: int
    kernel: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int
    height: int
    width: int
    batch: int
    dtype: str = "float32"
    channels_last: bool = False
    transposed: bool = False
    output_padding: Pair = (0, 0)
    direction: str = "fwd"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")

    @property
    def hw(self) -> int:
        """The larger spatial side of the input, the quantity MIOpen's bad cases depend on."""
        return max(self.height, self.width)

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    def with_direction(self, direction: str) -> "ConvSignature":
        return replace(self, direction=direction)

    @property
    def output_size(self) -> Pair:
        """Spatial size of the conv's output, as F.conv2d / F.conv_transpose2d computes it."""
        out = []
        for i, size in enumerate((self.height, self.width)):
            k, s, p, d = self.kernel[i], self.stride[i], self.padding[i], self.dilation[i]
            if self.transposed:
                out.append((size - 1) * s - 2 * p + d * (k - 1) + self.output_padding[i] + 1)
            else:
                out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return out[0], out[1]

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the forward conv; the backward directions cost the same."""
        oh, ow = self.output_size
        spatial = (self.height * self.width) if self.transposed else (oh * ow)
        per_pos = (self.out_channels if self.transposed else self.in_channels) // self.groups
        outs = self.in_channels if self.transposed else self.out_channels
        return 2 * self.batch * outs * spatial * per_pos * self.kernel[0] * self.kernel[1]

    def key(self) -> str:
        """Stable text key, e.g. ``v1:c16>32:k3x3:s1x1:p1x1:d1x1:g1:n4:48x48:float32:nchw:fwd``."""
        parts = [
            _KEY_VERSION,
            f"c{self.in_channels}>{self.out_channels}",
            f"k{self.kernel[0]}x{self.kernel[1]}",
            f"s{self.stride[0]}x{self.stride[1]}",
            f"p{self.padding[0]}x{self.padding[1]}",
            f"d{self.dilation[0]}x{self.dilation[1]}",
            f"g{self.groups}",
            f"n{self.batch}",
            f"{self.height}x{self.width}",
            self.dtype,
            "nhwc" if self.channels_last else "nchw",
        ]
        if self.transposed:
            parts.append(f"t{self.output_padding[0]}x{self.output_padding[1]}")
        parts.append(self.direction)
        return ":".join(parts)

    @classmethod
    def from_key(cls, key: str) -> "ConvSignature":
        """Inverse of :meth:`key`; raises ``ValueError`` for text that is not a signature key."""
        try:
            parts = key.split(":")
            if parts[0] != _KEY_VERSION:
                raise ValueError(f"unknown signature key version {parts[0]!r}")

            def pair(text: str, prefix: str) -> Pair:
                if not text.startswith(prefix):
                    raise ValueError(f"expected {prefix!r} in {text!r}")
                a, b = text[len(prefix):].split("x")
                return int(a), int(b)

            cin, cout = parts[1][1:].split(">")
            height, width = parts[8].split("x")
            transposed = len(parts) == 13
            return cls(
                in_channels=int(cin),
                out_channels=int(cout),
                kernel=pair(parts[2], "k"),
                stride=pair(parts[3], "s"),
                padding=pair(parts[4], "p"),
                dilation=pair(parts[5], "d"),
                groups=int(parts[6][1:]),
                batch=int(parts[7][1:]),
                height=int(height),
                width=int(width),
                dtype=parts[9],
                channels_last=parts[10] == "nhwc",
                transposed=transposed,
                output_padding=pair(parts[11], "t") if transposed else (0, 0),
                direction=parts[-1],
            )
        except (IndexError, ValueError) as e:
            raise ValueError(f"not a conv signature key: {key!r} ({e})") from None

    def __str__(self) -> str:
        t = "T" if self.transposed else ""
        return (
            f"conv{t} {self.in_channels}->{self.out_channels} k{self.kernel[0]}x{self.kernel[1]} "
            f"s{self.stride[0]} p{self.padding[0]} d{self.dilation[0]} g{self.groups} "
            f"{self.batch}x{self.height}x{self.width} {self.dtype}"
            f"{' nhwc' if self.channels_last else ''} {self.direction}"
        )

    def describe(self) -> dict:
        """The fields the fault profile's ``match`` keys name, for matching and reports."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "groups": self.groups,
            "batch": self.batch,
            "kernel": self.kernel,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "height": self.height,
            "width": self.width,
            "hw": self.hw,
            "dtype": self.dtype,
            "transposed": self.transposed,
        }
