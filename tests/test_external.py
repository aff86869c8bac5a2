"""hamviz.external: ISIC 2018 Task 3 and DermaMNIST loaders, on fixtures made from real HAM10000 images.

The fixtures are built in tmp_path from the shared HAM10000 copy (``$HAMVIZ_DATA``, default
``<repo>/../shared/data/ham10000``): a few real images in the ISIC 2018 layout with a ground-truth CSV
made from their real dx, and small DermaMNIST-like .npz files made from real images resized with PIL.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hamviz.config import DataError
from hamviz.data import CLASSES
from hamviz.external import DERMAMNIST_LABELS, ISIC2018_COLUMNS, DermaMNIST, load_dermamnist, load_isic2018

DATA = Path(os.environ.get("HAMVIZ_DATA") or Path(__file__).resolve().parents[1].parent
            / "shared/data/ham10000")
META_CSV = DATA / "HAM10000_metadata.csv"
IMAGES = DATA / "images"

pytestmark = pytest.mark.skipif(not (META_CSV.is_file() and IMAGES.is_dir()),
                                reason=f"HAM10000 not found in {DATA} (set HAMVIZ_DATA)")

INPUT = "ISIC2018_Task3_Test_Input"
GT_DIR = "ISIC2018_Task3_Test_GroundTruth"
GT_NAME = "ISIC2018_Task3_Test_GroundTruth.csv"


@pytest.fixture(scope="module")
def ham_meta() -> pd.DataFrame:
    meta = pd.read_csv(META_CSV, dtype=str)
    return meta[meta["image_id"].map(lambda i: (IMAGES / f"{i}.jpg").is_file())]


def pick(meta: pd.DataFrame, per_class: int, offset: int = 0) -> pd.DataFrame:
    """``per_class`` real images of every diagnosis (deterministic: sorted by image_id)."""
    rows = [g.sort_values("image_id").iloc[offset:offset + per_class] for _, g in meta.groupby("dx")]
    return pd.concat(rows).sort_values("image_id").reset_index(drop=True)


def one_hot_frame(rows: pd.DataFrame) -> pd.DataFrame:
    gt = pd.DataFrame({"image": rows["image_id"].to_numpy()})
    for col, cls in ISIC2018_COLUMNS.items():
        gt[col] = (rows["dx"].to_numpy() == cls).astype(float)
    return gt


def make_isic(dest: Path, rows: pd.DataFrame, *, flat: bool = False) -> tuple[Path, Path]:
    """Copy ``rows``' images and write their one-hot ground truth; return (csv path, image folder)."""
    img_dir = dest if flat else dest / INPUT
    gt_dir = dest if flat else dest / GT_DIR
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for i in rows["image_id"]:
        shutil.copy(IMAGES / f"{i}.jpg", img_dir / f"{i}.jpg")
    (img_dir / "LICENSE.txt").write_text("not an image\n")
    gt_path = gt_dir / GT_NAME
    one_hot_frame(rows).to_csv(gt_path, index=False)
    return gt_path, img_dir


@pytest.fixture(scope="module")
def isic_rows(ham_meta) -> pd.DataFrame:
    return pick(ham_meta, 3)  # 21 images, every class


@pytest.fixture
def isic(tmp_path, isic_rows):
    root = tmp_path / "isic2018"
    gt_path, img_dir = make_isic(root, isic_rows)
    return root, gt_path, img_dir


# ----------------------------------------------------------------------------------------- ISIC 2018

def test_isic2018_round_trip(isic, isic_rows):
    root, gt_path, _ = isic
    ds = load_isic2018(root)
    assert len(ds) == len(isic_rows) == 21
    assert ds.source == "isic2018" and ds.layout == "isic2018" and ds.classes == CLASSES
    assert ds.root == root.resolve()
    assert {"image_id", "lesion_id", "dx", "label", "path", "mask_path"} <= set(ds.meta.columns)
    truth = isic_rows.set_index("image_id")["dx"]
    got = ds.meta.set_index("image_id")
    assert (got["dx"] == truth.loc[got.index]).all()
    assert [CLASSES[i] for i in ds.labels] == list(ds.meta["dx"])
    assert ds.labels.dtype == np.int64 and set(ds.labels) == set(range(7))
    assert (ds.meta["lesion_id"] == ds.meta["image_id"]).all()
    assert ds.meta["mask_path"].isna().all() and not ds.has_masks
    assert all(Path(p).is_file() and Path(p).stem == i for p, i in zip(ds.meta["path"], ds.meta["image_id"]))
    assert len(ds.fingerprint) == 16 and int(ds.fingerprint, 16) >= 0
    assert ds.report["image_dirs"] == [INPUT]
    assert ds.report["ground_truth"] == str(gt_path.resolve())
    assert sum(ds.report["class_counts"].values()) == 21
    # same files -> same fingerprint; a changed ground truth -> a different one
    assert load_isic2018(root).fingerprint == ds.fingerprint
    gt = pd.read_csv(gt_path)
    gt.iloc[::-1].to_csv(gt_path, index=False)
    assert load_isic2018(root).fingerprint != ds.fingerprint


