"""Benign-vs-malignant ensembles: binary labels, small searchable CNNs, combiners, thresholds and reports.

The reference (Bunu et al.) turns HAM10000 into a binary task, benign vs malignant (it names melanoma and basal
cell carcinoma; malignant = mel, bcc, akiec is hamviz's reading and a parameter here), and combines four models
(VGG19, InceptionV3, two searched CNNs) by majority vote, mean probability and accuracy-weighted mean probability;
its final ensemble kept the top 3 ("After removing the first model, our final result improved"; which one is not
stated). Its two small CNNs were chosen by a random search over the architecture and the optimiser
(:mod:`hamviz.search`, the CNN is :func:`hamviz.models.configurable_cnn`).

Conventions used throughout:

* A member's output is its **probability of malignant**, one number per image. Member outputs are stacked
  as ``P`` with shape ``(M, N)``: M members, N images.
* An image is called malignant when ``p >= threshold`` (scikit-learn's ``roc_curve`` convention), in
  :func:`binary_report`, :func:`majority_vote` and :func:`threshold_for_sensitivity` alike.
* **Everything fitted is fitted on VALIDATION predictions only**: the accuracy weights
  (:func:`fit_combiner`), the stacking regression (:func:`fit_stacking`) and the operating threshold
  (:func:`threshold_for_sensitivity`). The test set is only ever scored. Fitting any of them on test
  predictions would report an optimistic, leaked number. A fitted combiner's own validation score (and the
  threshold and choices made from it) comes from cross-fitted, out-of-fold predictions (:func:`out_of_fold`):
  scored on the predictions it was fitted to, stacking would win every validation comparison by construction.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from .registry import BINARY_CLASSES, CLASSES, COMBINERS, MALIGNANT  # noqa: F401


# --------------------------------------------------------------------------------------------- labels
def _check_malignant(malignant, classes) -> list[str]:
    malignant = [malignant] if isinstance(malignant, str) else list(malignant)
    unknown = [m for m in malignant if m not in classes]
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown} in malignant; classes are {list(classes)}")
    if not malignant:
        raise ValueError("malignant must name at least one class")
    return malignant


def binary_labels(dx_or_labels, malignant: Sequence[str] = MALIGNANT,
                  classes: Sequence[str] = CLASSES) -> np.ndarray:
    """0/1 labels (int64, 1 = malignant) from diagnosis names (``"mel"``...) or integer labels (label i
    means ``classes[i]``). ValueError for a name in ``malignant`` that is not a class, an unknown
    diagnosis name or an integer label out of range."""
    from .metrics import check_labels
    classes = list(classes)
    malignant = _check_malignant(malignant, classes)
    y = check_labels(np.asarray(dx_or_labels), classes, name="dx_or_labels")
    return np.isin(y, [classes.index(m) for m in malignant]).astype(np.int64)


def check_binary(y, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of 0/1 labels, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 labels (1 = malignant); found "
                         f"{sorted(set(np.unique(y).tolist()) - {0, 1})[:5]} (use binary_labels)")
    return y.astype(np.int64)


def check_probability(p, n: int | None = None, name: str = "p") -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one probability per image), got shape {p.shape}")
    if n is not None and len(p) != n:
        raise ValueError(f"shape mismatch: {n} labels but {len(p)} probabilities in {name}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"{name} must be finite probabilities in [0, 1]")
    return p


def check_members(P, name: str = "P") -> np.ndarray:
    """Member probabilities as (M, N); a single member (N,) becomes (1, N)."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 1:
        P = P[None, :]
    if P.ndim != 2 or P.shape[0] < 1 or P.shape[1] < 1:
        raise ValueError(f"{name} must have shape (members, images), got {P.shape}")
    if not np.isfinite(P).all() or (P < 0).any() or (P > 1).any():
        raise ValueError(f"{name} must hold finite probabilities of malignant in [0, 1]")
    return P


# --------------------------------------------------------------------------------------------- combiners
def majority_vote(P, threshold: float = 0.5) -> np.ndarray:
    """The fraction of members voting malignant (member p >= threshold), per image: (N,) in [0, 1].

    Read at 0.5 this is the majority vote. With an even number of members a tie gives exactly 0.5, which
    the p >= threshold rule calls malignant: ties go to malignant, the cautious side for a screening task.
    """
    P = check_members(P)
    return (P >= threshold).mean(axis=0)


def mean_prob(P) -> np.ndarray:
    """The members' mean probability of malignant, per image (N,)."""
    return check_members(P).mean(axis=0)


