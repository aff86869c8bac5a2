"""The results book's HTML: the chapter notebooks papermill executed, rendered by **Sphinx + MyST-NB +
sphinx-book-theme** (the engine behind Jupyter Book 1), never executed again.

What :func:`render_book` makes of the book's output folder ``out``::

    index.html                        the book's front page: every chapter's status, run and training time, key
                                      numbers (from its record), links, the provenance and the parameters
    chapters/<nb>/<nb>.html           a complete chapter (beside the executed <nb>.ipynb and its record)
    failed/<nb>/<nb>.html             the last failed run of a chapter (the partly executed notebook, the error)
    search.html, searchindex.js       full-text search (works from file://)
    _static/                          the theme's CSS, JS and fonts (no request leaves the book)
    .nojekyll, _config.yml            for static hosts: GitHub Pages serves _static/ (:func:`static_host_files`)
    assets/plotly-<v>.min.js          plotly.js, once for the whole book (each page would otherwise embed ~5 MB)
    .site/src, .site/doctrees         the Sphinx sources this module writes and Sphinx's incremental state

Every page has the sidebar (every chapter and its sections, a link to the front page), previous/next links and
search; code cells are folded behind a toggle ("Show code cell source", and one button per page that shows or
hides all of them), the parameters cells (which hold absolute local paths) are left out, a "Key results" box
(the chapter's summary numbers, with their intervals where the record has them) comes first, plotly figures and
tables are numbered with captions, and a live widget's output is replaced by a note (a static page has no
kernel; the chapters show a precomputed plotly slider instead), never its Python repr.

Sphinx runs in a child process (``python -m sphinx``) on sources written only when their content changed, so a
book whose chapters did not change re-renders only its front page (about 3 s; the whole tiny book about 15 s).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from ..files import atomic_path, write_atomic
from .pages import Page, RenderError, index_markdown, key_results_html, prepare_notebook

#: where the Sphinx sources and state live inside the book's output folder
SITE = ".site"

# ------------------------------------------------------------------------------------------------ Sphinx

#: the book's templates (package data): the Sphinx configuration (conf.py.in, a %-format with the title), the
#: sidebar (every chapter with its sections: the theme's own list drops the links to sections), the book's CSS and
#: its JS (one button per page that opens or closes every folded code cell, the figures' captions)
TEMPLATES = Path(__file__).with_name("templates")


def template(name: str) -> str:
    """The text of the book's template ``name`` (a file of :data:`TEMPLATES`)."""
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds it (Sphinx re-reads only sources whose time changed)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomic(path, text)
    return True


def write_sources(out: Path, info: dict, pages: list[Page], links: dict, params_yaml: str = "",
                  title: str = "hamviz results book") -> Path:
    """Write the Sphinx project for the book in ``out/.site/src`` (conf.py, static files, index.md, one
    notebook per page, only those whose content changed) and remove pages no longer in the book; returns
    the source folder."""
    src = Path(out) / SITE / "src"
    src.mkdir(parents=True, exist_ok=True)
    _write_if_changed(src / "conf.py", template("conf.py.in") % {"title": title})
    _write_if_changed(src / "_templates" / "hamviz-sidebar-nav.html", template("hamviz-sidebar-nav.html"))
    _write_if_changed(src / "index.md", index_markdown(info, pages, links, params_yaml))
    wanted = {src / f"{p.docname}.ipynb" for p in pages}
    for p in pages:
        try:
            nb = nbformat.read(p.notebook, as_version=4)
        except Exception as exc:  # noqa: BLE001 -- e.g. a chapter killed while papermill wrote it: say so
            nb = nbformat.v4.new_notebook(cells=[
                nbformat.v4.new_markdown_cell(f"# {p.title}"),
                nbformat.v4.new_markdown_cell(f"The executed notebook `{Path(p.notebook).name}` could not be "
                                              f"read ({type(exc).__name__}: {exc}).")])
        depth = p.docname.count("/")
        facts = p.facts
        page = prepare_notebook(nb, p.number, out, depth, key_results_html(p.record, facts, p.number), p.banner)
        page.metadata["orphan"] = not p.in_toc
        _write_if_changed(src / f"{p.docname}.ipynb", nbformat.writes(page))
    for old in src.rglob("*.ipynb"):
        if old not in wanted:
            old.unlink()
            (Path(out) / SITE / "html" / old.relative_to(src).with_suffix(".html")).unlink(missing_ok=True)
    return src


def publish(html_dir: Path, out: Path) -> int:
    """Copy what Sphinx built in ``html_dir`` into the book folder ``out``: each new or changed file is written
    beside its target and renamed over it (a reader never sees half a page); files an earlier render
    published that this one no longer makes are removed. Returns how many files were written."""
    html_dir, out = Path(html_dir), Path(out)
    manifest = html_dir.parent / "published.json"
    try:
        before = set(json.loads(manifest.read_text()))
    except (OSError, ValueError):
        before = set()
    now, written = set(), 0
    for f in sorted(html_dir.rglob("*")):
        rel = f.relative_to(html_dir)
        if f.is_dir() or rel.parts[0] in (".doctrees", "_sources") or rel.name in (".buildinfo", ".buildinfo.bak"):
            continue
        now.add(rel.as_posix())
        target = out / rel
        if target.is_file() and target.stat().st_size == f.stat().st_size and \
                target.read_bytes() == f.read_bytes():
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(f, tmp)
        written += 1
    for gone in before - now:
        (out / gone).unlink(missing_ok=True)
    write_atomic(manifest, json.dumps(sorted(now)))
    return written


