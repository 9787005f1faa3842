"""LTDV2 conversion on the LTDV2-shaped sample: classes by name, every box, resume, bad input, drift."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from yolo_rdna1.cli import main
from yolo_rdna1.data.check import check_dataset
from yolo_rdna1.data.ltdv2 import (
    CategoryError,
    DestinationError,
    FileNameError,
    FramesNotFoundError,
    NotCocoError,
    convert_ltdv2,
    make_drift_splits,
    read_index,
)
from yolo_rdna1.data.ltdv2_sample import META_KEYS, make_ltdv2_sample
from yolo_rdna1.data.synthetic import CLASS_NAMES, make_synthetic_thermal


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The default sample (3 months, 255 frames), written once; tests that alter it copy it."""
    return make_ltdv2_sample(tmp_path_factory.mktemp("ltdv2") / "src")


@pytest.fixture(scope="module")
def converted(sample, tmp_path_factory):
    dst = tmp_path_factory.mktemp("ltdv2") / "yolo"
    return dst, convert_ltdv2(sample, dst, splits=("Train", "Valid"), progress=False)


def copy_sample(sample, tmp_path):
    return shutil.copytree(sample, tmp_path / "src")


def expected_labels(json_path):
    """Stem -> [(class, cx, cy, w, h)] from the source JSON, computed here without the converter."""
    coco = json.loads(json_path.read_text())
    by_name = {c["id"]: c["name"].lower() for c in coco["categories"]}
    out, images = {}, {}
    for img in coco["images"]:
        stem = img["file_name"].removeprefix("frames/").replace("/", "_").removesuffix(".jpg")
        out[stem], images[img["id"]] = [], (stem, img["width"], img["height"])
    for ann in coco["annotations"]:
        stem, W, H = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            out[stem].append(
                (
                    CLASS_NAMES.index(by_name[ann["category_id"]]),
                    (x0 + x1) / 2 / W,
                    (y0 + y1) / 2 / H,
                    (x1 - x0) / W,
                    (y1 - y0) / H,
                )
            )
    return out


def read_labels(folder):
    return {
        p.stem: [(int(c), *map(float, v)) for c, *v in (line.split() for line in p.read_text().splitlines())]
        for p in folder.glob("*.txt")
    }


def same_boxes(got, want):
    key = lambda b: (b[0], round(b[1], 4), round(b[2], 4))  # noqa: E731
    return len(got) == len(want) and all(
        g[0] == w[0] and all(abs(a - b) < 2e-6 for a, b in zip(g[1:], w[1:]))
        for g, w in zip(sorted(got, key=key), sorted(want, key=key))
    )


def test_every_label_matches_its_source_box_by_class_name(sample, converted):
    dst, report = converted
    for split, name in (("train", "Train"), ("val", "Valid")):
        want, got = expected_labels(sample / "data" / f"{name}.json"), read_labels(dst / "labels" / split)
        assert set(got) == set(want) and {p.stem for p in (dst / "images" / split).iterdir()} == set(want)
        assert all(same_boxes(got[k], want[k]) for k in want), [k for k in want if not same_boxes(got[k], want[k])][:3]
        counts = report.splits[split]
        assert counts.written == len(want) and counts.empty == sum(not v for v in want.values()) > 0
        assert counts.boxes == [sum(b[0] == c for v in want.values() for b in v) for c in range(4)]
        # the sample's planted defects: edge boxes 3 px past the frame (clipped), one zero-width box a clip (dropped)
        assert counts.clipped > 0 and counts.dropped == {"train": 9, "val": 3}[split]
    link = next((dst / "images" / "train").iterdir())
    assert link.is_symlink() and link.resolve().is_relative_to(sample.resolve())
    assert yaml.safe_load((dst / "data.yaml").read_text())["names"] == dict(enumerate(CLASS_NAMES))
    assert check_dataset(dst / "data.yaml").ok


def test_class_ids_come_from_names_not_positions_or_ids(sample, converted, tmp_path):
    """Background first in the categories makes positional numbering off by one; reorder ids too."""
    coco = json.loads((sample / "data" / "Train.json").read_text())
    assert [c["name"] for c in coco["categories"]][0] == "background"
    positional = {c["id"]: i for i, c in enumerate(coco["categories"])}
    by_name = {c["id"]: CLASS_NAMES.index(c["name"]) for c in coco["categories"] if c["name"] != "background"}
    assert all(positional[k] != v for k, v in by_name.items())  # the old bug would shift every label

    new_id = {0: 7, 1: 3, 2: 0, 3: 9, 4: 1}  # vehicle listed first, names in other cases
    coco["categories"] = [
        {"id": new_id[c["id"]], "name": c["name"].upper() if c["id"] % 2 else c["name"].title()}
        for c in reversed(coco["categories"])
    ]
    for ann in coco["annotations"]:
        ann["category_id"] = new_id[ann["category_id"]]
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "Train.json").write_text(json.dumps(coco))
    convert_ltdv2(src, tmp_path / "yolo", splits=["Train"], progress=False, frames=sample / "data" / "frames")
    assert read_labels(tmp_path / "yolo" / "labels" / "train") == read_labels(converted[0] / "labels" / "train")


