"""What device we are on: the key for conv verdicts and the basis of routing defaults.

A conv verdict ("this shape hangs MIOpen") is only true for one combination of card, code
objects, runtime and conv library, so :attr:`DeviceInfo.fingerprint` names exactly that
combination, and :func:`routes_by_default` decides from it whether guard policy ``auto`` routes
convs by verdicts (RDNA1 and unknown AMD cards) or only counts them (NVIDIA, CPU, well-supported
AMD cards).

Three facts about ROCm shape this module (see the ROCT thunk / ROCr ``topology`` sources):

* ``HSA_OVERRIDE_GFX_VERSION`` changes what the runtime *reports*, not only what it loads:
  with ``10.3.0`` an RX 5600 XT shows ``gcnArchName == "gfx1030"`` in torch, rocminfo and HIP.
  The hardware arch is therefore read from the kernel's KFD topology
  (``/sys/class/kfd/kfd/topology/nodes/<n>/properties``, ``gfx_target_version``), which the
  override does not touch, with the marketing name as a fallback for RDNA1 cards.
* The per-device form ``HSA_OVERRIDE_GFX_VERSION_<n>`` (ROCm >= 6.2) is keyed by the KFD
  *node id*, which counts CPU nodes too: on a one-socket desktop the first GPU is node 1, not
  torch index 0, and ``HIP_VISIBLE_DEVICES`` does not renumber nodes. We match the torch device
  to its KFD node by PCI address.
* An override the runtime cannot parse is not applied (newer ROCr) or fails GPU discovery
  (older thunk); either way the device is not running override code, so it does not change the
  effective arch.

Importing this module is cheap on purpose (torch only: no ultralytics, no subprocess); sysfs is
read only when a ROCm device is described, and every description is cached.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import torch

__all__ = [
    "DeviceInfo",
    "KNOWN_GOOD_AMD_ARCHS",
    "RDNA1_ARCHS",
    "base_arch",
    "clear_cache",
    "describe_device",
    "override_to_arch",
    "parse_device",
    "rocm_env_summary",
    "routes_by_default",
]

log = logging.getLogger(__name__)

DeviceLike = Union[str, int, torch.device, None]

#: Navi 10 (RX 5600/5700), Navi 12 (Pro 5600M, Pro V520), Navi 14 (RX 5300/5500).
RDNA1_ARCHS: frozenset[str] = frozenset({"gfx1010", "gfx1011", "gfx1012"})

#: AMD archs whose MIOpen support we trust enough to only *count* convs under policy ``auto``.
#: Instinct (gfx908 MI100, gfx90a MI200, gfx940-942 MI300, gfx950 MI350) and gfx906
#: (MI50/MI60/Radeon VII) are MIOpen's primary targets and ship system find/perf dbs; RDNA2
#: (gfx1030-1036), RDNA3 (gfx1100-1103), RDNA3.5 (gfx1150-1152) and RDNA4 (gfx1200/1201) have
#: official or near-official ROCm support and code objects in the PyTorch wheels. Anything else
#: AMD (RDNA1, Vega, Polaris, APUs, archs newer than this list) is routed by verdicts: routing
#: costs a probe on first use, while trusting a bad card costs a hang or a dead multi-day run.
KNOWN_GOOD_AMD_ARCHS: frozenset[str] = frozenset(
    {"gfx906", "gfx908", "gfx90a", "gfx940", "gfx941", "gfx942", "gfx950"}
    | {f"gfx103{i}" for i in range(7)}
    | {"gfx1100", "gfx1101", "gfx1102", "gfx1103"}
    | {"gfx1150", "gfx1151", "gfx1152"}
    | {"gfx1200", "gfx1201"}
)

#: Env vars (exact names) that change what MIOpen/HIP/HSA do; MIOPEN_* and
#: HSA_OVERRIDE_GFX_VERSION* are matched by prefix. CUDA_VISIBLE_DEVICES and GPU_DEVICE_ORDINAL
#: are honoured by HIP too, so they change which card an index means.
_ENV_EXACT = frozenset(
    {
        "HSA_ENABLE_SDMA",
        "AMD_SERIALIZE_KERNEL",
        "AMD_SERIALIZE_COPY",
        "HIP_LAUNCH_BLOCKING",
        "PYTORCH_HIP_ALLOC_CONF",
        "PYTORCH_MIOPEN_SUGGEST_NHWC",
        "HIP_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "CUDA_VISIBLE_DEVICES",
        "GPU_DEVICE_ORDINAL",
    }
)
_ENV_PREFIXES = ("MIOPEN_", "HSA_OVERRIDE_GFX_VERSION")
_OVERRIDE_VAR = "HSA_OVERRIDE_GFX_VERSION"

#: Where the kernel publishes the KFD topology, and where the render nodes live. Module
#: attributes so tests can point them at a fake tree.
_KFD_NODES = Path("/sys/class/kfd/kfd/topology/nodes")
_DRI_DIR = Path("/dev/dri")

_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args: Any) -> None:
    """Log a warning the first time ``key`` is seen: describe runs per device and per test."""
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


# -- arch strings -----------------------------------------------------------------------------


def base_arch(arch: str | None) -> str | None:
    """The gfx target without feature suffixes: ``"gfx1010:xnack-"`` -> ``"gfx1010"``.

    Feature flags (xnack, sramecc) do not change which card it is, and rocminfo-style names
    (``amdgcn-amd-amdhsa--gfx1010``) carry a triple prefix; both are stripped so archs from
    torch, rocminfo and KFD compare equal. ``None``/empty stays ``None``.
    """
    if not arch:
        return None
    name = arch.strip().lower()
    if "--" in name:
        name = name.rsplit("--", 1)[1]
    name = name.split(":", 1)[0].strip()
    return name or None


def _gfx_name(major: int, minor: int, stepping: int) -> str:
    """``gfx`` + major in decimal, minor and stepping as one hex digit each (9,0,10 -> gfx90a)."""
    return f"gfx{major}{minor:x}{stepping:x}"


_OVERRIDE_RE = re.compile(r"\s*(\d+)\.(\d+)\.(\d+)")


def override_to_arch(value: str | None) -> str | None:
    """The gfx target an ``HSA_OVERRIDE_GFX_VERSION`` value makes the runtime load code for.

    ``"10.3.0"`` -> ``"gfx1030"``, ``"9.0.10"`` -> ``"gfx90a"``, ``"11.0.0"`` -> ``"gfx1100"``.
    The runtime parses ``major.minor.stepping`` strictly (``sscanf("%u.%u.%u%c") == 3``), so
    anything else, and fields that no gfx target has (minor or stepping above 0xf, major above
    63), is invalid: we return ``None`` and log one warning per value instead of raising, because
    a typo in a user's shell profile must not stop training from starting.
    """
    if value is None:
        return None
    m = _OVERRIDE_RE.fullmatch(value)
    if m is not None:
        major, minor, step = (int(g) for g in m.groups())
        if 0 < major <= 63 and minor <= 0xF and step <= 0xF:
            return _gfx_name(major, minor, step)
    _warn_once(
        f"override:{value}",
        "ignoring invalid %s value %r: expected major.minor.stepping such as '10.3.0'",
        _OVERRIDE_VAR,
        value,
    )
    return None


# Marketing names of RDNA1 cards, for when neither KFD nor an un-overridden gcnArchName says
# what the hardware is. Only RDNA1 is recognised: it is the one family whose identity changes
# routing. "Radeon" must come right before the model so "Ryzen 5 5600G with Radeon Graphics"
# does not match; Navi 12 is tested first because "Radeon Pro 5600M" is Navi 12, not Navi 10.
_RDNA1_NAME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bnavi\s*10\b", re.I), "gfx1010"),
    (re.compile(r"\bnavi\s*12\b", re.I), "gfx1011"),
    (re.compile(r"\bnavi\s*14\b", re.I), "gfx1012"),
    (re.compile(r"\bradeon\s+pro\s+(?:v520|5600m)\b", re.I), "gfx1011"),
    (re.compile(r"\bradeon\s+(?:pro\s+)?(?:rx\s+)?w?5[35]00(?:\s*(?:xt|m)\b|\b)", re.I), "gfx1012"),
    (re.compile(r"\bradeon\s+(?:pro\s+)?(?:rx\s+)?w?5[67]00(?:\s*(?:xt|m)\b|\b)", re.I), "gfx1010"),
)


def _rdna1_arch_from_name(name: str) -> str | None:
    for pattern, arch in _RDNA1_NAME_PATTERNS:
        if pattern.search(name):
            return arch
    return None


# -- KFD topology -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _KfdNode:
    """One GPU node of the kernel's KFD topology, as the ROCm thunk numbers it."""

    node_id: int  # the thunk's user node id: the <n> of HSA_OVERRIDE_GFX_VERSION_<n>
    gfx_target_version: int  # decimal MMmmss, e.g. 100100 for gfx1010, 90010 for gfx90a
    domain: int
    location_id: int  # PCI bus << 8 | device << 3 | function

    @property
    def arch(self) -> str:
        v = self.gfx_target_version
        return _gfx_name(v // 10000 % 100, v // 100 % 100, v % 100)

    @property
    def pci_bus_id(self) -> str:
        loc = self.location_id
        return f"{self.domain:04x}:{(loc >> 8) & 0xFF:02x}:{(loc >> 3) & 0x1F:02x}.{loc & 0x7}"


def _read_props(path: Path) -> dict[str, int]:
    props: dict[str, int] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                props[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return props


def _kfd_gpu_nodes() -> list[_KfdNode]:
    """GPU nodes of the KFD topology with the node ids the thunk gives them, or [] if unreadable.

    Mirrors ``hsakmt_topology_sysfs_get_system_props``: sysfs nodes are walked in order and a
    node gets the next user id when its ``gpu_id`` is readable (CPU nodes have ``gpu_id`` 0) and,
    for GPUs, its render node exists (containers hide GPUs that way). Any other read error makes
    the whole topology unusable here, as it does in the thunk.
    """
    try:
        entries = sorted((int(p.name), p) for p in _KFD_NODES.iterdir() if p.name.isdigit())
    except OSError:
        return []
    nodes: list[_KfdNode] = []
    user_id = 0
    try:
        for _, path in entries:
            try:
                gpu_id = int((path / "gpu_id").read_text().split()[0])
            except PermissionError:
                continue
            if gpu_id == 0:
                user_id += 1
                continue
            props = _read_props(path / "properties")
            minor = props.get("drm_render_minor", 0)
            if minor and not (_DRI_DIR / f"renderD{minor}").exists():
                continue
            if props.get("gfx_target_version", 0) and props.get("simd_count", 1):
                nodes.append(
                    _KfdNode(user_id, props["gfx_target_version"], props.get("domain", 0), props.get("location_id", 0))
                )
            user_id += 1
    except (OSError, ValueError, IndexError):
        return []
    return nodes


def _pci_key(bus_id: str) -> str:
    """``domain:bus:device`` of a PCI address: torch exposes no function number, so drop it."""
    return bus_id.lower().rsplit(".", 1)[0]


def _kfd_node_for(pci_bus_id: str | None) -> _KfdNode | None:
    """The KFD node of one torch device: by PCI address, or the only GPU node there is.

    Without a PCI address (older torch) and with several GPUs there is no reliable mapping
    (HIP's order is not the node order once visibility masks apply), so we give up rather than
    describe the wrong card.
    """
    gpus = _kfd_gpu_nodes()
    if pci_bus_id is not None:
        matches = [n for n in gpus if _pci_key(n.pci_bus_id) == _pci_key(pci_bus_id)]
        return matches[0] if len(matches) == 1 else None
    return gpus[0] if len(gpus) == 1 else None


# -- DeviceInfo -------------------------------------------------------------------------------


def _fp(value: str | None) -> str:
    return "-" if value in (None, "") else str(value).strip().replace("|", "/")


def _major_minor(version: str) -> str:
    m = re.match(r"(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else version


@dataclass(frozen=True)
class DeviceInfo:
    """Everything about one torch device that decides how its conv library behaves.

    ``arch`` is the *hardware* target as the runtime names it (``gcnArchName`` with feature
    suffixes when the runtime reports the real card; the KFD or name-derived base arch when an
    override hides it; ``None`` when it cannot be told). ``effective_arch`` is the target whose
    code objects actually run: the override's, else the hardware's. On CUDA both are ``sm_XY``.
    """

    backend: str  # "rocm" | "cuda" | "mps" | "cpu" (other torch device types: their type name)
    index: int | None
    name: str
    arch: str | None
    effective_arch: str | None
    hsa_override: str | None
    runtime_version: str | None
    conv_library: str | None
    conv_library_version: str | None
    torch_version: str
    ultralytics_version: str | None
    pci_bus_id: str | None

    @property
    def fingerprint(self) -> str:
        """The verdict-database key, e.g.
        ``rocm|AMD Radeon RX 5600 XT|eff=gfx1030|arch=gfx1010:xnack-|hip=6.2.41133|miopen=3.2.0|torch=2.5``.

        It holds what changes which solver runs and whether it works: backend, card name, the
        effective arch (an override loads different code objects), the hardware arch (gfx1030
        code on a gfx1010 is not a gfx1030), the runtime and conv library versions, and torch
        major.minor (conv dispatch changes between minors; patch releases are assumed not to).
        It leaves out the device index and PCI address, so two identical cards, or one card in
        another slot, share verdicts; and the ultralytics version, which does not change what a
        conv call does. MIOpen env vars are a separate part of the store key (env profile).
        ``-`` marks an unknown field; ``|`` never appears inside a field. Changing this format
        orphans every stored verdict, so it needs a verdict-store migration.
        """
        if self.conv_library:
            conv = f"{self.conv_library}={_fp(self.conv_library_version)}"
        else:
            conv = "conv=-"
        runtime_label = {"rocm": "hip", "cuda": "cuda"}.get(self.backend, "rt")
        return "|".join(
            (
                _fp(self.backend),
                _fp(self.name),
                f"eff={_fp(self.effective_arch)}",
                f"arch={_fp(self.arch)}",
                f"{runtime_label}={_fp(self.runtime_version)}",
                conv,
                f"torch={_major_minor(self.torch_version)}",
            )
        )

    @property
    def is_rdna1(self) -> bool:
        """True for gfx1010/1011/1012 hardware, whatever override it runs under."""
        return base_arch(self.arch) in RDNA1_ARCHS

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus ``fingerprint`` and ``is_rdna1`` (for reports and probe logs)."""
        d = asdict(self)
        d["fingerprint"] = self.fingerprint
        d["is_rdna1"] = self.is_rdna1
        return d


# -- parsing ----------------------------------------------------------------------------------

_VALID_FORMS = (
    "None, 'cpu', 'mps', 'cuda', 'cuda:N', N, 'N', 'N,M' (ultralytics style, first listed is used) or a torch.device"
)
_INDEX_LIST = re.compile(r"\d+(?:,\d+)*,?")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except Exception:  # noqa: BLE001 - a broken MPS probe means "no MPS", not a crash
        return False


def _auto_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _normalize(dev: torch.device) -> torch.device:
    """One canonical torch.device per physical device, so caches and child processes agree."""
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "mps":
        return torch.device("mps")
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return dev


def parse_device(device: DeviceLike = None) -> torch.device:
    """Turn what users pass as ``device=`` into a torch.device with an explicit index.

    ``None`` (or ``""``) picks cuda:<current> if available, else mps, else cpu, like ultralytics.
    ``"cuda"`` resolves to the current device so verdict lookups and probe children name the same
    card. Ultralytics-style lists (``"0,1"``, ``[0, 1]``) give the first device: verdicts are per
    device and DDP ranks describe their own. This does not check that the device exists (that is
    :func:`describe_device`'s job); it raises ``ValueError`` for anything it cannot parse.
    """
    if device is None:
        return _auto_device()
    if isinstance(device, torch.device):
        return _normalize(device)
    if isinstance(device, bool):
        raise ValueError(f"invalid device {device!r}; expected {_VALID_FORMS}")
    if isinstance(device, int):
        if device < 0:
            raise ValueError(f"invalid device {device!r}: negative index; expected {_VALID_FORMS}")
        return torch.device("cuda", device)
    if isinstance(device, (list, tuple)):
        if not device:
            raise ValueError(f"invalid device {device!r}: empty list; expected {_VALID_FORMS}")
        return parse_device(device[0])
    if isinstance(device, str):
        text = device.strip().lower().replace(" ", "")
        if text in ("", "auto"):
            return _auto_device()
        if text in ("cpu", "cpu:0"):
            return torch.device("cpu")
        if text in ("mps", "mps:0"):
            return torch.device("mps")
        if text == "cuda":
            return _normalize(torch.device("cuda"))
        if text.startswith("cuda:"):
            text = text[len("cuda:") :]
        if _INDEX_LIST.fullmatch(text):
            return torch.device("cuda", int(text.split(",", 1)[0]))
        raise ValueError(f"unknown device {device!r}; expected {_VALID_FORMS}")
    raise ValueError(f"invalid device {device!r} of type {type(device).__name__}; expected {_VALID_FORMS}")


# -- describing -------------------------------------------------------------------------------


def _ultralytics_version() -> str | None:
    """From package metadata: importing ultralytics takes seconds and has side effects."""
    import importlib.metadata

    try:
        return importlib.metadata.version("ultralytics")
    except importlib.metadata.PackageNotFoundError:
        return None


def _conv_library_version(backend: str) -> str | None:
    """``torch.backends.cudnn.version()`` as ``major.minor.patch`` (MIOpen's on ROCm).

    torch encodes MIOpen as MAJOR*1000000 + MINOR*1000 + PATCH, cuDNN >= 9 as
    MAJOR*10000 + MINOR*100 + PATCH and cuDNN < 9 as MAJOR*1000 + MINOR*100 + PATCH; values in
    any other range are kept as the raw integer. ``None`` when torch has no conv library or
    its version check raises (it raises on a cuDNN/driver mismatch).
    """
    try:
        raw = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001 - a failing version probe only means "unknown"
        return None
    if raw is None:
        return None
    try:
        v = int(raw)
    except (TypeError, ValueError):
        return str(raw)
    if backend == "rocm" and v >= 1_000_000:
        return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"
    if backend == "cuda" and v >= 10_000:
        return f"{v // 10_000}.{v // 100 % 100}.{v % 100}"
    if backend == "cuda" and v >= 1000:
        return f"{v // 1000}.{v // 100 % 10}.{v % 100}"
    return str(v)


def _props_pci_bus_id(props: Any) -> str | None:
    """``dddd:bb:dd.0`` from torch's pci_domain_id/pci_bus_id/pci_device_id (newer torch only).

    torch exposes no PCI function number; GPUs are function 0. A string that already is a
    full address (as some fakes and future torch may give) is taken as is.
    """
    bus = getattr(props, "pci_bus_id", None)
    if isinstance(bus, str):
        text = bus.strip().lower()
        return text if re.fullmatch(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", text) else None
    dom = getattr(props, "pci_domain_id", None)
    dev = getattr(props, "pci_device_id", None)
    if all(isinstance(x, int) and not isinstance(x, bool) for x in (bus, dom, dev)):
        return f"{dom:04x}:{bus:02x}:{dev:02x}.0"
    return None


def _rocm_at_least(hip: str | None, major: int, minor: int) -> bool:
    """Whether torch.version.hip is at least major.minor; unknown versions count as new."""
    m = re.match(r"(\d+)\.(\d+)", hip or "")
    if not m:
        return True
    return (int(m.group(1)), int(m.group(2))) >= (major, minor)


def _override_for(node: _KfdNode | None, hip: str | None, index: int) -> str | None:
    """The HSA_OVERRIDE_GFX_VERSION value the runtime applies to this device, if any.

    ``_<node id>`` wins over the global variable (ROCm >= 6.2 only). When the device could not
    be matched to a KFD node, per-node variables cannot be attributed and are ignored (warned).
    """
    if _rocm_at_least(hip, 6, 2):
        if node is not None:
            per_node = os.environ.get(f"{_OVERRIDE_VAR}_{node.node_id}")
            if per_node is not None:
                return per_node
        elif any(k.startswith(_OVERRIDE_VAR + "_") for k in os.environ):
            _warn_once(
                f"per-node:{index}",
                "cuda:%d could not be matched to a KFD topology node; ignoring per-device %s_<n> "
                "variables for it (they are keyed by KFD node id, not torch index)",
                index,
                _OVERRIDE_VAR,
            )
    return os.environ.get(_OVERRIDE_VAR)


def _describe_rocm(index: int, props: Any, common: dict[str, Any]) -> DeviceInfo:
    name = str(getattr(props, "name", "") or "").strip()
    reported = str(getattr(props, "gcnArchName", "") or "").strip() or None
    pci = _props_pci_bus_id(props)
    hip = getattr(torch.version, "hip", None)
    node = _kfd_node_for(pci)
    if pci is None and node is not None:
        pci = node.pci_bus_id
    override = _override_for(node, hip, index)
    override_arch = override_to_arch(override) if override is not None else None

    # The hardware arch. KFD is authoritative (the override never reaches the kernel); keep the
    # reported name when it agrees, for its feature suffix. Without KFD, a reported arch equal to
    # the override's may be the override speaking, so it is only trusted when no override hides it.
    if node is not None:
        arch: str | None = reported if base_arch(reported) == node.arch else node.arch
    elif reported is not None and (override_arch is None or base_arch(reported) != override_arch):
        arch = reported
    else:
        arch = _rdna1_arch_from_name(name)
        if arch is None and reported is not None and override_arch is not None:
            _warn_once(
                f"hidden-arch:{index}",
                "cuda:%d reports %s under %s=%s and its hardware arch cannot be read from KFD; "
                "treating it as an unknown AMD card",
                index,
                reported,
                _OVERRIDE_VAR,
                override,
            )
    effective = override_arch or base_arch(arch) or base_arch(reported)
    return DeviceInfo(
        backend="rocm",
        index=index,
        name=name,
        arch=arch,
        effective_arch=effective,
        hsa_override=override,
        runtime_version=hip,
        conv_library="miopen",
        conv_library_version=_conv_library_version("rocm"),
        pci_bus_id=pci,
        **common,
    )


def _describe_cuda(index: int, props: Any, common: dict[str, Any]) -> DeviceInfo:
    major, minor = getattr(props, "major", None), getattr(props, "minor", None)
    if not isinstance(major, int) or not isinstance(minor, int):
        major, minor = torch.cuda.get_device_capability(index)
    arch = f"sm_{major}{minor}"
    return DeviceInfo(
        backend="cuda",
        index=index,
        name=str(getattr(props, "name", "") or "").strip(),
        arch=arch,
        effective_arch=arch,
        hsa_override=None,
        runtime_version=getattr(torch.version, "cuda", None),
        conv_library="cudnn",
        conv_library_version=_conv_library_version("cuda"),
        pci_bus_id=_props_pci_bus_id(props),
        **common,
    )


@functools.cache
def _describe(dev: torch.device) -> DeviceInfo:
    common: dict[str, Any] = {"torch_version": str(torch.__version__), "ultralytics_version": _ultralytics_version()}
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"cannot describe {dev}: torch.cuda.is_available() is False")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise RuntimeError(f"cannot describe {dev}: torch sees {count} GPU(s)")
        props = torch.cuda.get_device_properties(index)
        if getattr(torch.version, "hip", None):
            return _describe_rocm(index, props, common)
        return _describe_cuda(index, props, common)
    nothing = {"arch": None, "effective_arch": None, "hsa_override": None, "runtime_version": None}
    nothing.update({"conv_library": None, "conv_library_version": None, "pci_bus_id": None})
    if dev.type in ("cpu", "mps"):
        return DeviceInfo(backend=dev.type, index=None, name=dev.type, **nothing, **common)
    # xpu, meta, ...: described so callers never crash; nothing routes on them.
    return DeviceInfo(backend=dev.type, index=dev.index, name=dev.type, **nothing, **common)


def describe_device(device: DeviceLike = None) -> DeviceInfo:
    """Describe ``device`` (any :func:`parse_device` form); cached per normalized torch.device.

    The cache lives for the process: env vars such as HSA_OVERRIDE_GFX_VERSION are read by the
    runtime once at start-up too, so re-reading them later would describe a process that does
    not exist. Raises ``RuntimeError`` for a GPU that torch does not see.
    """
    return _describe(parse_device(device))


def clear_cache() -> None:
    """Forget every description and every warning already logged (for tests)."""
    _describe.cache_clear()
    _warned.clear()


def routes_by_default(info: DeviceInfo) -> bool:
    """Whether guard policy ``auto`` routes this device's convs by verdicts (else it only counts).

    True for RDNA1 (gfx1010/1011/1012) and for any AMD arch not in :data:`KNOWN_GOOD_AMD_ARCHS`,
    including an arch we could not determine: such cards run code objects built for another
    target or none at all, MIOpen has no tuned dbs for them, and their failures are hangs and
    aborts that only a verdict probed in a child process can avoid. False for well-supported AMD
    archs (Instinct, RDNA2/3/3.5/4), where routing would only add probe time, and for NVIDIA, MPS
    and CPU, whose conv libraries do not hang this way. The decision is on the hardware arch, not
    the override: a gfx1010 running gfx1030 code is still a gfx1010.
    """
    if info.backend != "rocm":
        return False
    arch = base_arch(info.arch)
    if arch in RDNA1_ARCHS:
        return True
    return arch not in KNOWN_GOOD_AMD_ARCHS


def rocm_env_summary() -> dict[str, str]:
    """The env vars in effect that change MIOpen/HIP/HSA behaviour, sorted by name.

    For reports and probe logs: a verdict measured under ``MIOPEN_DEBUG_CONV_GEMM=0`` says
    nothing about the default solver set, so whoever reads a verdict needs to see these.
    """
    return {k: v for k, v in sorted(os.environ.items()) if k in _ENV_EXACT or k.startswith(_ENV_PREFIXES)}
