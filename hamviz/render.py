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

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .config import HamvizError
from .files import atomic_path, write_atomic

#: where the Sphinx sources and state live inside the book's output folder
SITE = ".site"
ASSETS = "assets"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
#: the cells papermill's parameters live in (the injected one holds absolute local paths): never shown
PARAMETER_TAGS = {"parameters", "injected-parameters"}
WIDGET_NOTE = ("<div class=\"admonition note hamviz-widget\"><p class=\"admonition-title\">Live widget</p>"
               "<p>This cell shows an interactive widget, which needs a running Python kernel: open the notebook "
               "in JupyterLab (<code>make lab</code>) to use it. The static book shows the chapter's precomputed "
               "figures instead.</p></div>")


#: the Python repr of an ipywidgets widget (shown as plain text where no widget manager draws it)
WIDGET_REPR = re.compile(r"^\s*(?:[A-Z][A-Za-z]*(?:Box|Slider|Buttons?|Text|Tab|Accordion|Stack|Dropdown|Select|"
                         r"Checkbox|Progress|Picker|Play)|Output|Image|HTML|Label|Video|Audio)\("
                         r"(?:children|value|options|description|layout|index|outputs)=")


class RenderError(HamvizError):
    """Sphinx could not render the book (its message and the last lines of its output)."""


@dataclass
class Page:
    """One notebook page of the book.

    ``docname``: its path without suffix, relative to the book folder ("chapters/02_classifier/02_classifier");
    ``notebook``: the executed notebook; ``number``: the chapter number (figures are numbered N.k);
    ``record``: the chapter's JSON record (its summary and values) or None; ``banner``: HTML shown above the key
    results (a failed or stale run says so); ``in_toc``: listed in the sidebar (False for a failed run whose
    previous complete run is the chapter's page); ``facts``: (label, value) pairs shown under the key results."""

    docname: str
    notebook: Path
    number: int
    title: str
    record: dict | None = None
    banner: str = ""
    in_toc: bool = True
    facts: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ formatting

def fmt(v) -> str:
    """A number or value as the book shows it (HTML-escaped): floats to 4 significant digits, thousands
    separators, dicts as "k: v" lists."""
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt(x)}" for k, x in v.items())
    return html.escape(str(v))


def duration(seconds) -> str:
    """Seconds as "42 s", "12.5 min" or "1.3 h" ("" for None)."""
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def interval(key: str, values: dict):
    """The (low, high) interval the record gives for summary number ``key``, or None: ``values["summary_ci"][key]``,
    or for ``test_<metric>`` the lesion-bootstrap ``values["test_ci"][<metric>]`` (both {"low", "high"})."""
    for source, name in (("summary_ci", key), ("test_ci", key[5:] if key.startswith("test_") else None)):
        ci = (values.get(source) or {}).get(name) if name else None
        if isinstance(ci, dict) and ci.get("low") is not None and ci.get("high") is not None:
            return ci["low"], ci["high"]
    return None


def key_results_html(record: dict | None, facts=()) -> str:
    """The "Key results" box a chapter page starts with: its record's summary numbers (with 95 % intervals where
    the record has them; each key shown by its field name, the key itself as the title) and ``facts`` ((label,
    value) pairs: run time, training time, when it was built)."""
    from .metrics import field_name  # the field's names for the record's keys (the key stays in the title)
    summary = (record or {}).get("summary") or {}
    values = (record or {}).get("values") or {}
    rows = []
    for k, v in summary.items():
        ci = interval(k, values)
        shown = fmt(v) + (f' <span class="ci">[{fmt(ci[0])}, {fmt(ci[1])}]</span>' if ci else "")
        rows.append(f'<tr><th title="{html.escape(k)}">{html.escape(field_name(k))}</th><td>{shown}</td></tr>')
    if not rows:
        rows.append('<tr><td colspan="2">This run recorded no summary numbers.</td></tr>')
    note = ('<p class="muted">In brackets: 95 % lesion-grouped bootstrap intervals.</p>'
            if any('class="ci"' in r for r in rows) else "")
    extra = "".join(f"<li><b>{html.escape(a)}</b>: {html.escape(str(b))}</li>" for a, b in facts if b)
    return (f'<div class="admonition hamviz-key-results"><p class="admonition-title">Key results</p>'
            f'<table class="hamviz-kv"><tbody>{"".join(rows)}</tbody></table>{note}'
            + (f'<ul class="hamviz-facts">{extra}</ul>' if extra else "") + "</div>")


