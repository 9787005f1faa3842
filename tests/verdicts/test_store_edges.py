"""Edges of the verdict store: an ok that must not undo a crash, a folder that cannot be fsynced,
a journal a read-only reader must not drop, ranks that find the same corrupt store at once."""

import errno
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import stat
import time

import pytest

from yolo_rdna1 import files
from yolo_rdna1.signature import ConvSignature
from yolo_rdna1.verdicts import Verdict, VerdictStore, VerdictStoreError


def key(i=0):
    return ConvSignature(16, 32 + i, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4).key()


def verdict(i, what, source="probe", device="cardA"):
    return Verdict(device, "default", key(i), what, f"detail {i}", source=source)


def export(path, entries):
    path.write_text(json.dumps({"format": "yolo_rdna1.verdicts", "schema_version": 2, "verdicts": entries}))
    return path


# -- finding 1: a probe's ok never undoes a crash, a runtime failure or an import ------------------
def test_a_probe_ok_keeps_crash_runtime_and_imported_bad_verdicts_and_re_measures_a_probe(tmp_path):
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put([verdict(0, "abort", "crash"), verdict(1, "error", "runtime"), verdict(3, "hang", "probe")])
    imported = {"device": "cardA", "env_profile": "default", "signature": key(2), "verdict": "nan"}
    assert store.import_json(export(tmp_path / "x.json", [imported])).written == 1

    recorded = store.put([verdict(i, "ok", "probe") for i in range(5)])  # what probe refresh=True writes

    got = {i: store.get("cardA", "default", key(i)) for i in range(5)}
    assert (got[0].verdict, got[0].source) == ("abort", "crash")
    assert (got[1].verdict, got[1].source) == ("error", "runtime")
    assert (got[2].verdict, got[2].source) == ("nan", "import")
    assert got[3].verdict == "ok", "a probe re-measures what a probe found"
    assert got[4].verdict == "ok"
    assert recorded == 2, "put counts what it recorded, not what it kept"
    # a reopened store says the same (the rule holds on disk, not only in this process)
    store.close()
    again = VerdictStore(tmp_path / "v.sqlite")
    assert [again.get("cardA", "default", key(i)).verdict for i in range(5)] == ["abort", "error", "nan", "ok", "ok"]
    # an explicit override writes whatever is stored
    assert again.put(verdict(0, "ok"), replace=True) == 1
    assert again.get("cardA", "default", key(0)).verdict == "ok"


def test_a_probe_ok_keeps_a_crash_verdict_of_a_read_only_store(tmp_path):
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put(verdict(0, "abort", "crash"))
    store.read_only = True  # verdicts of this process are kept in memory: the rule holds there too
    store.put(verdict(1, "hang", "crash"))
    assert store.put([verdict(0, "ok"), verdict(1, "ok")]) == 0
    assert [store.get("cardA", "default", key(i)).verdict for i in (0, 1)] == ["abort", "hang"]


def test_probe_refresh_keeps_a_crash_verdict_and_reports_it(tmp_path, caplog):
    from yolo_rdna1.device import describe_device
    from yolo_rdna1.probe.api import run_probe
    from yolo_rdna1.verdicts.table import device_key

    sig = ConvSignature(3, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, 16, 16, 1)
    store = VerdictStore(tmp_path / "v.sqlite")
    dev = device_key(describe_device("cpu").fingerprint, None)
    store.put(Verdict(dev, "default", sig.key(), "abort", "in flight when the training process died", source="crash"))
    with caplog.at_level("WARNING", logger="yolo_rdna1"):
        report = run_probe([sig], "cpu", "default", store, refresh=True, progress=False, faults=False)
    assert report.probed == 1
    assert store.get(dev, "default", sig.key()).verdict == "abort", "an isolated probe's ok must not undo a crash"
    assert [v.verdict for v in report.verdicts] == ["abort"], "the report routes what the store kept"
    assert "kept 1 bad verdict(s) that the probe found ok" in caplog.text


# -- finding 2: a folder that cannot be fsynced ---------------------------------------------------
@pytest.fixture
def dir_fsync_fails(monkeypatch):
    """os.fsync of a folder fails with the given errno; of a file it works."""

    def apply(code):
        real = os.fsync

        def fsync(fd):
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(code, os.strerror(code))
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    return apply


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EBADF, errno.ENOTSUP])
def test_a_folder_that_cannot_be_fsynced_does_not_fail_a_write_that_happened(tmp_path, dir_fsync_fails, code):
    target = tmp_path / "mid.pt"
    target.write_bytes(b"old")
    dir_fsync_fails(code)
    assert files.atomic_write(target, b"new") == target
    assert target.read_bytes() == b"new" and not list(tmp_path.glob(".*.tmp"))
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put(verdict(0, "hang", "crash"))
    assert store.export_json(tmp_path / "out.json") == 1  # no "nothing was written" for a file that was


def test_a_real_error_of_a_folder_fsync_is_still_raised(tmp_path, dir_fsync_fails):
    dir_fsync_fails(errno.EIO)
    with pytest.raises(OSError) as e:
        files.fsync_dir(tmp_path)
    assert e.value.errno == errno.EIO


# -- finding 3: the journal of a dead writer, read from a read-only folder -----------------------
class _CannotOpenHere:
    """What SQLite answers a WAL reader in a read-only folder where it cannot create the ``-shm``
    index (as root, who writes anywhere, the test must say it for SQLite)."""

    text_factory = None

    def execute(self, *args):
        raise sqlite3.OperationalError("unable to open database file")

    def close(self):
        pass


