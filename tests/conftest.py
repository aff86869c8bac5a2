"""Shared fixtures: the real HAM10000 data (read-only) and a cache folder for the test run.

HAMVIZ_DATA defaults to ../shared/data/ham10000 beside the repository; HAMVIZ_CACHE to
<repo>/.hamviz-cache/tests (kept between runs, so the decoded-image cache is built once); HAMVIZ_HOME (where a
first run downloads) to <repo>/.hamviz-cache/tests-home, never the user's own.
"""
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import threading
import time
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HAMVIZ_DATA") or REPO.parent / "shared" / "data" / "ham10000")
os.environ["HAMVIZ_DATA"] = str(DATA)
os.environ.setdefault("HAMVIZ_CACHE", str(REPO / ".hamviz-cache" / "tests"))
# hamviz's download folder: never the user's real one (a completed download there would change what tests see)
os.environ["HAMVIZ_HOME"] = str(REPO / ".hamviz-cache" / "tests-home")
# pretrained presets (read-only): the shared EfficientNet-Lite0 preset beside the repository
os.environ.setdefault("HAMVIZ_WEIGHTS", str(REPO.parent / "shared" / "weights"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: test modules that read the session's tiny book: one unit of work for pytest-xdist, so one worker builds it
BOOK_MODULES = ("test_book.py", "test_browser.py")
#: the longest units of the suite, handed out first so that neither is left to run alone at the end
HEAVY_FIRST = (*BOOK_MODULES, "test_paper_smoke.py")
#: fixtures that hand a test the HAM10000 folder or something built from it: a test that asks for one is marked
#: ``data``
DATA_FIXTURES = frozenset({"data_dir", "ham", "metadata", "subset", "tiny_profile", "tiny_book"})
#: modules whose every test reads the HAM10000 folder outside those fixtures (a module-level path, a notebook run on
#: the data, a download server filled from it): marked ``data`` as a whole
DATA_MODULES = ("test_reliability.py", "test_first_run.py", "test_download.py", "test_external.py")
#: modules that take minutes (a book, a browser, a profile's smoke run, real training): marked ``slow``
SLOW_MODULES = (*HEAVY_FIRST,)


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection, which reads these marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        name, fixtures = item.path.name, set(getattr(item, "fixturenames", ()))
        if name in BOOK_MODULES or "tiny_book" in fixtures:
            item.add_marker(pytest.mark.book)
        if name == "test_browser.py":
            item.add_marker(pytest.mark.browser)
        if name in DATA_MODULES or fixtures & DATA_FIXTURES:
            item.add_marker(pytest.mark.data)
        if name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    strays = sorted({item.path.name for item in items
                     if "tiny_book" in getattr(item, "fixturenames", ()) and item.path.name not in BOOK_MODULES})
    if strays:  # on two workers such a module would build the tiny book a second time
        raise pytest.UsageError(f"{', '.join(strays)} use(s) the tiny_book fixture: add the module to BOOK_MODULES "
                                f"in tests/conftest.py, so that one pytest-xdist worker builds the book")
    # heavy modules first (a stable sort: the rest keep their order); `make test` hands units out in this order
    items.sort(key=lambda item: HEAVY_FIRST.index(item.path.name) if item.path.name in HEAVY_FIRST
               else len(HEAVY_FIRST))


@pytest.hookimpl(trylast=True)  # after -m has deselected: only the tests that will run ask for the data
def pytest_collection_finish(session):
    need = [item for item in session.items if item.get_closest_marker("data")]
    if need and not (DATA / "HAM10000_metadata.csv").is_file():
        raise pytest.UsageError(f"{len(need)} selected test(s) need the HAM10000 data, not found at {DATA}: set "
                                f"HAMVIZ_DATA to a HAM10000 folder (metadata + images/ + masks/), or run the tests "
                                f"that need no data with `pytest -m \"not data\"`.")


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: pytest without it ignores this one
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs two pytest-xdist workers with ``--dist loadfile`` (plain ``-n 2`` gets the same): a test
    module is one unit of work (its module fixtures are built once), except that BOOK_MODULES are one unit
    together, so the tiny book is built by one worker while the other starts with the paper smoke test; the
    other modules go to whichever worker is free, in collection order. (Not --dist loadgroup with
    xdist_group marks: with pytest 9.2 it silently stops grouping, pytest-xdist issue #1386.)"""
    if config.getvalue("dist") not in ("load", "loadfile"):  # plain `-n 2` too: never two tiny books
        return None
    from xdist.scheduler import LoadFileScheduling
    config.option.loadscopereorder = False  # keep HEAVY_FIRST's order (not largest-module-first)

    class BookTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tiny book" if scope.rsplit("/", 1)[-1] in BOOK_MODULES else scope

    return BookTogether(config, log)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The HAM10000 folder ($HAMVIZ_DATA, default ../shared/data/ham10000): a test that asks for it is marked
    ``data`` (``pytest -m "not data"`` leaves it out)."""
    return DATA


def write_isic2018(dest: Path, images: Path, meta: pd.DataFrame) -> None:
    """An ISIC 2018 Task 3 test folder in ``dest``: the images of ``meta`` (HAM-style: image_id, dx) copied from
    ``images`` into ISIC2018_Task3_Test_Input/, and the one-hot ground-truth CSV beside it."""
    folder = dest / "ISIC2018_Task3_Test_Input"
    folder.mkdir(parents=True)
    for image_id in meta["image_id"]:
        shutil.copy(images / f"{image_id}.jpg", folder)
    gt = pd.DataFrame({"image": meta["image_id"]})
    for c in ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"):
        gt[c] = (meta["dx"].str.upper() == c).astype(float).to_numpy()
    gt.to_csv(dest / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)


def tiny_with_external(folder: Path) -> Path:
    """The tiny profile with an external test set: the 70 byte-exact 600x450 originals of ../shared/data in the
    ISIC 2018 Task 3 layout (images three times the cached size: the resize path of another collection). They are
    HAM10000's own images, so none is independent of the data in use: ``external_overlap: keep`` scores them anyway
    (a smoke test of the path; the record says 0 were independent)."""
    originals = DATA.parent / "ham10000-originals"
    write_isic2018(folder / "isic", originals / "images", pd.read_csv(originals / "HAM10000_metadata.csv"))
    profile = folder / "tiny_external.yaml"
    profile.write_text(f"extends: tiny\nprofile: tiny\nchapters:\n  classifier:\n"
                       f"    external_test: {json.dumps(str(folder / 'isic'))}\n    external_overlap: keep\n")
    return profile


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory) -> Path:
    """The tiny profile with the external test set (:func:`tiny_with_external`): the one the tiny book uses."""
    return tiny_with_external(tmp_path_factory.mktemp("external"))


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory, tiny_profile):
    """The whole results book built once per test session with the tiny profile, two chapters at a time (the
    way `hamviz book --jobs 2` runs them): (output folder, build summary, seconds). Shared by test_book.py and
    test_browser.py. With $HAMVIZ_TEST_BOOK set to a tiny book built before (``hamviz book --profile tiny``
    with the external set of :func:`tiny_with_external`), that folder is used as it is and nothing is built
    (build summary None): for working on the pages, never in CI."""
    if os.environ.get("HAMVIZ_TEST_BOOK"):
        return Path(os.environ["HAMVIZ_TEST_BOOK"]), None, 0.0
    from hamviz.book import build
    out = tmp_path_factory.mktemp("book")
    t = time.time()
    summary = build(tiny_profile, out, jobs=2, log=lambda *_: None)
    return out, summary, time.time() - t


@pytest.fixture(scope="session")
def ham(data_dir):
    from hamviz import load_ham10000
    return load_ham10000(data_dir)


@pytest.fixture(scope="session")
def metadata(data_dir) -> pd.DataFrame:
    return pd.read_csv(data_dir / "HAM10000_metadata.csv")


def make_subset(dest: Path, metadata: pd.DataFrame, n_per_class: int = 3, layout: str = "flat",
                masks: bool = True) -> pd.DataFrame:
    """A small HAM10000 copy in ``dest`` (real files, copied): n images per class."""
    rows = metadata.groupby("dx", group_keys=False).head(n_per_class).reset_index(drop=True)
    dest.mkdir(parents=True, exist_ok=True)
    rows.to_csv(dest / "HAM10000_metadata.csv", index=False)
    for k, image_id in enumerate(rows["image_id"]):
        if layout == "flat":
            folder = dest / "images"
        else:
            folder = dest / ("HAM10000_images_part_1" if k % 2 == 0 else "HAM10000_images_part_2")
        folder.mkdir(exist_ok=True)
        shutil.copy(DATA / "images" / f"{image_id}.jpg", folder / f"{image_id}.jpg")
        if masks:
            mdir = dest / ("masks" if layout == "flat" else "HAM10000_segmentations_lesion_tschandl")
            mdir.mkdir(exist_ok=True)
            shutil.copy(DATA / "masks" / f"{image_id}_segmentation.png", mdir)
    return rows


@pytest.fixture
def subset(tmp_path, metadata):
    """A 21-image flat-layout copy of the real data (3 per class) in a temporary folder."""
    make_subset(tmp_path / "ham", metadata)
    return tmp_path / "ham"


# ------------------------------------------------------------- a local download server (tests never go online)

MASK_DIR = "HAM10000_segmentations_lesion_tschandl"


def md5(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``root``; ``requests`` lists the paths asked for (GET).
    ``drop[path] = fraction``: answer that path with its full Content-Length but only ``fraction`` of the body,
    then close the connection (a download cut off mid-file)."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        self.drop: dict[str, float] = {}
        seen, drop = self.requests, self.drop

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                seen.append(self.path)
                if self.path in drop:
                    body = (Path(root) / self.path.lstrip("/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[:int(len(body) * drop[self.path])])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                         functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def write_archives(root: Path, rows: pd.DataFrame, images: Path = DATA / "images",
                   masks: Path = DATA / "masks") -> None:
    """HAM10000-like archives of ``rows`` (metadata rows of the shared copy) in ``root``, as Dataverse serves them:
    two flat image zips (the first half of the rows in part 1), a masks zip holding its folder plus a macOS
    AppleDouble stub, and the metadata as a tab-separated export with quoted strings."""
    root.mkdir(parents=True, exist_ok=True)
    ids = list(rows["image_id"])
    half = len(ids) // 2
    for part, chunk in (("1", ids[:half]), ("2", ids[half:])):
        with zipfile.ZipFile(root / f"HAM10000_images_part_{part}.zip", "w") as zf:
            for i in chunk:
                zf.write(images / f"{i}.jpg", f"{i}.jpg")
    with zipfile.ZipFile(root / f"{MASK_DIR}.zip", "w") as zf:
        zf.writestr(f"{MASK_DIR}/", "")
        for i in ids:
            zf.write(masks / f"{i}_segmentation.png", f"{MASK_DIR}/{i}_segmentation.png")
        # the real zip was made on a Mac: an AppleDouble stub must not become another mask
        zf.writestr(f"__MACOSX/{MASK_DIR}/._{ids[0]}_segmentation.png", b"junk")
    rows.to_csv(root / "HAM10000_metadata.csv", sep="\t", index=False, quoting=2)


def patch_registry(monkeypatch, root: Path, items) -> None:
    """The download registry's checksums and sizes of ``items`` replaced by those of the files served from
    ``root``."""
    from hamviz import download as dl
    for name in items:
        item = dl.REGISTRY[name]
        files = tuple(dataclasses.replace(f, known_hash=md5(root / f.fname), size=(root / f.fname).stat().st_size)
                      for f in item.files)
        monkeypatch.setitem(dl.REGISTRY, name, dataclasses.replace(item, files=files))


@pytest.fixture
def no_proxy(monkeypatch):
    """requests would send 127.0.0.1 through a configured proxy; make sure it goes direct."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
