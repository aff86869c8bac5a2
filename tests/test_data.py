"""hamviz.data: loading both layouts, and every bad-input case with its message."""
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import make_subset

from hamviz import CLASSES, DataError, load_ham10000
from hamviz.config import data_dir


def test_real_data_loads(ham):
    assert len(ham) == 10015
    assert ham.meta["lesion_id"].nunique() == 7470
    assert ham.layout == "flat" and ham.has_masks
    counts = ham.meta["dx"].value_counts().to_dict()
    assert counts == {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327,
                      "vasc": 142, "df": 115}
    assert (np.asarray(CLASSES)[ham.labels] == ham.meta["dx"].to_numpy()).all()
    assert len(ham.fingerprint) == 16


def test_official_layout_and_originals(tmp_path, metadata, data_dir):
    rows = make_subset(tmp_path / "off", metadata, layout="official")
    ds = load_ham10000(tmp_path / "off")
    assert ds.layout == "official" and len(ds) == len(rows) and ds.has_masks
    assert {p.split("/")[-2] for p in ds.meta["path"]} == {"HAM10000_images_part_1",
                                                           "HAM10000_images_part_2"}
    # the 600x450 originals load with the same code (no masks there)
    orig = load_ham10000(data_dir.parent / "ham10000-originals")
    assert len(orig) == 70 and not orig.has_masks


def test_fingerprint_changes_with_data(subset):
    a = load_ham10000(subset).fingerprint
    victim = sorted((subset / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert load_ham10000(subset).fingerprint != a


def test_missing_directory_says_how_to_get_data(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist.*hamviz download.*HAMVIZ_DATA"):
        load_ham10000(tmp_path / "nowhere")
    monkeypatch.delenv("HAMVIZ_DATA")
    with pytest.raises(DataError, match="No data directory given.*HAMVIZ_DATA"):
        data_dir(None)


def test_missing_metadata(subset):
    (subset / "HAM10000_metadata.csv").unlink()
    with pytest.raises(DataError, match="No HAM10000 metadata in .*HAM10000_metadata.csv"):
        load_ham10000(subset)


def test_metadata_lacking_columns(subset):
    meta = pd.read_csv(subset / "HAM10000_metadata.csv").drop(columns=["dx"])
    meta.to_csv(subset / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match="lacks column.*dx"):
        load_ham10000(subset)


def test_unknown_labels(subset):
    meta = pd.read_csv(subset / "HAM10000_metadata.csv")
    meta.loc[0, "dx"] = "scc"
    meta.to_csv(subset / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"unknown dx label.*'scc': 1"):
        load_ham10000(subset)


def test_lesion_with_two_diagnoses(subset):
    meta = pd.read_csv(subset / "HAM10000_metadata.csv")
    meta.loc[1, "lesion_id"] = meta.loc[0, "lesion_id"]
    meta.loc[1, "dx"] = "nv" if meta.loc[0, "dx"] != "nv" else "mel"
    meta.to_csv(subset / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match="more than one dx"):
        load_ham10000(subset)


def test_ids_without_files_and_files_without_ids(subset):
    files = sorted((subset / "images").iterdir())
    files[0].unlink()
    shutil.copy(files[1], subset / "images" / "ISIC_9999999.jpg")
    with pytest.raises(DataError) as err:
        load_ham10000(subset)
    msg = str(err.value)
    assert "1 image id(s) in the metadata have no file" in msg and files[0].stem in msg
    assert "1 image file(s) have no metadata row (ISIC_9999999)" in msg
    assert "on_missing='skip'" in msg
    ds = load_ham10000(subset, on_missing="skip")
    assert len(ds) == 20
    assert ds.report["missing_files"] == [files[0].stem]
    assert ds.report["files_without_metadata"] == ["ISIC_9999999"]


def test_masks_required_but_absent(subset):
    shutil.rmtree(subset / "masks")
    assert not load_ham10000(subset).has_masks
    with pytest.raises(DataError, match="no mask folder"):
        load_ham10000(subset, masks=True)


def test_subset_keeps_order(ham):
    ids = ham.meta["image_id"].iloc[[5, 2, 9]].tolist()
    assert ham.subset(ids).meta["image_id"].tolist() == ids
