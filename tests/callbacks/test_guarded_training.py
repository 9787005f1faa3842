"""Guarded trainings end to end, each in a child process (a hang must never block the suite)."""

import csv
import json
import signal
import textwrap

import pytest
import yaml

from yolo_rdna1.options import OptionError


def train_code(data, project, cache, faults, name="run", **extra):
    kwargs = dict(
        data=str(data),
        model="yolov8n.yaml",
        guard="auto",
        faults=faults,
        cache=str(cache),
        epochs=1,
        imgsz=64,
        batch=4,
        device="cpu",
        workers=0,
        project=str(project),
        name=name,
        exist_ok=True,
        plots=False,
        verbose=False,
    )
    kwargs.update(extra)
    return textwrap.dedent(f"""
        import json, yolo_rdna1
        from yolo_rdna1.callbacks import last_run
        yolo_rdna1.train(**{kwargs!r})
        run = last_run()
        print("RESULT " + json.dumps({{"totals": run.final_totals, "routes": run.final_routes,
                                       "attributed": run.attributed, "summary": run.probe_summary}}))
    """)


def result(stdout):
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_training_under_gfx1010_with_auto_finishes_without_hang_abort_or_nan(
    synthetic_data, tmp_path, run_child, shared_cache
):
    # imgsz 192: C2f's 3x3 convs see 48 px maps (hang), the stem errors, wide 1x1 weight grads abort
    r = run_child(train_code(synthetic_data, tmp_path, shared_cache, "gfx1010", imgsz=192, batch=2), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = result(r.stdout)
    assert out["totals"]["bypassed"] > 0 and out["totals"]["fallbacks"] == 0
    assert "hang" in out["summary"] and "abort" in out["summary"]
    hung = [x for x in out["routes"] if ":k3x3:s1x1:" in x["signature"] and ":n2:48x48:" in x["signature"]]
    assert hung and all(x["routes"]["fwd"] == "bypass" for x in hung)
    rows = list(csv.DictReader(open(tmp_path / "run" / "results.csv")))
    assert rows and all(float(v) == float(v) for row in rows for k, v in row.items() if "loss" in k), "NaN loss"


@pytest.mark.slow
def test_a_fault_the_probe_cannot_see_is_attributed_and_bypassed_after_restart(synthetic_data, tmp_path, run_child):
    prof = tmp_path / "late.yaml"
    # one signature only: "after" counts the calls of every signature the rule matches
    rule = {
        "match": {"kernel": 1, "in_channels": 64, "out_channels": 64, "height": 2},
        "direction": "bwd_weight",
        "effect": "abort",
        "after": 3,
    }
    prof.write_text(yaml.safe_dump({"name": "late-abort", "rules": [rule]}))
    # prefer_faster=False: the CPU timing must not move the signature to the bypass before it faults
    code = train_code(synthetic_data, tmp_path, tmp_path / "cache", str(prof), epochs=2, prefer_faster=False)
    first = run_child(code, timeout=600)
    assert first.returncode == -signal.SIGABRT, first.stderr[-2000:]
    second = run_child(code, timeout=600)  # a simple restart of the same run
    assert second.returncode == 0, second.stderr[-3000:]
    out = result(second.stdout)
    assert len(out["attributed"]) == 1
    key, cause = out["attributed"][0]
    assert cause == "abort" and ":c64>64:k1x1:" in key and key.endswith(":bwd_weight")
    route = [x for x in out["routes"] if x["signature"] == key.rsplit(":", 1)[0] + ":fwd"][0]
    assert route["routes"] == {"fwd": "vendor", "bwd_data": "vendor", "bwd_weight": "bypass"}


def test_unknown_options_fail_before_training(synthetic_data):
    import yolo_rdna1

    with pytest.raises(OptionError, match=r"unknown yolo_rdna1 option\(s\) 'fualts' \(did you mean 'faults'\?\)"):
        yolo_rdna1.add_callbacks(__import__("ultralytics").YOLO("yolov8n.yaml"), fualts="gfx1010")
    with pytest.raises(OptionError, match="'epoch' is not a valid YOLO argument"):
        yolo_rdna1.train(data=str(synthetic_data), epoch=3)
    with pytest.raises(OptionError, match="guard='fast' is not a policy"):
        yolo_rdna1.train(data=str(synthetic_data), guard="fast")


def test_add_callbacks_twice_does_not_double():
    from ultralytics import YOLO

    import yolo_rdna1

    model = YOLO("yolov8n.yaml")
    before = {k: len(v) for k, v in model.callbacks.items()}
    yolo_rdna1.add_callbacks(model, guard="bypass")
    once = {k: len(v) for k, v in model.callbacks.items()}
    assert yolo_rdna1.add_callbacks(model, guard="auto") is model
    assert {k: len(v) for k, v in model.callbacks.items()} == once
    assert once["on_pretrain_routine_start"] == before["on_pretrain_routine_start"] + 1
    assert model.callbacks["on_pretrain_routine_start"][-1].keywords["options"].guard == "auto"


def test_an_unwritable_results_folder_fails_before_training(synthetic_data, tmp_path):
    import yolo_rdna1

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OptionError, match=r"cannot write training results under .*a-file.*pass project="):
        yolo_rdna1.train(data=str(synthetic_data), project=str(blocker / "runs"), epochs=1)
