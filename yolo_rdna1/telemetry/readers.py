"""GPU sensor readers: amdsmi, amdgpu sysfs hwmon and NVML behind one ``read()``.

A reader answers one question, "how hot, how hungry and how busy is *this* torch device right
now", and must never take training down: every field is read on its own and a sensor that fails
(missing file, library error, ``"N/A"``, a nonsense value) becomes ``None`` for that field only.

Which card a reader watches is decided by PCI address, never by a card or library index:
``/sys/class/drm/cardN`` numbers, amdsmi handle order and NVML indices all follow their own
enumeration, which ``HIP_VISIBLE_DEVICES``/``CUDA_VISIBLE_DEVICES`` and the CUDA device order do
not change, so index N there is often not torch's ``cuda:N``. An index is only used when it
cannot name another card (one card in total, or no visibility mask and PCI ordering).

Vendor libraries are imported inside ``open()`` so that importing this module costs nothing and
works where amdsmi / nvidia-ml-py are not installed (the usual case for RDNA1 on ROCm 5).
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol

if TYPE_CHECKING:
    from ..device import DeviceInfo

__all__ = [
    "AmdSmiReader",
    "NullReader",
    "NvmlReader",
    "Reader",
    "SensorReading",
    "SysfsReader",
    "open_reader",
]

log = logging.getLogger(__name__)

AMD_VENDOR_ID = "0x1002"


class SensorReading(NamedTuple):
    """One sample of the device's sensors; ``None`` where a sensor is absent or failed.

    Temperatures in degrees C (edge = die edge, junction = hottest spot on the die, the one the
    firmware throttles on; mem = VRAM), power in W, busy in percent of time the GPU was busy.
    """

    edge_c: float | None = None
    junction_c: float | None = None
    mem_c: float | None = None
    power_w: float | None = None
    busy_pct: float | None = None


class Reader(Protocol):
    """What the sampler and the thermal guard need from a sensor source."""

    source: str

    def read(self) -> SensorReading: ...


# -- value hygiene ----------------------------------------------------------------------------

# Libraries mark unsupported fields with sentinels ("N/A", 0xFFFF, UINT32_MAX) rather than
# errors; these ranges reject them without rejecting any real reading.
_TEMP_RANGE = (-60.0, 250.0)
_POWER_RANGE = (0.0, 10_000.0)
_BUSY_RANGE = (0.0, 100.0)


def _number(value: Any, scale: float, valid: tuple[float, float]) -> float | None:
    """``value`` as a float times ``scale`` if it is a real number inside ``valid``, else None."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value) * scale
    except (TypeError, ValueError):
        return None
    if math.isnan(x) or not valid[0] <= x <= valid[1]:
        return None
    return x


def _field(fetch: Callable[[], Any], scale: float, valid: tuple[float, float]) -> float | None:
    """Call ``fetch`` and clean its value; any exception means "this sensor has nothing now"."""
    try:
        return _number(fetch(), scale, valid)
    except Exception:  # noqa: BLE001 - a sensor failure must never reach the training loop
        return None


def _temp(fetch: Callable[[], Any], scale: float = 1.0) -> float | None:
    return _field(fetch, scale, _TEMP_RANGE)


def _power(fetch: Callable[[], Any], scale: float = 1.0) -> float | None:
    return _field(fetch, scale, _POWER_RANGE)


def _busy(fetch: Callable[[], Any]) -> float | None:
    return _field(fetch, 1.0, _BUSY_RANGE)


# -- PCI addresses ----------------------------------------------------------------------------

_PCI_RE = re.compile(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})(?:\.[0-7])?")


def pci_key(address: str | bytes | None) -> tuple[int, int, int] | None:
    """``(domain, bus, device)`` of a PCI address in any of the spellings we meet, else None.

    sysfs and KFD say ``0000:03:00.0``, NVML ``00000000:03:00.0``, amdsmi ``0000:03:00.0``; torch
    has no function number and GPUs are function 0, so the function is ignored (as in
    :mod:`yolo_rdna1.device`).
    """
    if address is None:
        return None
    text = address.decode(errors="replace") if isinstance(address, bytes) else str(address)
    m = _PCI_RE.fullmatch(text.strip().lower())
    if m is None:
        return None
    return int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16)


