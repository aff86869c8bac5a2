"""Train/validation/test splits: stratified by class and grouped by ``lesion_id`` (scikit-learn).

HAM10000 holds several photographs of many lesions; an image-level split puts shots of one lesion on both
sides and inflates test scores. The default split is therefore grouped: :class:`StratifiedGroupKFold`
cuts the data into ``n`` folds of whole lesions with class proportions kept, and the folds are dealt to
train/val/test by the requested fractions (70/20/10 -> 10 folds: 7/2/1). The image-level split
(``grouped=False``, :class:`StratifiedKFold`) stays available, explicitly, for the leak comparison.
A split is saved as CSV under the cache, keyed by data fingerprint, fractions, seed and grouping, so
every chapter reads the same one.

Every split carries its class balance (``split.attrs["balance"]``, :func:`split_balance`): each class's share of each
part, checked against the requested fractions within :data:`BALANCE_TOLERANCE` points for every class with enough
lesions; a split outside it is a :class:`SplitBalanceWarning` naming the class and the part
(:func:`check_split_balance` makes it an error). scikit-learn before 1.8 has a StratifiedGroupKFold(shuffle=True)
defect (scikit-learn issue #32478) that makes the lesion-grouped split no better stratified than a random grouping:
hamviz requires 1.8 and names an older one at run time (:func:`sklearn_defect`).
"""
from __future__ import annotations

import hashlib
import re
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from .config import DataError, cache_dir
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


#: the first scikit-learn whose StratifiedGroupKFold(shuffle=True) stratifies (scikit-learn PR #32540)
SKLEARN_FIXED = (1, 8)
#: how far (percentage points) a class's share of a split part may be from the requested fraction
BALANCE_TOLERANCE = 3.0
#: a class is held to the tolerance when it has at least this many lesions (images, image-level split) per fold:
#: fewer cannot be dealt finely enough (HAM10000's smallest class, df, has 73 lesions: 7 per fold of 10)
MIN_UNITS_PER_FOLD = 5


class SplitBalanceWarning(RuntimeWarning):
    """A split whose class balance is off (a class's share of a part beyond the tolerance), or a scikit-learn with
    the grouped-split defect."""


class SplitBalanceError(DataError):
    """A split whose class balance is off: :func:`check_split_balance`."""


def sklearn_defect() -> str | None:
    """What is wrong with the installed scikit-learn's lesion-grouped split, or None: before 1.8,
    StratifiedGroupKFold(shuffle=True) shuffles the lesions' class counts without their ids (scikit-learn issue
    #32478), so its folds are a random grouping, not a stratified one."""
    import sklearn
    found = [int(v) for v in re.findall(r"\d+", sklearn.__version__)[:2]]
    if len(found) < 2 or tuple(found) >= SKLEARN_FIXED:
        return None
    return (f"scikit-learn {sklearn.__version__} has the StratifiedGroupKFold(shuffle=True) defect (scikit-learn "
            f"issue #32478, fixed in 1.8): its lesion-grouped folds are a random grouping, not a stratified one (up "
            f"to 10.8 points off 70/20/10 for a class of HAM10000, over seeds). Upgrade: pip install "
            f"'scikit-learn>=1.8' (hamviz requires it); then delete the saved splits (<cache>/splits) to make them "
            f"again")


def split_balance(meta: pd.DataFrame, split: pd.Series, fractions=(0.7, 0.2, 0.1), grouped: bool = True,
                  tolerance: float = BALANCE_TOLERANCE) -> dict:
    """The class balance of ``split`` (image_id -> part) over ``meta``, as recorded with every split
    (``split.attrs["balance"]``): ``shares`` {class: {part: share of the class's images}}, ``max_deviation_points``
    (largest distance of a checked share from its part's requested fraction, in points), ``tolerance_points``,
    ``checked_classes`` and ``unchecked_classes`` (fewer than :data:`MIN_UNITS_PER_FOLD` lesions, or images for an
    image-level split, per fold), ``problems`` (one line per share beyond the tolerance, naming class and part) and
    the ``scikit_learn`` version."""
    import sklearn
    n, _ = folds_for(fractions)
    requested = dict(zip(SPLITS, (float(f) for f in fractions)))
    parts = split.reindex(meta["image_id"]).to_numpy()
    dx = meta["dx"].to_numpy()
    units = (meta.groupby("dx")["lesion_id"].nunique() if grouped else meta["dx"].value_counts()).to_dict()
    shares, checked, unchecked, problems, worst = {}, [], [], [], 0.0
    for c in (c for c in CLASSES if c in units):
        share = {p: float((parts[dx == c] == p).mean()) for p in SPLITS}
        shares[c] = {p: round(v, 4) for p, v in share.items()}
        if units[c] < MIN_UNITS_PER_FOLD * n:
            unchecked.append(c)
            continue
        checked.append(c)
        for p in SPLITS:
            off = 100 * abs(share[p] - requested[p])
            worst = max(worst, off)
            if off > tolerance:
                problems.append(f"{c}: {100 * share[p]:.1f} % of its images in the {p} part, requested "
                                f"{100 * requested[p]:g} % ({off:.1f} points off)")
    return {"fractions": list(requested.values()), "grouped": bool(grouped), "shares": shares,
            "max_deviation_points": round(worst, 2), "tolerance_points": float(tolerance),
            "checked_classes": checked, "unchecked_classes": unchecked,
            "min_per_class": MIN_UNITS_PER_FOLD * n, "problems": problems, "scikit_learn": sklearn.__version__}


