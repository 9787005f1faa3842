"""Issue 16: a verdict file from elsewhere is untrusted, and a store that cannot be written is
still read (defects 1, 3, 8 and 10; the CLI sides of 2, 3 and 8 are in tests/test_cli.py)."""

import errno
import hashlib
import json
import logging
import os
import sqlite3
import stat

import pytest

from yolo_rdna1.errors import Rdna1Error
from yolo_rdna1.signature import ConvSignature
from yolo_rdna1.verdicts import Verdict, VerdictStore, VerdictStoreError
from yolo_rdna1.verdicts.breadcrumb import in_flight
from yolo_rdna1.verdicts.table import route_of


def key(i=0, direction="fwd"):
    return ConvSignature(16, 32 + i, (3, 3), (1, 1), (1, 1), (1, 1), 1, 48, 48, 4, direction=direction).key()


def entry(i=0, verdict="ok", **kw):
    return {
        "device": "cardA",
        "env_profile": "default",
        "signature": key(i),
        "verdict": verdict,
        "detail": "",
        "vendor_ms": 1.0,
        "bypass_ms": 2.0,
        "algorithm": None,
        "source": "probe",
        "updated": 1.7e9,
        **kw,
    }


def export(path, entries, version=1, host="box1"):
    path.write_text(
        json.dumps(
            {
                "format": "yolo_rdna1.verdicts",
                "schema_version": version,
                "exported_by": {"host": host},
                "verdicts": entries,
            }
        )
    )
    return path


