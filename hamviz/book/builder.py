"""The build (:func:`build`): the checks (:func:`hamviz.book.provision.prepare`), the output folder's lock, the
chapters that are not up to date run by the scheduler (:class:`hamviz.book.scheduler.Scheduler`), the pages rendered
while they run and once more at the end (:func:`hamviz.book.index.write_index`)."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ..config import HamvizError
from ..files import Busy, describe, locked
from .index import write_index
from .progress import BuildProgress
from .provision import prepare
from .scheduler import Renderer, Scheduler, clean_work
from .spec import NOTEBOOKS, Book, chapter_state

#: The lock file of an output folder: held by the build that writes into it (see :func:`build`).
LOCK = ".hamviz-book.lock"


def build(profile="cpu", out="book", data_dir=None, jobs: int | None = None, force: bool = False,
          only=None, notebooks_dir=NOTEBOOKS, log=print, download: bool | None = None,
          progress: BuildProgress | None = None) -> dict:
    """Build (or bring up to date) the results book; returns the book summary (also ``book.json``) with
    ``this_run`` (the result of every chapter run now).

    ``download``: whether missing data and weights may be downloaded first (:func:`hamviz.book.provision.provide`;
    None: unless $HAMVIZ_NO_DOWNLOAD is set). ``progress``: the live view
    (:class:`hamviz.book.progress.BuildProgress`; default: one line through ``log`` as each chapter starts and
    ends). The book's pages are rendered in the background while chapters run (the index shows which one runs),
    and once more at the end. Raises HamvizError for what :func:`prepare` finds before any chapter runs, and
    :class:`hamviz.book.pages.RenderError` when the final rendering fails (the chapters' results are kept).

    One build at a time writes into an output folder: after the checks (:func:`prepare`) the build takes the
    folder's lock (``<out>/.hamviz-book.lock``, released when the build ends or dies), and a second build into the
    same folder stops at once with a HamvizError naming the folder and the process that holds it, before it runs
    anything: it would otherwise train the same models and overwrite the same pages. Builds into different folders
    run side by side (models they share are trained once: :func:`hamviz.training.train_or_load` locks each)."""
    t0 = time.time()
    progress = progress or BuildProgress(log=log)
    book = prepare(profile, out, data_dir, notebooks_dir, only, download=download, log=progress.log)
    book.out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(book.out / LOCK, wait=False))
        except Busy as exc:
            raise HamvizError(f"Another hamviz book is building into {book.out} ({describe(exc.holder)}): two "
                              f"builds into one folder would train the same models twice and overwrite each other's "
                              f"pages. Wait for it to finish (or stop it), or pass --out another folder.") from None
        return _build_locked(book, jobs, force, t0, progress)


def _build_locked(book: Book, jobs, force: bool, t0: float, progress: BuildProgress) -> dict:
    """:func:`build` once it holds the output folder's lock."""
    clean_work(book.out)
    jobs = jobs or book.profile.get("jobs", 1)
    profile_path = Path(book.profile["_source"])
    todo = [s for s in book.chapters if force or not chapter_state(book, s)["current"]]
    for s in book.chapters:
        if s not in todo:
            progress.log(f"[book] {s.stem}: up to date (key {book.keys[s.stem]})")
    renderer = Renderer(book, t0, progress.log) if todo else None
    try:
        results = Scheduler(book, profile_path, jobs, progress, renderer).run(todo)
    finally:
        if renderer:
            renderer.stop()
    summary = write_index(book, time.time() - t0)  # the final pages, rendered here: errors are raised
    summary["this_run"] = results
    return summary

