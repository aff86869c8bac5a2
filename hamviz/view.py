"""The prepared view every chapter works on: images at one size with their labels, lesion groups and one split,
aligned row for row, built once per (data set, image size, split).

Row ``i`` of every array is image ``image_ids[i]`` of the decoded-image cache; ``rows[part]`` are the row
numbers of a split part. Nothing downstream re-aligns labels or rows: a chapter takes a :class:`PreparedView`,
a binary task is :meth:`PreparedView.relabel`, a class subset is :meth:`PreparedView.subset`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .registry import CLASSES, SPLITS


@dataclass(frozen=True)
class PreparedView:
    """Images, labels, lesion groups and split parts of one data set at one size.

    data: the :class:`hamviz.data.Dataset`; cache: its :class:`hamviz.cache.ImageCache` (``cache.images``
    uint8 (N, H, W, 3)); labels: int64 (N,), index into ``classes``, -1 for rows outside a subset; groups:
    lesion ids (N,); split: image_id -> part; split_id: names the split (and any relabelling) in model keys;
    rows: part -> int64 row numbers into the cache; classes: the label names; resize: how the cache's images were
    brought to size (stretch, crop or pad: :func:`hamviz.cache.resize_image`).
    """

    data: object
    cache: object
    labels: np.ndarray
    groups: np.ndarray
    split: pd.Series
    split_id: str
    grouped: bool
    rows: dict
    classes: tuple = CLASSES
    resize: str = "stretch"

    @property
    def fingerprint(self) -> str:
        return self.data.fingerprint

    @property
    def image_ids(self) -> list[str]:
        return self.cache.image_ids

    @property
    def size(self) -> int:
        return int(self.cache.size[0])

    @property
    def meta(self) -> pd.DataFrame:
        """The data set's metadata (lesion_id, dx, dx_type, age, sex, localization, ...) in this view's row order
        (the cache's), indexed by image_id."""
        return self.data.meta.set_index("image_id").loc[list(self.image_ids)]

    @property
    def images(self) -> np.ndarray:
        """Every cached image (N, H, W, 3) uint8, in memory."""
        return np.asarray(self.cache.images)

    def absent_classes(self) -> dict[str, list[str]]:
        """part -> the classes (names) with no image in that part, for the parts that lack some (a class with
        fewer lesions than the split has folds cannot be in every part of a lesion-grouped split)."""
        out = {}
        for p in SPLITS:
            have = set(self.labels[self.rows[p]].tolist())
            missing = [c for k, c in enumerate(self.classes) if k not in have]
            if missing:
                out[p] = missing
        return out

    def split_warnings(self) -> list[str]:
        """One warning per split part that lacks a class (:meth:`absent_classes`): what it means for that part's
        macro metrics, and the fix."""
        return [f"the {part} part has no image of {', '.join(missing)} (too few lesions for every part of the "
                f"split): its balanced accuracy, macro-F1 and macro AUC average over the other "
                f"{len(self.classes) - len(missing)} classes. More data of "
                f"{'that class' if len(missing) == 1 else 'those classes'} or fewer folds (split.fractions, e.g. "
                f"[0.5, 0.25, 0.25]) puts {'it' if len(missing) == 1 else 'them'} in every part."
                for part, missing in self.absent_classes().items()]

    def part(self, part: str):
        """(images, labels, groups) of one split part."""
        r = self.rows[part]
        return np.asarray(self.cache.images[r]), self.labels[r], self.groups[r]

    def relabel(self, labels, tag: str, classes) -> "PreparedView":
        """The same images and split with other labels (e.g. benign/malignant); ``tag`` joins the split id so
        that models trained on the new labels get keys of their own."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != self.labels.shape:
            raise ValueError(f"relabel needs {len(self.labels)} labels, got {labels.shape}")
        return replace(self, labels=labels, split_id=f"{self.split_id}|{tag}", classes=tuple(classes))

    def subset(self, keep) -> "PreparedView":
        """Only the rows of the classes in ``keep`` (names; None: all), labels renumbered 0..K-1 in the
        order given (-1 for other rows, which leave every part)."""
        if keep is None:
            return self
        keep = [str(k) for k in keep]
        unknown = [k for k in keep if k not in self.classes]
        if unknown or len(set(keep)) != len(keep) or not keep:
            raise ValueError(f"keep must be distinct names among {list(self.classes)}, got {keep}")
        new_of_old = np.full(len(self.classes), -1, dtype=np.int64)
        for new, k in enumerate(keep):
            new_of_old[self.classes.index(k)] = new
        labels = np.where(self.labels >= 0, new_of_old[np.clip(self.labels, 0, None)], -1)
        rows = {p: r[labels[r] >= 0] for p, r in self.rows.items()}
        return replace(self, labels=labels, rows=rows, classes=tuple(keep))

    def _parts(self, rows: dict) -> pd.Series:
        """image_id -> part of ``rows`` (row numbers per split part); images in none of them are "unused"."""
        parts = pd.Series("unused", index=self.split.index)
        ids = np.asarray(self.image_ids)
        for p in SPLITS:
            parts[ids[rows[p]]] = p
        return parts

    def with_siblings_in_training(self, seed: int = 0) -> "PreparedView":
        """The leak audit's paired design on a lesion-grouped view: for every test lesion with several images, one
        image (drawn with ``seed``) stays in the test part and its other shots move to training; as many training
        images (drawn at random) leave the training part, so that both arms train on as many images. A model
        trained on the returned view has seen other shots of some test lesions; a model trained on this view has
        not; both are scored on the same test images. Returns the view: ``rows["test"]`` are those images (a
        subset of this view's), ``rows["test_leaked"]`` the ones whose lesion has shots in its training part,
        ``split_id`` names the design and seed. Raises ValueError on an image-level view (it has no lesion-disjoint test
        part)."""
        if not self.grouped:
            raise ValueError("with_siblings_in_training needs the lesion-grouped view (grouped=True)")
        rng = np.random.default_rng(seed)
        test = self.rows["test"]
        keep, moved, leaked = [], [], []
        for lesion in pd.unique(self.groups[test]):
            shots = test[self.groups[test] == lesion]
            stay = int(rng.choice(shots))
            keep.append(stay)
            moved += [int(r) for r in shots if r != stay]
            if len(shots) > 1:
                leaked.append(stay)
        train = self.rows["train"]
        dropped = rng.choice(train, size=len(moved), replace=False) if moved else np.array([], dtype=np.int64)
        rows = {"train": np.sort(np.concatenate([np.setdiff1d(train, dropped), np.asarray(moved, dtype=np.int64)])),
                "val": self.rows["val"], "test": np.sort(np.asarray(keep, dtype=np.int64)),
                "test_leaked": np.sort(np.asarray(leaked, dtype=np.int64))}
        return replace(self, split=self._parts(rows), split_id=f"{self.split_id}|siblings-in-training-{seed}",
                       rows=rows)

    def with_single_image_holdout(self, fraction: float = 0.2, seed: int = 0) -> "PreparedView":
        """Zhang et al.'s split, as its numbers read: a test part and a validation part, each ``fraction`` of the
        images of lesions photographed once (drawn stratified by class with ``seed``), every other image -- all
        shots of every lesion photographed more than once included -- in training. The text says only "Since the
        dataset contains only 7,809 non-duplicated images, we used all these image into training set, and
        separated the rest of the images into validation set (1,103 images), and test set (1,103 images)"; 1,103 is
        20 % of HAM10000's 5,514 single-image lesions and 7,809 the rest, which is hamviz's reading (the class
        stratification is hamviz's choice). The split is lesion-disjoint, but its validation and test populations
        are single-image lesions only. Returns the view (``split_id`` names the design, fraction and seed);
        raises ValueError when ``fraction`` is not in (0, 0.5) or a class has fewer than two single-image
        lesions among the labelled rows."""
        from sklearn.model_selection import train_test_split
        if not 0 < fraction < 0.5:
            raise ValueError(f"fraction must be in (0, 0.5) (each of validation and test), got {fraction}")
        labelled = np.flatnonzero(self.labels >= 0)
        shots = pd.Series(self.groups[labelled]).map(pd.Series(self.groups[labelled]).value_counts()).to_numpy()
        single = labelled[shots == 1]
        n = int(round(fraction * len(single)))
        try:
            rest, test = train_test_split(single, test_size=n, stratify=self.labels[single], random_state=seed)
            rest, val = train_test_split(rest, test_size=n, stratify=self.labels[rest], random_state=seed)
        except ValueError as exc:  # scikit-learn: "The least populated class in y has only 1 member"
            raise ValueError(f"the single-image holdout needs at least two single-image lesions of every class and "
                             f"{n} images for each of validation and test: {exc}") from exc
        rows = {"train": np.setdiff1d(labelled, np.concatenate([val, test])), "val": np.sort(val),
                "test": np.sort(test)}
        return replace(self, split=self._parts(rows), rows=rows,
                       split_id=f"{self.split_id}|single-image-holdout-{fraction:g}-{seed}")


def prepare(data, size: int, *, resize: str = "stretch", on_corrupt: str = "error", fractions=(0.7, 0.2, 0.1),
            seed: int = 0, grouped: bool = True, masks=None, cache_root=None) -> PreparedView:
    """The :class:`PreparedView` of data set ``data`` at ``size`` x ``size`` (decoded once into the image cache)
    with its saved split (made on first use, see :func:`hamviz.splits.get_split`)."""
    from .cache import build_cache
    from .splits import get_split, split_path
    cache = build_cache(data, size, mode=resize, on_corrupt=on_corrupt, masks=masks, cache_root=cache_root)
    meta = data.meta.set_index("image_id").loc[cache.image_ids]
    split = get_split(data, fractions, seed, grouped, cache_root)
    sid = split_path(data, fractions, seed, grouped, cache_root).stem
    parts = split.reindex(cache.image_ids).to_numpy()
    rows = {p: np.flatnonzero(parts == p) for p in SPLITS}
    return PreparedView(data, cache, meta["label"].to_numpy().astype(np.int64), meta["lesion_id"].to_numpy(),
                        split, sid, grouped, rows, tuple(data.classes), resize)
