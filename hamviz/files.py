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
* :func:`space_for` / :class:`NoSpace`: a full disk (``ENOSPC``, or the user's quota) while writing is named as
  one -- the device, the folder, the space the write needs -- instead of a bare ``OSError``; :func:`reserve` gives
  a memory-mapped file its blocks up front, so that a full disk is an error at that first write and never a
  ``SIGBUS`` (a dead kernel) at some later write into the map. :func:`atomic_path` names a full disk itself.
* :func:`bar`: every progress bar hamviz shows (decoding the cache, downloads). A tqdm bar on a terminal or in an
  interactive notebook; elsewhere (a log file, CI, a chapter the book runs) a few plain lines -- start, every
  quarter, end -- never carriage-return frames, which a log shows as one endless line.

POSIX only (Linux, macOS), as the rest of hamviz's process handling; without ``fcntl`` locks are not taken.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from .config import PROGRESS_ENV, HamvizError

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


class NoSpace(HamvizError):
    """The file system filled up (``ENOSPC``, or the user's disk quota) while hamviz wrote to it: the message
    names the device, the folder and about how much space the write needs; nothing half-written is left."""


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _device(path: Path) -> str:
    """The device ``path`` lives on, as ``/dev/sda1 (mounted at /home)``, or its mount point where the device is
    not known (no ``/proc/mounts``)."""
    mount = Path(os.path.realpath(path))
    while not mount.exists() and mount != mount.parent:
        mount = mount.parent
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    source = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()  # /proc/mounts writes a space in a path as \040
            if len(fields) > 1 and fields[1].replace("\\040", " ").replace("\\134", "\\") == str(mount):
                source = fields[0]  # the last mount on that point is the one in use
    return f"{source} (mounted at {mount})" if source else f"the file system mounted at {mount}"


def no_space(folder: str | os.PathLike, need_bytes: int | None = None, what: str = "the cache") -> NoSpace:
    """The :class:`NoSpace` error for a full disk under ``folder``, where ``what`` needs about ``need_bytes``."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = f" ({shutil.disk_usage(probe).free / 1e6:.0f} MB free there now)"
    except OSError:
        free = ""
    need = f"{what} needs about {max(1, round(need_bytes / 1e6))} MB" if need_bytes else f"{what} did not fit"
    return NoSpace(f"No space left on {_device(probe)} at {folder}: {need}{free}. Nothing half-written was left "
                   f"behind. Free some space there (or point HAMVIZ_CACHE at a disk with room) and run again.")


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk or an exceeded quota (``OSError`` ``ENOSPC`` / ``EDQUOT``)."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def raise_if_full(exc: BaseException, folder, need_bytes: int | Callable[[], int] | None = None,
                  what: str = "the cache") -> None:
    """Raise :func:`no_space` (from ``exc``) when ``exc`` is a full disk; otherwise return. ``need_bytes`` may be
    a function, called only then."""
    if is_full(exc):
        if callable(need_bytes):
            try:
                need_bytes = int(need_bytes())
            except Exception:  # an estimate only
                need_bytes = None
        raise no_space(folder, need_bytes, what) from exc


@contextlib.contextmanager
def space_for(folder: str | os.PathLike, need_bytes: int | Callable[[], int] | None = None,
              what: str = "the cache") -> Iterator[None]:
    """Run the block; a full disk in it (:func:`is_full`) becomes :class:`NoSpace`, naming the device, ``folder``
    and ``need_bytes``. Cleaning up what the block wrote is the block's own business."""
    try:
        yield
    except OSError as exc:
        raise_if_full(exc, folder, need_bytes, what)
        raise


def reserve(path: str | os.PathLike) -> None:
    """Give the file ``path`` disk blocks for its whole length now (``posix_fallocate``). A memory-mapped file
    (``numpy.lib.format.open_memmap``) is created sparse, so on a full disk the first write into a page that has
    no block kills the process with ``SIGBUS`` ("Kernel died"); reserved, a full disk is an ``OSError`` ``ENOSPC``
    here. Where the call is not available, the free space is compared with the length instead."""
    path = Path(path)
    size = path.stat().st_size
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None and size:
        fd = os.open(path, os.O_RDWR)
        try:
            fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        finally:
            os.close(fd)
    if shutil.disk_usage(path.parent).free < size - path.stat().st_blocks * 512:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A unique temporary path beside ``path`` (same folder, so the rename is atomic) to write the new file to;
    renamed onto ``path`` when the block ends without an error, removed when it raises. A full disk
    (:func:`is_full`) is raised as :class:`NoSpace`, naming the device and the folder."""
    path = Path(path)
    with space_for(path.parent, None, path.name):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise_if_full(exc, path.parent, None, path.name)
        raise


def temp_dir_beside(path: str | os.PathLike) -> Path:
    """A new, uniquely named empty folder beside ``path`` (``<name>.tmp-<pid>-<random>``), with the usual
    permissions (``tempfile.mkdtemp`` makes 0700 folders), to build a folder in and rename onto ``path``."""
    path = Path(path)
    with space_for(path.parent, None, path.name):
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


# ------------------------------------------------------------------------------------------------ progress bars
def live_output(stream=None) -> bool:
    """Whether progress may be drawn in place on ``stream`` (default stderr): it is a terminal, or this runs in an
    interactive notebook's kernel (tqdm draws a widget there). False in a log file, a pipe, CI, and in a chapter
    that ``hamviz book`` runs (``$HAMVIZ_PROGRESS`` set: its output becomes the page)."""
    if os.environ.get(PROGRESS_ENV):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell" and stream in (sys.stdout, sys.stderr)


def bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it", file=None, **tqdm_args):
    """A progress bar over ``iterable`` (or updated by hand, as pooch does: ``total``, ``update``, ``reset``,
    ``close``): ``tqdm.auto.tqdm`` (with ``tqdm_args``) where :func:`live_output`, else :class:`LineBar`."""
    if live_output(file):
        from tqdm.auto import tqdm  # noqa: PLC0415 - only for a live bar
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=file, **tqdm_args)
    return LineBar(iterable, total=total, desc=desc, unit=unit, file=file,
                   unit_scale=bool(tqdm_args.get("unit_scale")))


class LineBar:
    """Progress as plain lines for logs: one when work starts, one as each quarter of ``total`` is passed (or
    every ``every`` seconds when the total is not known), one at the end; no carriage returns."""

    def __init__(self, iterable=None, *, total=None, desc="", unit="it", file=None, unit_scale=False,
                 every: float = 60.0):
        self.iterable, self.desc, self.unit, self.file = iterable, desc or "progress", unit, file
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.unit_scale, self.every = 0, unit_scale, every
        self._start = self._said = None
        self._quarter = 0  # quarters already reported
        self._closed = False

    def _say(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self.file or sys.stderr, flush=True)

    def _amount(self, n, of=None) -> str:
        """``n`` (``of`` a total) in the bar's unit: "1.3 MB", "1.3/5.0 MB", "250/1000 images"."""
        if self.unit_scale and self.unit == "B":
            return f"{n / 1e6:.1f}" + (f"/{of / 1e6:.1f}" if of else "") + " MB"
        plural = "" if (of or n) == 1 or self.unit.endswith("s") else "s"
        return f"{n}" + (f"/{of}" if of else "") + f" {self.unit}{plural}"

    def _begin(self) -> None:
        if self._start is None:
            self._start = self._said = time.time()
            self._say("started" + (f", {self._amount(self.total)}" if self.total else ""))

    def update(self, n: int = 1) -> None:
        self._begin()
        self.n += n
        now, total = time.time(), self.total or 0
        quarter = int(4 * self.n / total) if total else 0
        if (total and self._quarter < quarter < 4) or (not total and now - self._said >= self.every):
            self._quarter, self._said = max(self._quarter, quarter), now
            elapsed = now - self._start
            left = (f", about {elapsed / self.n * (total - self.n):.0f} s left" if total and self.n else "")
            done = f"{self._amount(self.n, total)} ({100 * self.n / total:.0f}%)" if total else self._amount(self.n)
            self._say(f"{done}, {elapsed:.0f} s{left}")

    def reset(self, total=None) -> None:
        """Back to 0 (what is reported stays reported); ``total`` replaces the total when given."""
        self.n = 0
        if total is not None:
            self.total = total

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._begin()
            self._say(f"done, {self._amount(self.n)} in {time.time() - self._start:.0f} s")

    def __iter__(self):
        self._begin()
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
