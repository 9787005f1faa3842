"""Every conv of an Ultralytics model goes through the guard: modules, fuse(), EMA, checkpoints."""

import pytest
import torch
import torch.nn as nn
import yaml

from yolo_rdna1.guard import guarded


def conv_modules(model: nn.Module) -> set[int]:
    return {id(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}


def yolov8n():
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", nc=4, verbose=False)


def test_every_conv_of_yolov8n_is_routed_also_after_fuse():
    model = yolov8n().eval()
    x = torch.rand(1, 3, 64, 64)
    with guarded(policy="vendor", faults=False) as g:
        ref = model(x)[0]
        assert len(conv_modules(model)) == 64  # 63 in the network + the frozen DFL conv
        assert {id(m) for m in g.seen_modules()} == conv_modules(model)
    model.fuse(verbose=False)
    with guarded(policy="bypass", faults=False) as g:
        out = model(x)[0]
        assert {id(m) for m in g.seen_modules()} == conv_modules(model)
        assert g.totals()["bypassed"] == 64
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


def test_ema_copy_is_routed_and_runs_its_own_weights():
    from ultralytics.utils.torch_utils import ModelEMA

    model = yolov8n()
    with guarded(policy="bypass", faults=False) as g:
        ema = ModelEMA(model)
        ema.ema(torch.rand(1, 3, 32, 32))
        assert conv_modules(ema.ema) <= {id(m) for m in g.seen_modules()}
        assert not conv_modules(ema.ema) & conv_modules(model)


@pytest.mark.parametrize(
    "build",
    [
        "Conv(8, 16, 3, 2)",
        "DWConv(8, 8, 3)",
        "Conv2(8, 16, 3)",
        "RepConv(8, 16, 3)",
        "Focus(8, 16, 3)",
        "GhostConv(8, 16, 3)",
        "LightConv(8, 16, 3)",
        "ConvTranspose(8, 16, 2, 2)",
        "DWConvTranspose2d(8, 8, 2, 2)",
        "CBAM(8)",
    ],
)
def test_ultralytics_conv_modules_match_torch_forward_backward_and_fused(build):
    from ultralytics.nn.modules import conv as U  # noqa: F401 - names used by eval

    torch.manual_seed(0)
    module = eval(f"U.{build}").train()
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    ref = module(x)
    ref_g = torch.autograd.grad(ref.sum(), x)[0]
    with guarded(policy="bypass", faults=False) as g:
        out = module(x)
        got_g = torch.autograd.grad(out.sum(), x)[0]
        assert {id(m) for m in g.seen_modules()} == conv_modules(module)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_g, ref_g, rtol=1e-4, atol=1e-4)
    # the inference paths: fused convs (Conv2/RepConv make new nn.Conv2d) and forward_fuse
    module.eval()
    for name in ("fuse_convs",):
        if hasattr(module, name):
            getattr(module, name)()
    fwd = getattr(module, "forward_fuse", module)
    with torch.no_grad():
        ref = fwd(x)
        with guarded(policy="bypass", faults=False) as g:
            out = fwd(x)
            assert g.totals()["bypassed"] >= 1
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_short_training_survives_a_vendor_error_and_its_checkpoint_loads_without_the_plugin(
    synthetic_data, tmp_path, run_child_file
):
    from ultralytics import YOLO

    prof = tmp_path / "err.yaml"
    prof.write_text(
        yaml.safe_dump({"name": "err", "rules": [{"match": {"kernel": 3, "stride": 2}, "effect": "error"}]})
    )
    with guarded(policy="auto", faults=str(prof)) as g:
        model = YOLO("yolov8n.yaml")
        model.train(
            data=str(synthetic_data),
            epochs=1,
            imgsz=64,
            batch=4,
            device="cpu",
            workers=0,
            project=str(tmp_path),
            name="run",
            plots=False,
            amp=False,
            verbose=False,
        )
        totals = g.totals()
        routes = g.per_signature()
    assert totals["fallbacks"] >= 1 and totals["bypassed"] > 0
    assert all(r["routes"]["fwd"] == "bypass" for r in routes if ":k3x3:s2x2:" in r["signature"])
    assert all(r["routes"]["fwd"] == "vendor" for r in routes if ":k3x3:s1x1:" in r["signature"])
    last = tmp_path / "run" / "weights" / "last.pt"
    assert last.is_file()
    r = run_child_file("load_without_plugin", last)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "loaded (1, 8, 84) []" in r.stdout
