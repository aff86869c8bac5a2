"""Class balancing: oversampling indices and class weights (the imbalance strategies S2-S5).

The five strategies of the imbalance study this package reproduces (Zhang; :data:`hamviz.registry.STRATEGIES`):
S1 none; S2 ``oversample(labels, "below", min_size=1000)`` (Zhang: "only sampling the minority classes with the
sizes smaller than 1000"; up to 1000 is hamviz's reading); S3 ``oversample(labels, "majority")``;
S4 ``class_weights(labels)`` (scikit-learn's "balanced" weights, King & Zeng 2001); S5 S4 + S2. Oversampling repeats
(never invents) training rows; apply it to the training part only, after the split, or duplicated images leak into
validation and test.
"""
from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

MODES = ("none", "below", "majority")


def _draw(idx: np.ndarray, k: int, rng) -> np.ndarray:
    """``k`` rows of ``idx``: every row k // len(idx) times, then k % len(idx) distinct ones drawn by ``rng``."""
    reps, rest = divmod(k, len(idx))
    return np.concatenate([np.tile(idx, reps), rng.choice(idx, size=rest, replace=False)])


def oversample(labels, mode: str = "below", *, min_size: int = 1000, seed: int = 0,
               shuffle: bool = True) -> np.ndarray:
    """Indices into ``labels`` with minority classes repeated (sampled with replacement beyond whole copies).

    mode "below": every class smaller than ``min_size`` is brought up to ``min_size``;
    mode "majority": every class is brought up to the size of the largest; "none": identity.
    """
    labels = np.asarray(labels)
    if mode not in MODES:
        raise ValueError(f"oversampling mode must be one of {MODES}, not {mode!r}")
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1, not {min_size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    target = {"none": None, "below": min_size, "majority": counts.max()}[mode]
    out = []
    for c, n in zip(classes, counts):
        idx = np.flatnonzero(labels == c)
        out.append(idx)
        if target is not None and n < target:
            out.append(_draw(idx, target - n, rng))
    result = np.concatenate(out)
    return rng.permutation(result) if shuffle else np.sort(result)


def per_class(labels, size: int, *, seed: int = 0, shuffle: bool = True) -> np.ndarray:
    """Indices into ``labels`` giving every class present exactly ``size`` rows: a class with more is
    subsampled without replacement, one with fewer is repeated whole and topped up without replacement (as
    :func:`oversample`). hamviz's stand-in for the hypervector reference's training set (Barros Everett: 600 images
    of each class, augmented up from about 400 originals). Raises ValueError if ``size`` < 1."""
    labels = np.asarray(labels)
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        out.append(_draw(np.flatnonzero(labels == c), size, rng))
    result = np.concatenate(out).astype(np.int64)
    return rng.permutation(result) if shuffle else np.sort(result)


def cap_per_class(labels, size: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices into ``labels`` keeping at most ``size`` rows of every class (drawn without replacement; a
    smaller class keeps all its rows): the "about 400 originals" per class that Barros Everett augmented up to
    600 (:func:`per_class` then repeats them). Raises ValueError if ``size`` < 1."""
    labels = np.asarray(labels)
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    rng = np.random.default_rng(seed)
    keep = [rng.choice(rows, min(size, len(rows)), replace=False)
            for rows in (np.flatnonzero(labels == c) for c in np.unique(labels))]
    return np.sort(np.concatenate(keep)).astype(np.int64) if keep else np.array([], dtype=np.int64)


def class_weights(labels, n_classes: int | None = None) -> dict[int, float]:
    """'balanced' weights n_samples / (n_classes * count) per class, as Keras ``class_weight``.

    Classes absent from ``labels`` (possible with small subsets) get weight 0 and a warning is not needed:
    they contribute no loss anyway."""
    labels = np.asarray(labels)
    present = np.unique(labels)
    w = compute_class_weight("balanced", classes=present, y=labels)
    weights = {int(c): float(v) for c, v in zip(present, w)}
    if n_classes is not None:
        for c in range(n_classes):
            weights.setdefault(c, 0.0)
    return weights
