"""val, predict (streamed, abandoned, failing) and export under the plugin, from Python and the CLI.

The fault-profile tests load the detection model the ``task_runs`` fixture trained (YOLO11n,
guarded, under ``gfx1010``) into fresh child processes: guarded (``auto``), every call finishes
with the bad signatures bypassed; on the vendor route the same calls hit the simulated hang
(a watcher thread in the child sees the main thread blocked in the simulator and exits 42, so
no test waits for a timeout). The mechanics tests run in-process without a fault profile.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from yolo_rdna1.cli import main
from yolo_rdna1.faults import load_profile
from yolo_rdna1.guard import current, guarded, is_patched
from yolo_rdna1.signature import ConvSignature

HANG_EXIT = 42
#: Prepended to every child: a thread that reports a simulated hang at once instead of a timeout.
HANG_WATCH = textwrap.dedent(f"""
    import os, sys, threading, time, traceback
    def _watch():
        main = threading.main_thread().ident
        while True:
            time.sleep(0.2)
            frame = sys._current_frames().get(main)
            stack = []
            while frame is not None:
                stack.append(frame.f_code.co_name)
                frame = frame.f_back
            if "raise_or_block" in stack:
                print("HUNG " + "".join(traceback.format_stack(sys._current_frames()[main])), flush=True)
                os._exit({HANG_EXIT})
    threading.Thread(target=_watch, daemon=True).start()
