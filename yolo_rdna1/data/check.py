"""Check a YOLO detection dataset before a long training starts, not hours into it.

Ultralytics finds some problems only when it builds its label cache (and then drops the
frames with a warning that scrolls away), others never: a class id beyond ``names`` trains a
head that cannot predict it, the same frame in train and val inflates mAP, a broken symlink
from a moved download is a missing frame. :func:`check_dataset` reads every label and (with
``hashes=True``) every image once and reports all of it with counts and examples.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configs import DatasetError, read_mapping, resolve_data

IMG_FORMATS = frozenset({"bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic"})
#: Problems that fail the check: each breaks or silently skews a training.
FAILURES: dict[str, str] = {
    "missing_split": "split named in the YAML does not exist",
    "no_images": "split without images",
    "missing_image": "image missing (dangling link, listed but absent, or a label without its image)",
    "empty_image": "image file of 0 bytes",
    "missing_label": "train/val image without a label file",
    "malformed_line": "label line that is not 'class x y w h' (or a polygon) of numbers",
    "class_out_of_range": "class id not in names",
    "box_out_of_range": "box value or edge outside [0, 1]",
    "degenerate_box": "box of zero or negative width or height",
    "duplicate_path": "the same image listed twice in a split",
    "split_overlap": "the same image in two splits",
    "duplicate_content": "images with identical bytes under different paths",
}
#: Worth knowing, not wrong: empty labels are frames without objects, a test split may be unlabelled.
NOTES: dict[str, str] = {
    "empty_label": "empty label files (frames without objects)",
    "unlabelled": "test images without a label file",
    "duplicate_box": "label lines repeated in the same file (Ultralytics drops the copies)",
}
_EDGE_TOL = 1e-5  # labels are written with 6 decimals
_EXAMPLES = 5
_BATCH = 512


@dataclass
class CheckReport:
    """Counts per split and per problem, with a few examples of each problem."""

    data_yaml: Path
    names: dict[int, str]
    splits: dict[str, Counter] = field(default_factory=dict)  # split -> images, labels, boxes, class names
    issues: Counter = field(default_factory=Counter)  # FAILURES and NOTES keys -> count
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not any(self.issues[k] for k in FAILURES)

    def add(self, kind: str, where: Any, detail: str = "") -> None:
        self.issues[kind] += 1
        if len(self.examples[kind]) < _EXAMPLES:
            self.examples[kind].append(f"{where}{': ' + detail if detail else ''}")

    def summary(self) -> str:
        lines = [f"{self.data_yaml}: {'PASS' if self.ok else 'FAIL'}"]
        for split, c in self.splits.items():
            per_class = ", ".join(f"{name} {c[name]}" for name in self.names.values())
            lines.append(f"  {split}: {c['images']} images, {c['labels']} labels, {c['boxes']} boxes ({per_class})")
        for kind, text in {**FAILURES, **NOTES}.items():
            if self.issues[kind]:
                lines.append(f"  {'FAIL' if kind in FAILURES else 'note'} {self.issues[kind]} {text}")
                if kind in FAILURES or kind == "duplicate_box":  # empty labels and unlabelled test frames are expected
                    lines += [f"      {e}" for e in self.examples[kind]]
        return "\n".join(lines)


def check_dataset(
    data: str | os.PathLike, root: str | os.PathLike | None = None, hashes: bool = True, progress: bool = False
) -> CheckReport:
    """Check the dataset of a data.yaml (a path, or a shipped name such as ``ltdv2`` with ``root``).

    Looks at every split the YAML names (train, val, test): images exist and are not empty,
    every train/val image has a label file, every label line is ``class x y w h`` (or a polygon)
    with a class id in ``names`` and values and box edges inside [0, 1] with positive size, no
    image is listed twice or in two splits, and (``hashes``) no two paths hold the same bytes.
    Returns a :class:`CheckReport`; ``report.ok`` is the verdict, ``report.summary()`` the text.
    """
    yaml_path = resolve_data(data, root)
    cfg = read_mapping(yaml_path)
    report = CheckReport(yaml_path, _names(yaml_path, cfg.get("names")))
    base = Path(str(cfg.get("path") or yaml_path.parent)).expanduser()
    if not base.is_absolute():
        base = yaml_path.parent / base if (yaml_path.parent / base).exists() else base.absolute()
    seen: dict[str, str] = {}  # image path -> split
    digests: dict[str, str] = {}  # content hash -> first path
    for split in ("train", "val", "test"):
        if cfg.get(split) is None:
            if split != "test":
                report.add("missing_split", split, "not in the YAML")
            continue
        images = list(_images(base, cfg[split], split, report))
        counts = report.splits.setdefault(split, Counter())
        counts["images"] = len(images)
        if not images:
            report.add("no_images", split, str(cfg[split]))
        unique = []
        for img in images:
            key = os.path.normpath(img)
            if key in seen:
                report.add(
                    "duplicate_path" if seen[key] == split else "split_overlap",
                    img,
                    f"also in {seen[key]}" if seen[key] != split else "",
                )
            else:
                seen[key] = split
                unique.append(img)
        _check_files(unique, split, report, counts, digests, hashes, progress)
    return report


def _names(path: Path, names: Any) -> dict[int, str]:
    """``names`` as {id: name} with ids 0..n-1 (Ultralytics' two forms, list or mapping)."""
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"{path}: 'names' must be a non-empty list or mapping of class names, got {names!r:.80}")
    try:
        ids = sorted(int(k) for k in names)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: class ids in 'names' must be integers, got {list(names)!r:.80}") from None
    if ids != list(range(len(ids))):
        raise DatasetError(f"{path}: class ids in 'names' must be 0..{len(ids) - 1}, got {ids}")
    return {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}


