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
    assert cfg == {
        "path": str(converted_like),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }
    assert converted_like not in out.parents  # the dataset folder is not written to
    monkeypatch.setenv("LTDV2_ROOT", str(converted_like))
    assert resolve_data("ltdv2") == out
    with pytest.raises(
        DatasetError, match="ltdv2.yaml: no such file; the shipped dataset config is named 'ltdv2', without .yaml"
    ):
        resolve_data("ltdv2.yaml")  # a path (it ends in .yaml), and there is no such file here
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
    with pytest.raises(DatasetError, match="unknown dataset config 'ltdv3'; did you mean 'ltdv2'.*ltdv2-sample"):
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
    assert drift["scheme"] in drift["schemes"] and sorted(m for ms in drift["seasons"].values() for m in ms) == list(
        range(1, 13)
    )


def test_sample_matches_the_layout_its_config_describes(tmp_path):
    layout = dataset_config("ltdv2-sample")["layout"]
    root = make_ltdv2_sample(tmp_path / "s", months=2, frames_per_clip=3)
    assert all((root / name).is_file() for name in layout["annotations"])
    pattern = (
        re.escape(layout["file_name"])
        .replace(r"\{YYYYMMDD\}", r"\d{8}")
        .replace(r"\{n\}", r"\d+")
        .replace(r"\{hhmm\}", r"\d{4}")
        .replace(r"\{nnnn\}", r"\d{4}")
    )
    months = set()
    for name in layout["annotations"]:
        coco = json.loads((root / name).read_text())
        assert {c["id"]: c["name"] for c in coco["categories"]} == layout["categories"]
        for img in coco["images"]:
            assert re.fullmatch(pattern, img["file_name"]) and (root / "data" / img["file_name"]).is_file()
            months.add(img["date_captured"][:7])
        assert ("annotations" in coco) == (name != "data/TestNoLabels.json")
    assert sorted(months) == [str(layout["start"]), "2020-06"]


@pytest.fixture(scope="module")
def sample_converted(tmp_path_factory):
    """A converted LTDV2-shaped sample of five months (one frame a clip): enough for ltdv2-drift's train_months=4."""
    from yolo_rdna1.data.ltdv2 import convert_ltdv2

    base = tmp_path_factory.mktemp("ltdv2")
    src = make_ltdv2_sample(base / "src", months=5, frames_per_clip=1, days_per_month=1)
    convert_ltdv2(src, base / "yolo", progress=False)
    return base / "yolo"


class FakeYOLO:
    """Stands in for ultralytics.YOLO: records what train() would have trained on."""

    calls: list = []

    def __init__(self, model):
        self.model = model

    def train(self, **kwargs):
        FakeYOLO.calls.append({"model": self.model, **kwargs})
        return "trained"


@pytest.fixture
def no_training(monkeypatch):
    """train() runs up to YOLO.train / the supervisor, which only record their arguments."""
    import ultralytics

    import yolo_rdna1.callbacks
    import yolo_rdna1.supervision

    FakeYOLO.calls = []
    supervised = []
    monkeypatch.setattr(ultralytics, "YOLO", FakeYOLO)
    monkeypatch.setattr(yolo_rdna1.callbacks, "add_callbacks", lambda yolo, **options: yolo)
    monkeypatch.setattr(
        yolo_rdna1.supervision, "supervise", lambda kwargs, policy: supervised.append((kwargs, policy)) or "run-dir"
    )
    monkeypatch.delenv("LTDV2_ROOT", raising=False)
    monkeypatch.delenv("LTDV2_SAMPLE_ROOT", raising=False)
    return FakeYOLO.calls, supervised


