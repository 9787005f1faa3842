"""Writing files so that a crash, a kill or a power cut at any moment leaves the old or the new
version, never half of one.

One helper for every file the plugin replaces (checkpoints, results.csv, verdict exports,
dataset YAMLs, label files, indexes): a temp file in the same folder (``os.replace`` is atomic
only within one file system), flushed and fsynced, renamed over the target, then the folder
fsynced so the rename itself survives a power cut. Temp names are ``.<name>.<pid>.tmp`` so a
sweep can tell leftovers of dead writers (:func:`stale_temps`) from a live writer's.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Union

Data = Union[bytes, str, Callable[[IO[bytes]], object]]


def temp_name(path: Path) -> Path:
    """The temp file this process writes before it replaces ``path``."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(
    path: str | os.PathLike, data: Data, prev: str | os.PathLike | None = None, durable: bool = True
) -> Path:
    """Replace ``path`` with ``data`` (bytes, text in UTF-8, or a function that writes to a binary
    file object, e.g. ``lambda f: torch.save(obj, f)``).

    ``prev``: where ``path``'s earlier version goes, renamed only after the new one is complete
    on disk, so a crash between the two renames leaves ``prev`` (complete) and a temp file that
    :func:`stale_temps` finds. The temp file is removed on every failure, a full disk included,
    and the error is raised unchanged. ``durable=False`` skips the fsyncs (still atomic against a
    kill) for bulk small files whose caller makes them durable another way (the LTDV2 converter
    writes a million labels, syncs once, and checks every label when it resumes).
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if prev is not None and path.exists():
            os.replace(path, prev)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


#: What a file system that cannot fsync a folder (some network and FUSE file systems) answers:
#: the rename is done and nothing more can be made durable there, so it is not an error (as in
#: PostgreSQL's fsync_fname). Every other error (EIO: the disk lost data) is raised.
_NO_DIR_FSYNC = frozenset({errno.EINVAL, errno.EBADF, errno.ENOTSUP, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)})


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames in ``folder`` durable (a power cut after the write must not undo them)."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a folder
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


def aside_path(path: str | os.PathLike, label: str = "corrupt", companions: tuple[str, ...] = ("",)) -> Path:
    """Where a damaged ``path`` goes so that nothing earlier is overwritten: ``<name>.<label>``,
    else ``<name>.<label>.1``, ``.2``, ... the first for which no ``<aside><companion>`` exists
    (``companions=("", "-wal", "-shm")`` for a SQLite file and its journal files). Each file put
    aside may be the only copy of something. Callers that may race hold a lock around the choice
    and the rename."""
    path = Path(path)
    aside, n = path.with_name(f"{path.name}.{label}"), 0
    while any(Path(f"{aside}{c}").exists() or Path(f"{aside}{c}").is_symlink() for c in companions):
        n += 1
        aside = path.with_name(f"{path.name}.{label}.{n}")
    return aside


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a signal-0 check; a foreign user's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temps(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Temp files of :func:`atomic_write` in ``folder`` (for ``name``, or any) whose writer is dead."""
    out = []
    for p in Path(folder).glob(f".{name}.*.tmp"):
        pid = p.name[: -len(".tmp")].rsplit(".", 1)[-1]
        if not pid.isdigit() or not pid_alive(int(pid)):
            out.append(p)
    return out
