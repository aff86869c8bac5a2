"""What ``hamviz book`` shows while it builds: per running chapter, the cell being executed out of how many and,
while a model trains, its epoch, batch and an estimated time left (tqdm bars, redrawn twice a second); at the
end, a table of every chapter with its status and times.

The chapter processes report through small JSON files the book names in ``$HAMVIZ_PROGRESS`` (a path prefix,
one per chapter): ``<prefix>.cells.json``, written by the chapter process as papermill starts each code cell
({"cell": k, "cells": n}), and ``<prefix>.train.json``, written by :func:`hamviz.training.fit` in the notebook's
kernel at each epoch and every few seconds within one ({"label", "epoch", "epochs", "batch", "steps",
"started"}; epochs and batches 1-based). This module only reads them: a file that is missing, half-written or
stale is skipped.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from .frontpage import duration

CELLS = ".cells.json"
TRAIN = ".train.json"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def training_line(train: dict | None, now: float | None = None) -> str:
    """"training <label>: epoch e/E, batch b/B, about 1:23 left" from a ``.train.json`` report ("" for None).
    The time left assumes every epoch runs (early stopping can end training sooner)."""
    if not train or not train.get("epochs"):
        return ""
    now = time.time() if now is None else now
    epochs, epoch = int(train["epochs"]), int(train.get("epoch") or 1)
    steps, batch = int(train.get("steps") or 0), int(train.get("batch") or 0)
    done = (epoch - 1 + (batch / steps if steps else 0)) / epochs
    line = f"training {train.get('label', 'a model')}: epoch {epoch}/{epochs}"
    if steps:
        line += f", batch {batch}/{steps}"
    elapsed = now - float(train.get("started") or now)
    if done > 0.02 and elapsed > 1:
        left = elapsed / done * (1 - done)
        line += f", at most {int(left // 60)}:{int(left % 60):02d} left"
    return line


class BuildProgress:
    """The live view of a book build (``live=True``: tqdm bars on ``stream``, a terminal) or plain lines
    (``live=False``: one line as each chapter starts and ends, said through ``log``, default print to
    ``stream``, for logs); ``quiet=True`` shows nothing, not even the table :meth:`close` prints otherwise.
    Thread-safe: the book calls :meth:`started` and :meth:`finished` from its scheduler, and :meth:`log` for
    anything else it says."""

    def __init__(self, live: bool = False, quiet: bool = False, stream=None, interval: float = 0.5, log=None):
        self.live = live and not quiet
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self._say = log or (lambda message: print(message, file=self.stream, flush=True))
        self.interval = interval
        self._bars: dict[str, object] = {}
        self._prefix: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if self.live:
            self._thread = threading.Thread(target=self._poll_loop, name="hamviz-progress", daemon=True)
            self._thread.start()

    # -- what the book calls
    def log(self, message: str) -> None:
        """A line of the book's log (above the bars when live; nothing when quiet)."""
        if self.quiet:
            return
        if self.live:
            from tqdm.auto import tqdm
            with self._lock:
                tqdm.write(str(message), file=self.stream)
        else:
            self._say(message)

    def started(self, stem: str, prefix: Path) -> None:
        """Chapter ``stem`` started; it reports through the files of ``prefix``."""
        if not self.live:
            self.log(f"[book] {stem}: running")
            return
        from tqdm.auto import tqdm
        with self._lock:
            self._prefix[stem] = Path(prefix)
            used = {getattr(b, "hamviz_line", None) for b in self._bars.values()}
            position = next(i for i in range(len(used) + 1) if i not in used)  # the first free line
            self._bars[stem] = tqdm(total=1, desc=f"{stem}: starting", unit="cell", position=position,
                                    leave=False, file=self.stream, dynamic_ncols=True,
                                    bar_format="{desc} {bar:20} {elapsed}{postfix}")
            self._bars[stem].hamviz_line = position

    def finished(self, stem: str, result: dict) -> None:
        """Chapter ``stem`` ended with ``result`` (status, seconds, error)."""
        line = (f"[book] {stem}: {result.get('status')} in {result.get('seconds') or 0:.0f} s"
                + (f" -- {result['error']}" if result.get("error") else ""))
        with self._lock:
            bar = self._bars.pop(stem, None)
            self._prefix.pop(stem, None)
            if bar is not None:
                bar.close()
        self.log(line)

    def close(self, summary: dict | None = None) -> None:
        """Stop the bars and, unless quiet, print the table of chapters (``summary``: what the build returned,
        its ``chapters`` and ``this_run``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
        if summary is not None and not self.quiet:
            self.log(table(summary))

    # -- the live part
    def _poll_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Read every running chapter's reports and redraw its bar."""
        with self._lock:
            for stem, bar in self._bars.items():
                prefix = self._prefix[stem]
                cells = _read(prefix.with_name(prefix.name + CELLS))
                train = _read(prefix.with_name(prefix.name + TRAIN))
                if cells and cells.get("cells"):  # cell k running: k - 1 done
                    bar.total = int(cells["cells"])
                    bar.n = max(0, int(cells.get("cell") or 1) - 1)
                    bar.set_description_str(f"{stem}: cell {cells.get('cell')}/{cells['cells']}", refresh=False)
                fresh = train and cells and float(train.get("time", 0)) >= float(cells.get("time", 0))
                bar.set_postfix_str(training_line(train) if fresh else "", refresh=False)
                bar.refresh()


def _training_cell(train: dict) -> str:
    """"29.6 min (6.2 min this run)": what training the chapter's models took, and what the ones its last run
    trained took ("-" without models)."""
    if not train.get("models"):
        return "-"
    now = train.get("seconds_now")
    return duration(train.get("seconds")) + (f" ({duration(now)} this run)" if train.get("trained_now") and now
                                             is not None else "")


def table(summary: dict) -> str:
    """The end-of-build table: every chapter, its status (this run's, or "up to date"), this run's time, the
    time of the complete run the book shows, the training time of its models (and of those the last run trained),
    and the first words of an error."""
    this_run = summary.get("this_run") or {}
    rows = [("chapter", "status", "this run", "complete run", "training", "note")]
    for c in summary.get("chapters", []):
        run = this_run.get(c["stem"])
        status = run["status"] if run else ("up to date" if c["status"] == "ok" else c["status"])
        train = c.get("training") or {}
        note = ((run or {}).get("error") or (c.get("note") if c["status"] != "ok" else "") or "")
        rows.append((c["stem"], status, duration(run.get("seconds")) if run else "-", duration(c.get("seconds")),
                     _training_cell(train),
                     note.splitlines()[0][:70] if note else ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
