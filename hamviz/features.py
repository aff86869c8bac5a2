"""Frozen-backbone features, computed once and kept on disk.

Training a head on a frozen pretrained backbone does not need the backbone again after one pass: the pooled
feature vector of every image (global average of the backbone's last feature map) is all the head sees. On two
CPU cores that pass is minutes (EfficientNet-Lite0 at 224x224: about 45-60 images/s), the head then trains in
seconds, so every imbalance strategy, seed and head can be compared on the same cached features.

An entry ``<cache>/features/<key>.npy`` (float32, N x C, row i = image ``cache.image_ids[i]``) with an
``index.json`` beside it; the key covers the image cache entry (data fingerprint, size, resize mode), the model
and its weights (the content of every file they come from: a preset's files by size and SHA-256, a Keras
application's ImageNet file by md5; or the handle: :func:`hamviz.weights.identity`), the flips averaged over, and
:data:`FEATURES_VERSION`. Entries are published in one step and verified on read (file size, shape and checksum,
:func:`hamviz.cache.load_checked`): a damaged one is named, removed and computed again.

Images that are not in the image cache (the JPEG-coded test sets) go through :func:`image_features`: the same
backbone and preprocessing, nothing kept on disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .cache import Damaged, array_digest, file_bytes, load_checked, publish
from .config import cache_dir
from .files import locked, space_for

#: Part of every feature entry's key: bump when the way features are computed changes.
FEATURES_VERSION = 1
FLIPS = ("none", "hv")  # "hv": the mean of the features of the image and its horizontal and vertical flips


def weights_identity(model: str, weights, size: int | None = None) -> str:
    """What determines the backbone's weights (:func:`hamviz.weights.identity`): the content of every file they
    come from -- a preset folder's files by path, size and SHA-256, a Keras application's ImageNet file (for
    ``size`` x ``size`` inputs) by md5 --, or the handle; files changed under the same name give another
    identity. Raises :class:`hamviz.weights.WeightsError` when the weights are not there."""
    from .weights import identity
    return identity(model, weights, size) or f"{model}|{weights}"


def _size(cache) -> int | None:
    size = getattr(cache, "size", None)
    return int(size[0]) if isinstance(size, (tuple, list)) else size


def feature_key(cache, model: str, weights, flips: str, input_scaling: str = "imagenet") -> str:
    """The key of the features of ``cache``'s images under ``model`` with ``weights``: the image cache entry, the
    content of the weights' files (:func:`weights_identity`), ``flips`` and :data:`FEATURES_VERSION`."""
    scaling = {} if input_scaling == "imagenet" else {"input_scaling": input_scaling}  # earlier keys unchanged
    raw = json.dumps({"cache": Path(cache.path).name, "weights": weights_identity(model, weights, _size(cache)),
                      "flips": flips, "version": FEATURES_VERSION, **scaling}, sort_keys=True)
    return f"{model}-{Path(cache.path).name}-{flips}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def _read(folder: Path, n: int):
    """The features in ``folder`` (one row per image of the ``n`` cached), or None when there are none; raises
    :class:`hamviz.cache.Damaged` naming what is missing or damaged."""
    if not folder.exists():
        return None
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise Damaged(f"index.json is missing or unreadable ({type(exc).__name__})") from None
    try:
        x = load_checked(folder / "features.npy", index["shape"], index["sha"], index.get("bytes"), mmap=False)
    except (KeyError, TypeError) as exc:
        raise Damaged(f"index.json lacks {exc}") from None
    if x.shape[0] != n:
        raise Damaged(f"features.npy has {x.shape[0]} rows for the {n} cached images")
    return x


def _extractor(model: str, weights, size: int, input_scaling: str = "imagenet"):
    """The frozen backbone ``model`` with ``weights`` at ``size`` x ``size``, up to its global average pooling
    ("head_pool"): the classifier hamviz builds (:func:`hamviz.models.build_model`, with its preprocessing as
    the first layer) cut before its head."""
    from .models import build_model, keras
    net = build_model(model, (size, size, 3), 2, weights=weights, trainable="frozen", input_scaling=input_scaling)
    return keras.Model(net.input, net.get_layer("head_pool").output)


def _pooled(extractor, images, flips: str, batch_size: int) -> np.ndarray:
    """(N, C) float32 pooled features of uint8 ``images`` (N, H, W, 3), averaged over the flips."""
    from .pipeline import flip_variants, make_dataset
    variants = [np.asarray(images)] if flips == "none" else flip_variants(images)
    feats = sum(extractor.predict(make_dataset(v, batch_size=batch_size), verbose=0) for v in variants)
    return (feats / len(variants)).astype(np.float32)