def test_isic2018_flat_layout_and_png(tmp_path, isic_rows):
    root = tmp_path / "flat"
    make_isic(root, isic_rows, flat=True)
    first = isic_rows["image_id"][0]
    Image.open(root / f"{first}.jpg").save(root / f"{first}.png")
    (root / f"{first}.jpg").unlink()
    ds = load_isic2018(root)
    assert len(ds) == 21 and ds.report["image_dirs"] == ["."]
    assert ds.meta.set_index("image_id").loc[first, "path"].endswith(".png")


def test_isic2018_any_input_folder_name(tmp_path, isic_rows):
    root = tmp_path / "renamed"
    make_isic(root, isic_rows)
    (root / INPUT).rename(root / "my_Input_images")
    assert load_isic2018(root).report["image_dirs"] == ["my_Input_images"]


def test_isic2018_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_isic2018(tmp_path / "nope")


def test_isic2018_no_ground_truth(isic):
    root, gt_path, _ = isic
    gt_path.rename(root / "labels.csv")
    with pytest.raises(DataError, match=r"No ground-truth CSV.*_GroundTruth\.csv.*labels\.csv.*ground_truth=PATH"):
        load_isic2018(root)
    # ...and naming it explicitly fixes it
    assert len(load_isic2018(root, ground_truth=root / "labels.csv")) == 21
    assert len(load_isic2018(root, ground_truth="labels.csv")) == 21


def test_isic2018_two_ground_truths_is_ambiguous(isic):
    root, gt_path, _ = isic
    shutil.copy(gt_path, root / "ISIC2018_Task3_Validation_GroundTruth.csv")
    with pytest.raises(DataError, match=r"2 ground-truth CSVs.*ground_truth=PATH"):
        load_isic2018(root)
    assert len(load_isic2018(root, ground_truth=gt_path)) == 21


def test_isic2018_missing_columns(isic):
    root, gt_path, _ = isic
    pd.read_csv(gt_path).drop(columns=["DF", "VASC"]).to_csv(gt_path, index=False)
    with pytest.raises(DataError, match=r"lacks one-hot column\(s\) DF, VASC"):
        load_isic2018(root)
    pd.read_csv(gt_path).rename(columns={"image": "img"}).to_csv(gt_path, index=False)
    with pytest.raises(DataError, match="no 'image' column"):
        load_isic2018(root)


def test_isic2018_not_one_hot(isic, isic_rows):
    root, gt_path, _ = isic
    gt = pd.read_csv(gt_path)
    ids = list(gt["image"])
    gt.loc[0, list(ISIC2018_COLUMNS)] = 0.0           # no class
    gt.loc[1, ["MEL", "NV"]] = 1.0                    # two classes (one of them already 1 or not)
    gt.loc[1, ["BCC", "AKIEC", "BKL", "DF", "VASC"]] = 0.0
    gt.loc[2, list(ISIC2018_COLUMNS)] = 0.0
    gt.loc[2, "MEL"] = 0.5                           # not 0/1
    gt.to_csv(gt_path, index=False)
    with pytest.raises(DataError, match=r"3 row\(s\) that are not exactly one-hot") as err:
        load_isic2018(root)
    for i in ids[:3]:
        assert i in str(err.value)
    gt["MEL"] = gt["MEL"].astype(object)
    gt.loc[0:2, "MEL"] = "yes"                       # not a number at all
    gt.to_csv(gt_path, index=False)
    with pytest.raises(DataError, match="not exactly one-hot"):
        load_isic2018(root)


def test_isic2018_unknown_class_columns(isic):
    root, gt_path, _ = isic
    gt = pd.read_csv(gt_path)
    gt["SCC"] = 0.0
    gt["UNK"] = 0.0
    gt.to_csv(gt_path, index=False)
    ds = load_isic2018(root)                          # all-zero extra columns: ignored, reported
    assert ds.report["ignored_columns"] == ["SCC", "UNK"] and len(ds) == 21
    gt.loc[0, list(ISIC2018_COLUMNS)] = 0.0
    gt.loc[0, "UNK"] = 1.0
    gt.to_csv(gt_path, index=False)
    with pytest.raises(DataError, match=r"does not know: \{'UNK': 1\}") as err:
        load_isic2018(root)
    assert "SCC" not in str(err.value)


