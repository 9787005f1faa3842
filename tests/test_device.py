"""yolo_rdna1.device: device description, fingerprints and routing defaults.

The machine running these tests has no GPU, so every ROCm/CUDA path runs against fakes of the
documented interfaces: torch.version.hip/cuda, torch.cuda.* and a fake KFD sysfs tree laid out
like /sys/class/kfd/kfd/topology/nodes (CPU node 0, GPU nodes after it).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch

from yolo_rdna1 import device as dv
from yolo_rdna1.device import (
    DeviceInfo,
    base_arch,
    clear_cache,
    describe_device,
    override_to_arch,
    parse_device,
    rocm_env_summary,
    routes_by_default,
)

HIP = "6.2.41133-dd7f95766"
RX5600 = "AMD Radeon RX 5600 XT"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Fresh caches, no ROCm env vars from the host, and an empty KFD tree unless a test adds one."""
    clear_cache()
    for key in list(os.environ):
        if key.startswith(("HSA_", "MIOPEN_", "HIP_", "ROCR_", "AMD_", "PYTORCH_HIP", "PYTORCH_MIOPEN")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(dv, "_KFD_NODES", tmp_path / "no-kfd")
    monkeypatch.setattr(dv, "_DRI_DIR", tmp_path / "no-dri")
    yield
    clear_cache()


def amd_props(
    name: str = RX5600, arch: str | None = "gfx1010:xnack-", bus: int | None = 3, **extra: Any
) -> SimpleNamespace:
    fields: dict[str, Any] = {"name": name, "major": 10, "minor": 1, "total_memory": 6 << 30, **extra}
    if arch is not None:
        fields["gcnArchName"] = arch
    if bus is not None:
        fields.update(pci_bus_id=bus, pci_device_id=0, pci_domain_id=0)
    return SimpleNamespace(**fields)


@pytest.fixture
def fake_gpus(monkeypatch) -> Callable[..., None]:
    """Install fake GPUs: ``fake_gpus([props, ...], hip=..., cuda=..., conv=...)``."""

    def install(
        props: list[SimpleNamespace],
        hip: str | None = HIP,
        cuda: str | None = None,
        conv: Any = 3002000,
        current: int = 0,
    ) -> None:
        monkeypatch.setattr(torch.version, "hip", hip, raising=False)
        monkeypatch.setattr(torch.version, "cuda", cuda, raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(props))
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props[int(i)])
        if callable(conv):
            monkeypatch.setattr(torch.backends.cudnn, "version", conv)
        else:
            monkeypatch.setattr(torch.backends.cudnn, "version", lambda: conv)
        clear_cache()

    return install


@pytest.fixture
def kfd(monkeypatch, tmp_path) -> Callable[..., None]:
    """Write a fake KFD topology: node 0 is the CPU, then one node per (gfx_target_version, bus)."""

    def build(gpus: list[tuple[int, int]], hidden: tuple[int, ...] = ()) -> None:
        root, dri = tmp_path / "kfd", tmp_path / "dri"
        (root / "0").mkdir(parents=True)
        (root / "0" / "gpu_id").write_text("0\n")
        (root / "0" / "properties").write_text("cpu_cores_count 16\nsimd_count 0\ngfx_target_version 0\n")
        dri.mkdir()
        for i, (gfxv, bus) in enumerate(gpus, start=1):
            node = root / str(i)
            node.mkdir()
            (node / "gpu_id").write_text(f"{4000 + i}\n")
            minor = 127 + i
            (node / "properties").write_text(
                "cpu_cores_count 0\nsimd_count 72\n"
                f"gfx_target_version {gfxv}\nvendor_id 4098\ndevice_id 29471\n"
                f"location_id {bus << 8}\ndomain 0\ndrm_render_minor {minor}\n"
            )
            if i not in hidden:
                (dri / f"renderD{minor}").write_text("")
        monkeypatch.setattr(dv, "_KFD_NODES", root)
        monkeypatch.setattr(dv, "_DRI_DIR", dri)
        clear_cache()

    return build


# -- CPU (the real machine) ---------------------------------------------------------------------


