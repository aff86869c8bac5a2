"""The results book and the widgets in a real browser (headless Chromium driven by Playwright).

1. The book built by the shared ``tiny_book`` fixture (rendered by Sphinx + MyST-NB + sphinx-book-theme), opened
   from its folder with every non-file:// request blocked: the index lists every chapter of book.json with its
   key numbers and times, every link in it points at a file that exists, every chapter page loads with its key
   results first and every plotly figure drawn, no page shows a widget's Python repr or the parameters cells;
   a reader gets from the index to every chapter and back through the sidebar and through next/previous, the
   search finds each chapter by a word of its title, the code toggles show and hide the code; nothing logs a
   JavaScript error or asks the network for anything. The front page leads with the findings (every verdict of
   every record, at the precision its interval justifies, k of N, shown / not settled), then the chapters, the
   provenance with the CPU and the parameters folded, within three screens at 1400x900. On every page, at 1400 px
   and in a 1000-px window, nothing is wider than the text column or cut (figures, titles, images, tables -- a
   wide one scrolls with a visible hint and a frozen first column --, printed output), and nothing is raw (Python
   reprs, lock messages, nan, bare 0..n indexes, uncaptioned tables, "class, True" legends); ROC axes run 0 to 1.
   Screenshots of every page at both widths are kept.
2. The compression chapter's live explorer in a real JupyterLab: Run All on a copy of
   notebooks/03_compression.ipynb with the tiny profile, then the JPEG-quality slider moved with the keyboard
   (Home, PageUp) and the mouse (a click on its track), and an autoencoder chosen with the mouse; the image, the
   byte count and the class probabilities follow, and the slider is disabled for the autoencoder.

Time budget: under 4 minutes beyond the shared book build (2-3.5 minutes). Measured on the 2-core machine:
the book pages 1-5 s each (14 page x width loads for the layout checks: about 80 s), JupyterLab's start and Run
All of the tiny compression chapter, which loads the models the book build cached, 35-65 s. Keep it there: one browser
for the module, one JupyterLab, polls instead of sleeps.

The browser is the system Chromium (Debian's ``chromium``; ``.ci/run`` and ``make test`` install it where it
is missing); Playwright's own browser downloads are never used. Set HAMVIZ_CHROMIUM to use another binary.
Screenshots go to ``test-artefacts/browser/`` (gitignored).
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from hamviz.book import discover
from hamviz.book.frontpage import duration, key_numbers

REPO = Path(__file__).resolve().parents[1]
ARTEFACTS = REPO / "test-artefacts" / "browser"
CHROMIUM = Path(os.environ.get("HAMVIZ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STEMS = [s.stem for s in discover()]
#: the longest a JupyterLab started here may live, whatever happens to the test process
LAB_LIFETIME_S = 480


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.is_file():
        raise pytest.UsageError(f"Chromium not found at {CHROMIUM}: install it (Debian: apt-get install -y "
                                f"chromium; `make test` does this) or set HAMVIZ_CHROMIUM to its binary.")
    from playwright.sync_api import sync_playwright
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()
    pw.stop()


class Watched:
    """A browser context whose requests outside ``allowed`` are blocked and recorded, with every page error
    and console error of its pages collected."""

    def __init__(self, browser, allowed, **context_args):
        self.allowed = allowed
        self.blocked: list[str] = []
        self.page_errors: list[str] = []
        self.console: list[tuple[str, str]] = []  # (text, url of the script or resource that logged it)
        self.context = browser.new_context(**context_args)
        self.context.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if self.allowed(url):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def new_page(self):
        page = self.context.new_page()
        page.on("pageerror", lambda err: self.page_errors.append(f"{err}"))
        page.on("console", lambda msg: self.console.append((msg.text, (msg.location or {}).get("url", "")))
                if msg.type == "error" else None)
        return page

    def console_errors(self) -> list[str]:
        """Console errors other than those reporting a request this context blocked."""
        return [f"{text} ({url})" for text, url in self.console
                if not (url in self.blocked and text.startswith("Failed to load resource"))]

    def close(self):
        self.context.close()


@pytest.fixture
def offline(chromium):
    """A browser context that may read local files only."""
    w = Watched(chromium, lambda url: url.startswith(("file://", "data:", "blob:")), viewport={
        "width": 1280, "height": 900})
    yield w
    w.close()


def assert_clean(w: Watched, what: str):
    assert not w.blocked, f"{what} asked the network for {w.blocked} (the book must work offline)"
    assert not w.page_errors, f"JavaScript errors in {what}: {w.page_errors}"
    assert not w.console_errors(), f"console errors in {what}: {w.console_errors()}"


def book_json(out: Path) -> dict:
    return json.loads((out / "book.json").read_text())


# ------------------------------------------------------------------------------------------ the book


def test_index_lists_every_chapter_with_its_numbers(tiny_book, offline):
    out, _, _ = tiny_book
    info = book_json(out)
    assert [c["stem"] for c in info["chapters"]] == STEMS
    page = offline.new_page()
    page.goto((out / "index.html").as_uri(), wait_until="load")
    rows = page.locator("table.hamviz-chapters > tbody > tr")
    assert rows.count() == len(info["chapters"])
    for row, entry in zip(rows.all(), info["chapters"]):
        cells = row.locator("> td")
        assert cells.nth(0).inner_text().strip() == entry["stem"][:2]
        assert entry["title"] in cells.nth(1).inner_text()
        when = cells.nth(2).inner_text()  # status, run time and training time in one narrow column
        assert when.strip().startswith(entry["status"])
        assert entry["status"] == "ok", (entry["stem"], entry["note"])
        assert f"run {duration(entry['seconds'])}" in when
        training = entry["training"]
        if training.get("models"):
            assert f"training {duration(training['seconds'])}" in when
        shown = [li.inner_text().strip() for li in cells.nth(3).locator("li").all()]
        expected = [f"{name}: {html.unescape(re.sub('<[^>]+>', '', value))}" for _, name, value in
                    key_numbers(entry["summary"], entry.get("values") or {})]  # the field's names, no answer lines
        assert shown == expected, entry["stem"]
        assert not any(k.startswith("answer: ") for k, *_ in key_numbers(entry["summary"], {}))
    assert page.get_by_text(info["provenance"]["data_fingerprint"]).count() == 1
    assert_no_widget_repr(page, "index.html")
    assert_clean(offline, "index.html")


FRONT = """() => {
  const top = e => e ? e.getBoundingClientRect().top + window.scrollY : null;
  const h2 = [...document.querySelectorAll('article h2')].map(h => h.textContent.replace('#', '').trim());
  return {h2: h2, findings: top(document.querySelector('table.hamviz-findings')),
          chapters: top(document.querySelector('table.hamviz-chapters')),
          params: top(document.querySelector('details.hamviz-params-all')),
          open: document.querySelector('details.hamviz-params-all').open,
          yamlShown: document.querySelector('pre.hamviz-params-yaml').checkVisibility(),
          keys: [...document.querySelectorAll('table.hamviz-chapters td.keys')].map(
                 td => Math.round(td.getBoundingClientRect().width)),
          pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
}"""


def shown_decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def test_front_page_leads_with_the_findings(tiny_book, offline):
    """The front page opens with the book's findings -- every verdict of every chapter record, with its effect and
    interval at the precision the interval justifies, k of N and shown / not settled --, then the chapters (key
    numbers in a wide column), the provenance with the CPU, and the parameters folded; within three screens at
    1400x900 before the parameters, and never wider than the window."""
    out, _, _ = tiny_book
    info = book_json(out)
    page = offline.new_page()
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto((out / "index.html").as_uri(), wait_until="load")
    f = page.evaluate(FRONT)
    assert f["h2"][:3] == ["Findings", "Chapters", "Provenance"], f["h2"]
    assert f["findings"] < f["chapters"] < f["params"]
    assert f["params"] <= 3 * 900, f"the front page needs {f['params'] / 900:.1f} screens before the parameters"
    assert not f["open"] and not f["yamlShown"], "the parameters are not folded"
    assert f["pageWidth"] <= f["viewport"], f"the front page scrolls sideways ({f['pageWidth']} px)"
    assert f["keys"] and min(f["keys"]) >= 250, f"key-number cells too narrow: {f['keys']} px"
    verdicts = [(c, v) for c in info["chapters"] for v in (c.get("verdicts") or {}).values()]
    assert len(verdicts) >= 10  # the tiny book's chapters state their verdicts
    rows = page.locator("table.hamviz-findings > tbody > tr:not(.chapter)")
    assert rows.count() == len(verdicts)
    for row, (c, v) in zip(rows.all(), verdicts):
        question, effect, decision = (row.locator(f"td.{k}").inner_text().strip()
                                      for k in ("question", "effect", "decision"))
        assert question == v["question"]
        assert decision.startswith(v["status"]) and f"{v['k']} of {v['n']}" in decision
        assert row.locator("td.forest svg").count() == 1  # the effect drawn
        if v["mean"] is None:
            assert effect == "no value"
            continue
        if v["low"] is None:
            continue
        shown = re.search(r"\[([^,\]]+), ([^\]]+)\]", effect)
        assert shown, (v["question"], effect)
        half = (v["high"] - v["low"]) / 2  # two significant digits of the half-width, no more
        want = int(min(4, max(0, 1 - math.floor(math.log10(half))))) if half > 0 else 0
        assert shown_decimals(shown[1]) == shown_decimals(shown[2]) == want, (v["question"], effect, half)
        assert shown_decimals(effect.split()[0]) == want
    assert page.locator("table.hamviz-findings td.decision", has_text="not settled").count() == sum(
        v["status"] == "not settled" for _, v in verdicts)
    cpu = info["provenance"]["cpu"]
    prov = page.locator("table.hamviz-provenance").inner_text()
    assert cpu["model"] in prov and all(x in prov for x in cpu["vector_extensions"])
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTEFACTS / "index.png", full_page=True)
    page.screenshot(path=ARTEFACTS / "index-1400x900.png")
    assert_clean(offline, "index.html")


def test_every_index_link_resolves_to_a_file(tiny_book, offline):
    out, _, _ = tiny_book
    page = offline.new_page()
    page.goto((out / "index.html").as_uri(), wait_until="load")
    links = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
    stems = {s: f"chapters/{s}/{s}.html" for s in STEMS}
    assert len(links) >= len(stems)
    for url in links:
        parsed = urlparse(url)
        assert parsed.scheme == "file", f"the index links outside the book: {url}"
        path = Path(unquote(parsed.path))
        assert path.is_file(), f"the index links to a missing file: {url}"
        assert out.resolve() in path.resolve().parents, f"the index links outside the book folder: {url}"
    targets = {Path(unquote(urlparse(u).path)).resolve() for u in links}
    assert {(out / p).resolve() for p in stems.values()} <= targets  # every chapter is linked
    assert_clean(offline, "index.html")


RENDERED = """divs => divs.map(d => {
  const svg = d.querySelector('svg.main-svg');
  const box = svg ? svg.getBoundingClientRect() : null;
  const marks = d.querySelectorAll('svg.main-svg g.trace, svg.main-svg image').length;
  const canvases = [...d.querySelectorAll('canvas')].filter(c => c.width > 0 && c.height > 0).length;
  return {id: d.id, plotted: !!d._fullLayout, traces: (d.data || []).length,
          svg: !!svg && box.width > 0 && box.height > 0, marks: marks, canvases: canvases};
})"""

#: what a live widget's Python repr starts with (a static page has no kernel to draw the widget)
WIDGET_REPRS = ("VBox(children", "HBox(children", "IntSlider(", "ToggleButtons(", "Output(", "Image(value")


def assert_no_widget_repr(page, what: str):
    text = page.locator("body").inner_text()
    shown = [r for r in WIDGET_REPRS if r in text]
    assert not shown, f"{what} shows a widget's repr: {shown}"


@pytest.mark.parametrize("stem", STEMS)
def test_chapter_page_loads_offline_and_renders_every_figure(tiny_book, offline, stem):
    out, _, _ = tiny_book
    path = out / "chapters" / stem / f"{stem}.html"
    source = path.read_text(encoding="utf-8")
    page = offline.new_page()
    page.goto(path.as_uri(), wait_until="load")
    assert page.locator("article h1").first.inner_text().strip()
    # the key results come first: before the chapter's first section and its first figure
    article = page.locator("article").first.inner_text()
    assert "Key results" in article and article.index("Key results") < article.index("Figure ")
    assert "# Parameters" not in source and "/.work/" not in source  # the parameters cells left out
    assert_no_widget_repr(page, f"{stem}.html")
    n_figures = source.count('class="plotly-graph-div"')
    assert n_figures > 0, f"{stem} has no plotly figure"
    divs = page.locator(".plotly-graph-div")
    assert divs.count() == n_figures
    assert page.locator("figure.hamviz-figure figcaption").count() == n_figures  # every figure numbered
    # plotly draws asynchronously (and only once a figure is displayed): wait until every one is drawn
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d._fullLayout && "
            "(d.querySelector('svg.main-svg') || d.querySelector('canvas')))", timeout=60_000)
    except Exception:  # noqa: BLE001 -- report which figures did not render, with the JS errors
        pass
    figs = divs.evaluate_all(RENDERED)
    bad = [f for f in figs if not (f["plotted"] and f["traces"] > 0 and (f["svg"] or f["canvases"])
                                   and (f["marks"] > 0 or f["canvases"] > 0))]
    assert not bad, f"{stem}: figures not rendered: {bad}; page errors: {offline.page_errors}"
    if stem == "03_compression":
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTEFACTS / f"{stem}.png", full_page=True)
        page.screenshot(path=ARTEFACTS / f"{stem}-top.png")
    assert_clean(offline, f"{stem}.html")


# ----------------------------------------------------------------------- nothing clipped, cut or raw

PAGES = ["index.html"] + [f"chapters/{s}/{s}.html" for s in STEMS]
#: the window widths every page must fit: a laptop, and a narrow window (the sidebar still shown: a ~650 px column)
WIDTHS = (1400, 1000)

#: every figure, image, table and output box that does not fit its column, with how (a page that scrolls sideways
#: counts too); a table wider than the column passes only inside a box that scrolls sideways, with its first column
#: frozen and a visible hint
CUT = """() => {
  const bad = [];
  const article = document.querySelector('article.bd-article');
  const a = article.getBoundingClientRect(), cs = getComputedStyle(article);
  const left = a.left + parseFloat(cs.paddingLeft) - 1, right = a.right - parseFloat(cs.paddingRight) + 1;
  const name = e => {
    const fig = e.closest('figure');
    const cap = fig && fig.querySelector('figcaption');
    return (cap ? cap.textContent.trim().slice(0, 60) : e.tagName + '.' + String(e.className).slice(0, 30));
  };
  const scroller = e => {
    for (let p = e.parentElement; p && p !== article; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') return p;
    }
    return null;
  };
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    bad.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' px in a ' +
             window.innerWidth + ' px window');
  for (const d of article.querySelectorAll('.plotly-graph-div')) {
    const svg = d.querySelector('svg.main-svg');
    if (!svg) continue;
    const r = svg.getBoundingClientRect();
    if (r.right > right || r.left < left)
      bad.push(`figure "${name(d)}": ${Math.round(r.width)} px wide, the column ${Math.round(right - left)} px`);
    const cap = d.closest('figure') && d.closest('figure').querySelector('figcaption');
    if (cap && r.bottom > cap.getBoundingClientRect().top + 1)
      bad.push(`figure "${name(d)}": drawn over its caption (${Math.round(r.bottom - \
cap.getBoundingClientRect().top)} px)`);
    const t = d.querySelector('.gtitle');
    if (t && t.textContent.trim()) {
      const b = t.getBoundingClientRect();
      if (b.right > Math.min(r.right, right) + 1 || b.left < Math.max(r.left, left) - 1)
        bad.push(`figure "${name(d)}": its title "${t.textContent.slice(0, 50)}" is cut`);
    }
  }
  for (const img of article.querySelectorAll('img')) {
    const r = img.getBoundingClientRect();
    if (r.width && (r.right > right || r.left < left)) bad.push(`image ${img.src.slice(-40)}: cut`);
  }
  for (const t of article.querySelectorAll('table')) {
    const r = t.getBoundingClientRect();
    if (r.right <= right && r.left >= left) continue;
    const box = scroller(t);
    if (!box || box.getBoundingClientRect().right > right) { bad.push(`table "${name(t)}": cut`); continue; }
    const hint = box.previousElementSibling;
    if (!hint || !hint.classList.contains('hamviz-scroll-hint') || !hint.offsetParent)
      bad.push(`table "${name(t)}": scrolls sideways without a visible hint`);
    const first = t.querySelector('tbody tr > :first-child');
    if (first && getComputedStyle(first).position !== 'sticky')
      bad.push(`table "${name(t)}": scrolls sideways without its first column frozen`);
  }
  for (const pre of article.querySelectorAll('.cell_output pre, .output pre')) {
    if (pre.offsetParent && pre.scrollWidth > pre.clientWidth + 1)
      bad.push(`output box "${pre.textContent.trim().slice(0, 60)}": cut at ${pre.clientWidth} px ` +
               `(${pre.scrollWidth} px of text)`);
  }
  return bad;
}"""

#: Python reprs (a dict, a list of strings, a numpy array, a tuple of strings) and build-process messages
RAW = [(re.compile(r"\{'[^'\n]{1,60}': "), "a Python dict"), (re.compile(r"\['[^'\n]*', '"), "a Python list"),
       (re.compile(r"\barray\(\["), "a numpy array"), (re.compile(r"\('[^'\n]*', '"), "a Python tuple"),
       (re.compile(r"being trained by process|waiting for it|\.lock\b"), "a build-lock message")]

#: what a page shows that is raw: a missing value as nan, a bare 0..n-1 row index, a table without caption, a legend
#: entry "class, True"
RAW_TABLES = """() => {
  const bad = [];
  const article = document.querySelector('article.bd-article');
  for (const t of article.querySelectorAll('.cell_output table')) {
    if (t.closest('details.hamviz-params')) continue;
    const cap = t.closest('figure') && t.closest('figure').querySelector('figcaption');
    const label = cap ? cap.textContent.trim().slice(0, 50) : '(no figure)';
    if (!cap || !cap.textContent.replace(/^\\s*Table\\s+[\\d.]+\\.?/, '').trim()) \
bad.push(`table ${label}: no caption`);
    const cells = [...t.querySelectorAll('td')].map(c => c.textContent.trim());
    const nans = cells.filter(c => /^(nan|NaN|None|<NA>|NaT)$/.test(c));
    if (nans.length) bad.push(`table ${label}: ${nans.length} cell(s) show ${nans[0]}`);
    const heads = [...t.querySelectorAll('tbody tr')].map(r => r.firstElementChild)
                  .filter(c => c && c.tagName === 'TH').map(c => c.textContent.trim());
    if (heads.length > 1 && heads.every((h, i) => h === String(i))) bad.push(`table ${label}: a bare 0..n index`);
  }
  for (const e of article.querySelectorAll('.plotly-graph-div .legendtext')) {
    if (/,\\s*(True|False)$/.test(e.textContent.trim())) bad.push(`legend entry "${e.textContent}"`);
  }
  return bad;
}"""


def settled_page(page, timeout_s: float = 20):
    """Wait until every plotly figure is drawn and the page's layout stops changing (figures are fitted to the
    column after they are drawn)."""
    page.wait_for_function("() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d._fullLayout && "
                           "(d.querySelector('svg.main-svg') || d.querySelector('canvas')))", timeout=timeout_s * 1000)
    last, deadline = None, time.time() + timeout_s
    while time.time() < deadline:
        now = page.evaluate("() => [document.documentElement.scrollHeight, ...[...document.querySelectorAll("
                            "'.plotly-graph-div')].map(d => d._fullLayout.width + 'x' + d._fullLayout.height)].join()")
        if now == last:
            return
        last = now
        page.wait_for_timeout(700)


def raw_on_page(page) -> list[str]:
    """What a page shows raw (:data:`RAW`, :data:`RAW_TABLES`)."""
    text = "\n".join(page.locator("article .cell_output").all_inner_texts()) or page.locator("article").inner_text()
    raw = [f"{what}: ...{text[max(0, m.start() - 40):m.end() + 40]!r}..." for rx, what in RAW
           for m in list(rx.finditer(text))[:2]]
    return raw + page.evaluate(RAW_TABLES)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("rel", PAGES)
def test_nothing_is_clipped_cut_or_raw(tiny_book, offline, rel, width):
    """Every figure, image, table and printed output fits the text column at 1400 px and in a narrow window, or
    (a wide table) scrolls sideways with a visible hint and its first column frozen; nothing is silently cut. And
    (checked once, at 1400 px) no Python dict, list or array repr and no build-lock message in what the page shows;
    every table captioned and indexed by what its rows are (no bare 0..n index), a missing value said as n/a,
    legends that say what their symbols mean."""
    out, _, _ = tiny_book
    page = offline.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    page.goto((out / rel).as_uri(), wait_until="load")
    settled_page(page)
    bad = page.evaluate(CUT)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / f"{Path(rel).stem}-{width}.png"
    page.screenshot(path=shot, full_page=True)
    assert not bad, f"{rel} at {width} px (see {shot}):\n  " + "\n  ".join(bad)
    raw = raw_on_page(page) if width == WIDTHS[0] else []
    assert not raw, f"{rel} shows:\n  " + "\n  ".join(raw)
    assert_clean(offline, rel)


def test_roc_figures_span_zero_to_one(tiny_book, offline):
    """Every ROC figure: both axes from 0 to 1 and a plot area that is not squeezed by its legend."""
    out, _, _ = tiny_book
    page = offline.new_page()
    page.set_viewport_size({"width": 1400, "height": 900})
    found = 0
    for stem in [s for s in STEMS if "ROC" in (out / "chapters" / s / f"{s}.html").read_text(encoding="utf-8")]:
        page.goto((out / "chapters" / stem / f"{stem}.html").as_uri(), wait_until="load")
        settled_page(page)
        rocs = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')].filter(d => {
            const t = d.layout.title; return /ROC/.test(typeof t === 'string' ? t : (t || {}).text || ''); })
          .map(d => ({x: d._fullLayout.xaxis.range, y: d._fullLayout.yaxis.range, w: d._fullLayout.xaxis._length,
                      h: d._fullLayout.yaxis._length, width: d._fullLayout.width,
                      title: ((d.layout.title || {}).text || d.layout.title || '').slice(0, 60)}))""")
        for r in rocs:
            found += 1
            for axis in ("x", "y"):
                low, high = r[axis]
                assert -0.05 <= low <= 0.01 and 0.99 <= high <= 1.05, f"{stem}, {r['title']}: {axis} runs {low}..{high}"
            assert min(r["w"], r["h"]) >= 0.45 * min(r["width"], 700), \
                f"{stem}, {r['title']}: plot area {r['w']}x{r['h']}"
    assert found >= 2  # the classifier's one-vs-rest ROC and the ensemble's
    assert_clean(offline, "the ROC figures")


