"""The router: policies, in-process fallback, counters, and what the patch leaves behind."""

import copy
import logging
import pickle

import pytest
import torch
import torch.nn as nn
import yaml

import yolo_rdna1
from yolo_rdna1.guard import ConvGuard, GuardConfigError, current, enable, guarded, is_patched
from yolo_rdna1.guard.router import ORIGINAL_CONV2D_FORWARD, ORIGINAL_CONV_TRANSPOSE2D_FORWARD


def write_profile(tmp_path, *rules):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"name": "t", "rules": list(rules)}))
    return str(f)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ConvTranspose2d(8, 4, 2, stride=2)
    )


def test_unknown_policy_names_the_choices():
    with pytest.raises(
        GuardConfigError, match="unknown guard policy 'fast'; valid policies: off, vendor, bypass, auto"
    ):
        ConvGuard(policy="fast")


def test_bad_fault_profile_fails_when_the_guard_is_configured(tmp_path):
    bad = write_profile(tmp_path, {"match": {}, "effect": "melt"})
    with pytest.raises(ValueError, match="unknown effect 'melt'"):
        ConvGuard(faults=bad)


def test_policies_route_as_named():
    net, x = small_net(), torch.randn(2, 3, 8, 8)
    with guarded(policy="vendor", faults=False) as g:
        net(x)
        assert g.totals() == {"calls": 3, "bypassed": 0, "fallbacks": 0}
    with guarded(policy="bypass", faults=False) as g:
        net(x)
        assert g.totals() == {"calls": 3, "bypassed": 3, "fallbacks": 0}
    with guarded(policy="auto", faults=False) as g:  # CPU, no profile: count only
        net(x)
        assert g.totals()["bypassed"] == 0 and all(r.plain for r in g.routes())
    with guarded(policy="off") as g:
        assert not is_patched() and current() is None
        net(x)
        assert g.totals()["calls"] == 0


def test_unpatch_restores_torch_exactly_and_scopes_nest():
    assert nn.Conv2d._conv_forward is ORIGINAL_CONV2D_FORWARD
    outer = enable(policy="vendor", faults=False)
    with guarded(policy="bypass", faults=False) as inner:
        assert current() is inner
    assert current() is outer and is_patched()
    yolo_rdna1.unpatch()
    assert nn.Conv2d._conv_forward is ORIGINAL_CONV2D_FORWARD
    assert nn.ConvTranspose2d.forward is ORIGINAL_CONV_TRANSPOSE2D_FORWARD
    assert "_conv_forward" not in nn.Conv2d(1, 1, 1).__dict__


def test_vendor_error_falls_back_once_and_warns_once(tmp_path, caplog):
    prof = write_profile(
        tmp_path, {"match": {"kernel": 3}, "direction": "fwd", "effect": "error", "message": "miopenStatusUnknownError"}
    )
    net, x = small_net(), torch.randn(2, 3, 8, 8)
    ref = net(x)
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"), guarded(policy="auto", faults=prof) as g:
        out1, out2 = net(x), net(x)
    torch.testing.assert_close(out1, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out2, ref, rtol=1e-4, atol=1e-5)
    rule = g.profile.rules[0]
    assert rule.seen == 1, "after the fallback the bad signature must not reach the vendor route again"
    warnings = [r for r in caplog.records if "vendor conv failed" in r.getMessage()]
    assert (
        len(warnings) == 1
        and "miopenStatusUnknownError" in warnings[0].getMessage()
        and "conv 3->8 k3x3" in warnings[0].getMessage()
    )
    bad = [r for r in g.per_signature() if r["routes"]["fwd"] == "bypass"]
    assert len(bad) == 1 and bad[0]["fallbacks"] == 1 and bad[0]["bypassed"] == 1


