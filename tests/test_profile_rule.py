"""One rule finds a profile, in ``hamviz book``, ``hamviz validate`` and a notebook run by hand (issue 42 item 4).

The reported inputs, rebuilt as a user meets them: a folder holding the user's own ``tiny.yaml`` (seed 7) and a
notebook run from it with ``papermill ... -p profile tiny.yaml --cwd notebooks``; then the same profile as
``./params/tiny.yaml`` called by the name ``tiny``. On commit dfcbc6b both silently ran the shipped ``tiny`` (seed
42). papermill's ``--cwd`` moves the kernel, not the user: the kernel inherits the user's folder in ``$PWD`` (set
here as a shell sets it), so a relative path there is refused rather than guessed; a name that the user's file and
a shipped profile both answer is refused as ambiguous everywhere; the file used is printed on the page and
recorded (``provenance.profile_file``).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO

PAPERMILL = Path(sys.executable).with_name("papermill")


def notebook(folder: Path) -> Path:
    """A chapter notebook as the shipped ones start (parameters cell, then ``start``), without the chapter's work."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "cpu"\nparams = {}\ndata_dir = None\nrecord_path = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import hamviz.chapters\n"
        "ch = hamviz.chapters.start('eda', profile, params, data_dir, record_path, load_data=False)\n"
        "print('seed', ch.params['seed'])")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "ch.ipynb")
    return folder / "ch.ipynb"


@pytest.fixture
def user(tmp_path) -> Path:
    """The user's folder: their tiny.yaml (seed 7) and a notebooks/ folder."""
    folder = tmp_path / "user"
    notebook(folder / "notebooks")
    (folder / "tiny.yaml").write_text("extends: tiny\nseed: 7\n")
    return folder


def shell(user: Path, *args) -> subprocess.CompletedProcess:
    """A command typed in the user's folder: run there, with $PWD set to it as a shell does."""
    env = {**os.environ, "PWD": str(user)}
    return subprocess.run([str(a) for a in args], cwd=user, env=env, capture_output=True, text=True, timeout=300)


def papermill(user: Path, profile: str, out: str) -> tuple[subprocess.CompletedProcess, dict, list]:
    """``papermill notebooks/ch.ipynb OUT -p profile PROFILE --cwd notebooks`` from the user's folder: (the run,
    the chapter's record or {}, the notebook's output texts and error values)."""
    record = user / f"{out}.json"
    run = shell(user, PAPERMILL, "notebooks/ch.ipynb", user / f"{out}.ipynb", "-p", "profile", profile,
                "-p", "record_path", record, "--cwd", "notebooks")
    texts = []
    if (user / f"{out}.ipynb").is_file():
        for cell in nbformat.read(user / f"{out}.ipynb", as_version=4).cells:
            for o in cell.get("outputs", []):
                texts.append(o.get("text") or o.get("evalue") or "")
    return run, (json.loads(record.read_text()) if record.is_file() else {}), texts


def test_a_relative_profile_path_with_papermill_cwd_is_refused_and_an_absolute_one_used(user):
    run, record, texts = papermill(user, "tiny.yaml", "relative")
    assert run.returncode != 0 and record == {}  # not the shipped tiny with seed 42, silently
    said = "\n".join(texts)
    assert "'tiny.yaml' is a relative path" in said and "papermill's --cwd" in said
    assert f"-p profile {user / 'tiny.yaml'}" in said  # the fix, with the file the user meant
    run, record, texts = papermill(user, str(user / "tiny.yaml"), "absolute")
    assert run.returncode == 0, run.stderr[-2000:]
    assert record["provenance"]["params"]["seed"] == 7
    assert record["provenance"]["profile_file"] == str(user / "tiny.yaml")
    assert f"Profile tiny: {user / 'tiny.yaml'}\nseed 7\n" in texts  # the page says which file


def test_a_users_profile_named_like_a_shipped_one_is_ambiguous_in_validate_and_a_notebook(user):
    (user / "params").mkdir()
    (user / "tiny.yaml").rename(user / "params" / "tiny.yaml")
    mine = user / "params" / "tiny.yaml"
    run = shell(user, sys.executable, "-m", "hamviz", "validate", "--profile", "tiny")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    for words in ("Profile name 'tiny' is ambiguous", str(mine), "(shipped with hamviz)", f"e.g. {mine}"):
        assert words in run.stderr, (words, run.stderr)
    run, record, texts = papermill(user, "tiny", "by-name")
    assert run.returncode != 0 and record == {}
    assert any("Profile name 'tiny' is ambiguous" in t and str(mine) in t for t in texts), texts
    # the path of the one meant works in both
    run = shell(user, sys.executable, "-m", "hamviz", "validate", "--profile", "params/tiny.yaml", "--data",
                REPO.parent / "shared" / "data" / "ham10000")
    assert run.returncode == 0 and f"({mine}) is valid" in run.stdout, run.stderr[-2000:]
