"""The verdict store: what each conv signature does on the vendor route of one device.

Keyed by device fingerprint + MIOpen env profile + signature (with its direction). SQLite in
WAL mode, so two trainings (or a training and a probe) can read and write at once; every write
is a short ``BEGIN IMMEDIATE`` transaction.

Every verdict keeps its ``source`` (``probe``, ``crash``, ``runtime``: measured here;
``import``: from a file, with ``origin`` naming the file and the exporting host). A verdict file
from elsewhere is untrusted: every field is validated before anything is written, and an import
never makes this machine less safe (a bad verdict beats ``ok``; a verdict measured here beats
an imported one) unless the user asks for ``replace``.

Nothing is lost to a store that cannot be written: a read-only file or folder, a store of a
newer schema and a full disk are read as far as they can be (SQLite ``mode=ro``) and new
verdicts are kept in memory for the process, each with one warning. Only a file that is not a
database at all is moved aside and rebuilt (verdicts can be re-measured; a crashed run cannot).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Rdna1Error
from ..files import aside_path, atomic_write
from ..runfiles import VERDICTS_DB
from ..signature import ConvSignature, SignatureError

LOGGER = logging.getLogger("yolo_rdna1")

#: 2 added ``origin``; a store of schema 1 is upgraded in place when it is opened for writing.
SCHEMA_VERSION = 2
#: Export files this version reads (an export of schema 1 has no ``origin``).
EXPORT_VERSIONS = (1, 2)
EXPORT_FORMAT = "yolo_rdna1.verdicts"
VERDICTS = ("ok", "error", "hang", "abort", "nan", "wrong")
#: Verdicts that mean "never run this on the vendor library".
BAD = frozenset(VERDICTS) - {"ok"}
SOURCES = ("probe", "crash", "runtime", "import")
#: Sources of verdicts measured on this machine: they beat an import of the same caution.
MEASURED_HERE = frozenset(SOURCES) - {"import"}
CACHE_ENV = "YOLO_RDNA1_CACHE"

_MAX_NAME = 500  # device fingerprint, env profile, algorithm, origin
_MAX_DETAIL = 2000
_MAX_MS = 1e7
_MAX_TIME = 2.0**32  # seconds since 1970: the year 2106
_MAX_FILE = 64 * 2**20


class VerdictStoreError(Rdna1Error):
    """A verdict file or store that cannot be used; the message says why and what to do."""


@dataclass
class Verdict:
    """One measured fact: ``signature`` (a key with its direction) on ``device`` under ``env_profile``."""

    device: str
    env_profile: str
    signature: str
    verdict: str
    detail: str = ""
    vendor_ms: float | None = None
    bypass_ms: float | None = None
    algorithm: str | None = None
    source: str = "probe"  # probe | crash | runtime | import
    updated: float = field(default_factory=time.time)
    #: Where an imported verdict came from (export file, exporting host); empty when measured here.
    origin: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise VerdictStoreError(f"unknown verdict {self.verdict!r}; valid: {', '.join(VERDICTS)}")

    @property
    def sig(self) -> ConvSignature:
        return ConvSignature.from_key(self.signature)

    @property
    def bad(self) -> bool:
        return self.verdict in BAD

    @property
    def measured_here(self) -> bool:
        return self.source in MEASURED_HERE


def default_cache_dir() -> Path:
    """``$YOLO_RDNA1_CACHE``, else the user cache dir (``$XDG_CACHE_HOME/yolo_rdna1``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yolo_rdna1"


def printable(text: str) -> str:
    """``text`` with every control or invisible character escaped (``\\n``, ``\\x1b``, ``\\u202e``).

    What the CLI prints from a store may come from someone else's file: escaped, it can neither
    start a new (shell) line nor send escape sequences to the terminal.
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


# -- validation: one check for imported entries, stored rows and new verdicts ---------------------
def _refuse(name: str, problem: str, value: Any) -> VerdictStoreError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return VerdictStoreError(f"field {name!r} {problem}, got {shown}")


def _text(name: str, value: Any, limit: int, one_line: bool = True, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise _refuse(name, "must be text", value)
    if not value and not empty:
        raise _refuse(name, "must not be empty", value)
    if len(value) > limit:
        raise _refuse(name, f"is {len(value)} characters long, at most {limit} are allowed", value)
    if one_line and not value.isprintable():
        raise _refuse(name, "must not contain control characters", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(name, "is not valid Unicode text", value) from None
    return value


def _number(name: str, value: Any, high: float, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(name, "must be a number" + (" or null" if optional else ""), value)
    if isinstance(value, int) and not 0 <= value <= high:  # before float(): a huge int overflows it
        raise _refuse(name, f"must be from 0 to {high:g}", value)
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= high):
        raise _refuse(name, f"must be from 0 to {high:g}", value)
    return value


def _choice(name: str, value: Any, valid: Iterable[str]) -> str:
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        raise _refuse(name, f"must be one of {', '.join(valid)}", value)
    return value


def _validated(raw: Mapping[str, Any]) -> Verdict:
    """A :class:`Verdict` from a mapping of fields, every field checked by type and range.

    Raises :class:`VerdictStoreError` naming the first field that is wrong.
    """
    unknown = [k for k in raw if k not in _COLUMNS]
    if unknown:
        raise VerdictStoreError(
            f"unknown field {printable(str(unknown[0]))[:60]!r}; valid fields: {', '.join(_COLUMNS)}"
        )
    for name in ("device", "env_profile", "signature", "verdict"):
        if name not in raw:
            raise VerdictStoreError(f"field {name!r} is missing")
    signature = raw["signature"]
    if not isinstance(signature, str):
        raise _refuse("signature", "must be a conv signature key (text)", signature)
    try:
        ConvSignature.from_key(signature)
    except SignatureError as e:
        raise VerdictStoreError(f"field 'signature': {e}") from None
    return Verdict(
        device=_text("device", raw["device"], _MAX_NAME),
        env_profile=_text("env_profile", raw["env_profile"], _MAX_NAME),
        signature=signature,
        verdict=_choice("verdict", raw["verdict"], VERDICTS),
        detail=_text("detail", raw.get("detail", ""), _MAX_DETAIL, one_line=False, empty=True),
        vendor_ms=_number("vendor_ms", raw.get("vendor_ms"), _MAX_MS, optional=True),
        bypass_ms=_number("bypass_ms", raw.get("bypass_ms"), _MAX_MS, optional=True),
        algorithm=None if raw.get("algorithm") is None else _text("algorithm", raw["algorithm"], _MAX_NAME),
        source=_choice("source", raw.get("source", "probe"), SOURCES),
        updated=float(_number("updated", raw.get("updated", time.time()), _MAX_TIME, optional=False)),  # type: ignore[arg-type]
        origin=_text("origin", raw.get("origin", ""), _MAX_NAME, empty=True),
    )


# -- the database ----------------------------------------------------------------------------------
_COLUMNS = (
    "device",
    "env_profile",
    "signature",
    "verdict",
    "detail",
    "vendor_ms",
    "bypass_ms",
    "algorithm",
    "source",
    "updated",
    "origin",
)
#: What a store that lacks a column (an older schema, read-only) reads in its place.
_DEFAULTS = {
    "detail": "''",
    "vendor_ms": "NULL",
    "bypass_ms": "NULL",
    "algorithm": "NULL",
    "source": "'probe'",
    "updated": "0",
    "origin": "''",
}
_CREATE = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS verdicts (
    device TEXT NOT NULL, env_profile TEXT NOT NULL, signature TEXT NOT NULL,
    verdict TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', vendor_ms REAL, bypass_ms REAL,
    algorithm TEXT, source TEXT NOT NULL, updated REAL NOT NULL, origin TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (device, env_profile, signature)
)""",
)
_INSERT = f"INSERT OR REPLACE INTO verdicts ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_KEY_WHERE = " WHERE device=? AND env_profile=? AND signature=?"


