"""check_dataset: a clean dataset passes; each planted problem is found, counted and named."""

import shutil

import pytest
import yaml

from yolo_rdna1.cli import main
from yolo_rdna1.data.check import FAILURES, check_dataset
from yolo_rdna1.data.configs import DatasetError
from yolo_rdna1.data.synthetic import make_synthetic_thermal


@pytest.fixture
def dataset(tmp_path):
    return make_synthetic_thermal(tmp_path / "d", n_train=12, n_val=4, seed=2)


def test_clean_dataset_passes(dataset):
    report = check_dataset(dataset)
    assert report.ok and not any(report.issues[k] for k in FAILURES)
    assert report.splits["train"]["images"] == 12 and report.splits["val"]["labels"] == 4
    assert report.splits["train"]["boxes"] == sum(report.splits["train"][n] for n in report.names.values()) > 0
    assert "PASS" in report.summary().splitlines()[0]


def test_planted_problems_are_each_found(dataset):
    root = dataset.parent
    train_img, train_lbl = root / "images" / "train", root / "labels" / "train"
    imgs = sorted(train_img.glob("*.jpg"))
    (train_lbl / f"{imgs[0].stem}.txt").write_text("7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.2 0.2\n")  # class 7 of 4
    (train_lbl / f"{imgs[1].stem}.txt").write_text(
        "1 0.95 0.5 0.2 0.1\n2 1.3 0.5 0.1 0.1\n"
    )  # edge past 1, value past 1
    (train_lbl / f"{imgs[2].stem}.txt").write_text(
        "0 0.5 0.5\nperson 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.0 0.1\n"
    )  # short, not numeric, zero width
    imgs[3].unlink()  # a label without its image
    (train_lbl / f"{imgs[4].stem}.txt").unlink()  # an image without its label
    shutil.copy(imgs[5], train_img / "copy_of_5.jpg")  # same bytes, another name
    shutil.copy(train_lbl / f"{imgs[5].stem}.txt", train_lbl / "copy_of_5.txt")
    (train_img / "empty.jpg").write_bytes(b"")
    (train_lbl / "empty.txt").write_text("")
    (train_lbl / f"{imgs[6].stem}.txt").write_text(
        "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n"
    )  # a repeated line: a note only
    # val as a list file: one val frame twice, one train frame (leak into val)
    val = sorted((root / "images" / "val").glob("*.jpg"))
    (root / "val.txt").write_text(f"{val[0]}\n{val[1]}\n./images/val/{val[1].name}\n{imgs[7]}\n")
    cfg = yaml.safe_load(dataset.read_text())
    dataset.write_text(yaml.safe_dump({**cfg, "val": "val.txt"}))

    report = check_dataset(dataset)
    assert not report.ok
    expected = {
        "class_out_of_range": 1,
        "box_out_of_range": 2,
        "malformed_line": 2,
        "degenerate_box": 1,
        "missing_image": 1,
        "missing_label": 1,
        "duplicate_content": 1,
        "empty_image": 1,
        "duplicate_path": 1,
        "split_overlap": 1,
    }
    assert {k: report.issues[k] for k in FAILURES if report.issues[k]} == expected
    assert report.issues["duplicate_box"] == 1 and report.issues["empty_label"] >= 1
    assert any(f"{imgs[0].stem}.txt:1" in e and "class 7" in e for e in report.examples["class_out_of_range"])
    assert any("label without its image" in e for e in report.examples["missing_image"])
    text = report.summary()
    assert (
        text.splitlines()[0].endswith("FAIL")
        and "FAIL 1 class id not in names" in text
        and "FAIL 1 the same image in two splits" in text
    )


def test_missing_splits_and_bad_names(tmp_path, dataset):
    cfg = yaml.safe_load(dataset.read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg, "val": "images/nowhere", "test": "images/none"}))
    report = check_dataset(bad)
    assert report.issues["missing_split"] == 2 and not report.ok
    bad.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "val"}))
    assert check_dataset(bad).issues["missing_split"] == 1
    for names, message in (({0: "a", 2: "b"}, r"must be 0..1"), ([], "non-empty"), ({"x": "a"}, "must be integers")):
        bad.write_text(yaml.safe_dump({**cfg, "names": names}))
        with pytest.raises(DatasetError, match=message):
            check_dataset(bad)


def test_hashes_can_be_skipped_and_cli_exit_codes(dataset, capsys):
    root = dataset.parent
    img = next((root / "images" / "train").glob("*.jpg"))
    shutil.copy(img, root / "images" / "train" / "twin.jpg")
    shutil.copy(root / "labels" / "train" / f"{img.stem}.txt", root / "labels" / "train" / "twin.txt")
    assert check_dataset(dataset, hashes=False).ok
    assert main(["data", "check", f"data={dataset}", "hashes=False", "progress=False"]) == 0
    assert main(["data", "check", f"data={dataset}", "progress=False"]) == 1
    assert "FAIL 1 images with identical bytes" in capsys.readouterr().out
