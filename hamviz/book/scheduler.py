"""Running a build's chapters (:class:`Scheduler`): two or more at a time, each in its own process (a crash or
kill of one chapter cannot take the book down), each after the chapters it depends on or early, waiting in the
model store for what they train; the pages rendered in the background while they run (:class:`Renderer`); every
chapter process ended when the build is interrupted."""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from .index import write_index
from .spec import Book, ChapterSpec, pid_alive, write_json


class Renderer:
    """Renders the book (:func:`write_index`) in a background thread whenever :meth:`request` is called, one
    rendering at a time (requests made while one runs give one more); a failed rendering is logged, the next
    request tries again. A request waits ``settle`` seconds first: a build that ends by then (a chapter that runs
    in seconds) renders only once, at the end, instead of competing with its own chapter for the cores."""

    def __init__(self, book: Book, t0: float, log, settle: float = 20.0):
        self.book, self.t0, self.log, self.settle = book, t0, log, settle
        self.cv = threading.Condition()
        self.wanted = self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="hamviz-render", daemon=True)
        self.thread.start()

    def request(self) -> None:
        with self.cv:
            self.wanted = True
            self.cv.notify()

    def stop(self) -> None:
        """Wait for the rendering in progress (not for the ones still wanted: the book renders once more)."""
        with self.cv:
            self.stopping = True
            self.cv.notify()
        self.thread.join()

    def _loop(self) -> None:
        while True:
            with self.cv:
                while not (self.wanted or self.stopping):
                    self.cv.wait()
                if self.cv.wait_for(lambda: self.stopping, timeout=self.settle):
                    return  # the build is over: its final rendering follows
                self.wanted = False
            try:
                write_index(self.book, time.time() - self.t0)
            except Exception as exc:  # noqa: BLE001 -- the chapters go on; the final rendering raises
                self.log(f"[book] the pages could not be rendered now (tried again later): {exc}")


def next_chapter(pending: list[ChapterSpec], running: set[str], ok: set[str]) -> tuple[ChapterSpec, bool] | None:
    """The chapter to start in a free slot, and whether it starts early, or None when none can start now.

    A chapter is *ready* when every chapter it depends on finished ok; the first ready one (book order) starts.
    With none ready, a chapter whose dependencies are each running or ok (at least one still running; the fewest
    still running, then book order) starts early: chapters share what they train through the model store, whose locks
    make the one that needs an artefact another chapter is training wait for it and then load it
    (:func:`hamviz.store.training`), so the compression chapter can begin while the classifier chapter, which trained
    the main model, still fills its strategy table. A chapter with a dependency still pending or failed never starts
    here."""
    def deps_in(names):
        return lambda s: set(s.depends) <= names
    ready = next(filter(deps_in(ok), pending), None)
    if ready is not None:
        return ready, False
    early = [s for s in pending if deps_in(ok | running)(s) and set(s.depends) & running]
    if not early:
        return None
    return min(early, key=lambda s: len(set(s.depends) & running)), True  # the least still to wait for


class _Child:
    """The process of a running chapter, so that the scheduler can stop it (:meth:`cancel`): a chapter started
    early whose dependency then failed is stopped and skipped, as it would have been had it waited."""

    def __init__(self):
        self.proc, self.cancelled, self.reason, self.lock = None, False, "stopped", threading.Lock()

    def attach(self, proc) -> None:
        with self.lock:
            self.proc = proc
            if self.cancelled:
                _kill_group(proc)

    def cancel(self, reason: str) -> None:
        with self.lock:
            self.cancelled, self.reason = True, reason
            if self.proc is not None:
                _kill_group(self.proc)