def weighted_mean(P, weights) -> np.ndarray:
    """Weighted mean probability (N,): weights (M,), non-negative, e.g. the members' VALIDATION accuracies;
    normalised to sum 1 here."""
    P = check_members(P)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if len(w) != len(P):
        raise ValueError(f"{len(P)} members but {len(w)} weights")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
    return (w / w.sum()) @ P


def fit_stacking(P_val, y_val, C: float = 1.0) -> LogisticRegression:
    """Stacking: a scikit-learn LogisticRegression (L2, inverse strength ``C``) on the members'
    probabilities as features, FITTED ON VALIDATION PREDICTIONS ONLY (never on test). Learns which
    members to trust; a noise member gets a weight near 0."""
    P = check_members(P_val, "P_val")
    y = check_binary(y_val, "y_val")
    if len(y) != P.shape[1]:
        raise ValueError(f"shape mismatch: {len(y)} labels but {P.shape[1]} images in P_val")
    if len(np.unique(y)) < 2:
        raise ValueError("stacking needs both benign and malignant images in the validation labels")
    return LogisticRegression(C=C, max_iter=1000).fit(P.T, y)


def stacked(model: LogisticRegression, P) -> np.ndarray:
    """The stacking model's probability of malignant (N,) for member probabilities P (M, N)."""
    P = check_members(P)
    if getattr(model, "n_features_in_", P.shape[0]) != P.shape[0]:
        raise ValueError(f"the stacking model was fitted on {model.n_features_in_} members, P has {P.shape[0]}")
    return model.predict_proba(P.T)[:, list(model.classes_).index(1)]


def fit_combiner(name: str, P_val, y_val, *, threshold: float = 0.5, C: float = 1.0):
    """What :func:`combine` needs as ``fitted`` for ``name``, from VALIDATION predictions only:
    accuracy-weighted -> the members' validation accuracies at ``threshold`` (M,); stacking -> the fitted
    LogisticRegression; vote and mean -> None (nothing to fit)."""
    _check_name(name)
    if name == "accuracy-weighted":
        P, y = check_members(P_val, "P_val"), check_binary(y_val, "y_val")
        if len(y) != P.shape[1]:
            raise ValueError(f"shape mismatch: {len(y)} labels but {P.shape[1]} images in P_val")
        return ((P >= threshold) == y[None, :]).mean(axis=1)
    if name == "stacking":
        return fit_stacking(P_val, y_val, C=C)
    return None


def _check_name(name):
    if name not in COMBINERS:
        raise ValueError(f"unknown combiner {name!r}: one of {', '.join(COMBINERS)}")


def combine(name: str, P, fitted=None) -> np.ndarray:
    """Ensemble probability of malignant (N,) by combiner ``name``: "vote" (:func:`majority_vote`),
    "mean" (:func:`mean_prob`), "accuracy-weighted" (:func:`weighted_mean`, ``fitted`` = weights) or
    "stacking" (:func:`stacked`, ``fitted`` = the LogisticRegression). Get ``fitted`` from
    :func:`fit_combiner` on VALIDATION predictions."""
    _check_name(name)
    if name == "vote":
        return majority_vote(P)
    if name == "mean":
        return mean_prob(P)
    if fitted is None:
        raise ValueError(f"combiner {name!r} needs fitted= (from fit_combiner({name!r}, P_val, y_val))")
    if name == "accuracy-weighted":
        return weighted_mean(P, fitted)
    return stacked(fitted, P)


