"""A per-worker, append-only write-ahead spool on local disk, so a SIGKILL loses no record.

The usage recorder (``realtime.py``) and the request-log shipper (``request_log.py``) keep what
they record in memory and post it to the config center every second. Before a record is merged
into memory it is appended here, one line per record, to the worker's current *segment* file.
At each flush the recorder *seals* the segment (the next records go to a new one) and sends what
the sealed segment holds; once the config center has it, the segment is *released* (deleted).

What survives what: a line is one ``os.write`` to an ``O_APPEND`` file descriptor, without
fsync. Once ``write`` has returned the data is in the kernel's page cache, which outlives the
*process*: a SIGKILL, the OOM killer or a crash of the worker loses nothing written. A crash of
the *host* (power loss, kernel panic) may lose the last seconds that had not reached the disk;
fsyncing every request would cost milliseconds per request and is not done.

Who owns a segment: its writer holds an exclusive ``fcntl.flock`` on it from creation (made under
a ``.tmp`` name, locked, then renamed, so nobody sees it unlocked) until it is released. The
kernel drops the lock when the process dies, however it dies. So a segment whose lock someone
else can take belongs to a dead writer: an *orphan*, whatever its pid says (pids are reused, and
restart from 1 in a container). :meth:`Spool.orphans` claims such segments (it keeps the lock,
so two survivors never recover the same one at once) for the caller to send and release.

Segments are named ``{kind}-{destination}-{host}-{pid}-{random}-{seq}.jsonl``: ``kind`` is
``usage`` or ``requests``; ``destination`` is a short hash of where the records go (the config
center's URL), so a segment is only ever recovered towards the destination it was written for.

The directory is ``AIGW_SPOOL_DIR``, else ``<AIGW_DATA_DIR or .aigw>/spool``, created if missing;
:func:`spool_from_env` returns None (and logs one warning) when it cannot be used, and the
recorders then keep today's in-memory behaviour.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("aigw.gateway.spool")

SPOOL_DIR_ENV = "AIGW_SPOOL_DIR"
DATA_DIR_ENV = "AIGW_DATA_DIR"
SUFFIX = ".jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9.]")


def spool_directory(env: Mapping[str, str]) -> Path:
    """``AIGW_SPOOL_DIR``, else ``<AIGW_DATA_DIR or .aigw>/spool``."""
    explicit = env.get(SPOOL_DIR_ENV)
    if explicit:
        return Path(explicit)
    return Path(env.get(DATA_DIR_ENV) or ".aigw") / "spool"


def destination_tag(destination: str) -> str:
    """A short, file-name-safe name for where the records of a spool go."""
    return hashlib.sha256(destination.encode()).hexdigest()[:10]


@dataclass(eq=False)
class Segment:
    """One segment file and the descriptor that holds its lock (None once closed)."""

    path: Path
    fd: int | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The file name without its suffix: unique across hosts, processes and time."""
        return self.path.name[: -len(SUFFIX)]

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # drops the lock