def _at(page, out: Path, rel: str) -> bool:
    return Path(unquote(urlparse(page.url).path)).resolve() == (out / rel).resolve()


def test_every_chapter_is_reached_and_left_through_the_sidebar_and_next_previous(tiny_book, offline):
    out, _, _ = tiny_book
    titles = {c["stem"]: c["title"] for c in book_json(out)["chapters"]}
    page = offline.new_page()
    page.goto((out / "index.html").as_uri(), wait_until="load")
    for stem in STEMS:  # the sidebar: index -> chapter -> index
        page.locator("nav.hamviz-nav li.toctree-l1 > a", has_text=titles[stem]).first.click()
        page.wait_for_load_state("load")
        assert _at(page, out, f"chapters/{stem}/{stem}.html"), page.url
        assert page.locator("article h1").first.inner_text().strip().startswith(titles[stem][:40])
        # the chapter's sections are in the sidebar too
        sections = page.locator("nav.hamviz-nav li.toctree-l1.current li.toctree-l2 a")
        assert sections.count() >= 1, f"{stem}: no sections in the sidebar"
        page.locator("nav.hamviz-nav .bd-sidenav__home-link a").click()
        page.wait_for_load_state("load")
        assert _at(page, out, "index.html"), page.url
    for stem in STEMS:  # next, from the index through every chapter in order
        page.locator(".prev-next-area a.right-next").click()
        page.wait_for_load_state("load")
        assert _at(page, out, f"chapters/{stem}/{stem}.html"), (stem, page.url)
    assert page.locator(".prev-next-area a.right-next").count() == 0  # the last chapter has no next
    for stem in reversed(STEMS[:-1]):  # and previous, back to the index
        page.locator(".prev-next-area a.left-prev").click()
        page.wait_for_load_state("load")
        assert _at(page, out, f"chapters/{stem}/{stem}.html"), (stem, page.url)
    page.locator(".prev-next-area a.left-prev").click()
    page.wait_for_load_state("load")
    assert _at(page, out, "index.html"), page.url
    assert_clean(offline, "the navigation")


