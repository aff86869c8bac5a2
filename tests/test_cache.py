"""hamviz.cache: decode once, read later, detect damage, name corrupt files."""
import numpy as np
import pytest
from PIL import Image

from hamviz import DataError, load_ham10000
from hamviz.cache import build_cache, decode, resize_image


def test_build_then_read(subset, tmp_path):
    ds = load_ham10000(subset)
    first = build_cache(ds, 32, cache_root=tmp_path / "c")
    assert first.built and first.images.shape == (21, 32, 32, 3) and first.images.dtype == np.uint8
    assert first.masks.shape == (21, 32, 32) and first.masks.dtype == bool
    assert 0 < first.masks.mean() < 1
    again = build_cache(ds, 32, cache_root=tmp_path / "c")
    assert not again.built
    np.testing.assert_array_equal(first.images, again.images)
    # row i is image i: compare with a direct decode
    i = 7
    np.testing.assert_array_equal(again.images[again.rows([ds.meta.image_id[i]])[0]],
                                  decode(ds.meta.path[i], 32))
    # another size is another entry
    assert build_cache(ds, (24, 40), cache_root=tmp_path / "c").images.shape == (21, 24, 40, 3)


def test_truncated_cache_file_is_rebuilt(subset, tmp_path):
    ds = load_ham10000(subset)
    entry = build_cache(ds, 32, cache_root=tmp_path / "c")
    f = entry.path / "images.npy"
    data = f.read_bytes()
    del entry
    f.write_bytes(data[: len(data) // 2])
    rebuilt = build_cache(ds, 32, cache_root=tmp_path / "c")
    assert rebuilt.built and rebuilt.images.shape == (21, 32, 32, 3)


def test_flipped_bytes_detected_by_checksum(subset, tmp_path):
    ds = load_ham10000(subset)
    entry = build_cache(ds, 32, cache_root=tmp_path / "c")
    f = entry.path / "images.npy"
    data = bytearray(f.read_bytes())
    del entry
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    assert build_cache(ds, 32, cache_root=tmp_path / "c").built


def test_corrupt_jpeg_named_or_skipped(subset, tmp_path):
    """A file damaged after the data were loaded and checked (load_ham10000 catches a truncated file itself):
    decoding names it too."""
    ds = load_ham10000(subset)
    victim = sorted((subset / "images").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:600])  # truncated JPEG
    with pytest.raises(DataError, match=f"{victim.name}.*corrupt or truncated.*on_corrupt: skip"):
        build_cache(ds, 32, cache_root=tmp_path / "c")
    entry = build_cache(ds, 32, cache_root=tmp_path / "c", on_corrupt="skip")
    assert len(entry) == 20 and list(entry.skipped) == [victim.stem]
    with pytest.raises(KeyError, match=victim.stem):
        entry.rows([victim.stem])


def test_resize_modes():
    img = Image.fromarray(np.arange(150 * 200 * 3, dtype=np.uint32).reshape(150, 200, 3).astype(np.uint8))
    for mode in ("stretch", "crop", "pad"):
        assert resize_image(img, 64, mode).size == (64, 64)
    padded = np.asarray(resize_image(Image.new("RGB", (200, 100), "white"), 64, "pad"))
    assert padded[0].max() == 0 and padded[32].min() == 255  # black bars top, image in the middle
    with pytest.raises(ValueError, match="resize mode"):
        resize_image(img, 64, "squash")


@pytest.mark.parametrize("damage", ["zeroed-middle", "truncated"])
def test_damaged_jpeg_is_caught_whatever_pillow_is_told(subset, tmp_path, monkeypatch, damage):
    """256 zero bytes in the middle of the entropy-coded data decode, in Pillow, to grey or smeared rows without a
    word; a truncated file is padded when another library has set ImageFile.LOAD_TRUNCATED_IMAGES. Decoding is
    strict regardless: the file is named, or skipped and reported with on_corrupt: skip."""
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    ds = load_ham10000(subset)  # (a truncated file is already refused here: see test_reliability.py)
    victim = sorted((subset / "images").iterdir())[5]
    data = bytearray(victim.read_bytes())
    if damage == "zeroed-middle":
        mid = len(data) // 2
        data[mid:mid + 256] = bytes(256)
    else:
        data = data[: len(data) * 2 // 3]
    victim.write_bytes(bytes(data))
    with Image.open(victim) as im:
        im.load()  # Pillow alone: no complaint
    for mode in ("stretch", "crop", "pad"):
        with pytest.raises(DataError, match=f"{victim.name}.*corrupt or truncated"):
            build_cache(ds, 32, mode=mode, cache_root=tmp_path / "c")
    entry = build_cache(ds, 32, cache_root=tmp_path / "c", on_corrupt="skip")
    assert len(entry) == 20 and list(entry.skipped) == [victim.stem]


def _rewrite_masks(folder, encode):
    for f in sorted(folder.iterdir()):
        with Image.open(f) as im:
            m = np.asarray(im.convert("L")) > 127
        encode(m).save(f)


def _palette(m):
    im = Image.fromarray(m.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    return im


@pytest.mark.parametrize("encode", [
    lambda m: Image.fromarray(m.astype(np.uint8)),                        # 8-bit label map {0, 1}
    lambda m: Image.fromarray(m.astype(np.uint16) * 65535),               # 16-bit {0, 65535}
    _palette,                                                             # palette, index 1 = dark red
    lambda m: Image.fromarray(np.stack([m.astype(np.uint8) * 255] * 3, -1)),  # RGB white on black
    lambda m: Image.fromarray(m).convert("1"),                            # 1-bit
], ids=["label-map-0-1", "16-bit", "palette", "rgb", "1-bit"])
def test_every_mask_encoding_gives_the_same_masks(subset, tmp_path, encode):
    """A mask saved with values {0, 1} used to read as empty (lesion area 0, contrast NaN for every image, no
    warning). Whatever the bit depth, mode or palette, the cached masks equal the 0/255 originals'; and the mask
    files are in the cache key, so rewriting them rebuilds the entry."""
    ds = load_ham10000(subset)
    reference = build_cache(ds, 32, cache_root=tmp_path / "c")
    _rewrite_masks(subset / "masks", encode)
    again = build_cache(load_ham10000(subset), 32, cache_root=tmp_path / "c")
    assert again.path != reference.path  # new mask files: a new entry, not the old masks
    np.testing.assert_array_equal(again.masks, reference.masks)
    assert 0.05 < again.masks.mean() < 0.95


def test_masks_in_the_key_and_all_empty_masks_refused(subset, tmp_path):
    """Every input of a cache entry is in its key: the mask files (here: every mask shrunk to its upper half),
    the size and the resize mode each give a rebuild. A data set whose masks are all empty is an error naming a
    file and its values, not a column of NaN."""
    ds = load_ham10000(subset)
    first = build_cache(ds, 32, cache_root=tmp_path / "c")
    for changed in (dict(size=24), dict(mode="crop"), dict(mode="pad")):
        other = build_cache(ds, changed.get("size", 32), mode=changed.get("mode", "stretch"),
                            cache_root=tmp_path / "c")
        assert other.built and other.path != first.path, changed

    def upper_half(m):
        m = m.copy()
        m[m.shape[0] // 2:] = False
        return Image.fromarray(m.astype(np.uint8) * 255)
    _rewrite_masks(subset / "masks", upper_half)
    halved = build_cache(load_ham10000(subset), 32, cache_root=tmp_path / "c")
    assert halved.built and halved.masks.sum() < first.masks.sum() and not halved.masks[:, 20:].any()
    _rewrite_masks(subset / "masks", lambda m: Image.fromarray(np.zeros(m.shape, np.uint8)))
    with pytest.raises(DataError, match=r"Every one of the 21 lesion masks is empty.*values \[0\]"):
        build_cache(load_ham10000(subset), 32, cache_root=tmp_path / "c")