class Scheduler:
    """Runs the chapters a build must run, ``jobs`` at a time, each in its own process (:func:`run_in_child`) and
    after the chapters it depends on (:func:`next_chapter`: a chapter whose dependencies still run may start early
    and wait for their models in the store). It owns the state of one build's run: the chapters ``pending``, the
    ``running`` ones (future -> chapter) and their processes (``children``), the names of those that finished
    ``ok`` and of those that ``failed`` (or were skipped), and every chapter's result (``results``, stem -> the
    result dict of :func:`hamviz.book.child.run_chapter`). A chapter that depends on a failed one is skipped, never
    started; one started early whose dependency then fails is stopped and skipped. ``renderer``
    (:class:`Renderer`, optional) is asked to render the pages whenever a chapter starts or ends."""

    def __init__(self, book: Book, profile_path: Path, jobs: int, progress, renderer: Renderer | None = None):
        self.book, self.profile_path, self.jobs = book, Path(profile_path), max(1, int(jobs))
        self.progress, self.renderer = progress, renderer
        self.pending: dict[str, ChapterSpec] = {}
        self.running: dict = {}
        self.children: dict[str, _Child] = {}
        self.ok: set[str] = set()
        self.failed: set[str] = set()
        self.results: dict[str, dict] = {}

    def run(self, chapters: list[ChapterSpec]) -> dict[str, dict]:
        """Run ``chapters`` (book order) until each has run, failed or been skipped; returns ``results``. Ctrl-C
        or a failure of the scheduler itself ends every chapter process before it is raised."""
        self.pending.update({s.stem: s for s in chapters})
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while self.pending or self.running:
                    self._skip_dependents_of_failed()
                    self._start(pool)
                    if self.running:
                        self._collect()
            except BaseException:  # no chapter keeps running unsupervised (ended before the pool's exit, which
                for child in self.children.values():  # waits for the threads watching them)
                    child.cancel("the build was interrupted")
                raise
        return self.results

    def _skip_dependents_of_failed(self) -> None:
        for stem, s in list(self.pending.items()):
            if set(s.depends) & self.failed:
                self.results[stem] = {"stem": stem, "status": "skipped",
                                      "error": f"depends on failed chapter(s) {sorted(set(s.depends) & self.failed)}"}
                self.failed.add(s.name)
                del self.pending[stem]

    def _start(self, pool) -> None:
        """Start chapters in the free slots, as :func:`next_chapter` picks them."""
        while self.pending and len(self.running) < self.jobs:
            live = {r.name for r in self.running.values() if not self.children[r.stem].cancelled}
            pick = next_chapter(list(self.pending.values()), live, self.ok)
            if pick is None:
                return
            s, early = pick
            del self.pending[s.stem]
            prefix = progress_prefix(self.book.out, s.stem)
            if early:
                self.progress.log(f"[book] {s.stem}: starting while {', '.join(sorted(set(s.depends) & live))} "
                                  f"still run(s): a model they are training is waited for and loaded from the store")
            self.progress.started(s.stem, prefix)
            self.children[s.stem] = _Child()
            fut = pool.submit(run_in_child, self.book, s, self.profile_path, prefix, self.children[s.stem])
            self.running[fut] = s
            if self.renderer:
                self.renderer.request()  # the index says which chapter runs now

    def _collect(self) -> None:
        """Wait for a chapter to end, record it, and stop the chapters started early whose dependency failed."""
        finished, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
        for fut in finished:
            s = self.running.pop(fut)
            self.children.pop(s.stem, None)
            res = self.results[s.stem] = fut.result()
            (self.ok if res["status"] == "ok" else self.failed).add(s.name)
            self.progress.finished(s.stem, res)
            if self.renderer and (self.pending or self.running):  # after the last one, the final rendering follows
                self.renderer.request()
        for r in self.running.values():
            bad = set(r.depends) & self.failed
            if bad and not self.children[r.stem].cancelled:
                self.children[r.stem].cancel(f"depends on failed chapter(s) {sorted(bad)}")


def progress_prefix(out: Path, stem: str) -> Path:
    """Where a running chapter writes its progress reports (``<prefix>.cells.json``, ``<prefix>.train.json``)."""
    return Path(out) / ".work" / f"{stem}.progress"


def clean_work(out: Path) -> None:
    """Remove what interrupted runs left in ``.work`` (folders of processes that are gone)."""
    work = Path(out) / ".work"
    if not work.is_dir():
        return
    for p in work.iterdir():
        m = re.search(r"-(?:old-)?(\d+)$", p.name)
        if p.is_dir() and m and not pid_alive(m.group(1)):
            shutil.rmtree(p, ignore_errors=True)


def run_in_child(book: Book, spec: ChapterSpec, profile_path: Path, prefix: Path | None = None,
                  child: _Child | None = None) -> dict:
    """Run a chapter in its own process (a crash or kill of one chapter cannot take the book down); it reports
    its progress through the files of ``prefix`` (:mod:`hamviz.book.progress`), removed when it ends. Stopped through
    ``child`` (:meth:`_Child.cancel`), it leaves nothing and is reported skipped."""
    from ..config import PROGRESS_ENV
    marker = book.out / ".work" / f"{spec.stem}.running.json"
    prefix = Path(prefix or progress_prefix(book.out, spec.stem))
    env = dict(os.environ, **{PROGRESS_ENV: str(prefix)})
    args = [sys.executable, "-m", "hamviz.book", str(spec.path), str(profile_path),
            book.profile["data_dir"] or "", str(book.out), book.keys[spec.stem], str(os.getpid())]
    started = time.time()
    # its own session: the book can end the chapter and its kernel together (and the chapter ends itself and its
    # kernel when the book dies: bind_to_parent)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)
    if child is not None:
        child.attach(proc)
    write_json(marker, {"pid": proc.pid, "started": started})
    try:
        output, _ = proc.communicate()
    finally:
        marker.unlink(missing_ok=True)
        for report in (".cells.json", ".train.json"):
            prefix.with_name(prefix.name + report).unlink(missing_ok=True)
    last = output.strip().splitlines()[-1] if output.strip() else ""
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        code = proc.returncode
        if child is not None and child.cancelled:  # stopped by the scheduler: no failure to keep
            shutil.rmtree(book.out / ".work" / f"{spec.stem}-{proc.pid}", ignore_errors=True)
            return {"stem": spec.stem, "status": "skipped", "seconds": round(time.time() - started, 1),
                    "error": f"{child.reason}; it had started early and was stopped"}
        how = (f"was killed by signal {-code} ({_signal_name(-code)}; the out-of-memory killer sends SIGKILL)"
               if code is not None and code < 0 else f"exited with code {code}")
        result = {"stem": spec.stem, "key": book.keys[spec.stem], "status": "failed",
                  "seconds": round(time.time() - started, 1),
                  "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
                  "error": f"the chapter process {how} before reporting: {output[-2000:]}"}
        # what it left is the failed chapter (its partial notebook, to read), as run_chapter files a failure
        failed, work = book.out / "failed" / spec.stem, book.out / ".work" / f"{spec.stem}-{proc.pid}"
        shutil.rmtree(failed, ignore_errors=True)
        failed.parent.mkdir(parents=True, exist_ok=True)
        if work.is_dir():
            work.rename(failed)
        write_json(failed / "failure.json", result)
        return result


def _signal_name(num: int) -> str:
    import signal
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _kill_group(proc) -> None:
    """End a chapter process and its kernel (its own process group)."""
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


