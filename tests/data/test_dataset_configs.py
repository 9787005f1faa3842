"""Shipped dataset configs: found by name or path, root from an argument or the environment,
thermal augmentation settings, and the sample layout they describe."""

import json
import re

import pytest
import yaml

from yolo_rdna1.configs_path import config_dir
from yolo_rdna1.data.configs import DatasetError, dataset_config, resolve_data
from yolo_rdna1.data.ltdv2_sample import make_ltdv2_sample
from yolo_rdna1.data.synthetic import CLASS_NAMES, make_synthetic_thermal


@pytest.fixture
def converted_like(tmp_path):
    """A folder with the converted layout (images/train, images/val); its content does not matter here."""
    return make_synthetic_thermal(tmp_path / "yolo", n_train=2, n_val=1).parent


def test_name_with_root_argument_or_environment(converted_like, monkeypatch):
    out = resolve_data("ltdv2", root=converted_like)
    cfg = yaml.safe_load(out.read_text())
    assert cfg == {"path": str(converted_like), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASS_NAMES))}
    assert converted_like not in out.parents  # the dataset folder is not written to
    monkeypatch.setenv("LTDV2_ROOT", str(converted_like))
    assert resolve_data("ltdv2") == out and resolve_data("ltdv2.yaml") == out
    assert resolve_data(config_dir("datasets", "ltdv2.yaml")) == out  # the shipped file by path: same placeholder
    (converted_like / "images" / "test").mkdir()
    assert yaml.safe_load(resolve_data("ltdv2").read_text())["test"] == "images/test"
    from ultralytics.data.utils import check_det_dataset

    assert check_det_dataset(str(out))["nc"] == 4


def test_plain_yaml_passes_through_and_bad_specs_explain(converted_like, tmp_path, monkeypatch):
    plain = converted_like / "data.yaml"
    assert resolve_data(plain) == plain.resolve()
    monkeypatch.delenv("LTDV2_ROOT", raising=False)
    with pytest.raises(DatasetError, match="pass root=... or set LTDV2_ROOT"):
        resolve_data("ltdv2")
    with pytest.raises(DatasetError, match="not found.*ltdv2-sample"):
        resolve_data("ltdv3")
    with pytest.raises(DatasetError, match="not a dataset config"):
        resolve_data("ltdv2-drift")
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_data("ltdv2", root=tmp_path / "nowhere")
    raw = make_ltdv2_sample(tmp_path / "download", months=1, frames_per_clip=1)
    with pytest.raises(DatasetError, match="that is the download, convert it first"):
        resolve_data("ltdv2", root=raw)


def test_thermal_training_settings_and_recipe_agree():
    settings = dataset_config("ltdv2")["train_settings"]
    assert settings["hsv_h"] == 0 and settings["hsv_s"] == 0  # grey frames: no hue, no saturation
    assert settings["mosaic"] > 0 and settings["scale"] > 0 and settings["fliplr"] > 0
    recipe = yaml.safe_load(config_dir("recipes", "ltdv2_yolov8n_long.yaml").read_text())
    assert {k: recipe[k] for k in ("hsv_h", "hsv_s") if k in recipe} == {"hsv_h": 0, "hsv_s": 0}
    text = config_dir("datasets", "ltdv2.yaml").read_text()
    assert "hue" in text and "grey" in text  # the reason is written next to the values
    drift = dataset_config("ltdv2-drift")
    assert drift["scheme"] in drift["schemes"] and sorted(m for ms in drift["seasons"].values() for m in ms) == list(range(1, 13))


def test_sample_matches_the_layout_its_config_describes(tmp_path):
    layout = dataset_config("ltdv2-sample")["layout"]
    root = make_ltdv2_sample(tmp_path / "s", months=2, frames_per_clip=3)
    assert all((root / name).is_file() for name in layout["annotations"])
    pattern = re.escape(layout["file_name"]).replace(r"\{YYYYMMDD\}", r"\d{8}").replace(r"\{n\}", r"\d+").replace(r"\{hhmm\}", r"\d{4}").replace(r"\{nnnn\}", r"\d{4}")
    months = set()
    for name in layout["annotations"]:
        coco = json.loads((root / name).read_text())
        assert {c["id"]: c["name"] for c in coco["categories"]} == layout["categories"]
        for img in coco["images"]:
            assert re.fullmatch(pattern, img["file_name"]) and (root / "data" / img["file_name"]).is_file()
            months.add(img["date_captured"][:7])
        assert ("annotations" in coco) == (name != "data/TestNoLabels.json")
    assert sorted(months) == [str(layout["start"]), "2020-06"]
