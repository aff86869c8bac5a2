"""The on-disk image caches: every image decoded and resized once (later runs memory-map it), and the parallel
JPEG test sets (:func:`jpeg_test_sets`: the same images at every quality, encoded once).

A cache entry is a folder ``<cache>/images/<key>/`` holding ``images.npy`` (uint8, N x H x W x 3),
optionally ``masks.npy`` (bool, N x H x W) and ``index.json`` (image ids in row order, skipped files,
shapes and a checksum of each array). The key hashes the data fingerprint, the size and the resize mode,
so a different data set or size never reads a stale entry. Entries are written to a temporary folder and
renamed into place, so an interrupted build leaves nothing that looks complete. Every cached array (images, masks,
each JPEG test set, and the frozen features of :mod:`hamviz.features`) is read through :func:`load_checked`: a
file whose size, shape or checksum is not what was recorded when it was written (an empty or truncated file, a
damaged header) is :class:`Damaged`; the entry is then named (``log``), removed and rebuilt, as stored models are
(:func:`hamviz.store.load`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from .codecs import (
    DEFAULT_QUALITIES,
    SUBSAMPLINGS,
    bits_per_pixel,
    check_jobs,
    check_qualities,
    check_subsampling,
    jpeg_batch,
)
from .config import DataError, cache_dir, permission_error
from .data import Dataset, check_intact, image_size, mask_geometry_problem, open_image
from .files import bar, locked, reserve, space_for

CACHE_VERSION = 4  # 2: strict decoding (check_intact), masks of any encoding, mask files in the key; 3: wide
#                     modes (16-bit PNG) scaled to 8 bits, not clipped (to_rgb); 4: zeroed blocks inside JPEG data
#                     refused (check_intact), masks decoded strictly too, every array's file size recorded
RESIZE_MODES = ("stretch", "crop", "pad")


def as_size(size) -> tuple[int, int]:
    """``64`` -> (64, 64); ``(h, w)`` stays. Sizes are (height, width)."""
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    h, w = (int(s) for s in size)
    if h < 8 or w < 8:
        raise ValueError(f"image size {h}x{w} is too small: use at least 8x8")
    return h, w


def resize_image(img: Image.Image, size, mode: str = "stretch", resample=Image.Resampling.BILINEAR):
    """Resize a PIL image to (h, w). ``stretch`` ignores the aspect ratio (the reference works say only
    "resized"; stretching is hamviz's reading), ``crop`` takes the largest centred box of the target aspect,
    ``pad`` letterboxes with black."""
    h, w = as_size(size)
    if mode == "stretch":
        return img.resize((w, h), resample)
    src_w, src_h = img.size
    if mode == "crop":
        scale = max(w / src_w, h / src_h)
        box_w, box_h = w / scale, h / scale
        left, top = (src_w - box_w) / 2, (src_h - box_h) / 2
        return img.resize((w, h), resample, box=(left, top, left + box_w, top + box_h))
    if mode == "pad":
        scale = min(w / src_w, h / src_h)
        new = img.resize((max(1, round(src_w * scale)), max(1, round(src_h * scale))), resample)
        canvas = Image.new(img.mode, (w, h))
        canvas.paste(new, ((w - new.size[0]) // 2, (h - new.size[1]) // 2))
        return canvas
    raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")


#: Pillow modes of more than 8 bits per sample, and the full scale of their values
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


def to_rgb(img: Image.Image) -> np.ndarray:
    """An image of any Pillow mode as 8-bit RGB, uint8 (H, W, 3), each value on the same scale as the file's.

    8-bit modes (1, L, LA, P, PA, RGB, RGBA, RGBX, CMYK, YCbCr, ...) go through Pillow's ``convert("RGB")`` (alpha
    dropped, palettes looked up, CMYK and YCbCr converted). Wider grey modes are scaled, not clipped (Pillow's own
    conversion clips 16-bit values at 255, so a 16-bit PNG would decode all white): I;16 / I;16L / I;16B / I;16N and
    I (16-bit PNG and PGM data) from 0..65535 to 0..255 (``round(v / 257)``, exact for 8-bit data stored as
    ``v * 257``); F (floating point) from 0..1 when its largest value is at most 1, else from 0..255 when at most
    255, else from 0..65535. Pillow reads 16-bit RGB(A) PNGs as 8-bit RGB(A) itself."""
    if img.mode in _WIDE_MODES or img.mode == "F":
        a = np.asarray(img).astype(np.float64)
        if img.mode == "F":
            top = float(np.nanmax(a)) if a.size and np.isfinite(a).any() else 0.0
            full = 1.0 if top <= 1.0 else (255.0 if top <= 255.0 else 65535.0)
        else:
            full = float(_WIDE_MODES[img.mode])
        grey = np.clip(np.rint(np.nan_to_num(a) * (255.0 / full)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"))


def decode(path, size, mode="stretch") -> np.ndarray:
    """Decode one image fully and strictly (:func:`check_intact`), as 8-bit RGB whatever its mode or bit depth
    (:func:`to_rgb`), and resize it: uint8 (h, w, 3). A local image is trusted data whatever its size
    (:func:`hamviz.data.open_image`): a JPEG above Pillow's decompression-bomb limit is decoded at reduced size, no
    smaller than ``size``. Raises DataError naming a corrupt or truncated file, or a file this user may not read (a
    permission problem, with its fix)."""
    h, w = as_size(size)
    try:
        data = Path(path).read_bytes()
        check_intact(data)
        with open_image(data, (w, h)) as img:
            img.load()  # forces a full decode
            arr = np.asarray(resize_image(Image.fromarray(to_rgb(img)), size, mode))
    except PermissionError:
        raise permission_error("image", Path(path)) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot decode image {path}: {exc}. The file is corrupt or truncated: "
                        f"re-download it, or set on_corrupt: skip to leave it out and report it.") from exc
    return arr


def binary_mask(values: np.ndarray) -> np.ndarray:
    """A lesion mask (H, W) bool from a mask image's values (H, W) or (H, W, C), whatever its encoding: 0/255
    (HAM10000's), 0/1 label maps, 16-bit 0/65535, a palette or colour image (the brightest channel). Two values
    (or one): the larger is the lesion; more (anti-aliased edges): above the midpoint of the range. A constant
    non-zero image is all lesion."""
    a = np.asarray(values)
    if a.ndim == 3:
        a = a[..., :3].max(axis=-1)
    lo, hi = a.min(), a.max()
    if lo == hi:
        return np.full(a.shape, bool(hi > 0))
    if np.unique(a).size == 2:
        return a == hi
    return a > (float(lo) + float(hi)) / 2


def decode_mask(path, size, mode="stretch", image_wh=None) -> np.ndarray:
    """A lesion mask at ``size``: bool (h, w), from any mask encoding (:func:`binary_mask`); nearest-neighbour
    resizing. Decoded strictly, as images are (:func:`check_intact`). ``image_wh``: its image's (width, height); a
    mask that does not fit it (:func:`hamviz.data.mask_geometry_problem`: neither its size nor an exact integer
    multiple) is a DataError, never resized onto other pixels. Raises DataError naming a mask that does not
    decode."""
    try:
        data = Path(path).read_bytes()
        check_intact(data)  # a PNG's chunk checksums: damage Pillow's decoder may not notice
        with open_image(data, reduce=False) as img:  # its own size: what fits the image or not
            if image_wh is not None and (why := mask_geometry_problem(image_wh, img.size)):
                raise DataError(f"Lesion mask {path} does not fit its image ({why}): a mask has its image's size or "
                                f"an exact integer multiple of it. Replace it with the image's own mask, or set "
                                f"on_mask_mismatch: skip to treat such masks as missing.")
            img.load()
            rgb_like = img.mode in ("P", "PA", "RGB", "RGBA", "LA", "CMYK", "YCbCr")
            m = binary_mask(np.asarray(img.convert("RGB") if rgb_like else img))
    except PermissionError:
        raise permission_error("mask", Path(path)) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot decode mask {path}: {exc}. Re-download the masks.") from exc
    resized = resize_image(Image.fromarray(m.astype(np.uint8) * 255), size, mode, resample=Image.Resampling.NEAREST)
    return np.asarray(resized) > 127


def _check_masks(masks: np.ndarray, paths) -> None:
    """A data set whose masks are all empty, or all full, is an error (what it would give is NaN contrast and
    empty lesion areas for every image, silently)."""
    area = masks.reshape(len(masks), -1).mean(axis=1)
    if len(area) and ((area == 0).all() or (area == 1).all()):
        kind = "empty" if (area == 0).all() else "full (all lesion)"
        with open_image(paths[0]) as img:
            values = np.unique(np.asarray(img))[:8].tolist()
        raise DataError(f"Every one of the {len(area)} lesion masks is {kind} (e.g. {paths[0]}: mode {img.mode}, "
                        f"values {values}): they hold no lesion outline. Check the mask files (a lesion must "
                        f"differ from its background), or run without masks (params: masks: false).")


def _new_array_file(path: Path, dtype, shape) -> np.memmap:
    """A new ``.npy`` file at ``path``, memory-mapped for writing, with its disk blocks reserved
    (:func:`hamviz.files.reserve`): on a full disk this raises ``OSError`` ``ENOSPC`` now instead of killing the
    process with ``SIGBUS`` at some later write into the map."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    reserve(path)
    return array


def _entry_bytes(n: int, size, masks: bool) -> int:
    """About how many bytes an image cache entry of ``n`` images at ``size`` takes (images, masks, index)."""
    h, w = size
    return n * h * w * (3 + (1 if masks else 0)) + n * 64 + 4096


def _sweep_temp(folder: Path) -> None:
    """Remove what builds of ``folder`` that died left (``<name>.tmp-<pid>-<ns>``: a killed kernel, a machine that
    went down). Called only under the entry's lock, so no live build of it is in progress."""
    for stale in folder.parent.glob(f"{folder.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def publish(tmp: Path, folder: Path, index: dict | None) -> None:
    """Finish a cache entry built in ``tmp``: write its index (if any) last, then rename it to ``folder`` in one
    step, so a reader never sees a partial entry. If another process published the same entry first, use
    theirs."""
    if index is not None:
        (tmp / "index.json").write_text(json.dumps(index))
    try:
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def array_digest(arr: np.ndarray) -> str:
    """A short SHA-256 of an array's bytes (recorded when an entry is published, compared when it is read)."""
    return hashlib.sha256(np.ascontiguousarray(arr).view(np.uint8).reshape(-1)).hexdigest()[:16]


class Damaged(Exception):
    """A cached file that is not what was written: its message names the file and what is wrong."""


def load_checked(path: Path, shape, sha: str | None = None, nbytes: int | None = None, *, verify: bool = True,
                 mmap: bool = True) -> np.ndarray:
    """The array in the ``.npy`` file ``path`` (memory-mapped unless ``mmap`` is False), checked against what was
    recorded when it was written: its file size ``nbytes`` (when recorded; always checked, it costs nothing), its
    ``shape``, and with ``verify`` its checksum ``sha`` (:func:`array_digest`, about a second per GB). Raises
    :class:`Damaged` naming the file and what is wrong: missing, empty or truncated (numpy's own errors are
    ``EOFError: No data left in file`` and "mmap length is greater than file size"), another shape or checksum."""
    path = Path(path)
    if not path.is_file():
        raise Damaged(f"{path.name} is missing")
    size = path.stat().st_size
    if nbytes is not None and size != nbytes:
        raise Damaged(f"{path.name} has {size:,} bytes, {int(nbytes):,} were written")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - EOFError, ValueError, OSError, ...: any failure to load is damage
        raise Damaged(f"{path.name} does not load ({type(exc).__name__}: {exc})") from None
    if list(arr.shape) != list(shape):
        raise Damaged(f"{path.name} holds an array of shape {list(arr.shape)}, {list(shape)} was written")
    if verify and sha is not None and array_digest(arr) != sha:
        raise Damaged(f"{path.name} does not match its recorded checksum")
    return arr


def file_bytes(path: Path) -> int:
    """A written file's size, recorded beside its checksum (compared by :func:`load_checked`)."""
    return Path(path).stat().st_size


@dataclass
class ImageCache:
    """Decoded images of a dataset at one size. ``images[i]`` is the image of ``image_ids[i]``."""

    path: Path
    image_ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None
    size: tuple[int, int]
    skipped: dict = field(default_factory=dict)
    built: bool = False  # True when this call decoded the images, False when it read the cache

    def rows(self, image_ids) -> np.ndarray:
        """Row numbers of ``image_ids`` (KeyError naming the first unknown id)."""
        pos = {i: r for r, i in enumerate(self.image_ids)}
        try:
            return np.fromiter((pos[i] for i in image_ids), dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"image {exc.args[0]} is not in the cache {self.path} "
                           f"(skipped as corrupt, or from another data set)") from None

    def __len__(self):
        return len(self.image_ids)


def mask_fingerprint(ds: Dataset) -> str:
    """sha256 over the name and size of every mask file (as :func:`hamviz.data.fingerprint_files` does for the
    images): replacing the masks changes the cache key."""
    h = hashlib.sha256()
    for p in sorted(str(p) for p in ds.meta["mask_path"] if p):
        h.update(f"{Path(p).name}:{Path(p).stat().st_size};".encode())
    return h.hexdigest()[:16]


def cache_key(ds: Dataset, size, mode: str, masks: bool) -> str:
    """Everything a cache entry is computed from: the decoding code's version, the data set (metadata and every
    image file, :attr:`Dataset.fingerprint`), the mask files when masks are cached, the size and the resize
    mode."""
    h, w = as_size(size)
    raw = (f"v{CACHE_VERSION}|{ds.source}|{ds.fingerprint}|{h}x{w}|{mode}|masks={masks}"
           + (f"|{mask_fingerprint(ds)}" if masks else ""))
    return f"{ds.source}-{h}x{w}-{mode}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def _read_entry(folder: Path, verify: bool) -> ImageCache:
    """The cache entry in ``folder``; raises :class:`Damaged` naming what is missing or damaged."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise Damaged(f"index.json is missing or unreadable ({type(exc).__name__})") from None
    try:
        images = load_checked(folder / "images.npy", index["images_shape"], index["images_sha"],
                              index.get("images_bytes"), verify=verify)
        masks = None
        if index.get("masks_shape"):
            masks = load_checked(folder / "masks.npy", index["masks_shape"], index["masks_sha"],
                                 index.get("masks_bytes"), verify=verify)
        return ImageCache(folder, index["image_ids"], images, masks, tuple(index["size"]), index.get("skipped", {}))
    except (KeyError, TypeError) as exc:
        raise Damaged(f"index.json lacks {exc}") from None


def _build_entry(folder: Path, ds: Dataset, size, mode: str, masks: bool, on_corrupt: str, jobs, progress) -> None:
    """Decode every image (and mask) of ``ds`` into a new cache entry at ``folder`` (built under a temporary
    name, published in one step)."""
    paths = ds.meta["path"].tolist()
    ids = ds.meta["image_id"].tolist()
    mask_paths = ds.meta["mask_path"].tolist() if masks else [None] * len(ids)

    def work(i):
        try:
            img = decode(paths[i], size, mode)
            m = decode_mask(mask_paths[i], size, mode, image_wh=image_size(paths[i])) if masks else None
            return i, img, m, None
        except DataError as exc:
            if on_corrupt == "error":
                raise
            return i, None, None, str(exc)

    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        img_mm = _new_array_file(tmp / "images.npy", dtype=np.uint8, shape=(len(ids), *size, 3))
        mask_mm = _new_array_file(tmp / "masks.npy", dtype=bool, shape=(len(ids), *size)) if masks else None
        keep, skipped = [], {}
        iterator = range(len(ids))
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            results = pool.map(work, iterator, chunksize=64)
            if progress:
                results = bar(results, total=len(ids), desc=f"decoding {size[0]}x{size[1]}", unit="image")
            for i, img, m, err in results:
                if err is not None:
                    skipped[ids[i]] = err
                    continue
                img_mm[len(keep)] = img
                if masks:
                    mask_mm[len(keep)] = m
                keep.append(i)
        n = len(keep)
        if n == 0:
            raise DataError(f"None of the {len(ids)} images of {ds.root} could be decoded.")
        if masks:
            _check_masks(mask_mm[:n], [mask_paths[i] for i in keep])
        # Shrink to the kept rows when some were skipped (rare: rewrite the arrays).
        images = np.array(img_mm[:n]) if n < len(ids) else img_mm
        mks = (np.array(mask_mm[:n]) if n < len(ids) else mask_mm) if masks else None
        del img_mm, mask_mm
        if n < len(ids):
            np.save(tmp / "images.npy", images)
            if masks:
                np.save(tmp / "masks.npy", mks)
        else:
            images.flush()
            if masks:
                mks.flush()
        index = {
            "version": CACHE_VERSION, "source": ds.source, "fingerprint": ds.fingerprint,
            "size": list(size), "mode": mode, "image_ids": [ids[i] for i in keep],
            "skipped": skipped, "images_shape": [n, *size, 3], "images_sha": array_digest(images),
            "images_bytes": file_bytes(tmp / "images.npy"), "masks_shape": [n, *size] if masks else None,
            "masks_sha": array_digest(mks) if masks else None,
            "masks_bytes": file_bytes(tmp / "masks.npy") if masks else None,
        }
        del images, mks
        publish(tmp, folder, index)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_cache(ds: Dataset, size=64, *, mode: str = "stretch", masks: bool | None = None,
                on_corrupt: str = "error", cache_root=None, jobs: int | None = None,
                verify: bool = True, progress: bool = False, log=print) -> ImageCache:
    """Decoded, resized images of ``ds`` from the cache, building the entry on first use.

    masks: also cache the lesion masks (default: when the dataset has them).
    on_corrupt: "error" stops at the first image that does not decode, naming it; "skip" leaves such
      images out and lists them in ``skipped`` (and in the entry's index.json).
    verify: check the arrays' checksums on read (about a second per GB; their file sizes are always checked). A
      damaged entry (:func:`load_checked`) is named through ``log``, removed and rebuilt.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, not {mode!r}")
    if on_corrupt not in ("error", "skip"):
        raise ValueError(f"on_corrupt must be 'error' or 'skip', not {on_corrupt!r}")
    size = as_size(size)
    if masks is None:
        masks = ds.has_masks
    elif masks and not ds.has_masks:
        raise DataError(f"Masks requested for the cache but the dataset at {ds.root} has none.")
    root = Path(cache_root) if cache_root else cache_dir()
    key = cache_key(ds, size, mode, masks)
    folder = root / "images" / key
    entry, _ = _usable_entry(folder, ds, verify)
    if entry is not None:
        return entry
    # built once: a second process asking for the same entry (two chapters of a book run in parallel) waits for
    # the first and reads what it wrote
    with locked(root / "locks" / "images" / f"{key}.lock"):
        entry, problem = _usable_entry(folder, ds, verify)
        if entry is not None:
            return entry
        if problem:
            log(f"cached images {folder} are damaged: {problem}; removing them and decoding the images again")
        shutil.rmtree(folder, ignore_errors=True)
        _sweep_temp(folder)
        with space_for(root, _entry_bytes(len(ds.meta), size, masks), "the image cache"):
            _build_entry(folder, ds, size, mode, masks, on_corrupt, jobs, progress)
    entry = _read_entry(folder, verify=False)
    entry.built = True
    return entry


def _usable_entry(folder: Path, ds: Dataset, verify: bool) -> tuple[ImageCache | None, str | None]:
    """(the cache entry in ``folder`` when it is complete and intact for ``ds``'s images, else None; what is wrong
    with the one there, or None when there is none)."""
    if not folder.exists():
        return None, None
    try:
        entry = _read_entry(folder, verify)
    except Damaged as exc:
        return None, str(exc)
    if not set(entry.image_ids) | set(entry.skipped) >= set(ds.meta["image_id"]):
        return None, "it lacks some of the data set's images"
    return entry, None


# ------------------------------------------------------------------------------ parallel JPEG test sets
#: Part of the key of every JPEG test-set entry: bump it when the way the sets are made changes.
JPEG_SETS_VERSION = 1
_CHUNK = 2048  # images per block when building the test sets (bounds memory at large sizes)


@dataclass
class JpegSets:
    """The same images JPEG-compressed at several qualities. ``images[q][i]`` is ``image_ids[i]`` at
    quality ``q`` (uint8, memory-mapped when read from disk); ``n_bytes[q][i]`` its JPEG size;
    ``bpp[q]`` the mean bits per pixel at ``q``."""

    image_ids: list[str]
    qualities: tuple[int, ...]
    images: dict[int, np.ndarray]
    n_bytes: dict[int, np.ndarray]
    bpp: dict[int, float]
    path: Path
    subsampling: int = 2
    built: bool = False  # True when this call encoded the images, False when it read them from disk

    def __len__(self):
        return len(self.image_ids)


def _codec() -> str:
    """The JPEG library that produced the bytes (recorded in the key: another codec, other bytes)."""
    turbo = features.version("libjpeg_turbo") if features.check("libjpeg_turbo") else None
    return f"pillow-{Image.__version__}|jpeg-{features.version('jpg')}|turbo-{turbo}"


def jpeg_sets_key(cache, image_ids, qualities, subsampling: int) -> str:
    """Folder name of a test-set entry: the image cache entry's name (data fingerprint, size, mode),
    a hash of the image ids (in order), the qualities, the subsampling and the codec version."""
    ids_sha = hashlib.sha256("\n".join(image_ids).encode()).hexdigest()[:12]
    raw = (f"v{JPEG_SETS_VERSION}|{Path(cache.path).name}|{ids_sha}|"
           f"q={','.join(map(str, qualities))}|s={subsampling}|{_codec()}")
    digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
    return f"{Path(cache.path).name}-n{len(image_ids)}-{ids_sha}-s{subsampling}-{digest}"


def _read_sets(folder: Path, image_ids, qualities, subsampling, verify: bool) -> JpegSets | None:
    """The entry in ``folder``, or None when it is not the one asked for; raises :class:`Damaged` naming what is
    missing or damaged (:func:`load_checked` for each quality's array)."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise Damaged(f"index.json is missing or unreadable ({type(exc).__name__})") from None
    try:
        if (index["image_ids"] != list(image_ids) or index["qualities"] != list(qualities)
                or index["subsampling"] != subsampling):
            return None
        images, n_bytes, bpp = {}, {}, {}
        for q in qualities:
            arr = load_checked(folder / f"q{q}.npy", index["shapes"][str(q)], index["sha"][str(q)],
                               (index.get("file_bytes") or {}).get(str(q)), verify=verify)
            nb = np.asarray(index["bytes"][str(q)], dtype=np.int64)
            if arr.dtype != np.uint8 or len(nb) != len(arr):
                raise Damaged(f"q{q}.npy holds {arr.dtype} {list(arr.shape)}, not what index.json records")
            images[q], n_bytes[q] = arr, nb
            bpp[q] = float(bits_per_pixel(nb, arr.shape).mean())
    except (KeyError, TypeError, ValueError) as exc:
        raise Damaged(f"index.json lacks or garbles {exc}") from None
    return JpegSets(list(index["image_ids"]), tuple(qualities), images, n_bytes, bpp, folder,
                    subsampling)


def jpeg_test_sets(cache, rows, qualities=DEFAULT_QUALITIES, *, subsampling: int = 2, cache_root=None,
                   jobs: int | None = None, verify: bool = True, log=print) -> JpegSets:
    """The images ``cache.images[rows]`` JPEG-compressed at every quality, built once and kept on disk.

    cache: an :class:`hamviz.cache.ImageCache`; rows: row numbers into it (e.g. the test part of the
      split; a boolean mask over the cache also works). The order of ``rows`` is kept.
    qualities: integers in 1..100 (checked before any work; ValueError lists the bad ones); stored
      highest first, duplicates dropped.
    cache_root: where ``jpeg/<key>/`` goes (default :func:`hamviz.config.cache_dir`).
    verify: check the arrays' checksums on read (their file sizes are always checked); a damaged entry
      (:func:`load_checked`) is named through ``log``, removed and rebuilt.
    """
    qualities = check_qualities(qualities)
    subsampling = check_subsampling(subsampling)
    check_jobs(jobs)
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (len(cache.image_ids),):
            raise ValueError(f"a boolean row mask must have one entry per cached image "
                             f"({len(cache.image_ids)}), not shape {rows.shape}")
        rows = np.flatnonzero(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"rows must be a 1-d sequence of row numbers, not {rows.dtype} {rows.shape}")
    if rows.size == 0:
        raise ValueError("rows is empty: no image to compress")
    n_cache = len(cache.image_ids)
    if rows.min() < 0 or rows.max() >= n_cache:
        bad = rows[(rows < 0) | (rows >= n_cache)]
        raise IndexError(f"row(s) {bad[:5].tolist()} out of range for the image cache {cache.path} "
                         f"({n_cache} images)")
    rows = rows.astype(np.int64)
    image_ids = [cache.image_ids[r] for r in rows]

    root = Path(cache_root) if cache_root else cache_dir()
    folder = root / "jpeg" / jpeg_sets_key(cache, image_ids, qualities, subsampling)
    if folder.exists():
        try:
            entry = _read_sets(folder, image_ids, qualities, subsampling, verify)
        except Damaged as exc:
            entry = None
            log(f"cached JPEG test sets {folder} are damaged: {exc}; removing them and encoding them again")
        if entry is not None:
            return entry
        shutil.rmtree(folder, ignore_errors=True)
    h, w = cache.images.shape[1:3]
    with space_for(root, len(rows) * h * w * 3 * len(qualities) + 4096, "the JPEG test sets"):
        _build_sets(folder, cache, rows, image_ids, qualities, subsampling, jobs)
    entry = _read_sets(folder, image_ids, qualities, subsampling, verify=False)
    if entry is None:  # pragma: no cover - only if the folder vanished between rename and read
        raise OSError(f"JPEG test sets at {folder} could not be read back after building them")
    entry.built = True
    return entry


def _build_sets(folder: Path, cache, rows, image_ids, qualities, subsampling: int, jobs) -> None:
    """Encode ``cache.images[rows]`` at every quality into a new test-set entry at ``folder`` (built under a
    temporary name, published in one step)."""
    src = cache.images
    n, (h, w) = len(rows), src.shape[1:3]
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        index = {"version": JPEG_SETS_VERSION, "cache_entry": Path(cache.path).name,
                 "image_ids": image_ids, "qualities": list(qualities), "subsampling": subsampling,
                 "subsampling_name": SUBSAMPLINGS[subsampling], "codec": _codec(),
                 "shapes": {}, "sha": {}, "bytes": {}, "file_bytes": {}}
        outs = {q: _new_array_file(tmp / f"q{q}.npy", dtype=np.uint8, shape=(n, h, w, 3)) for q in qualities}
        sizes = {q: np.empty(n, dtype=np.int64) for q in qualities}
        for start in range(0, n, _CHUNK):  # each block of originals is read once for all qualities
            block = np.asarray(src[rows[start:start + _CHUNK]])
            for q in qualities:
                dec, nb = jpeg_batch(block, q, subsampling, jobs)
                outs[q][start:start + len(block)] = dec
                sizes[q][start:start + len(block)] = nb
        for q in qualities:
            outs[q].flush()
            index["shapes"][str(q)] = [n, h, w, 3]
            index["sha"][str(q)] = array_digest(outs[q])
            index["bytes"][str(q)] = sizes[q].tolist()
            index["file_bytes"][str(q)] = file_bytes(tmp / f"q{q}.npy")
        del outs
        publish(tmp, folder, index)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
