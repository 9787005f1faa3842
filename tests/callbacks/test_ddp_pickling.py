"""What Ultralytics' DDP launch does to the callbacks, checked without two GPUs."""

import subprocess

import cloudpickle


def test_callbacks_pickle_by_reference_and_install_the_guard_on_a_rank_above_0(tmp_path, run_child_file):
    from ultralytics import YOLO

    import yolo_rdna1

    model = yolo_rdna1.add_callbacks(YOLO("yolov8n.yaml"), guard="bypass", telemetry=0, cache=str(tmp_path / "cache"))
    blob = cloudpickle.dumps({"callbacks": model.callbacks})  # what utils/dist.py writes for each rank
    assert b"yolo_rdna1.callbacks.rdna1" in blob, "our callbacks must travel by reference"
    state = tmp_path / "ddp_state.pkl"
    state.write_bytes(blob)
    r = run_child_file("ddp_rank_callbacks", state, tmp_path / "run", env={"RANK": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "GUARD bypass bypass ['model.0']" in r.stdout
    assert (tmp_path / "run" / "rdna1_options.json").exists() is False, "only rank 0 writes the sidecar"


def test_per_rank_counts_are_summed_so_the_csv_row_describes_the_whole_job(tmp_path, child_command):
    """Two gloo ranks on the CPU: rank 0's results.csv row must count rank 1's bypassed convs."""
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [
        subprocess.Popen(
            child_command("ddp_gloo_rank", r, init, tmp_path),
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