def title_word(title: str) -> str:
    """The longest word of a chapter title (the search's query for that chapter)."""
    return max(re.findall(r"[A-Za-z][A-Za-z-]+", title), key=len)


def test_search_finds_every_chapter_by_a_word_of_its_title(tiny_book, offline):
    out, _, _ = tiny_book
    page = offline.new_page()
    for c in book_json(out)["chapters"]:
        word = title_word(c["title"])
        page.goto((out / "index.html").as_uri(), wait_until="load")
        page.locator("button.search-button-field").first.click()  # the search box of every page
        box = page.locator("#pst-search-dialog input[name=q]")
        box.fill(word)
        box.press("Enter")
        page.wait_for_load_state("load")
        assert _at(page, out, "search.html"), page.url
        hit = page.locator(f"#search-results a[href*='chapters/{c['stem']}/{c['stem']}.html']")
        hit.first.wait_for(timeout=30_000)
        assert hit.count() >= 1, f"searching {word!r} did not find {c['stem']}"
    assert_clean(offline, "the search")


def test_code_is_folded_and_the_toggles_show_and_hide_it(tiny_book, offline):
    out, _, _ = tiny_book
    stem = STEMS[1]
    page = offline.new_page()
    page.goto((out / "chapters" / stem / f"{stem}.html").as_uri(), wait_until="load")
    folds = page.locator("details.hide.above-input")
    assert folds.count() >= 3
    code = folds.first.locator("pre").first
    assert not code.is_visible(), "code is shown before the reader asks for it"
    folds.first.locator("summary").click()
    assert code.is_visible() and code.inner_text().strip()
    folds.first.locator("summary").click()
    assert not code.is_visible()
    every = page.locator("button.hamviz-code-toggle")  # one button for all the page's code
    every.click()
    assert every.inner_text().strip() == "Hide all code"
    assert all(d.evaluate("d => d.open") for d in folds.all())
    every.click()
    assert not any(d.evaluate("d => d.open") for d in folds.all())
    assert_clean(offline, f"{stem}.html")