def test_train_by_name_gets_a_concrete_yaml_and_thermal_defaults_the_caller_overrides(
    sample_converted, tmp_path, no_training
):
    import yolo_rdna1

    trained, _ = no_training
    settings = dataset_config("ltdv2")["train_settings"]
    assert (
        yolo_rdna1.train(data="ltdv2", root=sample_converted, epochs=1, hsv_v=0.1, project=str(tmp_path)) == "trained"
    )
    args = trained[-1]
    assert yaml.safe_load(open(args["data"]))["path"] == str(sample_converted)
    assert (
        args["hsv_h"] == 0
        and args["hsv_s"] == 0
        and args["mosaic"] == settings["mosaic"]
        and args["fliplr"] == settings["fliplr"]
    )
    assert args["hsv_v"] == 0.1 != settings["hsv_v"]  # the caller's value wins
    # the sample names ltdv2's settings; a plain data.yaml gets none; an Ultralytics name passes through
    yolo_rdna1.train(data="ltdv2-sample", root=sample_converted, project=str(tmp_path))
    assert {k: trained[-1][k] for k in settings} == settings
    plain = make_synthetic_thermal(tmp_path / "syn", n_train=1, n_val=1)
    yolo_rdna1.train(data=str(plain), project=str(tmp_path), hsv_s=0.7)
    assert trained[-1]["data"] == str(plain) and "hsv_h" not in trained[-1] and trained[-1]["hsv_s"] == 0.7
    yolo_rdna1.train(data="coco8.yaml", project=str(tmp_path))
    assert trained[-1]["data"] == "coco8.yaml" and "hsv_h" not in trained[-1]


def test_converted_and_drift_yamls_carry_the_settings_and_ltdv2_drift_trains_on_early_months(
    sample_converted, tmp_path, no_training
):
    from yolo_rdna1.data import resolve_training_data

    settings = dataset_config("ltdv2")["train_settings"]
    assert resolve_training_data(sample_converted / "data.yaml") == (str(sample_converted / "data.yaml"), settings)
    data, got = resolve_training_data("ltdv2-drift", root=sample_converted)
    assert data == str(sample_converted / "drift" / "month-4" / "train.yaml") and got == settings
    splits = json.loads((sample_converted / "drift" / "month-4" / "splits.json").read_text())
    assert (
        splits["train_months"] == ["2020-05", "2020-06", "2020-07", "2020-08"]
        and splits["periods"][-1]["name"] == "2020-09"
    )

    import yolo_rdna1

    trained, _ = no_training
    yolo_rdna1.train(data="ltdv2-drift", root=sample_converted, project=str(tmp_path), flipud=0.5)
    assert trained[-1]["data"] == data and trained[-1]["hsv_h"] == 0 and trained[-1]["flipud"] == 0.5


def test_missing_root_or_typo_stops_before_training_with_what_to_set(tmp_path, no_training, capsys):
    import yolo_rdna1
    from yolo_rdna1.cli import main

    trained, supervised = no_training
    for data in ("ltdv2", "ltdv2-drift"):
        with pytest.raises(DatasetError, match=r"pass root=\.\.\. or set LTDV2_ROOT"):
            yolo_rdna1.train(data=data, epochs=1, project=str(tmp_path))
    with pytest.raises(DatasetError, match="pass root=... or set LTDV2_SAMPLE_ROOT"):
        yolo_rdna1.train(data="ltdv2-sample", supervise=True, project=str(tmp_path))
    with pytest.raises(DatasetError, match="did you mean 'ltdv2'"):
        yolo_rdna1.train(data="ltdv3", project=str(tmp_path))
    with pytest.raises(DatasetError, match="applies to dataset configs"):
        yolo_rdna1.train(data="coco8.yaml", root=tmp_path, project=str(tmp_path))
    assert main(["train", "recipe=ltdv2_yolov8n_long", "data=ltdv2", f"project={tmp_path}"]) == 2
    assert "LTDV2_ROOT" in capsys.readouterr().err
    assert trained == [] and supervised == []


def test_cli_recipe_with_a_dataset_name_merges_recipe_dataset_and_command_line(sample_converted, tmp_path, no_training):
    from yolo_rdna1.cli import main

    _, supervised = no_training
    assert (
        main(
            [
                "train",
                "recipe=ltdv2_yolov8n_long",
                "data=ltdv2",
                f"root={sample_converted}",
                "hsv_v=0.5",
                "backoff_s=0",
                f"project={tmp_path}",
                "epochs=1",
            ]
        )
        == 0
    )
    kwargs, policy = supervised[-1]
    assert yaml.safe_load(open(kwargs["data"]))["path"] == str(sample_converted) and "root" not in kwargs
    assert (
        kwargs["flipud"] == dataset_config("ltdv2")["train_settings"]["flipud"]
    )  # from the dataset config (the recipe has none)
    assert (
        kwargs["hsv_h"] == 0 and kwargs["imgsz"] == 640 and kwargs["epochs"] == 1 and kwargs["hsv_v"] == 0.5
    )  # recipe, then command line
    assert policy.max_restarts == 20 and policy.backoff_s == 0