class _NewerSchema(Exception):
    """The store was written by a newer yolo_rdna1: read it, never write or move it."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The store's schema version; None for a new (empty) database."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None
        raise
    if row is None:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise sqlite3.DatabaseError(f"malformed schema version {str(row[0])[:20]!r}") from None


def _decode(raw: bytes) -> str:
    """Stored text as str; bytes that are not UTF-8 (a damaged or foreign file) are escaped, so
    such a row is left out by validation instead of failing the whole read."""
    return raw.decode("utf-8", "backslashreplace")


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo an open transaction; SQLite already rolled back after some errors (a full disk)."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the error that brought us here is the one to report


def _is_disk_full(e: BaseException) -> bool:
    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "disk is full" in str(e) or "disk full" in str(e)


def _is_read_only(e: BaseException) -> bool:
    text = str(e).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _cause(e: BaseException, path: object) -> str:
    """One line naming why a write failed, for a warning or an error."""
    if _is_disk_full(e):
        return f"the disk holding {path} is full"
    if _is_read_only(e):
        return f"{path} cannot be written (read-only)"
    return f"{path}: {printable(str(e))}"


class VerdictStore:
    """Persistent verdicts. ``VerdictStore()`` opens ``<cache dir>/verdicts.sqlite``.

    ``path=":memory:"`` gives a private in-memory store (tests, unwritable cache dirs).
    ``read_only`` is true when verdicts are read from the file but new ones only kept in memory
    (read-only file or folder, newer schema, full disk); ``skipped`` counts stored rows and new
    verdicts that were not valid and were left out.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self._lock = threading.Lock()
        self.path: Path | str = (
            ":memory:" if path == ":memory:" else Path(path) if path else default_cache_dir() / VERDICTS_DB
        )
        self.read_only = False
        self.skipped = 0
        self._why_read_only = ""
        self._fix_read_only = ""
        self._unsaved: dict[tuple[str, str, str], Verdict] = {}
        self._bad_rows: set[tuple[str, ...]] = set()
        self._select: str | None = f"SELECT {', '.join(_COLUMNS)} FROM verdicts"
        #: The temporary copy a read-only store with an unmerged journal is read from (see _open_read_only).
        self._copy: tempfile.TemporaryDirectory | None = None
        self._conn = self._open()

    # -- opening, recovery -------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            return self._connect(":memory:")
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return self._memory_fallback(path, e)
        if path.is_file() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
            return self._open_read_only(
                path, f"{'its folder' if os.access(path, os.W_OK) else 'the file'} is read-only"
            )
        try:
            return self._connect(str(path))
        except _NewerSchema as e:
            return self._open_read_only(
                path,
                f"it was written by a newer yolo_rdna1 (verdict schema {e.version}; this one writes {SCHEMA_VERSION})",
                "upgrade yolo_rdna1",
            )
        except sqlite3.DatabaseError as e:
            if _is_corruption(e):  # gone meanwhile too: another process is moving it aside (see _rebuild)
                return self._rebuild(path, e)
            if path.is_file() and path.stat().st_size:  # read-only, full disk, locked: read what is there
                return self._open_read_only(path, _cause(e, path))
            return self._memory_fallback(path, e)
        except OSError as e:
            return self._memory_fallback(path, e)

    def _rebuild(self, path: Path, error: Exception) -> sqlite3.Connection:
        """A file that is not a database: keep it aside (never delete it) and start a new store.

        Every DDP rank opens the store at once, so the check and the move happen under a lock
        (``<name>.lock`` beside it): the first process moves the file aside and starts the new
        store, the next one finds that store sound and opens it. The journal files go first and
        the database last, so a process that opens the store meanwhile sees the damaged file (and
        waits for the lock) or the moved one (and starts a new store), never half of each.
        """
        try:
            with _file_lock(Path(f"{path}.lock")):
                try:
                    return self._connect(str(path))  # another process rebuilt it while this one waited
                except sqlite3.DatabaseError as e:
                    if not (_is_corruption(e) and path.exists()):
                        raise
                    error = e
                aside = aside_path(path, "corrupt", _SQLITE_FILES)
                for suffix in reversed(_SQLITE_FILES):
                    p = Path(f"{path}{suffix}")
                    if p.exists():
                        p.replace(Path(f"{aside}{suffix}"))
                conn = self._connect(str(path))
        except (OSError, sqlite3.Error) as e:
            return self._memory_fallback(path, e)
        LOGGER.warning(
            "yolo_rdna1: verdict store %s was corrupt (%s); moved it to %s and started a new one", path, error, aside
        )
        return conn

    def _memory_fallback(self, path: Path, error: Exception) -> sqlite3.Connection:
        LOGGER.warning(
            "yolo_rdna1: cannot write the verdict store at %s (%s); keeping verdicts in memory for this process. "
            "Set %s to a writable folder to keep them.",
            path,
            _cause(error, path),
            CACHE_ENV,
        )
        self.path = ":memory:"
        return self._connect(":memory:")

    def _open_read_only(self, path: Path, why: str, fix: str = "") -> sqlite3.Connection:
        """Read the store without ever writing it (``mode=ro``; ``immutable`` where SQLite cannot
        even create the files a WAL reader needs, as in a read-only folder).

        ``immutable`` reads the database file alone. When a writer died before it moved its
        committed rows from the ``-wal`` file into the database, and the folder is read-only, the
        database and its ``-wal`` file are copied to a temporary folder and the copy is read
        (``mode=ro``), so no committed verdict is lost; the copy goes when the store is closed.
        """
        error: Exception | None = None
        tries = [(path, "mode=ro"), (path, "mode=ro&immutable=1")]
        wal = Path(f"{path}-wal")
        if not os.access(path.parent, os.W_OK) and wal.is_file() and wal.stat().st_size:
            try:
                tries.insert(0, (self._copy_of(path), "mode=ro"))
            except OSError as e:
                LOGGER.debug("yolo_rdna1: cannot copy the verdict store %s to read its journal: %s", path, e)
        for target, query in tries:
            conn = sqlite3.connect(
                f"{target.resolve().as_uri()}?{query}",
                uri=True,
                timeout=60.0,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.text_factory = _decode
            try:
                present = {row[1] for row in conn.execute("PRAGMA table_info(verdicts)")}
                break
            except sqlite3.DatabaseError as e:
                conn.close()
                error = e
        else:
            return self._memory_fallback(path, error or OSError("unreadable"))
        self.read_only = True
        self._why_read_only = f"verdict store {path}: {why}"
        self._fix_read_only = fix or "make it writable"
        if {"device", "env_profile", "signature", "verdict"} <= present:
            self._select = (
                "SELECT "
                + ", ".join(c if c in present else f"{_DEFAULTS[c]} AS {c}" for c in _COLUMNS)
                + " FROM verdicts"
            )
            count = conn.execute("SELECT count(*) FROM verdicts").fetchone()[0]
        else:
            self._select, count = None, 0
        LOGGER.warning(
            "yolo_rdna1: %s; routing from its %d stored verdicts, new verdicts are kept in "
            "memory for this process only. To keep them, %s, or set %s to another folder.",
            self._why_read_only,
            count,
            self._fix_read_only,
            CACHE_ENV,
        )
        return conn

    def _copy_of(self, path: Path) -> Path:
        """A private copy of the store and its ``-wal`` file, kept until :meth:`close`. The dead
        writer's ``-shm`` index is not copied: SQLite rebuilds it from the ``-wal`` file."""
        self._copy = tempfile.TemporaryDirectory(prefix="yolo_rdna1-verdicts-")
        copy = Path(self._copy.name) / path.name
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        return copy

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        """Open (creating or upgrading in place) a store of this schema for reading and writing."""
        conn = sqlite3.connect(target, timeout=60.0, isolation_level=None, check_same_thread=False)
        conn.text_factory = _decode
        try:
            version = _schema_version(conn)
            if version is not None and version > SCHEMA_VERSION:
                raise _NewerSchema(version)
            if target != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _CREATE:
                    conn.execute(statement)
                version = _schema_version(conn)  # again: another process may have written it meanwhile
                if version is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif version > SCHEMA_VERSION:
                    raise _NewerSchema(version)
                elif version < SCHEMA_VERSION:
                    present = {row[1] for row in conn.execute("PRAGMA table_info(verdicts)")}
                    if "origin" not in present:  # schema 1 -> 2
                        conn.execute("ALTER TABLE verdicts ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
                    conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            conn.execute("SELECT count(*) FROM verdicts").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    # -- reading --------------------------------------------------------------------------------
    def _rows(self, where: str, args: list[str]) -> list[Verdict]:
        """Stored verdicts; a row that is not a valid verdict is left out with a warning."""
        with self._lock:
            try:
                rows = self._conn.execute(self._select + where, args).fetchall() if self._select else []
            except sqlite3.DatabaseError as e:
                raise VerdictStoreError(f"cannot read the verdict store: {_cause(e, self.path)}") from None
            out, new_bad = [], []
            for row in rows:
                try:
                    out.append(_validated(_row_fields(row)))
                except VerdictStoreError as e:
                    key = tuple(map(str, row[:3]))
                    if key not in self._bad_rows:
                        self._bad_rows.add(key)
                        new_bad.append(e)
            self.skipped += len(new_bad)
        if new_bad:
            LOGGER.warning(
                "yolo_rdna1: verdict store %s: left out %d stored row(s) that are not valid verdicts (first: %s); "
                "'yolo-rdna1 verdicts clear' removes them",
                self.path,
                len(new_bad),
                new_bad[0],
            )
        return out

    def get(self, device: str, env_profile: str, signature: str) -> Verdict | None:
        unsaved = self._unsaved.get((device, env_profile, signature))
        if unsaved is not None:
            return unsaved
        rows = self._rows(_KEY_WHERE, [device, env_profile, signature])
        return rows[0] if rows else None

    def query(self, device: str | None = None, env_profile: str | None = None) -> list[Verdict]:
        where, args = [], []
        if device is not None:
            where.append("device=?")
            args.append(device)
        if env_profile is not None:
            where.append("env_profile=?")
            args.append(env_profile)
        found = {
            (v.device, v.env_profile, v.signature): v
            for v in self._rows(f" WHERE {' AND '.join(where)}" if where else "", args)
        }
        with self._lock:
            found.update(
                {k: v for k, v in self._unsaved.items() if device in (None, k[0]) and env_profile in (None, k[1])}
            )
        return [found[k] for k in sorted(found)]

    def table(self, device: str, env_profile: str) -> dict[str, Verdict]:
        """All verdicts of one device and profile by signature key: what a route table reads."""
        return {v.signature: v for v in self.query(device, env_profile)}

    @property
    def durable(self) -> bool:
        """Whether every verdict put so far is in the store's file, none kept in this process's memory only."""
        return self.path != ":memory:" and not self.read_only and not self._unsaved

    # -- writing --------------------------------------------------------------------------------
    def put(self, verdicts: Verdict | Iterable[Verdict], replace: bool = False) -> int:
        """Insert or replace verdicts measured here in one transaction; returns how many were recorded.

        The more cautious verdict wins (as in :meth:`import_json`): a probe's ``ok`` does not
        replace a bad verdict of a crash, a runtime failure or an import; :meth:`get` then still
        returns the bad one. ``replace=True`` writes the verdicts whatever is stored.

        Called from trainings and probes, so it never raises for the store's sake: a verdict that
        is not valid (a torn breadcrumb line) is left out with a warning and counted in
        ``skipped``; when the store cannot be written (read-only, newer schema, full disk) the
        verdicts are kept in memory for this process, with one warning naming the cause.
        """
        rows = []
        for v in [verdicts] if isinstance(verdicts, Verdict) else list(verdicts):
            try:
                rows.append(_validated(_measured(v)))
            except VerdictStoreError as e:
                self.skipped += 1
                LOGGER.warning("yolo_rdna1: not recording a verdict for %s: %s", printable(str(v.signature))[:120], e)
        if not rows:
            return 0
        cause = ""
        recorded = len(rows)
        with self._lock:
            first = not self._unsaved
            # what an earlier write could not store (a full disk) is written with these, once it can be
            batch = dict(self._unsaved)
            if not self.read_only:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")  # before the look-ups: no write between them and ours
                except sqlite3.Error as e:
                    _rollback(self._conn)
                    cause = _cause(e, self.path)
            for v in rows:
                key = (v.device, v.env_profile, v.signature)
                if not replace and not v.bad and _more_cautious(batch.get(key) or self._stored(key), v):
                    recorded -= 1
                    continue
                batch[key] = v
            if not self.read_only and not cause:
                try:
                    self._conn.executemany(_INSERT, [tuple(getattr(v, c) for c in _COLUMNS) for v in batch.values()])
                    self._conn.execute("COMMIT")
                except sqlite3.Error as e:
                    _rollback(self._conn)
                    cause = _cause(e, self.path)
            self._unsaved = batch if self.read_only or cause else {}
            first = bool(cause) and first
        if first:  # a read-only store warned when it was opened
            LOGGER.warning(
                "yolo_rdna1: cannot write the verdict store: %s; nothing of this write was stored, its %d verdict(s) "
                "and later unstored ones are kept in memory for this process only",
                cause,
                len(rows),
            )
        return recorded

    def _stored(self, key: tuple[str, str, str]) -> Verdict | None:
        """The valid stored verdict of one key (the caller holds the lock); None when there is none
        or the store cannot be read (the write that follows then names the cause)."""
        if self._select is None:
            return None
        try:
            rows = self._conn.execute(self._select + _KEY_WHERE, key).fetchall()
        except sqlite3.Error:
            return None
        return _row_verdict(rows[0]) if rows else None

    def _writable(self, action: str) -> None:
        if self.read_only:
            raise VerdictStoreError(
                f"{self._why_read_only}; nothing was {action}. To change "
                f"it, {self._fix_read_only}, or give another cache=FOLDER"
            )

    def clear(self, device: str | None = None, env_profile: str | None = None) -> int:
        self._writable("removed")
        where, args = [], []
        if device is not None:
            where.append("device=?")
            args.append(device)
        if env_profile is not None:
            where.append("env_profile=?")
            args.append(env_profile)
        with self._lock:
            try:
                cur = self._conn.execute(
                    "DELETE FROM verdicts" + (f" WHERE {' AND '.join(where)}" if where else ""), args
                )
            except sqlite3.Error as e:
                raise VerdictStoreError(
                    f"cannot remove verdicts: {_cause(e, self.path)}; nothing was removed"
                ) from None
            for k in [k for k in self._unsaved if device in (None, k[0]) and env_profile in (None, k[1])]:
                del self._unsaved[k]
            return cur.rowcount

    # -- sharing ------------------------------------------------------------------------------
    def export_json(self, path: str | os.PathLike, device: str | None = None) -> int:
        """Write the verdicts (of one device, or all) to a file others can import; returns how many."""
        verdicts = self.query(device)
        data = {
            "format": EXPORT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "exported_by": {"host": socket.gethostname()[:_MAX_NAME]},
            "verdicts": [asdict(v) for v in verdicts],
        }
        try:
            atomic_write(path, json.dumps(data, indent=1) + "\n")
        except OSError as e:
            raise VerdictStoreError(f"cannot write the export: {_cause(e, path)}; nothing was written") from None
        return len(verdicts)

    def import_json(self, path: str | os.PathLike, replace: bool = False) -> ImportReport:
        """Add verdicts another user exported; returns what was added, replaced and kept, and why.

        The file is untrusted: every field is checked before anything is written, and the whole
        import is one transaction (all or nothing). For a key this machine already has, the more
        cautious verdict wins: a bad verdict beats ``ok``, and between two of the same kind one
        measured here beats an import. ``replace=True`` lets the file's verdicts replace this
        machine's own, whatever they say.
        """
        p = Path(path)
        entries, host = _read_export(p)
        self._writable("imported")
        report = ImportReport(str(p), host, str(self.path), replace)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                current: dict[tuple[str, str, str], Verdict | None] = {}
                writes: dict[tuple[str, str, str], Verdict] = {}
                for new in entries:
                    key = (new.device, new.env_profile, new.signature)
                    if key not in current:  # this process's unstored verdicts count as this machine's
                        rows = self._conn.execute(self._select + _KEY_WHERE, key).fetchall()  # type: ignore[operator]
                        current[key] = self._unsaved.get(key) or (_valid_or_none(rows[0]) if rows else None)
                    action, reason = _decide(current[key], new, replace)
                    report.count(new, current[key], action, reason)
                    if action in ("added", "replaced"):
                        current[key] = writes[key] = new
                self._conn.executemany(_INSERT, [tuple(getattr(v, c) for c in _COLUMNS) for v in writes.values()])
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                _rollback(self._conn)
                raise VerdictStoreError(
                    f"cannot import into the verdict store: {_cause(e, self.path)}; nothing was imported"
                ) from None
            for key in writes:
                self._unsaved.pop(key, None)
        return report

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._copy is not None:
                self._copy.cleanup()
                self._copy = None

    def __iter__(self) -> Iterator[Verdict]:
        return iter(self.query())


def _measured(v: Verdict) -> dict[str, Any]:
    """The fields of a verdict measured here, with what does not change a route made to fit:
    a long detail cut, a timing that is not a number dropped. A bad verdict must never be lost
    to a detail or a timing; a key that is not a signature key is refused (see put)."""
    raw = asdict(v)
    raw["detail"] = str(v.detail).encode("utf-8", "backslashreplace").decode("utf-8")[:_MAX_DETAIL]
    for name in ("vendor_ms", "bypass_ms"):
        try:
            _number(name, raw[name], _MAX_MS, optional=True)
        except VerdictStoreError:
            raw[name] = None
    algorithm = raw["algorithm"]
    raw["algorithm"] = None if algorithm is None else printable(str(algorithm))[:_MAX_NAME] or None
    return raw


def _row_fields(row: tuple) -> dict[str, Any]:
    """A stored row as fields to validate; a detail longer than a new one may be is cut, not refused."""
    return {**dict(zip(_COLUMNS, row)), "detail": row[4][:_MAX_DETAIL] if isinstance(row[4], str) else row[4]}


def _row_verdict(row: tuple) -> Verdict | None:
    """A stored row as a verdict, as a read returns it; None when it is not valid."""
    try:
        return _validated(_row_fields(row))
    except VerdictStoreError:
        return None


def _valid_or_none(row: tuple) -> Verdict | None:
    """A stored row as a verdict; None when it is not valid (an import then replaces it)."""
    try:
        return _validated(dict(zip(_COLUMNS, row)))
    except VerdictStoreError:
        return None


def _more_cautious(local: Verdict | None, new: Verdict) -> str:
    """Why ``local`` stays when ``new`` would replace it, the rule of every write: the more
    cautious verdict wins, a bad verdict beats ``ok``. '' when ``new`` may replace it.

    One exception: a probe may re-measure what a probe found (``probe refresh=True`` after a
    driver update). What a crash, a runtime failure or an import found stays bad: an isolated
    probe does not run the conv as a training does, so its ``ok`` does not undo a crash.
    """
    if local is None or not local.bad or new.bad or (local.source == new.source == "probe"):
        return ""
    by = "imported" if new.source == "import" else f"{new.source}'s"
    return f"{'measured' if local.measured_here else 'imported'} {local.verdict} here beats the {by} ok"


def _decide(local: Verdict | None, new: Verdict, replace: bool) -> tuple[str, str]:
    """``(action, reason)`` for one imported verdict: ``added``, ``replaced``, ``kept`` or ``unchanged``."""
    if local is None:
        return "added", "new here"
    same = (local.verdict, local.detail, local.vendor_ms, local.bypass_ms, local.algorithm) == (
        new.verdict,
        new.detail,
        new.vendor_ms,
        new.bypass_ms,
        new.algorithm,
    )
    if same and local.source == "import":
        return "unchanged", "the same verdict was imported before"
    if replace:
        return "replaced", "replace was asked for"
    kept = _more_cautious(local, new)
    if kept:
        return "kept", kept
    if new.bad and not local.bad:
        return "replaced", f"the imported {new.verdict} is more cautious than ok"
    if local.measured_here:
        return "kept", f"measured here ({local.source}) beats an import"
    return "replaced", "a newer import of the same kind"


def _read_export(p: Path) -> tuple[list[Verdict], str]:
    """The validated verdicts of an export file and the host that exported it (if it says);
    refuses the whole file with one line (which entry, which field, what is wrong) at the first
    problem."""
    if not p.is_file():
        raise VerdictStoreError(f"{p}: no such file; give the path of a file written by 'yolo-rdna1 verdicts export'")
    try:
        size = p.stat().st_size
        data = json.loads(p.read_bytes().decode("utf-8")) if size <= _MAX_FILE else None
    except OSError as e:
        raise VerdictStoreError(f"{p}: cannot read it ({printable(e.strerror or str(e))})") from None
    except (ValueError, RecursionError) as e:  # JSON, UTF-8, nesting
        raise VerdictStoreError(
            f"{p}: not a JSON file ({printable(str(e))[:120]}); export it again with 'yolo-rdna1 verdicts export'"
        ) from None
    if size > _MAX_FILE:
        raise VerdictStoreError(
            f"{p}: {size} bytes, more than a verdict export holds ({_MAX_FILE} at most); nothing was imported"
        )
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise VerdictStoreError(f'{p}: not a yolo_rdna1 verdict export (no "format": "{EXPORT_FORMAT}")')
    version = data.get("schema_version")
    if isinstance(version, bool) or version not in EXPORT_VERSIONS:
        raise VerdictStoreError(
            f"{p}: written with verdict schema {printable(repr(version))[:40]}, this version reads schema "
            f"{', '.join(map(str, EXPORT_VERSIONS))}; export it again with the same yolo_rdna1 version, or re-probe"
        )
    unknown = sorted(
        printable(str(k))[:40] for k in data if k not in ("format", "schema_version", "exported_by", "verdicts")
    )
    if unknown:
        raise VerdictStoreError(f"{p}: unknown top-level key(s) {unknown}; nothing was imported")
    host = ""
    by = data.get("exported_by", {})
    try:
        if not isinstance(by, dict) or any(k != "host" for k in by):
            raise VerdictStoreError("'exported_by' must be {\"host\": <name>}")
        host = _text("exported_by.host", by.get("host", ""), _MAX_NAME, empty=True)
    except VerdictStoreError as e:
        raise VerdictStoreError(f"{p}: {e}; nothing was imported") from None
    origin = f"{p.name[:100]} from host {host}" if host else p.name[:100]
    raw_entries = data.get("verdicts")
    if not isinstance(raw_entries, list):
        raise VerdictStoreError(f"{p}: 'verdicts' must be a list of verdicts; nothing was imported")
    entries = []
    for i, raw in enumerate(raw_entries):
        try:
            if not isinstance(raw, dict):
                raise VerdictStoreError(f"must be an object of fields, got {type(raw).__name__}")
            v = _validated(raw)
            v.origin = printable(f"{origin} ({v.source} there)")[:_MAX_NAME]
            v.source = "import"
        except VerdictStoreError as e:
            raise VerdictStoreError(f"{p}: verdict {i}: {e}; nothing was imported") from None
        entries.append(v)
    return entries, host


@dataclass
class ImportReport:
    """What one import did, per device: verdicts added, replaced, kept (and why), unchanged."""

    file: str
    host: str
    store: str
    replace: bool
    #: device -> Counter of (action, reason)
    devices: dict[str, Counter] = field(default_factory=dict)
    #: device -> this machine's bad verdicts an imported ``ok`` did not replace (signature, env, local verdict)
    kept_bad: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def count(self, new: Verdict, local: Verdict | None, action: str, reason: str) -> None:
        self.devices.setdefault(new.device, Counter())[(action, reason)] += 1
        if action == "kept" and local is not None and local.bad and not new.bad:
            self.kept_bad.setdefault(new.device, []).append((new.signature, new.env_profile, local.verdict))

    def total(self, action: str) -> int:
        return sum(n for c in self.devices.values() for (a, _), n in c.items() if a == action)

    @property
    def written(self) -> int:
        return self.total("added") + self.total("replaced")

    def lines(self, listed: int = 10) -> list[str]:
        """The report the CLI prints, escaped: device names and signatures come from the file."""
        host = f" (exported by host {printable(self.host)})" if self.host else ""
        out = [
            f"imported {printable(self.file)}{host} into {printable(self.store)}"
            + (" (replace: the file's verdicts replace this machine's)" if self.replace else "")
        ]
        for device in sorted(self.devices):
            c = self.devices[device]
            totals = {
                a: sum(n for (b, _), n in c.items() if b == a) for a in ("added", "replaced", "kept", "unchanged")
            }
            out.append(f"  {printable(device)}: " + ", ".join(f"{n} {a}" for a, n in totals.items()))
            for (action, reason), n in sorted(c.items()):
                if action != "added":
                    out.append(f"    {action} {n}: {reason}")
            kept = self.kept_bad.get(device, [])
            for sig, env, verdict in kept[:listed]:
                out.append(f"      kept {verdict} for {printable(sig)} [{printable(env)}]")
            if len(kept) > listed:
                out.append(f"      ... and {len(kept) - listed} more")
        if not self.devices:
            out.append("  the file holds no verdicts")
        return out


#: A SQLite database and the journal files beside it, in the order a reader opens them.
_SQLITE_FILES = ("", "-wal", "-shm")


@contextlib.contextmanager
def _file_lock(lock: Path) -> Iterator[None]:
    """An exclusive lock between processes (``fcntl.flock`` on ``lock``), held for the block.

    Where there is no ``fcntl`` (Windows) the block runs unlocked; a lock file that cannot be
    created (a read-only folder) raises OSError, as the move it guards would.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _is_corruption(e: sqlite3.DatabaseError) -> bool:
    text = str(e).lower()
    return any(s in text for s in ("not a database", "malformed", "corrupt", "no such table", "file is not"))


def miopen_driver_command(v: Verdict) -> str:
    """The ``MIOpenDriver`` line that replays this conv (what ``MIOPEN_ENABLE_LOGGING_CMD=1`` prints).

    ``-F`` is 1 forward, 2 backward data, 4 backward weights; the subcommand names the dtype.
    """
    s = v.sig
    sub = {"float16": "convfp16", "bfloat16": "convbfp16"}.get(s.dtype, "conv")
    flag = {"fwd": 1, "bwd_data": 2, "bwd_weight": 4}[s.direction]
    parts = [
        "MIOpenDriver",
        sub,
        "-n",
        s.batch,
        "-c",
        s.in_channels,
        "-H",
        s.height,
        "-W",
        s.width,
        "-k",
        s.out_channels,
        "-y",
        s.kernel[0],
        "-x",
        s.kernel[1],
        "-p",
        s.padding[0],
        "-q",
        s.padding[1],
        "-u",
        s.stride[0],
        "-v",
        s.stride[1],
        "-l",
        s.dilation[0],
        "-j",
        s.dilation[1],
        "-m",
        "trans" if s.transposed else "conv",
        "-g",
        s.groups,
        "-F",
        flag,
        "-t",
        1,
    ]
    if s.channels_last:
        parts += ["--in_layout", "NHWC", "--out_layout", "NHWC", "--fil_layout", "NHWC"]
    return " ".join(map(str, parts))
