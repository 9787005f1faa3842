"""``yolo-rdna1 doctor``: what this machine runs, what is known to go wrong with it, what to change.

Most RDNA1 failures come from a combination rather than one setting (an override plus a wheel,
a find-db plus a changed solver filter, fp16 plus gfx1010), and the person who has to fix it is
looking at a dead run, not at the ROCm issue tracker. So the doctor gathers every input of those
combinations in one place, names the known-bad ones and prints the exact setting or command that
fixes each.

It must work on any machine (a CPU-only laptop, a broken ROCm install, a CUDA box) and never
raise: each section catches its own errors and the report says "could not read" with the reason
instead of guessing.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from . import __version__
from .device import DeviceInfo, DeviceLike, base_arch, describe_device, override_to_arch, rocm_env_summary
from .faults import ENV_VAR as FAULTS_ENV
from .faults import load_profile
from .telemetry import open_reader

__all__ = ["collect", "diagnose", "format_report", "print_doctor"]

T = TypeVar("T")

#: MIOpen's documented defaults for the user (find/perf) db and the compiled-kernel cache.
USER_DB_ENV, USER_DB_DEFAULT = "MIOPEN_USER_DB_PATH", "~/.config/miopen"
CACHE_ENV, CACHE_DEFAULT = "MIOPEN_CUSTOM_CACHE_DIR", "~/.cache/miopen"
_OVERRIDE = "HSA_OVERRIDE_GFX_VERSION"

#: ``MIOPEN_FIND_ENFORCE`` values that run an exhaustive tuning search for every new conv.
_SEARCH_ENFORCE = {"3", "4", "SEARCH", "SEARCH_DB_UPDATE"}
_SOLVER_FILTER = re.compile(r"MIOPEN_DEBUG_(CONV_\w+|FIND_ONLY_SOLVER)$")
_LEVELS = ("bad", "warn", "info")


def _section(errors: dict[str, str], name: str, fn: Callable[[], T]) -> T | None:
    """``fn()``, or None with the failure recorded under ``name`` for the "could not read" list."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the doctor reports failures, it never raises them
        errors[name] = f"{type(e).__name__}: {e}"
        return None


# -- sections ---------------------------------------------------------------------------------


def _rocm_install_version() -> str | None:
    """The system ROCm version from ``$ROCM_PATH/.info/version`` (what rocminfo/amd-smi run on).

    It can differ from torch's bundled HIP (``torch.version.hip``): a mismatch is a common source
    of "works in one venv, not in another".
    """
    for base in (os.environ.get("ROCM_PATH"), "/opt/rocm"):
        if base:
            path = Path(base) / ".info" / "version"
            if path.is_file():
                return path.read_text().strip()
    return None


def _torch_arch_list() -> list[str]:
    """The GPU targets this torch build carries code objects for ([] without a usable GPU)."""
    return list(torch.cuda.get_arch_list())


def _versions(info: DeviceInfo | None) -> dict[str, Any]:
    try:
        ultralytics = importlib.metadata.version("ultralytics")
    except importlib.metadata.PackageNotFoundError:
        ultralytics = None
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "hip": getattr(torch.version, "hip", None),
        "cuda": getattr(torch.version, "cuda", None),
        "rocm_install": _rocm_install_version(),
        "conv_library": info.conv_library if info else None,
        "conv_library_version": info.conv_library_version if info else None,
        "ultralytics": ultralytics,
        "yolo_rdna1": __version__,
    }


