"""The notebooks in notebooks/ run clean, papermill style, on tiny parameters, and write their plots.

Each runs in its own kernel (a child process of this interpreter, so it inherits the offline
Ultralytics settings and the private caches conftest put into the environment), in a temp dir,
with a cell injected after the one tagged ``parameters``, as papermill does.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "yolo-rdna1-tests"
#: What every tiny run shares: a model built from its YAML (no download), 64 px, the CPU.
TINY = dict(MODEL="yolov8n.yaml", DEVICE="cpu", IMGSZ=64, BATCH=2, WORKERS=0)
PARAMS = {
    "01_quickstart.ipynb": dict(TINY, EPOCHS=1, N_TRAIN=8, N_VAL=4, FAULTS="gfx1010", UNKNOWN="probe"),
    "02_ltdv2_drift.ipynb": dict(TINY, EPOCHS=1, TRAIN_MONTHS=2, SAMPLE=dict(months=3, clips_per_day=2, days_per_month=1, frames_per_clip=2)),
    "03_long_run.ipynb": dict(OVERRIDES=dict(
        epochs=2, imgsz=64, batch=2, workers=0, device="cpu", plots=False, probe=False, env_profile="default", unknown="vendor",
        checkpoint_minutes=0.001, backoff_s=0, telemetry=0, verbose=False,
    )),
}


def parameters_cell(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec that runs this interpreter (the default 'python3' runs whatever 'python' is on PATH)."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(base))
        yield KERNEL


def execute(name: str, kernel: str, tmp_path: Path) -> tuple[nbformat.NotebookNode, Path]:
    """Run notebook ``name`` with its tiny parameters and ``OUT`` in ``tmp_path``; a failing cell raises."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    out = tmp_path / "out"
    values = {**PARAMS[name], "OUT": str(out)}
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(parameters_cell(nb) + 1, injected)
    NotebookClient(nb, kernel_name=kernel, timeout=240, resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    return nb, out


def text_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def assert_pngs(out: Path, *names: str) -> None:
    for name in names:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, f"{name}: not a plot"


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_notebooks_are_documents_with_parameters_and_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code"), "committed with outputs"
    params = nb.cells[parameters_cell(nb)].source
    names = {t.id for node in ast.parse(params).body if isinstance(node, ast.Assign) for tgt in node.targets
             for t in (tgt.elts if isinstance(tgt, ast.Tuple) else [tgt])}
    assert set(PARAMS[name]) | {"OUT"} <= names, "a test parameter the notebook does not have would be ignored"
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= sum(c.cell_type == "code" for c in nb.cells) // 2


@pytest.mark.slow
def test_quickstart_probes_trains_guarded_and_plots(kernel, tmp_path):
    nb, out = execute("01_quickstart.ipynb", kernel, tmp_path)
    assert_pngs(out, "bypass_rate.png", "temperature.png")
    report = json.loads((out / "train" / "rdna1_report.json").read_text())
    assert report["bypassed"] > 0 and "abort" in report["probe"]  # the gfx1010 profile gave the guard work
    assert "conv calls bypassed" in text_of(nb) and "Fault simulator" in text_of(nb)


def test_drift_notebook_converts_trains_on_early_months_and_plots_map_by_month(kernel, tmp_path):
    _, out = execute("02_ltdv2_drift.ipynb", kernel, tmp_path)
    assert_pngs(out, "map_by_period.png", "map_vs_temperature.png")
    results = json.loads((out / "drift_map.json").read_text())
    assert [r["period"] for r in results] == ["2020-05", "2020-06", "2020-07"]
    assert [r["trained"] for r in results] == [True, True, False] and all(r["temperature"] is not None for r in results)
    assert all(r["conv_calls"] > 0 for r in results)  # each model.val() ran under the plugin's guard (add_callbacks)
    args = (out / "early-months" / "args.yaml").read_text()
    assert "hsv_h: 0.0" in args and "hsv_s: 0.0" in args and "mosaic: 1.0" in args  # the dataset config's thermal settings


def test_long_run_notebook_restarts_after_the_crash_and_plots_the_journal(kernel, tmp_path):
    _, out = execute("03_long_run.ipynb", kernel, tmp_path)
    assert_pngs(out, "journal_timeline.png", "restarts_lost_minutes.png")
    (run,) = out.glob("long-*")
    events = [json.loads(line) for line in (run / "journal.jsonl").read_text().splitlines()]
    assert [e["cause"] for e in events if e["event"] == "restart"] == ["abort"]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"
    assert any(e["event"] == "attributed" and ":c512>256:k1x1:" in e["signature"] for e in events)
