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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-free at run time: the verdict store and the CLI read keys without it
    import torch

from .errors import Rdna1Error

Pair = tuple[int, int]

#: Directions of one conv call. Autograd runs ``bwd_data`` (input gradient) and ``bwd_weight``
#: (weight gradient) as separate vendor calls, and MIOpen picks separate solvers for them.
DIRECTIONS: tuple[str, ...] = ("fwd", "bwd_data", "bwd_weight")

#: The dtypes a key may name (torch-free, so the CLI reads keys without importing torch).
KEY_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float64")
_KEY_VERSION = "v1"
#: The largest number a key may hold: MIOpen (and MIOpenDriver) take 32-bit ints.
_MAX_INT = 2**31 - 1


class SignatureError(Rdna1Error):
    """Text that is not a conv signature key (from a breadcrumb, a verdict file, a probe job)."""


def _shown(text: object, limit: int = 120) -> str:
    """``text`` for a one-line message: quoted, control characters escaped, long text cut."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _number(text: str, prefix: str, what: str, low: int) -> int:
    """One decimal number after ``prefix``: ASCII digits only, from ``low`` to 2**31-1."""
    if not text.startswith(prefix):
        raise SignatureError(f"expected {prefix!r} before the {what}, got {text[:20]!r}")
    digits = text[len(prefix) :]
    if not (0 < len(digits) <= 10 and digits.isascii() and digits.isdigit()):
        raise SignatureError(f"the {what} must be a number, got {digits[:20]!r}")
    value = int(digits)
    if not low <= value <= _MAX_INT:
        raise SignatureError(f"the {what} must be from {low} to {_MAX_INT}, got {value}")
    return value


def _numbers(text: str, prefix: str, sep: str, what: str, low: int) -> Pair:
    """Two numbers ``<prefix>A<sep>B`` (``k3x3``, ``c16>32``), each checked as :func:`_number`."""
    if not text.startswith(prefix) or text.count(sep) != 1:
        raise SignatureError(f"expected the {what} as {prefix}A{sep}B, got {text[:20]!r}")
    a, b = text[len(prefix) :].split(sep)
    return _number(a, "", what, low), _number(b, "", what, low)


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

    def with_direction(self, direction: str) -> ConvSignature:
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
    def from_key(cls, key: str) -> ConvSignature:
        """Inverse of :meth:`key`, strict: only the exact text :meth:`key` writes is accepted.

        Keys come from files (breadcrumbs, verdict exports from other machines), so anything
        else (zero or negative sizes, a conv with no output pixel, an output padding torch
        refuses, unknown dtypes, extra text, control characters) raises
        :class:`SignatureError` instead of becoming a verdict or a reproducer line.
        """
        if not isinstance(key, str):
            raise SignatureError(f"not a conv signature key: {_shown(key)} (a key is text, got {type(key).__name__})")
        try:
            sig = cls._parse(key)
        except SignatureError as e:
            raise SignatureError(f"not a conv signature key: {_shown(key)} ({e})") from None
        if sig.key() != key:  # leading zeros, '+' signs: one signature has exactly one key
            raise SignatureError(f"not a conv signature key: {_shown(key)} (not in the canonical form {sig.key()!r})")
        return sig

    @classmethod
    def _parse(cls, key: str) -> ConvSignature:
        parts = key.split(":")
        if parts[0] != _KEY_VERSION:
            raise SignatureError(f"unknown key version {parts[0][:20]!r}, expected {_KEY_VERSION!r}")
        if len(parts) not in (12, 13):
            raise SignatureError(f"{len(parts)} fields, a key has 12 (13 for a transposed conv)")
        transposed = len(parts) == 13
        cin, cout = _numbers(parts[1], "c", ">", "channels", 1)
        groups = _number(parts[6], "g", "groups", 1)
        if cin % groups or cout % groups:
            raise SignatureError(f"groups {groups} do not divide the channels {cin}>{cout}")
        if parts[9] not in KEY_DTYPES:
            raise SignatureError(f"unknown dtype {parts[9][:20]!r}; known: {', '.join(KEY_DTYPES)}")
        if parts[10] not in ("nchw", "nhwc"):
            raise SignatureError(f"unknown layout {parts[10][:20]!r}; known: nchw, nhwc")
        if parts[-1] not in DIRECTIONS:
            raise SignatureError(f"unknown direction {parts[-1][:20]!r}; known: {', '.join(DIRECTIONS)}")
        height, width = _numbers(parts[8], "", "x", "height/width", 1)
        sig = cls(
            in_channels=cin,
            out_channels=cout,
            kernel=_numbers(parts[2], "k", "x", "kernel", 1),
            stride=_numbers(parts[3], "s", "x", "stride", 1),
            padding=_numbers(parts[4], "p", "x", "padding", 0),
            dilation=_numbers(parts[5], "d", "x", "dilation", 1),
            groups=groups,
            batch=_number(parts[7], "n", "batch", 1),
            height=height,
            width=width,
            dtype=parts[9],
            channels_last=parts[10] == "nhwc",
            transposed=transposed,
            output_padding=_numbers(parts[11], "t", "x", "output padding", 0) if transposed else (0, 0),
            direction=parts[-1],
        )
        sig._check_sizes()
        return sig

    def _check_sizes(self) -> None:
        """Refuse a conv torch would refuse: an output padding not smaller than the stride or the
        dilation, an output with no pixel (a kernel larger than the padded input)."""
        if self.transposed and any(
            op >= max(s, d) for op, s, d in zip(self.output_padding, self.stride, self.dilation)
        ):
            raise SignatureError(
                f"the output padding t{self.output_padding[0]}x{self.output_padding[1]} must be smaller than the "
                f"stride s{self.stride[0]}x{self.stride[1]} or the dilation d{self.dilation[0]}x{self.dilation[1]}"
            )
        out = self.output_size
        if min(out) < 1:
            raise SignatureError(
                f"the kernel k{self.kernel[0]}x{self.kernel[1]} (dilation d{self.dilation[0]}x{self.dilation[1]}, "
                f"padding p{self.padding[0]}x{self.padding[1]}) leaves no output on the {self.height}x{self.width} "
                f"input (output size {out[0]}x{out[1]})"
            )

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