def _die_with_parent():
    """A preexec function for the Sphinx process: on Linux it is killed when the book that started it dies (a
    killed book leaves no Sphinx writing into its folder); None elsewhere. Everything is looked up here, in the
    parent: the child, forked from a process with threads, only calls into libc before exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import signal
        prctl, kill = ctypes.CDLL(None, use_errno=True).prctl, int(signal.SIGKILL)
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, kill)  # PR_SET_PDEATHSIG


def render_book(out: Path, info: dict, pages: list[Page], links: dict, params_yaml: str = "",
                title: str = "hamviz results book", timeout: float = 900) -> float:
    """Render the book in ``out`` (see the module docstring) with Sphinx; returns the seconds it took.

    ``info``: book.json's content (chapters, provenance, profile, description, data_dir); ``pages``: the notebook
    pages in book order; ``links``: stem -> (chapter href, failed-run href) for the front page; ``params_yaml``:
    the profile's parameters, shown on the front page. Sphinx builds in ``out/.site/html`` (its incremental state), then
    :func:`publish` copies the pages into ``out``. Raises :class:`RenderError` with Sphinx's output when Sphinx fails or
    takes longer than ``timeout`` seconds."""
    t = time.time()
    out = Path(out).resolve()
    site = out / SITE
    src = write_sources(out, info, pages, links, params_yaml, title)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(site / "doctrees"), str(src),
           str(site / "html")]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    try:  # in site/: MyST-NB writes its copies of the notebooks beside the output folder (site/jupyter_execute)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=site,
                             preexec_fn=_die_with_parent())
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"Sphinx did not render the book in {timeout:.0f} s") from exc
    if res.returncode != 0:
        raise RenderError(f"Sphinx could not render the book (exit {res.returncode}):\n"
                          + (res.stdout + res.stderr)[-3000:])
    shutil.rmtree(site / "jupyter_execute", ignore_errors=True)
    publish(site / "html", out)
    static_host_files(out)
    return time.time() - t


#: GitHub Pages runs Jekyll over a site unless it has this file, and Jekyll leaves out every ``_``-prefixed folder
#: (the pages' ``_static/``, with the theme's CSS and JS)
NOJEKYLL = ".nojekyll"
#: for a copy that lost the dot-file (``cp -r book/* site/``): Jekyll then still serves those folders
JEKYLL_CONFIG = ("# Written by hamviz: the book is plain static HTML. Where Jekyll runs anyway (GitHub Pages without "
                 "the .nojekyll file),\n# serve the Sphinx folders it would leave out.\ninclude: [_static, _images, "
                 "_sources, _downloads]\n")


def static_host_files(out: Path) -> None:
    """Make the book folder ``out`` work on a static host as it is, or copied: ``.nojekyll`` (GitHub Pages serves
    ``_static/`` only with it) and ``_config.yml`` (the same for a copy without dot-files). Every link of the pages
    stays inside the folder (``_static/``, ``assets/``, the chapters), so any copy of it is self-contained."""
    out = Path(out)
    if not (out / NOJEKYLL).is_file():
        write_atomic(out / NOJEKYLL, "")
    if not (out / "_config.yml").is_file() or (out / "_config.yml").read_text() != JEKYLL_CONFIG:
        write_atomic(out / "_config.yml", JEKYLL_CONFIG)


# ------------------------------------------------------------------------------- the Sphinx extension itself

def _offline_page(app, pagename, templatename, context, doctree) -> None:
    """No page of the book loads anything from the network (e.g. MathJax from a CDN for a page with math)."""
    files = context.get("script_files")
    if files:
        context["script_files"] = [f for f in files if "://" not in str(getattr(f, "filename", f) or "")]


def _write_static(app, exception) -> None:
    """The book's own CSS and JS (the page-wide code toggle) into the output's _static folder."""
    if exception is None:
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        _write_if_changed(static / "hamviz.css", template("hamviz.css"))
        _write_if_changed(static / "hamviz.js", template("hamviz.js"))


def _navigation_changed(app, env):
    """Every page is written again when the book's navigation changed (a chapter added, removed, renamed, or its
    sections changed): each page carries the sidebar and previous/next links, and Sphinx by itself writes only the
    pages whose own source changed."""
    root = env.config.root_doc
    docs = [root] + list(env.toctree_includes.get(root, []))
    signature = [(d, env.tocs[d].astext() if d in env.tocs else "") for d in docs]
    changed = signature != getattr(env, "hamviz_navigation", None)
    env.hamviz_navigation = signature  # pickled with the environment: compared at the next build
    return sorted(env.found_docs) if changed else []


def setup(app):
    """Sphinx extension (named in the book's conf.py): keeps every page offline, writes every page again when the
    navigation changed, adds the book's CSS and JS."""
    app.connect("html-page-context", _offline_page)
    app.connect("env-get-updated", _navigation_changed)
    app.connect("build-finished", _write_static)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