def test_rerun_is_idempotent(sample, converted):
    dst, first = converted
    labels = {p: p.stat().st_mtime_ns for p in (dst / "labels").rglob("*.txt")}
    index, data_yaml = (dst / "index.jsonl").read_text(), (dst / "data.yaml").stat().st_mtime_ns
    again = convert_ltdv2(sample, dst, progress=False)
    assert again.splits["train"].written == 0 and again.splits["train"].skipped == first.splits["train"].written
    assert again.splits["val"].boxes == first.splits["val"].boxes
    assert {p: p.stat().st_mtime_ns for p in (dst / "labels").rglob("*.txt")} == labels
    assert (dst / "index.jsonl").read_text() == index and (dst / "data.yaml").stat().st_mtime_ns == data_yaml


def test_interrupted_conversion_resumes(sample, converted, tmp_path, monkeypatch):
    import yolo_rdna1.data.ltdv2 as ltdv2

    real, calls = ltdv2._write_label, []

    def failing(path, lines):
        if len(calls) == 50:
            raise RuntimeError("power cut")
        calls.append(path)
        real(path, lines)

    monkeypatch.setattr(ltdv2, "_write_label", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        convert_ltdv2(sample, tmp_path / "yolo", progress=False)
    labels = tmp_path / "yolo" / "labels" / "train"
    assert len(list(labels.glob("*.txt"))) == 50 and not list(labels.glob(".*"))
    assert not (tmp_path / "yolo" / "index.jsonl").exists() and not list((tmp_path / "yolo").glob(".index*"))
    monkeypatch.setattr(ltdv2, "_write_label", real)
    report = convert_ltdv2(sample, tmp_path / "yolo", progress=False)
    assert (
        report.splits["train"].skipped == 50
        and report.splits["train"].written == 130
        and report.splits["val"].written == 60
    )
    for split in ("train", "val"):
        assert read_labels(tmp_path / "yolo" / "labels" / split) == read_labels(converted[0] / "labels" / split)
    assert len(read_index(tmp_path / "yolo")) == 240


def test_missing_frames_are_counted_listed_and_converted_later(sample, tmp_path):
    src = copy_sample(sample, tmp_path)
    gone = sorted((src / "data" / "frames").rglob("image_0007.jpg"))[:3]
    for frame in gone:
        frame.rename(frame.with_suffix(".bak"))
    report = convert_ltdv2(src, tmp_path / "yolo", progress=False)
    missing = sum(s.missing for s in report.splits.values())
    assert missing == 3 and sum(s.frames for s in report.splits.values()) == 237
    listed = "".join(
        (tmp_path / "yolo" / f"missing-{s}.txt").read_text() for s in report.splits if report.splits[s].missing
    )
    assert sorted(listed.split()) == sorted(str(f) for f in gone)
    assert any("frame files missing" in p for p in report.problems)
    assert check_dataset(tmp_path / "yolo" / "data.yaml").ok  # missing frames are left out, not half-converted
    for frame in gone:
        frame.with_suffix(".bak").rename(frame)
    again = convert_ltdv2(src, tmp_path / "yolo", progress=False)
    assert sum(s.written for s in again.splits.values()) == 3 and not list((tmp_path / "yolo").glob("missing-*.txt"))


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2, 3]", "is a JSON list"),
        ('{"images": [], "annotations": []}', "has no 'categories' list"),
        ('{"categories": [{"id": 1, "name": "person"}], "images": [{"id": 1, "file_na', "not valid JSON"),
        ('{"categories": [{"id": 1, "name": "person"}], "annotations": []}', "has no 'images' entries"),
        ('{"categories": [{"id": 1}], "images": []}', "categories[0] is not a COCO category"),
    ],
)
def test_non_coco_json_is_refused_clearly(sample, tmp_path, content, message):
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "Train.json").write_text(content)
    with pytest.raises(NotCocoError, match=message.replace("[", r"\[").replace("]", r"\]")):
        convert_ltdv2(src, tmp_path / "yolo", splits=["Train"], progress=False, frames=sample / "data" / "frames")


