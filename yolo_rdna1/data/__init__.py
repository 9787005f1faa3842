"""Datasets: thermal frames to train on, checked before a multi-day run rather than hours into it.

LTDV2 (Long-term Thermal Drift v2, ``vapaau/LTDv2`` on the Hugging Face hub) is the dataset this
project trains on; the path from its download to a training is, in order:

* :func:`convert_ltdv2`: the COCO files into a YOLO folder, classes by category *name* (the
  categories start with a background entry, so numbering by position shifts every label),
  streamed, resumable, with an ``index.jsonl`` of each frame's date, clip and weather;
* :func:`check_dataset`: class ids, missing or empty files, duplicates, of any YOLO dataset;
* :func:`make_drift_splits`: train on the first months, one validation set per later period;
* :func:`resolve_data` / :func:`resolve_training_data`: ``data=ltdv2`` (a shipped config by
  name, its root from an argument or ``LTDV2_ROOT``) to a data.yaml Ultralytics can open, plus
  the config's thermal ``train_settings``; ``yolo_rdna1.train`` calls the latter.

Nothing here needs the 48 GB download to be exercised: :func:`make_ltdv2_sample` writes a tiny
look-alike in LTDV2's own format (same JSON structure, folder layout, categories and dates), and
:func:`make_synthetic_thermal` a small YOLO-layout thermal dataset for demos and tests.
"""

from .check import CheckReport, check_dataset
from .configs import DatasetError, dataset_config, resolve_data, resolve_training_data, shipped_datasets, train_settings
from .ltdv2 import ConversionError, ConversionReport, DriftSplits, convert_ltdv2, make_drift_splits, read_index
from .ltdv2_sample import make_ltdv2_sample
from .synthetic import CLASS_NAMES, make_synthetic_thermal

__all__ = [
    "CLASS_NAMES",
    "CheckReport",
    "ConversionError",
    "ConversionReport",
    "DatasetError",
    "DriftSplits",
    "check_dataset",
    "convert_ltdv2",
    "dataset_config",
    "make_drift_splits",
    "make_ltdv2_sample",
    "make_synthetic_thermal",
    "read_index",
    "resolve_data",
    "resolve_training_data",
    "shipped_datasets",
    "train_settings",
]
