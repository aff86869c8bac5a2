"""Clinical operating points and calibration of the seven-class classifier.

A dermatologist reads a classifier as a triage test: "malignant or not", "melanoma or not", at a threshold that
catches a stated share of the malignant lesions. From the seven class probabilities:

- :func:`positive_score`: the probability of a binary task's positive side (benign vs malignant: mel + bcc +
  akiec summed; melanoma vs rest: mel alone);
- :func:`partial_auc`: the area under the ROC curve where sensitivity is at least 80 % (the ranking metric of
  the ISIC 2024 challenge, SLICE-3D), in [0, 0.2];
- :func:`operating_points`: thresholds fitted on the VALIDATION part for a target sensitivity
  (:func:`hamviz.ensemble.threshold_for_sensitivity`), and the test sensitivity, specificity, PPV and NPV they
  give, with lesion-bootstrap intervals: the test part only scores;
- :func:`fit_temperature` / :func:`apply_temperature` / :func:`calibration_change`: temperature scaling fitted on
  validation (Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017) and the
  top-label ECE on test before and after, with a paired lesion-bootstrap interval.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .metrics import bootstrap_weights, check_inputs, weighted_auc, weighted_metrics
from .registry import CLASSES, MALIGNANT

#: the binary tasks of the seven-class model: name -> the classes on the positive side
TASKS = {"benign vs malignant": tuple(MALIGNANT), "melanoma vs rest": ("mel",)}


def positive_score(proba, positive: Sequence[str], classes: Sequence[str] = CLASSES) -> np.ndarray:
    """The probability of the positive side of a binary task: ``proba`` (N, K) class probabilities (rows sum to
    1), ``positive`` the class names summed (e.g. ``("mel", "bcc", "akiec")``). Returns (N,) in [0, 1].
    Raises ValueError for a class name not in ``classes`` or a shape that does not match them."""
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"proba must be (N, {len(classes)}) for the classes {list(classes)}, got {p.shape}")
    unknown = [c for c in positive if c not in classes]
    if unknown or not positive:
        raise ValueError(f"positive classes {unknown or '[]'} are not among {list(classes)}")
    return np.clip(p[:, [list(classes).index(c) for c in positive]].sum(axis=1), 0.0, 1.0)


def partial_auc(y, score, min_tpr: float = 0.8) -> float:
    """The partial AUC above a sensitivity of ``min_tpr``: the area between the ROC curve and the line FPR = 1
    over TPR in [min_tpr, 1], in [0, 1 - min_tpr] (0.2 for a perfect scorer, 0.02 for chance at 0.8). As the ISIC
    2024 challenge scored it: labels and scores flipped, scikit-learn's ``roc_auc_score(max_fpr=1 -
    min_tpr)`` (McClish-standardised) turned back into the raw area. ``y`` (N,) 0/1, ``score`` (N,) higher =
    positive. Raises ValueError when ``y`` holds one class only or ``min_tpr`` is not in [0, 1)."""
    y = np.asarray(y).astype(np.int64).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if not 0 <= min_tpr < 1:
        raise ValueError(f"min_tpr must be in [0, 1), got {min_tpr}")
    if len(y) != len(s) or not 0 < y.sum() < len(y):
        raise ValueError("partial_auc needs scores for every label and both classes in y")
    return float(_pauc_draws(y, s, np.ones((1, len(y))), min_tpr)[0])


def binary_rates(W: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, PPV and NPV of predictions ``pred`` (N,) bool against labels ``y`` (N,) bool under
    weightings ``W`` (B, N) (a bootstrap resample's draw counts; one row of ones for the data): (B,) each, NaN
    where a denominator is 0."""
    tp, fn = W @ (y & pred), W @ (y & ~pred)
    tn, fp = W @ (~y & ~pred), W @ (~y & pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
                "ppv": tp / (tp + fp), "npv": tn / (tn + fn)}


def _operating(yv, sv, yt, st, target: float, W: np.ndarray) -> tuple[float, float, dict[str, np.ndarray]]:
    """(threshold fitted on validation, its validation sensitivity, {rate: (B,) under the test weightings W})."""
    from .ensemble import threshold_for_sensitivity
    thr = threshold_for_sensitivity(yv, sv, float(target))
    return thr, float(np.mean(sv[yv] >= thr)), binary_rates(W, yt, st >= thr)


def _as_binary(y_val, s_val, y_test, s_test):
    yv, yt = (np.asarray(a).astype(bool).ravel() for a in (y_val, y_test))
    sv, st = (np.asarray(a, dtype=np.float64).ravel() for a in (s_val, s_test))
    if not yt.any() or yt.all():
        raise ValueError("the test part needs positive and negative images for an operating point")
    return yv, sv, yt, st


def _percentiles(v: np.ndarray) -> tuple[float, float]:
    ok = v[np.isfinite(v)]
    return tuple(float(x) for x in np.percentile(ok, [2.5, 97.5])) if len(ok) else (math.nan, math.nan)


