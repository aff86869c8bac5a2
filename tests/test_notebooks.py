"""The chapter notebooks as files: kept without outputs, parameterised, thin, and known to the schema."""
from pathlib import Path

import nbformat
import pytest

from hamviz.book.spec import check_notebook, discover

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SPECS = discover(NOTEBOOKS)


def test_there_are_chapters():
    assert [s.stem for s in SPECS][:1] == ["01_eda"]


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_notebook_is_clean_and_thin(spec):
    nb = nbformat.read(spec.path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "strip outputs"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    check_notebook(spec)  # declares the book's parameters; has a schema section
    long = [c.source.splitlines()[0] for c in code if len(c.source.splitlines()) > 18]
    assert not long, f"cells this long belong in hamviz: {long}"
    assert "ch.finish()" in code[-1].source
