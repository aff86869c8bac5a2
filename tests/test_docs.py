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


def test_readme_is_a_front_page():
    words = len((REPO / "README.md").read_text(encoding="utf-8").split())
    assert words <= README_MAX_WORDS, f"README.md has {words} words (at most {README_MAX_WORDS}): move detail to docs/"
