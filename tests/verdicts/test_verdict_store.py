"""The verdict store: concurrent writers, corruption, unwritable folders, sharing."""

import json
import logging
import multiprocessing as mp

import pytest

from yolo_rdna1.signature import ConvSignature
from yolo_rdna1.verdicts import Verdict, VerdictStore, VerdictStoreError, miopen_driver_command

SIG = ConvSignature(16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 64, 4)


def v(i=0, verdict="ok", device="dev", direction="fwd"):
    sig = ConvSignature(16, 32 + i, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 64, 4, direction=direction)
    return Verdict(device, "default", sig.key(), verdict, f"detail {i}", vendor_ms=1.0, bypass_ms=2.0)


def test_put_get_query_clear(tmp_path):
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put([v(0), v(1, "hang"), v(2, device="other")])
    assert store.get("dev", "default", v(1).signature).verdict == "hang"
    assert len(store.query("dev")) == 2 and len(store.query()) == 3
    assert set(store.table("dev", "default")) == {v(0).signature, v(1).signature}
    store.put(v(1, "ok"))  # a new verdict replaces the old one
    assert store.get("dev", "default", v(1).signature).verdict == "ok"
    assert store.clear("other") == 1 and len(store.query()) == 2


#: The code of one writer process, run by exec: spawn pickles a target function by its module's
#: name, and in the child "tests...." can resolve to another distribution's top-level ``tests``
#: package (the Ultralytics 8.3 wheel installs one).
_WRITER = """
from yolo_rdna1.signature import ConvSignature
from yolo_rdna1.verdicts import Verdict, VerdictStore
store = VerdictStore({path!r})
for i in range({start}, {start} + {n}):
    sig = ConvSignature(16, 32 + i, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 64, 4, direction="fwd")
    store.put(Verdict("dev", "default", sig.key(), "ok", f"detail {{i}}", vendor_ms=1.0, bypass_ms=2.0))
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "v.sqlite"
    VerdictStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=exec, args=(_WRITER.format(path=str(path), start=k * 1000, n=150),)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(VerdictStore(path).query()) == 300


def test_corrupt_store_is_moved_aside_and_rebuilt(tmp_path, caplog):
    path = tmp_path / "v.sqlite"
    path.write_bytes(b"this is not a database, just garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        store = VerdictStore(path)
    store.put(v(0))
    assert len(store.query()) == 1
    assert list(tmp_path.glob("v.sqlite.corrupt*")), "the corrupt file must be kept aside, not deleted"
    assert any("corrupt" in r.getMessage() for r in caplog.records)


def test_unwritable_cache_falls_back_to_memory_with_one_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        store = VerdictStore(blocker / "sub" / "v.sqlite")  # a folder under a file cannot exist
    assert store.path == ":memory:"
    store.put(v(0))
    assert len(store.query()) == 1
    assert sum("cannot write the verdict store" in r.getMessage() for r in caplog.records) == 1


def test_export_import_round_trip_and_bad_imports(tmp_path):
    a = VerdictStore(tmp_path / "a.sqlite")
    a.put([v(0), v(1, "abort")])
    out = tmp_path / "shared.json"
    assert a.export_json(out) == 2
    b = VerdictStore(tmp_path / "b.sqlite")
    assert b.import_json(out).written == 2
    got = b.get("dev", "default", v(1).signature)
    assert got.verdict == "abort" and got.source == "import"
    data = json.loads(out.read_text())
    data["schema_version"] = 99
    out.write_text(json.dumps(data))
    with pytest.raises(VerdictStoreError, match="schema 99.*reads schema 1, 2"):
        b.import_json(out)
    out.write_text("{not json")
    with pytest.raises(VerdictStoreError, match="not a JSON file"):
        b.import_json(out)
    with pytest.raises(VerdictStoreError, match="no such file"):
        b.import_json(tmp_path / "missing.json")
    assert len(b.query()) == 2, "a failed import must not touch what is stored"


def test_miopen_driver_reproducer_lines():
    fwd = Verdict("d", "default", SIG.key(), "hang")
    assert miopen_driver_command(fwd) == (
        "MIOpenDriver conv -n 4 -c 16 -H 48 -W 64 -k 32 -y 3 -x 3 -p 1 -q 1 -u 1 -v 1 -l 1 -j 1 -m conv -g 1 -F 1 -t 1"
    )
    half_wrw = Verdict(
        "d",
        "default",
        ConvSignature(
            16, 32, (1, 1), (2, 2), (0, 0), (1, 1), 1, 40, 40, 8, dtype="float16", direction="bwd_weight"
        ).key(),
        "abort",
    )
    line = miopen_driver_command(half_wrw)
    assert (
        line.startswith("MIOpenDriver convfp16 -n 8 -c 16 -H 40 -W 40 -k 32 -y 1 -x 1 -p 0 -q 0 -u 2 -v 2")
        and "-F 4" in line
    )


def test_unknown_verdict_is_rejected():
    with pytest.raises(ValueError, match="unknown verdict"):
        Verdict("d", "p", SIG.key(), "sad")
