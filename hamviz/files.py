"""Files in folders that several processes share (two ``hamviz book`` runs into one folder, parallel chapters,
a notebook beside a build): every file is written whole or not at all, and work that must happen once is locked.

* :func:`atomic_path` / :func:`write_atomic`: write under a *unique* temporary name in the target's folder
  (``tempfile.mkstemp``), then rename into place in one step. A reader sees the old file or the new one; two
  writers never share a temporary file (a fixed name such as ``index.html.tmp`` let one writer rename the other's
  file away: ``FileNotFoundError``).
  :func:`temp_dir_beside` does the same for a folder built whole and then renamed into place.
* :func:`locked`: an exclusive advisory lock (``fcntl.flock``) on a lock file that records its holder (pid, host,
  since when). The operating system releases it when the holder closes it or dies, however it dies, so a lock is
  never stale. Waiting or failing at once is the caller's choice; :class:`Busy` names the holder.

POSIX only (Linux, macOS), as the rest of hamviz's process handling; without ``fcntl`` locks are not taken.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from .config import HamvizError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, published files get the usual 0666 & ~umask


class Busy(HamvizError):
    """A lock is held by another process (or another open of it in this one); ``holder`` says by whom."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A unique temporary path beside ``path`` (same folder, so the rename is atomic) to write the new file to;
    renamed onto ``path`` when the block ends without an error, removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def temp_dir_beside(path: str | os.PathLike) -> Path:
    """A new, uniquely named empty folder beside ``path`` (``<name>.tmp-<pid>-<random>``), with the usual
    permissions (``tempfile.mkdtemp`` makes 0700 folders), to build a folder in and rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{path.name}.tmp-{os.getpid()}-"))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def write_atomic(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> None:
    """Write ``data`` (text or bytes) to ``path`` whole or not at all (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding=encoding)
        else:
            tmp.write_bytes(data)


def holder(path: str | os.PathLike) -> dict:
    """What the lock file ``path`` says about its last holder: pid, host, since (ISO time); {} if nothing."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe(who: dict) -> str:
    """"process 1234 on host, since 2026-12-01T10:00:00" (or "another process" when the file says nothing)."""
    if not who.get("pid"):
        return "another process"
    return (f"process {who['pid']}" + (f" on {who['host']}" if who.get("host") else "")
            + (f", since {who['since']}" if who.get("since") else ""))


@contextlib.contextmanager
def locked(path: str | os.PathLike, *, wait: bool = True,
           on_wait: Callable[[dict], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` (created if needed) for the block.

    When another process holds it: ``wait=True`` blocks until it is released (``on_wait(holder)`` is called
    first, e.g. to say who is waited for); ``wait=False`` raises :class:`Busy` at once, naming the holder. The
    lock file is left in place (removing it would race with the next taker); it holds the holder's pid, host
    and start time while the lock is held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = holder(path)
                if not wait:
                    raise Busy(f"{path} is locked by {describe(who)}", who) from None
                if on_wait is not None:
                    on_wait(who)
                fcntl.flock(fd, fcntl.LOCK_EX)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": _dt.datetime.now().isoformat(timespec="seconds"), "time": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
