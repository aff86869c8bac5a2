"""Evaluation of a multi-class classifier from true labels and predicted probabilities.

Inputs everywhere: ``y_true`` (N,) integer labels, label i meaning ``classes[i]`` (class names are accepted
too), and ``proba`` (N, K) class probabilities whose rows sum to 1. ``classes`` defaults to the seven
HAM10000 diagnoses (:data:`hamviz.data.CLASSES`); pass a 4-class subset or two names for a binary task.

Every metric is scikit-learn's. Accuracy alone says little on HAM10000 (``nv`` is 67 % of the images), so
:func:`headline` reports balanced accuracy, macro-F1 and macro AUC beside it.

:func:`bootstrap_ci` needs each metric on ~1000 resamples; calling scikit-learn 1000 times would take tens of
seconds, so the resamples are evaluated at once as *weights* (how often each image was drawn) by
:func:`weighted_metrics`, whose formulas equal scikit-learn's with ``sample_weight`` (checked in the tests;
AUC by the weighted Mann-Whitney rank formula).
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    roc_auc_score,
)

from .registry import CLASSES, DECISION_OBJECTIVES

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc", "log_loss", "ece")
COMPARE = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece")
#: the field's names of the metrics, for table headers and row labels (the keys stay snake_case in records)
METRIC_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
                 "weighted_f1": "weighted F1", "macro_auc": "macro AUC", "log_loss": "log loss", "ece": "ECE"}
#: words of a column or record name shown in the field's spelling (other words lose only their underscores)
_WORDS = {"auc": "AUC", "f1": "F1", "ece": "ECE", "psnr": "PSNR", "ssim": "SSIM", "bpp": "bpp", "cos": "cosine",
          "val": "validation", "dE2000": "CIEDE2000", "dL": "lightness difference"}
#: whole keys whose words alone would not say it (hypervector geometry: cosines to the class keys)
_PHRASES = {"cos_own_template": "cosine to own class key", "cos_nearest_other": "cosine to nearest other key"}
#: metrics averaged over classes: undefined on a resample that lacks a class present in the full data
_PER_CLASS = {"balanced_accuracy", "macro_f1", "macro_auc"}


# --------------------------------------------------------------------------------------------- inputs
def check_labels(y, classes: Sequence[str] = CLASSES, name: str = "y_true") -> np.ndarray:
    """``y`` as int64 labels in ``range(len(classes))`` (class names are mapped); else a ValueError."""
    classes = list(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be at least two distinct names, got {classes}")
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample), got shape {y.shape}")
    if len(y) == 0:
        raise ValueError(f"{name} is empty")
    if y.dtype.kind in "OUS":
        unknown = sorted(set(map(str, y)) - set(classes))
        if unknown:
            raise ValueError(f"{name} has unknown class names {unknown[:5]}; classes are {classes}")
        return np.array([classes.index(str(v)) for v in y], dtype=np.int64)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"{name} must hold integer labels (or class names), got dtype {y.dtype}")
    bad = (y < 0) | (y >= len(classes))
    if bad.any():
        raise ValueError(f"{name} has labels out of range 0..{len(classes) - 1} "
                         f"(for {len(classes)} classes): {sorted(set(y[bad].tolist()))[:5]}")
    return y.astype(np.int64)


def check_inputs(y_true, proba, classes: Sequence[str] = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(y_true, proba)``: labels in range, proba (N, K) finite in [0, 1] with rows summing to 1
    within 1e-3, and N equal in both; a ValueError names what is wrong otherwise. Rows off by more than 1e-9
    (e.g. float32 softmax outputs) are renormalised, so sklearn sees exact probabilities; exact rows are
    kept as given (their ties intact)."""
    y = check_labels(y_true, classes)
    p = np.asarray(proba, dtype=np.float64)
    k = len(classes)
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"proba must have shape (n_samples, {k}) for {k} classes, got {p.shape}")
    if len(p) != len(y):
        raise ValueError(f"shape mismatch: {len(y)} labels but {len(p)} rows of probabilities")
    if not np.isfinite(p).all() or (p < -1e-6).any() or (p > 1 + 1e-6).any():
        raise ValueError("proba must be finite and within [0, 1] (pass probabilities, not logits)")
    off = np.abs(p.sum(axis=1) - 1) > 1e-3
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(f"proba rows must sum to 1 (within 1e-3): {int(off.sum())} rows do not, e.g. "
                         f"row {i} sums to {p[i].sum():.4f} (apply a softmax?)")
    p = np.clip(p, 0.0, 1.0)
    s = p.sum(axis=1, keepdims=True)
    return y, np.where(np.abs(s - 1) > 1e-9, p / s, p)


