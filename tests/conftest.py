"""Shared fixtures: the real HAM10000 data (read-only) and a cache folder for the test run.

HAMVIZ_DATA defaults to ../shared/data/ham10000 beside the repository; HAMVIZ_CACHE to
<repo>/.hamviz-cache/tests (kept between runs, so the decoded-image cache is built once).
"""
import json
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
    ISIC 2018 Task 3 layout (images three times the cached size: the resize path of another collection)."""
    originals = DATA.parent / "ham10000-originals"
    write_isic2018(folder / "isic", originals / "images", pd.read_csv(originals / "HAM10000_metadata.csv"))
    profile = folder / "tiny_external.yaml"
    profile.write_text(f"extends: tiny\nprofile: tiny\nchapters:\n  classifier:\n"
                       f"    external_test: {json.dumps(str(folder / 'isic'))}\n")
    return profile


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory) -> Path:
    """The tiny profile with the external test set (:func:`tiny_with_external`): the one the tiny book uses."""
    return tiny_with_external(tmp_path_factory.mktemp("external"))


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory, tiny_profile):
    """The whole results book built once per test session with the tiny profile (about 4 minutes on a
    2-core machine): (output folder, build summary, seconds). Shared by test_book.py and test_browser.py."""
    from hamviz.book import build
    out = tmp_path_factory.mktemp("book")
    t = time.time()
    summary = build(tiny_profile, out, log=lambda *_: None)
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
