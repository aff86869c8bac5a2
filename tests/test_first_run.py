"""The first `hamviz book` / `make book` on a machine without the data or the weights (issue 21).

Against a local HTTP server serving archives built from a few dozen real images of the shared copy (conftest's
``Server``, through ``$HAMVIZ_DOWNLOAD_URL``); the hub download of pretrained weights is replaced by a function that
copies the shared preset and counts its calls. No test touches the internet: the real download hosts are never
contacted (a mirror URL or a dead local port stands in for them, and the hub check is replaced).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import DATA, MASK_DIR, Server, patch_registry, write_archives

from hamviz import cli
from hamviz import weights as w
from hamviz.config import COMPLETE_MARKER, DataError, completed_items, data_dir
from hamviz.data import load_ham10000
from hamviz.registry import HUB_BACKBONES

SHARED_WEIGHTS = Path(os.environ["HAMVIZ_WEIGHTS"])
PRESET, HANDLE, _ = HUB_BACKBONES["efficientnet_lite0"]
#: every file the book's first download fetches (ham10000 and the masks the EDA chapter uses)
FILES = ["/HAM10000_metadata.csv", "/HAM10000_images_part_1.zip", "/HAM10000_images_part_2.zip", f"/{MASK_DIR}.zip"]


@pytest.fixture
def fresh(tmp_path, monkeypatch, no_proxy):
    """A machine that has never run hamviz: no data location set, an empty hamviz home, cache and weights folder,
    downloads allowed. Returns the (not yet existing) default data folder."""
    for var in ("HAMVIZ_DATA", "HAMVIZ_NO_DOWNLOAD", "HAMVIZ_DOWNLOAD_URL", "HAMVIZ_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HAMVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HAMVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HAMVIZ_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path / "home" / "ham10000"


@pytest.fixture
def rows() -> pd.DataFrame:
    """28 real metadata rows: 4 lesions of each class, one image each (enough for a 4-fold lesion-grouped split)."""
    meta = pd.read_csv(DATA / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    meta = meta.sort_values("image_id").drop_duplicates("lesion_id")
    return meta.groupby("dx").head(4).sort_values("image_id").reset_index(drop=True)


@pytest.fixture
def mirror(tmp_path, rows, monkeypatch):
    """The archives of ``rows`` served locally, and $HAMVIZ_DOWNLOAD_URL pointing there."""
    root = tmp_path / "served"
    write_archives(root, rows)
    patch_registry(monkeypatch, root, ("ham10000", "masks"))
    server = Server(root)
    monkeypatch.setenv("HAMVIZ_DOWNLOAD_URL", server.url)
    yield server
    server.stop()


@pytest.fixture
def small_split(tmp_path) -> Path:
    """The tiny profile with a 4-fold split (50/25/25), which 4 lesions per class allow."""
    path = tmp_path / "tiny_small.yaml"
    path.write_text("extends: tiny\nprofile: tiny\nsplit: {fractions: [0.5, 0.25, 0.25]}\n")
    return path


def test_first_book_downloads_unpacks_and_builds_and_the_second_downloads_nothing(
        fresh, mirror, rows, small_split, tmp_path, capsys):
    out = tmp_path / "book"
    args = ["book", "--profile", str(small_split), "--out", str(out), "--only", "eda"]
    assert cli.main(args) == 0, capsys.readouterr()
    said = capsys.readouterr()
    assert sorted(mirror.requests) == sorted(FILES)
    # where it went, and how to point elsewhere or turn it off, said before and after the download
    assert f"downloading ham10000 and masks into the default data folder {fresh}" in said.out
    assert "HAMVIZ_DATA=DIR" in said.out and "HAMVIZ_HOME=DIR" in said.out and "--no-download" in said.out
    assert f"into {fresh}" in said.err and "Mbit/s" in said.err  # size and time, before the first file
    assert said.err.index("Mbit/s") < said.err.index("Downloading HAM10000_metadata.csv")
    assert completed_items(fresh) == {"ham10000", "masks"}
    ds = load_ham10000(fresh, masks=True)
    assert ds.layout == "official" and sorted(ds.meta["image_id"]) == sorted(rows["image_id"])
    index = json.loads((out / "book.json").read_text())
    assert [(c["stem"], c["status"]) for c in index["chapters"]] == [("01_eda", "ok")]
    assert str(fresh.resolve()) in (out / "index.html").read_text()
    values = json.loads((out / "chapters" / "01_eda" / "01_eda.json").read_text())["values"]
    assert values["images"] == len(rows) == 28 and values["cached_images"] == 28  # the downloaded images
    assert values["contrast_valid_images"] > 0  # with the downloaded masks
    assert data_dir() == fresh.resolve()  # validate, cache and notebooks run by hand find it too

    # the second build finds it: no request, nothing downloaded, the chapter up to date
    assert cli.main(args) == 0
    said = capsys.readouterr()
    assert sorted(mirror.requests) == sorted(FILES)
    assert f"data: {fresh} (the default data folder, downloaded earlier)" in said.out
    assert "up to date" in said.out and "Downloading" not in said.err


def test_no_download_and_the_environment_variable_turn_it_off(fresh, mirror, tmp_path, capsys, monkeypatch):
    out = tmp_path / "book"
    assert cli.main(["book", "--profile", "tiny", "--out", str(out), "--only", "eda", "--no-download"]) == 2
    assert "Downloads are off" in capsys.readouterr().err
    monkeypatch.setenv("HAMVIZ_NO_DOWNLOAD", "1")
    assert cli.main(["book", "--profile", "tiny", "--out", str(out), "--only", "eda"]) == 2
    assert "Downloads are off" in capsys.readouterr().err
    assert mirror.requests == [] and not fresh.exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_with_nothing_one_message_within_seconds_lists_every_missing_piece(
        fresh, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HAMVIZ_DOWNLOAD_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens: offline
    probed = []
    monkeypatch.setattr(w, "reachable", lambda host, *a, **k: probed.append(host) or False)  # no hub either
    fetched = []
    monkeypatch.setattr(w, "hub_fetch", lambda handle, dest: fetched.append(handle))
    out = tmp_path / "book"
    t = time.time()
    assert cli.main(["book", "--profile", "tiny", "--out", str(out)]) == 2
    assert time.time() - t < 20  # seconds: no download attempted, no chapter started
    said = capsys.readouterr()
    msg = said.err
    assert msg.count("hamviz: error:") == 1 and msg.count("The book needs 3 thing(s)") == 1
    for piece in ("HAM10000 images and metadata (about 2.7 GB)", "lesion masks", f"efficientnet_lite0 pretrained "
                  f"weights (Keras-Hub preset {HANDLE}"):
        assert piece in msg, (piece, msg)
    for fix in ("`hamviz download --dest DIR --masks`", "https://dataverse.harvard.edu/api/access/datafile/3172585",
                "doi:10.7910/DVN/DBW86T", "`hamviz weights --model efficientnet_lite0 --dest WEIGHTS_DIR`",
                "https://huggingface.co/timm/efficientnet_lite0.ra_in1k",
                "export HAMVIZ_DATA=DIR", "export HAMVIZ_WEIGHTS=WEIGHTS_DIR", "HAMVIZ_HOME", "no connection to"):
        assert fix in msg, (fix, msg)
    assert probed == ["huggingface.co"] and fetched == []
    assert not fresh.exists() and not (out / "chapters").exists() and "running" not in said.out


def test_weights_are_fetched_once_into_the_weights_cache_when_online(fresh, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HAMVIZ_DATA", str(DATA))  # the data is here; the preset is not
    calls = []

    def fake_hub(handle, dest):
        calls.append(handle)
        for f in (SHARED_WEIGHTS / PRESET).iterdir():
            shutil.copyfile(f, dest / f.name)

    monkeypatch.setattr(w, "reachable", lambda host, *a, **k: True)  # online, as far as hamviz can tell
    monkeypatch.setattr(w, "hub_fetch", fake_hub)
    from hamviz.book import prepare
    prepare("tiny", tmp_path / "book", only=["classifier"], download=True, log=print)
    cached = tmp_path / "cache" / "weights" / PRESET
    assert calls == [HANDLE]
    assert sorted(p.name for p in cached.iterdir()) == sorted(p.name for p in (SHARED_WEIGHTS / PRESET).iterdir())
    assert w.preset_source("efficientnet_lite0", "imagenet") == (str(cached), True)  # what the chapters load
    assert f"downloading efficientnet_lite0 ({HANDLE}" in capsys.readouterr().out
    prepare("tiny", tmp_path / "book", only=["classifier"], download=True)
    assert calls == [HANDLE]  # the second run finds it
    # a chapter that needs no pretrained weights asks for none
    shutil.rmtree(cached)
    prepare("tiny", tmp_path / "book", only=["eda"], download=True)
    assert calls == [HANDLE]


def test_an_interrupted_weights_fetch_leaves_no_preset_folder(fresh, monkeypatch):
    def dies(handle, dest):
        (dest / "config.json").write_text("{")
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(w, "hub_fetch", dies)
    with pytest.raises(w.WeightsError) as err:
        w.fetch_preset("efficientnet_lite0")
    assert "connection reset" in str(err.value) and HANDLE in str(err.value) and "HAMVIZ_WEIGHTS" in str(err.value)
    weights_cache = Path(os.environ["HAMVIZ_CACHE"]) / "weights"
    assert list(weights_cache.iterdir()) == [] and w.local_preset("efficientnet_lite0") is None


def test_hub_fetch_asks_huggingface_for_the_repository_of_the_handle(tmp_path, monkeypatch):
    import huggingface_hub
    asked = {}

    def snapshot_download(repo_id, local_dir, **kwargs):
        asked.update(repo_id=repo_id, local_dir=local_dir, **kwargs)
        (Path(local_dir) / ".cache").mkdir()
        (Path(local_dir) / "config.json").write_text("{}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    w.hub_fetch(HANDLE, tmp_path)
    assert asked["repo_id"] == "timm/efficientnet_lite0.ra_in1k" and asked["local_dir"] == str(tmp_path)
    assert "*.bin" in asked["ignore_patterns"]  # not the PyTorch copy of the weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def make_var(repo: Path, name: str) -> str | None:
    """The value of ``name`` in the environment `make` gives its recipes in ``repo`` (None: not set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HAMVIZ_DATA", "HAMVIZ_WEIGHTS", "MAKEFLAGS")}
    run = subprocess.run(["make", "-s", "--eval", f'show: ; @echo "[$${{{name}-UNSET}}]"', "show"], cwd=repo,
                         env=env, text=True, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr
    value = run.stdout.strip()[1:-1]
    return None if value == "UNSET" else value


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_makefile_sets_the_data_only_where_the_shared_copy_exists(tmp_path):
    makefile = Path(__file__).resolve().parents[1] / "Makefile"
    bare = tmp_path / "fresh" / "repo"  # a fresh clone: nothing beside it
    bare.mkdir(parents=True)
    shutil.copy(makefile, bare)
    assert make_var(bare, "HAMVIZ_DATA") is None and make_var(bare, "HAMVIZ_WEIGHTS") is None
    dev = tmp_path / "dev" / "repo"  # a development machine: ../shared beside it
    dev.mkdir(parents=True)
    shutil.copy(makefile, dev)
    (tmp_path / "dev" / "shared" / "data" / "ham10000").mkdir(parents=True)
    (tmp_path / "dev" / "shared" / "weights").mkdir(parents=True)
    assert make_var(dev, "HAMVIZ_DATA") == str(tmp_path / "dev" / "shared" / "data" / "ham10000")
    assert make_var(dev, "HAMVIZ_WEIGHTS") == str(tmp_path / "dev" / "shared" / "weights")


def test_a_data_folder_that_was_never_completed_is_not_used(fresh, tmp_path):
    from hamviz import download as dl
    fresh.mkdir(parents=True)
    shutil.copy(DATA / "HAM10000_metadata.csv", fresh)
    with pytest.raises(DataError, match="holds no completed download"):
        data_dir()
    assert "ham10000" not in completed_items(fresh)
    (fresh / COMPLETE_MARKER).write_text(json.dumps({"items": ["masks"]}))
    with pytest.raises(DataError):
        data_dir()
    assert dl.plan(fresh).files  # and the book would download it


def test_hamviz_weights_puts_a_preset_where_asked_for_a_machine_without_internet(fresh, tmp_path, capsys,
                                                                                   monkeypatch):
    calls = []

    def fake_hub(handle, dest):
        calls.append(handle)
        shutil.copyfile(SHARED_WEIGHTS / PRESET / "config.json", dest / "config.json")

    monkeypatch.setattr(w, "hub_fetch", fake_hub)
    dest = tmp_path / "carry"
    assert cli.main(["weights", "--dest", str(dest)]) == 0
    assert calls == [HANDLE] and (dest / PRESET / "config.json").is_file()
    assert f"export HAMVIZ_WEIGHTS={dest.resolve()}" in capsys.readouterr().out
    monkeypatch.setenv("HAMVIZ_WEIGHTS", str(dest))
    assert cli.main(["weights"]) == 0  # already there: found, not fetched
    assert calls == [HANDLE] and str(dest / PRESET) in capsys.readouterr().out


def test_missing_keras_weights_are_listed_before_any_chapter_and_fetched_when_online(tmp_path, capsys, monkeypatch):
    """The paper profile's Keras-application ImageNet files: offline and not here, one message names every file
    (VGG19's with its fully connected top too) and the command that fetches it, before any chapter runs; online,
    they are fetched into the weights cache first (not hours later, when a chapter builds the model)."""
    monkeypatch.setenv("HAMVIZ_DATA", str(DATA))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no Keras cache of its own
    monkeypatch.setenv("HAMVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(w, "reachable", lambda host, *a, **k: False)
    out = tmp_path / "book"
    assert cli.main(["book", "--profile", "paper", "--out", str(out), "--only", "explain"]) == 2
    msg = capsys.readouterr().err
    assert msg.count("hamviz: error:") == 1 and "The book needs 4 thing(s)" in msg, msg  # explain + classifier's
    assert "vgg19 ImageNet weights (vgg19_weights_tf_dim_ordering_tf_kernels.h5; " in msg
    assert "`hamviz weights --model vgg19 --top --dest WEIGHTS_DIR`" in msg
    assert "`hamviz weights --profile " in msg and "paper.yaml --dest WEIGHTS_DIR`" in msg  # all of them at once
    for f in ("inception_v3", "resnet50", "densenet201"):
        assert f"{f}_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg
    assert ".." not in msg and not (out / "chapters").exists()
    from hamviz import book
    from hamviz.params import load_profile
    monkeypatch.setattr(w, "reachable", lambda host, *a, **k: True)
    fetched = []
    monkeypatch.setattr(w, "fetch_keras_weights", lambda model, top=False, **k: fetched.append((model, top)))
    book.provide(load_profile("paper"), ["explain"], log=lambda *_: None)
    assert fetched == [("vgg19", True), ("inceptionv3", False)]