def operating_points(y_val, s_val, y_test, s_test, targets: Sequence[float] = (0.95, 0.90), *, groups=None,
                     n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """For each target sensitivity, the threshold fitted on VALIDATION (the highest one whose validation
    sensitivity reaches the target, :func:`hamviz.ensemble.threshold_for_sensitivity`) and what it gives on TEST:
    sensitivity, specificity, PPV and NPV, each with its 95 % percentile interval over ``n_boot`` bootstrap
    resamples of the test lesions (``groups``, (N_test,); images when None). ``y_*`` 0/1 labels, ``s_*`` scores
    in [0, 1] (:func:`positive_score`). Returns a DataFrame indexed by target ("95 %"): threshold, val
    sensitivity, n, positives, then per rate its value and ``<rate> low`` / ``<rate> high``. Raises ValueError
    when a part lacks positives or a target is not in (0, 1]."""
    yv, sv, yt, st = _as_binary(y_val, s_val, y_test, s_test)
    W = np.vstack([np.ones(len(yt)), bootstrap_weights(len(yt), int(n_boot), np.random.default_rng(seed), groups)])
    rows = {}
    for target in targets:
        thr, val_sens, rates = _operating(yv, sv, yt, st, target, W)
        row = {"threshold": thr, "val sensitivity": val_sens, "n": int(len(yt)), "positives": int(yt.sum())}
        for name, v in rates.items():
            low, high = _percentiles(v[1:])
            row.update({name: float(v[0]), f"{name} low": low, f"{name} high": high})
        rows[f"{100 * float(target):g} %"] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "target sensitivity (fitted on validation)"
    return out


def _pauc_draws(y, s, W, min_tpr: float) -> np.ndarray:
    """(B,) partial AUC above ``min_tpr`` under each weighting ``W`` (B, N) (NaN where a resample has one class):
    labels and scores flipped, scikit-learn's McClish-standardised ``roc_auc_score(max_fpr=1 - min_tpr)`` turned
    back into the raw area."""
    from sklearn.metrics import roc_auc_score
    max_fpr, low = 1.0 - min_tpr, 0.5 * (1.0 - min_tpr) ** 2
    out = np.full(len(W), math.nan)
    for b, w in enumerate(W):
        if (w * y).sum() > 0 and (w * (1 - y)).sum() > 0:
            scaled = roc_auc_score(1 - y, -s, max_fpr=max_fpr, sample_weight=w)
            out[b] = low + (max_fpr - low) / 0.5 * (scaled - 0.5)
    return out


def operating_report(labels_val, probas_val: Sequence[np.ndarray], labels_test, probas_test: Sequence[np.ndarray], *,
                     tasks: dict | None = None, targets: Sequence[float] = (0.95, 0.90), min_tpr: float = 0.8,
                     lesions=None, n_boot: int = 1000, seed: int = 0,
                     classes: Sequence[str] = CLASSES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seven-class model's binary tasks (``tasks``: name -> positive classes; default :data:`TASKS`) over its
    replicates: ``labels_*`` (N,) class indices, ``probas_*`` each replicate's (N, K) probabilities (validation:
    thresholds; test: scores only). Returns two tables, each value the mean over replicates with its 95 % interval
    over training seeds and ``n_boot`` resamples of the test ``lesions`` (:func:`hamviz.replicates.pooled_interval`,
    cut to [0, 1]):
    (areas: per task the ROC AUC and the partial AUC above ``min_tpr`` (:func:`partial_auc`), points: per task and
    target the threshold fitted on each replicate's validation part (mean) and the test sensitivity,
    specificity, PPV, NPV). Rates and areas are fractions; "<name> low/high" the interval, "<name> per
    replicate" the values."""
    from .replicates import pooled_interval
    names = list(classes)
    W = np.vstack([np.ones(len(labels_test)), bootstrap_weights(len(labels_test), int(n_boot),
                                                                np.random.default_rng(seed), lesions)])
    areas, points = [], []

    def pooled(row, name, per):
        values, draws = np.array([v[0] for v in per]), np.vstack([v[1:] for v in per])
        low, high = pooled_interval(values, draws, bounds=(0.0, 1.0))
        row.update({name: float(values.mean()), f"{name} low": low, f"{name} high": high,
                    f"{name} per replicate": [float(v) for v in values]})
    for task, positive in (tasks or TASKS).items():
        pos = [names.index(c) for c in positive]
        yv, yt = np.isin(labels_val, pos), np.isin(labels_test, pos)
        sv = [positive_score(p, positive, classes) for p in probas_val]
        st = [positive_score(p, positive, classes) for p in probas_test]
        row = {"task": task, "positives": int(yt.sum()), "n": int(len(yt))}
        pooled(row, "ROC AUC", [weighted_auc(yt.astype(np.int64), np.stack([1 - s, s], axis=1), W, [1])[:, 0]
                                for s in st])
        pooled(row, f"partial AUC above {100 * min_tpr:g} % sensitivity",
               [_pauc_draws(yt.astype(int), s, W, min_tpr) for s in st])
        areas.append(row)
        for target in targets:
            fits = [_operating(*_as_binary(yv, a, yt, b), target, W) for a, b in zip(sv, st)]
            row = {"task": task, "target sensitivity": f"{100 * float(target):g} %",
                   "threshold": float(np.mean([f[0] for f in fits])),
                   "val sensitivity": float(np.mean([f[1] for f in fits]))}
            for rate in ("sensitivity", "specificity", "ppv", "npv"):
                pooled(row, rate, [f[2][rate] for f in fits])
            points.append(row)
    return pd.DataFrame(areas).set_index("task"), pd.DataFrame(points).set_index(["task", "target sensitivity"])


def _logits(proba) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0))