def _index_is_unambiguous(count: int, mask_vars: tuple[str, ...]) -> bool:
    """Whether a library's device index N may be taken as torch's device N.

    Only when there is one device in total, or when none of the visibility masks that renumber
    torch's view is set. The orderings must agree too: amdsmi and HIP both enumerate by PCI bus,
    while CUDA does so only under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (checked by the NVML reader).
    """
    return count == 1 or not any(os.environ.get(v) for v in mask_vars)


# -- readers ----------------------------------------------------------------------------------


class NullReader:
    """No sensor for this device: every field ``None`` (reported as the sentinel downstream)."""

    source = "none"

    def __init__(self, detail: str = "no sensor source for this device") -> None:
        self.detail = detail

    def read(self) -> SensorReading:
        return SensorReading()

    def close(self) -> None:
        """Nothing to release; present so callers can close any reader."""


class AmdSmiReader:
    """AMD SMI (``amdsmi`` Python package, ROCm >= 6).

    ``amdsmi_get_temp_metric`` returns degrees C, ``amdsmi_get_power_info`` watts
    (``average_socket_power`` on Navi and MI200 and older, ``current_socket_power`` on MI300+;
    unsupported ones are ``"N/A"``/``0xFFFF``/``UINT32_MAX``) and ``amdsmi_get_gpu_activity``
    percent.
    """

    source = "amdsmi"

    def __init__(self, amdsmi: Any, handle: Any, detail: str) -> None:
        self._smi = amdsmi
        self._handle = handle
        self.detail = detail
        types = amdsmi.AmdSmiTemperatureType
        # HOTSPOT and JUNCTION name the same sensor; older bindings may lack one of the two.
        hotspot = getattr(types, "HOTSPOT", None)  # an IntEnum member may be 0: test for None
        self._sensors = (
            getattr(types, "EDGE", None),
            hotspot if hotspot is not None else getattr(types, "JUNCTION", None),
            getattr(types, "VRAM", None),
        )
        self._current = amdsmi.AmdSmiTemperatureMetric.CURRENT

    @classmethod
    def open(cls, info: DeviceInfo) -> AmdSmiReader | None:
        """A reader for ``info``'s card, or None (no amdsmi, init failed, card not found)."""
        try:
            import amdsmi  # noqa: PLC0415 - optional, and loading it loads libamd_smi.so
        except Exception:  # noqa: BLE001 - ImportError, or OSError from a broken ROCm install
            return None
        try:
            amdsmi.amdsmi_init()
        except Exception as e:  # noqa: BLE001
            log.debug("amdsmi_init failed: %s", e)
            return None
        try:
            handle, detail = cls._find(amdsmi, info)
            if handle is not None:
                return cls(amdsmi, handle, detail)
        except Exception as e:  # noqa: BLE001
            log.debug("amdsmi could not find %s: %s", info.pci_bus_id, e)
        _close_quietly(amdsmi.amdsmi_shut_down)
        return None

    @staticmethod
    def _find(amdsmi: Any, info: DeviceInfo) -> tuple[Any, str]:
        handles = list(amdsmi.amdsmi_get_processor_handles())
        want = pci_key(info.pci_bus_id)
        if want is not None and hasattr(amdsmi, "amdsmi_get_gpu_device_bdf"):
            for h in handles:
                try:
                    bdf = amdsmi.amdsmi_get_gpu_device_bdf(h)
                except Exception:  # noqa: BLE001 - a handle we cannot place is not ours
                    continue
                if pci_key(bdf) == want:
                    return h, f"bdf {bdf}"
            return None, ""
        index = info.index if info.index is not None else 0
        if 0 <= index < len(handles) and _index_is_unambiguous(
            len(handles), ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")
        ):
            return handles[index], f"index {index}"
        return None, ""

    def read(self) -> SensorReading:
        smi, h = self._smi, self._handle
        edge, junction, mem = (
            None if s is None else _temp(lambda s=s: smi.amdsmi_get_temp_metric(h, s, self._current))
            for s in self._sensors
        )
        power = None
        try:
            info = smi.amdsmi_get_power_info(h)
            for key in ("average_socket_power", "current_socket_power"):
                power = _number(info.get(key), 1.0, _POWER_RANGE)
                if power is not None:
                    break
        except Exception:  # noqa: BLE001
            power = None
        busy = _busy(lambda: smi.amdsmi_get_gpu_activity(h)["gfx_activity"])
        return SensorReading(edge, junction, mem, power, busy)

    def close(self) -> None:
        """Release the library (``amdsmi_shut_down``)."""
        _close_quietly(self._smi.amdsmi_shut_down)


