"""Train/validation/test splits: stratified by class and grouped by ``lesion_id`` (scikit-learn).

HAM10000 holds several photographs of many lesions; an image-level split puts shots of one lesion on both
sides and inflates test scores. The default split is therefore grouped: :class:`StratifiedGroupKFold`
cuts the data into ``n`` folds of whole lesions with class proportions kept, and the folds are dealt to
train/val/test by the requested fractions (70/20/10 -> 10 folds: 7/2/1). The image-level split
(``grouped=False``, :class:`StratifiedKFold`) stays available, explicitly, for the leak comparison.
A split is saved as CSV under the cache, keyed by data fingerprint, fractions, seed and grouping, so
every chapter reads the same one.
"""
from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from .config import cache_dir
from .data import Dataset
from .files import atomic_path
from .registry import CLASSES, SPLITS



def folds_for(fractions) -> tuple[int, list[int]]:
    """The fewest folds n that give the fractions exactly, and how many go to each part.

    >>> folds_for((0.7, 0.2, 0.1))
    (10, [7, 2, 1])
    """
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers (train, val, test) "
                         f"summing to 1, not {list(fractions)}")
    if fr[0] == 0 or fr[2] == 0:
        raise ValueError(f"split fractions {fr}: train and test must both be non-empty")
    exact = [Fraction(f).limit_denominator(100) for f in fr]
    n = int(np.lcm.reduce([q.denominator for q in exact]))
    if n > 100 or any(abs(float(q) - f) > 1e-6 for q, f in zip(exact, fr)):
        raise ValueError(f"split fractions {fr} need more than 100 folds; use multiples of 0.01")
    return n, [int(q * n) for q in exact]


#: fractions to suggest when a class has too few lesions for the requested ones (fewest folds last)
_FALLBACK_FRACTIONS = ((0.7, 0.2, 0.1), (0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.25, 0.25))


def check_splittable(meta: pd.DataFrame, fractions=(0.7, 0.2, 0.1), grouped: bool = True) -> list[str]:
    """Whether ``meta`` can be split by ``fractions``: raise DataError where scikit-learn would fail (fewer
    lesions, or images, than folds in all or in every class: its message,
    "n_splits=10 cannot be greater than the number of members in each class", names neither the classes nor a
    fix); return warnings for classes with fewer lesions (images) than folds, which some part will then lack.
    Both name the classes, their counts and fractions that would work."""
    from .config import DataError
    n, _ = folds_for(fractions)
    unit = "lesion" if grouped else "image"
    counts = (meta.groupby("dx")["lesion_id"].nunique() if grouped else meta["dx"].value_counts()).to_dict()
    small = {c: int(k) for c, k in sorted(counts.items()) if k < n}
    if not small:
        return []
    fewest = min(counts.values())
    works = [f for f in _FALLBACK_FRACTIONS if folds_for(f)[0] <= fewest]
    fix = (f"split.fractions {list(works[0])} ({folds_for(works[0])[0]} folds)" if works else
           f"at least 4 {unit}s per class (drop those classes or add data)")
    what = (f"the {'lesion-grouped' if grouped else 'image-level'} split {list(fractions)} cuts the data into {n} "
            f"folds, but {len(small)} class(es) have fewer {unit}s: {', '.join(f'{c} {k}' for c, k in small.items())}")
    total = meta["lesion_id"].nunique() if grouped else len(meta)
    if total < n or len(small) == len(counts):  # what scikit-learn's (Group)KFold refuse
        raise DataError(f"Cannot split: {what}. Use {fix}.")
    return [f"{what[0].upper()}{what[1:]}: some split parts will have none of them (macro metrics then average "
            f"over fewer classes). To avoid it use {fix}."]