def test_cpu_describe_is_stable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = describe_device()
    assert info.backend == "cpu" and info.index is None and info.name == "cpu"
    assert info.arch is None and info.effective_arch is None and info.conv_library is None
    assert info.torch_version == str(torch.__version__)
    assert info.ultralytics_version == importlib.metadata.version("ultralytics")
    assert describe_device("cpu") is info  # cached per normalized device
    fp = info.fingerprint
    clear_cache()
    again = describe_device(torch.device("cpu"))
    assert again is not info and again.fingerprint == fp
    assert fp.startswith("cpu|") and "torch=" + ".".join(str(torch.__version__).split(".")[:2]) in fp
    assert "None" not in fp and "cuda" not in fp and info.ultralytics_version not in fp
    assert not info.is_rdna1 and routes_by_default(info) is False


def test_as_dict_is_json_ready():
    info = describe_device("cpu")
    d = info.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["fingerprint"] == info.fingerprint and d["backend"] == "cpu" and d["is_rdna1"] is False


def test_import_is_cheap_and_describe_does_not_import_ultralytics(run_child):
    code = (
        "import sys, yolo_rdna1.device as d; a = 'ultralytics' in sys.modules; "
        "d.describe_device('cpu'); print(a, 'ultralytics' in sys.modules)"
    )
    out = run_child(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# -- ROCm fakes ---------------------------------------------------------------------------------


def test_rocm_rdna1_without_override(fake_gpus):
    fake_gpus([amd_props()])
    info = describe_device(0)
    assert info.backend == "rocm" and info.index == 0 and info.name == RX5600
    assert info.arch == "gfx1010:xnack-" and info.effective_arch == "gfx1010" and info.hsa_override is None
    assert info.runtime_version == HIP
    assert info.conv_library == "miopen" and info.conv_library_version == "3.2.0"
    assert info.pci_bus_id == "0000:03:00.0"
    assert info.is_rdna1 and routes_by_default(info) is True
    assert info.fingerprint == (
        f"rocm|{RX5600}|eff=gfx1010|arch=gfx1010:xnack-|hip={HIP}|miopen=3.2.0|torch="
        + ".".join(str(torch.__version__).split(".")[:2])
    )


def test_rocm_override_changes_effective_arch_and_fingerprint(fake_gpus, monkeypatch):
    fake_gpus([amd_props()])
    plain = describe_device(0)
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    clear_cache()
    over = describe_device(0)
    assert over.effective_arch == "gfx1030" and over.hsa_override == "10.3.0"
    assert over.arch == "gfx1010:xnack-" and over.is_rdna1 and routes_by_default(over) is True
    assert over.fingerprint != plain.fingerprint and "eff=gfx1030" in over.fingerprint


def test_override_hides_arch_kfd_recovers_it(fake_gpus, kfd, monkeypatch):
    # What ROCm really reports under the override: gcnArchName is the override's target.
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    fake_gpus([amd_props(name="AMD Radeon Graphics", arch="gfx1030")])
    kfd([(100100, 3)])
    info = describe_device(0)
    assert info.arch == "gfx1010" and info.effective_arch == "gfx1030"
    assert info.is_rdna1 and routes_by_default(info) is True


def test_override_hides_arch_name_recovers_it_without_kfd(fake_gpus, monkeypatch):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    fake_gpus([amd_props(arch="gfx1030")])
    info = describe_device(0)
    assert info.arch == "gfx1010" and info.effective_arch == "gfx1030" and info.is_rdna1


def test_override_hides_arch_unknown_card_routes(fake_gpus, monkeypatch, caplog):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    fake_gpus([amd_props(name="AMD Radeon Graphics", arch="gfx1030")])
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1.device"):
        info = describe_device(0)
    assert info.arch is None and info.effective_arch == "gfx1030"
    assert routes_by_default(info) is True and not info.is_rdna1
    assert "cannot be read from KFD" in caplog.text


def test_real_gfx1030_under_redundant_override_stays_known(fake_gpus, kfd, monkeypatch):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    fake_gpus([amd_props(name="AMD Radeon RX 6800 XT", arch="gfx1030")])
    kfd([(100300, 3)])
    info = describe_device(0)
    assert info.arch == "gfx1030" and routes_by_default(info) is False


def test_per_device_override_is_keyed_by_kfd_node(fake_gpus, kfd, monkeypatch):
    # The GPU is KFD node 1 (node 0 is the CPU): _1 wins over the global value, _0 is the CPU's.
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.1.0")
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION_0", "11.0.0")
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION_1", "10.3.0")
    fake_gpus([amd_props()])
    kfd([(100100, 3)])
    info = describe_device(0)
    assert info.hsa_override == "10.3.0" and info.effective_arch == "gfx1030" and info.is_rdna1
    monkeypatch.delenv("HSA_OVERRIDE_GFX_VERSION_1")
    clear_cache()
    assert describe_device(0).effective_arch == "gfx1010"  # global 10.1.0; _0 is not this GPU


def test_per_device_override_ignored_before_rocm_6_2(fake_gpus, kfd, monkeypatch):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION_1", "10.1.0")
    fake_gpus([amd_props()], hip="6.1.40091-a8dbc0c19")
    kfd([(100100, 3)])
    assert describe_device(0).effective_arch == "gfx1030"


def test_per_device_override_matched_by_pci_on_two_gpus(fake_gpus, kfd, monkeypatch):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION_2", "10.3.0")
    fake_gpus([amd_props(name="AMD Radeon RX 7900 XTX", arch="gfx1100", bus=3), amd_props(bus=10)])
    kfd([(110000, 3), (100100, 10)])
    first, second = describe_device(0), describe_device("cuda:1")
    assert first.effective_arch == "gfx1100" and first.hsa_override is None and not routes_by_default(first)
    assert second.effective_arch == "gfx1030" and second.hsa_override == "10.3.0" and second.is_rdna1
    assert second.pci_bus_id == "0000:0a:00.0"


def test_hidden_render_node_shifts_node_ids(fake_gpus, kfd, monkeypatch):
    # A GPU whose render node the container does not expose gets no node id (as in the thunk).
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION_1", "10.3.0")
    fake_gpus([amd_props(bus=10)])
    kfd([(110000, 3), (100100, 10)], hidden=(1,))
    assert describe_device(0).effective_arch == "gfx1030"


def test_unmatched_per_device_override_is_ignored_with_warning(fake_gpus, monkeypatch, caplog):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION_0", "10.3.0")
    fake_gpus([amd_props()])
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1.device"):
        info = describe_device(0)
    assert info.effective_arch == "gfx1010" and info.hsa_override is None
    assert "KFD node id" in caplog.text


def test_invalid_override_does_not_crash(fake_gpus, monkeypatch, caplog):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3")
    fake_gpus([amd_props()])
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1.device"):
        info = describe_device(0)
    assert info.hsa_override == "10.3" and info.effective_arch == "gfx1010" and info.is_rdna1
    assert "invalid HSA_OVERRIDE_GFX_VERSION" in caplog.text


def test_mi250_is_known_good(fake_gpus):
    fake_gpus([amd_props(name="AMD Instinct MI250X/MI250", arch="gfx90a:sramecc+:xnack-")])
    info = describe_device(0)
    assert info.effective_arch == "gfx90a" and not info.is_rdna1 and routes_by_default(info) is False


def test_unknown_amd_arch_routes(fake_gpus):
    fake_gpus([amd_props(name="AMD BC-250", arch="gfx1013")])
    info = describe_device(0)
    assert info.arch == "gfx1013" and not info.is_rdna1 and routes_by_default(info) is True


def test_old_torch_props_without_arch_or_pci(fake_gpus):
    fake_gpus([amd_props(arch=None, bus=None)])
    info = describe_device(0)
    assert info.arch == "gfx1010" and info.pci_bus_id is None and info.is_rdna1


def test_identical_cards_share_fingerprint_without_index_or_pci(fake_gpus):
    fake_gpus([amd_props(bus=3), amd_props(bus=10)])
    a, b = describe_device(0), describe_device(1)
    assert a.pci_bus_id != b.pci_bus_id and a.index != b.index
    assert a.fingerprint == b.fingerprint
    for fp in (a.fingerprint, b.fingerprint):
        assert "0000:" not in fp and ":03" not in fp and ":0a" not in fp
        assert "cuda:" not in fp and a.ultralytics_version not in fp


@pytest.mark.parametrize(
    "conv", [lambda: None, lambda: (_ for _ in ()).throw(RuntimeError("cuDNN version incompatibility"))]
)
def test_conv_library_version_none_when_unavailable(fake_gpus, conv):
    fake_gpus([amd_props()], conv=conv)
    info = describe_device(0)
    assert info.conv_library == "miopen" and info.conv_library_version is None
    assert "miopen=-" in info.fingerprint


def test_cache_is_per_normalized_device_and_cleared(fake_gpus):
    fake_gpus([amd_props()])
    assert describe_device(0) is describe_device("cuda:0") is describe_device("cuda") is describe_device()
    first = describe_device(0)
    clear_cache()
    assert describe_device(0) is not first and describe_device(0) == first


def test_describe_missing_gpu_raises(fake_gpus, monkeypatch):
    fake_gpus([amd_props()])
    with pytest.raises(RuntimeError, match="1 GPU"):
        describe_device(3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clear_cache()
    with pytest.raises(RuntimeError, match="is_available"):
        describe_device("cuda:0")


# -- CUDA fake ----------------------------------------------------------------------------------


def test_cuda_h100(fake_gpus):
    h100 = SimpleNamespace(
        name="NVIDIA H100 80GB HBM3", major=9, minor=0, gcnArchName="", pci_bus_id=25, pci_device_id=0, pci_domain_id=0
    )
    fake_gpus([h100], hip=None, cuda="12.4", conv=90100)
    info = describe_device(0)
    assert info.backend == "cuda" and info.arch == "sm_90" and info.effective_arch == "sm_90"
    assert info.conv_library == "cudnn" and info.conv_library_version == "9.1.0" and info.runtime_version == "12.4"
    assert info.pci_bus_id == "0000:19:00.0" and info.hsa_override is None
    assert not info.is_rdna1 and routes_by_default(info) is False
    assert info.fingerprint.startswith("cuda|NVIDIA H100 80GB HBM3|eff=sm_90|arch=sm_90|cuda=12.4|cudnn=9.1.0|")


def test_cuda_ignores_hsa_override(fake_gpus, monkeypatch):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    fake_gpus([SimpleNamespace(name="NVIDIA GeForce RTX 3090", major=8, minor=6)], hip=None, cuda="11.8", conv=8907)
    info = describe_device(0)
    assert info.hsa_override is None and info.arch == "sm_86" and info.conv_library_version == "8.9.7"


# -- routing table ------------------------------------------------------------------------------


def _rocm_info(arch: str | None) -> DeviceInfo:
    return DeviceInfo("rocm", 0, "x", arch, base_arch(arch), None, HIP, "miopen", None, "2.5.1", None, None)


@pytest.mark.parametrize(
    "arch,routes",
    [
        ("gfx1010:xnack-", True),
        ("gfx1011", True),
        ("gfx1012:xnack-", True),
        ("gfx1013", True),
        ("gfx900:xnack-", True),
        ("gfx803", True),
        ("gfx90c", True),
        (None, True),
        ("gfx906:sramecc+:xnack-", False),
        ("gfx908:sramecc+:xnack-", False),
        ("gfx942:sramecc+:xnack-", False),
        ("gfx950", False),
        ("gfx1030", False),
        ("gfx1036", False),
        ("gfx1100", False),
        ("gfx1103", False),
        ("gfx1151", False),
        ("gfx1201", False),
    ],
)
def test_routes_by_default_rocm(arch, routes):
    assert routes_by_default(_rocm_info(arch)) is routes


@pytest.mark.parametrize("backend", ["cuda", "cpu", "mps"])
def test_routes_by_default_non_amd(backend):
    info = DeviceInfo(backend, None, backend, "gfx1010", "gfx1010", None, None, None, None, "2.5.1", None, None)
    assert routes_by_default(info) is False


# -- parsing ------------------------------------------------------------------------------------


def test_parse_device_forms(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert parse_device(None) == torch.device("cuda", 1)
    assert parse_device("") == torch.device("cuda", 1)
    assert parse_device("cuda") == torch.device("cuda", 1)
    assert parse_device(torch.device("cuda")) == torch.device("cuda", 1)
    assert parse_device("cpu") == parse_device(" CPU ") == parse_device(torch.device("cpu")) == torch.device("cpu")
    assert parse_device("mps") == torch.device("mps")
    assert parse_device("cuda:1") == parse_device(1) == parse_device("1") == torch.device("cuda", 1)
    assert (
        parse_device(0) == parse_device("0") == parse_device("0,1") == parse_device("0, 1") == torch.device("cuda", 0)
    )
    assert parse_device("cuda:2,3") == parse_device([2, 3]) == torch.device("cuda", 2)
    assert parse_device(torch.device("cuda", 3)) == torch.device("cuda", 3)


def test_parse_device_auto_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delattr(torch.backends, "mps", raising=False)  # torch builds without MPS
    assert parse_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.backends, "mps", SimpleNamespace(is_available=lambda: True), raising=False)
    assert parse_device(None) == torch.device("mps")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "cuda:", "0;1", "rocm", -1, True, [], 1.5])