def _pred(y_true, proba_or_pred, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(y, predicted labels, proba or None) from probabilities (N, K) or predicted labels (N,)."""
    if np.ndim(proba_or_pred) == 2:
        y, p = check_inputs(y_true, proba_or_pred, classes)
        return y, p.argmax(axis=1), p
    y, pred = check_labels(y_true, classes), check_labels(proba_or_pred, classes, "y_pred")
    if len(y) != len(pred):
        raise ValueError(f"shape mismatch: {len(y)} labels but {len(pred)} predictions")
    return y, pred, None


# --------------------------------------------------------------------------------------------- metrics
def auc_per_class(y_true, proba, classes: Sequence[str] = CLASSES) -> dict[str, float]:
    """One-vs-rest ROC AUC per class (sklearn ``roc_auc_score`` of ``y == k`` vs ``proba[:, k]``);
    NaN for a class absent from ``y_true`` (or the only class in it), where AUC is undefined."""
    y, p = check_inputs(y_true, proba, classes)
    out = {}
    for k, name in enumerate(classes):
        pos = y == k
        out[name] = float(roc_auc_score(pos, p[:, k])) if 0 < pos.sum() < len(y) else math.nan
    return out


def calibration(y_true, proba, n_bins: int = 10) -> tuple[float, pd.DataFrame]:
    """Top-label expected calibration error and its reliability table.

    Confidence is the largest probability, "correct" whether its class is the true one. Confidences fall into
    ``n_bins`` equal-width bins of [0, 1] (bin edges as sklearn ``calibration_curve``, which this equals per
    bin, but which is binary and returns no counts); ECE = sum over bins of (count / N) * |accuracy - mean
    confidence| (Naeini, Cooper & Hauskrecht, AAAI 2015; the top-label form of Guo et al., ICML 2017).
    Returns (ECE in [0, 1], table): one row per non-empty bin: bin_lower, bin_upper, confidence, accuracy,
    count. ``proba`` (N, K), ``y_true`` (N,).
    """
    p = np.asarray(proba, dtype=np.float64)
    y, p = check_inputs(y_true, p, [str(i) for i in range(p.shape[1] if p.ndim == 2 else 2)])
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, correct, edges, ids = _calibration_bins(y, p, n_bins)
    count = np.bincount(ids, minlength=n_bins)
    nz = count > 0
    table = pd.DataFrame({
        "bin_lower": edges[:-1], "bin_upper": edges[1:],
        "confidence": np.bincount(ids, conf, n_bins) / np.maximum(count, 1),
        "accuracy": np.bincount(ids, correct, n_bins) / np.maximum(count, 1), "count": count})[nz]
    ece = float(np.sum(table["count"] / len(y) * np.abs(table["accuracy"] - table["confidence"])))
    return ece, table.reset_index(drop=True)


def _calibration_bins(y, p, n_bins):
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    return conf, correct, edges, np.searchsorted(edges[1:-1], conf)  # as sklearn calibration_curve


def present_classes(y, n_classes: int) -> np.ndarray:
    """The labels (sorted) that occur in ``y``: the classes every macro metric averages over."""
    return np.flatnonzero(np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes) > 0)


def averaged_over(y_true, proba, classes: Sequence[str] = CLASSES) -> dict[str, list[str]]:
    """For each macro metric of :func:`headline`, the class names it averages over: balanced_accuracy and
    macro_f1 over the classes present in ``y_true``; macro_auc over those whose one-vs-rest AUC is defined (the
    same classes when at least two are present, else none)."""
    y, p = check_inputs(y_true, proba, classes)
    present = [classes[k] for k in present_classes(y, len(classes))]
    auc = auc_per_class(y, p, classes)
    return {"balanced_accuracy": present, "macro_f1": list(present),
            "macro_auc": [c for c in classes if math.isfinite(auc[c])]}


def averaging_note(result: dict) -> str | None:
    """One line saying over which classes the macro metrics of an :func:`evaluate` ``result`` average, when that
    is fewer than all its classes (a class absent from the evaluated part); None when they average over all."""
    over, classes = result.get("averaged_over") or {}, result.get("classes") or []
    fewer = {m: names for m, names in over.items() if len(names) < len(classes)}
    if not fewer:
        return None
    absent = [c for c in classes if c not in over.get("balanced_accuracy", classes)]
    groups: dict[tuple, list[str]] = {}
    for m, names in fewer.items():
        groups.setdefault(tuple(names), []).append(m)
    parts = [f"{_and(ms)} average{'s' if len(ms) == 1 else ''} over {len(names)} of {len(classes)} classes "
             f"({', '.join(names) or 'none'})" for names, ms in groups.items()]
    return ("; ".join(parts) + (f": {', '.join(absent)} ha{'s' if len(absent) == 1 else 've'} no image here"
                                if absent else ""))


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def headline(y_true, proba, classes: Sequence[str] = CLASSES, n_bins: int = 10) -> dict[str, float]:
    """accuracy, balanced_accuracy, macro_f1, weighted_f1, macro_auc, log_loss, ece, n (all sklearn).

    Every macro metric averages over the classes present in ``y_true`` (:func:`averaged_over` names them):
    balanced_accuracy is the mean recall over them, macro_f1 the mean F1 over them (sklearn's ``labels=``;
    ``zero_division=0``; a prediction of an absent class still counts against the true class), macro_auc the
    mean one-vs-rest AUC over them (NaN if fewer than two are). So a class missing from a split part changes
    all three alike, never one over 7 classes and another over 6. ece is top-label with ``n_bins``
    equal-width bins."""
    y, p = check_inputs(y_true, proba, classes)
    pred, labels = p.argmax(axis=1), list(range(len(classes)))
    present = present_classes(y, len(classes))
    auc = np.array(list(auc_per_class(y, p, classes).values()))
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected for subsets
        warnings.simplefilter("ignore", UserWarning)
        bal = balanced_accuracy_score(y, pred)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(bal),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=labels, average="weighted", zero_division=0)),
        "macro_auc": float(np.nanmean(auc)) if np.isfinite(auc).any() else math.nan,
        "log_loss": float(log_loss(y, p, labels=labels)),
        "ece": calibration(y, p, n_bins)[0],
        "n": float(len(y)),
    }


def per_class_report(y_true, proba_or_pred, classes: Sequence[str] = CLASSES) -> pd.DataFrame:
    """sklearn ``classification_report`` as a table: one row per class plus 'macro avg' and
    'weighted avg'; columns precision, recall, f1-score, support, and auc (class rows; NaN in the
    average rows) when probabilities (N, K) rather than predicted labels (N,) are given. 'macro avg' averages
    over the classes present in ``y_true``, as :func:`headline`'s macro metrics do (a row of an absent class
    shows its zeros but does not count)."""
    y, pred, p = _pred(y_true, proba_or_pred, classes)
    rep = classification_report(y, pred, labels=list(range(len(classes))), target_names=list(classes),
                                output_dict=True, zero_division=0)
    table = pd.DataFrame({k: rep[k] for k in [*classes, "macro avg", "weighted avg"]}).T
    table = table[["precision", "recall", "f1-score", "support"]].astype(float).astype({"support": int})
    present = [classes[k] for k in present_classes(y, len(classes))]
    table.loc["macro avg", ["precision", "recall", "f1-score"]] = \
        table.loc[present, ["precision", "recall", "f1-score"]].mean()
    if p is not None:
        table["auc"] = pd.Series(auc_per_class(y, p, classes))
    return table


def confusion(y_true, y_pred, classes: Sequence[str] = CLASSES, normalize: str | None = None) -> pd.DataFrame:
    """sklearn ``confusion_matrix`` (labels = range(K)) with index 'true' and columns 'predicted' named by
    class. ``y_pred`` may be labels (N,) or probabilities (N, K) (argmax). ``normalize``: None (counts),
    'true' (rows sum to 1, a row of an absent class is 0), 'pred' or 'all'."""
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    y, pred, _ = _pred(y_true, y_pred, classes)
    cm = confusion_matrix(y, pred, labels=list(range(len(classes))), normalize=normalize)
    return pd.DataFrame(cm, index=pd.Index(list(classes), name="true"),
                        columns=pd.Index(list(classes), name="predicted"))


# --------------------------------------------------------------------------------------------- decision rule
def other_objective(objective: str) -> str:
    """The decision objective that is not ``objective`` (macro-F1 <-> balanced accuracy): the metric a
    floored decision rule keeps from falling. Raises ValueError for an unknown objective."""
    if objective not in DECISION_OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(DECISION_OBJECTIVES)}, not {objective!r}")
    return next(o for o in DECISION_OBJECTIVES if o != objective)


def _decision_score(y, pred, n_classes: int, present: np.ndarray, objective: str) -> float:
    """macro-F1 or balanced accuracy of predicted labels ``pred`` over the ``present`` classes: the bootstrap's
    :func:`weighted_metrics` with every weight 1 (the same numbers as :func:`headline`'s, without calling
    scikit-learn thousands of times in a search)."""
    mask = np.zeros(n_classes, dtype=bool)
    mask[present] = True
    onehot = np.eye(n_classes)[pred]
    return float(weighted_metrics(y, onehot, np.ones(len(y)), (objective,), present=mask)[objective][0])


def decision_weights(y_val, proba_val, objective: str = "macro_f1", classes: Sequence[str] = CLASSES, *,
                     max_drop: float | None = None, grid=None, rounds: int = 4) -> np.ndarray:
    """Per-class multipliers ``w`` (K,) for the decision rule ``argmax_k w_k p_k`` that maximise ``objective``
    (macro-F1 or balanced accuracy, over the classes present) on VALIDATION probabilities ``proba_val`` (N, K)
    with labels ``y_val`` (N,): threshold moving for a multi-class classifier (a prior-shift correction,
    Saerens et al. 2002; thresholds tuned for F1, Lipton et al. 2014). A model trained with class weights
    predicts as if every class were equally likely: good for balanced accuracy, but on a 67 %-nv set each
    rare class then collects many false positives, which costs macro-F1; the fitted weights trade some
    recall of the rare classes for precision. Fit on validation, score on test (:func:`reweight`).

    ``max_drop`` (a fraction, e.g. 0.02 = two points; None: no floor): the other objective (balanced
    accuracy when maximising macro-F1, and vice versa) may fall at most this much below plain argmax's, on
    the same validation part: a floor that keeps the gain in one metric from being paid for with the other.

    Coordinate ascent: each class's weight in turn takes the best value of ``grid`` (default 61 values from
    0.05 to 20, log-spaced) with the others fixed, ``rounds`` times or until nothing changes; only a strict
    improvement that respects the floor moves a weight, so all-ones comes back when nothing beats plain
    argmax. Returned normalised to a geometric mean of 1. Raises ValueError for an unknown objective, a
    ``max_drop`` outside [0, 1], and what :func:`check_inputs` raises for bad labels or probabilities."""
    other = other_objective(objective)
    if max_drop is not None and (isinstance(max_drop, bool) or not isinstance(max_drop, (int, float))
                                 or not 0 <= max_drop <= 1):
        raise ValueError(f"max_drop must be a fraction in [0, 1] (0.02 = two points) or None, not {max_drop!r}")
    y, p = check_inputs(y_val, proba_val, classes)
    K = p.shape[1]
    present = present_classes(y, K)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61)) if grid is None else np.asarray(grid, float)
    floor = (-np.inf if max_drop is None
             else _decision_score(y, p.argmax(1), K, present, other) - max_drop - 1e-12)
    w = np.ones(K)
    best = _decision_score(y, p.argmax(1), K, present, objective)
    for _ in range(rounds):
        moved = False
        for k in range(K):
            for g in grid:
                trial = w.copy()
                trial[k] = g
                pred = (p * trial).argmax(1)
                score = _decision_score(y, pred, K, present, objective)
                if score > best + 1e-12 and (max_drop is None
                                             or _decision_score(y, pred, K, present, other) >= floor):
                    best, w, moved = score, trial, True
        if not moved:
            break
    return w / np.exp(np.mean(np.log(w)))


def reweight(proba, weights) -> np.ndarray:
    """Probabilities (N, K) times per-class ``weights`` (K,), each row renormalised to sum to 1: the
    probabilities whose argmax is :func:`decision_weights`' decision rule (a prior shift; their ranking of
    images per class, and so the one-vs-rest AUC, changes only slightly). Raises ValueError for weights of
    the wrong shape or not positive."""
    p = np.asarray(proba, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if p.ndim != 2 or w.shape != (p.shape[1],) or not (w > 0).all():
        raise ValueError(f"weights must be {p.shape[-1]} positive numbers (one per class), got {w.tolist()}")
    q = p * w
    return q / q.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------- bootstrap
def weighted_metrics(y, proba, weights, metrics: Sequence[str] = HEADLINE, n_bins: int = 10,
                     present: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Metrics of many weightings of one data set at once: ``weights`` (B, N), row b giving each sample's
    weight (a bootstrap resample is the count of times each sample was drawn). Each result (B,) equals
    sklearn's metric with ``sample_weight=weights[b]`` (as :func:`headline` defines them), except that
    class-averaged metrics are NaN on a row that lacks a class of ``present`` (bool (K,); default: the
    classes occurring in ``y``). ``y``, ``proba`` must be validated (check_inputs)."""
    unknown = set(metrics) - set(HEADLINE)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; known: {', '.join(HEADLINE)}")
    W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n, k = proba.shape
    present = np.bincount(y, minlength=k) > 0 if present is None else present
    total = W.sum(axis=1)
    pred = proba.argmax(axis=1)
    cm = (W @ np.eye(k * k)[y * k + pred]).reshape(len(W), k, k)  # weighted confusion matrices
    tp, support, npred = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=2), cm.sum(axis=1)
    complete = (support[:, present] > 0).all(axis=1)  # every class of the full data is in the resample
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + npred > 0, 2 * tp / (support + npred), 0.0)
        values = {
            "accuracy": lambda: tp.sum(axis=1) / total,
            "balanced_accuracy": lambda: (tp / support)[:, present].mean(axis=1),
            "macro_f1": lambda: f1[:, present].mean(axis=1),
            "weighted_f1": lambda: (f1 * support).sum(axis=1) / total,
            "macro_auc": lambda: weighted_auc(y, proba, W, present).mean(axis=1),
            "log_loss": lambda: W @ -np.log(np.clip(proba[np.arange(n), y], np.finfo(float).eps,
                                                    1 - np.finfo(float).eps)) / total,
            "ece": lambda: _weighted_ece(y, proba, W, n_bins) / total,
        }
        for m in metrics:
            v = values[m]()
            out[m] = np.where(complete, v, np.nan) if m in _PER_CLASS else v
    return out