def make_split(meta: pd.DataFrame, fractions=(0.7, 0.2, 0.1), seed: int = 0,
               grouped: bool = True) -> pd.Series:
    """A Series image_id -> 'train' | 'val' | 'test'.

    grouped=True keeps every lesion in one part (StratifiedGroupKFold on lesion_id);
    grouped=False is the image-level split that leaks lesions across parts (for comparison only).
    """
    n, counts = folds_for(fractions)
    for warning in check_splittable(meta, fractions, grouped):
        import warnings
        warnings.warn(warning, stacklevel=2)
    y = meta["label"].to_numpy() if "label" in meta else meta["dx"].map(CLASSES.index).to_numpy()
    x = np.zeros(len(meta))
    if grouped:
        cv = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
        folds = cv.split(x, y, groups=meta["lesion_id"].to_numpy())
    else:
        cv = StratifiedKFold(n_splits=n, shuffle=True, random_state=seed)
        folds = cv.split(x, y)
    fold_of = np.empty(len(meta), dtype=np.int64)
    for k, (_, test_idx) in enumerate(folds):
        fold_of[test_idx] = k
    # Deal folds to the parts in a seeded order, so the test part is not always fold 0.
    order = np.random.default_rng(seed).permutation(n)
    part_of_fold = np.empty(n, dtype=object)
    start = 0
    for part, c in zip(SPLITS, counts):
        part_of_fold[order[start:start + c]] = part
        start += c
    return pd.Series(part_of_fold[fold_of], index=meta["image_id"].to_numpy(), name="split")


def split_path(ds: Dataset, fractions, seed, grouped, cache_root=None) -> Path:
    raw = f"{ds.source}|{ds.fingerprint}|{[float(f) for f in fractions]}|{seed}|{grouped}"
    key = hashlib.sha256(raw.encode()).hexdigest()[:12]
    kind = "grouped" if grouped else "image-level"
    root = Path(cache_root) if cache_root else cache_dir()
    return root / "splits" / f"{ds.source}-{kind}-seed{seed}-{key}.csv"


def get_split(ds: Dataset, fractions=(0.7, 0.2, 0.1), seed: int = 0, grouped: bool = True,
              cache_root=None, log=print) -> pd.Series:
    """The saved split for these settings (made and saved on first use); image_id -> part. A saved file that does
    not read back whole (empty, truncated, other ids or parts) is named through ``log`` and made again."""
    path = split_path(ds, fractions, seed, grouped, cache_root)
    if path.is_file():
        try:
            saved = pd.read_csv(path, dtype=str).set_index("image_id")["split"]
            problem = None if set(saved.index) == set(ds.meta["image_id"]) and set(saved) <= set(SPLITS) else \
                "it does not list every image of the data set once, with its part"
        except (ValueError, KeyError, OSError) as exc:  # pandas' EmptyDataError and ParserError are ValueErrors
            problem = f"it does not read ({type(exc).__name__}: {exc})"
        if problem is None:
            return saved.loc[ds.meta["image_id"]].rename("split")
        log(f"saved split {path} is damaged: {problem}; making it again")
    split = make_split(ds.meta, fractions, seed, grouped)
    with atomic_path(path) as tmp:  # a unique temporary name: chapters running in parallel may both write it
        split.rename_axis("image_id").reset_index().to_csv(tmp, index=False)
    return split


def lesion_overlap(meta: pd.DataFrame, split: pd.Series) -> dict[str, int]:
    """Number of lesions shared by each pair of parts (all zero for a grouped split)."""
    parts = split.reindex(meta["image_id"]).to_numpy()
    lesions = {p: set(meta["lesion_id"][parts == p]) for p in SPLITS}
    return {f"{a}/{b}": len(lesions[a] & lesions[b])
            for i, a in enumerate(SPLITS) for b in SPLITS[i + 1:]}


def split_summary(meta: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Images per class (rows) per part (columns), with totals and each part's share."""
    parts = split.reindex(meta["image_id"]).to_numpy()
    table = pd.crosstab(pd.Categorical(meta["dx"], categories=CLASSES),
                        pd.Categorical(parts, categories=SPLITS), dropna=False)
    table.index.name, table.columns.name = "dx", "split"
    table.loc["total"] = table.sum()
    table["total"] = table.sum(axis=1)
    return table
