"""Configs by name or by path: a bare name is always the shipped file, a file of one's own is a path,
and every problem is one line naming the file, raised as the caller's own error."""

from pathlib import Path

import pytest
import yaml

from yolo_rdna1.configs_path import config_dir, is_name, load_named_yaml, resolve_named
from yolo_rdna1.data.configs import DatasetError, dataset_config
from yolo_rdna1.errors import Rdna1Error
from yolo_rdna1.faults import FaultProfileError, load_profile, profile_from_env
from yolo_rdna1.options import OptionError
from yolo_rdna1.probe.envprofiles import EnvProfileError, load_env_profile
from yolo_rdna1.recipes import load_recipe

LOADERS = {  # kind -> (a shipped name, its loader, the loader's error)
    "faults": ("gfx1010", load_profile, FaultProfileError),
    "miopen": ("no_gemm", load_env_profile, EnvProfileError),
    "recipes": ("ltdv2_yolov8n_long", load_recipe, OptionError),
    "datasets": ("ltdv2", dataset_config, DatasetError),
}


def test_the_naming_rule():
    assert is_name("gfx1010") and is_name("ltdv2-sample") and is_name("my.profile")
    assert not any(map(is_name, ("./gfx1010", "sub/x", "x.yaml", "X.YML", "/abs/x", "", Path("gfx1010"))))


def test_defect4_a_file_named_like_a_shipped_config_never_shadows_it(tmp_path, monkeypatch):
    """Files in the working directory named exactly like shipped configs, with hostile content."""
    monkeypatch.chdir(tmp_path)
    hostile = {
        "gfx1010": {"name": "gfx1010", "rules": []},  # a simulator that simulates nothing
        "default": {"name": "default", "env": {"LD_PRELOAD": "/tmp/evil.so"}},
        "ltdv2_yolov8n_long": {"model": "/tmp/evil.pt", "project": "/", "exist_ok": True},
        "ltdv2": {"path": "/tmp/evil", "train": "x", "val": "x", "names": {0: "x"}, "train_settings": {"project": "/"}},
    }
    for name, content in hostile.items():
        Path(name).write_text(yaml.safe_dump(content))
    assert load_profile("gfx1010").source == str(config_dir("faults", "gfx1010.yaml")) and load_profile("gfx1010").rules
    assert profile_from_env({"YOLO_RDNA1_FAULTS": "gfx1010"}).rules
    assert load_env_profile("default").env == {}
    assert load_recipe("ltdv2_yolov8n_long")["model"] == "yolov8n.yaml"
    assert dataset_config("ltdv2")["path"] == "${LTDV2_ROOT}"
    # the same file given as a path is the user's own, and is read (and judged) as such
    assert load_profile("./gfx1010").rules == []
    with pytest.raises(EnvProfileError, match="name 'default' is a shipped profile's"):
        load_env_profile("./default")


@pytest.mark.parametrize("kind", LOADERS)
def test_unknown_names_and_bad_files_are_one_line_errors_of_the_callers_kind(kind, tmp_path):
    name, load, error = LOADERS[kind]
    assert issubclass(error, Rdna1Error)
    cases = {
        name[:-1] + "9": (
            rf"unknown .* '{name[:-1]}9'; did you mean '{name}'\? "
            rf"shipped .*{name}.*; for a file of your own give its path"
        ),
        "nothing-like-it": r"shipped .*; for a file of your own give its path \(e\.g\. \./nothing-like-it\.yaml\)",
        f"{name}.yaml": rf"{name}.yaml: no such file; the shipped .* is named '{name}', without .yaml",
        str(tmp_path / "absent.yaml"): "absent.yaml: no such file",
    }
    files = {
        "broken.yaml": ("a: [1,\n  b: {\n", "not valid YAML"),
        "list.yaml": ("- 1\n- 2\n", "expected a mapping of keys at the top level, got a list"),
        "empty.yaml": ("", "expected a mapping of keys at the top level, got an empty file"),
        "code.yaml": ("!!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),  # safe_load runs nothing
        "binary.yaml": (b"\xff\xfe\x00bad", "cannot be read"),
        "date.yaml": ("a: 2020-13-45\n", "not valid YAML \\(month must be in 1..12\\)"),
        "bigint.yaml": ("a: " + "1" * 5000, "not valid YAML"),
    }
    for file, (content, message) in files.items():
        path = tmp_path / file
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        cases[str(path)] = rf"{file}: {message}"
    for spec, pattern in cases.items():
        with pytest.raises(error, match=pattern) as info:
            load(spec)
        assert "\n" not in str(info.value), str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_the_loader_returns_the_file_and_its_mapping(tmp_path):
    path, data = load_named_yaml("faults", "gfx1010")
    assert path == config_dir("faults", "gfx1010.yaml") and data["name"] == "gfx1010"
    mine = tmp_path / "mine"  # no suffix: a Path is a path all the same
    mine.write_text("name: mine\nrules: []\n")
    assert load_named_yaml("faults", mine) == (mine, {"name": "mine", "rules": []})
    assert resolve_named("faults", str(mine)) == mine
    with pytest.raises(Rdna1Error, match="unknown fault profile 'mine'"):
        resolve_named("faults", "mine")
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 1200)  # nests deeper than Python's recursion limit
    with pytest.raises(Rdna1Error, match="deep.yaml: not valid YAML"):
        load_named_yaml("faults", deep)


def test_env_var_names_a_shipped_profile_or_a_path_and_says_so_when_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mine.yaml").write_text("name: mine\nrules: []\n")
    assert profile_from_env({"YOLO_RDNA1_FAULTS": "mine.yaml"}).name == "mine"
    assert profile_from_env({"YOLO_RDNA1_FAULTS": "gfx1010"}).name == "gfx1010"
    with pytest.raises(
        FaultProfileError,
        match=r"^YOLO_RDNA1_FAULTS=mine: unknown fault profile 'mine'; .*; fix it or unset YOLO_RDNA1_FAULTS$",
    ):
        profile_from_env({"YOLO_RDNA1_FAULTS": "mine"})
