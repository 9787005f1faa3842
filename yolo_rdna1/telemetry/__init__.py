"""GPU telemetry: sensor readers, a background sampler and the per-epoch metric columns.

``open_reader(describe_device(...))`` picks the sensor source for a torch device (amdsmi, amdgpu
sysfs hwmon, NVML, or none), :class:`TelemetrySampler` reads it on a daemon thread, and
:func:`window_metrics` turns an epoch's samples into the ``rdna1/*`` columns, with the numeric
sentinel :data:`UNAVAILABLE` for sensors that do not exist. :mod:`.thermal` pauses training
when the card runs hot.
"""

from .readers import AmdSmiReader, NullReader, NvmlReader, Reader, SensorReading, SysfsReader, open_reader
from .sampler import METRIC_KEYS, UNAVAILABLE, TelemetrySampler, window_metrics

__all__ = [
    "METRIC_KEYS",
    "UNAVAILABLE",
    "AmdSmiReader",
    "NullReader",
    "NvmlReader",
    "Reader",
    "SensorReading",
    "SysfsReader",
    "TelemetrySampler",
    "open_reader",
    "window_metrics",
]