# ------------------------------------------------------------------------------------------- the notebooks

_REMOTE_SCRIPT = re.compile(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>', re.I)
# plotly's notebook renderer embeds the whole library once per kernel, in a script that starts with its banner
_PLOTLY_JS = re.compile(r"<script[^>]*>\s*/\*\*\s*\*\s*plotly\.js v(?P<version>[0-9][0-9A-Za-z.+-]*)\b.*?</script>",
                        re.S)


def strip_remote_scripts(page: str) -> str:
    """Drop ``<script src="https://...">`` tags (MathJax from a CDN, added by plotly's notebook renderer to every
    figure): the book must work offline."""
    return _REMOTE_SCRIPT.sub("", page)


def share_plotly_js(page: str, out: Path, depth: int = 2) -> str:
    """Move the plotly.js that ``page`` (an HTML fragment) embeds into ``out/assets/plotly-<version>.min.js``
    (written once, atomically, for every page of that version) and load it from there: the book stays
    offline-readable without a 5 MB copy of the library in every page. ``depth``: how many folders the page sits
    below ``out`` (chapters/<nb>/ and failed/<nb>/: 2). A fragment without an embedded plotly.js is returned as
    is."""
    m = _PLOTLY_JS.search(page)
    if not m:
        return page
    name = f"plotly-{m['version']}.min.js"
    target = Path(out) / ASSETS / name
    body = m.group(0)
    js = body[body.index(">") + 1:-len("</script>")]
    if not target.is_file() or target.stat().st_size != len(js.encode()):
        write_atomic(target, js)
    src = "../" * depth + f"{ASSETS}/{name}"
    return page[:m.start()] + f'<script src="{src}"></script>' + page[m.end():]


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _plotly_title(fig: dict) -> str:
    title = ((fig or {}).get("layout") or {}).get("title")
    if isinstance(title, dict):
        title = title.get("text")
    return " ".join(re.sub(r"<[^>]+>", " ", str(title or "")).split())


def _comment_caption(source: str) -> str:
    """A code cell's leading comment line (the caption of the table it shows), or ""."""
    first = source.strip().splitlines()[0] if source.strip() else ""
    return first.lstrip("#").strip() if first.startswith("#") else ""


_TABLE = re.compile(r"<table\b", re.I)
_PARAMS_TABLE = re.compile(r"<th>\s*parameter\s*</th>", re.I)


def prepare_notebook(nb, number: int, out: Path, depth: int = 2, key_results: str = "", banner: str = ""):
    """The executed notebook ``nb`` made into a book page (a copy; ``nb`` is not changed).

    Leaves out the parameters cells; folds every code cell's source behind a toggle (tag ``hide-input``);
    drops stderr (warnings, progress bars); shows a live widget's own static HTML where it brings one, else a note
    (never its repr, also where the output is the repr alone: :data:`WIDGET_REPR`); moves
    plotly.js to ``out/assets`` (:func:`share_plotly_js`) and removes CDN scripts; numbers plotly figures
    ("Figure N.k", captioned by the figure's title) and tables ("Table N.k", captioned by the cell's leading
    comment), folds the chapter's parameter table; puts ``banner`` and ``key_results`` (HTML) right under the
    title. ``number``: the chapter number; ``depth``: the page's folder depth below ``out``."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a deep copy
    nb.metadata.pop("widgets", None)  # widget state: MyST-NB would load the widget manager from a CDN
    cells, figures, tables = [], 0, 0
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code" and tags & PARAMETER_TAGS:
            continue
        if cell.cell_type == "code":
            cell.metadata["tags"] = sorted((tags - {"hide-output", "remove-input"}) | {"hide-input"})
            outputs = []
            for o in cell.get("outputs", []):
                if o.get("output_type") == "stream" and o.get("name") == "stderr":
                    continue
                data = o.get("data")
                if data is None:
                    outputs.append(o)
                    continue
                own = _text(data.get("text/html", ""))
                if WIDGET_MIME in data and own.strip() and not WIDGET_REPR.match(own):
                    o["data"] = {"text/html": own}  # the widget's own static form (e.g. the explorer's note)
                    outputs.append(o)
                    continue
                if WIDGET_MIME in data or (set(data) == {"text/plain"} and
                                           WIDGET_REPR.match(_text(data["text/plain"]))):
                    o["data"] = {"text/html": WIDGET_NOTE}
                    outputs.append(o)
                    continue
                fig = data.pop(PLOTLY_MIME, None)
                page = _text(data.get("text/html", ""))
                if page:
                    page = strip_remote_scripts(share_plotly_js(page, out, depth))
                    if "plotly-graph-div" in page and fig is not None:
                        figures += 1
                        title = html.escape(_plotly_title(fig))
                        page = (f'<figure class="hamviz-figure" id="figure-{number}-{figures}">{page}'
                                f'<figcaption><span class="caption-number">Figure {number}.{figures}</span>'
                                f'{". " + title if title else ""}</figcaption></figure>')
                    elif _TABLE.search(page) and _PARAMS_TABLE.search(page):
                        page = (f'<details class="hamviz-params"><summary>This chapter\'s parameters'
                                f'</summary>{page}</details>')
                    elif _TABLE.search(page):
                        tables += 1
                        cap = html.escape(_comment_caption(_text(cell.source)))
                        page = (f'<figure class="hamviz-table" id="table-{number}-{tables}"><figcaption>'
                                f'<span class="caption-number">Table {number}.{tables}</span>'
                                f'{". " + cap if cap else ""}</figcaption>{page}</figure>')
                    data["text/html"] = page
                    data.pop("text/plain", None)  # the HTML is the output; the repr is the fallback
                outputs.append(o)
            cell["outputs"] = outputs
        cells.append(cell)
    # the title on its own, then the banner and the key results, then the rest of the first markdown cell
    head = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), None)
    box = banner + key_results
    if box:
        box_cell = nbformat.v4.new_markdown_cell(box)
        if head is not None and cells[head].source.lstrip().startswith("#"):
            lines = cells[head].source.lstrip().splitlines()
            rest = "\n".join(lines[1:]).strip()
            cells[head].source = lines[0]
            cells[head + 1:head + 1] = [box_cell] + ([nbformat.v4.new_markdown_cell(rest)] if rest else [])
        else:
            cells.insert(0, box_cell)
    for i, c in enumerate(cells):
        c["id"] = f"cell-{i}"  # stable ids: an unchanged chapter writes the same source, which Sphinx skips
    nb.cells = cells
    nb.nbformat_minor = max(nb.nbformat_minor, 5)
    return nb


# ------------------------------------------------------------------------------------------------ the index

_STATUS_CLASS = {"ok": "ok", "failed": "failed", "interrupted": "failed", "stale": "stale", "running": "running",
                 "not built": "muted", "skipped": "stale"}


def index_markdown(info: dict, pages: list[Page], links: dict, params_yaml: str = "") -> str:
    """The front page (MyST markdown with an HTML table): every chapter of ``info`` (book.json's content) with
    its status, run time, training time and key numbers, then the provenance and the parameters; a hidden
    toctree of ``pages`` gives the sidebar and the previous/next order. ``links``: stem -> (href or None,
    failed-run href or None)."""
    from .metrics import field_name
    rows = []
    for c in info["chapters"]:
        href, failed_href = links.get(c["stem"], (None, None))
        title = html.escape(c["title"])
        cell = f'<a href="{href}">{title}</a>' if href else title
        if failed_href:
            cell += f'<br><a class="muted" href="{failed_href}">failed run</a>'
            if href:
                cell += ' <span class="muted">(link above: previous complete run)</span>'
        status = c["status"]
        note = f'<br><span class="muted">{html.escape((c.get("note") or "")[:600])}</span>' if c.get("note") else ""
        kv = "".join(f'<li><b title="{html.escape(k)}">{html.escape(field_name(k))}</b>: {fmt(v)}</li>'
                     for k, v in (c.get("summary") or {}).items())  # the field's names, as on the chapter pages
        train = c.get("training") or {}
        tt = duration(train.get("seconds")) if train.get("models") else ""
        if tt:
            now = train.get("trained_now", 0)
            spent = (f' ({duration(train["seconds_now"])})' if now and train.get("seconds_now") is not None else "")
            tt += (f'<br><span class="muted">{train["models"]} model(s), {now} trained in the last run{spent}, '
                   f'the others loaded from the cache</span>' if now < train["models"] else
                   f'<br><span class="muted">{train["models"]} model(s), all trained in the last run</span>')
        secs = "" if c.get("seconds") is None else f'{c["seconds"]:.0f} s'
        rows.append(f'<tr><td>{html.escape(c["stem"][:2])}</td><td>{cell}</td>'
                    f'<td class="status {_STATUS_CLASS.get(status, "")}">{html.escape(status)}{note}</td>'
                    f'<td>{secs}</td><td>{tt}</td><td><ul class="kv">{kv}</ul></td></tr>')
    prov = info["provenance"]
    libs = ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items())
    toc = "\n".join(p.docname for p in pages if p.in_toc)
    return f"""---
html_theme.sidebar_secondary.remove: true
---
# hamviz results book

<p class="muted">HAM10000 analysis, profile <b>{html.escape(str(info.get('profile')))}</b>
({html.escape(str(info.get('description') or ''))}); built {html.escape(str(prov.get('date')))}.
Each chapter page starts with its key results; its code is folded (the toggles show it).</p>

<table class="hamviz-chapters"><thead><tr><th>#</th><th>chapter</th><th>status</th><th>run time</th>
<th>training time</th><th>key numbers</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>

<p class="muted">Run time: the complete run this page shows (a chapter that loads its models from the cache runs
in a fraction of the time it took to train them). Training time: what training every model the chapter uses took,
whether trained in its last run or loaded from the cache, where another chapter may have trained it (joint training
loads the classifier and the autoencoders); below it, how many the last run trained and what that took.</p>

## Provenance

<table class="hamviz-provenance"><tbody>
<tr><th>hamviz version</th><td>{html.escape(str(prov.get('hamviz')))}</td></tr>
<tr><th>git commit</th><td>{html.escape(str(prov.get('git_commit')))}</td></tr>
<tr><th>data</th><td>{html.escape(str(info.get('data_dir')))}<br>fingerprint
<code>{html.escape(str(prov.get('data_fingerprint')))}</code></td></tr>
<tr><th>profile file</th><td>{html.escape(str(prov.get('profile_file')))}</td></tr>
<tr><th>python / platform</th><td>{html.escape(str(prov.get('python')))} / {html.escape(str(prov.get('platform')))}</td></tr>
<tr><th>libraries</th><td>{html.escape(libs)}</td></tr>
<tr><th>date</th><td>{html.escape(str(prov.get('date')))}</td></tr>
<tr><th>book built in</th><td>{duration(info.get('build_seconds'))}</td></tr>
</tbody></table>

## Parameters

<pre class="hamviz-params-yaml">{html.escape(params_yaml)}</pre>

```{{toctree}}
:hidden:
:maxdepth: 2

{toc}
```
"""


# ------------------------------------------------------------------------------------------------ Sphinx

CONF = '''# Written by hamviz.render for every book build: Sphinx + MyST-NB + sphinx-book-theme, offline.
project = "hamviz results book"
author = "hamviz"
copyright = ""
extensions = ["myst_nb", "hamviz.render"]
nb_execution_mode = "off"          # the notebooks were executed by papermill; never again here
nb_output_stderr = "remove"
nb_ipywidgets_js = {}              # no widget manager from a CDN: widget outputs are replaced by a note
nb_merge_streams = True
nb_code_prompt_show = "Show code cell {type}"
nb_code_prompt_hide = "Hide code cell {type}"
myst_enable_extensions = ["colon_fence"]
html_theme = "sphinx_book_theme"
html_title = %(title)r
html_copy_source = False
html_show_search_summary = False   # its snippets are fetched with fetch(), which file:// pages may not use
html_show_sourcelink = False
html_last_updated_fmt = None
html_css_files = ["hamviz.css"]
html_js_files = ["hamviz.js"]
html_theme_options = {
    "home_page_in_toc": True,       # and the front page first
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}
html_context = {"default_mode": "light"}
templates_path = ["_templates"]
# the sidebar lists every chapter with its sections (the theme's own lists titles only)
html_sidebars = {"**": ["navbar-logo.html", "search-button-field.html", "hamviz-sidebar-nav.html"]}
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "toc.not_included"]
exclude_patterns = ["_templates"]
'''

CSS = """
.hamviz-key-results{border-left:4px solid #1a7f37;background:#f3faf5;padding:.6em 1em;margin:1em 0 1.5em}
.hamviz-key-results .admonition-title{font-weight:700;margin:0 0 .4em}
.hamviz-kv th{text-align:left;padding:.15em 1em .15em 0;font-weight:600}.hamviz-kv td{padding:.15em 0}
.hamviz-facts{margin:.4em 0 0;padding-left:1.2em;font-size:.9em;color:#555}
.ci{color:#555;font-size:.9em}.muted{color:#666;font-size:.9em}
.status.ok{color:#1a7f37;font-weight:600}.status.failed{color:#cf222e;font-weight:600}
.status.stale,.status.running{color:#9a6700;font-weight:600}.status .muted{font-weight:400;color:#666}
table.hamviz-chapters,table.hamviz-provenance{border-collapse:collapse;width:100%;margin:1em 0}
.hamviz-chapters th,.hamviz-chapters td,.hamviz-provenance th,.hamviz-provenance td{border-bottom:1px solid #ddd;
padding:.4em .5em;text-align:left;vertical-align:top}
.hamviz-chapters .kv{margin:0;padding:0;list-style:none;font-size:.92em;overflow-wrap:anywhere}
.hamviz-chapters td:nth-child(2){min-width:14em}.hamviz-chapters td:nth-child(4),.hamviz-chapters td:nth-child(5){white-space:nowrap}
figure.hamviz-figure,figure.hamviz-table{margin:1em 0}
figure.hamviz-figure figcaption,figure.hamviz-table figcaption{font-size:.92em;color:#333;margin:.3em 0}
.caption-number{font-weight:700}
.hamviz-banner{border-left:4px solid #cf222e;background:#fff5f5;padding:.6em 1em;margin:1em 0}
.hamviz-banner.stale{border-color:#9a6700;background:#fffbea}
.hamviz-banner pre{white-space:pre-wrap;font-size:.85em}
.hamviz-nav ul{list-style:none;padding-left:0;margin:0}.hamviz-nav li.toctree-l1{margin:.35em 0}
.hamviz-nav li.toctree-l1>a{font-weight:500}.hamviz-nav li.toctree-l2{font-size:.85em;padding-left:.9em;margin:.1em 0}
.hamviz-nav a{color:var(--pst-color-text-muted);text-decoration:none}
.hamviz-nav li.current>a,.hamviz-nav a.current{color:var(--pst-color-primary);font-weight:600}
button.hamviz-code-toggle{margin:.2em 0 1em;padding:.25em .8em;border:1px solid #999;border-radius:4px;
background:#f6f8fa;cursor:pointer;font-size:.9em}
"""

# one button per page that opens or closes every folded code cell (each cell keeps its own toggle too)
# the sidebar: the front page, then every chapter with its sections (Sphinx's own toctree: the theme's drops the
# links to sections)
SIDEBAR = """<nav class="bd-links bd-docs-nav hamviz-nav" aria-label="Chapters">
  <div class="bd-toc-item navbar-nav active">
    <ul class="nav bd-sidenav bd-sidenav__home-link">
      <li class="toctree-l1{% if pagename == root_doc %} current active{% endif %}">
        <a class="reference internal" href="{{ pathto(root_doc) }}">{{ root_title }}</a>
      </li>
    </ul>
    {{ toctree(maxdepth=2, collapse=False, includehidden=True, titles_only=False) }}
  </div>
</nav>
"""

JS = """
document.addEventListener("DOMContentLoaded", function () {
  var cells = document.querySelectorAll("details.hide.above-input");
  var article = document.querySelector("article.bd-article");
  if (!cells.length || !article) return;
  var button = document.createElement("button");
  button.type = "button";
  button.className = "hamviz-code-toggle";
  var shown = false;
  function label() { button.textContent = shown ? "Hide all code" : "Show all code"; }
  label();
  button.addEventListener("click", function () {
    shown = !shown;
    cells.forEach(function (d) { d.open = shown; });
    label();
  });
  var title = article.querySelector("h1");
  if (title && title.parentNode) title.parentNode.insertBefore(button, title.nextSibling);
  else article.insertBefore(button, article.firstChild);
});
"""


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
    _write_if_changed(src / "conf.py", CONF % {"title": title})
    _write_if_changed(src / "_templates" / "hamviz-sidebar-nav.html", SIDEBAR)
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
        page = prepare_notebook(nb, p.number, out, depth, key_results_html(p.record, facts), p.banner)
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
    the profile's parameters, shown on the front page. Sphinx builds in ``out/.site/html`` (its incremental state), then :func:`publish` copies the
    pages into ``out``. Raises :class:`RenderError` with Sphinx's output when Sphinx fails or takes longer than
    ``timeout`` seconds."""
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
        _write_if_changed(static / "hamviz.css", CSS)
        _write_if_changed(static / "hamviz.js", JS)


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