""")


def child(code: str, timeout: float = 300) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HANG_WATCH + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def calls_code(best: Path, data: str, images: Path, out: Path, **options) -> str:
    """val, predict and export at 192 px (3x3 convs see 48 px maps: gfx1010's hang), each summarised."""
    return textwrap.dedent(f"""
        import json
        from ultralytics import YOLO
        import yolo_rdna1
        from yolo_rdna1.callbacks import last_run
        from yolo_rdna1.guard import is_patched
        model = yolo_rdna1.add_callbacks(YOLO({str(best)!r}), **{options!r})
        kind = sys.argv[1] if len(sys.argv) > 1 else "all"
        def report(tag):
            print("RESULT " + json.dumps({{"tag": tag, "patched": is_patched(), **last_run().as_dict()}}), flush=True)
        if kind in ("all", "val"):
            model.val(data={data!r}, imgsz=64, batch=8, plots=False, verbose=False, project={str(out)!r},
                      name="val64", exist_ok=True)
            report("val64")
            model.val(data={data!r}, imgsz=192, batch=8, plots=False, verbose=False, project={str(out)!r},
                      name="val", exist_ok=True)
            report("val")
        if kind in ("all", "predict"):
            results = model.predict({str(images)!r}, imgsz=192, verbose=False)
            report("predict")
            print("IMAGES", len(results), flush=True)
        if kind in ("all", "export"):
            print("EXPORTED", model.export(format="torchscript", imgsz=192), flush=True)
            report("export")
    """)


def results(stdout: str) -> dict[str, dict]:
    return {
        r["tag"]: r
        for r in (json.loads(line[len("RESULT ") :]) for line in stdout.splitlines() if line.startswith("RESULT "))
    }


@pytest.fixture(scope="module")
def detect_run(task_runs, tmp_path_factory):
    run = task_runs["detect"]
    images = tmp_path_factory.mktemp("predict-images")
    for f in sorted((Path(run["data"]).parent / "images" / "val").glob("*.jpg"))[:4]:
        (images / f.name).write_bytes(f.read_bytes())
    return {**run, "best": run["dir"] / "weights" / "best.pt", "images": images}


@pytest.mark.slow
def test_val_predict_export_finish_guarded_with_the_bad_signatures_bypassed(detect_run, shared_cache, tmp_path):
    code = calls_code(
        detect_run["best"],
        detect_run["data"],
        detect_run["images"],
        tmp_path,
        guard="auto",
        faults="gfx1010",
        cache=str(shared_cache),
        unknown="bypass",
    )
    rc, out, err = finish(child("import sys\n" + code))
    assert rc == 0, (out + err)[-4000:]
    got = results(out)
    assert set(got) == {"val64", "val", "predict", "export"}
    profile = load_profile("gfx1010")
    for tag, r in got.items():
        assert not r["patched"], f"{tag}: the guard stayed on after the call"
        assert r["calls"] > 0 and r["bypassed"] > 0 and r["fallbacks"] == 0, (tag, r["calls"], r["bypassed"])
        for row in r["signatures"]:
            if profile.rules_for(ConvSignature.from_key(row["signature"])):
                assert row["routes"]["fwd"] == "bypass", (
                    f"{tag}: {row['signature']} ran on the simulated card's vendor route"
                )
    # at the training's size the final evaluation's signatures are known: routed by verdict, not by unknown=
    assert got["val64"]["unknown"] == [] and any(row["routes"]["fwd"] == "vendor" for row in got["val64"]["signatures"])
    for tag in ("val", "predict", "export"):  # at 192 px 3x3 convs see maps above 42 px: gfx1010's hang, bypassed above
        hangs = [
            row
            for row in got[tag]["signatures"]
            if any(rule.effect == "hang" for rule in profile.rules_for(ConvSignature.from_key(row["signature"])))
        ]
        assert hangs, f"{tag} at 192 px never met gfx1010's hanging 3x3 convs"
    assert "IMAGES 4" in out
    exported = out.split("EXPORTED ", 1)[1].split()[0]
    # the TorchScript file loads and runs in a process that never imported the plugin
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, torch
        m = torch.jit.load({exported!r})
        y = m(torch.zeros(1, 3, 192, 192))
        graph = str(m.inlined_graph)
        print(type(y).__name__, "PythonOp" in graph, "yolo_rdna1" in sys.modules, "aten::_convolution" in graph)
    """),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    vendor = any(row["routes"]["fwd"] == "vendor" for row in got["export"]["signatures"])
    # an ordinary conv where the vendor route was chosen, the bypass's GEMMs elsewhere; no Python ops
    assert check.stdout.split() == ["Tensor", "False", "False", str(vendor)], check.stderr[-2000:]


@pytest.mark.slow
def test_the_same_calls_on_the_vendor_route_hit_the_simulated_hang(detect_run, shared_cache, tmp_path):
    # gfx1010's first failure in a YOLO model is the stem's catchable error; without that rule
    # the first bad conv on the vendor route is the hang the guard bypasses
    gfx = yaml.safe_load(Path(load_profile("gfx1010").source).read_text())
    hang_only = tmp_path / "gfx1010-hang.yaml"
    hang_only.write_text(
        yaml.safe_dump(
            {**gfx, "name": "gfx1010-without-error", "rules": [r for r in gfx["rules"] if r["effect"] != "error"]}
        )
    )
    vendor = calls_code(
        detect_run["best"],
        detect_run["data"],
        detect_run["images"],
        tmp_path,
        guard="vendor",
        faults=str(hang_only),
        cache=str(shared_cache),
    )
    full = calls_code(
        detect_run["best"],
        detect_run["data"],
        detect_run["images"],
        tmp_path,
        guard="vendor",
        faults="gfx1010",
        cache=str(shared_cache),
    )
    procs = {kind: child(f"import sys\nsys.argv[1:] = [{kind!r}]\n" + vendor) for kind in ("val", "predict", "export")}
    procs["error"] = child("import sys\nsys.argv[1:] = ['predict']\n" + full)
    done = {kind: finish(p) for kind, p in procs.items()}
    for kind in ("val", "predict", "export"):
        rc, out, err = done[kind]
        assert rc == HANG_EXIT, f"{kind} on the vendor route did not hang: {(out + err)[-3000:]}"
    # export hangs in its dry run, before Ultralytics' on_export_start: the Model scope guards it
    stack = done["export"][1]
    assert "exporter.py" in stack and "torch/jit" not in stack
    rc, out, err = done["error"]
    assert rc == 1 and "miopenStatusUnknownError (simulated by YOLO_RDNA1_FAULTS" in err


# -- mechanics, in-process, no fault profile --------------------------------------------------------
@pytest.fixture
def yolo(tmp_path):
    from ultralytics import YOLO

    import yolo_rdna1

    return yolo_rdna1.add_callbacks(YOLO("yolov8n.yaml"), guard="bypass", cache=str(tmp_path / "cache"))


IMAGES = [np.full((72, 96, 3), 60, np.uint8)] * 2


def seen_during(model, event: str) -> list:
    """What guard was on at ``event`` of each call (recorded by a user callback)."""
    seen: list = []
    model.add_callback(event, lambda engine: seen.append(current()))
    return seen


def test_predict_is_guarded_inside_and_unguarded_after(yolo):
    from yolo_rdna1.callbacks import last_run

    seen = seen_during(yolo, "on_predict_postprocess_end")
    assert len(yolo.predict(IMAGES, imgsz=64, verbose=False)) == 2
    assert seen and seen[0] is not None and seen[0].policy == "bypass" and not is_patched()
    summary = last_run()
    convs = sum(isinstance(m, nn.Conv2d) for m in yolo.model.modules())
    assert summary.kind == "predict" and summary.final_totals["calls"] == summary.final_totals["bypassed"] == convs
    assert summary.summary.startswith(f"yolo_rdna1 predict: {convs} conv calls, {convs} bypassed (100.0%)")


def test_a_stream_holds_the_guard_only_while_it_computes_and_an_abandoned_one_lets_go(yolo):
    from yolo_rdna1.callbacks import last_run

    stream = yolo.predict([IMAGES[0]] * 3, imgsz=64, stream=True, verbose=False, batch=1)
    assert next(stream) is not None and not is_patched()  # the consumer holds it: guard off
    with guarded(policy="vendor") as outer:  # the caller's own guard between two steps
        next(stream)
        assert current() is outer
    del stream
    gc.collect()
    assert not is_patched() and last_run().kind == "predict" and last_run().final_totals["calls"] > 0


def test_a_call_that_raises_takes_the_guard_off(yolo):
    def boom(predictor):
        raise RuntimeError("user callback failed")

    yolo.add_callback("on_predict_postprocess_end", boom)
    with pytest.raises(RuntimeError, match="user callback failed"):
        yolo.predict(IMAGES, imgsz=64, verbose=False)
    assert not is_patched()


def test_a_model_without_the_plugin_is_left_alone(yolo):
    from ultralytics import YOLO

    from yolo_rdna1.callbacks import last_run

    yolo.predict(IMAGES, imgsz=64, verbose=False)
    before = last_run()
    plain = YOLO("yolov8n.yaml")
    seen = seen_during(plain, "on_predict_postprocess_end")
    plain.predict(IMAGES, imgsz=64, verbose=False)
    assert seen == [None] and last_run() is before


def test_val_counts_its_batches_and_export_traces_plain_ops(yolo, synthetic_data, tmp_path):
    from yolo_rdna1.callbacks import last_run

    yolo.val(data=str(synthetic_data), imgsz=64, batch=4, plots=False, verbose=False, project=str(tmp_path), name="val")
    val = last_run()
    # 8 images in 2 equal batches and nothing else (no warmup on a CPU): every signature ran an even number of times
    assert val.kind == "val" and val.final_totals["calls"] > 0 and all(r["calls"] % 2 == 0 for r in val.final_routes)
    assert not (tmp_path / "val" / "rdna1_report.json").exists()  # nothing Ultralytics does not write
    path = yolo.export(format="torchscript", imgsz=64)
    export = last_run()
    assert export.kind == "export" and export.final_totals["bypassed"] == export.final_totals["calls"] > 0
    graph = str(torch.jit.load(path).inlined_graph)
    assert "aten::_convolution" not in graph and "PythonOp" not in graph  # every conv as the bypass's GEMMs


def test_report_option_writes_the_calls_report(tmp_path):
    from ultralytics import YOLO

    import yolo_rdna1

    model = yolo_rdna1.add_callbacks(YOLO("yolov8n.yaml"), guard="bypass", report=True)
    model.predict(IMAGES, imgsz=64, verbose=False, project=str(tmp_path), name="pred")
    report = json.loads((tmp_path / "pred" / "rdna1_report.json").read_text())
    assert report["kind"] == "predict" and report["calls"] == report["bypassed"] > 0 and report["signatures"]


def test_signatures_without_a_verdict_follow_the_unknown_option(tmp_path, monkeypatch):
    from ultralytics import YOLO

    import yolo_rdna1
    from yolo_rdna1.callbacks import last_run

    # a profile that makes the guard route (auto) but matches no conv of the model
    profile = tmp_path / "none.yaml"
    profile.write_text(yaml.safe_dump({"name": "nothing", "rules": [{"match": {"kernel": 7}, "effect": "error"}]}))
    monkeypatch.setenv(
        "YOLO_RDNA1_FAULTS", ""
    )  # the session exports its profile for probe children; undone after the test
    for unknown in ("vendor", "bypass"):
        model = yolo_rdna1.add_callbacks(
            YOLO("yolov8n.yaml"), guard="auto", faults=str(profile), unknown=unknown, cache=str(tmp_path / unknown)
        )
        model.predict(IMAGES, imgsz=64, verbose=False)
        summary = last_run()
        assert summary.unknown and len(summary.unknown) == len(summary.final_routes)
        assert {r["routes"]["fwd"] for r in summary.final_routes} == {unknown}
        assert f"took unknown={unknown}" in summary.summary


def test_an_engine_built_by_hand_is_guarded_from_its_events(yolo):
    from ultralytics.models.yolo.detect import DetectionPredictor

    from yolo_rdna1.callbacks import last_run

    predictor = DetectionPredictor(overrides={"imgsz": 64, "verbose": False, "save": False}, _callbacks=yolo.callbacks)
    seen = seen_during(predictor, "on_predict_postprocess_end")
    stream = predictor(IMAGES, model=yolo.model, stream=True)
    next(stream)
    assert seen[0] is not None and not is_patched()  # per batch: off between two steps
    list(stream)
    assert last_run().kind == "predict" and not is_patched()


def test_a_dead_processes_crash_trail_becomes_a_verdict(tmp_path):
    import socket

    from yolo_rdna1.callbacks.lifecycle import INFLIGHT, SESSION_FILE, attribute_dead_sessions
    from yolo_rdna1.options import PluginOptions
    from yolo_rdna1.run import breadcrumb_stem
    from yolo_rdna1.verdicts.breadcrumb import Breadcrumb
    from yolo_rdna1.verdicts.store import VerdictStore

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    trail = tmp_path / INFLIGHT / f"pid{dead}@{socket.gethostname()}"
    crumb = Breadcrumb(breadcrumb_stem(trail))
    key = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 1).key()
    crumb.enter(crumb.register(key))  # the process "dies" here, in a vendor call
    (trail / SESSION_FILE).write_text(json.dumps({"device": "cardA", "env_profile": "default"}))
    assert attribute_dead_sessions(PluginOptions(cache=str(tmp_path))) == [(key, "abort")]
    verdict = VerdictStore(tmp_path / "verdicts.sqlite").get("cardA", "default", key)
    assert verdict.verdict == "abort" and verdict.source == "crash" and not trail.exists()


# -- the CLI ----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _cli_logging(monkeypatch):
    """main() configures logging on the stderr of its first call; each test captures its own."""
    import logging

    monkeypatch.setattr(logging.root, "handlers", [])


def test_cli_predict_and_export_run_guarded(tmp_path, capsys, caplog):
    import logging

    images = tmp_path / "images"
    images.mkdir()
    import cv2

    for i in range(2):
        cv2.imwrite(str(images / f"{i}.jpg"), IMAGES[0])
    caplog.set_level(logging.INFO, logger="yolo_rdna1")
    args = ["model=yolov8n.yaml", "imgsz=64", "guard=bypass", f"project={tmp_path}", "verbose=False"]
    assert main(["predict", f"source={images}", "name=pred", *args]) == 0
    # saved, as 'yolo predict' does, and nothing else: no breadcrumb or report in a predict folder
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["0.jpg", "1.jpg"]
    assert main(["export", "format=torchscript", *args[:-2]]) == 0
    exported = Path(capsys.readouterr().out.split()[-1])
    assert exported.suffix == ".torchscript" and exported.is_file()
    exported.unlink()
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("yolo_rdna1 predict: ") and "bypassed (100.0%)" in m for m in lines)
    assert any(m.startswith("yolo_rdna1 export: ") for m in lines) and not is_patched()


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["val"], 2, "'yolo-rdna1 val' needs model=<a .pt checkpoint or a model YAML>"),
        (["predict", "model=/nowhere/best.pt", "source=."], 2, "model file /nowhere/best.pt not found"),
        (["export", "model=yolov8n.yaml", "formt=torchscript"], 2, "'formt' is not a valid YOLO argument"),
        (["val", "model=yolov8n.yaml", "batch=x"], 2, "'batch=x' is of invalid type str"),
        (["predict", "model=yolov8n.yaml", "conf=3"], 2, "'conf=3' is an invalid value"),
        (["val", "model=yolov8n.yaml", "guard=fast"], 2, "guard='fast' is not a policy"),
        (["predict", "model=yolov8n.yaml", "faults=/nowhere/profile.yaml"], 2, "/nowhere/profile.yaml"),
        (
            ["predict", "model=yolov8n.yaml", "source=/nowhere/images", "guard=bypass"],
            2,
            "/nowhere/images does not exist",
        ),
    ],
)
def test_cli_bad_input_gives_one_line_and_the_exit_code(argv, code, message, capsys):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err and message in err[-1] and err[-1].startswith(f"yolo-rdna1 {argv[0]}: ")
    assert "Traceback" not in "\n".join(err) and not is_patched()


def test_tune_says_its_trainings_are_unguarded(yolo, monkeypatch, caplog, tmp_path):
    from ultralytics.engine import tuner

    from yolo_rdna1.callbacks.lifecycle import TUNE_WARNING

    started = []
    monkeypatch.setattr(tuner.Tuner, "__call__", lambda self, *args, **kwargs: started.append(kwargs.get("iterations")))
    yolo.tune(
        data="coco8.yaml", iterations=1, project=str(tmp_path)
    )  # the Tuner's 'yolo train' processes are stubbed out
    assert started == [1] and TUNE_WARNING in caplog.text