def out_of_fold(name: str, P_val, y_val, groups=None, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-fitted VALIDATION probabilities (N,) of combiner ``name``: for a fitted combiner (accuracy-weighted,
    stacking) each validation image is scored by the combiner fitted on the other ``folds - 1`` folds
    (scikit-learn's StratifiedGroupKFold over ``groups``, the lesion ids, so one lesion's images share a fold;
    StratifiedKFold without groups); "vote" and "mean" fit nothing and are returned as they are.

    Why: a combiner scored on the predictions it was fitted to looks better than it is (stacking most), so its
    validation AUC, the threshold chosen on validation and any choice between combiners by validation score
    must use these out-of-fold probabilities; the test part is scored by the combiner fitted on all of
    validation (:func:`fit_combiner`). A class with fewer images (lesions) than ``folds`` lowers the folds to
    that number; fewer than 2 raises ValueError."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    _check_name(name)
    P, y = check_members(P_val, "P_val"), check_binary(y_val, "y_val")
    if len(y) != P.shape[1]:
        raise ValueError(f"shape mismatch: {len(y)} labels but {P.shape[1]} images in P_val")
    if name in ("vote", "mean"):
        return combine(name, P)
    counts = np.bincount(y, minlength=2) if groups is None else np.array(
        [len(np.unique(np.asarray(groups)[y == c])) for c in (0, 1)])
    if counts.min() < 2:
        raise ValueError(f"cross-fitting {name!r} needs at least 2 benign and 2 malignant "
                         f"{'images' if groups is None else 'lesions'} in validation, got {counts.tolist()}")
    folds = int(min(folds, counts.min()))  # fewer folds where a class has fewer images (lesions) than folds
    split = (StratifiedKFold(folds, shuffle=True, random_state=seed).split(P.T, y) if groups is None else
             StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(P.T, y, np.asarray(groups)))
    out = np.empty(len(y))
    for fit_idx, score_idx in split:
        fitted = fit_combiner(name, P[:, fit_idx], y[fit_idx])
        out[score_idx] = combine(name, P[:, score_idx], fitted)
    return out


# --------------------------------------------------------------------------------------------- thresholds
def threshold_for_sensitivity(y_val, p_val, target: float = 0.95) -> float:
    """The highest threshold whose VALIDATION sensitivity (recall of malignant, p >= threshold) is at least
    ``target``: among scikit-learn ``roc_curve`` thresholds (every distinct score,
    ``drop_intermediate=False``) the first, from the top, reaching the target. The next higher candidate
    misses it. ValueError if ``y_val`` has no malignant image or target is not in (0, 1]."""
    y = check_binary(y_val, "y_val")
    p = check_probability(p_val, len(y), "p_val")
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    if not y.any():
        raise ValueError("y_val has no malignant images: sensitivity is undefined")
    with warnings.catch_warnings():  # no benign images: fpr undefined, tpr still fine
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        _, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    i = int(np.argmax(tpr >= target - 1e-12))
    return float(thr[i])


# --------------------------------------------------------------------------------------------- report
def binary_report(y, p, threshold: float = 0.5) -> dict:
    """Benign-vs-malignant metrics at ``threshold`` (malignant when p >= threshold), JSON-able: threshold,
    n, tp, fp, tn, fn, confusion [[tn, fp], [fn, tp]] (rows true benign/malignant), precision, recall
    (= sensitivity), specificity, accuracy, balanced_accuracy, f1, auc. All scikit-learn
    (confusion_matrix, precision_score, recall_score, ...). Precision, recall, specificity and f1 are 0
    where undefined (zero_division=0); auc is NaN when ``y`` has one class only."""
    y = check_binary(y)
    p = check_probability(p, len(y))
    pred = (p >= threshold).astype(np.int64)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balanced accuracy with one class in y
        bal = balanced_accuracy_score(y, pred)
    return {
        "threshold": float(threshold), "n": int(len(y)), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "confusion": cm.astype(int).tolist(),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(bal),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "auc": _auc(y, p),
    }


def bootstrap_aucs(y, ps, groups=None, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Test AUCs of every scorer in ``ps`` (K, N) (or one (N,)) on the same ``n_boot`` bootstrap resamples of
    the N images (y (N,) 0/1), of lesions when ``groups`` (lesion ids, (N,)) are given
    (:func:`hamviz.metrics.bootstrap_weights`): (B, K), B <= n_boot (a resample with one class only is skipped).
    Raises ValueError on mismatched shapes or a single class."""
    from .metrics import bootstrap_weights, weighted_auc
    y = check_binary(y)
    ps = np.atleast_2d(np.asarray(ps, dtype=np.float64))
    ps = np.stack([check_probability(p, len(y), f"ps[{k}]") for k, p in enumerate(ps)])
    if len(np.unique(y)) < 2:
        raise ValueError("an AUC needs both benign and malignant images")
    W = bootstrap_weights(len(y), n_boot, np.random.default_rng(seed), groups)
    W = W[(W @ y > 0) & (W @ (1 - y) > 0)]  # resamples holding both classes
    # each resample's AUC at once (the weighted Mann-Whitney statistic, equal to roc_auc_score with
    # sample_weight): 1000 calls of scikit-learn took ~2 s per scorer
    return np.stack([weighted_auc(y, np.stack([1 - p, p], axis=1), W, [1])[:, 0] for p in ps], axis=1)


def auc_interval(y, p, groups=None, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The 95 % bootstrap interval (low, high) of the AUC of ``p`` (N,) on y (N,), resampling lesions when
    ``groups`` are given (:func:`bootstrap_aucs`)."""
    low, high = np.percentile(bootstrap_aucs(y, p, groups, n_boot, seed)[:, 0], [2.5, 97.5])
    return float(low), float(high)


def paired_auc_difference(y, p_a, p_b, groups=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Test AUC of ``p_a`` minus that of ``p_b`` on the same images (y (N,) 0/1; p_a, p_b (N,) probabilities
    of malignant), with its 95 % bootstrap interval: both scored on the same resamples (paired), of lesions
    when ``groups`` (lesion ids, (N,)) are given (:func:`bootstrap_aucs`). Returns {"auc_a", "auc_b",
    "difference", "low", "high", "n_boot"}; an interval that holds 0 means the data cannot tell the two apart.
    Raises ValueError on mismatched shapes or a single class."""
    n = len(check_binary(y))
    boots = bootstrap_aucs(y, np.stack([check_probability(p_a, n, "p_a"), check_probability(p_b, n, "p_b")]),
                           groups, n_boot, seed)
    a, b = roc_auc_score(y, p_a), roc_auc_score(y, p_b)
    low, high = np.percentile(boots[:, 0] - boots[:, 1], [2.5, 97.5])
    return {"auc_a": float(a), "auc_b": float(b), "difference": float(a - b), "low": float(low),
            "high": float(high), "n_boot": len(boots)}


def _auc(y, p) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else math.nan


# --------------------------------------------------------------------------------------------- incremental
def incremental(P_val, y_val, P_test, y_test, names: Sequence[str], combiner: str = "mean",
                order: Sequence | None = None, target: float = 0.95, groups_val=None) -> pd.DataFrame:
    """Grow the ensemble one member at a time and score it after each addition.

    ``order``: member names or indices; default by validation AUC, best first. After each addition the
    combiner is re-fitted on VALIDATION predictions (weights / stacking; :func:`fit_combiner`), the
    operating threshold is chosen on validation (:func:`threshold_for_sensitivity` at ``target``; for a fitted
    combiner on its out-of-fold probabilities, :func:`out_of_fold`, grouped by ``groups_val``), and the
    test set is scored. One row per step: step, added, members, val_auc, test_auc,
    test_balanced_accuracy (threshold 0.5), threshold, test_sensitivity, test_specificity (at the
    validation-chosen threshold). A weak member shows as a drop in test_auc at its step. (The "vote"
    combiner gives only M + 1 distinct values, so its chosen threshold is coarse: with one member it is
    often 0, i.e. everything malignant, when the member's own vote misses the target.)
    """
    Pv, Pt = check_members(P_val, "P_val"), check_members(P_test, "P_test")
    yv, yt = check_binary(y_val, "y_val"), check_binary(y_test, "y_test")
    names = list(names)
    if not (len(names) == len(Pv) == len(Pt)):
        raise ValueError(f"{len(names)} names, {len(Pv)} validation and {len(Pt)} test members: must agree")
    if Pv.shape[1] != len(yv) or Pt.shape[1] != len(yt):
        raise ValueError(f"shape mismatch: P_val {Pv.shape} vs {len(yv)} labels, P_test {Pt.shape} vs "
                         f"{len(yt)} labels")
    _check_name(combiner)
    if order is None:
        val_auc = np.array([_auc(yv, p) for p in Pv])
        idx = list(np.argsort(-np.nan_to_num(val_auc, nan=-1.0), kind="stable"))
    else:
        idx = []
        for o in order:
            if isinstance(o, str):
                if o not in names:
                    raise ValueError(f"unknown member {o!r} in order; members are {names}")
                idx.append(names.index(o))
            elif 0 <= int(o) < len(names):
                idx.append(int(o))
            else:
                raise ValueError(f"member index {o} out of range 0..{len(names) - 1}")
        if len(set(idx)) != len(idx):
            raise ValueError(f"order names a member twice: {list(order)}")
    rows = []
    for step in range(1, len(idx) + 1):
        use = idx[:step]
        fitted = fit_combiner(combiner, Pv[use], yv)
        pv, pt = out_of_fold(combiner, Pv[use], yv, groups_val), combine(combiner, Pt[use], fitted)
        thr = threshold_for_sensitivity(yv, pv, target)
        at_thr = binary_report(yt, pt, thr)
        rows.append({"step": step, "added": names[use[-1]], "members": ", ".join(names[i] for i in use),
                     "val_auc": _auc(yv, pv), "test_auc": at_thr["auc"],
                     "test_balanced_accuracy": binary_report(yt, pt, 0.5)["balanced_accuracy"],
                     "threshold": thr, "test_sensitivity": at_thr["recall"],
                     "test_specificity": at_thr["specificity"]})
    table = pd.DataFrame(rows)
    table.attrs.update(combiner=combiner, target=target)
    return table