# ------------------------------------------------------------------------------------ JupyterLab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list:
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_lab(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut JupyterLab down (its kernel included), then kill whatever of it is left."""
    import psutil
    family = _descendants(proc.pid)  # the kernel runs in a session of its own: remember it now
    try:
        req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
        urllib.request.urlopen(req, timeout=5).close()
        proc.wait(timeout=15)
    except Exception:  # noqa: BLE001 -- not answering: killed below
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for child in family:
        try:
            child.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_dir):
    """JupyterLab on a free local port with a random token, serving a folder holding a copy of the compression
    chapter parameterised for the tiny profile. Lives at most LAB_LIFETIME_S; killed at the end of the module."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root = tmp_path_factory.mktemp("lab")
    home = root / "jupyter"
    nbdir = root / "work"
    nbdir.mkdir()
    nb = load_notebook_node(str(REPO / "notebooks" / "03_compression.ipynb"))
    nb = parameterize_notebook(nb, {"profile": "tiny", "params": {}, "data_dir": None,  # None: $HAMVIZ_DATA
                                    "record_path": str(nbdir / "compression.json")})
    nbformat.write(nb, nbdir / "03_compression.ipynb")
    settings = home / "settings" / "@jupyterlab"
    for plugin, values in {  # no news or update checks; every cell in the DOM (no windowing)
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "notebook-extension/tracker": {"windowingMode": "none"}}.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               # the kernel inherits these: the data and the test cache (where the book's models are)
               HAMVIZ_DATA=str(data_dir), HAMVIZ_CACHE=os.environ["HAMVIZ_CACHE"])
    log = (root / "lab.log").open("w")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--port-retries=0",
           f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={nbdir}",
           "--allow-root", "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
           "--LabApp.news_url=None",
           f"--ServerApp.shutdown_no_activity_timeout={LAB_LIFETIME_S}"]
    if shutil.which("timeout"):  # a hard bound even if this process dies without its finaliser
        cmd = ["timeout", "-k", "10", str(LAB_LIFETIME_S)] + cmd
    proc = subprocess.Popen(cmd, cwd=nbdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    watchdog = threading.Timer(LAB_LIFETIME_S, lambda: proc.poll() is None and os.killpg(proc.pid,
                                                                                         signal.SIGKILL))
    watchdog.daemon = True
    watchdog.start()
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
                break
            except Exception:  # noqa: BLE001 -- not up yet
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"JupyterLab did not start:\n{(root / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"base": base, "token": token, "dir": nbdir, "log": root / "lab.log"}
    finally:
        watchdog.cancel()
        stop_lab(proc, base, token)
        log.close()


def blob_digest(page, img) -> str:
    """sha256 of the bytes an <img> shows (ipywidgets' Image shows a blob: URL of the PNG it was sent)."""
    data = img.evaluate("async el => el.src ? Array.from(new Uint8Array(await (await fetch(el.src))"
                        ".arrayBuffer())) : []")
    return hashlib.sha256(bytes(data)).hexdigest()


def explorer_state(page, root) -> dict:
    coded = root.locator(".widget-image").nth(1)
    info = root.locator(".widget-html", has_text="bytes").first
    probs = root.locator(".widget-html", has_text="classifier:").first
    return {"src": coded.get_attribute("src"), "png": blob_digest(page, coded),
            "size": re.search(r"([\d,]+) bytes", info.inner_text()).group(1),
            "info": info.inner_text(), "probs": probs.inner_html(),
            "readout": root.locator(".widget-readout").first.inner_text().strip()}


KERNEL_IDLE = re.compile(r"\(ipykernel\) \| Idle")


def settled(page, root, before: dict | None = None, quiet_s: float = 1.5, timeout_s: float = 90) -> dict:
    """The explorer's state once the kernel has answered the last change: different from ``before`` in its
    image, then unchanged for ``quiet_s`` with the kernel idle (one key press can queue several updates)."""
    idle = page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE)
    deadline = time.time() + timeout_s
    last, since = None, time.time()
    while time.time() < deadline:
        now = explorer_state(page, root)
        if now != last:
            last, since = now, time.time()
        elif (time.time() - since >= quiet_s and idle.count()
              and (before is None or now["png"] != before["png"])):
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"the explorer did not settle on a new image in {timeout_s} s: {last}")


