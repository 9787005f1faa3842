"""yolo_rdna1.telemetry.readers against fakes of the documented interfaces.

No GPU here: sysfs is a fake tree laid out like /sys/class/drm (cardN/device symlinks into a PCI
device directory, hwmon below it), and amdsmi / pynvml are fake modules put in sys.modules with
the functions and enums the readers use. "Not installed" is sys.modules[name] = None.
"""

from __future__ import annotations

import enum
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from yolo_rdna1.device import DeviceInfo, base_arch
from yolo_rdna1.telemetry import (
    AmdSmiReader,
    NullReader,
    NvmlReader,
    SensorReading,
    SysfsReader,
    open_reader,
)
from yolo_rdna1.telemetry.readers import pci_key

CARD_A = "0000:03:00.0"  # first AMD card (cardN numbering puts it second)
CARD_B = "0000:0a:00.0"  # second AMD card
INTEL = "0000:00:02.0"


def make_info(
    backend: str = "rocm", index: int | None = 0, pci: str | None = CARD_A, arch: str | None = "gfx1010:xnack-"
) -> DeviceInfo:
    return DeviceInfo(
        backend=backend,
        index=index,
        name="AMD Radeon RX 5600 XT" if backend == "rocm" else "NVIDIA Test",
        arch=arch,
        effective_arch=base_arch(arch),
        hsa_override=None,
        runtime_version="6.2.41133",
        conv_library="miopen" if backend == "rocm" else "cudnn",
        conv_library_version="3.2.0",
        torch_version=str(torch.__version__),
        ultralytics_version=None,
        pci_bus_id=pci,
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def add_card(
    root: Path,
    card: int,
    pci: str,
    vendor: str = "0x1002",
    temps: dict[int, int] | None = None,
    labels: dict[int, str] | None = None,
    power_average: int | None = None,
    power_input: int | None = None,
    busy: int | None = None,
    hwmon: int | None = 0,
) -> Path:
    """A /sys/class/drm/card<card> entry whose ``device`` links to /sys/devices/.../<pci>."""
    device_dir = root / "devices" / "pci0000:00" / pci
    _write(device_dir / "vendor", vendor)
    if busy is not None:
        _write(device_dir / "gpu_busy_percent", str(busy))
    if hwmon is not None:
        mon = device_dir / "hwmon" / f"hwmon{hwmon}"
        _write(mon / "name", "amdgpu")
        for n, milli in (temps or {}).items():
            _write(mon / f"temp{n}_input", str(milli))
        for n, label in (labels or {}).items():
            _write(mon / f"temp{n}_label", label)
        if power_average is not None:
            _write(mon / "power1_average", str(power_average))
        if power_input is not None:
            _write(mon / "power1_input", str(power_input))
    card_dir = root / "class" / "drm" / f"card{card}"
    card_dir.mkdir(parents=True)
    os.symlink(os.path.relpath(device_dir, card_dir), card_dir / "device")
    return device_dir


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """Intel iGPU as card0, AMD 0a:00.0 as card1, AMD 03:00.0 as card2, plus a connector entry."""
    root = tmp_path / "sys"
    add_card(root, 0, INTEL, vendor="0x8086", temps={1: 99000})
    add_card(
        root,
        1,
        CARD_B,
        temps={1: 40000, 2: 45000, 3: 48000},
        labels={1: "edge", 2: "junction", 3: "mem"},
        power_average=80_000_000,
        busy=12,
    )
    add_card(
        root,
        2,
        CARD_A,
        temps={1: 73000, 2: 83000, 3: 70000},
        labels={1: "edge", 2: "junction", 3: "mem"},
        power_average=150_500_000,
        busy=98,
    )
    (root / "class" / "drm" / "card1-DP-1").mkdir()  # connectors live beside cards, no vendor file
    (root / "class" / "drm" / "renderD128").mkdir()
    return root


@pytest.fixture(autouse=True)
def _no_vendor_libs(monkeypatch):
    """Neither amdsmi nor pynvml importable unless a test installs a fake."""
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    for var in (
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "CUDA_VISIBLE_DEVICES",
        "GPU_DEVICE_ORDINAL",
        "CUDA_DEVICE_ORDER",
    ):
        monkeypatch.delenv(var, raising=False)


# -- PCI addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, key",
    [
        ("0000:03:00.0", (0, 3, 0)),
        ("00000000:03:00.0", (0, 3, 0)),
        (b"00000001:0A:1f.1", (1, 10, 31)),
        ("03:00.0", (0, 3, 0)),
        ("not a bus", None),
        (None, None),
    ],
)
def test_pci_key_spellings(text: Any, key: Any) -> None:
    assert pci_key(text) == key


# -- sysfs ------------------------------------------------------------------------------------


