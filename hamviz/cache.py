"""Decode and resize every image once into an on-disk cache; later runs memory-map it.

A cache entry is a folder ``<cache>/images/<key>/`` holding ``images.npy`` (uint8, N x H x W x 3),
optionally ``masks.npy`` (bool, N x H x W) and ``index.json`` (image ids in row order, skipped files,
shapes and a checksum of each array). The key hashes the data fingerprint, the size and the resize mode,
so a different data set or size never reads a stale entry. Entries are written to a temporary folder and
renamed into place, so an interrupted build leaves nothing that looks complete; an entry whose arrays do
not match their recorded size or checksum (e.g. a truncated file) is detected and rebuilt.
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
from PIL import Image, UnidentifiedImageError

from .config import DataError, cache_dir
from .data import Dataset

CACHE_VERSION = 1
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
    """Resize a PIL image to (h, w). ``stretch`` ignores the aspect ratio (as the reference works did),
    ``crop`` takes the largest centred box of the target aspect, ``pad`` letterboxes with black."""
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


def decode(path, size, mode="stretch") -> np.ndarray:
    """Decode one image fully and resize it: uint8 (h, w, 3). Raises DataError naming a corrupt file."""
    try:
        with Image.open(path) as img:
            img.load()  # forces a full decode: truncated files fail here, not later
            arr = np.asarray(resize_image(img.convert("RGB"), size, mode))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot decode image {path}: {exc}. The file is corrupt or truncated: "
                        f"re-download it, or set on_corrupt: skip to leave it out and report it.") from exc
    return arr


def decode_mask(path, size, mode="stretch") -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            m = resize_image(img.convert("L"), size, mode, resample=Image.Resampling.NEAREST)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"Cannot decode mask {path}: {exc}. Re-download the masks.") from exc
    return np.asarray(m) > 127


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


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).view(np.uint8).reshape(-1)).hexdigest()[:16]


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


def cache_key(ds: Dataset, size, mode: str, masks: bool) -> str:
    h, w = as_size(size)
    raw = f"v{CACHE_VERSION}|{ds.source}|{ds.fingerprint}|{h}x{w}|{mode}|masks={masks}"
    return f"{ds.source}-{h}x{w}-{mode}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def _read_entry(folder: Path, verify: bool) -> ImageCache | None:
    """The cache entry in ``folder``, or None if it is absent, incomplete or damaged."""
    try:
        index = json.loads((folder / "index.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r")
        if list(images.shape) != index["images_shape"]:
            return None
        masks = None
        if index.get("masks_shape"):
            masks = np.load(folder / "masks.npy", mmap_mode="r")
            if list(masks.shape) != index["masks_shape"]:
                return None
        if verify and (_digest(images) != index["images_sha"] or
                       (masks is not None and _digest(masks) != index["masks_sha"])):
            return None
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return ImageCache(folder, index["image_ids"], images, masks, tuple(index["size"]),
                      index.get("skipped", {}))


def _build_entry(folder: Path, ds: Dataset, size, mode: str, masks: bool, on_corrupt: str, jobs, progress) -> None:
    """Decode every image (and mask) of ``ds`` into a new cache entry at ``folder`` (built under a temporary
    name, published in one step)."""
    paths = ds.meta["path"].tolist()
    ids = ds.meta["image_id"].tolist()
    mask_paths = ds.meta["mask_path"].tolist() if masks else [None] * len(ids)

    def work(i):
        try:
            img = decode(paths[i], size, mode)
            m = decode_mask(mask_paths[i], size, mode) if masks else None
            return i, img, m, None
        except DataError as exc:
            if on_corrupt == "error":
                raise
            return i, None, None, str(exc)

    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        img_mm = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(ids), *size, 3))
        mask_mm = (np.lib.format.open_memmap(tmp / "masks.npy", mode="w+", dtype=bool,
                                             shape=(len(ids), *size)) if masks else None)
        keep, skipped = [], {}
        iterator = range(len(ids))
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            results = pool.map(work, iterator, chunksize=64)
            if progress:
                from tqdm.auto import tqdm
                results = tqdm(results, total=len(ids), desc=f"decoding {size[0]}x{size[1]}")
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
            "skipped": skipped, "images_shape": [n, *size, 3], "images_sha": _digest(images),
            "masks_shape": [n, *size] if masks else None,
            "masks_sha": _digest(mks) if masks else None,
        }
        del images, mks
        publish(tmp, folder, index)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_cache(ds: Dataset, size=64, *, mode: str = "stretch", masks: bool | None = None,
                on_corrupt: str = "error", cache_root=None, jobs: int | None = None,
                verify: bool = True, progress: bool = False) -> ImageCache:
    """Decoded, resized images of ``ds`` from the cache, building the entry on first use.

    masks: also cache the lesion masks (default: when the dataset has them).
    on_corrupt: "error" stops at the first image that does not decode, naming it; "skip" leaves such
      images out and lists them in ``skipped`` (and in the entry's index.json).
    verify: check the arrays' checksums on read (about a second per GB); a damaged entry is rebuilt.
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
    folder = root / "images" / cache_key(ds, size, mode, masks)
    if folder.exists():
        entry = _read_entry(folder, verify)
        if entry is not None and set(entry.image_ids) | set(entry.skipped) >= set(ds.meta["image_id"]):
            return entry
        shutil.rmtree(folder, ignore_errors=True)  # damaged or partial: rebuild

    _build_entry(folder, ds, size, mode, masks, on_corrupt, jobs, progress)
    entry = _read_entry(folder, verify=False)
    entry.built = True
    return entry
