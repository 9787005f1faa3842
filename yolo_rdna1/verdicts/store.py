"""The verdict store: what each conv signature does on the vendor route of one device.

Keyed by device fingerprint + MIOpen env profile + signature (with its direction). SQLite in
WAL mode, so two trainings (or a training and a probe) can read and write at once; every write
is a short ``BEGIN IMMEDIATE`` transaction. A store that cannot be opened as a database is moved
aside and rebuilt (verdicts can be re-measured; a crashed run cannot), and a folder that cannot
be written falls back to an in-memory store, each with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from ..runfiles import VERDICTS_DB
from ..signature import ConvSignature
from ..errors import Rdna1Error

LOGGER = logging.getLogger("yolo_rdna1")

SCHEMA_VERSION = 1
VERDICTS = ("ok", "error", "hang", "abort", "nan", "wrong")
#: Verdicts that mean "never run this on the vendor library".
BAD = frozenset(VERDICTS) - {"ok"}
CACHE_ENV = "YOLO_RDNA1_CACHE"


class VerdictStoreError(Rdna1Error):
    """A verdict file that cannot be imported; the message says why and what to do."""


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

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; valid: {', '.join(VERDICTS)}")

    @property
    def sig(self) -> ConvSignature:
        return ConvSignature.from_key(self.signature)

    @property
    def bad(self) -> bool:
        return self.verdict in BAD


def default_cache_dir() -> Path:
    """``$YOLO_RDNA1_CACHE``, else the user cache dir (``$XDG_CACHE_HOME/yolo_rdna1``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yolo_rdna1"


_COLUMNS = ("device", "env_profile", "signature", "verdict", "detail", "vendor_ms", "bypass_ms", "algorithm", "source", "updated")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS verdicts (
    device TEXT NOT NULL, env_profile TEXT NOT NULL, signature TEXT NOT NULL,
    verdict TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', vendor_ms REAL, bypass_ms REAL,
    algorithm TEXT, source TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (device, env_profile, signature)
);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
"""


class VerdictStore:
    """Persistent verdicts. ``VerdictStore()`` opens ``<cache dir>/verdicts.sqlite``.

    ``path=":memory:"`` gives a private in-memory store (tests, unwritable cache dirs).
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self._lock = threading.Lock()
        self.path = ":memory:" if path == ":memory:" else Path(path) if path else default_cache_dir() / VERDICTS_DB
        self._conn = self._open()

    # -- opening, recovery -------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self.path == ":memory:":
            return self._connect(":memory:")
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return self._connect(str(path))
        except sqlite3.DatabaseError as e:
            if _is_corruption(e) and path.exists():
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                for suffix in ("", "-wal", "-shm"):
                    p = Path(str(path) + suffix)
                    if p.exists():
                        p.replace(Path(str(aside) + suffix))
                LOGGER.warning("yolo_rdna1: verdict store %s was corrupt (%s); moved it to %s and started a new one", path, e, aside)
                return self._connect(str(path))
            return self._memory_fallback(path, e)
        except OSError as e:
            return self._memory_fallback(path, e)

    def _memory_fallback(self, path: Path, error: Exception) -> sqlite3.Connection:
        LOGGER.warning(
            "yolo_rdna1: cannot write the verdict store at %s (%s); keeping verdicts in memory for this process. "
            "Set %s to a writable folder to keep them.", path, error, CACHE_ENV,
        )
        self.path = ":memory:"
        return self._connect(":memory:")

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            if target != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
            if int(version) != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"file is not a database of schema {SCHEMA_VERSION} (found {version})")
            conn.execute("SELECT count(*) FROM verdicts").fetchone()
        except Exception:
            conn.close()
            raise
        return conn

    # -- reading --------------------------------------------------------------------------------
    def get(self, device: str, env_profile: str, signature: str) -> Verdict | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM verdicts WHERE device=? AND env_profile=? AND signature=?",
                (device, env_profile, signature),
            ).fetchone()
        return Verdict(*row) if row else None

    def query(self, device: str | None = None, env_profile: str | None = None) -> list[Verdict]:
        where, args = [], []
        if device is not None:
            where.append("device=?")
            args.append(device)
        if env_profile is not None:
            where.append("env_profile=?")
            args.append(env_profile)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM verdicts" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY device, env_profile, signature"
        with self._lock:
            return [Verdict(*row) for row in self._conn.execute(sql, args).fetchall()]

    def table(self, device: str, env_profile: str) -> dict[str, Verdict]:
        """All verdicts of one device and profile by signature key: what a route table reads."""
        return {v.signature: v for v in self.query(device, env_profile)}

    # -- writing --------------------------------------------------------------------------------
    def put(self, verdicts: Verdict | Iterable[Verdict]) -> int:
        """Insert or replace verdicts in one transaction; returns how many were written."""
        rows = [verdicts] if isinstance(verdicts, Verdict) else list(verdicts)
        if not rows:
            return 0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    f"INSERT OR REPLACE INTO verdicts ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    [tuple(getattr(v, c) for c in _COLUMNS) for v in rows],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return len(rows)

    def clear(self, device: str | None = None, env_profile: str | None = None) -> int:
        where, args = [], []
        if device is not None:
            where.append("device=?")
            args.append(device)
        if env_profile is not None:
            where.append("env_profile=?")
            args.append(env_profile)
        with self._lock:
            cur = self._conn.execute("DELETE FROM verdicts" + (f" WHERE {' AND '.join(where)}" if where else ""), args)
            return cur.rowcount

    # -- sharing ------------------------------------------------------------------------------
    def export_json(self, path: str | os.PathLike, device: str | None = None) -> int:
        verdicts = self.query(device)
        data = {"format": "yolo_rdna1.verdicts", "schema_version": SCHEMA_VERSION, "verdicts": [asdict(v) for v in verdicts]}
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
        return len(verdicts)

    def import_json(self, path: str | os.PathLike) -> int:
        """Add verdicts another user exported; validates everything before writing anything."""
        p = Path(path)
        if not p.is_file():
            raise VerdictStoreError(f"{p}: no such file; give the path of a file written by 'yolo-rdna1 verdicts export'")
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise VerdictStoreError(f"{p}: not a JSON file ({e}); export it again with 'yolo-rdna1 verdicts export'") from None
        if not isinstance(data, dict) or data.get("format") != "yolo_rdna1.verdicts":
            raise VerdictStoreError(f"{p}: not a yolo_rdna1 verdict export")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise VerdictStoreError(
                f"{p}: written with verdict schema {data.get('schema_version')!r}, this version reads schema {SCHEMA_VERSION}; "
                "export it again with the same yolo_rdna1 version, or re-probe"
            )
        try:
            verdicts = []
            for raw in data["verdicts"]:
                v = Verdict(**{**raw, "source": "import"})
                v.sig  # validates the key
                verdicts.append(v)
        except (KeyError, TypeError, ValueError) as e:
            raise VerdictStoreError(f"{p}: malformed verdict entry ({e}); nothing was imported") from None
        return self.put(verdicts)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __iter__(self) -> Iterator[Verdict]:
        return iter(self.query())


