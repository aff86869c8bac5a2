"""The results book and the widgets in a real browser (headless Chromium driven by Playwright).

1. The book built by the shared ``tiny_book`` fixture (rendered by Sphinx + MyST-NB + sphinx-book-theme), opened
   from its folder with every non-file:// request blocked: the index lists every chapter of book.json with its
   key numbers and times, every link in it points at a file that exists, every chapter page loads with its key
   results first and every plotly figure drawn, no page shows a widget's Python repr or the parameters cells;
   a reader gets from the index to every chapter and back through the sidebar and through next/previous, the
   search finds each chapter by a word of its title, the code toggles show and hide the code; nothing logs a
   JavaScript error or asks the network for anything.
2. The compression chapter's live explorer in a real JupyterLab: Run All on a copy of
   notebooks/03_compression.ipynb with the tiny profile, then the JPEG-quality slider moved with the keyboard
   (Home, PageUp) and the mouse (a click on its track), and an autoencoder chosen with the mouse; the image, the
   byte count and the class probabilities follow, and the slider is disabled for the autoencoder.

Time budget: under 3 minutes beyond the shared book build (2-3.5 minutes). Measured on the 2-core machine:
45-95 s (the book pages 1-5 s each; JupyterLab's start and Run All of the tiny compression chapter, which loads
the models the book build cached, 35-65 s). Keep it there: one browser for the module, one JupyterLab, polls
instead of sleeps.

The browser is the system Chromium (Debian's ``chromium``; ``.ci/run`` and ``make test`` install it where it
is missing); Playwright's own browser downloads are never used. Set HAMVIZ_CHROMIUM to use another binary.
Screenshots go to ``test-artefacts/browser/`` (gitignored).
"""
from __future__ import annotations

import hashlib
import html
import json
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
from hamviz.metrics import field_name
from hamviz.render import duration, fmt

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
        assert cells.nth(2).inner_text().strip().startswith(entry["status"])
        assert entry["status"] == "ok", (entry["stem"], entry["note"])
        assert cells.nth(3).inner_text().strip() == f"{entry['seconds']:.0f} s"
        training = entry["training"]
        assert cells.nth(4).inner_text().strip().startswith(
            duration(training.get("seconds")) if training.get("models") else "")
        shown = [li.inner_text().strip() for li in cells.nth(5).locator("li").all()]
        expected = [f"{field_name(k)}: {html.unescape(fmt(v))}" for k, v in entry["summary"].items()]  # the field's names
        assert entry["summary"] and shown == expected, entry["stem"]
    assert page.get_by_text(info["provenance"]["data_fingerprint"]).count() == 1
    assert_no_widget_repr(page, "index.html")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTEFACTS / "index.png", full_page=True)
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
