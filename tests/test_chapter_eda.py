"""hamviz.chapters.eda and hamviz.contrast: statistics checked on synthetic images with known answers and on the
real data."""
import numpy as np
import pandas as pd

from hamviz import contrast
from hamviz.chapters import eda


def disc_image(lesion_rgb, skin_rgb, size=32, radius=8):
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius ** 2
    img = np.empty((size, size, 3), np.uint8)
    img[:] = skin_rgb
    img[mask] = lesion_rgb
    return img, mask


def test_lesion_contrast_known_answers():
    dark, m = disc_image((60, 30, 20), (230, 190, 170))
    faint, _ = disc_image((220, 185, 168), (230, 190, 170))
    images = np.stack([dark, faint, dark])
    masks = np.stack([m, m, np.zeros_like(m)])
    out = contrast.lesion_contrast(images, masks, labels=[4, 3, 5], ring=0.1)
    assert out["dx"].tolist() == ["mel", "df", "nv"]
    assert out.loc[0, "dE2000"] > 30 and out.loc[1, "dE2000"] < 5  # dark lesion >> faint lesion
    assert out.loc[0, "dL"] > 0  # lesion darker than skin
    assert np.isnan(out.loc[2, "dE2000"])  # empty mask: no contrast
    np.testing.assert_allclose(out.loc[0, "area"], m.mean())


def test_ring_is_outside_lesion():
    _, m = disc_image((0, 0, 0), (255, 255, 255))
    r = contrast.ring_mask(m, 2)
    assert r.any() and not (r & m).any()
    # its width: the fraction of the longer edge, at least a pixel (6 px at 64x64 for the profiles' 0.1)
    assert [contrast.ring_width(0.1, (64, 64)), contrast.ring_width(0.1, (150, 200)),
            contrast.ring_width(0.001, (32, 32))] \
        == [6, 20, 1]


def test_counts_and_repeats_on_real_data(ham):
    counts = eda.class_counts(ham.meta)
    assert counts["images"].sum() == 10015 and counts["lesions"].sum() == 7470
    assert counts.loc["nv", "majority_ratio"] == 1.0
    per = eda.images_per_lesion(ham.meta)
    assert per.to_numpy().sum() == 7470
    sites = eda.by_class(ham.meta, "localization", top=5)
    np.testing.assert_allclose(sites.sum(axis=0), 1.0)
    assert len(sites) == 6  # top 5 + other


def test_sample_ids_one_per_lesion(ham):
    s = eda.sample_ids(ham.meta, 4, seed=1)
    assert set(s) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    meta = ham.meta.set_index("image_id")
    for c, ids in s.items():
        assert len(ids) == 4 and (meta.loc[ids, "dx"] == c).all()
        assert meta.loc[ids, "lesion_id"].nunique() == 4
    assert s == eda.sample_ids(ham.meta, 4, seed=1)


def test_colour_stats_shape():
    img = np.full((2, 8, 8, 3), 128, np.uint8)
    cs = eda.colour_stats(img, [0, 1])
    assert isinstance(cs, pd.DataFrame) and len(cs) == 2
    assert abs(cs.loc[0, "a*"]) < 1 and 50 < cs.loc[0, "L*"] < 60  # mid grey


def test_eda_without_optional_columns_skips_only_demographics(tmp_path, metadata):
    """Metadata with only lesion_id, image_id, dx: the book says what the EDA chapter will skip, and the chapter
    runs, records everything else and says which plots it left out."""
    import json

    from conftest import make_subset

    from hamviz.book import build
    rows = make_subset(tmp_path / "d", metadata, n_per_class=6)
    rows[["lesion_id", "image_id", "dx"]].to_csv(tmp_path / "d" / "HAM10000_metadata.csv", index=False)
    profile = tmp_path / "small.yaml"  # 6 images per class are 3-6 lesions: 4 folds, not 10
    profile.write_text("extends: tiny\nprofile: tiny\nsplit: {fractions: [0.5, 0.25, 0.25], grouped: true}\n")
    summary = build(profile, tmp_path / "book", data_dir=tmp_path / "d", only=["eda"], log=lambda *_: None)
    assert [c["status"] for c in summary["chapters"]] == ["ok"]
    rec = json.loads((tmp_path / "book" / "chapters" / "01_eda" / "01_eda.json").read_text())
    assert rec["values"]["images"] == 42 and "histo_share" not in rec["values"]
    page = (tmp_path / "book" / "chapters" / "01_eda" / "01_eda.ipynb").read_text()
    assert "no age, sex, localization, dx_type column(s)" in page