def test_parse_device_rejects(bad):
    with pytest.raises(ValueError) as exc:
        parse_device(bad)
    assert repr(bad) in str(exc.value) and "'cuda:N'" in str(exc.value)


# -- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,base",
    [
        ("gfx1010:xnack-", "gfx1010"),
        ("gfx90a:sramecc+:xnack-", "gfx90a"),
        ("gfx1030", "gfx1030"),
        ("amdgcn-amd-amdhsa--gfx1012:xnack-", "gfx1012"),
        ("", None),
        (None, None),
    ],
)
def test_base_arch(raw, base):
    assert base_arch(raw) == base


@pytest.mark.parametrize(
    "value,arch",
    [
        ("10.3.0", "gfx1030"),
        ("9.0.10", "gfx90a"),
        ("9.4.2", "gfx942"),
        ("11.0.0", "gfx1100"),
        ("10.1.0", "gfx1010"),
        ("9.0.12", "gfx90c"),
        ("12.0.1", "gfx1201"),
    ],
)
def test_override_to_arch(value, arch):
    assert override_to_arch(value) == arch


@pytest.mark.parametrize("value", ["10.3", "abc", "10.3.0.1", "", "10.3.x", "10.3.0 ", "10.16.0", "0.0.0"])
def test_override_to_arch_invalid_warns_once(value, caplog):
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1.device"):
        assert override_to_arch(value) is None
        assert override_to_arch(value) is None
    assert len([r for r in caplog.records if "invalid HSA_OVERRIDE_GFX_VERSION" in r.getMessage()]) == 1


