"""Test environment: offline Ultralytics, a private config dir, no fault profile leaking in."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports ultralytics: no network, no pip, no writes to the user's settings.
_CFG = tempfile.mkdtemp(prefix="yolo_rdna1_tests_cfg_")
os.environ["YOLO_CONFIG_DIR"] = _CFG
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"
os.environ.pop("YOLO_RDNA1_FAULTS", None)
os.environ.setdefault("YOLO_RDNA1_CACHE", tempfile.mkdtemp(prefix="yolo_rdna1_tests_cache_"))

REPO = Path(__file__).resolve().parent.parent
#: Child programs of the tests: real files, run by path (the Ultralytics 8.3 wheel installs a
#: top-level ``tests`` package that would shadow ours in a child, so they never import ``tests.*``).
CHILDREN = REPO / "tests" / "children"


@pytest.fixture(autouse=True)
def _no_guard_leaks():
    """Every test starts and ends with torch's own conv methods in place."""
    from yolo_rdna1.guard import disable

    disable()
    yield
    disable()


@pytest.fixture(autouse=True)
def _device_env_kept():
    """Ultralytics 8.3's select_device writes CUDA_VISIBLE_DEVICES ('-1' on the CPU) into os.environ;
    no later test may see it."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    yield
    if before is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = before


def child_argv(name: str, *args: object) -> list[str]:
    """The command line that runs ``tests/children/<name>.py`` with ``args`` (made strings)."""
    path = CHILDREN / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no child program {path}")
    return [sys.executable, str(path), *(str(a) for a in args)]


@pytest.fixture(scope="session")
def child_command():
    """``child_command(name, *args)``: the argv of a child program, for tests that need ``Popen``."""
    return child_argv


@pytest.fixture(scope="session")
def run_child_file():
    """Run a child program of ``tests/children`` to its end (hangs and aborts never touch the test process)."""

    def run(
        name: str, *args: object, env: dict[str, str] | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            child_argv(name, *args), env=full_env, capture_output=True, text=True, timeout=timeout, cwd=str(REPO)
        )

    return run


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A small synthetic thermal dataset shared by the training tests (data.yaml path)."""
    from yolo_rdna1.data import make_synthetic_thermal

    return make_synthetic_thermal(tmp_path_factory.mktemp("thermal"), n_train=16, n_val=8, seed=0)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """A verdict cache shared by the trainings of a session: each signature is probed once."""
    return tmp_path_factory.mktemp("verdict-cache")