def test_unknown_category_names_are_listed_and_nothing_is_written(sample, tmp_path):
    src = copy_sample(sample, tmp_path)
    coco = json.loads((src / "data" / "Valid.json").read_text())
    coco["categories"][4]["name"] = "truck"
    coco["categories"].append({"id": 5, "name": "boat"})
    (src / "data" / "Valid.json").write_text(json.dumps(coco))
    with pytest.raises(
        CategoryError, match=r"2 categories \('truck', 'boat'\) are not LTDV2 classes.*Expected person, bicycle"
    ):
        convert_ltdv2(src, tmp_path / "yolo", progress=False)
    assert not (tmp_path / "yolo").exists()  # checked before the destination is touched (Train.json was fine)


def snapshot(folder):
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_destination_holding_another_dataset_is_refused_and_untouched(sample, converted, tmp_path):
    other = make_synthetic_thermal(tmp_path / "other", n_train=2, n_val=1).parent
    before = snapshot(other)
    with pytest.raises(DestinationError, match="did not write.*nothing was changed"):
        convert_ltdv2(sample, other, progress=False)
    assert snapshot(other) == before

    dst = converted[0]
    src = copy_sample(sample, tmp_path)
    coco = json.loads((src / "data" / "Train.json").read_text())
    del coco["annotations"][0]  # another version of Train.json
    (src / "data" / "Train.json").write_text(json.dumps(coco))
    labels = {p: p.read_bytes() for p in (dst / "labels").rglob("*.txt")}
    with pytest.raises(DestinationError, match="converted from another Train.json"):
        convert_ltdv2(src, dst, progress=False)
    assert {p: p.read_bytes() for p in (dst / "labels").rglob("*.txt")} == labels


def test_frames_zip_not_extracted_says_unzip(sample, tmp_path):
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    shutil.copy(sample / "data" / "Train.json", src / "data")
    (src / "data" / "frames.zip").write_bytes(b"PK")
    with pytest.raises(FramesNotFoundError, match=r"has not been extracted: unzip it first"):
        convert_ltdv2(src, tmp_path / "yolo", splits=["Train"], progress=False)
    (src / "data" / "frames.zip").unlink()
    (src / "data" / "frames").mkdir()  # a frames folder of something else: no frame found at all
    with pytest.raises(FramesNotFoundError, match="none of the 180 frames of Train.json were found"):
        convert_ltdv2(src, tmp_path / "yolo", splits=["Train"], progress=False)


def test_index_keeps_date_clip_time_and_weather(converted):
    rows = read_index(converted[0])
    assert len(rows) == 240 and {r["split"] for r in rows} == {"train", "val"}
    row = rows[0]
    assert row["file"].startswith("images/train/") and row["file"].endswith(".jpg")
    _, date, clip_folder, _ = row["file_name"].split("/")
    _, clip, hhmm = clip_folder.split("_")
    assert row["date"] == f"{date[:4]}-{date[4:6]}-{date[6:]}" and row["month"] == row["date"][:7]
    assert (
        row["clip"] == int(clip)
        and row["time"] == f"{hhmm[:2]}:{hhmm[2:]}"
        and row["date_captured"].startswith(row["date"])
    )
    assert all(f"meta.{k}" in row for k in META_KEYS) and isinstance(row["meta.Temperature"], float)
    assert sum(r["objects"] for r in rows) == sum(sum(s.boxes) for s in converted[1].splits.values())


def test_drift_splits_by_month_and_season(converted):
    dst = converted[0]
    rows = {str(dst / r["file"]): r for r in read_index(dst)}
    drift = make_drift_splits(dst, scheme="month", train_months=2)
    assert drift.train_months == ["2020-05", "2020-06"] and [p.name for p in drift.periods] == [
        "2020-05",
        "2020-06",
        "2020-07",
    ]
    train = (drift.folder / "train.txt").read_text().split()
    assert len(train) == drift.train_frames == 120 and all(
        rows[f]["split"] == "train" and rows[f]["month"] in drift.train_months for f in train
    )
    for period in drift.periods:
        cfg = yaml.safe_load(period.yaml.read_text())
        frames = (dst / cfg["val"]).read_text().split()
        assert len(frames) == period.frames and not set(frames) & set(train)
        assert {rows[f]["month"] for f in frames} == {period.name}
        assert {rows[f]["split"] for f in frames} == ({"val"} if period.trained else {"train", "val"})
        assert (dst / cfg["train"]).read_text().split() == train
    assert drift.periods[-1].frames == 80 and not drift.periods[-1].trained  # all of July: 60 Train + 20 Valid frames
    assert check_dataset(drift.periods[-1].yaml).ok
    assert json.loads((drift.folder / "splits.json").read_text())["periods"][-1]["yaml"] == str(drift.periods[-1].yaml)

    seasons = make_drift_splits(dst, scheme="season", train_months=1)
    assert [(p.name, p.months, p.frames) for p in seasons.periods] == [
        ("2020-spring", ["2020-05"], 20),
        ("2020-summer", ["2020-06", "2020-07"], 160),
    ]
    with pytest.raises(Exception, match="train_months=3 leaves no later month"):
        make_drift_splits(dst, train_months=3)


