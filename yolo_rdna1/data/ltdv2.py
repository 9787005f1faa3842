"""LTDV2's COCO annotations to a YOLO folder, classes by name, streamed, resumable; drift splits.

LTDV2 (Hugging Face ``vapaau/LTDv2``) ships ``data/Train.json`` (about 1 GB), ``Valid.json``
and ``TestNoLabels.json`` in COCO style, and its frames in ``data/frames.zip`` as
``frames/YYYYMMDD/clip_<n>_<hhmm>/image_<nnnn>.jpg``. What the converter relies on, and why:

* Class ids come from category NAMES (person, bicycle, motorcycle, vehicle -> 0..3). The
  categories list starts with a background entry, so numbering by position would shift every
  label by one; names that are neither a class nor background are refused.
* The JSON is streamed with ijson (``json.load`` of Train.json takes gigabytes of memory):
  one pass for the categories, one for the annotations (kept as compact float arrays per image),
  one for the images. Each pass shows a progress bar over the file's bytes.
* Frames are linked, not copied (symlink, hardlink where symlinks fail), under flattened unique
  names ``20200514_clip_3_1402_image_0012.jpg``. A re-run skips a frame whose link exists and
  whose label holds what it should, and rewrites a label cut short by a kill or a power cut, so
  an interrupted conversion resumes; the index is replaced only when a run completes, after
  everything written is flushed to disk. SIGTERM and Ctrl-C remove the temp index and any
  partial file; a re-run removes those of writers that died without cleaning up.
* An annotation file is received input: before anything is written, every ``file_name`` is
  checked to stay inside the frames folder (no ``..``, no absolute path, no symlink leading
  out), and two frames whose flattened names share a stem (``a.jpg``, ``a.png``) are refused,
  since Ultralytics finds a frame's label by its name without the extension and they would
  share one label file.
* ``index.jsonl`` keeps, per converted frame, its split, date, month, clip and time (from the
  path) and every scalar field of its image entry (``date_captured``, and ``meta.Temperature``
  and the other weather fields of ``meta``, flattened with dots as ``pandas.json_normalize``
  does), for the drift splits and for plots against weather.

Extracting ``frames.zip`` is out of scope (unzip it first; the error says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from ..files import atomic_write, stale_temps
from .configs import DatasetError, dataset_config
from .synthetic import CLASS_NAMES

LOGGER = logging.getLogger(__name__)

#: Category names that mean "no object"; such categories and their annotations are ignored.
BACKGROUND_NAMES = frozenset({"background", "__background__", "_background_", "unlabeled", "unlabelled"})
#: Boxes narrower or lower than this after clipping to the frame are degenerate: dropped, counted.
MIN_BOX_PX = 1.0
INDEX = "index.jsonl"
LINK_MODES = ("symlink", "hardlink", "copy")
_CLASS_IDS = {name: i for i, name in enumerate(CLASS_NAMES)}
_SPLIT_PREFIXES = (("train", "train"), ("val", "val"), ("test", "test"))  # JSON stem prefix -> YOLO split
_MARKER = ".ltdv2-conversion.json"
_CONVERTER = "yolo_rdna1.data.ltdv2"
_VERSION = 1
_FRAME_PATH = re.compile(r"(?:^|/)(\d{4})(\d{2})(\d{2})/clip_(\d+)_(\d{2})(\d{2})/[^/]+$")
_SCALARS = (str, int, float, bool, type(None))
_PEEK = 1 << 20  # bytes at each end of an annotation file searched for the categories


class ConversionError(DatasetError):
    """LTDV2 conversion or drift splits cannot go on; nothing written before is removed."""


class NotCocoError(ConversionError):
    """An annotation file that is not COCO-style JSON (images, annotations, categories)."""


class CategoryError(ConversionError):
    """COCO categories whose names are not LTDV2's classes."""


class DestinationError(ConversionError):
    """The destination holds a dataset this converter did not write, or a conversion of other files."""


class FramesNotFoundError(ConversionError):
    """No extracted frames where the annotations say they are (often: frames.zip not unzipped)."""


class FileNameError(ConversionError):
    """A ``file_name`` that leads outside the frames folder, or two that would share a label file."""