def test_compression_explorer_in_jupyterlab(lab, chromium):
    w = Watched(chromium, lambda url: url.startswith((lab["base"] + "/", "data:", "blob:")),
                viewport={"width": 1400, "height": 1000})
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page = w.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{lab['base']}/lab/tree/03_compression.ipynb?token={lab['token']}", wait_until="load")
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for()
        # wait for the kernel (Run All before it is there runs nothing), then Run > Run All Cells
        page.locator(".jp-StatusBar-TextItem", has_text=KERNEL_IDLE).wait_for(timeout=120_000)
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()

        # until the explorer shows (or a cell fails): the tiny chapter loads the cached models and runs
        deadline = time.time() + 240
        explorer = page.locator(".jp-OutputArea-output .widget-vbox", has=page.locator(".widget-toggle-buttons"))
        while not explorer.count():
            err = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                               has_text="Traceback")
            assert not err.count(), f"a cell failed in JupyterLab:\n{err.first.inner_text()[-3000:]}"
            if time.time() > deadline:
                page.screenshot(path=ARTEFACTS / "jupyterlab-timeout.png")
                prompts = page.locator(".jp-InputArea-prompt").all_inner_texts()
                raise AssertionError(f"the explorer never showed; cell prompts {prompts}; see "
                                     f"{ARTEFACTS / 'jupyterlab-timeout.png'}; server log:\n"
                                     f"{lab['log'].read_text()[-3000:]}")
            page.wait_for_timeout(500)
        root = explorer.first
        root.scroll_into_view_if_needed()
        slider = root.locator(".widget-hslider", has_text="JPEG quality")
        handle = slider.locator(".noUi-handle")
        handle.wait_for()
        page.locator(".jp-Notebook .jp-InputArea-prompt", has_text="[*]").first.wait_for(state="detached",
                                                                                       timeout=120_000)
        start = settled(page, root)
        assert start["readout"] == "50" and "coded" in root.inner_text()

        # the slider, with the keyboard on its handle: Home takes it to quality 1
        handle.focus()
        page.keyboard.press("Home")
        low = settled(page, root, start)
        assert low["readout"] == "1", low["readout"]
        assert low["src"] != start["src"] and low["png"] != start["png"], "the image did not change"
        assert int(low["size"].replace(",", "")) < int(start["size"].replace(",", "")), (start["info"], low["info"])
        assert low["probs"] != start["probs"], "the class probabilities did not change"
        for _ in range(3):  # and PageUp moves it up, 5 steps a press
            page.keyboard.press("PageUp")
        up = settled(page, root, low)
        assert up["readout"] == "16" and up["size"] != low["size"] and up["probs"] != low["probs"]
        root.screenshot(path=ARTEFACTS / "jupyterlab-jpeg.png")
        # and the mouse: a click near the right end of the track takes it to the top qualities
        track = slider.locator(".noUi-target")
        box = track.bounding_box()
        right_end = {"x": box["width"] - 3, "y": box["height"] / 2}
        track.click(position=right_end)
        high = settled(page, root, up)
        assert int(high["readout"]) > 90 and int(high["size"].replace(",", "")) > int(up["size"].replace(",", ""))

        # an autoencoder, with the mouse: another image and size, and the quality slider is disabled
        ae = root.locator(".widget-toggle-button", has_text=re.compile(r"^autoencoder"))
        assert ae.count() >= 1, root.locator(".widget-toggle-buttons").inner_text()
        ae.first.click()
        coded_ae = settled(page, root, high)
        assert coded_ae["src"] != high["src"] and coded_ae["png"] != high["png"]
        assert coded_ae["size"] != high["size"] and coded_ae["info"] != high["info"]
        assert "mod-active" in (ae.first.get_attribute("class") or "")
        assert slider.locator(".noUi-target").get_attribute("disabled") is not None, "slider still enabled"
        track.click(position={"x": 3, "y": right_end["y"]}, force=True)  # the left end, now: nothing moves
        page.wait_for_timeout(1000)
        after = explorer_state(page, root)
        assert after["readout"] == high["readout"] and after["png"] == coded_ae["png"], "a disabled slider moved"
        root.screenshot(path=ARTEFACTS / "jupyterlab-autoencoder.png")
        assert not w.blocked, f"JupyterLab asked the network for {w.blocked}"
        assert not w.page_errors, f"JavaScript errors in JupyterLab: {w.page_errors}"
        assert not w.console_errors(), f"console errors in JupyterLab: {w.console_errors()}"
    finally:
        w.close()
