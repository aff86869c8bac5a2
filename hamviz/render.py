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
from .frontpage import (  # noqa: F401  # noqa: F401 (where they were before hamviz.frontpage)
    FOREST_NOTE,
    SCROLL_HINT,
    duration,
    findings_table,
    fmt,
    front_page,
    interval,
    key_numbers,
    scrolling,
)

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

def key_results_html(record: dict | None, facts=(), number: int | str = "") -> str:
    """The "Key results" box a chapter page starts with: its record's summary numbers (each with its 95 % interval
    where the record has one, at the precision the interval justifies; shown by its field name, the key itself as
    the title), the chapter's answers (its verdicts as the front page shows them: :func:`hamviz.frontpage.
    findings_table`, numbered "``number``.k" as there) and ``facts`` ((label, value) pairs: run time, training time,
    when it was built)."""
    record = record or {}
    rows = [f'<tr><th title="{html.escape(k)}">{html.escape(name)}</th><td>{shown}</td></tr>'
            for k, name, shown in key_numbers(record.get("summary") or {}, record.get("values") or {})]
    verdicts = record.get("verdicts") or {}
    if not rows and not verdicts:
        rows.append('<tr><td colspan="2">This run recorded no summary numbers.</td></tr>')
    note = ('<p class="muted">In brackets: 95 % lesion-grouped bootstrap intervals.</p>'
            if any('class="ci"' in r for r in rows) else "")
    table = f'<table class="hamviz-kv"><tbody>{"".join(rows)}</tbody></table>{note}' if rows else ""
    answers = ""
    if verdicts:
        answers = ('<p class="hamviz-answers-title"><b>Answers</b></p>'
                   + findings_table([(number, "", None, verdicts)], headers=False)
                   + f'<p class="muted">{FOREST_NOTE}</p>')
    extra = "".join(f"<li><b>{html.escape(a)}</b>: {html.escape(str(b))}</li>" for a, b in facts if b)
    return (f'<div class="admonition hamviz-key-results"><p class="admonition-title">Key results</p>{table}{answers}'
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


def _comment_captions(source: str) -> list[str]:
    """The captions a code cell gives its tables, in order: its leading comment line, then each capitalised comment
    line further down that comes before a line that shows something (a ``display(`` call, or the cell's last
    line). Lower-case comments are about the code, not captions."""
    lines = source.strip().splitlines()
    out = [lines[0].lstrip("#").strip()] if lines and lines[0].startswith("#") else []
    pending = None
    start = next((i for i, line in enumerate(lines) if not line.lstrip().startswith("#")), len(lines))
    for i in range(start, len(lines)):
        text = lines[i].strip()
        if text.startswith("#"):
            words = text.lstrip("#").strip()
            pending = words if words[:1].isupper() else pending
        elif pending and ("display(" in text or i == len(lines) - 1):
            out.append(pending)
            pending = None
    return out


def _comment_caption(source: str) -> str:
    """A code cell's leading comment line (the caption of the table it shows), or ""."""
    return next(iter(_comment_captions(source)), "")


_TABLE = re.compile(r"<table\b", re.I)
_PARAMS_TABLE = re.compile(r"<th>\s*parameter\s*</th>", re.I)
#: the reference-protocol table (:func:`hamviz.protocol.protocol_table`): folded, its caption says what it holds
_PROTOCOL_TABLE = re.compile(r"<th[^>]*>\s*why it differs\s*</th>", re.I)


#: what pandas writes for a missing number, and for no object at all
NA_TEXTS, NONE_TEXTS = ("nan", "NaN", "<NA>", "NaT"), ("None",)
#: why a column has no value in some row, by a word of its header (the first that matches), else a generic why
NA_WHY = (("AUC", "an AUC needs test images of the class and of the others; an average row has none of its own "
                  "(the macro AUC is the average)"),
          ("interval", "no bootstrap interval for this row"),
          ("", "not defined for this row"))


def _header_names(table) -> list[str]:
    """The column headers of a pandas table, index columns included (its first header row)."""
    head = table.find("thead")
    row = head.find("tr") if head else None
    return [c.get_text(" ", strip=True) for c in row.find_all(["th", "td"], recursive=False)] if row else []


def drop_bare_index(table) -> bool:
    """Remove a pandas table's bare 0..n-1 row index (a RangeIndex says nothing about its rows): each body row's
    leading header cell and the first cell of each header row go. Returns whether it did."""
    body = table.find("tbody")
    rows = body.find_all("tr", recursive=False) if body else []
    heads = [r.find(["th", "td"], recursive=False) for r in rows]
    if not rows or any(h is None or h.name != "th" for h in heads) or \
            [h.get_text(strip=True) for h in heads] != [str(i) for i in range(len(rows))]:
        return False
    if any(len(r.find_all("th", recursive=False)) > 1 for r in rows):
        return False  # a MultiIndex: its first level is not a bare counter
    for h in heads:
        h.decompose()
    head = table.find("thead")
    for r in head.find_all("tr", recursive=False) if head else []:
        first = r.find(["th", "td"], recursive=False)
        if first is not None and not first.get_text(strip=True).replace("\\xa0", ""):
            first.decompose()
    return True


def mark_missing(table, soup) -> list[str]:
    """Missing values of a pandas table said in words: nan as "n/a" (why in its tooltip, :data:`NA_WHY`), None
    as "none". Returns the why of every column that has an n/a."""
    names, whys = _header_names(table), []
    for row in (table.find("tbody") or table).find_all("tr", recursive=False):
        cells = row.find_all(["th", "td"], recursive=False)
        for k, cell in enumerate(cells):
            text = cell.get_text(strip=True)
            if cell.name != "td" or text not in NA_TEXTS + NONE_TEXTS:
                continue
            if text in NONE_TEXTS:
                cell.string = "none"
                continue
            name = names[k] if k < len(names) else ""
            why = next(w for word, w in NA_WHY if word.lower() in name.lower())
            span = soup.new_tag("span", attrs={"class": "hamviz-na", "title": why})
            span.string = "n/a"
            cell.clear()
            cell.append(span)
            if why not in whys:
                whys.append(why)
    return whys


def tidy_table(page: str) -> str:
    """A pandas table (an HTML output) as the book shows it: no bare 0..n-1 index (:func:`drop_bare_index`), a
    missing value in words with why (:func:`mark_missing`, the whys below the table), its own ``<caption>`` taken
    out (the book's caption says it), sideways scrolling where it is wider than the page (:func:`scrolling`)."""
    from bs4 import BeautifulSoup  # the Sphinx theme's own dependency
    soup = BeautifulSoup(page, "html.parser")
    whys = []
    for table in soup.find_all("table"):
        drop_bare_index(table)
        whys += [w for w in mark_missing(table, soup) if w not in whys]
        for cap in table.find_all("caption"):
            cap.decompose()
    note = ("".join(f'<p class="muted hamviz-na-note"><span class="hamviz-na">n/a</span>: {html.escape(w)}</p>'
                    for w in whys))
    return scrolling(str(soup)) + note


def table_caption(page: str, captions: list[str], before) -> str:
    """The caption of a table output: the ``<caption>`` a pandas Styler gave it (``set_caption``), else a printed
    line ending in ":" right before it (``before``, the cell's previous output: the line moves into the caption),
    else the next of its cell's caption comments (``captions``, :func:`_comment_captions`, used up in order), else
    a bold-led Markdown line displayed right before it (e.g. "**Protocol** -- reference: ..."), else ""."""
    m = re.search(r"<caption[^>]*>(.*?)</caption>", page, re.S | re.I)
    if m and re.sub(r"<[^>]+>", "", m[1]).strip():
        return html.unescape(re.sub(r"<[^>]+>", "", m[1])).strip()
    if (before or {}).get("output_type") == "stream" and before.get("name") == "stdout":
        text = _text(before.get("text")).rstrip("\n")
        last = text.rsplit("\n", 1)[-1].strip()
        if last.endswith(":") and len(last) <= 300:
            rest = text[:len(text) - len(text.rsplit("\n", 1)[-1])].rstrip("\n")
            before["text"] = rest + "\n" if rest else ""
            if not rest:
                before["_hamviz_caption"] = True
            return last[:-1]
    if captions:
        return captions.pop(0)
    md = _text((before or {}).get("data", {}).get("text/markdown", "")).strip()
    if md.startswith("**") and "\n\n" not in md:
        before["_hamviz_caption"] = True  # shown as the caption, not again above it
        return re.sub(r"\*\*|`", "", md)
    return ""


def _html_output(page: str, fig, cell, number: int, count: dict, before=None) -> str:
    """An HTML output as the book shows it: a plotly figure numbered and captioned by its title, the parameters
    table folded, any other table numbered, captioned (:func:`table_caption`) and tidied (:func:`tidy_table`)."""
    if "plotly-graph-div" in page and fig is not None:
        count["figures"] += 1
        title = html.escape(_plotly_title(fig))
        return (f'<figure class="hamviz-figure" id="figure-{number}-{count["figures"]}">{page}'
                f'<figcaption><span class="caption-number">Figure {number}.{count["figures"]}</span>'
                f'{". " + title if title else ""}</figcaption></figure>')
    if _TABLE.search(page) and _PARAMS_TABLE.search(page):
        return (f'<details class="hamviz-params"><summary>This chapter\'s parameters</summary>'
                f'{scrolling(page)}</details>')
    if _TABLE.search(page):
        count["tables"] += 1
        cap = html.escape(table_caption(page, count.setdefault(id(cell), _comment_captions(_text(cell.source))),
                                        before))
        body = tidy_table(page)
        if _PROTOCOL_TABLE.search(page):  # the reference protocol, setting by setting: pages long, read on demand
            rows = len(re.findall(r"<tr\b", page, re.I)) - 2
            differ = len(re.findall(r"<td[^>]*>\s*(?:no|not stated)\s*</td>", page, re.I))
            body = (f'<details class="hamviz-fold"><summary>The {rows} settings beside the reference ({differ} '
                    f'differ or are not stated there)</summary>{body}</details>')
        return (f'<figure class="hamviz-table" id="table-{number}-{count["tables"]}"><figcaption>'
                f'<span class="caption-number">Table {number}.{count["tables"]}</span>'
                f'{". " + cap if cap else ""}</figcaption>{body}</figure>')
    return page


def _book_output(o, cell, number: int, out: Path, depth: int, count: dict, before=None):
    """One output of a code cell as the book shows it, or None where it is left out (stderr: warnings, progress
    bars, build messages); see :func:`prepare_notebook`."""
    if o.get("output_type") == "stream" and o.get("name") == "stderr":
        return None
    data = o.get("data")
    if data is None:
        return o
    own = _text(data.get("text/html", ""))
    if WIDGET_MIME in data and own.strip() and not WIDGET_REPR.match(own):
        o["data"] = {"text/html": own}  # the widget's own static form (e.g. the explorer's note)
        return o
    if WIDGET_MIME in data or (set(data) == {"text/plain"} and WIDGET_REPR.match(_text(data["text/plain"]))):
        o["data"] = {"text/html": WIDGET_NOTE}
        return o
    fig = data.pop(PLOTLY_MIME, None)
    page = _text(data.get("text/html", ""))
    if page:
        page = strip_remote_scripts(share_plotly_js(page, out, depth))
        data["text/html"] = _html_output(page, fig, cell, number, count, before)
        data.pop("text/plain", None)  # the HTML is the output; the repr is the fallback
    return o


def prepare_notebook(nb, number: int, out: Path, depth: int = 2, key_results: str = "", banner: str = ""):
    """The executed notebook ``nb`` made into a book page (a copy; ``nb`` is not changed).

    Leaves out the parameters cells; folds every code cell's source behind a toggle (tag ``hide-input``);
    drops stderr (warnings, progress bars, build messages); shows a live widget's own static HTML where it brings
    one, else a note (never its repr, also where the output is the repr alone: :data:`WIDGET_REPR`); moves
    plotly.js to ``out/assets`` (:func:`share_plotly_js`) and removes CDN scripts; numbers plotly figures
    ("Figure N.k", captioned by the figure's title) and tables ("Table N.k", captioned by the cell's leading
    comment; tidied by :func:`tidy_table`), folds the chapter's parameter table; puts ``banner`` and
    ``key_results`` (HTML) right under the title. ``number``: the chapter number; ``depth``: the page's folder
    depth below ``out``."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # a deep copy
    nb.metadata.pop("widgets", None)  # widget state: MyST-NB would load the widget manager from a CDN
    cells, count = [], {"figures": 0, "tables": 0}
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "code" and tags & PARAMETER_TAGS:
            continue
        if cell.cell_type == "code":
            cell.metadata["tags"] = sorted((tags - {"hide-output", "remove-input"}) | {"hide-input"})
            raw = cell.get("outputs", [])
            shown = (_book_output(o, cell, number, out, depth, count, raw[k - 1] if k else None)
                     for k, o in enumerate(raw))
            shown = [o for o in list(shown) if o is not None]  # (a lead-in that became a caption is marked)
            cell["outputs"] = [o for o in shown if not o.pop("_hamviz_caption", False)]
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

def index_markdown(info: dict, pages: list[Page], links: dict, params_yaml: str = "") -> str:
    """The front page (MyST markdown with HTML blocks, :func:`hamviz.frontpage.front_page`): the findings first, then
    the chapters, the provenance and the parameters, folded; a hidden toctree of ``pages`` gives the sidebar and the
    previous/next order. ``info``: book.json's content; ``links``: stem -> (href or None, failed-run href or
    None)."""
    toc = "\n".join(p.docname for p in pages if p.in_toc)
    return f"""---
