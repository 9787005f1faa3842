"""RoutingPlan at its edges: the environment it leaves behind, the sizes it discovers at, and the
crash verdicts a store that cannot write must not lose."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from yolo_rdna1.faults import ENV_VAR as FAULTS_ENV
from yolo_rdna1.options import PluginOptions
from yolo_rdna1.run import GuardedRun, RoutingPlan, breadcrumb_stem
from yolo_rdna1.run import plan as plan_module
from yolo_rdna1.run.plan import discovery_sizes
from yolo_rdna1.runfiles import UNSTORED_SUFFIX
from yolo_rdna1.signature import ConvSignature
from yolo_rdna1.verdicts import VerdictStore

CPU = torch.device("cpu")


def options(cache: Path, **kw) -> PluginOptions:
    return PluginOptions(telemetry=0, thermal=False, stall_timeout=0, cache=str(cache), **kw)


def key(i: int) -> str:
    return ConvSignature(16, 32 + i, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4, direction="fwd").key()


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


# -- 2: the sizes discovery runs at -------------------------------------------------------------------
@pytest.mark.parametrize("batch", [-1, 0.7, 0, 1.5, "16", None, True])
def test_a_batch_that_is_not_a_known_positive_integer_discovers_nothing_ahead(batch):
    assert discovery_sizes(SimpleNamespace(batch=batch, imgsz=640)) is None


@pytest.mark.parametrize(
    "imgsz,expected",
    [(640, 640), ([640, 480], 640), ((320, 416), 416), ("512", 512), ("[320, 640]", 640), (640.0, 640)],
)
def test_imgsz_lists_train_at_their_largest_size_as_ultralytics_does(imgsz, expected):
    assert discovery_sizes(SimpleNamespace(batch=16, imgsz=imgsz)) == (expected, 16)


def test_under_ddp_each_process_discovers_at_its_share_of_the_batch():
    assert discovery_sizes(SimpleNamespace(batch=16, imgsz=640), world_size=2) == (640, 8)
    assert discovery_sizes(SimpleNamespace(batch=16.0, imgsz=640), world_size=4) == (640, 4)


def _plan_for_discovery(tmp_path, rank=-1):
    plan = RoutingPlan(options(tmp_path / "cache"), tmp_path / "a", CPU, rank=rank)
    plan.info = SimpleNamespace(backend="cpu")
    return plan


def test_autobatch_skips_discovery_with_one_log_line(tmp_path, monkeypatch, caplog):
    def never(*a, **kw):
        raise AssertionError("discovery must not run for an AutoBatch batch")

    monkeypatch.setattr("yolo_rdna1.probe.discovery.discover", never)
    args = SimpleNamespace(batch=0.7, imgsz=640, model="yolov8n.yaml", data=None, task="detect")
    with caplog.at_level(logging.INFO, logger="yolo_rdna1"):
        assert _plan_for_discovery(tmp_path)._discover(args) is None
    lines = [r.getMessage() for r in caplog.records if "AutoBatch" in r.getMessage()]
    assert len(lines) == 1 and "judged as it first appears" in lines[0]


def test_a_ddp_rank_discovers_its_batch_at_the_largest_imgsz(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("yolo_rdna1.probe.discovery.discover", lambda model, **kw: seen.update(kw) or [])
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = SimpleNamespace(batch=16, imgsz=[640, 640], model="yolov8n.yaml", data=None, task="detect")
    assert _plan_for_discovery(tmp_path, rank=1)._discover(args) == []
    assert (seen["imgsz"], seen["batch"]) == (640, 8)


# -- 3: crash verdicts a store cannot write ------------------------------------------------------------
def dead_trail(stem: Path, *keys: str) -> None:
    """What a process that died with ``keys[-1]`` in flight leaves behind."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(str(stem) + ".log").write_text("".join(k + "\n" for k in keys))
    Path(str(stem) + ".slot").write_bytes(len(keys).to_bytes(8, "little"))


def unwritable_cache(tmp_path: Path, how: str, monkeypatch) -> Path:
    """A cache folder whose store keeps new verdicts in memory only."""
    if how == "memory":  # a folder under a file cannot be made: the store falls back to memory
        (tmp_path / "blocker").write_text("x")
        return tmp_path / "blocker" / "cache"
    cache = tmp_path / "cache"
    if how == "newer schema":  # read, never written
        VerdictStore(cache / "verdicts.sqlite").close()
        conn = sqlite3.connect(cache / "verdicts.sqlite")
        conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
        conn.commit()
        conn.close()
        return cache

    class WriteFails(VerdictStore):  # opens fine, every write fails (as a disk that filled up)
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self._conn.execute("PRAGMA query_only=1")

    monkeypatch.setattr(plan_module, "VerdictStore", WriteFails)
    return cache


@pytest.mark.parametrize("how", ["memory", "newer schema", "writes fail"])
def test_a_crash_the_store_cannot_keep_is_attributed_again_at_the_next_start(tmp_path, monkeypatch, caplog, how):
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    run_dir = tmp_path / "run"
    stem = breadcrumb_stem(run_dir)
    opts = options(unwritable_cache(tmp_path, how, monkeypatch), faults="gfx1010")
    dead_trail(stem, key(0))  # start 1 follows a death in A
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        first = RoutingPlan(opts, run_dir, CPU).make()
    assert first.attributed == [(key(0), "abort")]
    assert sum("cannot keep 1 crash verdict(s) on disk" in r.getMessage() for r in caplog.records) == 1
    second = None
    try:
        first.crumb.enter(first.crumb.register(key(1)))  # start 1 dies in B
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
            second = RoutingPlan(opts, run_dir, CPU).make()
        assert second.attributed == [(key(1), "abort")]
        table = second.store.table(second.device_key, "default")
        assert {k: table[k].verdict for k in (key(0), key(1)) if k in table} == {key(0): "abort", key(1): "abort"}, (
            "start 2 must still bypass A, or the run crashes A, B, A, B"
        )
        assert sum("cannot keep 2 crash verdict(s) on disk" in r.getMessage() for r in caplog.records) == 1
    finally:
        for plan in (second, first):
            if plan is not None:
                plan.close()
    # a start whose store can write keeps both for good, and the run folder no longer holds them
    monkeypatch.setattr(plan_module, "VerdictStore", VerdictStore)
    good = tmp_path / "good"
    third = RoutingPlan(options(good, faults="gfx1010"), run_dir, CPU).make()
    third.close()
    stored = VerdictStore(good / "verdicts.sqlite").table(third.device_key, "default")
    assert stored[key(0)].verdict == stored[key(1)].verdict == "abort"
    assert not Path(str(stem) + UNSTORED_SUFFIX).exists()


def test_a_crash_a_writable_store_keeps_is_stored_once_and_not_kept_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(FAULTS_ENV, raising=False)
    run_dir = tmp_path / "run"
    stem = breadcrumb_stem(run_dir)
    dead_trail(stem, key(0))
    plan = RoutingPlan(options(tmp_path / "cache", faults="gfx1010"), run_dir, CPU).make()
    try:
        assert plan.store.durable and plan.attributed == [(key(0), "abort")]
        assert VerdictStore(tmp_path / "cache" / "verdicts.sqlite").get(plan.device_key, "default", key(0))
        assert not Path(str(stem) + UNSTORED_SUFFIX).exists()
    finally:
        plan.close()