def _images(base: Path, spec: Any, split: str, report: CheckReport) -> Iterator[str]:
    """Image paths of a split given as folder(s), list file(s) or image file(s), as Ultralytics reads them."""
    for entry in spec if isinstance(spec, list) else [spec]:
        p = Path(str(entry)).expanduser()
        p = p if p.is_absolute() else base / p
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix[1:].lower() in IMG_FORMATS)
            yield from found
            _labels_without_images(p, found, report)
        elif p.suffix == ".txt" and p.is_file():
            for line in p.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line:  # Ultralytics: './x' is relative to the list file, anything else is taken as it is
                    yield str(p.parent / line[2:]) if line.startswith("./") else line
        elif p.is_file():
            yield str(p)
        else:
            report.add("missing_split", split, f"{p} does not exist")


def _label_path(img: str) -> str:
    """Ultralytics' rule: the last /images/ becomes /labels/, the suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return sb.join(img.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def _labels_without_images(folder: Path, images: list[str], report: CheckReport) -> None:
    """Label files in the mirror of an image folder whose image is gone (a frame deleted or never linked)."""
    labels = Path(_label_path(str(folder / "x.jpg"))).parent
    if labels == folder or not labels.is_dir():
        return
    expected = {_label_path(i) for i in images}
    for lbl in sorted(labels.rglob("*.txt")):
        if str(lbl) not in expected:
            report.add("missing_image", lbl, "label without its image")


def _inspect(img: str, hashes: bool) -> tuple[int | None, str | None, str | None]:
    """(image size or None if missing, content hash, label text or None): the I/O of one frame."""
    try:
        size = os.path.getsize(img)
    except OSError:
        size = None
    digest = None
    if hashes and size:
        h = hashlib.sha1()
        with open(img, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
    try:
        with open(_label_path(img), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        text = None
    return size, digest, text


def _check_files(
    images: list[str],
    split: str,
    report: CheckReport,
    counts: Counter,
    digests: dict[str, str],
    hashes: bool,
    progress: bool,
) -> None:
    bar = None
    if progress and images:
        from ..progress import ProgressBar

        bar = ProgressBar(len(images), f"checking {split}", unit="img")
    nc = len(report.names)
    with ThreadPoolExecutor(
        max_workers=min(8, (os.cpu_count() or 1) * 2)
    ) as pool:  # I/O bound: hashing releases the GIL
        for start in range(0, len(images), _BATCH):
            batch = images[start : start + _BATCH]
            for img, (size, digest, text) in zip(batch, pool.map(lambda i: _inspect(i, hashes), batch)):
                if size is None:
                    report.add("missing_image", img)
                elif size == 0:
                    report.add("empty_image", img)
                if digest is not None:
                    first = digests.setdefault(digest, img)
                    if first != img:
                        report.add("duplicate_content", img, f"same bytes as {first}")
                if text is None:
                    report.add("missing_label" if split != "test" else "unlabelled", _label_path(img))
                    continue
                counts["labels"] += 1
                _check_label(_label_path(img), text, nc, report, counts)
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()


def _check_label(path: str, text: str, nc: int, report: CheckReport, counts: Counter) -> None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        report.add("empty_label", path)
        return
    if len(set(lines)) < len(lines):
        report.add("duplicate_box", path, f"{len(lines) - len(set(lines))} repeated line(s)")
    for n, line in enumerate(lines, 1):
        fields = line.split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if (
            not values
            or not (len(values) == 5 or (len(values) >= 7 and len(values) % 2 == 1))
            or not values[0].is_integer()
        ):
            report.add("malformed_line", f"{path}:{n}", repr(line[:60]))
            continue
        cls = int(values[0])
        if not 0 <= cls < nc:
            report.add("class_out_of_range", f"{path}:{n}", f"class {cls}, names has 0..{nc - 1}")
            continue
        coords = values[1:]
        if len(coords) == 4:
            x, y, w, h = coords
            if w <= 0 or h <= 0:
                report.add("degenerate_box", f"{path}:{n}", repr(line[:60]))
                continue
            coords = [*coords, x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        if any(v < -_EDGE_TOL or v > 1 + _EDGE_TOL for v in coords):
            report.add("box_out_of_range", f"{path}:{n}", repr(line[:60]))
            continue
        counts["boxes"] += 1
        counts[report.names[cls]] += 1
