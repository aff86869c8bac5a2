"""The codecs of the "compression vs classification" chapter, and their distortion measures.

Two codecs, each with its size in bits so that accuracy can be plotted against bits per pixel:

- **JPEG** through Pillow (libjpeg-turbo): :func:`jpeg_roundtrip` / :func:`jpeg_batch` encode at a quality
  in 1..100 with a *fixed* chroma subsampling (default 4:2:0), ``optimize=False`` and no metadata, so the
  byte counts are reproducible; the images are decoded back for the classifier.
- **Colour quantisation** with scikit-learn K-means (:func:`kmeans_quantise` / :func:`kmeans_batch`): each
  image keeps ``k`` colours; its size is the palette index per pixel plus the palette.

The parallel JPEG test sets built from these codecs (the same images at every quality, kept on disk) are
:func:`hamviz.cache.jpeg_test_sets`.
:func:`psnr` and :func:`ssim` measure the distortion (scikit-image).

Images are uint8 RGB arrays, (H, W, 3), or (N, H, W, 3) batches.
"""
from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

#: The qualities of the parallel JPEG test sets unless a profile says otherwise.
DEFAULT_QUALITIES = (95, 50, 20, 10, 5, 3, 1)
QUALITY_RANGE = (1, 100)
#: Pillow's ``subsampling``: 0 = 4:4:4 (none), 1 = 4:2:2, 2 = 4:2:0 (the libjpeg default).
SUBSAMPLINGS = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
K_RANGE = (2, 256)


# --------------------------------------------------------------------------------------------- checks
def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_quality(quality) -> int:
    lo, hi = QUALITY_RANGE
    if not _is_int(quality) or not lo <= quality <= hi:
        raise ValueError(f"JPEG quality must be an integer in {lo}..{hi} (inclusive), not {quality!r}")
    return int(quality)


def check_qualities(qualities) -> tuple[int, ...]:
    """Unique qualities, highest first; ValueError listing every bad one."""
    if _is_int(qualities):
        qualities = (qualities,)
    qualities = list(qualities)
    lo, hi = QUALITY_RANGE
    bad = [q for q in qualities if not _is_int(q) or not lo <= q <= hi]
    if bad:
        raise ValueError(f"JPEG qualities must be integers in {lo}..{hi} (inclusive); "
                         f"invalid: {', '.join(map(repr, bad))}")
    if not qualities:
        raise ValueError(f"no JPEG quality given: pass one or more integers in {lo}..{hi}")
    return tuple(sorted({int(q) for q in qualities}, reverse=True))


def check_subsampling(subsampling) -> int:
    if not _is_int(subsampling) or int(subsampling) not in SUBSAMPLINGS:
        choices = ", ".join(f"{k} ({v})" for k, v in SUBSAMPLINGS.items())
        raise ValueError(f"JPEG chroma subsampling must be one of {choices}, not {subsampling!r}")
    return int(subsampling)


def _check_image(img, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 RGB array of shape (H, W, 3), "
                         f"not {img.dtype} {img.shape}")
    return img


def _check_batch(images, name: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 RGB batch of shape (N, H, W, 3), "
                         f"not {images.dtype} {images.shape}")
    return images


def check_jobs(jobs) -> int:
    if jobs is None:
        return os.cpu_count() or 1
    if not _is_int(jobs) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer or None, not {jobs!r}")
    return int(jobs)


def _map_rows(fn, n: int, jobs) -> None:
    """Call ``fn(i)`` for i in range(n), on ``jobs`` threads (serially when one thread is enough)."""
    workers = min(check_jobs(jobs), n)
    if workers <= 1:
        for i in range(n):
            fn(i)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, range(n), chunksize=max(1, n // (8 * workers))):
            pass


# ----------------------------------------------------------------------------------------------- JPEG
def _jpeg(img: np.ndarray, quality: int, subsampling: int) -> tuple[np.ndarray, int]:
    buf = io.BytesIO()
    # Everything that changes the stream is fixed: quality, subsampling, Huffman tables (optimize=False),
    # baseline (not progressive), no EXIF/ICC/comment.
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=quality, subsampling=subsampling,
                                     optimize=False, progressive=False)
    n_bytes = buf.tell()
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.asarray(dec.convert("RGB"))
    return out, n_bytes


def jpeg_roundtrip(img, quality: int, subsampling: int = 2) -> tuple[np.ndarray, int]:
    """Encode ``img`` (uint8 H x W x 3) as JPEG with Pillow and decode it back.

    quality: 1..100 (ValueError otherwise); subsampling: 2 = 4:2:0 (default), 1 = 4:2:2, 0 = 4:4:4.
    Returns the decoded uint8 image and the byte count of the JPEG stream (headers included).
    """
    quality = _check_quality(quality)
    subsampling = check_subsampling(subsampling)
    return _jpeg(_check_image(img), quality, subsampling)


def bits_per_pixel(n_bytes, shape):
    """``8 * n_bytes / (H * W)``. ``shape`` is an image shape, (H, W) or (H, W, C), or a batch shape
    (N, H, W, C) (then ``n_bytes`` is usually per image). Returns a float, or an array for array input."""
    shape = tuple(shape)
    if len(shape) in (2, 3):
        h, w = shape[:2]
    elif len(shape) == 4:
        h, w = shape[1:3]
    else:
        raise ValueError(f"shape must be (H, W), (H, W, C) or (N, H, W, C), not {shape}")
    bpp = 8.0 * np.asarray(n_bytes, dtype=np.float64) / (int(h) * int(w))
    return float(bpp) if bpp.ndim == 0 else bpp