class ConversionInterrupted(KeyboardInterrupt):
    """SIGTERM during a conversion, raised like Ctrl-C so that the same cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class SplitCounts:
    """What happened to one annotation file; every count covers the whole split, not one run."""

    split: str  # YOLO split: train, val or test
    source: Path  # the JSON
    labelled: bool = True  # False for the unlabelled test split: frames only, no label files
    images: int = 0  # image entries in the JSON
    written: int = 0  # frames converted by this run
    skipped: int = 0  # frames an earlier run had finished
    missing: int = 0  # frame files not found (not converted; listed in missing-<split>.txt)
    duplicates: int = 0  # image entries naming a frame already seen in this split
    empty: int = 0  # frames without objects (empty label file)
    boxes: list[int] = field(default_factory=lambda: [0] * len(CLASS_NAMES))  # per class id
    clipped: int = 0  # boxes reaching past the frame, clipped to it
    dropped: int = 0  # degenerate boxes (< MIN_BOX_PX wide or tall after clipping)
    background: int = 0  # annotations of a background category, ignored
    unknown_category: int = 0  # annotations whose category_id is not among the categories
    malformed: int = 0  # annotation entries without a usable image_id, category_id or bbox
    orphans: int = 0  # annotations whose image_id matches no image entry
    missing_examples: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.written + self.skipped


@dataclass
class ConversionReport:
    """The outcome of :func:`convert_ltdv2`: per-split counts and where the dataset is."""

    dst: Path
    data_yaml: Path
    index: Path
    splits: dict[str, SplitCounts]

    @property
    def problems(self) -> list[str]:
        """Input problems worth a look (the conversion went on past all of them)."""
        out = []
        for s in self.splits.values():
            for n, what in (
                (s.missing, f"frame files missing (see {self.dst / f'missing-{s.split}.txt'})"),
                (s.duplicates, "duplicate image entries"),
                (s.unknown_category, "annotations with an unknown category_id"),
                (s.malformed, "malformed annotations"),
                (s.orphans, "annotations of images not in the file"),
            ):
                if n:
                    out.append(f"{s.source.name}: {n} {what}")
        return out

    def table(self) -> str:
        """Counts per split and class, as the converter logs them at the end."""
        cols = ["split", "frames", "written", "skipped", "missing", "empty", *CLASS_NAMES, "clipped", "dropped"]
        rows = [
            [
                s.split,
                s.frames,
                s.written,
                s.skipped,
                s.missing,
                s.empty if s.labelled else "-",
                *(s.boxes if s.labelled else ["-"] * len(CLASS_NAMES)),
                s.clipped,
                s.dropped,
            ]
            for s in self.splits.values()
        ]
        if len(rows) > 1:
            rows.append(["total", *(sum(r[i] for r in rows if isinstance(r[i], int)) for i in range(1, len(cols)))])
        widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(cols)]
        lines = [
            "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
            for r in [cols, *rows]
        ]
        ignored = sum(s.background for s in self.splits.values())
        if ignored:
            lines.append(f"{ignored} annotations of the background category ignored")
        lines += self.problems
        lines.append(f"dataset: {self.data_yaml}  index: {self.index}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def convert_ltdv2(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    splits: Sequence[str] = ("Train", "Valid"),
    link: str = "symlink",
    progress: bool = True,
    frames: str | os.PathLike | None = None,
) -> ConversionReport:
    """Convert LTDV2's annotation files under ``src`` into a YOLO dataset folder ``dst``.

    ``src`` is the download: ``<split>.json`` in ``src`` or ``src/data`` (the Hugging Face
    layout), frames extracted next to them (``frames/YYYYMMDD/...``), or in ``frames``.
    ``splits`` names the JSON files (``Train`` -> ``train``, ``Valid`` -> ``val``,
    ``TestNoLabels`` -> ``test``, frames only). ``link`` is ``symlink`` (falls back to a hardlink
    where symlinks fail), ``hardlink`` or ``copy``.

    Writes ``images/<split>/`` (links), ``labels/<split>/`` (YOLO ``cls cx cy w h``, an empty
    file for a frame without objects), ``data.yaml`` (with the ltdv2 config's ``train_settings``),
    ``index.jsonl`` and ``missing-<split>.txt`` where frames were missing. Everything is checked
    before ``dst`` is touched: the files exist and are COCO, the categories are LTDV2's, and
    ``dst`` is empty, new, or an earlier conversion of the same files, which is resumed (finished
    frames are skipped), and every ``file_name`` stays inside the frames folder and has a label
    file of its own (:class:`FileNameError` otherwise). The returned report's ``table()`` gives
    the counts per split and class (the CLI prints it).

    SIGTERM (in the main thread) is raised as :class:`ConversionInterrupted`, a
    ``KeyboardInterrupt``: either removes the temp index and partial files on its way out.
    """
    if link not in LINK_MODES:
        raise ConversionError(f"link={link!r} is not one of {', '.join(LINK_MODES)}")
    src, dst = Path(src).expanduser().absolute(), Path(dst).expanduser().absolute()
    if not src.is_dir():
        raise ConversionError(
            f"src={src} is not a folder (it should hold Train.json, Valid.json and the extracted frames/)"
        )
    jobs = _locate(src, splits)
    roots = _frame_roots(src, {j.parent for j in jobs.values()}, frames)
    for path in jobs.values():
        _sniff(path)
    mappings = {split: _map_categories(path, _categories(path, progress)) for split, path in jobs.items()}
    sources = {split: _check_file_names(path, roots, progress) for split, path in jobs.items()}
    report = ConversionReport(dst, dst / "data.yaml", dst / INDEX, {})

    def write_index(rows: IO[bytes]) -> None:
        out = _Output(dst, link, rows, progress)
        for split, path in jobs.items():
            counts = SplitCounts(split, path, labelled=split != "test")
            report.splits[split] = counts
            by_image = _annotations(path, mappings[split], counts, progress) if counts.labelled else {}
            _convert_images(counts, by_image, sources[split], out)
        for line in _old_rows(dst / INDEX, set(jobs)):
            rows.write(line.encode())
        if hasattr(os, "sync"):
            os.sync()  # labels are written without an fsync each: the completed index vouches for them on disk

    with _sigterm_as_interrupt():
        _claim(dst, jobs)
        for tmp in stale_temps(dst):
            tmp.unlink(missing_ok=True)  # an index or YAML of a writer that died before its rename
        atomic_write(dst / INDEX, write_index)  # the index changes only when a run completes
        _write_data_yaml(dst)
    return report


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises :class:`ConversionInterrupted`, so ``finally`` and ``atomic_write``
    clean up as for Ctrl-C (the default action would end the process on the spot, leaving a temp
    index of up to 100 MB behind). Signal handlers belong to the main thread; elsewhere, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise ConversionInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _locate(src: Path, splits: Sequence[str]) -> dict[str, Path]:
    """YOLO split -> annotation file, for every requested split (all found, or an error)."""
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s.strip()]
    jobs: dict[str, Path] = {}
    for name in splits:
        stem = Path(name.strip()).stem if name.strip().lower().endswith(".json") else name.strip()
        split = next((y for prefix, y in _SPLIT_PREFIXES if stem.lower().startswith(prefix)), None)
        if split is None:
            raise ConversionError(
                f"split {name!r}: expected a name starting with Train, "
                "Valid or Test (LTDV2: Train, Valid, TestNoLabels)"
            )
        if split in jobs:
            raise ConversionError(
                f"splits {jobs[split].stem!r} and {stem!r} would both "
                f"become {split!r}; convert them into different folders"
            )
        candidates = [src / f"{stem}.json", src / "data" / f"{stem}.json"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ConversionError(f"{stem}.json not found: looked for {' and '.join(map(str, candidates))}")
        jobs[split] = found
    if not jobs:
        raise ConversionError("no splits to convert: pass e.g. splits=Train,Valid")
    return jobs


def _frame_roots(src: Path, json_dirs: set[Path], frames: str | os.PathLike | None) -> list[Path]:
    """Existing folders the frames' relative paths may start in, most likely first."""
    if frames is not None:
        root = Path(frames).expanduser().absolute()
        if not root.is_dir():
            raise FramesNotFoundError(f"frames={root} is not a folder")
        return [root, root / "frames"]
    candidates = []
    for base in (*sorted(json_dirs), src, src / "data"):
        candidates += [base / "frames", base / "frames" / "frames"]  # unzip into frames/ nests a second one
    roots = list(dict.fromkeys(p for p in candidates if p.is_dir()))
    if roots:
        return roots
    zips = sorted({z for base in (*json_dirs, src, src / "data") for z in base.glob("frames*.zip")})
    if zips:
        raise FramesNotFoundError(
            f"{zips[0]} has not been extracted: unzip it first, e.g. 'unzip {zips[0]} -d {zips[0].parent}' "
            f"(it holds frames/YYYYMMDD/...; 48 GB for LTDV2), then run the conversion again. "
            "The converter does not read frames from the zip."
        )
    raise FramesNotFoundError(
        "no extracted frames/ folder found next to the annotations (looked in "
        f"{', '.join(str(p) for p in candidates[::2])}); pass frames=<folder>"
    )


def _sniff(path: Path) -> None:
    """Refuse a file that cannot be a COCO object before streaming a gigabyte of it."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"{"):
        what = "a JSON list" if head.startswith(b"[") else "empty" if not head else "not a JSON object"
        raise NotCocoError(
            f"{path} is not a COCO annotation file: it is {what}; "
            "expected an object with images, annotations and categories"
        )


class _Reader:
    """A binary file whose reads advance a progress bar (ijson reads in chunks)."""

    def __init__(self, f: io.BufferedReader, bar: Any) -> None:
        self._f, self._bar = f, bar

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        if self._bar is not None:
            self._bar.update(len(data))
        return data


def _items(path: Path, prefix: str, what: str, progress: bool) -> Iterator[Any]:
    """Stream the JSON values at ``prefix``; JSON errors become :class:`NotCocoError`."""
    import ijson

    bar = None
    if progress:
        from ..progress import ProgressBar

        bar = ProgressBar(path.stat().st_size, f"{path.name}: {what}", binary=True)
    try:
        with path.open("rb") as f:
            yield from ijson.items(_Reader(f, bar), prefix, use_float=True)
    except ijson.JSONError as e:
        raise NotCocoError(f"{path} is not valid JSON ({e})") from None
    finally:
        if bar is not None:
            bar.close()


def _categories(path: Path, progress: bool) -> list[Any]:
    """The ``categories`` list: looked for in the first and last MiB (where COCO writers put it),
    else streamed from the whole file, so a wrong category fails in a second, not after a
    minute of parsing a gigabyte."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(_PEEK)
        f.seek(max(0, size - _PEEK))
        tail = f.read()
    for chunk in (head, tail):
        at = chunk.rfind(b'"categories"')
        if at >= 0:
            text = chunk[at + len(b'"categories"') :].decode("utf-8", "replace").lstrip(" \t\r\n:")
            try:
                found = json.JSONDecoder().raw_decode(text)[0]
            except ValueError:
                continue  # cut off by the chunk's end, or not the top-level key
            if isinstance(found, list) and all(isinstance(c, dict) for c in found):
                return found
    for categories in _items(path, "categories", "categories", progress):
        if isinstance(categories, list):
            return categories
        break
    raise NotCocoError(f"{path} is not a COCO annotation file: it has no 'categories' list")


def _map_categories(path: Path, categories: list[Any]) -> tuple[dict[Any, int], set[Any]]:
    """(category id -> class id, background category ids), by name, case-insensitive."""
    mapping: dict[Any, int] = {}
    background: set[Any] = set()
    unknown: list[str] = []
    for n, cat in enumerate(categories):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise NotCocoError(
                f"{path}: categories[{n}] is not a COCO category (an object with id and name): {cat!r:.120}"
            )
        if cat["id"] in mapping or cat["id"] in background:
            raise NotCocoError(f"{path}: category id {cat['id']!r} is listed twice")
        name = cat["name"].strip().lower()
        if name in BACKGROUND_NAMES:
            background.add(cat["id"])
        elif name in _CLASS_IDS:
            mapping[cat["id"]] = _CLASS_IDS[name]
        else:
            unknown.append(cat["name"])
    if unknown or not mapping:
        found = ", ".join(repr(c["name"]) for c in categories) or "none"
        what = (
            f"{len(unknown)} categories ({', '.join(map(repr, unknown))}) are not LTDV2 classes"
            if unknown
            else "no category is an LTDV2 class"
        )
        raise CategoryError(
            f"{path}: {what}; the file lists {found}. Expected {', '.join(CLASS_NAMES)} (matched by name, any case) "
            "and optionally a background entry; nothing was converted"
        )
    return mapping, background


def _fingerprint(path: Path) -> dict[str, Any]:
    """Identity of an annotation file without reading a gigabyte: name, size, hash of the first MiB."""
    with path.open("rb") as f:
        head = hashlib.sha1(f.read(1 << 20)).hexdigest()
    return {"json": path.name, "size": path.stat().st_size, "head_sha1": head}


def _claim(dst: Path, jobs: dict[str, Path]) -> None:
    """Check that ``dst`` is new, empty or our conversion of the same files; record the sources."""
    if dst.exists() and not dst.is_dir():
        raise DestinationError(f"dst={dst} exists and is not a folder")
    marker_path = dst / _MARKER
    try:
        marker = json.loads(marker_path.read_text())
    except FileNotFoundError:
        marker = None
    except (OSError, ValueError):
        raise DestinationError(
            f"{marker_path} is unreadable; it is this converter's record of {dst}: fix or delete it"
        ) from None
    if marker is None:
        taken = [
            p
            for p in (dst / "images", dst / "labels", dst / "data.yaml", dst / INDEX)
            if p.exists() and (not p.is_dir() or any(p.iterdir()))
        ]
        if taken:
            raise DestinationError(
                f"{dst} already holds a dataset this converter did not write (e.g. {taken[0]}); nothing was changed: "
                "choose an empty or new dst"
            )
        marker = {"converter": _CONVERTER, "version": _VERSION, "splits": {}}
    elif (
        not isinstance(marker, dict)
        or marker.get("converter") != _CONVERTER
        or not isinstance(marker.get("splits"), dict)
    ):
        raise DestinationError(
            f"{marker_path} is not a record of this converter; nothing was changed: choose an empty or new dst"
        )
    for split, path in jobs.items():
        new, old = _fingerprint(path), marker["splits"].get(split)
        has_frames = any(
            (dst / kind / split).is_dir() and any((dst / kind / split).iterdir()) for kind in ("images", "labels")
        )
        if old is not None and old != new and has_frames:
            raise DestinationError(
                f"{dst} holds the {split} split converted from another {old.get('json')} ({old.get('size')} "
                f"bytes; {path} has {new['size']}); nothing was changed: convert into a new dst, or delete "
                f"{dst / 'images' / split} and {dst / 'labels' / split} to convert this file there"
            )
        marker["splits"][split] = new
    dst.mkdir(parents=True, exist_ok=True)
    _write_text(marker_path, json.dumps(marker, indent=1))


def _annotations(
    path: Path, mapping: tuple[dict[Any, int], set[Any]], counts: SplitCounts, progress: bool
) -> dict[Any, array]:
    """image_id -> flat array of (class, x, y, w, h), 40 bytes a box instead of a dict each."""
    classes, background = mapping
    by_image: dict[Any, array] = {}
    for ann in _items(path, "annotations.item", "annotations", progress):
        try:
            image_id, category, bbox = ann["image_id"], ann["category_id"], ann["bbox"]
            x, y, w, h = (float(v) for v in bbox)
            hash(image_id)
        except (TypeError, KeyError, ValueError):
            counts.malformed += 1
            continue
        if not all(map(math.isfinite, (x, y, w, h))):
            counts.malformed += 1
        elif category in background:
            counts.background += 1
        elif category not in classes:
            counts.unknown_category += 1
        else:
            by_image.setdefault(image_id, array("d")).extend((classes[category], x, y, w, h))
    return by_image


def _yolo_lines(values: array | None, width: float, height: float) -> tuple[list[str], list[int], int, int]:
    """(label lines, their classes, boxes clipped, boxes dropped) of one frame.

    Boxes are clipped to the frame; what is left under MIN_BOX_PX wide or tall is degenerate.
    """
    lines, classes, clipped, dropped = [], [], 0, 0
    for i in range(0, len(values) if values is not None else 0, 5):
        cls, x, y, w, h = values[i : i + 5]
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
        if x1 - x0 < MIN_BOX_PX or y1 - y0 < MIN_BOX_PX:
            dropped += 1
            continue
        clipped += (x0, y0, x1, y1) != (x, y, x + w, y + h)
        classes.append(int(cls))
        lines.append(
            f"{int(cls)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
            f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
        )
    return lines, classes, clipped, dropped


@dataclass
class _Frames:
    """Where one split's frames are read from: the candidate folders, and the one that holds them."""

    roots: list[Path]
    root: Path | None  # None: no frame of the split was found in any candidate


@dataclass(frozen=True)
class _Output:
    """Where and how a conversion writes; the same for every split of one run."""

    dst: Path  # the YOLO dataset folder
    link: str  # one of LINK_MODES
    rows: IO[bytes]  # the index being written (a temp file until the run completes)
    progress: bool  # show a progress bar per pass over an annotation file


def _entry(path: Path, n: int, img: Any) -> tuple[str, float, float]:
    """(path under the frames folder, width, height) of ``images[n]``; refuses an entry that is not
    COCO, and a ``file_name`` that leads outside the frames folder by its text alone."""
    try:
        file_name, width, height = str(img["file_name"]).replace("\\", "/"), float(img["width"]), float(img["height"])
        if not file_name or not (0 < width < math.inf and 0 < height < math.inf):
            raise ValueError
    except (TypeError, KeyError, ValueError):
        raise NotCocoError(
            f"{path}: images[{n}] is not a COCO image entry (file_name, width, height): {img!r:.200}"
        ) from None
    rel = re.sub(r"^(?:\./)*(?:frames/)?", "", file_name)
    why = (
        "it is an absolute path"
        if file_name.startswith("/") or re.match(r"[A-Za-z]:", file_name)
        else "it climbs out with '..'"
        if ".." in rel.split("/")
        else "it holds a NUL character"
        if "\0" in rel
        else "it names no file"
        if not rel or rel.endswith("/")
        else None
    )
    if why:
        raise FileNameError(
            f"{path}: images[{n}].file_name {file_name!r:.200} is not a path inside "
            f"the frames folder ({why}); nothing was converted: fix the annotation file"
        )
    return rel, width, height


def _check_file_names(path: Path, roots: list[Path], progress: bool) -> _Frames:
    """One pass over a split's image entries before anything is written: each ``file_name`` stays
    inside the frames folder (also through symlinks), and no two frames share a label file.

    The frames folder is the first candidate that holds a frame. Symlinks are resolved per
    folder (a clip's frames share theirs) plus one ``lstat`` a frame, so a million frames cost
    seconds. Raises :class:`FileNameError` naming the entry.
    """
    root: Path | None = None
    root_real = ""
    folders: dict[str, str] = {}  # folder under the root -> its real path
    stems: dict[str, str] = {}  # flattened stem -> the file_name that has it
    for n, img in enumerate(_items(path, "images.item", "file names", progress)):
        rel, _, _ = _entry(path, n, img)
        flat = rel.replace("/", "_")
        stem = Path(flat).stem
        other = stems.setdefault(stem, rel)
        if other != rel:
            raise FileNameError(
                f"{path}: images[{n}].file_name {rel!r:.200} and {other!r:.200} would share "
                f"the label file {stem}.txt (Ultralytics finds a frame's labels by its name "
                "without the extension); nothing was converted: rename one of the frames"
            )
        if root is None:
            root = next((r for r in roots if (r / rel).is_file()), None)
            root_real = os.path.realpath(root) if root is not None else ""
        if root is None:
            continue
        folder, _, name = rel.rpartition("/")
        real_folder = folders.get(folder)
        if real_folder is None:
            real_folder = folders[folder] = os.path.realpath(root / folder)
        target = os.path.join(real_folder, name)
        if os.path.islink(target):
            target = os.path.realpath(target)
        if os.path.commonpath([root_real, target]) != root_real:
            raise FileNameError(
                f"{path}: images[{n}].file_name {rel!r:.200} leads outside the frames folder "
                f"{root} through a symbolic link (to {target}); nothing was converted: "
                "replace the link with the frame, or convert from a folder without it"
            )
    if not stems:
        raise NotCocoError(f"{path} is not a COCO annotation file: it has no 'images' entries")
    return _Frames(roots, root)


def _convert_images(counts: SplitCounts, by_image: dict[Any, array], frames: _Frames, out: _Output) -> None:
    """Link the frames of one split, write their labels and index rows; skip what is finished.

    ``counts`` names the split and its annotation file and receives what happened to each frame.
    """
    path, split, dst = counts.source, counts.split, out.dst
    img_dir, lbl_dir = dst / "images" / split, dst / "labels" / split
    for folder in (img_dir, lbl_dir) if counts.labelled else (img_dir,):
        folder.mkdir(parents=True, exist_ok=True)
        for tmp in stale_temps(folder):
            tmp.unlink(missing_ok=True)  # a label or copy of a writer that died before its rename
    seen: set[str] = set()
    missing: list[str] = []
    for n, img in enumerate(_items(path, "images.item", "frames", out.progress)):
        counts.images += 1
        rel, width, height = _entry(path, n, img)
        flat = rel.replace("/", "_")
        if flat in seen:
            counts.duplicates += 1
            continue
        seen.add(flat)
        lines, classes, clipped, dropped = _yolo_lines(by_image.pop(img.get("id"), None), width, height)
        text = "".join(line + "\n" for line in lines)
        image_out, label_out = img_dir / flat, lbl_dir / f"{Path(flat).stem}.txt"
        if os.path.exists(image_out) and (not counts.labelled or _read(label_out) == text):
            counts.skipped += 1
        else:
            source = frames.root / rel if frames.root is not None else frames.roots[0] / rel
            if frames.root is None or not source.is_file():
                counts.missing += 1
                missing.append(str(source))
                continue
            _link(source, image_out, out.link)
            if counts.labelled:
                _write_label(label_out, text)
            counts.written += 1
        counts.empty += counts.labelled and not lines
        counts.clipped += clipped
        counts.dropped += dropped
        for cls in classes:
            counts.boxes[cls] += 1
        out.rows.write((json.dumps(_index_row(img, rel, split, f"images/{split}/{flat}", len(lines))) + "\n").encode())
    counts.orphans = sum(len(a) // 5 for a in by_image.values())
    _write_missing_list(dst, counts, missing)
    if counts.frames == 0:
        raise FramesNotFoundError(
            f"none of the {counts.images} frames of {path.name} were found (e.g. {missing[0]}); "
            f"looked under {', '.join(map(str, frames.roots))}: pass frames=<folder holding YYYYMMDD/clip_...>"
        )
    if counts.written:
        (dst / "labels" / f"{split}.cache").unlink(missing_ok=True)  # Ultralytics' cache of the older folder


def _write_missing_list(dst: Path, counts: SplitCounts, missing: list[str]) -> None:
    """``missing-<split>.txt`` lists the frames of a split that were not found (one warning names
    the first); a split with none missing has no list, so a stale one from a run that lacked
    frames does not outlive their arrival."""
    missing_list = dst / f"missing-{counts.split}.txt"
    if missing:
        atomic_write(missing_list, "".join(m + "\n" for m in missing))
        counts.missing_examples = missing[:5]
        LOGGER.warning(
            "%s: %d of %d frames not found, e.g. %s (all in %s)",
            counts.source.name,
            len(missing),
            counts.images,
            missing[0],
            missing_list,
        )
    else:
        missing_list.unlink(missing_ok=True)


def _link(source: Path, target: Path, mode: str) -> None:
    """Put ``source`` at ``target`` without copying where possible."""
    if os.path.lexists(target):
        target.unlink()  # ours: a link to a frame that moved, or a copy cut short
    if mode == "copy":
        with source.open("rb") as frame:
            atomic_write(target, lambda out: shutil.copyfileobj(frame, out, 1 << 20))
        return
    if mode == "symlink":
        try:
            os.symlink(source, target)
            return
        except OSError as e:
            LOGGER.debug("symlink %s failed (%s); trying a hardlink", target, e)
    try:
        os.link(source, target)
    except OSError as e:
        raise ConversionError(
            f"cannot link {source} to {target} ({e}); pass link=copy to copy the frames instead"
        ) from None


def _read(path: Path) -> str | None:
    """A label file's text, None where it is missing or unreadable."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _write_label(path: Path, text: str) -> None:
    """A label, whole or not at all (a kill leaves the earlier one). Not fsynced one by one: a
    million fsyncs cost hours; the conversion syncs the disk once before its index commits it,
    and a re-run compares every label with what it should hold (a power cut can empty one)."""
    atomic_write(path, text, durable=False)


def _flatten(entry: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar fields of a JSON object, nested objects flattened with dots; lists left out."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, _SCALARS):
            out[f"{prefix}{key}"] = value
    return out


def _index_row(img: dict[str, Any], rel: str, split: str, file: str, objects: int) -> dict[str, Any]:
    """Where, when and what a frame is; the image entry's own fields follow ours."""
    m = _FRAME_PATH.search(rel)
    if m:
        y, mo, d, clip, hh, mm = m.groups()
        when: dict[str, Any] = {"date": f"{y}-{mo}-{d}", "month": f"{y}-{mo}", "clip": int(clip), "time": f"{hh}:{mm}"}
    else:
        captured = str(img.get("date_captured") or "")
        ok = re.match(r"(\d{4})-(\d{2})-(\d{2})", captured)
        when = {"date": ok.group(0), "month": ok.group(0)[:7]} if ok else {"date": None, "month": None}
        when.update(clip=None, time=captured[11:16] or None)
    row = {"file": file, "split": split, **when, "objects": objects}
    for key, value in _flatten(img).items():
        row[key if key not in row else f"image.{key}"] = value
    return row


def _old_rows(index: Path, replaced: set[str]) -> Iterator[str]:
    """Index lines of splits this run did not convert (an earlier run's), kept as they are."""
    if not index.is_file():
        return
    with index.open() as f:
        for line in f:
            try:
                split = json.loads(line).get("split")
            except ValueError:
                continue
            if split not in replaced:
                yield line


def _write_data_yaml(dst: Path) -> None:
    cfg: dict[str, Any] = {"path": str(dst)}
    for split in ("train", "val", "test"):
        if (dst / "images" / split).is_dir():
            cfg[split] = f"images/{split}"
    cfg["names"] = dict(enumerate(CLASS_NAMES))
    cfg["train_settings"] = _thermal_settings()
    _write_text(
        dst / "data.yaml",
        "# LTDV2 converted by yolo_rdna1.data.ltdv2 (classes by category name)\n"
        + yaml.safe_dump(cfg, sort_keys=False),
    )


def _thermal_settings() -> dict[str, Any]:
    """The shipped ltdv2 config's augmentation for grey thermal frames, carried by every data.yaml
    written here, so ``yolo_rdna1.train(data=<that file>)`` uses it however the file is named."""
    return dict(dataset_config("ltdv2").get("train_settings") or {})


def _write_text(path: Path, text: str) -> None:
    if _read(path) != text:
        atomic_write(path, text)


# --------------------------------------------------------------------------------------------
# Index and drift splits
# --------------------------------------------------------------------------------------------


def read_index(dst: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a converted folder's ``index.jsonl`` (``pandas.read_json(path, lines=True)`` reads it too)."""
    path = Path(dst) / INDEX
    if not path.is_file():
        raise ConversionError(f"{path} not found: convert first (yolo-rdna1 data convert-ltdv2 src=... dst={dst})")
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class DriftPeriod:
    """One evaluation period: the frames of its months that the model did not train on."""

    name: str  # 2021-01 (scheme month) or 2021-winter (scheme season)
    months: list[str]
    frames: int
    trained: bool  # some of its months are training months (then only their Valid frames are in it)
    yaml: Path


@dataclass
class DriftSplits:
    """What :func:`make_drift_splits` wrote."""

    folder: Path
    scheme: str
    train_months: list[str]
    train_frames: int
    val_frames: int
    train_yaml: Path
    periods: list[DriftPeriod]

    def summary(self) -> str:
        lines = [
            f"train on {', '.join(self.train_months)}: {self.train_frames} "
            f"frames (val {self.val_frames}); {self.train_yaml}"
        ]
        lines += [
            f"  {p.name:12} {p.frames:7d} frames{'  (Valid frames of a training month)' if p.trained else ''}  {p.yaml}"
            for p in self.periods
        ]
        return "\n".join(lines)


def make_drift_splits(
    dst: str | os.PathLike, scheme: str | None = None, train_months: int | None = None
) -> DriftSplits:
    """Train on the first ``train_months`` months of a converted folder; one val set per later period.

    Defaults and the season table come from ``configs/datasets/ltdv2-drift.yaml``. Writes
    ``dst/drift/<scheme>-<N>/``: ``train.txt`` (Train frames of the training months),
    ``val.txt`` (their Valid frames), ``<period>.txt`` and ``<period>.yaml`` per period (every
    labelled frame of a later month; only Valid frames of a training month, so the model never
    sees its evaluation frames), ``train.yaml`` and ``splits.json``; the YAMLs carry the ltdv2
    config's ``train_settings``, which ``yolo_rdna1.train`` applies. The lists hold absolute
    paths (a moved dataset needs this call again, as its data.yaml needs a new ``path``).
    """
    cfg = dataset_config("ltdv2-drift")
    scheme, n = _drift_options(cfg, scheme, train_months)
    dst = Path(dst).expanduser().absolute()
    rows = _dated_rows(dst)
    months = sorted({r["month"] for r in rows})
    if n >= len(months):
        raise ConversionError(
            f"train_months={n} leaves no later month to evaluate: the labelled "
            f"frames span {len(months)} month(s) ({', '.join(months) or 'none'})"
        )
    trained = set(months[:n])
    period = _period_of(scheme, cfg["seasons"])

    train = [r for r in rows if r["split"] == "train" and r["month"] in trained]
    val = [r for r in rows if r["split"] == "val" and r["month"] in trained]
    if not train or not val:
        raise ConversionError(
            f"the training months {', '.join(sorted(trained))} hold {len(train)} Train and {len(val)} Valid frames; "
            "both are needed (convert the Valid split too: splits=Train,Valid)"
        )
    lists = _DriftFolder(dst, dst / "drift" / f"{scheme}-{n}", _thermal_settings())
    shutil.rmtree(lists.folder, ignore_errors=True)  # ours: regenerated from the index every time
    lists.folder.mkdir(parents=True)
    lists.write("val", val)
    train_yaml = lists.write("train", train, "val")
    periods = []
    for name in sorted({period(m) for m in months}, key=lambda p: min(m for m in months if period(m) == p)):
        frames = [r for r in rows if period(r["month"]) == name and (r["month"] not in trained or r["split"] == "val")]
        if frames:
            ms = sorted({r["month"] for r in frames})
            periods.append(DriftPeriod(name, ms, len(frames), bool(trained & set(ms)), lists.write(name, frames, name)))
    result = DriftSplits(lists.folder, scheme, sorted(trained), len(train), len(val), train_yaml, periods)
    _write_splits_json(result)
    return result


def _drift_options(cfg: dict[str, Any], scheme: str | None, train_months: int | None) -> tuple[str, int]:
    """(scheme, number of training months): the arguments, else the drift config's defaults;
    checked before the index is read, so a typo fails at once."""
    scheme = scheme or str(cfg["scheme"])
    if scheme not in cfg["schemes"]:
        raise ConversionError(f"scheme={scheme!r} is not one of {', '.join(cfg['schemes'])}")
    n = cfg["train_months"] if train_months is None else train_months
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConversionError(f"train_months must be an integer >= 1, got {n!r}")
    return scheme, n


def _dated_rows(dst: Path) -> list[dict[str, Any]]:
    """The index rows of labelled (Train and Valid) frames that have a month; the undated ones
    cannot be placed in time, so they are left out with one warning that counts them."""
    rows = [r for r in read_index(dst) if r.get("split") in ("train", "val")]
    undated = sum(1 for r in rows if not r.get("month"))
    if undated:
        LOGGER.warning(
            "%d frames of %s have no date in their path or date_captured; they are left out of the drift splits",
            undated,
            dst,
        )
    return [r for r in rows if r.get("month")]


def _period_of(scheme: str, seasons: dict[str, Any]) -> Callable[[str], str]:
    """month (``YYYY-MM``) -> the name of its evaluation period under ``scheme``: the month
    itself, or ``<year>-<season>`` from the config's season table (month number -> season)."""
    season_of = {m: season for season, ms in seasons.items() for m in ms}

    def period(month: str) -> str:
        if scheme == "month":
            return month
        year, mo = int(month[:4]), int(month[5:])
        return f"{year + (mo == 12)}-{season_of[mo]}"  # December opens the next year's winter

    return period


@dataclass(frozen=True)
class _DriftFolder:
    """One drift-split folder being written: its frame lists and the YAMLs that train or evaluate
    on them, which share the dataset root, the class names and the thermal train settings."""

    dst: Path  # the converted dataset; the lists hold absolute paths under it
    folder: Path  # dst/drift/<scheme>-<N>
    settings: dict[str, Any]  # the ltdv2 config's train_settings

    def write(self, name: str, frames: list[dict[str, Any]], val_list: str | None = None) -> Path:
        """``<name>.txt`` and, when it is a val set to train or evaluate with, ``<name>.yaml``."""
        (self.folder / f"{name}.txt").write_text("".join(f"{self.dst / r['file']}\n" for r in frames))
        out = self.folder / f"{name}.yaml"
        if val_list is not None:
            rel = self.folder.relative_to(self.dst).as_posix()
            cfg = {
                "path": str(self.dst),
                "train": f"{rel}/train.txt",
                "val": f"{rel}/{val_list}.txt",
                "names": dict(enumerate(CLASS_NAMES)),
                "train_settings": self.settings,
            }
            out.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return out


def _write_splits_json(result: DriftSplits) -> None:
    """``splits.json``: what :func:`make_drift_splits` wrote, for scripts and plots."""
    (result.folder / "splits.json").write_text(
        json.dumps(
            {
                "scheme": result.scheme,
                "train_months": result.train_months,
                "train_frames": result.train_frames,
                "val_frames": result.val_frames,
                "train_yaml": str(result.train_yaml),
                "periods": [
                    {"name": p.name, "months": p.months, "frames": p.frames, "trained": p.trained, "yaml": str(p.yaml)}
                    for p in result.periods
                ],
            },
            indent=1,
        )
    )
