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
    victim = sorted((subset / "images").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:600])  # truncated JPEG
    ds = load_ham10000(subset)
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