class SysfsReader:
    """The amdgpu kernel driver's hwmon files: works on every ROCm version, no library needed.

    ``temp{1,2,3}_input`` (millidegrees C) are edge, junction and mem on amdgpu; their
    ``temp*_label`` files say so and win when present (APUs and old kernels have fewer sensors,
    so position alone could mislabel). Power is ``power1_average`` or, on kernels/cards that only
    have it, ``power1_input`` (microwatts); load is ``device/gpu_busy_percent``.
    """

    source = "sysfs"
    _LABELS = {"edge": "edge", "junction": "junction", "mem": "mem"}
    _POSITIONS = {"edge": 1, "junction": 2, "mem": 3}

    def __init__(self, device_dir: Path, hwmon: Path | None) -> None:
        self.detail = f"{device_dir.resolve().name}: {hwmon or device_dir}"
        self._temps = self._temp_files(hwmon) if hwmon is not None else {}
        self._power = tuple(hwmon / n for n in ("power1_average", "power1_input")) if hwmon is not None else ()
        self._busy = device_dir / "gpu_busy_percent"

    @staticmethod
    def _temp_files(hwmon: Path) -> dict[str, Path]:
        labelled: dict[str, Path] = {}
        labels: set[int] = set()
        for label_file in hwmon.glob("temp*_label"):
            m = re.fullmatch(r"temp(\d+)_label", label_file.name)
            if m is None:
                continue
            labels.add(int(m.group(1)))
            try:
                name = label_file.read_text().strip().lower()
            except OSError:
                continue
            if name in SysfsReader._LABELS:
                labelled[SysfsReader._LABELS[name]] = hwmon / f"temp{m.group(1)}_input"
        out: dict[str, Path] = {}
        for field, pos in SysfsReader._POSITIONS.items():
            if field in labelled:
                out[field] = labelled[field]
            elif pos not in labels:  # a labelled position belongs to whatever its label says
                out[field] = hwmon / f"temp{pos}_input"
        return out

    @classmethod
    def open(cls, info: DeviceInfo, root: str | os.PathLike = "/sys") -> SysfsReader | None:
        """The AMD card whose PCI address is ``info.pci_bus_id``; without an address, the only one.

        None when no card matches, when several AMD cards exist and the address is unknown, or
        when the tree cannot be read.
        """
        try:
            cards = _amd_cards(Path(root) / "class" / "drm")
        except OSError as e:
            log.debug("cannot list DRM cards: %s", e)
            return None
        want = pci_key(info.pci_bus_id)
        if want is not None:
            matches = [d for key, d in cards.items() if key == want]
        else:
            matches = list(cards.values()) if len(cards) == 1 else []
        if not matches:
            return None
        device_dir = matches[0]
        hwmons = sorted((device_dir / "hwmon").glob("hwmon*")) if (device_dir / "hwmon").is_dir() else []
        return cls(device_dir, hwmons[0] if hwmons else None)

    def read(self) -> SensorReading:
        temps = {f: _temp(lambda p=p: _read_int(p), 1e-3) for f, p in self._temps.items()}
        power = None
        for path in self._power:
            power = _power(lambda p=path: _read_int(p), 1e-6)
            if power is not None:
                break
        busy = _busy(lambda: _read_int(self._busy))
        return SensorReading(temps.get("edge"), temps.get("junction"), temps.get("mem"), power, busy)

    def close(self) -> None:
        """Nothing to release; present so callers can close any reader."""


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _amd_cards(drm: Path) -> dict[tuple[int, int, int], Path]:
    """``{pci key: /sys/class/drm/cardN/device}`` for every AMD card (connectors and others skipped)."""
    cards: dict[tuple[int, int, int], Path] = {}
    for card in sorted(drm.iterdir()):
        if not re.fullmatch(r"card\d+", card.name):
            continue
        device_dir = card / "device"
        try:
            if (device_dir / "vendor").read_text().strip().lower() != AMD_VENDOR_ID:
                continue
        except OSError:
            continue
        key = pci_key(device_dir.resolve().name)
        if key is not None:
            cards.setdefault(key, device_dir)
    return cards