def weighted_auc(y, proba, W, classes_idx) -> np.ndarray:
    """One-vs-rest AUCs of many weightings at once: ``y`` (N,) integer labels, ``proba`` (N, K) scores,
    ``W`` (B, N) non-negative weights (a bootstrap resample's draw counts), ``classes_idx`` the classes to
    score (indices, or a bool mask (K,)). Returns (B, len(classes_idx)): the weighted Mann-Whitney statistic, i.e. the
    rank-sum formula on the data with sample i repeated W[b, i] times (ties count 1/2), as sklearn's
    ``roc_auc_score(..., sample_weight=W[b])``. Ranks come once from ``scipy.stats.rankdata``; per row only
    cumulative sums of weights are needed. NaN where a row has no positive or no negative weight."""
    ks = np.flatnonzero(classes_idx) if np.asarray(classes_idx).dtype == bool else np.asarray(classes_idx)
    order = np.argsort(proba, axis=0, kind="stable")
    lo = rankdata(proba, method="min", axis=0).astype(np.int64) - 1  # tie group = sorted positions [lo, hi)
    hi = rankdata(proba, method="max", axis=0).astype(np.int64)
    out = np.empty((len(W), len(ks)))
    for j, k in enumerate(ks):
        pos = y == k
        wneg = W[:, order[:, k]] * ~pos[order[:, k]]  # negative weights in score order
        cneg = np.concatenate([np.zeros((len(W), 1)), np.cumsum(wneg, axis=1)], axis=1)
        below, upto = cneg[:, lo[pos, k]], cneg[:, hi[pos, k]]
        wpos = W[:, pos]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = (wpos * (below + upto) / 2).sum(axis=1) / (wpos.sum(axis=1) * cneg[:, -1])
    return out


