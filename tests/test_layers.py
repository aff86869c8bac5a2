"""The package's structure: the import-linter contracts in pyproject.toml hold (and do catch a broken layer or
a cycle), one training loop, chapters named as the book, short functions, and a package that installs."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "hamviz"
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, text=True, capture_output=True,
                          timeout=300)


def test_import_contracts_are_kept():
    run = lint(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 kept, 0 broken" in run.stdout


RUFF = Path(sys.executable).with_name("ruff")


def ruff(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUFF), "check", "--no-cache", "."], cwd=root, text=True, capture_output=True,
                          timeout=300)


def test_ruff_is_clean():
    """`ruff check` (pyproject.toml's rules: pycodestyle, pyflakes, import order) over the package, tests,
    benchmarks and notebooks."""
    run = ruff(REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_catches_an_unused_import_and_a_long_line(tmp_path):
    """The same configuration on a copy with an unused import and a 121-character line: ruff must name both."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "m.py").write_text("import os\n\nX = '" + "x" * 115 + "'\n")
    run = ruff(tmp_path)
    assert run.returncode == 1 and "F401" in run.stdout and "E501" in run.stdout, run.stdout


@pytest.mark.parametrize("module,line,broken", [
    ("training.py", "from .chapters import eda  # noqa", "The library never imports a chapter"),
    ("models.py", "from . import training  # noqa", "No import cycles"),
    ("registry.py", "from . import data  # noqa", "The vocabulary and the settings import nothing"),
    ("chapters/eda.py", "from .. import book  # noqa", "The book runs the chapters"),
    ("book/frontpage.py", "from . import pages  # noqa", "The book's modules, each using only those after it"),
])
def test_contracts_catch_a_broken_layer(tmp_path, module, line, broken):
    """The same contracts on a copy of the package with one forbidden import added: the linter must fail and
    name the contract."""
    shutil.copytree(PACKAGE, tmp_path / "hamviz", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / "hamviz" / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    run = lint(tmp_path)
    assert run.returncode != 0, run.stdout + run.stderr
    assert any(l.startswith(broken) and l.rstrip().endswith("BROKEN") for l in run.stdout.splitlines()), run.stdout


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_chapters_are_named_as_the_book():
    from hamviz.registry import CHAPTERS
    notebooks = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks == sorted(stem for stem, _ in CHAPTERS.values())
    modules = sorted(p.stem for p in (PACKAGE / "chapters").glob("*.py") if p.stem not in ("__init__", "base"))
    assert modules == sorted(CHAPTERS)
    from hamviz.params import CHAPTER_SCHEMAS
    assert sorted(CHAPTER_SCHEMAS) == sorted(CHAPTERS)
    assert not [p.name for p in _sources() if p.stem.endswith("study")]


def test_one_training_loop():
    """Every model trains through hamviz.training.fit: ``.fit(`` of a Keras model appears there only."""
    calls = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "model":
                calls.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert len(calls) == 1 and calls[0].startswith("hamviz/training.py"), calls


def test_no_function_over_80_lines():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


#: modules still over MAX_MODULE_LINES, to be split (issue 38): the list only shrinks -- a module that comes under
#: the bound must leave it, and no other module may pass it
OVER_500 = {"params.py", "data.py", "training.py", "protocol.py", "chapters/classifier.py", "cache.py",
            "gradcam.py", "external.py", "metrics.py", "plots.py", "models.py", "weights.py"}
MAX_MODULE_LINES = 500


def test_no_module_over_500_lines_but_the_listed_ones():
    sizes = {p.relative_to(REPO / "hamviz").as_posix(): len(p.read_text().splitlines())
             for p in (REPO / "hamviz").rglob("*.py")}
    over = {name for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert over <= OVER_500, f"over {MAX_MODULE_LINES} lines: {sorted(over - OVER_500)}: split them"
    assert OVER_500 <= over, f"{sorted(OVER_500 - over)}: {MAX_MODULE_LINES} lines or fewer now; drop from OVER_500"


@pytest.mark.data  # runs `hamviz validate` on the installed wheel, which reads the HAM10000 folder
def test_wheel_ships_notebooks_and_profiles_and_runs_outside_the_checkout(tmp_path):
    """Build the wheel, check it holds the notebooks and profiles, install it (without dependencies, which the
    test environment has) into a folder of its own and run ``hamviz validate`` from another directory: the
    installed package, not the checkout, must find its profiles and notebooks."""
    src, dist = tmp_path / "src", tmp_path / "dist"  # built from a copy: setuptools writes build/ beside it
    for name in ("hamviz", "notebooks", "params"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
                            str(src)], text=True, capture_output=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheel = next(dist.glob("hamviz-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for nb in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"):
        assert f"hamviz/notebooks/{nb.name}" in names
    for prof in ("tiny", "cpu", "paper"):
        assert f"hamviz/profiles/{prof}.yaml" in names
    assert "hamviz/chapters/classifier.py" in names and "hamviz/training.py" in names
    for t in (REPO / "hamviz" / "book" / "templates").iterdir():  # the book's Sphinx configuration, CSS, JS
        assert f"hamviz/book/templates/{t.name}" in names, t.name
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                          str(wheel)], text=True, capture_output=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import hamviz, hamviz.book.spec as b, hamviz.book.render as r, "
                            "hamviz.params as p; "
                            "print(hamviz.__file__); print(b.NOTEBOOKS); print(p.find_profile('tiny')); "
                            "print(r.TEMPLATES); assert 'sphinx_book_theme' in r.template('conf.py.in')"],
                           cwd=elsewhere, env=env, text=True, capture_output=True, timeout=300)
    assert where.returncode == 0, where.stderr[-3000:]
    lines = where.stdout.split()
    assert all(line.startswith(str(site)) for line in lines), lines
    run = subprocess.run([sys.executable, "-m", "hamviz", "validate", "--profile", "tiny"], cwd=elsewhere,
                         env=env, text=True, capture_output=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "is valid" in run.stdout and str(site) in run.stdout and "01_eda" in run.stdout
