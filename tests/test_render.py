"""The book's renderer and progress view without a book build: a made-up executed notebook made into a page
(parameters cells gone, code folded, widget and stderr outputs replaced or dropped, plotly.js shared, figures and
tables numbered, key results first), a whole small book rendered by Sphinx offline, and the progress lines."""
import json
import re
import time

import nbformat

from hamviz.book.frontpage import interval
from hamviz.book.pages import WIDGET_MIME, Page, key_results_html, prepare_notebook, share_plotly_js
from hamviz.book.progress import BuildProgress, table, training_line
from hamviz.book.render import render_book

PLOTLY_LIB = "/**\n* plotly.js v9.8.7\n* banner\n*/\nwindow.Plotly = {newPlot: function () {}};"
FIGURE = ('<div id="f1" class="plotly-graph-div"></div><script src="https://cdn.example.org/mathjax.js"></script>'
          '<script>if (document.getElementById("f1")) {Plotly.newPlot("f1", [], {})}</script>')


def executed_notebook():
    """A notebook as papermill leaves it: a title, the parameters cells, outputs of every kind."""
    c = nbformat.v4
    cells = [
        c.new_markdown_cell("# Made-up chapter\n\nWhat it does."),
        c.new_code_cell('profile = "cpu"', metadata={"tags": ["parameters"]}),
        c.new_code_cell('# Parameters\nrecord_path = "/very/local/path/rec.json"',
                        metadata={"tags": ["injected-parameters"]}),
        c.new_code_cell("import plotly", outputs=[
            c.new_output("display_data", data={"text/html": f"<script>{PLOTLY_LIB}</script>"}),
            c.new_output("stream", name="stderr", text="Epoch 1/2 100%|#####|\n"),
            c.new_output("stream", name="stdout", text="trained\n")]),
        c.new_markdown_cell("## A section"),
        c.new_code_cell("fig.show()", outputs=[c.new_output("display_data", data={
            "application/vnd.plotly.v1+json": {"data": [], "layout": {"title": {"text": "Accuracy <b>by</b> class"}}},
            "text/html": FIGURE})]),
        c.new_code_cell("# Per-class recall\ntable", outputs=[c.new_output("execute_result", data={
            "text/html": '<table border="1" class="dataframe"><tr><td>1</td></tr></table>',
            "text/plain": "   0\n0  1"}, execution_count=4)]),
        c.new_code_cell("ch.params_table()", outputs=[c.new_output("execute_result", data={
            "text/html": '<table class="dataframe"><thead><tr><th>parameter</th></tr></thead></table>',
            "text/plain": "..."}, execution_count=5)]),
        c.new_code_cell("explorer", outputs=[c.new_output("display_data", data={
            WIDGET_MIME: {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "text/plain": "VBox(children=(HBox(children=(ToggleButtons(description='coding'"})]),
        c.new_code_cell("explorer.box", outputs=[c.new_output("execute_result", data={  # the repr alone
            "text/plain": "HBox(children=(IntSlider(value=50, description='JPEG quality'),))"}, execution_count=7)]),
        c.new_code_cell("cfg", outputs=[c.new_output("execute_result", data={
            "text/plain": "TrainConfig(model='small_cnn')"}, execution_count=8)]),
    ]
    nb = c.new_notebook(cells=cells)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


RECORD = {"summary": {"test_balanced_accuracy": 0.5, "images": 10015},
          "values": {"test_ci": {"balanced_accuracy": {"value": 0.5, "low": 0.45, "high": 0.55}}}}


def test_prepare_notebook_makes_a_book_page(tmp_path):
    nb = executed_notebook()
    page = prepare_notebook(nb, 3, tmp_path, 2, key_results_html(RECORD, [("run time", "42 s")]))
    text = json.dumps(page)
    assert "/very/local/path" not in text and 'profile = \\"cpu\\"' not in text  # parameters cells left out
    code = [c for c in page.cells if c.cell_type == "code"]
    assert all("hide-input" in c.metadata["tags"] for c in code)  # code folded behind a toggle
    assert "VBox(children" not in text and WIDGET_MIME not in text and "Live widget" in text  # no repr
    assert "HBox(children" not in text and text.count("Live widget") == 2 and "TrainConfig(model=" in text
    assert "Epoch 1/2" not in text and "trained" in text  # stderr (progress bars, warnings) dropped
    assert "plotly.js v" not in text and (tmp_path / "assets" / "plotly-9.8.7.min.js").read_text() == PLOTLY_LIB
    assert '<script src=\\"../../assets/plotly-9.8.7.min.js\\"></script>' in text
    assert "https://" not in text  # the CDN MathJax of every plotly figure is gone
    assert "Figure 3.1</span>. Accuracy by class" in text and "Table 3.1</span>. Per-class recall" in text
    assert "<summary>This chapter's parameters</summary>" in text and "Table 3.2" not in text
    # the title alone, then the key results, then the rest of the first cell
    assert [c.source.splitlines()[0][:30] for c in page.cells[:3]] == [
        "# Made-up chapter", '<div class="admonition hamviz-', "What it does."]
    # the interval at the precision it justifies (two significant digits of its half-width), and the value with it
    assert '0.500 <span class="ci">[0.450, 0.550]</span>' in page.cells[1].source and "10,015" in page.cells[1].source
    # the field's name shown, the record's key as its title
    assert '<th title="test_balanced_accuracy">test balanced accuracy</th>' in page.cells[1].source
    assert nb.cells[1].metadata["tags"] == ["parameters"] and "widgets" in nb.metadata  # the input is unchanged


def test_intervals_come_from_the_record():
    assert interval("test_balanced_accuracy", RECORD["values"]) == (0.45, 0.55)
    assert interval("images", RECORD["values"]) is None
    assert interval("x", {"summary_ci": {"x": {"low": 1, "high": 2}}}) == (1, 2)
    assert "This run recorded no summary numbers" in key_results_html(None)


def test_share_plotly_js_writes_the_library_once(tmp_path):
    page = f"<p>a</p><script>{PLOTLY_LIB}</script><div>figure</div><script>Plotly.newPlot()</script>"
    first = share_plotly_js(page, tmp_path)
    assert first == ('<p>a</p><script src="../../assets/plotly-9.8.7.min.js"></script><div>figure</div>'
                     "<script>Plotly.newPlot()</script>")
    assert (tmp_path / "assets" / "plotly-9.8.7.min.js").read_text() == PLOTLY_LIB
    assert share_plotly_js(page.replace("a</p>", "b</p>"), tmp_path).startswith("<p>b</p>")
    assert [p.name for p in (tmp_path / "assets").iterdir()] == ["plotly-9.8.7.min.js"]  # no temp files left
    assert share_plotly_js("<p>no figures</p>", tmp_path) == "<p>no figures</p>"


def test_render_book_offline_with_index_search_and_pages(tmp_path):
    out = tmp_path / "book"
    (out / "chapters" / "03_made").mkdir(parents=True)
    nbformat.write(executed_notebook(), out / "chapters" / "03_made" / "03_made.ipynb")
    info = {"profile": "tiny", "description": "test", "data_dir": "/data/ham",
            "provenance": {"date": "today", "hamviz": "0", "data_fingerprint": "fp42"},
            "chapters": [{"stem": "03_made", "title": "Made-up chapter", "status": "ok", "note": "",
                          "seconds": 12.0, "summary": RECORD["summary"],
                          "training": {"seconds": 600.0, "models": 2, "trained_now": 0}}]}
    pages = [Page("chapters/03_made/03_made", out / "chapters" / "03_made" / "03_made.ipynb", 3,
                  "Made-up chapter", RECORD)]
    t = time.time()
    render_book(out, info, pages, {"03_made": ("chapters/03_made/03_made.html", None)}, "seed: 1\n")
    first = time.time() - t
    index = (out / "index.html").read_text()
    assert "fp42" in index and "10.0 min" in index and "seed: 1" in index and "10,015" in index
    assert 'href="chapters/03_made/03_made.html"' in index
    chapter = (out / "chapters" / "03_made" / "03_made.html").read_text()
    assert "Key results" in chapter and "Show code cell source" in chapter and "VBox(children" not in chapter
    assert (out / "search.html").is_file() and (out / "searchindex.js").is_file()
    assert "made" in (out / "searchindex.js").read_text().lower()
    for page in [index, chapter, (out / "search.html").read_text()]:
        assert not re.search(r'<(script|link)[^>]*(src|href)="https?://', page)  # nothing from the network
    assert not (tmp_path / "jupyter_execute").exists()  # nothing written beside the book
    # unchanged sources: Sphinx re-reads nothing and the pages stay as they were
    render_book(out, info, pages, {"03_made": ("chapters/03_made/03_made.html", None)}, "seed: 1\n")
    assert (out / "chapters" / "03_made" / "03_made.html").read_text() == chapter
    assert first < 120


def test_training_line_and_table():
    now = 1000.0
    line = training_line({"label": "small_cnn S1", "epoch": 2, "epochs": 4, "batch": 5, "steps": 10,
                          "started": now - 90}, now)
    # 1.5 of 4 epochs in 90 s: 150 s left at most
    assert line == "training small_cnn S1: epoch 2/4, batch 5/10, at most 2:30 left"
    assert training_line(None) == ""
    text = table({"chapters": [{"stem": "01_eda", "status": "ok", "seconds": 30.0, "training": {}},
                               {"stem": "02_classifier", "status": "failed", "seconds": None, "note": "boom",
                                "training": {"seconds": 4000, "models": 3, "trained_now": 1,
                                             "seconds_now": 372}}],
                  "this_run": {"02_classifier": {"status": "failed", "seconds": 5.0, "error": "ValueError: boom"}}})
    lines = text.splitlines()
    assert lines[0].split() == ["chapter", "status", "this", "run", "complete", "run", "training", "note"]
    assert lines[2].split() == ["01_eda", "up", "to", "date", "-", "30", "s", "-"]
    assert lines[3].split()[:4] == ["02_classifier", "failed", "5", "s"] and "66.7 min (6.2 min this run)" in lines[3]
    assert lines[3].endswith("ValueError: boom")


def test_plain_progress_says_one_line_per_chapter_and_quiet_says_nothing():
    said = []
    p = BuildProgress(live=False, log=said.append)
    p.started("01_eda", "/nowhere")
    p.finished("01_eda", {"status": "ok", "seconds": 3.2})
    p.close({"chapters": [{"stem": "01_eda", "status": "ok", "seconds": 3.2}], "this_run": {}})
    assert said[:2] == ["[book] 01_eda: running", "[book] 01_eda: ok in 3 s"] and "chapter" in said[2]
    quiet = []
    q = BuildProgress(quiet=True, log=quiet.append)
    q.started("01_eda", "/nowhere")
    q.finished("01_eda", {"status": "failed", "seconds": 1, "error": "x"})
    q.close({"chapters": [], "this_run": {}})
    assert quiet == []


def test_live_progress_draws_cells_and_epochs(tmp_path):
    import io
    stream = io.StringIO()
    p = BuildProgress(live=True, stream=stream, interval=3600)  # polled by hand below
    prefix = tmp_path / "01_eda.progress"
    p.started("01_eda", prefix)
    now = time.time()
    (tmp_path / "01_eda.progress.cells.json").write_text(json.dumps({"cell": 3, "cells": 9, "time": now}))
    (tmp_path / "01_eda.progress.train.json").write_text(json.dumps(
        {"label": "small_cnn S4", "epoch": 2, "epochs": 5, "batch": 4, "steps": 8, "started": now - 10,
         "time": now + 1}))
    p.poll()
    p.finished("01_eda", {"status": "ok", "seconds": 12})
    p.close()
    shown = stream.getvalue()
    assert "01_eda: cell 3/9" in shown and "training small_cnn S4: epoch 2/5, batch 4/8" in shown
    assert "[book] 01_eda: ok in 12 s" in shown


def test_a_notebook_that_cannot_be_read_still_gets_a_page(tmp_path):
    """A chapter killed while papermill wrote its notebook leaves half a file: its page says so, and the rest
    of the book renders."""
    out = tmp_path / "book"
    (out / "failed" / "01_cut").mkdir(parents=True)
    (out / "failed" / "01_cut" / "01_cut.ipynb").write_text('{"cells": [{"cell_type": "mark')
    info = {"profile": "tiny", "provenance": {}, "chapters": [
        {"stem": "01_cut", "title": "Cut short", "status": "failed", "note": "killed", "seconds": None}]}
    render_book(out, info, [Page("failed/01_cut/01_cut", out / "failed" / "01_cut" / "01_cut.ipynb", 1,
                                 "Cut short")], {"01_cut": (None, "failed/01_cut/01_cut.html")})
    page = (out / "failed" / "01_cut" / "01_cut.html").read_text()
    assert "Cut short" in page and "could not be read" in page
    assert 'href="failed/01_cut/01_cut.html"' in (out / "index.html").read_text()


def test_live_bars_take_the_first_free_line(tmp_path):
    import io
    p = BuildProgress(live=True, stream=io.StringIO(), interval=3600)
    for stem in ("01_a", "02_b"):
        p.started(stem, tmp_path / stem)
    p.finished("01_a", {"status": "ok", "seconds": 1})
    p.started("03_c", tmp_path / "03_c")  # where 01_a was, not over 02_b
    assert {s: b.hamviz_line for s, b in p._bars.items()} == {"02_b": 1, "03_c": 0}
    p.close()


def test_pages_rendered_earlier_link_to_chapters_added_later(tmp_path):
    """During a build chapters appear one by one: a page rendered before the next chapter existed gets its
    sidebar and next link once it does (Sphinx alone rewrites only pages whose source changed)."""
    out = tmp_path / "book"
    stems = ["01_first", "02_second"]
    for stem in stems:
        (out / "chapters" / stem).mkdir(parents=True)
        nb = executed_notebook()
        nb.cells[0].source = f"# Chapter {stem}\n\nText."
        nbformat.write(nb, out / "chapters" / stem / f"{stem}.ipynb")
    info = {"profile": "tiny", "provenance": {}, "chapters": []}
    for k in (1, 2):
        pages = [Page(f"chapters/{s}/{s}", out / "chapters" / s / f"{s}.ipynb", i + 1, s)
                 for i, s in enumerate(stems[:k])]
        render_book(out, info, pages, {s: (f"chapters/{s}/{s}.html", None) for s in stems[:k]})
    first = (out / "chapters" / "01_first" / "01_first.html").read_text()
    assert 'href="../02_second/02_second.html"' in first and 'class="right-next"' in first


def test_index_training_column_separates_this_runs_training_from_loaded_models():
    from hamviz.book.pages import index_markdown
    info = {"profile": "cpu", "description": "", "provenance": {"date": "today"},
            "chapters": [{"stem": "04_joint", "title": "Joint", "status": "ok", "seconds": 500.0,
                          "training": {"seconds": 1776.0, "models": 6, "trained_now": 2, "seconds_now": 372.0}},
                         {"stem": "05_hv", "title": "HV", "status": "ok", "seconds": 400.0,
                          "training": {"seconds": 300.0, "models": 3, "trained_now": 3, "seconds_now": 300.0}}]}
    md = index_markdown(info, [], {})
    assert "29.6 min" in md and "6 models: 2 trained in this run (6.2 min)" in md
    assert "3 models: all trained in this run" in md


def test_chapter_record_counts_a_model_used_twice_once_and_times_what_this_run_trained(tmp_path, monkeypatch):
    import hamviz.training
    from hamviz.chapters.base import Chapter
    monkeypatch.setattr(hamviz.training, "TRAINED", [
        {"name": "classifier", "key": "a", "seconds": 800.0, "loaded": True},   # another chapter's model
        {"name": "ae", "key": "b", "seconds": 100.0, "loaded": False},
        {"name": "ae", "key": "b", "seconds": 100.0, "loaded": True},            # the same model, used again
        {"name": "joint", "key": "c", "seconds": 50.5, "loaded": False}])
    ch = Chapter("joint", {}, tmp_path / "joint.json")
    ch.finish()
    saved = json.loads((tmp_path / "joint.json").read_text())
    assert saved["complete"] is True
    assert saved["training"] == {"seconds": 950.5, "models": 3, "trained_now": 2, "seconds_now": 150.5}


# ------------------------------------------------------------------- the front page, findings and tidy tables

def verdict(question, mean, low, high, status="not settled", k=2, n=2, units="points", level=0.975, **extra):
    per_seed = {"42": mean - 1 if mean is not None else None, "43": mean + 1 if mean is not None else None}
    return {"question": question, "mean": mean, "low": low, "high": high, "status": status, "k": k, "n": n,
            "units": units, "level": level, "why": "the interval includes 0", "per_seed": per_seed, "null": 0.0,
            "interval": "replicates x lesions", "digits": 1, **extra}


def test_numbers_to_the_precision_their_intervals_justify():
    from hamviz.book.frontpage import fmt, justified_digits, with_interval
    # two significant digits of the half-width: 790 -> 0 decimals, 7.35 -> 1, 0.045 -> 3, 0.008 -> 4 (at most)
    assert [justified_digits(-790, 790), justified_digits(-7.0, 7.7), justified_digits(0.66, 0.75),
            justified_digits(-0.008, 0.008)] == [0, 1, 3, 4]
    assert justified_digits(None, 1) is None and justified_digits(1, 1) is None
    assert with_interval(3.2, -789.9, 796.2, signed=True) == '+3 <span class="ci">[-790, +796]</span>'
    assert with_interval(0.70553, 0.661, 0.751) == '0.706 <span class="ci">[0.661, 0.751]</span>'
    assert with_interval(-0.4, -36.2, 35.1, signed=True).startswith("0 ")  # rounds to zero: no sign
    assert fmt(1.786123) == "1.79" and fmt(10015) == "10,015" and fmt(0.000123456) == "0.000123"
    assert fmt(float("nan")) == "n/a" and fmt({"train": 7470}) == "train: 7,470"


def test_findings_table_is_a_forest_plot_of_every_verdict():
    from hamviz.book.frontpage import findings_table
    verdicts = {"a": verdict("Does A beat B?", 16.8, 1.1, 32.9, status="shown"),
                "b": verdict("Does C cost accuracy?", -3.1, -628.9, 622.6, level=0.99375),
                "c": verdict("Lower contrast?", None, None, None, units="dE2000", k=0),
                "d": verdict("Boundary kept?", 0.0003, -0.0078, 0.0084, units="", level=0.975)}
    out = findings_table([(2, "Classifier", "chapters/02/02.html", verdicts), (1, "EDA", None, {})], "Figure 1.")
    assert out.count('<tr class="chapter">') == 1 and 'href="chapters/02/02.html"' in out and "EDA" not in out
    rows = re.findall(r'<tr class="(shown|unsettled)"><td class="id">([\d.]+)</td>', out)
    assert rows == [("shown", "2.1"), ("unsettled", "2.2"), ("unsettled", "2.3"), ("unsettled", "2.4")]
    assert "97.5 % intervals (Bonferroni-corrected)" in out  # the chapter's level, once in its header row
    assert '+17 points <span class="ci">[+1, +33]</span>' in out  # half-width 16: no decimals
    assert "99.4 %" in out  # a row whose level differs from its chapter's says so
    assert "no value" in out and out.count("<svg") == 5  # each verdict drawn, and the shared axis
    assert out.count('<span class="own" title="drawn on its own scale') == 2  # not in points: its own scale
    assert 'class="verdict shown" title=' in out and "2 of 2" in out
    assert re.search(r'<path d="M[\d.]+,9.0 l-?5,-4 v8 z"', out)  # an interval past the axis ends in an arrow
    assert findings_table([(1, "EDA", None, {})]) == ""


def test_front_page_leads_with_findings_then_chapters_provenance_and_folded_parameters():
    from hamviz.book.pages import index_markdown
    info = {"profile": "tiny", "description": "tests", "data_dir": "/data",
            "provenance": {"date": "today", "hamviz": "0", "data_fingerprint": "fp42", "git_commit": "abc",
                           "cpu": {"model": "AMD EPYC", "vector_extensions": ["avx2", "avx512f"], "cores": 2,
                                   "id": "cpu family 25, model 17, stepping 1"}},
            "chapters": [{"stem": "01_eda", "title": "EDA", "status": "ok", "seconds": 40.0, "training": {},
                          "summary": {"images": 10015, "majority_share": 0.66949}},
                         {"stem": "02_cls", "title": "Classifier", "status": "ok", "seconds": 90.0,
                          "training": {"seconds": 100.0, "models": 3, "trained_now": 0},
                          "summary": {"test_balanced_accuracy_mean_over_replicates": 0.70553,
                                      "answer: Does A beat B?": "+16.8 points [+1.1, +32.9]; holds in 2 of 2: shown"},
                          "values": {"summary_ci": {"test_balanced_accuracy_mean_over_replicates":
                                                    {"low": 0.661, "high": 0.751}}},
                          "verdicts": {"a": verdict("Does A beat B?", 16.8, 1.1, 32.9, status="shown")}}]}
    md = index_markdown(info, [], {"01_eda": ("chapters/01_eda/01_eda.html", None),
                                   "02_cls": ("chapters/02_cls/02_cls.html", None)}, "seed: 1\nimage_size: 32\n")
    assert md.index("## Findings") < md.index("## Chapters") < md.index("## Provenance") < md.index("<details")
    assert "<b>1 question</b> in 1 chapter" in md and "1 shown" in md
    assert "0.706 <span" in md and "[0.661, 0.751]" in md and "0.669" in md and "10,015" in md
    assert "answer: " not in md.split("## Chapters")[1]  # the verdicts' lines are the findings, not key numbers
    assert "AMD EPYC" in md and "avx2 avx512f" in md and "2 cores" in md and "family 25" in md
    assert '<details class="hamviz-params-all">' in md and "image_size: 32" in md and " open" not in md
    assert "3 models: all cached" in md
    for block in md.split("\n\n"):  # an HTML block with a blank line inside would end early in MyST
        assert block.strip()


def test_tables_are_tidied_and_captioned(tmp_path):
    c = nbformat.v4
    table = ('<table class="dataframe"><thead><tr><th></th><th>method</th><th>AUC</th><th>error</th></tr></thead>'
             '<tbody><tr><th>0</th><td>a</td><td>0.5</td><td>None</td></tr>'
             '<tr><th>1</th><td>macro avg</td><td>nan</td><td>x</td></tr></tbody></table>')
    named = ('<table class="dataframe"><thead><tr><th>setting</th><th>x</th></tr></thead>'
             '<tbody><tr><th>q1</th><td>1</td></tr></tbody></table>')
    out = lambda h: c.new_output("display_data", data={"text/html": h, "text/plain": "..."})  # noqa: E731
    nb = c.new_notebook(cells=[
        c.new_markdown_cell("# Chapter"),
        c.new_code_cell("x = 1\n# Members and combiners\ndisplay(t)\n# lower-case code comment\ndisplay(u)",
                        outputs=[out(named),
                                 c.new_output("stream", name="stdout", text="Note: text\nAdding members:\n"),
                                 out(table)]),
        c.new_code_cell("show()", outputs=[c.new_output("display_data", data={"text/markdown": "**Protocol** — `ref`"}),
                                           out(named)])])
    page = json.dumps(prepare_notebook(nb, 4, tmp_path), ensure_ascii=False)
    assert "Table 4.1</span>. Members and combiners" in page and "Table 4.2</span>. Adding members<" in page
    assert "Adding members:" not in page and "Note: text" in page  # the printed lead-in became the caption
    assert "Table 4.3</span>. Protocol — ref" in page and "**Protocol**" not in page
    assert "<th>0</th>" not in page and "<th>1</th>" not in page and "<th>q1</th>" in page  # no bare 0..n index
    assert ">none<" in page and 'class=\\"hamviz-na\\"' in page and "an AUC needs test images" in page
    assert page.count('class=\\"hamviz-scroll\\"') == 3 and "hamviz-scroll-hint" in page