class NvmlReader:
    """NVIDIA's NVML through nvidia-ml-py (``import pynvml``).

    Temperature is the GPU core sensor (reported as edge; NVML exposes no hotspot on most
    boards) via ``nvmlDeviceGetTemperatureV`` where the driver has it, else the deprecated
    ``nvmlDeviceGetTemperature``; power is milliwatts; utilization ``.gpu`` percent.
    """

    source = "nvml"

    def __init__(self, nvml: Any, handle: Any, detail: str) -> None:
        self._nvml = nvml
        self._handle = handle
        self.detail = detail

    @classmethod
    def open(cls, info: DeviceInfo) -> NvmlReader | None:
        """A reader for ``info``'s card, or None (no pynvml, no driver, card not found)."""
        try:
            import pynvml  # noqa: PLC0415 - optional dependency
        except Exception:  # noqa: BLE001
            return None
        try:
            pynvml.nvmlInit()
        except Exception as e:  # noqa: BLE001
            log.debug("nvmlInit failed: %s", e)
            return None
        try:
            if info.pci_bus_id is not None:
                # bytes: older nvidia-ml-py passes the argument straight to c_char_p.
                handle = pynvml.nvmlDeviceGetHandleByPciBusId(info.pci_bus_id.encode())
                return cls(pynvml, handle, f"pci {info.pci_bus_id}")
            index = info.index if info.index is not None else 0
            count = int(pynvml.nvmlDeviceGetCount())
            pci_order = os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID"
            if 0 <= index < count and (
                count == 1 or (pci_order and _index_is_unambiguous(count, ("CUDA_VISIBLE_DEVICES",)))
            ):
                return cls(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index), f"index {index}")
        except Exception as e:  # noqa: BLE001
            log.debug("NVML could not find %s: %s", info.pci_bus_id, e)
        _close_quietly(pynvml.nvmlShutdown)
        return None

    def _temperature(self) -> Any:
        nvml, h = self._nvml, self._handle
        sensor = nvml.NVML_TEMPERATURE_GPU
        if hasattr(nvml, "nvmlDeviceGetTemperatureV"):
            try:
                return nvml.nvmlDeviceGetTemperatureV(h, sensor)
            except Exception:  # noqa: BLE001 - driver older than the binding: use the old call
                pass
        return nvml.nvmlDeviceGetTemperature(h, sensor)

    def read(self) -> SensorReading:
        nvml, h = self._nvml, self._handle
        edge = _temp(self._temperature)
        power = _power(lambda: nvml.nvmlDeviceGetPowerUsage(h), 1e-3)
        busy = _busy(lambda: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
        return SensorReading(edge_c=edge, power_w=power, busy_pct=busy)

    def close(self) -> None:
        """Release the library (``nvmlShutdown``)."""
        _close_quietly(self._nvml.nvmlShutdown)


def _close_quietly(shutdown: Callable[[], Any]) -> None:
    try:
        shutdown()
    except Exception as e:  # noqa: BLE001 - shutting a sensor library down is best effort
        log.debug("sensor library shutdown failed: %s", e)


def open_reader(
    info: DeviceInfo, sysfs_root: str | os.PathLike = "/sys"
) -> AmdSmiReader | SysfsReader | NvmlReader | NullReader:
    """The best sensor source for ``info``: amdsmi, then sysfs (AMD); NVML (NVIDIA); else null.

    amdsmi comes first because it also covers sensors the hwmon files lack on some cards; sysfs
    needs nothing installed, which is the common RDNA1 case. A :class:`NullReader` says in
    ``detail`` which sources were tried, for the doctor.
    """
    if info.backend == "rocm":
        reader = AmdSmiReader.open(info) or SysfsReader.open(info, sysfs_root)
        tried = "amdsmi (not installed or card not found), sysfs hwmon (no AMD card matched)"
    elif info.backend == "cuda":
        reader = NvmlReader.open(info)
        tried = "NVML (nvidia-ml-py not installed or card not found)"
    else:
        return NullReader(f"no GPU sensors for backend {info.backend!r}")
    if reader is not None:
        return reader
    at = f" at {info.pci_bus_id}" if info.pci_bus_id else ""
    return NullReader(f"tried {tried}{at}")
