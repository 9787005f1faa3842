"""Mid-epoch checkpoint files: atomic writes, rotation, falling back from a corrupt one, bad input."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from yolo_rdna1.options import OptionError, PluginOptions
from yolo_rdna1.supervision import SupervisorError, supervise
from yolo_rdna1.supervision import checkpoint as ck


def fake_checkpoint(epoch: int, batch: int | None = None, scale: str = "n", names=None) -> dict:
    """A checkpoint with the keys a resume needs; ``batch=None`` is an end-of-epoch last.pt."""
    ema = torch.nn.Linear(2, 2)
    ema.yaml = {"yaml_file": f"yolov8{scale}.yaml", "scale": scale, "nc": 2}
    ema.names = names or {0: "person", 1: "vehicle"}
    ckpt = {
        "epoch": epoch,
        "ema": ema,
        "optimizer": {"state": {}, "param_groups": []},
        "updates": 7,
        "train_args": {"epochs": 3, "data": "thermal.yaml"},
    }
    if batch is not None:
        ckpt["epoch"] = max(epoch - 1, 0)
        ckpt[ck.RESUME_KEY] = {
            "epoch": epoch,
            "batch": batch,
            "batches": 4,
            "order": torch.arange(8),
            "rng": ck.rng_state(),
            "buffer": [],
            "tloss": None,
            "model": {},
            "names": ema.names,
            "train_images": 8,
        }
    return ckpt


def test_atomic_write_rotates_and_keeps_the_previous_checkpoint_until_the_new_one_is_complete(tmp_path):
    path, prev = tmp_path / ck.MID_NAME, tmp_path / ck.PREV_NAME
    ck.save_atomic({"n": 1}, path, prev=prev)
    ck.save_atomic({"n": 2}, path, prev=prev)
    assert torch.load(path)["n"] == 2 and torch.load(prev)["n"] == 1

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full half way")

    with pytest.raises(RuntimeError, match="half way"):
        ck.save_atomic({"n": 3, "x": Unpicklable()}, path, prev=prev)
    assert torch.load(path)["n"] == 2 and torch.load(prev)["n"] == 1, "a failed write touches neither file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [ck.PREV_NAME, ck.MID_NAME], "no temp file left behind"
    (tmp_path / f".{ck.MID_NAME}.999.tmp").write_bytes(b"partial")  # what a process killed mid-write leaves
    assert [p.name for p in ck.remove_stale(tmp_path)] == [f".{ck.MID_NAME}.999.tmp"]
    assert path.is_file() and prev.is_file()


@pytest.mark.parametrize("damage", ["truncated", "unpickleable", "wrong keys"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one_with_one_warning(tmp_path, caplog, damage):
    torch.save(fake_checkpoint(0), tmp_path / ck.LAST_NAME)  # end of epoch 1: position (epoch 2, batch 0)
    torch.save(fake_checkpoint(1, batch=2), tmp_path / ck.PREV_NAME)
    torch.save(fake_checkpoint(1, batch=3), tmp_path / ck.MID_NAME)
    newest = tmp_path / ck.MID_NAME
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "unpickleable":
        newest.write_bytes(b"\x80\x02garbage")  # not a pickle stream
    else:
        torch.save({"epoch": 0, "ema": None}, newest)
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        found = ck.newest(tmp_path)
    assert found.path.name == ck.PREV_NAME and found.position == ck.Position(1, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1 and "mid.pt" in warnings[0] and "resuming from mid.prev.pt (epoch 2, batch 2)" in warnings[0]
    )
    assert (tmp_path / "mid.pt.corrupt").is_file() and not newest.exists(), "moved aside, never tried again"
    caplog.clear()
    assert ck.newest(tmp_path).path.name == ck.PREV_NAME and not caplog.records


class Unpicklable:
    """A class of this module in a checkpoint: loading it imports the module and looks the class up."""


def three_checkpoints(folder):
    torch.save(fake_checkpoint(0), folder / ck.LAST_NAME)
    torch.save(fake_checkpoint(1, batch=2), folder / ck.PREV_NAME)
    torch.save(fake_checkpoint(1, batch=3), folder / ck.MID_NAME)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("problem", ["missing module", "missing class", "memory", "io error", "permission"])
def test_defect9_an_environment_problem_is_reported_and_renames_nothing(tmp_path, monkeypatch, problem):
    """A checkpoint that fails to load for a reason of this environment is kept as it is: moving
    it aside (and resuming from an older one, which then overwrites it) would lose it."""
    before = three_checkpoints(tmp_path)
    mid = tmp_path / ck.MID_NAME
    if problem in (
        "missing module",
        "missing class",
    ):  # written where a module or class existed that this install lacks
        ckpt = fake_checkpoint(1, batch=3)
        ckpt["extra"] = Unpicklable()
        torch.save(ckpt, mid)
        before[ck.MID_NAME] = mid.read_bytes()
        if problem == "missing module":
            monkeypatch.setitem(sys.modules, Unpicklable.__module__, None)
        else:
            monkeypatch.delattr(sys.modules[Unpicklable.__module__], "Unpicklable")
    else:
        error = {
            "memory": MemoryError(),
            "io error": OSError(5, "Input/output error"),
            "permission": PermissionError(13, "Permission denied"),
        }[problem]
        real = torch.load

        def load(path, *args, **kwargs):
            if str(path).endswith(ck.MID_NAME):
                raise error
            return real(path, *args, **kwargs)

        monkeypatch.setattr(torch, "load", load)
    with pytest.raises(
        ck.CheckpointUnloadable,
        match=r"mid.pt cannot be loaded here \(\w+Error.*kept as it is: fix what the error names",
    ) as e:
        ck.newest(tmp_path)
    assert "\n" not in str(e.value) and isinstance(e.value, ck.ResumeError)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "nothing renamed, nothing changed"


def test_defect9_a_truncated_zip_is_damaged_but_an_io_error_on_an_intact_one_is_not(tmp_path):
    path = tmp_path / ck.MID_NAME
    torch.save(fake_checkpoint(1, batch=3), path)
    whole = path.read_bytes()
    assert ck._damaged(path, OSError(5, "Input/output error")) is False, (
        "an intact archive: the error is the environment's"
    )
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OSError):  # what torch's zip reader says about a truncated file, an OSError like a disk error
        torch.load(path, weights_only=False)
    assert ck._damaged(path, OSError(22, "Invalid argument")) is True
    with pytest.raises(ck.CorruptCheckpoint):
        ck.load(path)


def test_defect9_a_file_moved_aside_never_overwrites_an_earlier_one(tmp_path):
    three_checkpoints(tmp_path)
    for n, old in enumerate([b"first bad mid.pt", b"second bad mid.pt"]):
        (tmp_path / ("mid.pt.corrupt" + (f".{n}" if n else ""))).write_bytes(old)
    (tmp_path / ck.MID_NAME).write_bytes(b"\x80\x02garbage")
    assert ck.newest(tmp_path).path.name == ck.PREV_NAME
    assert (tmp_path / "mid.pt.corrupt").read_bytes() == b"first bad mid.pt"
    assert (tmp_path / "mid.pt.corrupt.1").read_bytes() == b"second bad mid.pt"
    assert (tmp_path / "mid.pt.corrupt.2").read_bytes() == b"\x80\x02garbage", "the next free name"
    assert not (tmp_path / ck.MID_NAME).exists()


def test_the_checkpoint_furthest_along_wins_and_a_finished_run_is_recognised(tmp_path):
    torch.save(fake_checkpoint(1, batch=4), tmp_path / ck.MID_NAME)
    torch.save(fake_checkpoint(0), tmp_path / ck.LAST_NAME)  # end of epoch 1 = (1, 0), behind (1, 4)
    assert ck.newest(tmp_path).path.name == ck.MID_NAME
    torch.save(fake_checkpoint(1), tmp_path / ck.LAST_NAME)  # end of epoch 2 = (2, 0): validation came after batch 4
    assert ck.newest(tmp_path).path.name == ck.LAST_NAME
    final = fake_checkpoint(2)
    final.update(epoch=-1, optimizer=None, model=final.pop("ema"))  # what strip_optimizer leaves
    torch.save(final, tmp_path / ck.LAST_NAME)
    found = ck.newest(tmp_path)
    assert found.finished and found.position == ck.Position(3, 0)


def test_checkpoint_minutes_is_validated():
    assert (
        PluginOptions(checkpoint_minutes=0.0001).checkpoint_minutes == 0.0001
        and PluginOptions().checkpoint_minutes == 15
    )
    for bad in (-1, True, float("nan"), 20000, "15"):
        with pytest.raises(OptionError, match="checkpoint_minutes="):
            PluginOptions(checkpoint_minutes=bad)


def test_epoch_order_depends_on_seed_and_epoch_only_and_a_resumed_epoch_starts_with_placeholders():
    from torch.utils.data import BatchSampler, RandomSampler

    def batches(seed, epoch):
        sampler = ck.EpochBatches(BatchSampler(RandomSampler(range(10)), 3, False), shuffle=True, seed=seed)
        sampler.epoch = epoch
        it = iter(sampler)
        return [next(it) for _ in range(8)]  # two epochs of 4 batches

    assert batches(0, 2) == batches(0, 2) and batches(0, 2) != batches(1, 2)
    assert batches(0, 2)[4:] == batches(0, 3)[:4], "the next epoch's order does not depend on where the process started"
    resumed = ck.EpochBatches(BatchSampler(RandomSampler(range(10)), 3, False), shuffle=True, seed=0)
    saved = list(reversed(range(10)))
    resumed.epoch, resumed.skip_epoch, resumed.skip, resumed.skip_order = 2, 2, 2, saved
    torch.manual_seed(123)
    expected = torch.rand(1)  # what the RNG gives right after the state the checkpoint saved
    torch.manual_seed(123)
    resumed.rng = ck.rng_state()
    torch.manual_seed(5)  # the resumed process's own state
    it = iter(resumed)
    assert [next(it), next(it)] == [[], []], "the done batches are placeholders: no index, no image read"
    assert next(it) == saved[6:9], "then the saved order, from the next batch on"
    assert torch.equal(torch.rand(1), expected), "RNG states restored just before the first real batch"
    collate = ck.PlaceholderCollate(lambda samples: "real", imgsz=64)
    assert collate([]).get(ck.PLACEHOLDER_KEY) and collate([1]) == "real"


def test_bad_resume_input_gives_one_message_naming_the_problem_and_the_fix(tmp_path):
    with pytest.raises(ck.ResumeError, match="does not exist: nothing to resume; drop resume=True"):
        ck.resume_point(tmp_path / "absent")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(ck.ResumeError, match="is not a training run .* pass the project=/name= of a run"):
        ck.resume_point(tmp_path / "notes")
    (tmp_path / "early" / "weights").mkdir(parents=True)
    with pytest.raises(ck.ResumeError, match="holds no readable checkpoint: nothing to resume"):
        ck.resume_point(tmp_path / "early")
    run = tmp_path / "run" / "weights"
    run.mkdir(parents=True)
    torch.save(fake_checkpoint(1), run / ck.LAST_NAME)
    torch.save(fake_checkpoint(1, batch=2, scale="s"), run / ck.MID_NAME)
    with pytest.raises(
        ck.ResumeError, match=r"different models \(last.pt: yolov8n \(2 classes\), mid.pt: yolov8s.*Move the one"
    ):
        ck.resume_point(tmp_path / "run")
    (run / ck.MID_NAME).unlink()
    found = ck.resume_point(tmp_path / "run")
    with pytest.raises(
        ck.ResumeError, match="model=yolov8s.yaml but .* is a checkpoint of yolov8n .* Resume with model="
    ):
        ck.check_model_arg("yolov8s.yaml", found)
    ck.check_model_arg("yolov8n.yaml", found)  # the run's own model
    with pytest.raises(
        ck.ResumeError, match=r"classes \['person', 'vehicle'\], but data=other.yaml has \['cat'\]: .*another dataset"
    ):
        ck.check_dataset(fake_checkpoint(1), {0: "cat"}, 8, "other.yaml")
    with pytest.raises(ck.ResumeError, match="written for 8 training images, data=grown.yaml has 9"):
        ck.check_dataset(fake_checkpoint(1, batch=2), {0: "person", 1: "vehicle"}, 9, "grown.yaml")


def test_the_supervisor_refuses_bad_resumes_before_training_and_overwrites_nothing(tmp_path, synthetic_data):
    (tmp_path / "p" / "notes").mkdir(parents=True)
    (tmp_path / "p" / "notes" / "todo.txt").write_text("x")
    with pytest.raises(SupervisorError, match="is not a training run"):
        supervise({"data": str(synthetic_data), "project": str(tmp_path / "p"), "name": "notes", "resume": True})
    assert [p.name for p in (tmp_path / "p" / "notes").iterdir()] == ["todo.txt"]
    weights = tmp_path / "p" / "r" / "weights"
    weights.mkdir(parents=True)
    torch.save(fake_checkpoint(0, batch=3), weights / ck.MID_NAME)
    before = (weights / ck.MID_NAME).read_bytes()
    with pytest.raises(SupervisorError, match=r"already holds a run \(weights/mid.pt\)"):
        supervise({"data": str(synthetic_data), "project": str(tmp_path / "p"), "name": "r"})
    with pytest.raises(SupervisorError, match="model=yolov8s.yaml but .* a run continues with its own model"):
        supervise(
            {
                "data": str(synthetic_data),
                "model": "yolov8s.yaml",
                "project": str(tmp_path / "p"),
                "name": "r",
                "resume": True,
            }
        )
    assert (weights / ck.MID_NAME).read_bytes() == before and not (tmp_path / "p" / "r" / "journal.jsonl").exists()


def test_resuming_on_another_dataset_stops_the_supervisor_with_the_message_not_restarts(tmp_path, synthetic_data):
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    from yolo_rdna1.supervision import journal

    run = tmp_path / "p" / "r"
    (run / "weights").mkdir(parents=True)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    model.names = {0: "cat", 1: "dog"}
    args = {
        **DEFAULT_CFG_DICT,
        "model": "yolov8n.yaml",
        "data": str(tmp_path / "pets.yaml"),
        "epochs": 3,
        "imgsz": 64,
        "batch": 4,
        "device": "cpu",
        "workers": 0,
        "project": str(tmp_path / "p"),
        "name": "r",
        "save_dir": str(run),
        "plots": False,
    }
    torch.save(
        {
            "epoch": 0,
            "best_fitness": None,
            "model": None,
            "ema": model,
            "updates": 1,
            "optimizer": {"state": {}, "param_groups": []},
            "scaler": None,
            "train_args": args,
        },
        run / "weights" / ck.LAST_NAME,
    )
    before = (run / "weights" / ck.LAST_NAME).read_bytes()
    kwargs = {
        "data": str(synthetic_data),
        "project": str(tmp_path / "p"),
        "name": "r",
        "resume": True,
        "telemetry": 0,
        "thermal": False,
        "probe": False,
        "cache": str(tmp_path / "cache"),
    }
    with pytest.raises(
        SupervisorError,
        match=r"trained on classes \['cat', 'dog'\], but data=.* has \['person'.*another dataset. Resume with",
    ):
        supervise(kwargs, sleep=lambda s: pytest.fail("a bad input is not restarted"))
    events = [e["event"] for e in journal.read(run)]
    assert events == ["start", "resume", "bad_input", "end"]
    assert (run / "weights" / ck.LAST_NAME).read_bytes() == before and not (run / "results.csv").exists()
