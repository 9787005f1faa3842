"""Every Ultralytics task trains under the plugin: detect (YOLO11n), segment, pose, OBB, classify.

Each ran one guarded epoch under ``gfx1010`` (the ``task_runs`` session fixture): results.csv
carries the rdna1 columns, the report exists, and every conv signature the training ran (train,
per-epoch validation and the final evaluation of best.pt) was judged by the probe before
training, so none met the run without a verdict.
"""

import json

import pytest

from yolo_rdna1.probe.discovery import autobackend_channels_last
from yolo_rdna1.verdicts.store import VerdictStore

TASKS = ["detect", "segment", "pose", "obb", "classify"]


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_task_trains_guarded_with_columns_report_and_every_signature_probed(
    task, task_runs, shared_cache, results_rows
):
    run = task_runs[task]
    rows = results_rows(run["dir"])
    assert len(rows) == 1
    report = json.loads((run["dir"] / "rdna1_report.json").read_text())
    assert report["calls"] > 0 and report["bypassed"] > 0 and report["fallbacks"] == 0
    epoch = report["epochs"][0]
    assert float(rows[0]["rdna1/bypass_rate"]) == pytest.approx(epoch["bypassed"] / epoch["calls"], rel=1e-4)
    # gfx1010's stem error, found by the probe: the stem's forward takes the bypass
    stems = [s for s in report["signatures"] if ":c3>" in s["signature"] and s["calls"]]
    assert stems and all(s["routes"]["fwd"] == "bypass" for s in stems)
    verdicts = VerdictStore(shared_cache / "verdicts.sqlite").table(report["device"], report["env_profile"])
    ran = [s["signature"] for s in report["signatures"] if s["calls"]]
    assert not [k for k in ran if k not in verdicts], f"{task}: signatures the probe never saw ran"
    batches = {int(k.split(":n", 1)[1].split(":")[0]) for k in ran}
    assert batches == ({4} if task == "obb" else {4, 8}), batches  # OBB validates at the train batch, the rest at 2x
    if autobackend_channels_last("cpu"):  # 8.4 on an x86 CPU: the final evaluation of best.pt runs channels_last
        assert any(":nhwc:" in k for k in ran) and any(":nchw:" in k for k in ran)


@pytest.mark.slow
def test_segment_mask_head_transposed_conv_runs_routed_in_all_directions(task_runs, shared_cache):
    report = json.loads((task_runs["segment"]["dir"] / "rdna1_report.json").read_text())
    transposed = [s for s in report["signatures"] if ":t0x0:" in s["signature"] and s["calls"]]
    assert transposed and {tuple(sorted(s["routes"])) for s in transposed} == {("bwd_data", "bwd_weight", "fwd")}
    verdicts = VerdictStore(shared_cache / "verdicts.sqlite").table(report["device"], report["env_profile"])
    train = [s["signature"] for s in transposed if ":n4:" in s["signature"] and ":nchw:" in s["signature"]]
    assert train and all(k.replace(":fwd", f":{d}") in verdicts for k in train for d in ("bwd_data", "bwd_weight"))


def test_transposed_convs_follow_the_fault_formats_transposed_key(tmp_path):
    import torch
    import torch.nn as nn
    import yaml

    from yolo_rdna1.guard import guarded

    profile = tmp_path / "transposed.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "rules": [
                    {
                        "match": {"transposed": True},
                        "direction": "bwd_weight",
                        "effect": "error",
                    },  # seg's Proto upsampling
                    {"match": {"transposed": False, "kernel": 2}, "direction": "fwd", "effect": "error"},
                ],
            }
        )
    )
    torch.manual_seed(0)
    up, conv = nn.ConvTranspose2d(8, 4, 2, 2), nn.Conv2d(4, 4, 2)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)

    def step():
        for p in (x, *up.parameters(), *conv.parameters()):
            p.grad = None
        conv(up(x)).square().sum().backward()
        return [t.grad.clone() for t in (x, up.weight, up.bias, conv.weight)]

    expected = step()
    with guarded(policy="auto", faults=str(profile)) as guard:
        got = step()
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, expected))
    routes = {r["signature"].split(":")[1]: r for r in guard.per_signature()}
    assert routes["c8>4"]["routes"] == {
        "fwd": "vendor",
        "bwd_data": "vendor",
        "bwd_weight": "bypass",
    }  # its own directions
    assert routes["c4>4"]["routes"]["fwd"] == "bypass" and routes["c4>4"]["routes"]["bwd_weight"] == "vendor"
    with guarded(policy="vendor", faults=str(profile)), pytest.raises(RuntimeError, match="miopenStatusUnknownError"):
        up(x).sum().backward()
