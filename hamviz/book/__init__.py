"""The results book: every notebook in ``notebooks/`` run headless by papermill with one profile, rendered
to HTML by a book engine (:mod:`hamviz.book.render`: Sphinx + MyST-NB + sphinx-book-theme), with an ``index.html``
of each chapter's key numbers, times and provenance.

Layout of the output folder::

    index.html                 chapters, status, run and training times, key numbers, provenance
    book.json                  the same, machine-readable
    chapters/<nb>/             a complete chapter: <nb>.ipynb (executed), <nb>.json (record), done.json (its key,
                               times), and its page <nb>.html
    failed/<nb>/               the last failed run of a chapter: the partly executed notebook, why, its page
    search.html, _static/, assets/plotly-<v>.min.js, .site/   the rest of the rendered book (see hamviz.book.render)
    .work/                     chapters being built (never read as results), their progress reports

Before any chapter runs, :func:`hamviz.book.provision.provide` makes sure what the chapters need is on this machine:
with no data location set it downloads HAM10000 (and the lesion masks the chapters use) into the default data
folder, and a missing Keras-Hub preset into the weights cache, once; offline, or with downloads turned off, it stops
at once with one message listing every missing piece and how to get it.

A chapter is re-run only when its key changes: the notebook's cells, its parameters, the hamviz source,
the data fingerprint, the content of the pretrained weights files it starts from (a preset changed under the same
name re-runs it), and the keys of the chapters it depends on (notebook metadata
``{"hamviz": {"depends": ["classifier"]}}``). A chapter is built in ``.work`` and moved into ``chapters/``
only once it finished and its record says ``complete``, so an interrupted or failed run never leaves a
half-written chapter that looks complete. With ``jobs > 1`` chapters run in parallel: a chapter whose
dependencies finished first, else one whose dependencies are still running (it waits in the model store for
what they train; stopped and skipped if one of them fails): see :func:`hamviz.book.scheduler.next_chapter`.

The package, by concern (each module imports only those after it)::

    builder     build(): the checks, the output folder's lock, the scheduler, the final rendering
    scheduler   Scheduler: chapters in their own processes, jobs at a time, in dependency order
    child       the chapter process (python -m hamviz.book): papermill, then publish or file the failure
    provision   prepare() / provide(): profile, notebooks, data and weights checked (and fetched) first
    index       write_index(): book.json and the pages from what the output folder holds
    render      the Sphinx site (templates/: conf.py, CSS, JS, the sidebar) and its extension
    pages       the notebook pages and the front page's markdown
    progress    the live view of a build in a terminal
    frontpage   the findings and key numbers (HTML)
    spec        the chapters, their keys and their state in the output folder
"""
from __future__ import annotations

from .builder import LOCK, build
from .provision import prepare, provide
from .spec import discover

__all__ = ["LOCK", "build", "discover", "prepare", "provide"]
