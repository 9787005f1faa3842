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
                                        args=types.SimpleNamespace(resume=False, imgsz=32, batch=2, data=None,
                                                                   model="yolov8n.yaml", amp=False),
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


RANK_SCRIPT = """
import sys, torch, torch.distributed as dist, torch.nn as nn
from pathlib import Path
from yolo_rdna1.guard import guarded
from yolo_rdna1.options import PluginOptions
from yolo_rdna1.run import GuardedRun

rank, init = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
run = GuardedRun(PluginOptions(telemetry=0, thermal=False), Path(sys.argv[3]), torch.device("cpu"), rank=rank)
# rank 0: 1 call on the vendor library; rank 1: 3 calls on the bypass
with guarded(policy="bypass" if rank else "vendor", faults=False) as g:
    run.guard = g
    conv = nn.Conv2d(3, 4, 1)  # kept alive: the guard counts per live module
    for _ in range(3 if rank else 1):
        conv(torch.randn(1, 3, 4, 4))
    run.train_epoch_end()  # every rank, as Ultralytics' on_train_epoch_end
    if rank == 0:
        m = run.epoch_metrics()  # rank 0 alone (save_metrics), after validating
        print("RATE", m["rdna1/bypass_rate"], run.counters.epochs[-1]["calls"], run.counters.epochs[-1]["bypassed"])
dist.destroy_process_group()
"""


def test_per_rank_counts_are_summed_so_the_csv_row_describes_the_whole_job(tmp_path):
    """Two gloo ranks on the CPU: rank 0's results.csv row must count rank 1's bypassed convs."""
    import subprocess
    import sys

    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), init, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    rate, calls, bypassed = outs[0][0].split("RATE ")[1].split()
    assert (int(calls), int(bypassed)) == (4, 3) and float(rate) == 0.75