def _weighted_ece(y, proba, W, n_bins) -> np.ndarray:
    """(B,) total weight x top-label ECE: sum over bins of |weighted correct - weighted confidence|."""
    conf, correct, _, ids = _calibration_bins(y, proba, n_bins)
    onehot = np.eye(int(n_bins))[ids]
    return np.abs(W @ (onehot * (correct - conf)[:, None])).sum(axis=1)


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator, groups=None) -> np.ndarray:
    """(n_boot, n) resample counts. Without ``groups``: n samples drawn with replacement. With ``groups``
    (one id per sample, e.g. lesion_id): the G groups are drawn with replacement and each sample gets its
    group's count (cluster bootstrap: all images of a drawn lesion come along, as often as it is drawn)."""
    if groups is None:
        codes, g = np.arange(n), n
    else:
        codes, uniq = pd.factorize(pd.Series(np.asarray(groups)), use_na_sentinel=False)
        if len(codes) != n:
            raise ValueError(f"shape mismatch: {n} labels but {len(codes)} groups")
        g = len(uniq)
    draws = rng.integers(0, g, size=(n_boot, g)) + g * np.arange(n_boot)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * g).reshape(n_boot, g)
    return counts[:, codes].astype(np.float64)


def bootstrap_ci(y_true, proba, metrics: Sequence[str] = ("accuracy", "balanced_accuracy", "macro_f1",
                                                          "macro_auc"),
                 n_boot: int = 1000, seed: int = 0, groups=None, alpha: float = 0.05,
                 classes: Sequence[str] = CLASSES, n_bins: int = 10) -> pd.DataFrame:
    """Percentile bootstrap confidence intervals: rows = metric, columns value (sklearn, full data), low,
    high (the alpha/2 and 1 - alpha/2 quantiles over resamples).

    groups: optional id per sample (e.g. ``lesion_id``). HAM10000 has up to 6 images of one lesion, which are
    not independent; resampling images would then understate the uncertainty. With ``groups`` whole groups
    are resampled (the cluster bootstrap: Davison & Hinkley, *Bootstrap Methods and their Application*, 1997,
    sec. 3.8), which is the honest interval for a lesion-grouped test set.

    A resample lacking a class that the full data has is skipped for the class-averaged metrics
    (balanced_accuracy, macro_f1, macro_auc); ``table.attrs['resamples']`` holds the number used per metric.
    numpy ``default_rng(seed)``; resamples are evaluated in vectorised chunks (:func:`weighted_metrics`).
    """
    y, p = check_inputs(y_true, proba, classes)
    if not 0 < alpha < 1 or int(n_boot) < 1:
        raise ValueError(f"need 0 < alpha < 1 and n_boot >= 1, got alpha={alpha}, n_boot={n_boot}")
    point = headline(y, p, classes, n_bins)
    present = np.bincount(y, minlength=len(classes)) > 0
    rng, chunk = np.random.default_rng(seed), max(1, 2_000_000 // len(y))
    parts = []
    for start in range(0, int(n_boot), chunk):
        w = bootstrap_weights(len(y), min(chunk, int(n_boot) - start), rng, groups)
        parts.append(weighted_metrics(y, p, w, metrics, n_bins, present))
    rows, used = {}, {}
    for m in metrics:
        v = np.concatenate([d[m] for d in parts])
        v = v[np.isfinite(v)]
        used[m] = len(v)
        lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2]) if len(v) else (math.nan, math.nan)
        rows[m] = {"value": point[m], "low": float(lo), "high": float(hi)}
    table = pd.DataFrame.from_dict(rows, orient="index")[["value", "low", "high"]]
    table.attrs["resamples"] = used
    return table


