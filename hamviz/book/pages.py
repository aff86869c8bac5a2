"""The book's notebook pages: what :mod:`hamviz.book.render` gives Sphinx for each executed chapter notebook
(:func:`prepare_notebook`: parameters cells left out, code folded, a "Key results" box first, figures and tables
numbered with captions, plotly.js shared once per book, widget outputs replaced by a note) and for the front page
(:func:`index_markdown`)."""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..config import HamvizError
from ..files import write_atomic
from .frontpage import (
    FOREST_NOTE,
    findings_table,
    front_page,
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
    the title), the chapter's answers (its verdicts as the front page shows them: :func:`hamviz.book.frontpage.
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
    """The front page (MyST markdown with HTML blocks, :func:`hamviz.book.frontpage.front_page`): the findings
    first, then the chapters, the provenance and the parameters, folded; a hidden toctree of ``pages`` gives the
    sidebar and the previous/next order. ``info``: book.json's content; ``links``: stem -> (href or None, failed-run
    href or None)."""
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