html_theme.sidebar_secondary.remove: true
---
# hamviz results book

{front_page(info, links, params_yaml)}

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
.hamviz-key-results .hamviz-answers-title{margin:.8em 0 .2em}
.hamviz-kv th{text-align:left;padding:.15em 1em .15em 0;font-weight:600}.hamviz-kv td{padding:.15em 0}
.hamviz-facts{margin:.4em 0 0;padding-left:1.2em;font-size:.9em;color:#555}
.ci{color:#555;font-size:.92em}.muted{color:#666;font-size:.9em}
.status.ok{color:#1a7f37;font-weight:600}.status.failed{color:#cf222e;font-weight:600}
.status.stale,.status.running{color:#9a6700;font-weight:600}.status .muted{font-weight:400;color:#666}
.bd-main .bd-content .bd-article-container:has(.hamviz-front){max-width:none}
.bd-article:has(.hamviz-front) h2{margin:.9em 0 .3em}.bd-article:has(.hamviz-front) h1{margin-bottom:.2em}
.hamviz-lead{font-size:1.02em;margin:.3em 0 .6em}
.verdict.shown{color:#1a7f37;font-weight:700}.verdict.unsettled{color:#57606a;font-weight:600}
figure.hamviz-findings{margin:.4em 0 1.4em}
figure.hamviz-findings figcaption{font-size:.84em;color:#333;margin:0 0 .4em;text-align:left}
table.hamviz-findings{border-collapse:collapse;width:100%;font-size:.83em;line-height:1.2;margin:0}
.hamviz-findings th,.hamviz-findings td{padding:.1em .45em;border-bottom:1px solid #eee;text-align:left;
vertical-align:middle}
.hamviz-findings thead th{vertical-align:bottom;border-bottom:1px solid #bbb;font-weight:600}
.hamviz-findings tr.chapter th{background:#f6f8fa;font-weight:600;padding:.25em .45em;border-bottom:1px solid #ddd}
.hamviz-findings tr.chapter .level{font-weight:400;color:#666;font-size:.92em;margin-left:.6em}
.hamviz-findings td.id{white-space:nowrap;color:#666}.hamviz-findings td.question{min-width:14em}
.hamviz-findings td.effect{min-width:11em}.hamviz-findings .est,.hamviz-findings td.decision{white-space:nowrap}
.hamviz-findings td.effect .muted{font-size:.85em;display:block;line-height:1}
.hamviz-findings .forest{width:160px;min-width:160px;padding:0 .3em 0 0;white-space:nowrap;position:relative}
.hamviz-findings svg{display:block;margin-left:8px}.hamviz-findings .axis-units{display:block;font-size:.8em;color:#666;
text-align:center;font-weight:400}
.hamviz-findings .own{position:absolute;left:0;top:50%;transform:translateY(-50%);font-size:.85em;color:#888}
.hamviz-findings tr.shown td{background:#f3faf5}.hamviz-findings .kn{color:#555}
table.hamviz-chapters,table.hamviz-provenance{border-collapse:collapse;width:100%;margin:.6em 0}
.hamviz-chapters th,.hamviz-chapters td,.hamviz-provenance th,.hamviz-provenance td{border-bottom:1px solid #ddd;
padding:.3em .5em;text-align:left;vertical-align:top}
.hamviz-chapters{font-size:.88em;line-height:1.3}.hamviz-chapters td.n{width:2.2em}
.hamviz-chapters td.title{width:28%}.hamviz-chapters td.when{width:13em}
.hamviz-chapters .when .t{display:block;font-size:.9em}
.hamviz-chapters .when .status{margin-right:.5em}.hamviz-chapters .when .run{display:inline;font-size:.92em}
.hamviz-chapters td.keys{min-width:16em}.hamviz-chapters .note{display:block;overflow-wrap:anywhere}
.hamviz-chapters .kv{margin:0;padding:0;list-style:none;overflow-wrap:anywhere}
.hamviz-chapters .kv li{display:inline}.hamviz-chapters .kv li:not(:last-child)::after{content:" \\00b7 ";color:#999}
.hamviz-provenance{font-size:.85em;line-height:1.3}.hamviz-provenance th{width:5.5em;white-space:nowrap}
.hamviz-provenance td{width:44%}
.hamviz-provenance td{overflow-wrap:anywhere}
details.hamviz-fold>summary{cursor:pointer;font-size:.9em;color:#0550ae;margin:.2em 0}
details.hamviz-params-all{margin:1em 0}details.hamviz-params-all summary{cursor:pointer;font-weight:600}
figure.hamviz-figure,figure.hamviz-table{margin:1em 0;max-width:100%}
figure.hamviz-figure{overflow-x:auto}
figure.hamviz-figure figcaption,figure.hamviz-table figcaption{font-size:.92em;color:#333;margin:.3em 0}
.caption-number{font-weight:700}
.hamviz-scroll{overflow-x:auto;max-width:100%}
.hamviz-scroll table{margin:0;border-collapse:collapse;font-variant-numeric:tabular-nums}
.cell_output .hamviz-scroll th,.cell_output .hamviz-scroll td{padding:.2em .55em;vertical-align:top}
figure.hamviz-table figcaption,figure.hamviz-figure figcaption{text-align:left}
.hamviz-scroll.overflows{box-shadow:inset -10px 0 8px -8px rgba(0,0,0,.35)}
.hamviz-scroll.overflows table thead tr>:first-child,.hamviz-scroll.overflows table tbody tr>:first-child{
position:sticky;left:0;z-index:1;background:var(--pst-color-background,#fff)}
.hamviz-scroll-hint{font-size:.85em;color:#9a6700;margin:.2em 0}
.hamviz-na{color:#666;font-style:italic}
div.cell_output pre,div.cell_output .output pre{white-space:pre-wrap;overflow-wrap:anywhere}
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

// Nothing wider than the text column: a figure drawn wider than its column is redrawn at the column's width
// (image grids keep their aspect), a title longer than its figure wraps, and a table wider than the column
// scrolls sideways with its first column frozen and a hint above it. Again whenever the window changes size.
(function () {
  function available(div) {  // from the figure's left edge to its column's right edge
    var box = div.closest("figure") || div.parentElement, style = getComputedStyle(box);
    return Math.floor(box.getBoundingClientRect().right - parseFloat(style.paddingRight || 0)
                      - div.getBoundingClientRect().left) - 1;
  }
  function wrapTitle(text, chars) {
    var words = text.replace(/<br\\s*\\/?>/gi, " ").split(/\\s+/), lines = [], line = "";
    words.forEach(function (w) {
      if (line && (line + " " + w).replace(/<[^>]+>/g, "").length > chars) { lines.push(line); line = w; }
      else line = line ? line + " " + w : w;
    });
    if (line) lines.push(line);
    return lines;
  }
  function titleText(t) { return typeof t === "string" ? t : ((t || {}).text || ""); }
  function fitFigure(div) {
    if (!window.Plotly || !div._fullLayout || div._hamvizBusy) return;
    var L = div._fullLayout, m = L.margin;
    if (!div._hamviz) {
      var t0 = titleText(div.layout && div.layout.title);
      div._hamviz = {w: div.layout && div.layout.width, h: L.height, top: m.t, title: t0,
                     lines: t0 ? t0.split(/<br\\s*\\/?>/i).length : 0,
                     size: (L.title && L.title.font && L.title.font.size) || 17};
    }
    var d = div._hamviz, width = available(div), update = {};
    if (!(width > 50)) return;
    // the target, from the figure as drawn first: its width, its title's lines, its height
    var w = d.w ? Math.min(d.w, width) : L.width, lines = d.title ? d.title.split(/<br\\s*\\/?>/i) : [];
    if (d.title) {
      var chars = Math.max(20, Math.floor((0.93 * w - 20) / (0.56 * d.size)));
      var longest = Math.max.apply(null, lines.map(function (l) { return l.replace(/<[^>]+>/g, "").length; }));
      if (longest > chars) lines = wrapTitle(d.title, chars);
    }
    var title = lines.join("<br>"), top = d.top + 20 * Math.max(0, lines.length - d.lines);
    var images = (div.data || []).some(function (t) { return t.type === "image"; });
    var h = (d.w && images ? Math.round(d.top + m.b + (d.h - d.top - m.b) * (w - m.l - m.r) / (d.w - m.l - m.r))
                           : d.h) + (top - d.top);
    if (d.w && Math.abs(L.width - w) > 1) update.width = w;
    if (Math.abs(L.height - h) > 1) update.height = h;
    if (d.title && title !== titleText(div.layout.title)) { update["title.text"] = title; update["margin.t"] = top; }
    if (Object.keys(update).length) {
      div._hamvizBusy = true;
      // the boxes plotly sized for the figure grow with it (its div, and the wrapper its HTML output sets a height on)
      if (update.height) [div, div.parentElement].forEach(function (e) {
        if (e === div || (e.style.height && !e.matches("figure"))) e.style.height = update.height + "px";
      });
      if (update.width) div.style.width = update.width + "px";
      Plotly.relayout(div, update).then(function () { div._hamvizBusy = false; },
                                        function () { div._hamvizBusy = false; });
    }
  }
  function markTables() {
    document.querySelectorAll(".hamviz-scroll").forEach(function (box) {
      var over = box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("overflows", over);
      var hint = box.previousElementSibling;
      if (hint && hint.classList.contains("hamviz-scroll-hint")) hint.hidden = !over;
    });
  }
  function fitAll() {
    document.querySelectorAll(".plotly-graph-div").forEach(fitFigure);
    markTables();
  }
  window.hamvizFit = fitAll;
  var timer = null;
  window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(fitAll, 150); });
  window.addEventListener("load", function () {
    fitAll();
    [300, 1000, 2500, 5000].forEach(function (t) { setTimeout(fitAll, t); });
  });
  document.addEventListener("DOMContentLoaded", markTables);
})();
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