def apply_temperature(proba, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)``: (N, K) probabilities with the same argmax as ``proba`` (N, K);
    temperature > 1 softens over-confident probabilities. Raises ValueError for a temperature <= 0."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = _logits(proba) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y_val, proba_val, classes: Sequence[str] = CLASSES, bounds=(0.05, 20.0)) -> float:
    """The temperature that minimises the negative log-likelihood of the VALIDATION labels ``y_val`` (N,) under
    :func:`apply_temperature` of ``proba_val`` (N, K) (Guo et al., ICML 2017: one scalar, the argmax unchanged);
    searched on log T within ``bounds`` by scipy's bounded scalar minimiser. Raises ValueError on mismatched
    shapes or unknown labels (:func:`hamviz.metrics.check_inputs`)."""
    from scipy.optimize import minimize_scalar
    y, p = check_inputs(y_val, proba_val, classes)
    z = _logits(p)

    def nll(log_t: float) -> float:
        a = z / math.exp(log_t)
        a -= a.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(a).sum(axis=1)) - a[np.arange(len(y)), y]))
    res = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-5})
    return float(math.exp(res.x))


def calibration_change(y_test, proba_test, temperature: float, *, groups=None, n_boot: int = 1000, seed: int = 0,
                       n_bins: int = 10, classes: Sequence[str] = CLASSES) -> dict:
    """Top-label ECE (:func:`hamviz.metrics.calibration`, ``n_bins`` bins) of the test probabilities before and
    after temperature scaling with ``temperature`` (fitted on validation: :func:`fit_temperature`), in points
    (100 x ECE), with 95 % intervals over bootstrap resamples of the test lesions (``groups``) shared by both,
    so that the change is paired. Returns {"temperature", "ece_before", "ece_after", "change", and "<key> low" /
    "<key> high" for the three, "draws_change" (B,)}."""
    y, p = check_inputs(y_test, proba_test, classes)
    q = apply_temperature(p, temperature)
    W = np.vstack([np.ones(len(y)), bootstrap_weights(len(y), int(n_boot), np.random.default_rng(seed), groups)])
    before = 100 * weighted_metrics(y, p, W, ["ece"], n_bins)["ece"]
    after = 100 * weighted_metrics(y, q, W, ["ece"], n_bins)["ece"]
    out = {"temperature": float(temperature)}
    for key, v in (("ece_before", before), ("ece_after", after), ("change", after - before)):
        low, high = _percentiles(v[1:])  # no interval without resamples (n_boot 0)
        out.update({key: float(v[0]), f"{key} low": float(low), f"{key} high": float(high)})
    out["draws_change"] = (after - before)[1:]
    return out


def calibration_report(labels_val, probas_val: Sequence[np.ndarray], labels_test, probas_test: Sequence[np.ndarray],
                       *, lesions=None, n_boot: int = 1000, seed: int = 0, n_bins: int = 10,
                       classes: Sequence[str] = CLASSES) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Temperature scaling over the replicates: for each replicate's probabilities (validation and test, (N, K)
    each), the temperature fitted on its validation part (:func:`fit_temperature`) and the test top-label ECE
    before and after (:func:`calibration_change`, points, intervals over the test ``lesions``; the same resamples
    for every replicate). Returns (table: one row per replicate, changes (R,), draws (R, B) of the change) for
    :func:`hamviz.replicates.decide`."""
    rows, changes, draws = [], [], []
    for r, (pv, pt) in enumerate(zip(probas_val, probas_test)):
        out = calibration_change(labels_test, pt, fit_temperature(labels_val, pv, classes), groups=lesions,
                                 n_boot=n_boot, seed=seed, n_bins=n_bins, classes=classes)
        changes.append(out["change"])
        draws.append(out.pop("draws_change"))
        rows.append({"replicate": r, **out})
    return pd.DataFrame(rows).set_index("replicate"), np.array(changes), np.vstack(draws)