def backbone_features(view, model: str = "efficientnet_lite0", weights="imagenet", *, flips: str = "none",
                      batch_size: int = 64, cache_root=None, log=print, input_scaling: str = "imagenet") -> np.ndarray:
    """Pooled features (N, C) float32 of every image of ``view`` (a :class:`hamviz.view.PreparedView`; row i =
    ``view.image_ids[i]``) under the frozen backbone ``model`` with ``weights`` at the view's size, computed once
    and read from ``<cache>/features/`` afterwards. ``flips="hv"`` averages the features of each image and its
    horizontal and vertical mirror images (test-time augmentation for a flip-invariant task). ``input_scaling``:
    the backbone's own ImageNet preprocessing ("imagenet") or pixels / 255 ("unit"), as the model the features
    feed (:func:`hamviz.models.transfer_model`).
    Raises ValueError for an unknown ``flips``, :class:`hamviz.weights.WeightsError` for missing weights."""
    if flips not in FLIPS:
        raise ValueError(f"flips must be one of {FLIPS}, not {flips!r}")
    cache = view.cache
    root = Path(cache_root) if cache_root else cache_dir()
    key = feature_key(cache, model, weights, flips, input_scaling)
    folder = root / "features" / key
    try:
        found = _read(folder, len(cache.image_ids))
    except Damaged:
        found = None
    if found is not None:
        return found
    # computed once: a second process asking for the same features (parallel chapters) waits and reads them
    with locked(root / "locks" / "features" / f"{key}.lock"):
        try:
            found = _read(folder, len(cache.image_ids))
        except Damaged as exc:
            log(f"cached features {folder} are damaged: {exc}; removing them and computing them again")
        if found is not None:
            return found
        shutil.rmtree(folder, ignore_errors=True)
        return _compute(view, folder, model, weights, flips, batch_size, log, input_scaling)


def _compute(view, folder: Path, model: str, weights, flips: str, batch_size: int, log,
             input_scaling: str = "imagenet") -> np.ndarray:
    """:func:`backbone_features`' work: compute and publish the features into ``folder``."""
    cache = view.cache
    extractor = _extractor(model, weights, view.size, input_scaling)
    log(f"computing {model} features of {len(cache.image_ids)} images at {view.size}x{view.size} (flips: {flips})")
    t = time.time()
    feats = _pooled(extractor, view.images, flips, batch_size)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        with space_for(folder.parent, feats.nbytes, "the frozen features"):
            np.save(tmp / "features.npy", feats)
        publish(tmp, folder, {"version": FEATURES_VERSION, "model": model,
                              "weights": weights_identity(model, weights, _size(cache)),
                              "cache_entry": Path(cache.path).name, "flips": flips, "shape": list(feats.shape),
                              "sha": array_digest(feats), "bytes": file_bytes(tmp / "features.npy"),
                              "seconds": round(time.time() - t, 1)})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return feats


def image_features(images, model: str = "efficientnet_lite0", weights="imagenet", *, flips: str = "none",
                   batch_size: int = 64):
    """Pooled features (N, C) float32 of arbitrary uint8 images (N, H, W, 3), H = W, under the frozen backbone
    ``model`` with ``weights`` (Tan & Le 2019 for EfficientNet-Lite0), built and preprocessed exactly as
    :func:`backbone_features` does at that size, but **not cached**: for images outside the image cache, e.g.
    the JPEG-coded test sets of :func:`hamviz.cache.jpeg_test_sets`. ``images`` may also be a mapping
    key -> such arrays, all of one size: the backbone is then built once and a dict with the same keys comes
    back. C = 1280 for EfficientNet-Lite0.

    Raises ValueError for an unknown ``flips``, images that are not (N, S, S, 3) uint8 or of mixed sizes,
    :class:`hamviz.models.ModelError` for an input smaller than the model takes and
    :class:`hamviz.weights.WeightsError` for missing weights."""
    if flips not in FLIPS:
        raise ValueError(f"flips must be one of {FLIPS}, not {flips!r}")
    arrays = dict(images) if isinstance(images, dict) else {None: images}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    shapes = {v.shape[1:] for v in arrays.values()}
    bad = [k for k, v in arrays.items() if v.ndim != 4 or v.shape[-1] != 3 or v.shape[1] != v.shape[2]
           or v.dtype != np.uint8]
    if bad or len(shapes) > 1 or not arrays:
        raise ValueError(f"images must be uint8 (N, S, S, 3) arrays of one size S, got "
                         f"{[(str(v.dtype), v.shape) for v in arrays.values()]}")
    extractor = _extractor(model, weights, next(iter(shapes))[0])
    out = {k: _pooled(extractor, v, flips, batch_size) for k, v in arrays.items()}
    return out if isinstance(images, dict) else out[None]
