"""What Ultralytics' DDP launch does to the callbacks, checked without two GPUs."""

import base64
import textwrap

import cloudpickle


def test_callbacks_pickle_by_reference_and_install_the_guard_on_a_rank_above_0(tmp_path, run_child):
    from ultralytics import YOLO

    import yolo_rdna1

    model = yolo_rdna1.add_callbacks(YOLO("yolov8n.yaml"), guard="bypass", telemetry=0, cache=str(tmp_path / "cache"))
    blob = cloudpickle.dumps({"callbacks": model.callbacks})  # what utils/dist.py writes for each rank
    assert b"yolo_rdna1.callbacks.rdna1" in blob, "our callbacks must travel by reference"
    payload = base64.b64encode(blob).decode()
    code = textwrap.dedent(f"""
        import base64, types, cloudpickle, torch
        import torch.nn as nn
        cbs = cloudpickle.loads(base64.b64decode({payload!r}))["callbacks"]
        trainer = types.SimpleNamespace(save_dir={str(tmp_path / "run")!r}, device=torch.device("cpu"),
                                        args=types.SimpleNamespace(resume=False, imgsz=32, batch=2, data=None, model="yolov8n.yaml", amp=False),
                                        model=nn.Sequential(nn.Conv2d(3, 4, 3)), ema=None, metrics={{}})
        trainer.save_metrics = lambda metrics: None
        for fn in cbs["on_pretrain_routine_end"]:  # rank 1 never sees on_pretrain_routine_start
            fn(trainer)
        from yolo_rdna1.guard import current
        g = current()
        trainer.model(torch.zeros(1, 3, 8, 8))
        print("GUARD", g.policy, g.per_signature()[0]["routes"]["fwd"], sorted(g._names.values()))
    """)
    r = run_child(code, env={"RANK": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "GUARD bypass bypass ['model.0']" in r.stdout
    assert (tmp_path / "run" / "rdna1_options.json").exists() is False, "only rank 0 writes the sidecar"
