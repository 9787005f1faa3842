"""The package ships what it needs and stays cheap to import."""

import subprocess
import sys
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: pytest itself depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "yolo_rdna1").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert "yolo_rdna1.configs" in listed


def test_wheel_carries_the_configs(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("yolo_rdna1-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "yolo_rdna1/configs/faults/gfx1010.yaml" in names
    assert "yolo_rdna1/configs/miopen/default.yaml" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_import_is_lazy(run_child_file):
    r = run_child_file("import_cost", "package")
    heavy, dt = r.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert heavy == "[]", f"import yolo_rdna1 pulled in {heavy}"
    assert float(dt) < 0.3