def test_a_read_only_store_reads_the_committed_rows_of_a_dead_writers_journal(tmp_path, monkeypatch):
    live, frozen = tmp_path / "live", tmp_path / "frozen"
    frozen.mkdir()
    writer = VerdictStore(live / "verdicts.sqlite")
    writer.put([verdict(0, "abort", "crash"), verdict(1, "ok")])
    assert (live / "verdicts.sqlite-wal").stat().st_size, "the rows must still be in the journal"
    for name in ("verdicts.sqlite", "verdicts.sqlite-wal"):  # the writer dies: no checkpoint, no -shm left
        shutil.copyfile(live / name, frozen / name)
    writer.close()

    real_access, real_connect = os.access, sqlite3.connect
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if mode & os.W_OK and str(p) == str(frozen) else real_access(p, mode)
    )

    def connect(target, *args, **kw):
        if str(target).startswith(frozen.as_uri()) and "immutable" not in str(target):
            return _CannotOpenHere()
        return real_connect(target, *args, **kw)

    monkeypatch.setattr(sqlite3, "connect", connect)
    store = VerdictStore(frozen / "verdicts.sqlite")
    assert store.read_only
    got = store.get("cardA", "default", key(0))
    assert got is not None and got.verdict == "abort", "a committed crash verdict must not be dropped"
    assert len(store.query()) == 2
    copy = store._copy.name
    store.close()
    assert not os.path.exists(copy), "the private copy goes with the store"
    assert sorted(p.name for p in frozen.iterdir()) == ["verdicts.sqlite", "verdicts.sqlite-wal"]


# -- finding 4: corrupt stores, opened by several processes at once -------------------------------
def test_aside_names_never_overwrite_an_earlier_file(tmp_path):
    path = tmp_path / "v.sqlite"
    assert files.aside_path(path) == tmp_path / "v.sqlite.corrupt"
    (tmp_path / "v.sqlite.corrupt").write_text("first")
    assert files.aside_path(path) == tmp_path / "v.sqlite.corrupt.1"
    (tmp_path / "v.sqlite.corrupt.1-wal").write_text("a journal of the second")  # a companion counts too
    assert files.aside_path(path, companions=("", "-wal")) == tmp_path / "v.sqlite.corrupt.2"


def test_two_corrupt_stores_in_one_second_are_both_kept(tmp_path, monkeypatch):
    path = tmp_path / "v.sqlite"
    monkeypatch.setattr(time, "time", lambda: 1.7e9)  # one second for both
    for n in (1, 2):
        path.write_bytes(f"garbage {n} ".encode() * 200)
        VerdictStore(path).close()
    kept = sorted(p.read_bytes()[:9] for p in tmp_path.glob("v.sqlite.corrupt*"))
    assert kept == [b"garbage 1", b"garbage 2"]


def test_a_store_rebuilt_by_another_process_meanwhile_is_opened_not_moved_aside(tmp_path, monkeypatch):
    path = tmp_path / "v.sqlite"
    other = VerdictStore(tmp_path / "other.sqlite")  # what the faster rank rebuilt and wrote
    other.put(verdict(0, "abort", "crash"))
    other.close()
    path.write_bytes(b"not a database " * 200)
    real, calls = VerdictStore._connect, []

    def connect(target):
        calls.append(target)
        if len(calls) == 1:  # this rank finds the file corrupt; meanwhile the other one rebuilds it
            try:
                return real(target)
            finally:
                os.replace(tmp_path / "other.sqlite", path)
        return real(target)

    monkeypatch.setattr(VerdictStore, "_connect", staticmethod(connect))
    store = VerdictStore(path)
    assert store.get("cardA", "default", key(0)).verdict == "abort", "the other rank's new store must stay live"
    assert not list(tmp_path.glob("v.sqlite.corrupt*"))


_OPENER = """
import os, time
from yolo_rdna1.signature import ConvSignature
from yolo_rdna1.verdicts import Verdict, VerdictStore
while not os.path.exists({go!r}):
    time.sleep(0.001)
store = VerdictStore({path!r})
sig = ConvSignature(16, 32 + {i}, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4)
store.put(Verdict("cardA", "default", sig.key(), "hang", source="crash"))
store.close()
"""


def test_ranks_opening_one_corrupt_store_at_once_keep_every_verdict(tmp_path):
    path, go = tmp_path / "v.sqlite", tmp_path / "go"
    path.write_bytes(b"not a database " * 200)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=exec, args=(_OPENER.format(path=str(path), go=str(go), i=i),)) for i in range(3)]
    for p in procs:
        p.start()
    time.sleep(3)  # the children import meanwhile, then open the store together
    go.touch()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(VerdictStore(path).query()) == 3, "a rank's new store was moved aside by another rank"
    aside = list(tmp_path.glob("v.sqlite.corrupt*"))
    assert [p.name for p in aside] == ["v.sqlite.corrupt"]
    assert aside[0].read_bytes().startswith(b"not a database")


# -- finding 6: a read error is the store's own ---------------------------------------------------
class _Broken:
    def execute(self, *args):
        raise sqlite3.DatabaseError("database disk image is malformed")


def test_a_store_that_fails_to_read_raises_its_own_one_line_error(tmp_path):
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put(verdict(0, "hang", "crash"))
    store._conn, real = _Broken(), store._conn
    try:
        with pytest.raises(VerdictStoreError) as e:
            store.query()
    finally:
        store._conn = real
    assert "cannot read the verdict store" in str(e.value) and "malformed" in str(e.value)
    assert "\n" not in str(e.value)