def _balance_message(balance: dict) -> str:
    unit = "lesions" if balance["grouped"] else "images"
    fix = sklearn_defect() or ("scikit-learn's stratified folds keep every class within a point or two: check the "
                               "metadata (lesion ids, labels), or try another seed")
    return (f"The {'lesion-grouped' if balance['grouped'] else 'image-level'} split is badly stratified: "
            f"{'; '.join(balance['problems'])} (tolerance {balance['tolerance_points']:g} points for each class with "
            f"at least {balance['min_per_class']} {unit}). Fix: {fix}.")


def check_split_balance(meta: pd.DataFrame, split: pd.Series, fractions=(0.7, 0.2, 0.1), grouped: bool = True,
                        tolerance: float = BALANCE_TOLERANCE) -> dict:
    """:func:`split_balance`; raises :class:`SplitBalanceError` naming every class and part beyond the tolerance."""
    balance = split_balance(meta, split, fractions, grouped, tolerance)
    if balance["problems"]:
        raise SplitBalanceError(_balance_message(balance))
    return balance


def _with_balance(split: pd.Series, meta: pd.DataFrame, fractions, grouped: bool) -> pd.Series:
    """``split`` with its class balance recorded (``attrs["balance"]``); a :class:`SplitBalanceWarning` naming each
    class and part beyond the tolerance."""
    split.attrs["balance"] = balance = split_balance(meta, split, fractions, grouped)
    if balance["problems"]:
        warnings.warn(SplitBalanceWarning(_balance_message(balance)), stacklevel=3)
    return split


def make_split(meta: pd.DataFrame, fractions=(0.7, 0.2, 0.1), seed: int = 0,
               grouped: bool = True) -> pd.Series:
    """A Series image_id -> 'train' | 'val' | 'test', its class balance in ``attrs["balance"]``
    (:func:`split_balance`; a :class:`SplitBalanceWarning` when a class's share of a part is off).

    grouped=True keeps every lesion in one part (StratifiedGroupKFold on lesion_id);
    grouped=False is the image-level split that leaks lesions across parts (for comparison only).
    """
    n, counts = folds_for(fractions)
    for warning in check_splittable(meta, fractions, grouped):
        warnings.warn(warning, stacklevel=2)
    if grouped and (defect := sklearn_defect()):
        warnings.warn(SplitBalanceWarning(defect), stacklevel=2)
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
    split = pd.Series(part_of_fold[fold_of], index=meta["image_id"].to_numpy(), name="split")
    return _with_balance(split, meta, fractions, grouped)


def split_path(ds: Dataset, fractions, seed, grouped, cache_root=None) -> Path:
    raw = f"{ds.source}|{ds.fingerprint}|{[float(f) for f in fractions]}|{seed}|{grouped}"
    key = hashlib.sha256(raw.encode()).hexdigest()[:12]
    kind = "grouped" if grouped else "image-level"
    root = Path(cache_root) if cache_root else cache_dir()
    return root / "splits" / f"{ds.source}-{kind}-seed{seed}-{key}.csv"


def get_split(ds: Dataset, fractions=(0.7, 0.2, 0.1), seed: int = 0, grouped: bool = True,
              cache_root=None, log=print) -> pd.Series:
    """The saved split for these settings (made and saved on first use); image_id -> part, its class balance in
    ``attrs["balance"]`` (checked again when read: a split saved under a scikit-learn with the grouped-split defect
    is named). A saved file that does not read back whole (empty, truncated, other ids or parts) is named through
    ``log`` and made again."""
    path = split_path(ds, fractions, seed, grouped, cache_root)
    if path.is_file():
        try:
            saved = pd.read_csv(path, dtype=str).set_index("image_id")["split"]
            problem = None if set(saved.index) == set(ds.meta["image_id"]) and set(saved) <= set(SPLITS) else \
                "it does not list every image of the data set once, with its part"
        except (ValueError, KeyError, OSError) as exc:  # pandas' EmptyDataError and ParserError are ValueErrors
            problem = f"it does not read ({type(exc).__name__}: {exc})"
        if problem is None:
            return _with_balance(saved.loc[ds.meta["image_id"]].rename("split"), ds.meta, fractions, grouped)
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