def test_sysfs_picks_the_card_by_pci_address_not_index(sysfs: Path) -> None:
    # torch index 0 is CARD_A, which is card2 in DRM numbering: index must not matter.
    a = SysfsReader.open(make_info(index=0, pci=CARD_A), root=sysfs)
    b = SysfsReader.open(make_info(index=0, pci=CARD_B), root=sysfs)
    assert a is not None and b is not None
    assert a.read() == SensorReading(73.0, 83.0, 70.0, 150.5, 98.0)
    assert b.read() == SensorReading(40.0, 45.0, 48.0, 80.0, 12.0)
    assert a.source == "sysfs" and CARD_A in a.detail


def test_sysfs_pci_without_function_and_long_domain_match(sysfs: Path) -> None:
    reader = SysfsReader.open(make_info(pci="00000000:03:00.0"), root=sysfs)
    assert reader is not None and reader.read().junction_c == 83.0


def test_sysfs_unknown_address_or_intel_only_gives_none(sysfs: Path) -> None:
    assert SysfsReader.open(make_info(pci="0000:0b:00.0"), root=sysfs) is None
    assert SysfsReader.open(make_info(pci=INTEL), root=sysfs) is None  # not an AMD card
    assert SysfsReader.open(make_info(), root=sysfs / "missing") is None


def test_sysfs_without_address_needs_exactly_one_amd_card(sysfs: Path, tmp_path: Path) -> None:
    assert SysfsReader.open(make_info(pci=None), root=sysfs) is None  # two AMD cards: ambiguous
    single = tmp_path / "single"
    add_card(single, 0, INTEL, vendor="0x8086", temps={1: 99000})
    add_card(single, 1, CARD_B, temps={1: 61000}, busy=50)
    reader = SysfsReader.open(make_info(pci=None, index=3), root=single)
    assert reader is not None
    assert reader.read().edge_c == 61.0 and reader.read().busy_pct == 50.0