def test_rocm_env_summary(monkeypatch):
    monkeypatch.setenv("MIOPEN_DEBUG_CONV_GEMM", "0")
    monkeypatch.setenv("MIOPEN_FIND_MODE", "FAST")
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "10.3.0")
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION_1", "10.3.0")
    monkeypatch.setenv("HSA_ENABLE_SDMA", "0")
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("YOLO_RDNA1_UNRELATED", "1")
    monkeypatch.setenv("XMIOPEN_DEBUG", "1")
    monkeypatch.setenv("HSA_XNACK_UNLISTED_FOR_TEST", "1")
    env = rocm_env_summary()
    assert env["MIOPEN_DEBUG_CONV_GEMM"] == "0" and env["MIOPEN_FIND_MODE"] == "FAST"
    assert env["HSA_OVERRIDE_GFX_VERSION"] == env["HSA_OVERRIDE_GFX_VERSION_1"] == "10.3.0"
    assert env["HSA_ENABLE_SDMA"] == "0" and env["HIP_VISIBLE_DEVICES"] == "0"
    for unrelated in ("YOLO_RDNA1_UNRELATED", "XMIOPEN_DEBUG", "HSA_XNACK_UNLISTED_FOR_TEST", "PATH", "HOME"):
        assert unrelated not in env
    assert list(env) == sorted(env)


@pytest.mark.parametrize(
    "name,arch",
    [
        ("AMD Radeon RX 5600 XT", "gfx1010"),
        ("AMD Radeon RX 5700", "gfx1010"),
        ("AMD Radeon Pro W5700", "gfx1010"),
        ("AMD Radeon RX 5500 XT", "gfx1012"),
        ("AMD Radeon Pro W5500", "gfx1012"),
        ("AMD Radeon Pro 5300M", "gfx1012"),
        ("AMD Radeon Pro V520", "gfx1011"),
        ("AMD Radeon Pro 5600M", "gfx1011"),
        ("Navi 10 [Radeon RX 5600 OEM/5600 XT / 5700/5700 XT]", "gfx1010"),
        ("AMD Ryzen 5 5600G with Radeon Graphics", None),
        ("AMD Radeon RX 6500 XT", None),
        ("AMD Radeon Graphics", None),
        ("AMD Radeon RX 7600", None),
    ],
)
def test_rdna1_name_fallback(name, arch):
    assert dv._rdna1_arch_from_name(name) == arch