HOSTILE_SETTINGS = {
    "project": "/",
    "name": "../../elsewhere",
    "exist_ok": True,
    "pretrained": "/tmp/evil.pt",
    "model": "/tmp/evil.pt",
    "resume": "/tmp/evil.pt",
    "data": "/tmp/other.yaml",
    "save_dir": "/",
    "device": "cpu",
    "cache": "disk",
    "amp": True,
    "workers": 64,
    "weights": "/tmp/evil.pt",
    "cfg": "/tmp/evil.yaml",
    "save_period": 1,
}


@pytest.mark.parametrize("key", HOSTILE_SETTINGS)
def test_defect5_dataset_train_settings_cannot_redirect_runs_load_weights_or_change_the_device(
    key, converted_like, tmp_path, no_training
):
    import yolo_rdna1

    trained, supervised = no_training
    received = tmp_path / "received.yaml"
    received.write_text(
        yaml.safe_dump(
            {
                "path": str(converted_like),
                "train": "images/train",
                "val": "images/val",
                "names": dict(enumerate(CLASS_NAMES)),
                "train_settings": {"hsv_h": 0.0, key: HOSTILE_SETTINGS[key]},
            }
        )
    )
    with pytest.raises(
        DatasetError,
        match=(
            rf"received.yaml: train_settings may not set '{key}': "
            r"a dataset config sets only augmentation and hyperparameters"
        ),
    ) as info:
        yolo_rdna1.train(data=str(received), project=str(tmp_path), epochs=1)
    assert "\n" not in str(info.value)
    with pytest.raises(DatasetError, match=f"'{key}'"):
        yolo_rdna1.train(data=str(received), project=str(tmp_path), supervise=True)
    assert trained == [] and supervised == []


@pytest.mark.parametrize(
    "settings, pattern",
    [
        ({"hsv_h": "0.1"}, "hsv_h must be a number"),
        ({"lr0": float("nan")}, "lr0 must be a number"),
        ({"epochs": 1.5}, "epochs must be an integer >= 0"),
        ({"imgsz": -640}, "imgsz must be an integer >= 0"),
        ({"rect": 1}, "rect must be true or false"),
        ({"scale": [0.5, 1.5]}, "scale must be a number"),
        ({"optimizer": "os.system"}, "optimizer must be one of auto, SGD"),
        ({1: 0.5}, "may not set 1"),
        ("../../other.yaml", "train_settings '../../other.yaml' must be the name of a shipped dataset config"),
        ("ltdv3", "unknown dataset config 'ltdv3'"),
    ],
)
def test_defect5_train_settings_values_are_type_checked(settings, pattern, converted_like, tmp_path):
    from yolo_rdna1.data import resolve_training_data

    received = tmp_path / "received.yaml"
    received.write_text(
        yaml.safe_dump(
            {
                "path": str(converted_like),
                "train": "images/train",
                "val": "images/val",
                "names": {0: "person"},
                "train_settings": settings,
            }
        )
    )
    with pytest.raises(DatasetError, match=pattern):
        resolve_training_data(received)


def test_allowed_train_settings_pass_as_they_are(converted_like, tmp_path):
    from yolo_rdna1.data import resolve_training_data
    from yolo_rdna1.data.configs import TRAIN_SETTINGS

    settings = {
        "lr0": 0.002,
        "epochs": 3,
        "batch": 0.7,
        "cos_lr": True,
        "optimizer": "AdamW",
        "mosaic": 0,
        "copy_paste_mode": "mixup",
    }
    received = tmp_path / "received.yaml"
    received.write_text(
        yaml.safe_dump(
            {
                "path": str(converted_like),
                "train": "images/train",
                "val": "images/val",
                "names": {0: "person"},
                "train_settings": settings,
            }
        )
    )
    assert resolve_training_data(received) == (str(received), settings)
    assert not set(HOSTILE_SETTINGS) & set(TRAIN_SETTINGS)