def jpeg_batch(images, quality: int, subsampling: int = 2, jobs: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`jpeg_roundtrip` over a batch (N, H, W, 3), on ``jobs`` threads (default: every core).

    Returns the decoded batch (N, H, W, 3) uint8 and the bytes of each image (N,) int64."""
    quality = _check_quality(quality)
    subsampling = check_subsampling(subsampling)
    images = _check_batch(images)
    out = np.empty_like(images)
    n_bytes = np.empty(len(images), dtype=np.int64)

    def work(i):
        out[i], n_bytes[i] = _jpeg(np.ascontiguousarray(images[i]), quality, subsampling)

    _map_rows(work, len(images), jobs)
    return out, n_bytes


# ------------------------------------------------------------------------------------ colour K-means
def _index_bits(k: int) -> int:
    """ceil(log2 k) for k >= 1 (0 bits for a single colour)."""
    return (int(k) - 1).bit_length()


def kmeans_bits(k: int, shape) -> int:
    """Size in bits of a ``k``-colour palette image: H*W*ceil(log2 k) index bits + k*24 palette bits."""
    h, w = tuple(shape)[:2]
    return int(h) * int(w) * _index_bits(k) + int(k) * 24


def _check_k(k) -> int:
    lo, hi = K_RANGE
    if not _is_int(k) or not lo <= k <= hi:
        raise ValueError(f"k (number of colours) must be an integer in {lo}..{hi}, not {k!r}")
    return int(k)


def _packed(pixels: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 -> (n,) uint32 RGB codes (fast distinct-colour counting)."""
    p = pixels.astype(np.uint32)
    return (p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2]


def kmeans_quantise(img, k: int, seed: int = 0, sample: int = 20000) -> tuple[np.ndarray, int]:
    """Quantise ``img`` (uint8 H x W x 3) to at most ``k`` colours with K-means (scikit-learn).

    The clusters are fitted (``KMeans``, one k-means++ start, seeded) on at most ``sample`` random pixels,
    then every pixel takes its nearest centre (rounded to uint8). ``k`` must be in 2..256. An image
    with no more than ``k`` distinct colours is returned unchanged (lossless palette). Returns the
    quantised image and its size in bits, ``H*W*ceil(log2 k_eff) + k_eff*24``, where ``k_eff`` is ``k``
    capped at the number of distinct colours (of the fitted pixels).
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    _check_k(k)
    if not _is_int(sample) or sample < 1:
        raise ValueError(f"sample must be a positive integer, not {sample!r}")
    img = _check_image(img)
    h, w, _ = img.shape
    pixels = img.reshape(-1, 3)
    distinct = np.unique(_packed(pixels))
    if len(distinct) <= k:  # the image already fits in a k-colour palette
        return img.copy(), kmeans_bits(len(distinct), img.shape)

    rng = np.random.default_rng(seed)
    fit = pixels if len(pixels) <= sample else pixels[rng.choice(len(pixels), sample, replace=False)]
    k_eff = min(int(k), len(np.unique(_packed(fit))))
    km = KMeans(n_clusters=k_eff, n_init=1, random_state=seed)
    # One OpenMP thread per image: at these sizes scikit-learn's threads cost more than they save (on a
    # busy 2-core machine, 100 ms instead of 7 ms per 64x64 image, from spinning); kmeans_batch runs
    # images on parallel threads instead.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="openmp"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        km.fit(fit.astype(np.float32))
        labels = km.predict(pixels.astype(np.float32))
    palette = np.clip(np.rint(km.cluster_centers_), 0, 255).astype(np.uint8)
    return palette[labels].reshape(h, w, 3), kmeans_bits(k_eff, img.shape)


def kmeans_batch(images, k: int, seed: int = 0, jobs: int | None = None, sample: int = 20000
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`kmeans_quantise` over a batch (N, H, W, 3), images on ``jobs`` threads (default: every
    core; each image fits on one thread, so the result does not depend on ``jobs``).
    Returns (quantised batch, bits per image (N,) int64)."""
    images = _check_batch(images)
    out = np.empty_like(images)
    n_bits = np.empty(len(images), dtype=np.int64)

    def work(i):
        out[i], n_bits[i] = kmeans_quantise(images[i], k, seed=seed, sample=sample)

    _check_k(k)
    _map_rows(work, len(images), jobs)
    return out, n_bits


# ------------------------------------------------------------------------------------------- quality
def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W) or (H, W, C), not shape {a.shape}")
    return a, b


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB (data range 255); ``inf`` for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _check_pair(a, b)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a, b) -> float:
    """Structural similarity (data range 255, colour channels averaged); 1.0 for identical images.

    The window is 7x7, or the largest odd size that fits a smaller image (at least 3x3)."""
    from skimage.metrics import structural_similarity

    a, b = _check_pair(a, b)
    side = min(a.shape[:2])
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, not {a.shape[:2]}")
    if np.array_equal(a, b):
        return 1.0
    win = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(a, b, data_range=255, win_size=win,
                                       channel_axis=-1 if a.ndim == 3 else None))


def jpeg_header_bytes(quality: int, shape, subsampling: int = 2) -> int:
    """Bytes of a JPEG file before its entropy-coded data, plus the 2-byte end marker.

    With fixed settings (baseline, standard Huffman tables, no metadata) the headers are the same for every
    image of one size and quality, and at 64x64 they are most of the file (about 600 of 700 bytes at quality
    1). ``n_bytes - jpeg_header_bytes(...)`` is the payload: what a codec sharing its tables would store."""
    q, sub = _check_quality(quality), check_subsampling(subsampling)
    h, w = shape[:2]
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (128, 128, 128)).save(buf, format="JPEG", quality=q, subsampling=sub,
                                                   optimize=False)
    data = buf.getvalue()
    sos = data.index(b"\xff\xda")
    seg = int.from_bytes(data[sos + 2:sos + 4], "big")
    return sos + 2 + seg + 2
