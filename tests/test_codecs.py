"""hamviz.codecs and hamviz.cache.jpeg_test_sets: JPEG and K-means compression, PSNR/SSIM, and the cached parallel JPEG
test sets.

All images are real HAM10000 images (read-only), resized small so the tests stay fast.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_subset
from PIL import Image

from hamviz import load_ham10000
from hamviz.cache import JpegSets, build_cache, jpeg_test_sets
from hamviz.codecs import (
    DEFAULT_QUALITIES,
    bits_per_pixel,
    jpeg_batch,
    jpeg_roundtrip,
    kmeans_batch,
    kmeans_quantise,
    psnr,
    ssim,
)

DATA = Path(os.environ.get("HAMVIZ_DATA") or Path(__file__).resolve().parents[1].parent / "shared/data/ham10000")
QUALITIES = (95, 50, 20, 10, 5, 3, 1)


def _load(image_ids, size):
    out = []
    for i in image_ids:
        with Image.open(DATA / "images" / f"{i}.jpg") as im:
            out.append(np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)))
    return np.stack(out)


@pytest.fixture(scope="module")
def real64(metadata):
    """One real image per class (7), 64x64."""
    return _load(metadata.groupby("dx").head(1)["image_id"], 64)


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory, metadata):
    """A real ImageCache: 14 images (2 per class), 32x32, in a temporary cache root."""
    root = tmp_path_factory.mktemp("compress")
    make_subset(root / "ham", metadata, n_per_class=2, masks=False)
    return build_cache(load_ham10000(root / "ham"), 32, cache_root=root / "cache")


def _colours(img):
    return len(np.unique(img.reshape(-1, 3), axis=0))


# ---------------------------------------------------------------------------------------------- JPEG
def test_bytes_and_bpp_decrease_with_quality(real64):
    nb = np.stack([jpeg_batch(real64, q)[1] for q in QUALITIES], axis=1)  # (images, qualities)
    totals = nb.sum(axis=0)
    assert (np.diff(totals) < 0).all(), dict(zip(QUALITIES, totals))
    # Per image: strictly smaller down to quality 3; at 1 and 3 libjpeg's tables are nearly all clamped
    # at 255, so an image may come out the same size (never larger).
    assert (np.diff(nb[:, :-1], axis=1) < 0).all()
    assert (nb[:, -1] <= nb[:, -2]).all()
    bpp = [bits_per_pixel(t / len(real64), real64.shape[1:]) for t in totals]
    assert (np.diff(bpp) < 0).all()
    assert bits_per_pixel(1024, (64, 64, 3)) == pytest.approx(2.0)
    assert bits_per_pixel(1024, (5, 64, 64, 3)) == pytest.approx(2.0)
    np.testing.assert_allclose(bits_per_pixel(nb[:, 0], real64.shape), 8 * nb[:, 0] / 4096)


def test_psnr_decreases_with_quality_and_is_finite(real64):
    means = []
    for q in QUALITIES:
        dec, _ = jpeg_batch(real64, q)
        assert dec.shape == real64.shape and dec.dtype == np.uint8
        values = [psnr(a, b) for a, b in zip(real64, dec)]
        assert all(math.isfinite(v) for v in values)
        means.append(np.mean(values))
    assert (np.diff(means) < 0).all(), dict(zip(QUALITIES, means))


def test_quality_100_is_nearly_lossless(real64):
    dec, _ = jpeg_batch(real64, 100)
    assert np.mean([psnr(a, b) for a, b in zip(real64, dec)]) > 40
    dec444, _ = jpeg_batch(real64, 100, subsampling=0)  # without chroma subsampling, every image
    assert min(psnr(a, b) for a, b in zip(real64, dec444)) > 40


@pytest.mark.parametrize("quality", [0, 101, -5, 50.0, True, "50"])
def test_quality_out_of_range_names_valid_range(real64, quality):
    with pytest.raises(ValueError, match=r"1\.\.100"):
        jpeg_roundtrip(real64[0], quality)
    with pytest.raises(ValueError, match=r"1\.\.100"):
        jpeg_batch(real64, quality)


def test_bad_subsampling_and_image(real64):
    with pytest.raises(ValueError, match="subsampling"):
        jpeg_roundtrip(real64[0], 50, subsampling=3)
    with pytest.raises(ValueError, match="uint8"):
        jpeg_roundtrip(real64[0].astype(np.float32), 50)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        jpeg_batch(real64[0], 50)


def test_jpeg_is_deterministic(real64):
    a, na = jpeg_roundtrip(real64[0], 30)
    b, nb = jpeg_roundtrip(real64[0].copy(), 30)
    assert na == nb and np.array_equal(a, b)
    serial, s_bytes = jpeg_batch(real64, 30, jobs=1)
    threaded, t_bytes = jpeg_batch(real64, 30, jobs=3)
    assert s_bytes.dtype == np.int64 and s_bytes.shape == (len(real64),)
    assert np.array_equal(s_bytes, t_bytes) and np.array_equal(serial, threaded)
    assert s_bytes[0] == na and np.array_equal(serial[0], a)


def test_no_chroma_subsampling_costs_more_bytes(real64):
    _, s0 = jpeg_batch(real64, 50, subsampling=0)
    _, s2 = jpeg_batch(real64, 50, subsampling=2)
    assert (s0 > s2).all()


# ------------------------------------------------------------------------------------------ K-means
def test_kmeans_k16_colours_and_bits(real64):
    img = real64[0]
    q, bits = kmeans_quantise(img, 16)
    assert q.shape == img.shape and q.dtype == np.uint8
    assert _colours(q) <= 16
    assert bits == 64 * 64 * 4 + 16 * 24
    q2, bits2 = kmeans_quantise(img, 16)  # seeded: the same result
    assert bits2 == bits and np.array_equal(q, q2)


def test_kmeans_psnr_increases_with_k(real64):
    means = [np.mean([psnr(im, kmeans_quantise(im, k)[0]) for im in real64[:4]]) for k in (2, 4, 16, 64)]
    assert (np.diff(means) > 0).all(), means


@pytest.mark.parametrize("k", [1, 0, 257, 300, 16.0])
def test_kmeans_bad_k(real64, k):
    with pytest.raises(ValueError, match=r"2\.\.256"):
        kmeans_quantise(real64[0], k)
    with pytest.raises(ValueError, match=r"2\.\.256"):
        kmeans_batch(real64[:2], k)


def test_kmeans_fewer_colours_than_k(real64):
    palette = np.array([[200, 120, 100], [90, 40, 30], [250, 250, 250]], dtype=np.uint8)
    grey = real64[0].mean(axis=2)
    labels = np.digitize(grey, np.quantile(grey, [1 / 3, 2 / 3]))  # a 3-colour version of a real image
    img = palette[labels]
    assert _colours(img) == 3
    q, bits = kmeans_quantise(img, 16)
    assert np.array_equal(q, img)  # lossless: the palette already fits
    assert bits == 64 * 64 * 2 + 3 * 24  # reported for the effective k = 3


def test_kmeans_sampling_and_batch(real64):
    q, bits = kmeans_quantise(real64[1], 8, sample=500)  # fitted on 500 of 4096 pixels
    assert _colours(q) <= 8 and bits == 64 * 64 * 3 + 8 * 24
    batch, nbits = kmeans_batch(real64[:3], 8, jobs=2)
    assert nbits.tolist() == [64 * 64 * 3 + 8 * 24] * 3
    for i in range(3):
        assert np.array_equal(batch[i], kmeans_quantise(real64[i], 8)[0])


# ------------------------------------------------------------------------------------------ metrics
def test_psnr_ssim_identical_and_small(real64):
    img = real64[2]
    assert psnr(img, img.copy()) == float("inf")
    assert ssim(img, img.copy()) == 1.0
    dec, _ = jpeg_roundtrip(img, 10)
    assert 0 < ssim(img, dec) < 1 and 0 < psnr(img, dec) < 60
    tiny = img[:5, :6]  # smaller than the 7x7 window
    assert 0 < ssim(tiny, jpeg_roundtrip(tiny, 10)[0]) <= 1
    with pytest.raises(ValueError, match="shape"):
        psnr(img, img[:10])
    with pytest.raises(ValueError, match="3x3"):
        ssim(img[:2, :2], img[:2, :2])


# --------------------------------------------------------------------------------- JPEG test sets
def test_jpeg_test_sets_built_then_loaded(small_cache, tmp_path):
    rows = np.arange(1, len(small_cache), 2)  # every other image, kept in this order
    sets = jpeg_test_sets(small_cache, rows, cache_root=tmp_path)
    assert isinstance(sets, JpegSets) and sets.built
    assert sets.path.parent == tmp_path / "jpeg" and sets.path.name.startswith(small_cache.path.name)
    assert sets.qualities == DEFAULT_QUALITIES == QUALITIES
    assert sets.image_ids == [small_cache.image_ids[r] for r in rows]
    originals = np.asarray(small_cache.images[rows])
    for q in QUALITIES:
        assert sets.images[q].shape == originals.shape and sets.images[q].dtype == np.uint8
        dec, nb = jpeg_batch(originals, q)
        assert np.array_equal(sets.images[q], dec) and np.array_equal(sets.n_bytes[q], nb)
        assert sets.bpp[q] == pytest.approx(float(np.mean(8 * nb / (32 * 32))))
    assert (np.diff([sets.bpp[q] for q in QUALITIES]) < 0).all()
    index = json.loads((sets.path / "index.json").read_text())
    assert sorted(index["sha"]) == sorted(map(str, QUALITIES))
    assert not [p for p in (tmp_path / "jpeg").iterdir() if ".tmp-" in p.name]

    again = jpeg_test_sets(small_cache, rows, cache_root=tmp_path)
    assert not again.built and again.path == sets.path
    assert isinstance(again.images[50], np.memmap)
    for q in QUALITIES:
        assert np.array_equal(again.images[q], sets.images[q])
        assert np.array_equal(again.n_bytes[q], sets.n_bytes[q])
    # Other rows, or other qualities or subsampling, are other entries.
    other = jpeg_test_sets(small_cache, rows[::-1], qualities=(50, 10), subsampling=0, cache_root=tmp_path)
    assert other.built and other.path != sets.path and other.qualities == (50, 10)


def test_jpeg_test_sets_rebuild_damaged_entry(small_cache, tmp_path):
    rows = np.arange(len(small_cache))
    sets = jpeg_test_sets(small_cache, rows, qualities=(50, 10), cache_root=tmp_path)
    good = {q: np.array(sets.images[q]) for q in (50, 10)}
    del sets.images[10]
    q10 = sets.path / "q10.npy"
    q10.write_bytes(q10.read_bytes()[:-100])  # truncated
    rebuilt = jpeg_test_sets(small_cache, rows, qualities=(50, 10), cache_root=tmp_path)
    assert rebuilt.built and np.array_equal(rebuilt.images[10], good[10])

    raw = bytearray(q10.read_bytes())  # same size, one pixel altered: caught by the checksum
    raw[-1] ^= 0xFF
    del rebuilt
    q10.write_bytes(bytes(raw))
    assert not jpeg_test_sets(small_cache, rows, qualities=(50, 10), cache_root=tmp_path,
                              verify=False).built
    fixed = jpeg_test_sets(small_cache, rows, qualities=(50, 10), cache_root=tmp_path)
    assert fixed.built and np.array_equal(fixed.images[10], good[10])


def test_jpeg_test_sets_bad_qualities_before_any_work(small_cache, tmp_path):
    with pytest.raises(ValueError, match=r"1\.\.100.*0, 101") as err:
        jpeg_test_sets(small_cache, [0, 1], qualities=(95, 0, 50, 101), cache_root=tmp_path)
    assert "95" not in str(err.value).split("invalid:")[1]
    with pytest.raises(ValueError, match="subsampling"):
        jpeg_test_sets(small_cache, [0, 1], subsampling=4, cache_root=tmp_path)
    with pytest.raises(IndexError, match="out of range"):
        jpeg_test_sets(small_cache, [0, len(small_cache)], cache_root=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        jpeg_test_sets(small_cache, [], cache_root=tmp_path)
    assert list(tmp_path.iterdir()) == []