def test_cli_data_commands(tmp_path, capsys):
    assert main(["data", "sample", f"dst={tmp_path / 'src'}", "months=2", "frames_per_clip=4"]) == 0
    assert main(["data", "convert-ltdv2", f"src={tmp_path / 'src'}", f"dst={tmp_path / 'yolo'}", "progress=False"]) == 0
    out = capsys.readouterr().out
    assert "split  frames  written" in out and "total" in out and "vehicle" in out
    assert main(["data", "check", f"data={tmp_path / 'yolo' / 'data.yaml'}", "progress=False"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["data", "drift", f"dst={tmp_path / 'yolo'}", "scheme=month", "train_months=1"]) == 0
    assert "2020-06" in capsys.readouterr().out
    assert main(["data", "drift", f"dst={tmp_path / 'yolo'}", "train_months=5"]) == 2
    assert main(["data", "convert-ltdv2", f"src={tmp_path / 'nowhere'}", f"dst={tmp_path / 'x'}"]) == 2
    assert main(["data", "check"]) == 2 and main(["data", "unzip"]) == 2
    err = capsys.readouterr().err
    assert (
        "leaves no later month" in err
        and "is not a folder" in err
        and "needs data=" in err
        and "usage: yolo-rdna1 data" in err
    )


def test_link_modes_and_hardlink_fallback(tmp_path, monkeypatch):
    src = make_ltdv2_sample(tmp_path / "src", months=1, frames_per_clip=3)
    frame = lambda dst: next((dst / "images" / "train").iterdir())  # noqa: E731
    convert_ltdv2(src, tmp_path / "copy", splits=["Train"], link="copy", progress=False)
    assert not frame(tmp_path / "copy").is_symlink() and frame(tmp_path / "copy").stat().st_nlink == 1
    convert_ltdv2(src, tmp_path / "hard", splits=["Train"], link="hardlink", progress=False)
    assert frame(tmp_path / "hard").stat().st_nlink == 2

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not permitted here")

    monkeypatch.setattr("os.symlink", no_symlinks)
    convert_ltdv2(src, tmp_path / "fallback", splits=["Train"], progress=False)
    assert not frame(tmp_path / "fallback").is_symlink() and frame(tmp_path / "fallback").stat().st_nlink == 3
    with pytest.raises(Exception, match="link='move' is not one of symlink, hardlink, copy"):
        convert_ltdv2(src, tmp_path / "x", link="move")


# -- received annotation files that point elsewhere (defect 6) ---------------------------------
FRAME = "frames/20200514/clip_1_1200/image_0001.jpg"


def tiny_download(tmp_path, file_names):
    """A crafted LTDV2 download: one real frame (FRAME) and a Train.json listing ``file_names``."""
    src = tmp_path / "src"
    frame = src / "data" / FRAME
    frame.parent.mkdir(parents=True)
    frame.write_bytes(b"a frame")
    coco = {
        "images": [{"id": i, "file_name": f, "width": 384, "height": 288} for i, f in enumerate(file_names)],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20]} for i in range(len(file_names))
        ],
        "categories": [{"id": 0, "name": "background"}, {"id": 1, "name": "person"}],
    }
    (src / "data" / "Train.json").write_text(json.dumps(coco))
    return src