def test_backward_vendor_error_falls_back(tmp_path):
    prof = write_profile(tmp_path, {"match": {"kernel": 1}, "direction": "bwd_data", "effect": "error"})
    net, x = small_net(), torch.randn(2, 3, 8, 8, requires_grad=True)
    ref = torch.autograd.grad(net(x).sum(), [x, *net.parameters()])
    with guarded(policy="auto", faults=prof) as g:
        got = torch.autograd.grad(net(x).sum(), [x, *net.parameters()])
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    routes = {r["signature"].split(":")[2]: r["routes"] for r in g.per_signature()}
    assert routes["k1x1"] == {"fwd": "vendor", "bwd_data": "bypass", "bwd_weight": "vendor"}


def test_vendor_policy_does_not_fall_back(tmp_path):
    prof = write_profile(tmp_path, {"match": {"kernel": 3}, "effect": "error"})
    with guarded(policy="vendor", faults=prof), pytest.raises(RuntimeError, match="miopenStatusUnknownError"):
        small_net()(torch.randn(1, 3, 8, 8))


def test_non_vendor_errors_propagate_unchanged():
    conv = nn.Conv2d(3, 8, 3)
    with guarded(policy="auto", faults=False, check_vendor=True) as g:
        with pytest.raises(RuntimeError, match="expected input.*to have 3 channels"):
            conv(torch.randn(1, 4, 8, 8))
        assert g.totals()["fallbacks"] == 0


def test_route_table_decides_per_direction():
    table = lambda sig: "bypass" if sig.direction == "bwd_weight" and sig.kernel == (1, 1) else None  # noqa: E731
    net, x = small_net(), torch.randn(2, 3, 8, 8, requires_grad=True)
    with guarded(policy="auto", faults=False, route_table=table) as g:
        net(x).sum().backward()
    routes = {r["signature"].split(":")[2]: r["routes"] for r in g.per_signature()}
    assert routes["k1x1"]["bwd_weight"] == "bypass" and routes["k1x1"]["fwd"] == "vendor"
    assert set(routes["k3x3"].values()) == {"vendor"}


def test_counters_per_module_and_signature_and_the_counting_switch():
    net = small_net()
    with guarded(policy="bypass", faults=False) as g:
        yolo_rdna1.patch_model(net)
        g.counting = False
        net(torch.randn(1, 3, 8, 8))
        assert g.totals()["calls"] == 0
        g.counting = True
        for _ in range(3):
            net(torch.randn(2, 3, 8, 8))
        net(torch.randn(2, 3, 16, 16))
        assert g.totals() == {"calls": 12, "bypassed": 12, "fallbacks": 0}
        assert g.per_module() == {
            "0": {"calls": 4, "bypassed": 4},
            "2": {"calls": 4, "bypassed": 4},
            "3": {"calls": 4, "bypassed": 4},
        }
        by_sig = {r["signature"]: r["calls"] for r in g.per_signature()}
        # batch 1 (uncounted), batch 2 at 8 px (3 calls each), batch 2 at 16 px (1 call each)
        assert sorted(by_sig.values()) == [0, 0, 0, 1, 1, 1, 3, 3, 3]
        g.reset_counts()
        assert g.totals()["calls"] == 0


def test_deepcopy_pickle_and_state_dict_are_untouched():
    net = small_net()
    x = torch.randn(1, 3, 8, 8)
    with guarded(policy="bypass", faults=False) as g:
        out = net(x)
        twin = copy.deepcopy(net)  # the EMA is made this way
        twin[0].weight.data.mul_(2)
        assert not torch.equal(twin(x), out), "the copy must run its own weights"
        blob = pickle.dumps(net)
        assert b"yolo_rdna1" not in blob
        assert len(g.seen_modules()) == 6
    assert torch.equal(pickle.loads(blob)(x), net(x))


@pytest.mark.skipif(
    not hasattr(torch, "compile"), reason=f"torch {torch.__version__} has no torch.compile (torch >= 2.0)"
)
def test_runs_under_torch_compile():
    net = small_net()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    ref = net(x)
    ref_g = torch.autograd.grad(ref.sum(), x)[0]
    with guarded(policy="bypass", faults=False):
        compiled = torch.compile(net, backend="aot_eager")
        out = compiled(x)
        got_g = torch.autograd.grad(out.sum(), x)[0]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_g, ref_g, rtol=1e-4, atol=1e-5)