def rows_on_disk(path):
    """The rows in the file itself, read by a separate read-only connection."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return sorted(conn.execute("SELECT device, env_profile, signature, verdict FROM verdicts").fetchall())
    finally:
        conn.close()


# -- defect 1: an import never lowers safety -------------------------------------------------------
def test_defect1_import_never_replaces_a_bad_verdict_measured_here(tmp_path):
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put(
        [
            Verdict("cardA", "default", key(0), "abort", "in flight when the training process died", source="crash"),
            Verdict("cardA", "default", key(1), "ok", vendor_ms=1.0, bypass_ms=5.0, source="probe"),
            Verdict("cardA", "default", key(2), "wrong", source="probe"),
            Verdict("cardA", "default", key(3), "ok", vendor_ms=1.0, bypass_ms=5.0, source="probe"),
        ]
    )
    shared = export(
        tmp_path / "shared.json",
        [
            entry(0, "ok"),
            entry(1, "hang"),
            entry(2, "ok"),
            entry(3, "ok", vendor_ms=9.0, bypass_ms=1.0),
            entry(4, "ok"),
            {**entry(5, "nan"), "device": "cardB"},
        ],
    )
    report = store.import_json(shared)
    got = store.table("cardA", "default")
    assert got[key(0)].verdict == "abort" and got[key(0)].source == "crash", "an imported ok must not undo a crash here"
    assert got[key(2)].verdict == "wrong" and got[key(2)].source == "probe"
    assert got[key(1)].verdict == "hang" and got[key(1)].source == "import", "a more cautious import is taken"
    assert got[key(3)].bypass_ms == 5.0 and route_of(got[key(3)]) == "vendor", "this machine's own timings stay"
    assert got[key(4)].source == "import" and "shared.json from host box1 (probe there)" == got[key(4)].origin
    assert store.get("cardB", "default", key(5)).verdict == "nan"
    text = "\n".join(report.lines())
    assert "cardA: 1 added, 1 replaced, 3 kept, 0 unchanged" in text and "cardB: 1 added" in text
    assert "measured abort here beats the imported ok" in text and "measured wrong here beats the imported ok" in text
    assert f"kept abort for {key(0)} [default]" in text
    assert "measured here (probe) beats an import" in text

    # replacing this machine's verdicts takes the explicit option
    report = store.import_json(shared, replace=True)
    assert store.get("cardA", "default", key(0)).verdict == "ok" and report.total("replaced") >= 3


# -- defect 3: every field is validated, all or nothing --------------------------------------------
@pytest.mark.parametrize(
    "field,value,message",
    [
        ("vendor_ms", "abc", "field 'vendor_ms' must be a number or null"),
        ("bypass_ms", -1, "field 'bypass_ms' must be from 0"),
        ("vendor_ms", float("nan"), "field 'vendor_ms' must be from 0"),
        ("vendor_ms", True, "field 'vendor_ms' must be a number"),
        ("device", 5, "field 'device' must be text"),
        ("env_profile", "de\x1b[2Jfault", "field 'env_profile' must not contain control characters"),
        ("signature", key(0).replace("c16", "c0"), "the channels must be from 1"),
        ("signature", key(0).replace("float32", "int8"), "unknown dtype 'int8'"),
        ("verdict", "fine", "field 'verdict' must be one of ok, error"),
        ("updated", "yesterday", "field 'updated' must be a number"),
        ("algorithm", ["x"], "field 'algorithm' must be text"),
        ("source", "oracle", "field 'source' must be one of"),
        ("colour", "blue", "unknown field 'colour'"),
    ],
)
def test_defect3_import_refuses_a_wrong_field_naming_entry_and_field(tmp_path, field, value, message):
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put(Verdict("cardA", "default", key(9), "hang", source="crash"))
    before = store.query()
    bad = export(tmp_path / "bad.json", [entry(0), {**entry(1), field: value}])
    with pytest.raises(VerdictStoreError) as err:
        store.import_json(bad)
    msg = str(err.value)
    assert (
        "verdict 1:" in msg
        and message in msg
        and "nothing was imported" in msg
        and "\n" not in msg
        and "\x1b" not in msg
    )
    assert store.query() == before, "the valid entry 0 must not be imported either"


def test_defect3_a_poisoned_row_of_an_old_import_is_left_out_not_a_crash_in_training(tmp_path, caplog):
    store = VerdictStore(tmp_path / "v.sqlite")
    store.put(Verdict("cardA", "default", key(0), "hang", source="crash"))
    conn = sqlite3.connect(tmp_path / "v.sqlite")  # what the old import stored: text in a number column
    conn.execute(
        "INSERT INTO verdicts (device, env_profile, signature, verdict, vendor_ms, bypass_ms, source, updated) "
        "VALUES ('cardA', 'default', ?, 'ok', 'abc', 1.0, 'import', 0)",
        (key(1),),
    )
    conn.commit()
    conn.close()
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        table = VerdictStore(tmp_path / "v.sqlite").table("cardA", "default")
    assert set(table) == {key(0)}
    assert all(route_of(v) for v in table.values())
    assert "left out 1 stored row(s) that are not valid verdicts" in caplog.text and "vendor_ms" in caplog.text


# -- defect 8: a breadcrumb line that is not a key never becomes a verdict ----------------------------
def test_defect8_a_breadcrumb_line_that_is_not_a_key_is_skipped_with_a_warning(tmp_path, caplog):
    stem = tmp_path / "crumb"
    (tmp_path / "crumb.log").write_text(key(0) + "\n\x1b]0;owned\x07 rm -rf ~\n")
    (tmp_path / "crumb.slot").write_bytes((2).to_bytes(8, "little"))
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        assert in_flight(stem) is None
    assert "skipped 1 crash breadcrumb: line 2" in caplog.text and "\x1b" not in caplog.text
    (tmp_path / "crumb.slot").write_bytes((1).to_bytes(8, "little"))
    assert in_flight(stem) == (key(0), "abort"), "a valid line is still blamed"

    store = VerdictStore(tmp_path / "v.sqlite")
    assert store.put(Verdict("cardA", "default", "\x1b]0;owned\x07 rm -rf ~", "abort", source="crash")) == 0
    assert store.query() == [] and store.skipped == 1


# -- defect 10: read-only, newer schema, full disk -------------------------------------------------
@pytest.fixture
def read_only(monkeypatch):
    """chmod a path read-only; as root (who ignores modes) also make os.access say so."""
    made = []

    def apply(*paths):
        for p in paths:
            made.append((p, p.stat().st_mode))
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        if os.geteuid() == 0:
            real = os.access
            frozen = {str(p) for p in paths}
            monkeypatch.setattr(
                os,
                "access",
                lambda p, mode, **kw: False if mode & os.W_OK and str(p) in frozen else real(p, mode, **kw),
            )

    yield apply
    for p, mode in reversed(made):
        p.chmod(mode)


@pytest.mark.parametrize("which", ["folder", "file"])
def test_defect10_a_read_only_store_is_read_and_routes_never_written(tmp_path, read_only, caplog, which):
    folder = tmp_path / "cache"
    path = folder / "verdicts.sqlite"
    first = VerdictStore(path)
    first.put(
        [
            Verdict("cardA", "default", key(0), "abort", source="crash"),
            Verdict("cardA", "default", key(1), "ok", source="probe"),
        ]
    )
    first.close()
    on_disk = rows_on_disk(path)
    read_only(folder if which == "folder" else path)
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        store = VerdictStore(path)
        assert store.path == path, "a read-only store must be read, not replaced by an empty one"
        table = store.table("cardA", "default")
        assert route_of(table[key(0)]) == "bypass" and route_of(table[key(1)]) == "vendor"
        # a crash learned now routes this process, and the file is not touched
        assert store.put(Verdict("cardA", "default", key(2), "hang", source="crash")) == 1
        assert store.table("cardA", "default")[key(2)].verdict == "hang"
        assert rows_on_disk(path) == on_disk
    assert store.read_only
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "read-only" in warnings[0] and "routing from its 2 stored verdicts" in warnings[0]
    assert rows_on_disk(path) == on_disk
    with pytest.raises(VerdictStoreError, match="read-only; nothing was imported"):
        store.import_json(export(tmp_path / "x.json", [entry(5)]))
    with pytest.raises(VerdictStoreError, match="nothing was removed"):
        store.clear()
    assert rows_on_disk(path) == on_disk


def test_defect10_a_store_of_a_newer_schema_is_read_never_moved_or_written(tmp_path, caplog):
    path = tmp_path / "verdicts.sqlite"
    first = VerdictStore(path)
    first.put([Verdict("cardA", "default", key(0), "abort", source="crash"), Verdict("cardA", "default", key(1), "ok")])
    first.close()  # else its connection, freed whenever the garbage collector runs, may write the file later
    conn = sqlite3.connect(path)  # what a future version might write: a new column, a new verdict name
    conn.execute("ALTER TABLE verdicts ADD COLUMN confidence REAL")
    conn.execute(
        "INSERT INTO verdicts (device, env_profile, signature, verdict, "
        "source, updated) VALUES ('cardA', 'default', ?, 'flaky', 'probe', 0)",
        (key(2),),
    )
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        store = VerdictStore(path)
        table = store.table("cardA", "default")
        store.put(Verdict("cardA", "default", key(3), "hang", source="crash"))  # training: kept in memory, no crash
    assert not list(tmp_path.glob("*.corrupt*")), "a newer store must never be moved aside"
    assert table[key(0)].verdict == "abort" and key(2) not in table
    assert store.get("cardA", "default", key(3)).verdict == "hang"
    assert store.read_only and "newer yolo_rdna1 (verdict schema 3" in caplog.text
    with pytest.raises(VerdictStoreError, match="newer yolo_rdna1.*nothing was imported"):
        store.import_json(export(tmp_path / "x.json", [entry(5)]))
    store.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest and sqlite3.connect(path).execute(
        "SELECT value FROM meta"
    ).fetchone() == ("3",)


def test_defect10_a_full_disk_is_named_and_nothing_is_half_written(tmp_path, caplog, monkeypatch):
    path = tmp_path / "verdicts.sqlite"
    store = VerdictStore(path)
    store.put(Verdict("cardA", "default", key(0), "abort", source="crash"))
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    many = [Verdict("cardA", "default", key(i), "hang", "x" * 1500, source="probe") for i in range(1, 60)]
    with caplog.at_level(logging.WARNING, logger="yolo_rdna1"):
        assert store.put(many) == 59  # a training goes on: kept in memory, one warning with the cause
    assert f"the disk holding {path} is full" in caplog.text and "cannot rollback" not in caplog.text
    assert rows_on_disk(path) == [("cardA", "default", key(0), "abort")], "all or nothing"
    assert len(store.table("cardA", "default")) == 60
    store._conn.execute("PRAGMA max_page_count=1000000")  # space again: the next write stores what waited
    store.put(Verdict("cardA", "default", key(99), "ok", source="probe"))
    assert len(rows_on_disk(path)) == 61 and len(store.table("cardA", "default")) == 61
    store._conn.execute(f"PRAGMA max_page_count={store._conn.execute('PRAGMA page_count').fetchone()[0]}")
    shared = export(tmp_path / "shared.json", [entry(i, "hang", detail="y" * 1500) for i in range(100, 160)])
    with pytest.raises(VerdictStoreError, match="disk holding .* is full; nothing was imported"):
        store.import_json(shared)
    assert len(rows_on_disk(path)) == 61

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(VerdictStoreError, match="disk holding .*out.json is full; nothing was written"):
        store.export_json(tmp_path / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == [], "no export and no temp file left"


def test_a_schema_1_store_is_upgraded_in_place_and_nothing_is_lost(tmp_path):
    path = tmp_path / "verdicts.sqlite"
    conn = sqlite3.connect(path)  # the schema of yolo_rdna1 0.1 as it wrote it
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE verdicts (device TEXT NOT NULL, env_profile TEXT NOT NULL, signature TEXT NOT NULL,
            verdict TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', vendor_ms REAL, bypass_ms REAL,
            algorithm TEXT, source TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (device, env_profile, signature));
        INSERT INTO meta VALUES ('schema_version', '1');
    """)
    conn.executemany(
        "INSERT INTO verdicts VALUES (?, 'default', ?, ?, 'd', 1.0, 2.0, NULL, ?, 1.7e9)",
        [("cardA", key(0), "abort", "crash"), ("cardA", key(1), "ok", "import")],
    )
    conn.commit()
    conn.close()
    store = VerdictStore(path)
    got = store.table("cardA", "default")
    assert got[key(0)].verdict == "abort" and got[key(0)].source == "crash" and got[key(1)].origin == ""
    assert sqlite3.connect(path).execute("SELECT value FROM meta").fetchone() == ("2",)
    store.put(Verdict("cardA", "default", key(2), "ok", source="probe"))
    assert len(VerdictStore(path).query()) == 3 and not list(tmp_path.glob("*.corrupt*"))


