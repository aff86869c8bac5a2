"""The documentation site (`make docs`) and its front page: Sphinx builds docs/ offline without a warning, the
parameter reference generated from the profile schema lists the top level and every chapter section, and README
stays a front page."""
import subprocess
import sys
from pathlib import Path

from hamviz.params import CHAPTER_SCHEMAS

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = ("eda", "classifier", "compression", "joint", "hypervector", "explain")
README_MAX_WORDS = 1500


def test_docs_build_without_warnings_and_list_every_parameter_section(tmp_path):
    out = tmp_path / "html"
    run = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-b", "html", "-d", str(tmp_path / "doctrees"),
                          str(REPO / "docs"), str(out)], cwd=REPO, text=True, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    page = (out / "_generated" / "parameters.html").read_text(encoding="utf-8")
    for key in ("main_replicates", "replicates", "image_size", "transfer_members"):
        assert key in page, key
    assert set(CHAPTERS) <= set(CHAPTER_SCHEMAS), set(CHAPTERS) - set(CHAPTER_SCHEMAS)
    for name in CHAPTER_SCHEMAS:
        assert f"chapters.{name}" in page, name
    for name in ("getting-started", "data", "profiles", "caches", "results", "testing", "architecture"):
        assert (out / f"{name}.html").is_file(), name
    bench = (out / "_generated" / "benchmarks.html").read_text(encoding="utf-8")
    for f in (REPO / "benchmarks").glob("book_build*.json"):  # every measured build is on the page
        assert f.name in bench, f.name


def test_the_benchmarks_page_reads_each_layout_of_a_book_build(tmp_path):
    """The generated page's rows from the three layouts the book-build JSONs have, with known minutes."""
    import json
    import runpy
    conf = runpy.run_path(str(REPO / "docs" / "conf.py"))
    machine = {"cpu_model": "AMD EPYC", "cpu_count": 2, "cpu_vector_flags": ["avx2", "avx512f"]}
    chapters = [{"stem": "01_eda", "seconds": 30.0}, {"stem": "02_classifier", "seconds": 600.0}]
    entry = {"date": "2026-12-07T00:00:00", "machine": machine, "options": {"profile": "cpu"},
             "result": {"cold": {"wall_s": 1200.0, "chapters": chapters}}}
    layouts = {"new.json": {"benchmarks": {"book_build": entry}}, "old.json": {"book_build": entry},
               "partial.json": {"machine": {**machine, "cpu_vector_flags": ["avx2"]}, "chapters": chapters,
                                "provenance": {"date": "2026-12-03"}}}
    for name, data in layouts.items():
        (tmp_path / name).write_text(json.dumps(data))
        run, = conf["_book_build_runs"](tmp_path / name)
        assert run["chapters"] == {"01_eda": 30.0, "02_classifier": 600.0}, name
    assert conf["_book_build_runs"](tmp_path / "new.json")[0]["wall_s"] == 1200.0
    assert "AVX-512" in conf["_book_build_runs"](tmp_path / "old.json")[0]["machine"]
    assert "AVX2 only" in conf["_book_build_runs"](tmp_path / "partial.json")[0]["machine"]


def test_readme_is_a_front_page():
    words = len((REPO / "README.md").read_text(encoding="utf-8").split())
    assert words <= README_MAX_WORDS, f"README.md has {words} words (at most {README_MAX_WORDS}): move detail to docs/"