def test_sysfs_labels_win_over_positions(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    add_card(root, 0, CARD_A, temps={1: 90000, 2: 60000, 3: 70000}, labels={1: "junction", 2: "edge", 3: "mem"})
    reading = SysfsReader.open(make_info(), root=root).read()
    assert (reading.edge_c, reading.junction_c, reading.mem_c) == (60.0, 90.0, 70.0)


def test_sysfs_positions_without_labels_and_partial_labels(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    add_card(root, 0, CARD_A, temps={1: 50000, 2: 55000, 3: 52000})
    assert SysfsReader.open(make_info(), root=root).read()[:3] == (50.0, 55.0, 52.0)

    # An APU-like node: temp1 labelled edge, no junction/mem labels, no temp2/3 files.
    root2 = tmp_path / "sys2"
    add_card(root2, 0, CARD_A, temps={1: 47000}, labels={1: "edge"})
    assert SysfsReader.open(make_info(), root=root2).read()[:3] == (47.0, None, None)


def test_sysfs_power_fallbacks_and_missing_power(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    add_card(root, 0, CARD_A, temps={1: 50000}, power_input=120_000_000)
    assert SysfsReader.open(make_info(), root=root).read().power_w == 120.0

    root2 = tmp_path / "sys2"
    add_card(root2, 0, CARD_A, temps={1: 50000}, power_average=100_000_000, power_input=120_000_000)
    assert SysfsReader.open(make_info(), root=root2).read().power_w == 100.0

    root3 = tmp_path / "sys3"
    add_card(root3, 0, CARD_A, temps={1: 50000})
    reading = SysfsReader.open(make_info(), root=root3).read()
    assert reading.power_w is None and reading.busy_pct is None and reading.edge_c == 50.0


def test_sysfs_bad_or_vanished_files_are_none_never_raise(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    device_dir = add_card(root, 0, CARD_A, temps={1: 50000, 2: 60000, 3: 55000}, power_average=90_000_000, busy=40)
    reader = SysfsReader.open(make_info(), root=root)
    mon = device_dir / "hwmon" / "hwmon0"
    (mon / "temp2_input").write_text("garbage\n")
    (mon / "temp3_input").unlink()
    (mon / "power1_average").write_text("4294967295000000\n")  # far beyond any card: a sentinel
    (device_dir / "gpu_busy_percent").unlink()
    assert reader.read() == SensorReading(50.0, None, None, None, None)


def test_sysfs_card_without_hwmon_still_reads_busy(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    add_card(root, 0, CARD_A, busy=77, hwmon=None)
    assert SysfsReader.open(make_info(), root=root).read() == SensorReading(busy_pct=77.0)


# -- amdsmi -----------------------------------------------------------------------------------


class AmdSmiLibraryException(Exception):
    pass


def fake_amdsmi(
    bdfs: dict[str, str],
    temps: dict[tuple[str, str], Any],
    power: dict[str, Any],
    activity: dict[str, Any],
    init_error: bool = False,
    with_bdf: bool = True,
) -> types.ModuleType:
    """A module with the names the reader uses, shaped like amdsmi's Python interface (ROCm 6)."""
    mod = types.ModuleType("amdsmi")
    mod.AmdSmiTemperatureType = enum.IntEnum(
        "AmdSmiTemperatureType", {"EDGE": 0, "HOTSPOT": 1, "JUNCTION": 1, "VRAM": 2}
    )
    mod.AmdSmiTemperatureMetric = enum.IntEnum("AmdSmiTemperatureMetric", {"CURRENT": 0, "MAX": 1})
    mod.calls = []

    def amdsmi_init(flag: int = 0) -> None:
        mod.calls.append("init")
        if init_error:
            raise AmdSmiLibraryException("AMDSMI_STATUS_DRIVER_NOT_LOADED")

    def amdsmi_shut_down() -> None:
        mod.calls.append("shut_down")

    def amdsmi_get_temp_metric(h: str, sensor: enum.IntEnum, metric: enum.IntEnum) -> int:
        assert metric == mod.AmdSmiTemperatureMetric.CURRENT
        value = temps.get((h, sensor.name))
        if value is None:
            raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_SUPPORTED")
        return value

    def amdsmi_get_power_info(h: str) -> dict[str, Any]:
        if h not in power:
            raise AmdSmiLibraryException("AMDSMI_STATUS_NOT_SUPPORTED")
        return power[h]

    mod.amdsmi_init = amdsmi_init
    mod.amdsmi_shut_down = amdsmi_shut_down
    mod.amdsmi_get_processor_handles = lambda: list(bdfs)
    if with_bdf:
        mod.amdsmi_get_gpu_device_bdf = lambda h: bdfs[h]
    mod.amdsmi_get_temp_metric = amdsmi_get_temp_metric
    mod.amdsmi_get_power_info = amdsmi_get_power_info
    mod.amdsmi_get_gpu_activity = lambda h: activity[h]
    return mod


TWO_CARDS = {"h0": CARD_B, "h1": CARD_A}
SMI_TEMPS = {("h0", "EDGE"): 41, ("h0", "HOTSPOT"): 44, ("h1", "EDGE"): 73, ("h1", "HOTSPOT"): 83, ("h1", "VRAM"): 70}


def test_amdsmi_matches_by_bdf_and_reads_every_field(monkeypatch) -> None:
    smi = fake_amdsmi(
        TWO_CARDS,
        SMI_TEMPS,
        power={"h1": {"current_socket_power": "N/A", "average_socket_power": 151, "gfx_voltage": 1100}},
        activity={"h1": {"gfx_activity": 98, "umc_activity": 40, "mm_activity": "N/A"}},
    )
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    reader = AmdSmiReader.open(make_info(index=0, pci=CARD_A))  # torch index 0 is handle h1
    assert reader is not None and reader.source == "amdsmi"
    assert reader.read() == SensorReading(73.0, 83.0, 70.0, 151.0, 98.0)
    reader.close()
    assert smi.calls == ["init", "shut_down"]


def test_amdsmi_missing_and_failing_fields_are_none(monkeypatch) -> None:
    smi = fake_amdsmi(
        TWO_CARDS,
        SMI_TEMPS,
        power={"h0": {"average_socket_power": 0xFFFFFFFF, "current_socket_power": 140}},
        activity={"h0": {"gfx_activity": "N/A"}},
    )
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    reading = AmdSmiReader.open(make_info(pci=CARD_B)).read()
    # VRAM not supported (raises), average power a UINT32_MAX sentinel, activity "N/A".
    assert reading == SensorReading(41.0, 44.0, None, 140.0, None)

    smi2 = fake_amdsmi(TWO_CARDS, {}, power={"h0": {}}, activity={})
    monkeypatch.setitem(sys.modules, "amdsmi", smi2)
    assert AmdSmiReader.open(make_info(pci=CARD_B)).read() == SensorReading()


def test_amdsmi_unavailable_or_card_missing_gives_none(monkeypatch) -> None:
    assert AmdSmiReader.open(make_info()) is None  # not installed
    smi = fake_amdsmi(TWO_CARDS, SMI_TEMPS, {}, {}, init_error=True)
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    assert AmdSmiReader.open(make_info()) is None
    smi = fake_amdsmi(TWO_CARDS, SMI_TEMPS, {}, {})
    monkeypatch.setitem(sys.modules, "amdsmi", smi)
    assert AmdSmiReader.open(make_info(pci="0000:0b:00.0")) is None
    assert smi.calls == ["init", "shut_down"]  # a reader that did not open releases the library


def test_amdsmi_index_only_when_unambiguous(monkeypatch) -> None:
    one = fake_amdsmi({"h0": CARD_A}, SMI_TEMPS | {("h0", "EDGE"): 55}, {}, {}, with_bdf=False)
    monkeypatch.setitem(sys.modules, "amdsmi", one)
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    assert AmdSmiReader.open(make_info(pci=None)).read().edge_c == 55.0  # one card: it is ours

    two = fake_amdsmi(TWO_CARDS, SMI_TEMPS, {}, {})
    monkeypatch.setitem(sys.modules, "amdsmi", two)
    assert AmdSmiReader.open(make_info(pci=None, index=1)) is None  # masked: index 1 is not h1
    monkeypatch.delenv("HIP_VISIBLE_DEVICES")
    assert AmdSmiReader.open(make_info(pci=None, index=1)).read().junction_c == 83.0


# -- NVML -------------------------------------------------------------------------------------


class NVMLError(Exception):
    pass


def fake_pynvml(with_v: bool = True, v_fails: bool = False, count: int = 2) -> types.ModuleType:
    """The nvidia-ml-py names the reader uses; handles are PCI strings."""
    mod = types.ModuleType("pynvml")
    mod.NVML_TEMPERATURE_GPU = 0
    mod.calls = []
    mod.nvmlInit = lambda: mod.calls.append("init")
    mod.nvmlShutdown = lambda: mod.calls.append("shutdown")
    mod.nvmlDeviceGetCount = lambda: count

    def by_pci(bus: bytes) -> str:
        assert isinstance(bus, bytes)
        mod.calls.append(bus)
        if bus != b"0000:01:00.0":
            raise NVMLError("NVML_ERROR_NOT_FOUND")
        return "h01"

    def temp_v(h: str, sensor: int) -> int:
        if v_fails:
            raise NVMLError("NVML_ERROR_FUNCTION_NOT_FOUND")
        return 66

    mod.nvmlDeviceGetHandleByPciBusId = by_pci
    mod.nvmlDeviceGetHandleByIndex = lambda i: f"idx{i}"
    if with_v:
        mod.nvmlDeviceGetTemperatureV = temp_v
    mod.nvmlDeviceGetTemperature = lambda h, sensor: 61
    mod.nvmlDeviceGetPowerUsage = lambda h: 123_456
    mod.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=88, memory=30)
    return mod


def cuda_info(pci: str | None = "0000:01:00.0", index: int = 0) -> DeviceInfo:
    return make_info(backend="cuda", pci=pci, index=index, arch="sm_89")


@pytest.mark.parametrize("with_v, v_fails, temp", [(True, False, 66.0), (False, False, 61.0), (True, True, 61.0)])
def test_nvml_reads_by_pci(monkeypatch, with_v: bool, v_fails: bool, temp: float) -> None:
    nvml = fake_pynvml(with_v=with_v, v_fails=v_fails)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    reader = NvmlReader.open(cuda_info())
    assert reader is not None and reader.source == "nvml"
    assert reader.read() == SensorReading(edge_c=temp, power_w=123.456, busy_pct=88.0)
    reader.close()
    assert nvml.calls == ["init", b"0000:01:00.0", "shutdown"]


def test_nvml_unknown_card_and_ambiguous_index(monkeypatch) -> None:
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert NvmlReader.open(cuda_info(pci="0000:02:00.0")) is None
    assert NvmlReader.open(cuda_info(pci=None, index=1)) is None  # CUDA order is not NVML's order
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert NvmlReader.open(cuda_info(pci=None, index=1)).detail == "index 1"
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=1))
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    assert NvmlReader.open(cuda_info(pci=None, index=0)) is not None


# -- open_reader ------------------------------------------------------------------------------


def test_open_reader_order(monkeypatch, sysfs: Path) -> None:
    # Nothing installed: sysfs for AMD, null for NVIDIA and CPU.
    assert isinstance(open_reader(make_info(pci=CARD_A), sysfs_root=sysfs), SysfsReader)
    null = open_reader(cuda_info(), sysfs_root=sysfs)
    assert isinstance(null, NullReader) and null.read() == SensorReading() and "NVML" in null.detail
    cpu = open_reader(make_info(backend="cpu", index=None, pci=None, arch=None))
    assert isinstance(cpu, NullReader) and cpu.source == "none"

    # amdsmi wins over sysfs when it knows the card; sysfs is never used for NVIDIA.
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(TWO_CARDS, SMI_TEMPS, {}, {}))
    assert open_reader(make_info(pci=CARD_A), sysfs_root=sysfs).source == "amdsmi"
    assert open_reader(make_info(pci="0000:0b:00.0"), sysfs_root=sysfs).source == "none"
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    assert open_reader(cuda_info(), sysfs_root=sysfs).source == "nvml"
