"""The Ultralytics integration: ``callbacks`` dict and :func:`add_callbacks`."""

from .rdna1 import add_callbacks, callbacks, current_run, last_run

__all__ = ["add_callbacks", "callbacks", "current_run", "last_run"]