def test_isic2018_duplicate_ids(isic):
    root, gt_path, _ = isic
    gt = pd.read_csv(gt_path)
    pd.concat([gt, gt.iloc[:2]]).to_csv(gt_path, index=False)
    with pytest.raises(DataError, match=r"2 image id\(s\) twice"):
        load_isic2018(root)


def test_isic2018_ids_without_files(isic):
    root, _, img_dir = isic
    gone = sorted(p.stem for p in img_dir.glob("*.jpg"))[:2]
    for i in gone:
        (img_dir / f"{i}.jpg").unlink()
    with pytest.raises(DataError, match=r"2 image id\(s\) in the ground truth have no file.*on_missing='skip'") as err:
        load_isic2018(root)
    assert all(i in str(err.value) for i in gone)
    ds = load_isic2018(root, on_missing="skip")
    assert len(ds) == 19 and ds.report["missing_files"] == gone
    assert not set(gone) & set(ds.meta["image_id"])


def test_isic2018_files_without_ids(isic, ham_meta):
    root, _, img_dir = isic
    extra = pick(ham_meta, 1, offset=10)["image_id"][:3].tolist()
    for i in extra:
        shutil.copy(IMAGES / f"{i}.jpg", img_dir / f"{i}.jpg")
    with pytest.raises(DataError, match=r"3 image file\(s\) have no ground-truth row") as err:
        load_isic2018(root)
    assert all(i in str(err.value) for i in extra)
    ds = load_isic2018(root, on_missing="skip")
    assert len(ds) == 21 and ds.report["files_without_metadata"] == sorted(extra)


def test_isic2018_no_images(tmp_path, isic_rows):
    root = tmp_path / "empty"
    make_isic(root, isic_rows.iloc[:0])
    one_hot_frame(isic_rows).to_csv(root / GT_DIR / GT_NAME, index=False)
    with pytest.raises(DataError, match=r"No images .*'Input'"):
        load_isic2018(root)


def test_isic2018_bad_on_missing(isic):
    with pytest.raises(ValueError, match="on_missing"):
        load_isic2018(isic[0], on_missing="ignore")


# ---------------------------------------------------------------------------------------- DermaMNIST

def test_dermamnist_label_order_matches_classes():
    # medmnist INFO["dermamnist"]["label"] (medmnist/info.py) vs hamviz CLASSES
    expected = {"akiec": "actinic keratoses", "bcc": "basal cell carcinoma", "bkl": "benign keratosis",
                "df": "dermatofibroma", "mel": "melanoma", "nv": "melanocytic nevi", "vasc": "vascular"}
    assert [DERMAMNIST_LABELS[i].startswith(expected[c]) for i, c in enumerate(CLASSES)] == [True] * 7


@pytest.fixture(scope="module")
def derma_source(ham_meta):
    """30 real images (every class) with labels from their dx, split 18/6/6."""
    rows = pick(ham_meta, 5)[:30].sample(frac=1.0, random_state=0).reset_index(drop=True)
    labels = rows["dx"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    imgs = [Image.open(IMAGES / f"{i}.jpg").convert("RGB") for i in rows["image_id"]]
    return imgs, labels


def derma_arrays(source, size: int) -> dict[str, np.ndarray]:
    imgs, labels = source
    x = np.stack([np.asarray(im.resize((size, size), Image.BILINEAR)) for im in imgs]).astype(np.uint8)
    y = labels.reshape(-1, 1).astype(np.uint8)  # MedMNIST stores (N, 1)
    cut = {"train": slice(0, 18), "val": slice(18, 24), "test": slice(24, 30)}
    out = {}
    for s, sl in cut.items():
        out[f"{s}_images"], out[f"{s}_labels"] = x[sl], y[sl]
    return out


@pytest.fixture(scope="module")
def derma_npz(tmp_path_factory, derma_source) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("dermamnist")
    paths = {}
    for size in (28, 64):
        paths[size] = d / ("dermamnist.npz" if size == 28 else f"dermamnist_{size}.npz")
        np.savez_compressed(paths[size], **derma_arrays(derma_source, size))
    return paths


@pytest.mark.parametrize("size", [28, 64])
def test_dermamnist_round_trip(derma_npz, derma_source, size):
    path = derma_npz[size]
    dm = load_dermamnist(path)
    assert isinstance(dm, DermaMNIST)
    assert dm.size == size and dm.classes == CLASSES and dm.splits == ("train", "val", "test")
    assert len(dm) == 30 and dm.report["counts"] == {"train": 18, "val": 6, "test": 6}
    assert dm.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    labels = np.concatenate([dm.labels[s] for s in ("train", "val", "test")])
    assert labels.dtype == np.int64 and labels.ndim == 1
    assert (labels == derma_source[1]).all() and set(labels) == set(range(7))
    x, y = dm.as_arrays("val")
    assert x.dtype == np.uint8 and x.shape == (6, size, size, 3) and y.shape == (6,)
    assert (x == derma_arrays(derma_source, size)["val_images"]).all()
    with pytest.raises(ValueError, match="not loaded"):
        dm.as_arrays("validation")


def test_dermamnist_one_split_and_folder(derma_npz):
    dm = load_dermamnist(derma_npz[64], split="test")
    assert dm.splits == ("test",) and len(dm) == 6
    with pytest.raises(ValueError, match=r"'train' is not loaded \(loaded: test\)"):
        dm.as_arrays("train")
    with pytest.raises(ValueError, match="split must be"):
        load_dermamnist(derma_npz[64], split="valid")
    # a folder holding exactly one dermamnist*.npz is accepted; two are ambiguous
    one = derma_npz[28].parent / "only"
    one.mkdir(exist_ok=True)
    shutil.copy(derma_npz[28], one / "dermamnist.npz")
    assert load_dermamnist(one).size == 28
    with pytest.raises(DataError, match="2 DermaMNIST files"):
        load_dermamnist(derma_npz[28].parent)


def test_dermamnist_missing_file(tmp_path):
    with pytest.raises(DataError,
                       match=r"does not exist.*hamviz download --dermamnist SIZE.*zenodo\.org/records/10519652"):
        load_dermamnist(tmp_path / "dermamnist_224.npz")


def test_dermamnist_not_npz(tmp_path):
    bad = tmp_path / "dermamnist.npz"
    bad.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataError, match="not a valid .npz"):
        load_dermamnist(bad)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DataError, match="single .npy array"):
        load_dermamnist(tmp_path / "single.npy")


