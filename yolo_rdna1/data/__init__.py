"""Datasets: the synthetic thermal generator (and, later, LTDV2 conversion)."""

from .synthetic import CLASS_NAMES, make_synthetic_thermal

__all__ = ["CLASS_NAMES", "make_synthetic_thermal"]