@pytest.mark.parametrize(
    "hostile",
    [
        "frames/../../secret.jpg",
        "../../secret.jpg",
        "frames/20200514/../../../secret.jpg",
        "SECRET",
        "frames/escape/clip_1_1200/image_0001.jpg",
        "frames/20200514/clip_1_1200/escape.jpg",
    ],
)
def test_defect6_file_name_outside_the_frames_folder_is_refused_before_anything_is_written(tmp_path, hostile):
    secret = tmp_path / "src" / "secret.jpg"  # what ../../ from src/data/frames reaches
    src = tiny_download(tmp_path, [FRAME, hostile.replace("SECRET", str(secret))])
    secret.write_bytes(b"not a frame")
    outside = tmp_path / "outside" / "clip_1_1200"
    outside.mkdir(parents=True)
    (outside / "image_0001.jpg").write_bytes(b"not a frame either")
    os.symlink(outside.parent, src / "data" / "frames" / "escape")  # a folder link leading out
    os.symlink(secret, src / "data" / "frames" / "20200514" / "clip_1_1200" / "escape.jpg")  # a frame link leading out
    with pytest.raises(
        FileNameError,
        match=(
            r"Train.json: images\[1\].file_name '.*' "
            r"(is not a path inside|leads outside) the frames folder.*nothing was converted"
        ),
    ) as info:
        convert_ltdv2(src, tmp_path / "yolo", splits=["Train"], progress=False)
    assert hostile.replace("SECRET", str(secret)).removeprefix("frames/") in str(info.value)
    assert not (tmp_path / "yolo").exists()


def test_defect6_frames_sharing_a_stem_would_share_a_label_file_and_are_refused(tmp_path):
    png = FRAME.replace(".jpg", ".png")
    src = tiny_download(tmp_path, [FRAME, png])
    (src / "data" / png).write_bytes(b"another frame")
    with pytest.raises(
        FileNameError,
        match=r"images\[1\].file_name '20200514/clip_1_1200/image_0001.png' and '20200514/clip_1_1200/image_0001.jpg' "
        r"would share the label file 20200514_clip_1_1200_image_0001.txt",
    ):
        convert_ltdv2(src, tmp_path / "yolo", splits=["Train"], progress=False)
    assert not (tmp_path / "yolo").exists()


def test_frames_folder_that_is_itself_a_link_and_repeated_entries_still_convert(tmp_path):
    src = tiny_download(tmp_path, [FRAME, FRAME, "./" + FRAME])
    shutil.move(src / "data" / "frames", tmp_path / "big-disk")
    os.symlink(tmp_path / "big-disk", src / "data" / "frames")
    report = convert_ltdv2(src, tmp_path / "yolo", splits=["Train"], progress=False)
    assert report.splits["train"].written == 1 and report.splits["train"].duplicates == 2


# -- interrupted conversions (defect 11) ---------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_defect11_interrupted_conversion_removes_its_temp_files_says_rerun_and_resumes(
    sample, converted, tmp_path, signum, child_command
):
    dst = tmp_path / "yolo"
    child = subprocess.Popen(
        child_command("convert_ltdv2", sample, dst), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (list(dst.glob(".index.jsonl.*.tmp")) and len(list(dst.glob("labels/train/*.txt"))) > 5):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.05)
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == "yolo-rdna1 data convert-ltdv2: interrupted; running the same command again resumes where it stopped"
    )
    assert [p for p in dst.rglob("*") if p.name.endswith(".tmp")] == [] and not (dst / "index.jsonl").exists()
    report = convert_ltdv2(sample, dst, progress=False)
    assert report.splits["train"].skipped > 5 and report.splits["train"].written > 0
    for split in ("train", "val"):
        assert read_labels(dst / "labels" / split) == read_labels(converted[0] / "labels" / split)
    assert len(read_index(dst)) == 240


def test_defect11_rerun_sweeps_temp_files_of_dead_writers_only(tmp_path):
    src = make_ltdv2_sample(tmp_path / "src", months=1, frames_per_clip=1)
    dst = tmp_path / "yolo"
    convert_ltdv2(src, dst, progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = [
        dst / f".index.jsonl.{dead.pid}.tmp",
        dst / f".data.yaml.{dead.pid}.tmp",
        dst / "images" / "train" / f".x.jpg.{dead.pid}.tmp",
        dst / "labels" / "train" / f".x.txt.{dead.pid}.tmp",
    ]
    live = dst / ".index.jsonl.1.tmp"  # pid 1 is alive: another writer's, not ours to remove
    for p in (*leftovers, live):
        p.write_bytes(b"x" * 1000)
    convert_ltdv2(src, dst, progress=False)
    assert not any(p.exists() for p in leftovers) and live.exists()


def test_rerun_rewrites_a_label_cut_short(sample, converted, tmp_path):
    dst = tmp_path / "yolo"
    shutil.copytree(converted[0], dst, symlinks=True)
    label = next(p for p in sorted((dst / "labels" / "train").glob("*.txt")) if p.read_text())
    label.write_text("")  # what a power cut can leave of a label written without an fsync
    report = convert_ltdv2(sample, dst, progress=False)
    assert report.splits["train"].written == 1 and read_labels(dst / "labels" / "train") == read_labels(
        converted[0] / "labels" / "train"
    )
