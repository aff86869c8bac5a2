"""Bad input from real users' reports (issue 41, round 3), data side: each fault fixed for its whole kind.

* An external test set that holds HAM10000's own images (ISIC 2018 Task 3's and ISIC 2019's training data do, under
  the same ids): found by image id and by the content of the decoded image (renamed and re-encoded copies), left out
  and counted (or the run stops, ``external_overlap: error``) before anything is scored; the record says how many
  external images were independent.
* Lesion masks whose geometry differs from their image's (larger by a few pixels, transposed, cropped to the
  lesion): an error naming the files and their sizes, from ``hamviz validate`` and before any decoding, or treated
  as missing with ``on_mask_mismatch: skip``; a mask at an exact integer multiple of its image's size is resized.
* A lesion-grouped split that depends on the scikit-learn version (StratifiedGroupKFold(shuffle=True) before 1.8,
  scikit-learn issue #32478): the version is required and checked at run time, and every split's class balance
  per part is recorded and checked against a tolerance, naming the class and the part.
* Very large images (above Pillow's decompression-bomb limit): read as the trusted local data they are, JPEGs
  decoded at reduced size, with no DecompressionBombError and no DecompressionBombWarning, wherever hamviz opens an
  image.
"""
from __future__ import annotations

import shutil
import tomllib
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, REPO, make_subset, write_isic2018
from PIL import Image

from hamviz import DataError, load_ham10000
from hamviz.cache import build_cache, decode, decode_mask
from hamviz.registry import CLASSES, SPLITS


# ------------------------------------------------------------------------------------------------ helpers
def _ham(tmp_path: Path, metadata: pd.DataFrame, n_per_class: int = 3, masks: bool = True) -> Path:
    make_subset(tmp_path / "ham", metadata, n_per_class=n_per_class, masks=masks)
    return tmp_path / "ham"


def _mask_file(root: Path, image_id: str) -> Path:
    return root / "masks" / f"{image_id}_segmentation.png"


def _fake_trained(size: int = 32):
    return SimpleNamespace(model=None, config=SimpleNamespace(image_size=size, tta_flips=False))


def _uniform_predict(monkeypatch):
    """hamviz.training.predict replaced by uniform probabilities (no model, no TensorFlow): what is scored is
    what these tests check, not how well."""
    import hamviz.training
    seen = []

    def predict(model, images, batch_size=256, flips=False):
        seen.append(len(images))
        return np.full((len(images), len(CLASSES)), 1 / len(CLASSES))
    monkeypatch.setattr(hamviz.training, "predict", predict)
    return seen