# --------------------------------------------------------------------------------------------- all at once
def _jsonable(x):
    """Python floats/ints/lists/dicts; NaN -> None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(x) else float(x)
    return x


def evaluate(y_true, proba, classes: Sequence[str] = CLASSES, groups=None, n_boot: int = 1000,
             seed: int = 0, n_bins: int = 10) -> dict:
    """Everything above in one JSON-able dict (Python floats, NaN as None): headline, auc_per_class,
    report (per_class_report by row), confusion (counts, nested lists, rows = true), confusion_normalized
    (rows sum to 1), calibration_table (list of per-bin dicts), ci ({metric: {value, low, high}}, cluster
    bootstrap when ``groups`` is given; n_boot=0 skips it), classes, averaged_over ({metric: the class names
    each macro metric averages over}, :func:`averaged_over`) and absent_classes (classes with no sample here:
    the macro metrics leave them out; :func:`averaging_note` says so in one line)."""
    y, p = check_inputs(y_true, proba, classes)
    ece, table = calibration(y, p, n_bins)
    ci = (bootstrap_ci(y, p, n_boot=n_boot, seed=seed, groups=groups, classes=classes, n_bins=n_bins)
          .to_dict(orient="index") if n_boot else {})
    present = set(present_classes(y, len(classes)).tolist())
    return _jsonable({
        "classes": list(classes),
        "averaged_over": averaged_over(y, p, classes),
        "absent_classes": [c for k, c in enumerate(classes) if k not in present],
        "headline": headline(y, p, classes, n_bins),
        "auc_per_class": auc_per_class(y, p, classes),
        "report": per_class_report(y, p, classes).to_dict(orient="index"),
        "confusion": confusion(y, p, classes).to_numpy().tolist(),
        "confusion_normalized": confusion(y, p, classes, normalize="true").to_numpy().tolist(),
        "calibration_table": table.to_dict(orient="records"),
        "ci": ci,
    })


def compare(results: dict[str, dict], metrics: Sequence[str] = COMPARE) -> pd.DataFrame:
    """One row per named result (evaluate() outputs, or headline dicts), columns the headline ``metrics``
    (default accuracy, balanced_accuracy, macro_f1, macro_auc, ece); None becomes NaN."""
    rows = {name: {m: r.get("headline", r).get(m) for m in metrics} for name, r in results.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(metrics)).astype(float)


# --------------------------------------------------------------------------------------------- display
def with_interval(value, low, high, digits: int = 3) -> str:
    """A number with its 95 % interval as tables show it: "0.715 [0.651, 0.775]" (``value`` None: the interval
    alone, "[0.651, 0.775]"), each rounded to ``digits`` decimals."""
    interval = f"[{low:.{digits}f}, {high:.{digits}f}]"
    return interval if value is None else f"{value:.{digits}f} {interval}"


def field_name(key):
    """The name a table or figure shows for a metric, column or record key (a str): the field's term
    (:data:`METRIC_LABELS`) with the words around it kept, e.g. "balanced_accuracy" -> "balanced accuracy",
    "test_macro_f1" -> "test macro-F1", "val_auc" -> "validation AUC", "f1_mel" -> "F1 mel",
    "train_seconds" -> "train seconds", "median_contrast_dE2000" -> "median contrast CIEDE2000", hand-written
    labels' "bal.acc" spelled out ("joint 3x bal.acc" -> "joint 3x balanced accuracy"). Other names that are not
    lower-case snake_case ("JPEG q50", "n"), model names of the registry ("efficientnet_lite0") and non-strings
    are returned unchanged. Records keep their keys; this is only what a reader sees."""
    import re

    from .registry import MODEL_NAMES, OTHER_MODELS
    if isinstance(key, str) and key in _PHRASES:
        return _PHRASES[key]
    if isinstance(key, str) and "bal.acc" in key:  # a label written by hand ("joint 3x bal.acc", "bal.acc @0.5")
        return key.replace("bal.acc", "balanced accuracy")
    if not isinstance(key, str) or "_" not in key and key not in METRIC_LABELS and key not in _WORDS \
            or not re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+|_dE2000|_dL)*", key) or key in MODEL_NAMES + OTHER_MODELS:
        return key
    metric = next((m for m in sorted(METRIC_LABELS, key=len, reverse=True)
                   if key == m or key.endswith("_" + m) or key.startswith(m + "_") or f"_{m}_" in key), None)
    if metric is None:
        return " ".join(_WORDS.get(w, w) for w in key.split("_"))
    before, _, after = key.partition(metric)
    words = [_WORDS.get(w, w) for w in before.split("_") if w] + [METRIC_LABELS[metric]] \
        + [_WORDS.get(w, w) for w in after.split("_") if w]
    return " ".join(words)


def labelled(table):
    """A pandas ``Styler`` of ``table`` (a DataFrame, or a Styler to keep its formats) whose row and column
    headers show :func:`field_name` ("balanced accuracy", "macro-F1", "ECE" for balanced_accuracy, macro_f1,
    ece): for displaying a metrics table in a notebook. The data and its column keys are unchanged, so
    ``.format(subset=[...])`` still takes the keys. Raises TypeError for anything else."""
    styler = table.style if isinstance(table, pd.DataFrame) else table
    if not isinstance(styler, pd.io.formats.style.Styler):
        raise TypeError(f"labelled() takes a pandas DataFrame or Styler, got {type(table).__name__}")
    return styler.format_index(field_name, axis=0).format_index(field_name, axis=1)
