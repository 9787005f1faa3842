"""yolo_rdna1.doctor: the real CPU machine, fake ROCm devices, a fake MIOpen user db, failures.

ROCm findings are exercised by replacing the doctor's ``describe_device``/``_torch_arch_list``/
``open_reader`` with fakes of what they return on an RX 5600 XT; HOME points at tmp_path so the
developer's own ~/.config/miopen never leaks in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from yolo_rdna1 import doctor
from yolo_rdna1.cli import main as cli_main
from yolo_rdna1.device import DeviceInfo, base_arch, override_to_arch
from yolo_rdna1.telemetry import NullReader, SensorReading


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path: Path):
    for key in list(os.environ):
        if key.startswith(
            ("HSA_", "MIOPEN_", "HIP_", "ROCR_", "AMD_", "PYTORCH_HIP", "PYTORCH_MIOPEN", "YOLO_RDNA1_FAULTS")
        ):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def rx5600(override: str | None = None) -> DeviceInfo:
    arch = "gfx1010:xnack-"
    return DeviceInfo(
        backend="rocm",
        index=0,
        name="AMD Radeon RX 5600 XT",
        arch=arch,
        effective_arch=override_to_arch(override) if override else base_arch(arch),
        hsa_override=override,
        runtime_version="6.2.41133",
        conv_library="miopen",
        conv_library_version="3.2.0",
        torch_version=str(torch.__version__),
        ultralytics_version="8.4.190",
        pci_bus_id="0000:03:00.0",
    )


class FakeReader:
    source = "sysfs"
    detail = "0000:03:00.0: /sys/class/drm/card1/device/hwmon/hwmon2"

    def read(self) -> SensorReading:
        return SensorReading(73.0, 83.0, 70.0, 150.0, 98.0)

    def close(self) -> None:
        pass


def fake_rocm(monkeypatch, info: DeviceInfo, archs: list[str], reader: Any = None) -> None:
    monkeypatch.setattr(doctor, "describe_device", lambda device=None: info)
    monkeypatch.setattr(doctor, "_torch_arch_list", lambda: archs)
    monkeypatch.setattr(doctor, "open_reader", lambda i: reader or FakeReader())


def has(report: dict[str, Any], text: str, level: str | None = None) -> bool:
    return any(
        text in f["finding"] + " " + f["fix"] and (level is None or f["level"] == level) for f in report["findings"]
    )


# -- this machine -----------------------------------------------------------------------------


def test_cpu_machine_report(capsys) -> None:
    report = doctor.collect()
    assert report["device"]["backend"] == "cpu"
    assert report["versions"]["torch"] == str(torch.__version__)
    assert report["sensors"]["source"] == "none"
    assert report["faults"] == {"state": "off"}
    assert report["miopen"]["user_db"]["exists"] is False
    assert report["errors"] == {}
    assert has(report, "sees no GPU", "info")

    assert doctor.print_doctor("cpu") == 0
    out = capsys.readouterr().out
    assert "Device" in out and "cpu" in out and "Could not read" not in out
    assert "user db" in out and "does not exist" in out


def test_gpu_that_is_not_there_is_reported_not_raised(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    report = doctor.collect(0)
    assert report["device"] is None and "is_available" in report["errors"]["device"]
    assert doctor.print_doctor(0) == 0
    out = capsys.readouterr().out
    assert "could not read: RuntimeError" in out and "Versions" in out


def test_cli_doctor(capsys) -> None:
    assert cli_main(["doctor", "device=cpu"]) == 0
    assert "yolo-rdna1 doctor" in capsys.readouterr().out


# -- env, databases, recommendations ----------------------------------------------------------


def test_env_vars_user_db_and_find_db_recommendation(monkeypatch, tmp_path: Path, capsys) -> None:
    db = tmp_path / "miopen db"
    db.mkdir()
    (db / "gfx1030_18.HIP.3_2_0_0.ufdb.txt").write_text("x" * 100)
    (db / "gfx1030_18.HIP.3_2_0_0.udb.txt").write_text("y" * 50)
    cache = tmp_path / "kcache"
    (cache / "3.2.0").mkdir(parents=True)
    (cache / "3.2.0" / "k.o").write_bytes(b"z" * 2048)
    monkeypatch.setenv("MIOPEN_USER_DB_PATH", str(db))
    monkeypatch.setenv("MIOPEN_CUSTOM_CACHE_DIR", str(cache))
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    monkeypatch.setenv("MIOPEN_DEBUG_CONV_GEMM", "0")
    monkeypatch.setenv("MIOPEN_FIND_ENFORCE", "3")

    report = doctor.collect("cpu")
    user_db, kcache = report["miopen"]["user_db"], report["miopen"]["kernel_cache"]
    assert (user_db["path"], user_db["set_by"], user_db["files"], user_db["bytes"]) == (
        str(db),
        "MIOPEN_USER_DB_PATH",
        2,
        150,
    )
    assert user_db["find_db"] == ["gfx1030_18.HIP.3_2_0_0.ufdb.txt"]
    assert (kcache["files"], kcache["bytes"]) == (1, 2048)
    assert report["env"] == {
        "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
        "MIOPEN_CUSTOM_CACHE_DIR": str(cache),
        "MIOPEN_DEBUG_CONV_GEMM": "0",
        "MIOPEN_FIND_ENFORCE": "3",
        "MIOPEN_USER_DB_PATH": str(db),
    }
    assert has(report, f"rm -f '{db}'/*.ufdb.txt", "warn")
    assert has(report, "unset MIOPEN_FIND_ENFORCE", "warn")
    assert has(report, "MIOPEN_DEBUG_CONV_GEMM=0", "info")

    doctor.print_doctor("cpu")
    out = capsys.readouterr().out
    for text in (
        "HSA_OVERRIDE_GFX_VERSION=10.3.0",
        "MIOPEN_DEBUG_CONV_GEMM=0",
        str(db),
        "2 files, 150 B",
        "gfx1030_18.HIP.3_2_0_0.ufdb.txt",
        f"rm -f '{db}'/*.ufdb.txt",
        "2.0 KiB",
    ):
        assert text in out, text


def test_default_db_locations_under_home(tmp_path: Path) -> None:
    home_db = tmp_path / "home" / ".config" / "miopen"
    home_db.mkdir(parents=True)
    (home_db / "gfx1030_18.ufdb.txt").write_text("row")
    report = doctor.collect("cpu")
    assert report["miopen"]["user_db"]["path"] == str(home_db)
    assert report["miopen"]["user_db"]["set_by"] == "default"
    assert report["miopen"]["kernel_cache"] == {
        "path": str(tmp_path / "home" / ".cache" / "miopen"),
        "set_by": "default",
        "exists": False,
    }
    assert has(report, "*.ufdb.txt", "warn")


def test_fault_simulator_state(monkeypatch) -> None:
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", "gfx1010")
    faults = doctor.collect("cpu")["faults"]
    assert faults["state"] == "on" and faults["rules"] > 0
    monkeypatch.setenv("YOLO_RDNA1_FAULTS", "no-such-profile")
    faults = doctor.collect("cpu")["faults"]
    assert faults["state"] == "invalid" and "no-such-profile" in faults["error"]
    assert "INVALID YOLO_RDNA1_FAULTS" in doctor.format_report(doctor.collect("cpu"))


def test_invalid_override_value(monkeypatch) -> None:
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3")
    assert has(doctor.collect("cpu"), "HSA_OVERRIDE_GFX_VERSION='10.3' is not a major.minor.stepping", "warn")


# -- fake RX 5600 XT --------------------------------------------------------------------------


def test_rdna1_with_override_recommends_amp_off_and_flags_the_override(monkeypatch, capsys) -> None:
    fake_rocm(monkeypatch, rx5600("10.3.0"), ["gfx900", "gfx906", "gfx1030", "gfx1100"])
    report = doctor.collect()
    assert has(report, "amp=False", "warn")
    assert has(report, "HSA_OVERRIDE_GFX_VERSION=10.3.0 runs gfx1030 code on a gfx1010: risky", "warn")
    assert not has(report, "invalid device function")  # the wheel has gfx1030 code
    assert report["sensors"]["reading"]["junction_c"] == 83.0
    doctor.print_doctor()
    out = capsys.readouterr().out
    for text in (
        "gfx1010:xnack- (effective gfx1030, HSA_OVERRIDE_GFX_VERSION=10.3.0)",
        "RDNA1         yes",
        "conv library  miopen 3.2.0",
        "sysfs (0000:03:00.0",
        "junction 83 C",
        "power 150 W",
        "[WARN]",
    ):
        assert text in out, text


def test_rdna1_without_override_on_a_wheel_without_gfx1010(monkeypatch) -> None:
    fake_rocm(monkeypatch, rx5600(), ["gfx900", "gfx1030", "gfx1100"], reader=NullReader("tried amdsmi, sysfs"))
    report = doctor.collect()
    bad = [f for f in report["findings"] if f["level"] == "bad"]
    assert len(bad) == 1 and "HIP error: invalid device function" in bad[0]["finding"]
    assert "gfx101X" in bad[0]["fix"] and "HSA_OVERRIDE_GFX_VERSION=10.3.0" in bad[0]["fix"]
    assert report["findings"][0] is bad[0]  # worst first
    assert has(report, "no GPU sensors", "info")


def test_rdna1_on_a_wheel_with_gfx1010(monkeypatch) -> None:
    fake_rocm(monkeypatch, rx5600(), ["gfx1010", "gfx1030"])
    report = doctor.collect()
    assert not has(report, "invalid device function") and not has(report, "risky")
    assert has(report, "amp=False", "warn")  # fp16 is bad on gfx1010 whatever the wheel


# -- failures become "could not read" ---------------------------------------------------------


def test_every_section_failing_still_reports(monkeypatch, capsys) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError("simulated failure")

    fake_rocm(monkeypatch, rx5600(), [])
    monkeypatch.setattr(doctor, "_miopen_dirs", boom)
    monkeypatch.setattr(doctor, "_torch_arch_list", boom)
    monkeypatch.setattr(doctor, "open_reader", boom)
    monkeypatch.setattr(doctor, "rocm_env_summary", boom)
    monkeypatch.setattr(doctor, "_versions", boom)
    report = doctor.collect()
    assert set(report["errors"]) == {"miopen", "code objects", "sensors", "env", "versions"}
    assert all("simulated failure" in v for v in report["errors"].values())
    assert has(report, "amp=False")  # what could be read is still diagnosed
    assert doctor.print_doctor() == 0
    out = capsys.readouterr().out
    assert out.count("could not read: OSError: simulated failure") == 4  # versions, miopen, env, sensors
    assert "Could not read" in out and "code objects: OSError" in out


def test_format_report_survives_a_malformed_dict() -> None:
    text = doctor.format_report(
        {"device": {"backend": "rocm"}, "miopen": {}, "findings": [{"level": "warn"}], "errors": {}}
    )
    assert "could not show" in text and "could not show a finding" in text