# ------------------------------------------------------------------- 2. external test set holding HAM10000 images
def _external_mix(tmp_path: Path, metadata: pd.DataFrame, ham_rows: pd.DataFrame) -> dict:
    """An ISIC 2018 Task 3 folder mixing 6 independent images (HAM10000 images not in the data in use) with 3 images
    of the data in use under their own ids, 2 byte-identical copies under new names and 1 lossless PNG re-encoding
    under a new name (the same decoded pixels)."""
    outside = metadata[~metadata["image_id"].isin(ham_rows["image_id"])].groupby("dx").head(1).head(6)
    inside = ham_rows.iloc[[0, 4, 8]]
    rows = pd.concat([outside[["image_id", "dx"]], inside[["image_id", "dx"]]], ignore_index=True)
    dest = tmp_path / "isic"
    write_isic2018(dest, DATA / "images", rows)
    folder = dest / "ISIC2018_Task3_Test_Input"
    renamed = []
    for k, src in enumerate(ham_rows.iloc[[1, 5]]["image_id"]):
        shutil.copy(DATA / "images" / f"{src}.jpg", folder / f"EXT_{k:04d}.jpg")
        renamed.append((f"EXT_{k:04d}", ham_rows.set_index("image_id").loc[src, "dx"], src))
    src = ham_rows.iloc[9]["image_id"]
    with Image.open(DATA / "images" / f"{src}.jpg") as im:
        im.convert("RGB").save(folder / "EXT_PNG.png")
    renamed.append(("EXT_PNG", ham_rows.iloc[9]["dx"], src))
    gt = pd.read_csv(dest / "ISIC2018_Task3_Test_GroundTruth.csv")
    extra = pd.DataFrame({"image": [r[0] for r in renamed]})
    for c in ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"):
        extra[c] = [float(r[1].upper() == c) for r in renamed]
    pd.concat([gt, extra]).to_csv(dest / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    return {"root": dest, "independent": set(outside["image_id"]), "same_id": set(inside["image_id"]),
            "renamed": {r[0]: r[2] for r in renamed}}


def _classifier_params(ham_dir: Path, isic: Path, **over) -> dict:
    return {"external_test": str(isic), "resize": "stretch", "on_corrupt": "error", "on_missing": "error",
            "seed": 0, "data_dir": str(ham_dir), **over}


def test_external_images_from_the_data_in_use_are_left_out_and_counted(tmp_path, metadata, monkeypatch, capsys):
    """The fault: an external folder mixing in HAM10000's own images (same ids, renamed copies, a re-encoded copy)
    was scored as external without a word. Every one of them is found before scoring (by id and by the content of
    the decoded image), left out and counted; only the independent images are scored, and the record says so."""
    from hamviz.chapters.classifier import external
    ham_rows = make_subset(tmp_path / "ham", metadata, n_per_class=2, masks=False)
    mix = _external_mix(tmp_path, metadata, ham_rows)
    seen = _uniform_predict(monkeypatch)
    ev, ds = external(_classifier_params(tmp_path / "ham", mix["root"]), _fake_trained(), n_boot=20)
    assert set(ds.meta["image_id"]) == mix["independent"]
    assert ev["headline"]["n"] == 6 and seen == [6]
    overlap = ev["external_overlap"]
    assert overlap["images"] == 12 and overlap["independent"] == 6 and overlap["left_out"] == 6
    assert set(overlap["by_image_id"]) == mix["same_id"]
    assert overlap["by_content"] == mix["renamed"]  # external id -> the HAM10000 image it copies
    assert overlap["on_overlap"] == "drop"
    out = capsys.readouterr().out
    assert "6 of the 12 external images" in out and "external_overlap" in out


def test_external_overlap_can_stop_the_run_and_nothing_independent_is_an_error(tmp_path, metadata, monkeypatch):
    """external_overlap: error stops before anything is scored, naming the counts, examples and the setting; a set
    with no independent image at all is an error with the default too (there is nothing external to score)."""
    from hamviz.chapters.classifier import external
    ham_rows = make_subset(tmp_path / "ham", metadata, n_per_class=2, masks=False)
    mix = _external_mix(tmp_path, metadata, ham_rows)
    seen = _uniform_predict(monkeypatch)
    with pytest.raises(DataError, match=r"6 of the 12 external images.*external_overlap") as err:
        external(_classifier_params(tmp_path / "ham", mix["root"], external_overlap="error"), _fake_trained())
    assert "EXT_0000" in str(err.value) and seen == []
    only_ham = tmp_path / "only_ham"
    write_isic2018(only_ham, DATA / "images", ham_rows.head(5))
    with pytest.raises(DataError, match=r"all 5 external images .*HAM10000 data in use"):
        external(_classifier_params(tmp_path / "ham", only_ham), _fake_trained())
    assert seen == []


def test_external_overlap_keep_scores_them_and_says_none_is_independent(tmp_path, metadata, monkeypatch, capsys):
    """external_overlap: keep (a smoke test on HAM10000's own images, as the tests' tiny book does) scores every
    image, and the record and the page say how many were independent: none."""
    from hamviz.chapters.classifier import external
    ham_rows = make_subset(tmp_path / "ham", metadata, n_per_class=2, masks=False)
    only_ham = tmp_path / "only_ham"
    write_isic2018(only_ham, DATA / "images", ham_rows.head(5))
    _uniform_predict(monkeypatch)
    ev, ds = external(_classifier_params(tmp_path / "ham", only_ham, external_overlap="keep"), _fake_trained())
    assert len(ds) == 5 and ev["headline"]["n"] == 5
    assert ev["external_overlap"]["independent"] == 0 and ev["external_overlap"]["left_out"] == 0
    assert "not an external test" in capsys.readouterr().out


def test_external_overlap_setting_is_in_the_profile_and_validate_stops_on_it(tmp_path, metadata):
    """The setting is a profile key (classifier.external_overlap); with error, `hamviz validate` (the book's first
    step) stops on an overlapping external set before any chapter runs."""
    from hamviz.book import prepare
    from hamviz.params import ParamsError, chapter_params, load_profile
    assert chapter_params(load_profile("tiny"), "classifier")["external_overlap"] == "drop"
    with pytest.raises(ParamsError):
        load_profile("tiny", {"chapters": {"classifier": {"external_overlap": "sometimes"}}})
    ham_rows = make_subset(tmp_path / "ham", metadata, n_per_class=6, masks=False)
    mix = _external_mix(tmp_path, metadata, ham_rows)
    profile = tmp_path / "p.yaml"
    profile.write_text(f"extends: tiny\nsplit: {{fractions: [0.5, 0.25, 0.25]}}\nchapters:\n  classifier:\n"
                       f"    external_test: {mix['root']}\n    external_overlap: error\n")
    with pytest.raises(DataError, match=r"6 of the 12 external images"):
        prepare(profile, tmp_path / "book", data_dir=tmp_path / "ham", only=["classifier"])


# ---------------------------------------------------------------------------- 3. masks of another geometry
def _bad_masks() -> dict:
    """How a mask of another geometry arises, for a 200x150 image: two pixels larger, transposed, cropped to the
    lesion's bounding box."""
    def larger(m):
        return m.resize((m.width + 2, m.height + 2), Image.Resampling.NEAREST)

    def transposed(m):
        return m.transpose(Image.Transpose.TRANSPOSE)

    def cropped(m):
        return m.crop(m.getbbox())
    return {"larger": larger, "transposed": transposed, "cropped": cropped}


@pytest.mark.parametrize("kind", ["larger", "transposed", "cropped"])
def test_a_mask_of_another_geometry_is_an_error_naming_files_and_sizes(tmp_path, metadata, kind):
    """The fault: such a mask passed `hamviz validate` and was resized onto its image, so the contrast analysis
    measured the wrong pixels. Loading the data (what validate does) now names the mask, its size, its image and
    its size, before any decoding."""
    root = _ham(tmp_path, metadata)
    image_id = sorted(p.stem for p in (root / "images").iterdir())[3]
    path = _mask_file(root, image_id)
    with Image.open(path) as m:
        bad = _bad_masks()[kind](m.copy())
    bad.save(path)
    with pytest.raises(DataError) as err:
        load_ham10000(root)
    msg = str(err.value)
    assert path.name in msg and f"{image_id}.jpg" in msg
    assert f"{bad.width}x{bad.height}" in msg and "200x150" in msg
    assert "on_mask_mismatch: skip" in msg
    ok = load_ham10000(root, masks=False)  # masks not used: their geometry does not matter
    assert len(ok) == 21


def test_a_mask_at_an_integer_multiple_of_its_image_is_resized(tmp_path, metadata):
    """A mask at exactly twice its image's size (the same aspect) outlines the same pixels: it is accepted and
    resized, giving the same cached mask as the one at the image's size."""
    root = _ham(tmp_path, metadata)
    image_id = sorted(p.stem for p in (root / "images").iterdir())[3]
    path = _mask_file(root, image_id)
    original = decode_mask(path, (32, 32))
    with Image.open(path) as m:
        m.resize((400, 300), Image.Resampling.NEAREST).save(path)
    ds = load_ham10000(root, masks=True)
    assert ds.has_masks
    assert np.array_equal(decode_mask(path, (32, 32)), original)
    cache = build_cache(ds, 32, cache_root=tmp_path / "cache")
    assert np.array_equal(cache.masks[cache.rows([image_id])[0]], original)


def test_on_mask_mismatch_skip_treats_such_masks_as_missing_and_counts_them(tmp_path, metadata):
    """on_mask_mismatch: skip: a mask of another geometry counts as missing (masks: auto then runs without masks,
    as with any missing mask; masks: true is then an error saying why) and the report counts and names them."""
    root = _ham(tmp_path, metadata)
    ids = sorted(p.stem for p in (root / "images").iterdir())
    for image_id in ids[:2]:
        path = _mask_file(root, image_id)
        with Image.open(path) as m:
            _bad_masks()["transposed"](m.copy()).save(path)
    ds = load_ham10000(root, on_mask_mismatch="skip")
    assert not ds.has_masks and ds.report["images_without_mask"] == 2
    assert set(ds.report["mask_mismatch"]) == set(ids[:2])
    assert "150x200" in ds.report["mask_mismatch"][ids[0]] and "200x150" in ds.report["mask_mismatch"][ids[0]]
    with pytest.raises(DataError, match=r"2 image\(s\).*geometry"):
        load_ham10000(root, masks=True, on_mask_mismatch="skip")
    with pytest.raises(ValueError, match="on_mask_mismatch"):
        load_ham10000(root, on_mask_mismatch="resize")


def test_validate_stops_on_a_mask_of_another_geometry_and_the_profile_can_skip_it(tmp_path, metadata, capsys,
                                                                                   monkeypatch):
    """`hamviz validate` on data with a transposed mask: exit status 2 and the error names the mask; with the
    profile's on_mask_mismatch: skip it passes and says how many masks were treated as missing."""
    from hamviz.cli import main
    monkeypatch.chdir(tmp_path)  # validate checks that its default output folder, ./book, is writable
    root = _ham(tmp_path, metadata, n_per_class=6)
    profile = tmp_path / "p.yaml"
    profile.write_text("extends: tiny\nsplit: {fractions: [0.5, 0.25, 0.25]}\n")
    assert main(["validate", "--profile", str(profile), "--data", str(root)]) == 0  # the clean copy is valid
    image_id = sorted(p.stem for p in (root / "images").iterdir())[0]
    path = _mask_file(root, image_id)
    with Image.open(path) as m:
        _bad_masks()["transposed"](m.copy()).save(path)
    capsys.readouterr()
    assert main(["validate", "--profile", str(profile), "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert path.name in err and "150x200" in err
    profile.write_text("extends: tiny\nsplit: {fractions: [0.5, 0.25, 0.25]}\non_mask_mismatch: skip\n")
    assert main(["validate", "--profile", str(profile), "--data", str(root)]) == 0
    assert "1 lesion mask(s)" in capsys.readouterr().out


def test_the_cache_refuses_a_mask_of_another_geometry_it_is_handed(tmp_path, metadata):
    """A Dataset built by hand (not through load_ham10000) whose mask has another geometry: decoding it into the
    cache is an error naming it, not a silent resize."""
    root = _ham(tmp_path, metadata)
    ds = load_ham10000(root)
    path = Path(ds.meta["mask_path"].iloc[2])
    with Image.open(path) as m:
        _bad_masks()["cropped"](m.copy()).save(path)
    with pytest.raises(DataError, match=path.name):
        build_cache(ds, 16, cache_root=tmp_path / "cache")


# ------------------------------------------------------------------- 5. the split and the scikit-learn version
def test_scikit_learn_without_the_grouped_split_defect_is_required():
    """pyproject requires scikit-learn >= 1.8 (StratifiedGroupKFold(shuffle=True) stratifies again: issue
    #32478, fixed by PR #32540), and the installed one satisfies it."""
    import sklearn
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (sk,) = [d for d in deps if d.startswith("scikit-learn")]
    assert sk.replace(" ", "").startswith("scikit-learn>=1.8")
    assert tuple(int(v) for v in sklearn.__version__.split(".")[:2]) >= (1, 8)


def test_an_old_scikit_learn_is_named_at_run_time(metadata, monkeypatch):
    """With a scikit-learn that has the defect, making a lesion-grouped split warns, naming the version, the
    scikit-learn issue and the fix."""
    import sklearn

    from hamviz.splits import make_split
    monkeypatch.setattr(sklearn, "__version__", "1.7.2")
    meta = metadata.groupby("dx").head(40)
    with pytest.warns(RuntimeWarning, match=r"scikit-learn 1\.7\.2.*32478.*>= ?1\.8"):
        make_split(meta, seed=0)


def test_the_real_split_records_its_class_balance_and_passes_the_check(ham):
    """The profile's split of the real metadata: its class balance per part is recorded with it (each class's share
    of each part, the largest deviation from the requested fractions) and within the tolerance."""
    from hamviz.splits import check_split_balance, get_split, split_balance
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no balance warning
        split = get_split(ham, (0.7, 0.2, 0.1), seed=42)
    balance = split.attrs["balance"]
    assert balance == split_balance(ham.meta, split, (0.7, 0.2, 0.1))
    assert set(balance["shares"]) == set(CLASSES) and set(balance["shares"]["nv"]) == set(SPLITS)
    assert abs(balance["shares"]["nv"]["train"] - 0.7) < 0.01
    assert balance["max_deviation_points"] <= balance["tolerance_points"] and balance["problems"] == []
    assert balance["scikit_learn"]
    check_split_balance(ham.meta, split, (0.7, 0.2, 0.1))  # no exception


def test_a_badly_stratified_split_is_caught_naming_class_and_part(ham):
    """A lesion-grouped assignment that keeps whole lesions together but puts most melanoma lesions in training
    (what the defect's random group assignment does to a class): the check names the class, the part, its share and
    the requested fraction; make_split warns the same way when its own split is off."""
    from hamviz.splits import SplitBalanceError, check_split_balance, get_split
    split = get_split(ham, (0.7, 0.2, 0.1), seed=42)
    meta = ham.meta.set_index("image_id")
    mel_lesions = sorted(set(meta["lesion_id"][meta["dx"] == "mel"]))
    moved = set(mel_lesions[: int(0.9 * len(mel_lesions))])
    bad = split.copy()
    bad[meta["lesion_id"].reindex(bad.index).isin(moved).to_numpy()] = "train"
    with pytest.raises(SplitBalanceError, match=r"mel.*(val|test) part.*requested") as err:
        check_split_balance(ham.meta, bad, (0.7, 0.2, 0.1))
    assert "nv" not in str(err.value).split("Fix")[0]


# ------------------------------------------------------------------------------------------ 9. very large images
def _large_jpeg(path: Path, size=(1600, 1200), colour=(200, 120, 40)) -> Path:
    Image.new("RGB", size, colour).save(path, quality=95)
    return path


@pytest.mark.parametrize("limit", [400_000, 1_200_000])  # above twice the limit (the error), above it (the warning)
def test_a_large_jpeg_decodes_at_reduced_size_without_error_or_warning(tmp_path, monkeypatch, limit):
    """The fault: an image above Pillow's decompression-bomb limit stopped the cache with a raw
    DecompressionBombError (above twice the limit) or printed Pillow's warning (above it). A local image hamviz is
    pointed at is trusted data: it decodes, at reduced size for a JPEG, to the right size and colour in every resize
    mode. (Pillow's limit is lowered here so that a 1600x1200 image stands in for a 16000x12000 one.)"""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    path = _large_jpeg(tmp_path / "big.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("stretch", "crop", "pad"):
            arr = decode(path, (48, 64), mode)
            assert arr.shape == (48, 64, 3)
            centre = arr[20:28, 28:36].reshape(-1, 3).astype(int)
            assert np.abs(centre - (200, 120, 40)).max() <= 4
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's own setting is left as it was


def test_large_images_pass_every_place_hamviz_opens_an_image(tmp_path, metadata, monkeypatch):
    """`hamviz cache` over data holding a large JPEG and a large PNG mask, and the EDA gallery that reads each
    image's size: no DecompressionBombError, no warning, the right sizes."""
    from hamviz.chapters.eda import gallery_images
    root = _ham(tmp_path, metadata, n_per_class=2)
    image_id = sorted(p.stem for p in (root / "images").iterdir())[0]
    with Image.open(_mask_file(root, image_id)) as m:
        m.resize((1600, 1200), Image.Resampling.NEAREST).save(_mask_file(root, image_id))
    _large_jpeg(root / "images" / f"{image_id}.jpg", size=(1600, 1200))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_ham10000(root, masks=True)
        cache = build_cache(ds, 32, cache_root=tmp_path / "cache")
        assert cache.images.shape == (14, 32, 32, 3) and cache.masks.shape == (14, 32, 32)
        gallery = gallery_images(ds.meta, {"x": [image_id]}, width=40)
        from hamviz.data import check_intact, image_size
        assert image_size(root / "images" / f"{image_id}.jpg") == (1600, 1200)
        check_intact(_mask_file(root, image_id).read_bytes())
    assert gallery["x"][0].shape == (30, 40, 3)
