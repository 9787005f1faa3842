"""Verdicts: what each conv signature does on this device's vendor library, and where they come from.

Probes and crash attribution write verdicts; the guard's router only reads them, through a
:class:`~yolo_rdna1.verdicts.table.VerdictRouteTable`.
"""

from .store import BAD, VERDICTS, Verdict, VerdictStore, VerdictStoreError, default_cache_dir, miopen_driver_command

__all__ = [
    "BAD",
    "VERDICTS",
    "Verdict",
    "VerdictStore",
    "VerdictStoreError",
    "default_cache_dir",
    "miopen_driver_command",
]
