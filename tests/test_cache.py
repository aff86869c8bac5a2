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


# ------------------------------------------------------------------------------- every image mode to 8-bit RGB
def _png16(arr) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA from uint16 (H, W[, C])), written by hand: Pillow cannot write
    16-bit colour PNGs, which scanners and medical-imaging exports produce."""
    import struct
    import zlib
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def original(data_dir):
    """A real HAM10000 image at 40x30, 8-bit RGB, and its 8-bit grey version."""
    first = sorted((data_dir / "images").iterdir())[0]
    with Image.open(first) as im:
        rgb = im.convert("RGB").resize((40, 30))
    return np.asarray(rgb), np.asarray(rgb.convert("L"))


def _grey_palette(grey):
    p = Image.frombytes("P", grey.shape[::-1], grey.tobytes())
    p.putpalette([v for i in range(256) for v in (i, i, i)])
    return p


# mode -> (the image in that mode made from the 8-bit original (rgb, grey), what it must decode to: "rgb"/"grey")
MODES = {
    "RGB": (lambda rgb, g: Image.fromarray(rgb), "rgb"),
    "RGBA": (lambda rgb, g: Image.fromarray(rgb).convert("RGBA"), "rgb"),
    "RGBX": (lambda rgb, g: Image.fromarray(rgb).convert("RGBX"), "rgb"),
    "CMYK": (lambda rgb, g: Image.fromarray(rgb).convert("CMYK"), "rgb"),
    "YCbCr": (lambda rgb, g: Image.fromarray(rgb).convert("YCbCr"), "rgb"),
    "L": (lambda rgb, g: Image.fromarray(g), "grey"),
    "LA": (lambda rgb, g: Image.fromarray(g).convert("LA"), "grey"),
    "P": (lambda rgb, g: _grey_palette(g), "grey"),
    "PA": (lambda rgb, g: _grey_palette(g).convert("PA"), "grey"),
    "1": (lambda rgb, g: Image.fromarray(g >= 128), "bits"),
    "I;16": (lambda rgb, g: Image.fromarray(g.astype(np.uint16) * 257), "grey"),
    "I;16L": (lambda rgb, g: Image.frombytes("I;16L", g.shape[::-1], (g.astype("<u2") * 257).tobytes()), "grey"),
    "I;16B": (lambda rgb, g: Image.frombytes("I;16B", g.shape[::-1], (g.astype(">u2") * 257).tobytes()), "grey"),
    "I;16N": (lambda rgb, g: Image.frombytes("I;16N", g.shape[::-1], (g.astype("=u2") * 257).tobytes()), "grey"),
    "I": (lambda rgb, g: Image.fromarray(g.astype(np.int32) * 257), "grey"),
    "F-0..1": (lambda rgb, g: Image.fromarray(g.astype(np.float32) / 255), "grey"),
    "F-0..255": (lambda rgb, g: Image.fromarray(g.astype(np.float32)), "grey"),
    "F-0..65535": (lambda rgb, g: Image.fromarray(g.astype(np.float32) * 257), "grey"),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_pillow_mode_decodes_to_the_right_8_bit_rgb(original, mode):
    """A 16-bit image used to decode all white (Pillow clips 16-bit values at 255 when it converts to RGB): every
    mode Pillow yields decodes to the 8-bit original, within one level (three for YCbCr, which loses that much in 8 bits
    by itself)."""
    from hamviz.cache import to_rgb
    rgb, grey = original
    make, want = MODES[mode]
    img = make(rgb, grey)
    assert img.mode == mode.split("-")[0]
    out = to_rgb(img)
    assert out.dtype == np.uint8 and out.shape == (*grey.shape, 3)
    expected = {"rgb": rgb, "grey": np.stack([grey] * 3, -1),
                "bits": np.stack([(grey >= 128).astype(np.uint8) * 255] * 3, -1)}[want]
    tolerance = 3 if mode == "YCbCr" else 1  # 8-bit YCbCr itself loses up to 3 levels (Pillow, RGB -> YCbCr -> RGB)
    assert np.abs(out.astype(int) - expected).max() <= tolerance, mode
    assert 40 < out.mean() < 220  # not all white, not all black


@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["grey", "grey+alpha", "rgb", "rgba"])
def test_16_bit_png_files_decode_like_their_8_bit_originals(original, tmp_path, channels):
    """16-bit PNG files of every colour type, through the cache's decoder (the file's bytes, strict checks, the
    resize): the same image as the 8-bit PNG of the same picture, within one level."""
    rgb, grey = original
    base = grey if channels <= 2 else rgb
    arr8 = base if channels in (1, 3) else np.dstack([base, np.full(grey.shape, 255, np.uint8)])
    (tmp_path / "wide.png").write_bytes(_png16(arr8.astype(np.uint16) * 257))
    Image.fromarray(arr8).save(tmp_path / "narrow.png")
    wide, narrow = decode(tmp_path / "wide.png", (30, 40)), decode(tmp_path / "narrow.png", (30, 40))
    assert np.abs(wide.astype(int) - narrow).max() <= 1
    assert np.abs(narrow.astype(int) - (np.stack([grey] * 3, -1) if channels <= 2 else rgb)).max() <= 1
