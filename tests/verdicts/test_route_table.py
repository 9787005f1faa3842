"""The route table: stored verdicts -> routes; first-seen signatures judged in the background."""

import threading

import pytest
import torch
import torch.nn as nn

from yolo_rdna1.guard import guarded
from yolo_rdna1.verdicts.store import Verdict
from yolo_rdna1.verdicts.table import VerdictRouteTable


class GatedProber:
    """A prober whose verdicts the test releases: ``ok`` except for the 3x3 bwd_weight (``hang``)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[list[str]] = []

    def __call__(self, sigs):
        self.calls.append([s.key() for s in sigs])
        assert self.release.wait(20), "test never released the prober"
        return [
            Verdict("dev", "default", s.key(), "hang" if s.kernel == (3, 3) and s.direction == "bwd_weight" else "ok")
            for s in sigs
        ]


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))


def routes(g):
    return {r["signature"].split(":")[2]: r["routes"] for r in g.per_signature()}


def test_a_first_seen_signature_takes_the_bypass_without_waiting_then_its_verdict_routes_it():
    prober = GatedProber()
    table = VerdictRouteTable({}, unknown="probe", prober=prober, prefer_faster=False)
    model, x = net(), torch.randn(2, 3, 8, 8, requires_grad=True)
    try:
        with guarded(policy="auto", faults=False, route_table=table) as g:
            model(x).sum().backward()  # returns although the prober is still blocked
            assert all(set(r.values()) == {"bypass"} for r in routes(g).values())
            assert g.refresh() == 0  # nothing arrived yet
            prober.release.set()
            for _ in range(200):
                if table.generation:
                    break
                threading.Event().wait(0.05)
            assert table.pending() == 0 and g.refresh() == 5
            assert routes(g)["k1x1"] == {"fwd": "vendor", "bwd_data": "vendor", "bwd_weight": "vendor"}
            assert routes(g)["k3x3"] == {"fwd": "vendor", "bwd_data": "vendor", "bwd_weight": "bypass"}
            ref = [p.grad for p in model.parameters()]
            model.zero_grad()
            model(x).sum().backward()  # the refreshed routes compute the same gradients
            for a, p in zip(ref, model.parameters()):
                torch.testing.assert_close(p.grad, a)
    finally:
        table.close()
    # each signature-direction was queued once, in one or two probe calls
    keys = [k for call in prober.calls for k in call]
    assert len(keys) == len(set(keys)) == 6


def test_known_verdicts_route_at_once_and_nothing_is_probed():
    keys = {}
    with guarded(policy="bypass", faults=False) as g:
        net()(torch.randn(1, 3, 8, 8, requires_grad=True)).sum().backward()
        for r in g.routes():
            for d in ("fwd", "bwd_data", "bwd_weight"):
                k = r.sig.with_direction(d).key()
                keys[k] = Verdict("dev", "default", k, "abort" if d == "fwd" and r.sig.kernel == (1, 1) else "ok")

    def never(sigs):
        raise AssertionError("a known signature was probed")

    table = VerdictRouteTable(keys, unknown="probe", prober=never, prefer_faster=False)
    with guarded(policy="auto", faults=False, route_table=table) as g:
        net()(torch.randn(1, 3, 8, 8, requires_grad=True)).sum().backward()
    assert routes(g)["k1x1"]["fwd"] == "bypass" and routes(g)["k3x3"]["fwd"] == "vendor"
    assert table.unknown_seen == [] and table.pending() == 0
    table.close()


@pytest.mark.parametrize("unknown,expected", [("bypass", "bypass"), ("vendor", "vendor")])
def test_unknown_bypass_and_vendor_never_probe(unknown, expected):
    table = VerdictRouteTable({}, unknown=unknown)
    with guarded(policy="auto", faults=False, route_table=table) as g:
        net()(torch.randn(1, 3, 8, 8)).sum()
    assert {d for r in routes(g).values() for d in r.values()} == {expected}
    assert len(table.unknown_seen) == 6 and table.pending() == 0


def test_a_failing_background_probe_leaves_the_signature_on_the_bypass(caplog):
    done = threading.Event()

    def broken(sigs):
        done.set()
        raise RuntimeError("probe child could not start")

    table = VerdictRouteTable({}, unknown="probe", prober=broken)
    with guarded(policy="auto", faults=False, route_table=table) as g:
        nn.Conv2d(3, 4, 1)(torch.randn(1, 3, 4, 4))
        assert done.wait(10)
        table.close()
        assert g.refresh() == 0
    assert set(routes(g)["k1x1"].values()) == {"bypass"}
    assert "stay on the bypass" in caplog.text