def test_dermamnist_truncated(tmp_path, derma_npz):
    bad = tmp_path / "dermamnist.npz"
    bad.write_bytes(derma_npz[28].read_bytes()[:2000])
    with pytest.raises(DataError, match="not a valid .npz|Cannot read"):
        load_dermamnist(bad)


def _write(tmp_path, arrays) -> Path:
    path = tmp_path / "dermamnist_x.npz"
    np.savez(path, **arrays)
    return path


def test_dermamnist_missing_keys(tmp_path, derma_source):
    arrays = derma_arrays(derma_source, 28)
    del arrays["val_labels"], arrays["test_images"]
    path = _write(tmp_path, arrays)
    with pytest.raises(DataError, match=r"lacks key\(s\) val_labels, test_images"):
        load_dermamnist(path)
    assert load_dermamnist(path, split="train").splits == ("train",)  # only that split's keys needed


def test_dermamnist_bad_images(tmp_path, derma_source):
    arrays = derma_arrays(derma_source, 28)
    arrays["train_images"] = arrays["train_images"].astype(np.float32) / 255
    with pytest.raises(DataError, match=r"train_images .* float32 .*must be uint8 \(N, H, W, 3\)"):
        load_dermamnist(_write(tmp_path, arrays))
    arrays = derma_arrays(derma_source, 28)
    arrays["val_images"] = arrays["val_images"][..., 0]  # grayscale (N, H, W)
    with pytest.raises(DataError, match=r"val_images .*\(6, 28, 28\)"):
        load_dermamnist(_write(tmp_path, arrays))


def test_dermamnist_count_mismatch(tmp_path, derma_source):
    arrays = derma_arrays(derma_source, 28)
    arrays["test_labels"] = arrays["test_labels"][:4]
    with pytest.raises(DataError, match=r"test_images has 6 image\(s\) but test_labels has 4"):
        load_dermamnist(_write(tmp_path, arrays))


def test_dermamnist_labels_out_of_range(tmp_path, derma_source):
    arrays = derma_arrays(derma_source, 28)
    y = arrays["train_labels"].astype(np.int64)
    y[:2] = 7
    y[2] = -1
    arrays["train_labels"] = y
    with pytest.raises(DataError, match=r"3 label\(s\) outside 0\.\.6 \(values -1, 7\)"):
        load_dermamnist(_write(tmp_path, arrays))


def test_dermamnist_flat_labels_accepted(tmp_path, derma_source):
    arrays = derma_arrays(derma_source, 28)
    arrays = {k: (v.reshape(-1).astype(np.int64) if k.endswith("labels") else v) for k, v in arrays.items()}
    dm = load_dermamnist(_write(tmp_path, arrays))
    assert dm.labels["train"].shape == (18,) and dm.labels["train"].dtype == np.int64
