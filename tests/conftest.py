"""Shared fixtures: the real HAM10000 data (read-only) and a cache folder for the test run.

HAMVIZ_DATA defaults to ../shared/data/ham10000 beside the repository; HAMVIZ_CACHE to
<repo>/.hamviz-cache/tests (kept between runs, so the decoded-image cache is built once).
"""
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HAMVIZ_DATA") or REPO.parent / "shared" / "data" / "ham10000")
os.environ["HAMVIZ_DATA"] = str(DATA)
os.environ.setdefault("HAMVIZ_CACHE", str(REPO / ".hamviz-cache" / "tests"))
# pretrained presets (read-only): the shared EfficientNet-Lite0 preset beside the repository
os.environ.setdefault("HAMVIZ_WEIGHTS", str(REPO.parent / "shared" / "weights"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config, items):
    if not (DATA / "HAM10000_metadata.csv").is_file():
        raise pytest.UsageError(f"HAM10000 test data not found at {DATA}: set HAMVIZ_DATA to a HAM10000 "
                                f"folder (metadata + images/ + masks/).")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory):
    """The whole results book built once per test session with the tiny profile (about 4 minutes on a
    2-core machine): (output folder, build summary, seconds). Shared by test_book.py and test_browser.py."""
    from hamviz.book import build
    out = tmp_path_factory.mktemp("book")
    t = time.time()
    summary = build("tiny", out, log=lambda *_: None)
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
