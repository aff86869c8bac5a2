"""A chapter's own process (``python -m hamviz.book``, started by :mod:`hamviz.book.scheduler`): it executes
one notebook with papermill into the output folder's ``.work`` and publishes it in ``chapters/`` once it
completed (:func:`run_chapter`), reporting each code cell as it starts, and dies with the book that started it
(:func:`bind_to_parent`)."""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
from pathlib import Path

from .spec import read_json, write_json


def _report_cells(prefix: str):
    """A papermill engine (registered as "hamviz") that writes the code cell being executed, out of how many, to
    ``<prefix>.cells.json`` as each cell starts (read by :mod:`hamviz.book.progress`)."""
    from papermill.engines import NBClientEngine, papermill_engines

    path = prefix + ".cells.json"

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                k = code.index(cell_index) + 1 if cell_index in code else 0
                try:
                    write_json(Path(path), {"cell": k, "cells": len(code), "time": time.time()})
                except OSError:
                    pass  # progress is never worth a failed chapter
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("hamviz", Engine)
    return "hamviz"


def run_chapter(spec_path: Path, profile_path: Path, data_dir: str | None, out: Path,
                key: str) -> dict:
    """Execute one notebook into ``out/.work`` and, if it completes, move it to ``out/chapters``.

    Runs in a child process of the book (see :func:`build`); returns and writes a result dict. With
    $HAMVIZ_PROGRESS set, reports each code cell as it starts (:func:`_report_cells`); the notebook's kernel
    inherits the variable and reports training epochs (:func:`hamviz.training.fit`). The page is rendered
    later, by the book (:func:`write_index`)."""
    import papermill as pm

    from ..config import PROGRESS_ENV

    stem = spec_path.stem
    out = Path(out).resolve()  # the notebook runs in its own folder: every path it gets is absolute
    work = out / ".work" / f"{stem}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    record_path = work / f"{stem}.json"
    nb_out = work / f"{stem}.ipynb"
    engine = _report_cells(os.environ[PROGRESS_ENV]) if os.environ.get(PROGRESS_ENV) else None
    started = time.time()
    error = None
    try:
        pm.execute_notebook(
            str(spec_path), str(nb_out), cwd=str(spec_path.parent), kernel_name="python3",
            parameters={"profile": str(profile_path), "params": {}, "data_dir": data_dir,
                        "record_path": str(record_path)},
            progress_bar=False, log_output=False, report_mode=False, engine_name=engine)
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = f"{type(exc).__name__}: {getattr(exc, 'evalue', None) or exc}"
    seconds = time.time() - started
    record = read_json(record_path) or {}
    if error is None and not record.get("complete"):
        error = ("the notebook finished without marking its record complete "
                 "(its last cell must call ch.finish())")
    result = {"stem": stem, "key": key, "seconds": round(seconds, 1),
              "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(
                  timespec="seconds"),
              "status": "ok" if error is None else "failed", "error": error}
    if error is None:
        write_json(work / "done.json", result)
        final = out / "chapters" / stem
        final.parent.mkdir(parents=True, exist_ok=True)
        trash = out / ".work" / f"{stem}-old-{os.getpid()}"
        if final.exists():
            final.rename(trash)
        work.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(out / "failed" / stem, ignore_errors=True)
    else:
        failed = out / "failed" / stem
        shutil.rmtree(failed, ignore_errors=True)
        failed.parent.mkdir(parents=True, exist_ok=True)
        write_json(work / "failure.json", result)
        work.rename(failed)
    return result


def bind_to_parent(parent: int) -> None:
    """In a chapter process (its own session, see :func:`run_in_child`): die, with the notebook kernel and
    everything else it started, when the book that started it dies, however it dies (``kill -9`` included).
    Linux: the kernel's parent-death signal; elsewhere a watcher thread polls the parent."""
    import signal
    import threading

    def end_group(*_):
        os.killpg(0, signal.SIGKILL)  # this process group: the chapter process and its kernel

    signal.signal(signal.SIGTERM, end_group)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        def watch():
            while os.getppid() == parent:
                time.sleep(1)
            end_group()
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the book died before the signal was armed
        end_group()