def _dir_info(env_var: str, default: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Where a MIOpen directory is, who chose it, and how much is in it."""
    raw = env.get(env_var)
    path = Path(os.path.expanduser(raw or default))
    out: dict[str, Any] = {"path": str(path), "set_by": env_var if raw else "default", "exists": path.is_dir()}
    if not out["exists"]:
        return out
    files = size = 0
    unreadable: list[str] = []
    for folder, _, names in os.walk(path, onerror=lambda e: unreadable.append(str(e))):
        for name in names:
            try:
                size += os.stat(os.path.join(folder, name), follow_symlinks=False).st_size
                files += 1
            except OSError as e:
                unreadable.append(str(e))
    out.update(files=files, bytes=size)
    if unreadable:
        out["unreadable"] = unreadable[:3] + ([f"... {len(unreadable) - 3} more"] if len(unreadable) > 3 else [])
    return out


def _miopen_dirs(env: Mapping[str, str]) -> dict[str, Any]:
    user_db = _dir_info(USER_DB_ENV, USER_DB_DEFAULT, env)
    if user_db["exists"]:
        user_db["find_db"] = sorted(p.name for p in Path(user_db["path"]).glob("*.ufdb.txt"))
    return {"user_db": user_db, "kernel_cache": _dir_info(CACHE_ENV, CACHE_DEFAULT, env)}


def _faults(env: Mapping[str, str]) -> dict[str, Any]:
    spec = env.get(FAULTS_ENV, "").strip()
    if not spec:
        return {"state": "off"}
    try:
        profile = load_profile(spec)
    except Exception as e:  # noqa: BLE001 - an invalid profile is a finding, not a crash
        return {"state": "invalid", "spec": spec, "error": str(e)}
    return {"state": "on", "spec": spec, "name": profile.name, "rules": len(profile.rules)}


def _sensors(info: DeviceInfo) -> dict[str, Any]:
    reader = open_reader(info)
    try:
        reading = reader.read()
    finally:
        reader.close()
    return {"source": reader.source, "detail": getattr(reader, "detail", ""), "reading": reading._asdict()}


# -- findings ---------------------------------------------------------------------------------


def _finding(level: str, finding: str, fix: str) -> dict[str, str]:
    return {"level": level, "finding": finding, "fix": fix}


def _rdna1_findings(info: DeviceInfo | None) -> list[dict[str, str]]:
    """What an RDNA1 card risks whatever the install: fp16 NaNs, and an HSA override that runs
    another arch's code on it (the finding names the card and the override it runs under)."""
    out: list[dict[str, str]] = []
    if info is None or not info.is_rdna1:
        return out
    hw = base_arch(info.arch)
    out.append(
        _finding(
            "warn",
            f"fp16/AMP on {hw} gives NaN losses, black outputs and sometimes SIGSEGV (ROCm/ROCm#1857)",
            "train with amp=False (yolo_rdna1.train and `yolo-rdna1 train` set it unless you set amp yourself)",
        )
    )
    override_arch = override_to_arch(info.hsa_override) if info.hsa_override else None
    if override_arch is not None and override_arch != hw:
        advice = "10.1.0 (gfx1010 code)" if hw in ("gfx1011", "gfx1012") else "no override"
        out.append(
            _finding(
                "warn",
                f"{_OVERRIDE}={info.hsa_override} runs {override_arch} code on a {hw}: risky, {hw} lacks "
                "instructions (e.g. the dot instructions) that code may use; hangs, memory access faults and "
                "wrong results are reported with it",
                f"prefer a PyTorch build with gfx101X code objects (ROCm 7 'TheRock' gfx101X-dgpu wheels) and "
                f"{advice}; if you keep the override, keep guard=auto so convs with bad verdicts take the bypass",
            )
        )
    return out


def _override_format_findings(env: Mapping[str, str]) -> list[dict[str, str]]:
    """Override variables (also the per-device ``_N`` ones) whose value is not major.minor.stepping.

    Checked from the environment, not the device: a malformed value can be why no GPU was found.
    """
    out: list[dict[str, str]] = []
    for key, value in sorted(env.items()):
        if key == _OVERRIDE or key.startswith(_OVERRIDE + "_"):
            if override_to_arch(value) is None:
                out.append(
                    _finding(
                        "warn",
                        f"{key}={value!r} is not a major.minor.stepping value: newer ROCm ignores it, older ROCm "
                        "fails to find the GPU",
                        f"export {key}=10.3.0 (the form it needs) or unset {key}",
                    )
                )
    return out


def _code_object_findings(info: DeviceInfo | None, arch_list: list[str] | None) -> list[dict[str, str]]:
    """A ROCm torch build without code objects for the arch the card runs as.

    Every kernel then fails with "HIP error: invalid device function", which no conv routing
    avoids, so it is the one ``bad`` finding; an empty arch list is reported, not guessed at.
    """
    out: list[dict[str, str]] = []
    rocm = info is not None and info.backend == "rocm"
    if rocm and arch_list:
        have = {base_arch(a) for a in arch_list}
        eff = base_arch(info.effective_arch)
        if eff is not None and eff not in have:
            if info.is_rdna1 and not info.hsa_override:
                fix = (
                    "install a PyTorch build with gfx101X code objects (ROCm 7 'TheRock' gfx101X-dgpu wheels); "
                    f"as a risky fallback export {_OVERRIDE}=10.3.0 (gfx1011/gfx1012: 10.1.0)"
                )
            else:
                fix = f"install a PyTorch build for {eff}, or set {_OVERRIDE} to a target it has"
            out.append(
                _finding(
                    "bad",
                    f"this PyTorch build has no code objects for {eff} (it "
                    f"has {', '.join(sorted(a for a in have if a))}): GPU "
                    "kernels fail with 'HIP error: invalid device function'",
                    fix,
                )
            )
    elif rocm:
        out.append(
            _finding(
                "info",
                "could not list the code objects in this PyTorch build (torch.cuda.get_arch_list() is empty)",
                "if kernels fail with 'HIP error: invalid device function', the build lacks this card's target",
            )
        )
    return out


def _miopen_findings(env: Mapping[str, str], dirs: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """MIOpen state that outlives a run: a find-db that keeps picking a bad solver, an exhaustive
    tuning mode, and solver filters (which make the find-db stale when they change)."""
    out: list[dict[str, str]] = []
    user_db = (dirs or {}).get("user_db") or {}
    find_db = user_db.get("find_db") or []
    if find_db:
        folder = user_db["path"]
        out.append(
            _finding(
                "warn",
                f"{len(find_db)} MIOpen find-db file(s) in {folder} "
                f"({', '.join(find_db[:3])}{', ...' if len(find_db) > 3 else ''}): MIOpen reuses "
                "the solver recorded there on every later run (a db hit skips benchmarking "
                "except in NORMAL find mode), so a solver that hung or aborted in a crashed "
                "run, or one picked before the solver filters changed, keeps being picked",
                "after a crashed run or a change of MIOPEN_DEBUG_* "
                f"solver filters: rm -f {shlex.quote(folder)}/*.ufdb.txt",
            )
        )

    enforce = env.get("MIOPEN_FIND_ENFORCE", "").strip().upper()
    if enforce in _SEARCH_ENFORCE:
        out.append(
            _finding(
                "warn",
                f"MIOPEN_FIND_ENFORCE={env['MIOPEN_FIND_ENFORCE']} tunes every new conv shape exhaustively: very slow "
                "(30+ minutes on an RX 5600 XT before the first epoch)",
                "unset MIOPEN_FIND_ENFORCE",
            )
        )

    filters = sorted(k for k in env if _SOLVER_FILTER.match(k))
    if filters:
        out.append(
            _finding(
                "info",
                f"MIOpen solver filters in effect: {', '.join(f'{k}={env[k]}' for k in filters)}; "
                "they are read once per process and conv verdicts are stored per env profile",
                "after changing them, delete the user find-db (rm -f <user db>/*.ufdb.txt)",
            )
        )
    return out


def _no_gpu_findings(info: DeviceInfo | None) -> list[dict[str, str]]:
    """A torch that sees no GPU: training runs on the CPU, and the fix depends on the build
    (device access for a ROCm build, another build otherwise)."""
    if info is None or info.backend != "cpu":
        return []
    hip, cuda = getattr(torch.version, "hip", None), getattr(torch.version, "cuda", None)
    if hip:
        fix = "check access to /dev/kfd and /dev/dri (video and render groups) and HIP_VISIBLE_DEVICES"
    else:
        fix = "for an AMD card install a ROCm build of PyTorch" + ("" if cuda else "; for NVIDIA a CUDA build")
    build = f"ROCm {hip}" if hip else f"CUDA {cuda}" if cuda else "CPU-only"
    return [_finding("info", f"torch ({build} build) sees no GPU: training runs on the CPU", fix)]


def _sensor_findings(info: DeviceInfo | None, sensors: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """A GPU without readable sensors: the thermal guard cannot pause a card that overheats."""
    if info is None or info.backend not in ("rocm", "cuda") or sensors is None or sensors.get("source") != "none":
        return []
    fix = (
        "pip install amdsmi matching your ROCm, or check that /sys/class/drm/card*/device/hwmon is readable"
        if info.backend == "rocm"
        else "pip install nvidia-ml-py"
    )
    return [_finding("info", "no GPU sensors: temperatures are reported as -1 and the thermal guard cannot pause", fix)]


def diagnose(
    info: DeviceInfo | None,
    env: Mapping[str, str],
    dirs: Mapping[str, Any] | None = None,
    arch_list: list[str] | None = None,
    sensors: Mapping[str, Any] | None = None,
) -> list[dict[str, str]]:
    """Known-bad combinations among what was read; each ``{level, finding, fix}``, worst first.

    Inputs that could not be read are None and the checks that need them are skipped (the
    report lists them under "could not read"), so a finding is never a guess. Findings of one
    level keep the order of the checks below (the sort is stable).
    """
    out = [
        *_rdna1_findings(info),
        *_override_format_findings(env),
        *_code_object_findings(info, arch_list),
        *_miopen_findings(env, dirs),
        *_no_gpu_findings(info),
        *_sensor_findings(info, sensors),
    ]
    out.sort(key=lambda f: _LEVELS.index(f["level"]))
    return out


# -- collect / format / print -----------------------------------------------------------------


def collect(device: DeviceLike = None) -> dict[str, Any]:
    """Everything the doctor knows about ``device`` (any ``describe_device`` form), as plain data.

    Keys: device, versions, miopen, env, faults, sensors, findings, errors (section -> reason
    it could not be read). Never raises.
    """
    errors: dict[str, str] = {}
    env = dict(os.environ)
    info = _section(errors, "device", lambda: describe_device(device))
    dirs = _section(errors, "miopen", lambda: _miopen_dirs(env))
    arch_list = (
        _section(errors, "code objects", _torch_arch_list) if info is not None and info.backend == "rocm" else None
    )
    sensors = _section(errors, "sensors", lambda: _sensors(info)) if info is not None else None
    report: dict[str, Any] = {
        "device": _section(errors, "device", info.as_dict) if info is not None else None,
        "versions": _section(errors, "versions", lambda: _versions(info)),
        "code_objects": arch_list,
        "miopen": dirs,
        "env": _section(errors, "env", rocm_env_summary),
        "faults": _section(errors, "faults", lambda: _faults(env)),
        "sensors": sensors,
    }
    report["findings"] = _section(errors, "findings", lambda: diagnose(info, env, dirs, arch_list, sensors)) or []
    report["errors"] = errors
    return report


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n) / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _fmt_device(d: Mapping[str, Any]) -> list[str]:
    backend = d.get("backend")
    # torch names ROCm devices cuda:N too; say both, since users pass the torch name.
    where = f"cuda:{d.get('index')} ({backend})" if backend in ("rocm", "cuda") else str(backend)
    lines = [f"  device        {where}  {d.get('name') or ''}".rstrip()]
    if d.get("backend") in ("rocm", "cuda"):
        override = d.get("hsa_override")
        lines.append(
            f"  arch          {d.get('arch') or 'unknown'} (effective {d.get('effective_arch') or 'unknown'}"
            + (f", {_OVERRIDE}={override})" if override else ", no override)")
        )
        lines.append(f"  RDNA1         {'yes' if d.get('is_rdna1') else 'no'}")
        lines.append(f"  PCI           {d.get('pci_bus_id') or 'unknown'}")
    lines.append(f"  fingerprint   {d.get('fingerprint')}")
    return lines


def _fmt_versions(v: Mapping[str, Any]) -> list[str]:
    conv = v.get("conv_library")
    rows = [
        ("python", v.get("python")),
        ("torch", v.get("torch")),
        ("HIP (torch)", v.get("hip")),
        ("CUDA (torch)", v.get("cuda")),
        ("ROCm install", v.get("rocm_install") or "not found"),
        ("conv library", f"{conv} {v.get('conv_library_version') or 'version unknown'}" if conv else "none"),
        ("ultralytics", v.get("ultralytics") or "not installed"),
        ("yolo_rdna1", v.get("yolo_rdna1")),
    ]
    return [f"  {k:<13} {val}" for k, val in rows if val is not None]


def _fmt_dir(label: str, d: Mapping[str, Any]) -> list[str]:
    head = f"  {label:<13} {d['path']} ({'from ' + d['set_by'] if d['set_by'] != 'default' else 'default'})"
    if not d.get("exists"):
        return [head + ": does not exist"]
    lines = [head + f": {d.get('files', 0)} files, {_size(int(d.get('bytes', 0)))}"]
    if "find_db" in d:
        lines.append(f"  {'':<13} find-db (*.ufdb.txt): {', '.join(d['find_db']) or 'none'}")
    for problem in d.get("unreadable", []):
        lines.append(f"  {'':<13} could not read: {problem}")
    return lines


def _fmt_sensors(s: Mapping[str, Any]) -> list[str]:
    if s.get("source") == "none":
        return [f"  none ({s.get('detail')})"]
    r = s.get("reading", {})
    units = {"edge_c": " C", "junction_c": " C", "mem_c": " C", "power_w": " W", "busy_pct": " %"}
    values = ", ".join(
        f"{k.rsplit('_', 1)[0]} {'n/a' if r.get(k) is None else f'{r[k]:.0f}{u}'}" for k, u in units.items()
    )
    return [f"  {s.get('source')} ({s.get('detail')}): {values}"]


def _fmt_faults(f: Mapping[str, Any]) -> list[str]:
    if f["state"] == "off":
        return [f"  off ({FAULTS_ENV} unset)"]
    if f["state"] == "invalid":
        return [f"  INVALID {FAULTS_ENV}={f['spec']!r}: {f['error']}"]
    return [f"  ON: {FAULTS_ENV}={f['spec']} (profile {f['name']}, {f['rules']} rules): vendor convs fail on purpose"]


def format_report(d: Mapping[str, Any]) -> str:
    """The doctor's text report of :func:`collect`'s dict; a section that cannot be shown says so."""
    errors = dict(d.get("errors") or {})
    lines = ["yolo-rdna1 doctor"]

    def block(title: str, key: str, fmt: Callable[[Any], list[str]]) -> None:
        lines.append("")
        lines.append(title)
        value = d.get(key)
        if value is None:
            lines.append(f"  could not read: {errors.get(key, 'not available')}")
            return
        try:
            lines.extend(fmt(value))
        except Exception as e:  # noqa: BLE001 - a malformed section must not hide the others
            lines.append(f"  could not show: {type(e).__name__}: {e}")

    block("Device", "device", _fmt_device)
    block("Versions", "versions", _fmt_versions)
    if d.get("code_objects") is not None:
        lines.append(f"  {'code objects':<13} {', '.join(d['code_objects']) or 'none listed'}")
    block(
        "MIOpen databases",
        "miopen",
        lambda m: _fmt_dir("user db", m["user_db"]) + _fmt_dir("kernel cache", m["kernel_cache"]),
    )
    block("Environment (MIOpen/HIP/HSA)", "env", lambda e: [f"  {k}={v}" for k, v in e.items()] or ["  none set"])
    block("Fault simulator", "faults", _fmt_faults)
    if d.get("device") is not None:
        block("Sensors", "sensors", _fmt_sensors)

    lines.append("")
    findings = d.get("findings") or []
    lines.append("Findings" if findings else "Findings: none")
    for f in findings:
        try:
            lines.append(f"  [{f['level'].upper()}] {f['finding']}")
            lines.append(f"         fix: {f['fix']}")
        except Exception as e:  # noqa: BLE001
            lines.append(f"  could not show a finding: {type(e).__name__}: {e}")

    if errors:
        lines.append("")
        lines.append("Could not read")
        lines.extend(f"  {name}: {why}" for name, why in errors.items())
    return "\n".join(lines)


def print_doctor(device: DeviceLike = None) -> int:
    """Print the doctor's report for ``device`` (``yolo-rdna1 doctor [device=N]``); exit status 0.

    The status is 0 even with findings: the doctor informs, and a script that wants to act on
    findings should use :func:`collect`.
    """
    print(format_report(collect(device)))
    return 0
