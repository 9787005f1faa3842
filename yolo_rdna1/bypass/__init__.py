"""Vendor-free conv kernels: GEMMs and index ops only, never cuDNN/MIOpen, forward or backward.

Every algorithm module exposes ``forward(x, w, b, params)``, ``backward_data(grad_out, x, w,
params)`` and ``backward_weight(grad_out, x, w, params)``. :func:`algorithm_for` picks one per
signature; the guard calls it once per signature, never per call.
"""

from __future__ import annotations

from types import ModuleType

from . import im2col
from .params import ConvParams

ALGORITHMS: dict[str, ModuleType] = {"im2col": im2col}


def algorithm_for(sig: object) -> ModuleType:
    """The bypass algorithm for a signature."""
    return im2col


__all__ = ["ALGORITHMS", "ConvParams", "algorithm_for", "im2col"]