def _is_corruption(e: sqlite3.DatabaseError) -> bool:
    text = str(e).lower()
    return any(s in text for s in ("not a database", "malformed", "corrupt", "schema", "no such table", "file is not"))


def miopen_driver_command(v: Verdict) -> str:
    """The ``MIOpenDriver`` line that replays this conv (what ``MIOPEN_ENABLE_LOGGING_CMD=1`` prints).

    ``-F`` is 1 forward, 2 backward data, 4 backward weights; the subcommand names the dtype.
    """
    s = v.sig
    sub = {"float16": "convfp16", "bfloat16": "convbfp16"}.get(s.dtype, "conv")
    flag = {"fwd": 1, "bwd_data": 2, "bwd_weight": 4}[s.direction]
    parts = [
        "MIOpenDriver", sub, "-n", s.batch, "-c", s.in_channels, "-H", s.height, "-W", s.width, "-k", s.out_channels,
        "-y", s.kernel[0], "-x", s.kernel[1], "-p", s.padding[0], "-q", s.padding[1], "-u", s.stride[0], "-v", s.stride[1],
        "-l", s.dilation[0], "-j", s.dilation[1], "-m", "trans" if s.transposed else "conv", "-g", s.groups, "-F", flag, "-t", 1,
    ]
    if s.channels_last:
        parts += ["--in_layout", "NHWC", "--out_layout", "NHWC", "--fil_layout", "NHWC"]
    return " ".join(map(str, parts))