class Spool:
    """The segments of one kind of record of one worker (see the module doc)."""

    def __init__(self, directory: Path, kind: str, destination: str = "") -> None:
        self.directory = directory
        self.kind = kind
        host = _UNSAFE.sub("_", socket.gethostname())[:32] or "host"
        self.prefix = f"{kind}-{destination_tag(destination)}-"
        self._stem = f"{self.prefix}{host}-{os.getpid()}-{secrets.token_hex(6)}-"
        self._seq = 0
        self._current: Segment | None = None
        self._pid = os.getpid()
        directory.mkdir(parents=True, exist_ok=True)

    # -- the request path -------------------------------------------------------------------------

    def append(self, line: bytes) -> None:
        """Append one record (a line ending in ``\\n``): a single ``os.write`` to the current
        segment, opened on first use. Raises ``OSError`` when the disk does not take it."""
        current = self._current
        if current is None or current.fd is None:
            current = self._open_next()
        os.write(current.fd, line)  # type: ignore[arg-type]

    # -- off the request path ---------------------------------------------------------------------

    def seal(self) -> Segment | None:
        """Close the current segment to new records and return it (None when nothing was
        appended since the last seal); its lock is kept until :meth:`release`."""
        current = self._current
        if current is None or current.fd is None or os.fstat(current.fd).st_size == 0:
            return None
        self._open_next()
        return current

    def release(self, segment: Segment) -> None:
        """The segment's records are delivered: delete it (then let go of its lock)."""
        try:
            segment.path.unlink(missing_ok=True)
        finally:
            segment.close()

    def rewrite(self, segment: Segment, lines: list[bytes]) -> Segment:
        """A sealed segment's content replaced by ``lines``, under the same name: written to a
        locked temporary file that is then renamed over it (atomic: a recovery reads the old
        content or the new, never both, never neither). Blocking: call it in a thread."""
        temporary = segment.path.with_name(segment.path.name + ".rw.tmp")
        fd = _create_locked(temporary)
        try:
            os.write(fd, b"".join(line + b"\n" for line in lines))
            os.rename(temporary, segment.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            os.close(fd)
            raise
        segment.close()
        return Segment(segment.path, fd)

    def orphans(self) -> Iterator[Segment]:
        """Segments of this kind and destination whose writer is dead, claimed (locked) one at a
        time: the caller reads, sends, then :meth:`release` s it, or closes it to try later."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as exc:
            log.warning("spool: cannot list %s: %s", self.directory, exc)
            return
        for name in names:
            if not name.startswith(self.prefix):
                continue
            if name.endswith(".tmp"):
                _remove_if_abandoned(self.directory / name)
                continue
            if not name.endswith(SUFFIX):
                continue
            if name.startswith(self._stem) and os.getpid() == self._pid:
                continue  # ours, alive
            segment = _claim(self.directory / name)
            if segment is not None:
                yield segment

    def close(self) -> None:
        """Stop appending: an empty current segment is deleted, one with records stays (as an
        orphan, for whoever starts next) with the segments not released."""
        current, self._current = self._current, None
        if current is None or current.fd is None:
            return
        if os.fstat(current.fd).st_size == 0:
            self.release(current)
        else:
            current.close()

    def _open_next(self) -> Segment:
        """Create the next segment under a temporary name, lock it, then give it its name: a
        scanner never sees it unlocked."""
        self._seq += 1
        path = self.directory / f"{self._stem}{self._seq:06d}{SUFFIX}"
        temporary = path.with_name(path.name + ".tmp")
        fd = _create_locked(temporary)
        try:
            os.rename(temporary, path)
        except BaseException:
            os.close(fd)
            raise
        self._current = Segment(path, fd)
        return self._current


def _create_locked(path: Path) -> int:
    """A new file, open for appending, under our exclusive lock."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_if_abandoned(path: Path) -> None:
    """A temporary file whose writer died before renaming it: its content is elsewhere. Only
    old ones: a live writer's is locked an instant after it is created, not before."""
    try:
        if time.time() - path.stat().st_mtime < 60:
            return
    except FileNotFoundError:
        return
    segment = _claim(path)
    if segment is not None:
        path.unlink(missing_ok=True)
        segment.close()


def _claim(path: Path) -> Segment | None:
    """The segment at ``path`` locked by us, or None when its writer (or another recoverer)
    holds it, or it was deleted meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    if os.fstat(fd).st_nlink == 0:  # released by a recoverer between our open and our lock
        os.close(fd)
        return None
    return Segment(path, fd)


def read_lines(segment: Segment) -> tuple[list[bytes], int]:
    """The complete lines of a segment, and how many bytes at its end were not one (a record
    torn by the death of its writer mid-write). Blocking: call it in a thread for big files."""
    data = segment.path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), len(data) - end


def spool_from_env(env: Mapping[str, str], kind: str, destination: str) -> Spool | None:
    """This worker's spool of ``kind`` records for ``destination``, or None (logged once) when
    the directory cannot be created or written: records then live in memory only."""
    directory = spool_directory(env)
    try:
        spool = Spool(directory, kind, destination)
        probe = directory / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        _warn_unusable(directory, exc)
        return None
    return spool


_warned: set[Path] = set()


def _warn_unusable(directory: Path, exc: OSError) -> None:
    if directory not in _warned:
        _warned.add(directory)
        log.warning(
            "spool: %s is not usable (%s); usage and request records are kept in memory only, "
            "and a SIGKILL loses the last second of them (set %s to a writable directory)",
            directory,
            exc,
            SPOOL_DIR_ENV,
        )
