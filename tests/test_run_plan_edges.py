"""RoutingPlan at its edges: the environment it leaves behind, the sizes it discovers at, and the
crash verdicts a store that cannot write must not lose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from yolo_rdna1.faults import ENV_VAR as FAULTS_ENV
from yolo_rdna1.options import PluginOptions
from yolo_rdna1.run import GuardedRun, RoutingPlan

CPU = torch.device("cpu")


def options(cache: Path, **kw) -> PluginOptions:
    return PluginOptions(telemetry=0, thermal=False, stall_timeout=0, cache=str(cache), **kw)


# -- 1: the environment -----------------------------------------------------------------------------
def test_a_finished_run_leaves_os_environ_as_it_found_it(tmp_path, monkeypatch):
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    monkeypatch.setenv("MIOPEN_DEBUG_CONV_GEMM", "1")  # set before: must come back as it was
    monkeypatch.delenv("MIOPEN_DEBUG_CONV_FFT", raising=False)  # absent before: must be removed again
    before = dict(os.environ)
    run = GuardedRun(options(tmp_path / "cache", faults="gfx1010", env_profile="direct_only"), tmp_path / "a", CPU)
    run.start(None)
    # while the run is open, its children (probes, DDP ranks) see the same settings
    assert os.environ[FAULTS_ENV] == "gfx1010"
    assert os.environ["MIOPEN_DEBUG_CONV_GEMM"] == "0" and os.environ["MIOPEN_DEBUG_CONV_FFT"] == "0"
    run.finish()
    assert dict(os.environ) == before
    # so a later call without faults in the same process is a real run, under its own device key
    later = RoutingPlan(options(tmp_path / "cache"), tmp_path / "b", CPU).make()
    try:
        assert later.profile is None and later.device_key != run.device_key
    finally:
        later.close()


def test_a_plan_that_fails_while_being_made_puts_the_environment_back(tmp_path, monkeypatch):
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    before = dict(os.environ)

    def broken(device):
        raise RuntimeError("no device")

    monkeypatch.setattr("yolo_rdna1.device.describe_device", broken)
    with pytest.raises(RuntimeError, match="no device"):
        RoutingPlan(options(tmp_path / "cache", faults="gfx1010"), tmp_path / "a", CPU).make()
    assert dict(os.environ) == before