def test_errors_are_one_line_rdna1_errors(tmp_path):
    with pytest.raises(Rdna1Error):
        ConvSignature.from_key("v1:c16>32\n:rm -rf")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(VerdictStoreError, match="not a yolo_rdna1 verdict export|not a JSON file"):
        VerdictStore(tmp_path / "v.sqlite").import_json(tmp_path / "deep.json")


def test_a_verdict_measured_here_is_never_lost_to_its_detail_or_timing(tmp_path):
    store = VerdictStore(tmp_path / "v.sqlite")
    odd = Verdict(
        "cardA",
        "default",
        key(0),
        "nan",
        "x\udcff" * 5000,
        vendor_ms=float("nan"),
        bypass_ms=float("inf"),
        algorithm="a\nb",
        source="probe",
    )
    assert store.put(odd) == 1 and store.skipped == 0
    got = VerdictStore(tmp_path / "v.sqlite").get("cardA", "default", key(0))
    assert (
        got.verdict == "nan"
        and got.vendor_ms is None
        and got.bypass_ms is None
        and got.algorithm == "a\\nb"
        and len(got.detail) == 2000
    )
    conn = sqlite3.connect(
        tmp_path / "v.sqlite"
    )  # text that is not UTF-8 in a stored row: read escaped, not a failed read
    conn.execute(
        "INSERT INTO verdicts (device, env_profile, signature, verdict, source, "
        "updated) VALUES (CAST(X'ff' AS TEXT), 'default', ?, 'ok', 'probe', 0)",
        (key(1),),
    )
    conn.commit()
    conn.close()
    store = VerdictStore(tmp_path / "v.sqlite")
    assert sorted(v.device for v in store.query()) == ["\\xff", "cardA"]