def test_channels_last_signature_and_result():
    conv = nn.Conv2d(8, 8, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 10, 10).contiguous(memory_format=torch.channels_last)
    with guarded(policy="bypass", faults=False) as g:
        out = conv(x)
    torch.testing.assert_close(out, conv(x), rtol=1e-4, atol=1e-5)
    assert g.per_signature()[0]["signature"].split(":")[10] == "nhwc"


def _saved_shapes(fn):
    """Shapes of the tensors autograd saves while ``fn`` runs."""
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, shapes


@pytest.mark.parametrize("layout", ["nchw", "cl", "slice"])
def test_fully_bypassed_convs_run_planned_and_save_the_padded_input(layout):
    """Every direction on the bypass: the plan path saves the 3x3 conv's padded NHWC input
    (bwd_weight rebuilds its columns from it) and x itself for a 1x1; gradients stay exact."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1, bias=True), nn.Conv2d(8, 5, 1, bias=False)).double()
    x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
    if layout != "nchw":
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if layout == "slice":  # C2f hands its bottlenecks channel slices of a channels_last tensor
        x = torch.randn(2, 9, 7, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)[:, 2:8]
    x = x.requires_grad_()
    ref_out = net(x)
    ref = torch.autograd.grad(ref_out.square().sum(), [x, *net.parameters()])
    with guarded(policy="bypass", faults=False) as g:
        out, shapes = _saved_shapes(lambda: net(x))
        got = torch.autograd.grad(out.square().sum(), [x, *net.parameters()])
        assert all(r.planned for r in g.routes())
    assert (2, 9, 9, 6) in shapes and (2, 6, 7, 7) not in shapes  # padded NHWC input, not x
    assert (2, 8, 7, 7) in shapes  # the 1x1 conv keeps its input
    torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-9)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_a_weight_whose_layout_changes_gets_a_new_plan():
    conv = nn.Conv2d(4, 4, 3, padding=1).double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    with guarded(policy="bypass", faults=False):
        conv(x)
        conv.to(memory_format=torch.channels_last)  # same module, same input key, new weight strides
        out = conv(x)
        g = torch.autograd.grad(out.sum(), conv.weight)[0]
    torch.testing.assert_close(out, conv(x), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g, torch.autograd.grad(conv(x).sum(), conv.weight)[0], rtol=1e-9, atol=1e-9)


def test_partly_bypassed_routes_keep_the_per_direction_function(tmp_path):
    """bwd_weight alone on the bypass: RoutedConv (x saved as is), the forward on the vendor library."""
    conv = nn.Conv2d(4, 4, 3, padding=1).double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    table = lambda sig: "bypass" if sig.direction == "bwd_weight" else "vendor"  # noqa: E731
    with guarded(ConvGuard(policy="auto", faults=False, route_table=table)) as g:
        out, shapes = _saved_shapes(lambda: conv(x))
        gw = torch.autograd.grad(out.sum(), conv.weight)[0]
        (route,) = g.routes()
    assert not route.planned and route.directions["bwd_weight"] == "bypass"
    assert (1, 4, 6, 6) in shapes
    torch.testing.assert_close(gw, torch.autograd.grad(conv(x).sum(), conv.weight)[0], rtol=1e-9, atol=1e-9)


def test_planned_backward_from_a_padded_input_saved_in_16_byte_units(monkeypatch):
    """The saved padded input may be a complex128 view (16-byte copies); bwd_weight's columns
    are rebuilt from it in the conv's own dtype."""
    from yolo_rdna1.bypass import _common

    monkeypatch.setattr(_common, "WIDE_MIN_BYTES", 0)
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 4, 3, stride=2, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    ref = torch.autograd.grad(conv(x).square().sum(), [x, conv.weight, conv.bias])
    with guarded(policy="bypass", faults=False):
        out, shapes = _saved_shapes(lambda: conv(x))
        got = torch.autograd.grad(out.square().sum(), [x, conv.weight, conv.bias])
    assert (2, 11, 11, 2) in shapes  # 8 float32 channels = 2 complex128 units per pixel
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
