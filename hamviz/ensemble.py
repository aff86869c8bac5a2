"""Benign-vs-malignant ensembles: binary labels, small searchable CNNs, combiners, thresholds and reports.

The reference (Bunu et al.) turns HAM10000 into a binary task -- malignant = mel, bcc, akiec (a parameter
here), benign = the rest -- and combines four models by majority vote, mean probability and
accuracy-weighted mean probability; adding a weak member made the ensemble worse. Its two small CNNs were
chosen by a random search over the architecture and the optimiser.

Conventions used throughout:

* A member's output is its **probability of malignant**, one number per image. Member outputs are stacked
  as ``P`` with shape ``(M, N)``: M members, N images. A 7-class model's output becomes that with
  :func:`malignant_probability`.
* An image is called malignant when ``p >= threshold`` (scikit-learn's ``roc_curve`` convention), in
  :func:`binary_report`, :func:`majority_vote` and :func:`threshold_for_sensitivity` alike.
* **Everything fitted is fitted on VALIDATION predictions only**: the accuracy weights
  (:func:`fit_combiner`), the stacking regression (:func:`fit_stacking`) and the operating threshold
  (:func:`threshold_for_sensitivity`). The test set is only ever scored. Fitting any of them on test
  predictions would report an optimistic, leaked number.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                             precision_score, recall_score, roc_auc_score, roc_curve)
from sklearn.model_selection import ParameterSampler

from .config import HamvizError
from .data import CLASSES

MALIGNANT = ("mel", "bcc", "akiec")
BINARY_CLASSES = ("benign", "malignant")
COMBINERS = ("vote", "mean", "accuracy-weighted", "stacking")


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


def malignant_probability(proba, malignant: Sequence[str] = MALIGNANT,
                          classes: Sequence[str] = CLASSES) -> np.ndarray:
    """P(malignant) (N,) from a multi-class model's probabilities (N, K): the sum of the malignant
    classes' columns (K must equal ``len(classes)``). For a 2-class model pass
    ``classes=BINARY_CLASSES, malignant=["malignant"]`` (column 1)."""
    classes = list(classes)
    malignant = _check_malignant(malignant, classes)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes):
        raise ValueError(f"proba must have shape (N, {len(classes)}) for classes {classes}, got {p.shape}")
    return np.clip(p[:, [classes.index(m) for m in malignant]].sum(axis=1), 0.0, 1.0)


def _check_binary(y, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of 0/1 labels, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold 0/1 labels (1 = malignant); found "
                         f"{sorted(set(np.unique(y).tolist()) - {0, 1})[:5]} (use binary_labels)")
    return y.astype(np.int64)


def _check_p(p, n: int | None = None, name: str = "p") -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one probability per image), got shape {p.shape}")
    if n is not None and len(p) != n:
        raise ValueError(f"shape mismatch: {n} labels but {len(p)} probabilities in {name}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"{name} must be finite probabilities in [0, 1]")
    return p


def _check_P(P, name: str = "P") -> np.ndarray:
    """Member probabilities as (M, N); a single member (N,) becomes (1, N)."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 1:
        P = P[None, :]
    if P.ndim != 2 or P.shape[0] < 1 or P.shape[1] < 1:
        raise ValueError(f"{name} must have shape (members, images), got {P.shape}")
    if not np.isfinite(P).all() or (P < 0).any() or (P > 1).any():
        raise ValueError(f"{name} must hold finite probabilities of malignant in [0, 1]")
    return P


# --------------------------------------------------------------------------------------------- model
#: the keyword arguments of :func:`configurable_cnn` (a search trial's other keys, e.g. optimizer and
#: learning_rate, are for training)
CNN_KEYS = ("conv_blocks", "filters", "kernel", "convs_per_block", "dense_layers", "dense_units", "dropout",
            "pooling", "init")


def configurable_cnn(input_shape=(64, 64, 3), n_classes: int = 2, *, conv_blocks: int = 2, filters: int = 32,
                     kernel: int = 3, convs_per_block: int = 2, dense_layers: int = 1, dense_units: int = 128,
                     dropout: float = 0.3, pooling: str = "max", init: str = "glorot_uniform",
                     name: str = "configurable_cnn"):
    """A small CNN whose shape is set by the arguments (the search space of the reference's random search).

    One flat functional graph: image in [0, 255] -> ``ImagenetPreprocess("unit")`` (scale to [0, 1]) ->
    ``conv_blocks`` blocks of [``convs_per_block`` x Conv2D(filters * 2**b, kernel, 'same', relu) -> 2x2
    max or average pooling -> Dropout(dropout)] -> Flatten -> ``dense_layers`` x [Dense(dense_units, relu)
    -> Dropout(dropout)] -> Dense(n_classes, softmax). ``init`` is the Keras kernel initializer of every
    conv and dense layer (e.g. glorot_uniform, he_normal, he_uniform, lecun_normal).
    Layer names: scale, conv{b}_{k}, pool{b}, drop{b}, flatten, dense{i}, drop_dense{i}, predictions.

    Raises ModelError for impossible settings, e.g. an input too small for ``conv_blocks`` poolings
    (each halves the size: 16x16 allows at most 4 blocks).
    """
    from .models import ImagenetPreprocess, ModelError, keras
    layers = keras.layers
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ModelError(f"configurable_cnn: input shape must be (height, width, 3), not {tuple(input_shape)}")
    for key, value, low in (("conv_blocks", conv_blocks, 1), ("filters", filters, 1), ("kernel", kernel, 1),
                            ("convs_per_block", convs_per_block, 1), ("dense_layers", dense_layers, 0),
                            ("dense_units", dense_units, 1), ("n_classes", n_classes, 2)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ModelError(f"configurable_cnn: {key} must be an integer >= {low}, not {value!r}")
    if not 0 <= float(dropout) < 1:
        raise ModelError(f"configurable_cnn: dropout must be in [0, 1), not {dropout!r}")
    pool_layer = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D}.get(pooling)
    if pool_layer is None:
        raise ModelError(f"configurable_cnn: pooling must be 'max' or 'avg', not {pooling!r}")
    try:
        keras.initializers.get(init)
    except (ValueError, TypeError):
        raise ModelError(f"configurable_cnn: unknown weight initialisation {init!r} (a Keras initializer "
                         f"name such as 'glorot_uniform', 'he_normal', 'he_uniform', 'lecun_normal')") from None
    h, w = int(input_shape[0]), int(input_shape[1])
    final = (h // 2 ** conv_blocks, w // 2 ** conv_blocks)
    if min(final) < 1:
        most = max(0, int(math.floor(math.log2(min(h, w))))) if min(h, w) >= 1 else 0
        raise ModelError(f"configurable_cnn: a {h}x{w} input is too small for {conv_blocks} pooling blocks "
                         f"(each halves the size; it would reach {final[0]}x{final[1]}). Use at most {most} "
                         f"conv_blocks at this size, or images of at least {2 ** conv_blocks}x"
                         f"{2 ** conv_blocks}.")
    inputs = keras.Input(tuple(input_shape), name="image")
    x = ImagenetPreprocess("unit", name="scale")(inputs)
    for b in range(1, conv_blocks + 1):
        for k in range(1, convs_per_block + 1):
            x = layers.Conv2D(int(filters) * 2 ** (b - 1), int(kernel), padding="same", activation="relu",
                              kernel_initializer=init, name=f"conv{b}_{k}")(x)
        x = pool_layer(pool_size=2, name=f"pool{b}")(x)
        x = layers.Dropout(float(dropout), name=f"drop{b}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in range(1, dense_layers + 1):
        x = layers.Dense(int(dense_units), activation="relu", kernel_initializer=init, name=f"dense{i}")(x)
        x = layers.Dropout(float(dropout), name=f"drop_dense{i}")(x)
    outputs = layers.Dense(int(n_classes), activation="softmax", kernel_initializer=init,
                           name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------------------------- search
#: the default random-search space (every value list is sampled uniformly)
SEARCH_SPACE = {
    "conv_blocks": [1, 2, 3],
    "filters": [16, 32, 64],
    "kernel": [3, 5],
    "dense_layers": [1, 2],
    "dense_units": [64, 128, 256],
    "dropout": [0.2, 0.3, 0.5],
    "pooling": ["max", "avg"],
    "init": ["glorot_uniform", "he_normal"],
    "optimizer": ["adam", "nadam", "sgd", "rmsprop"],
    "learning_rate": [1e-3, 3e-4],
}


def random_search(train_fn: Callable[[dict], Mapping[str, float]], space: Mapping = SEARCH_SPACE,
                  n_trials: int = 8, seed: int = 0, sort_by: str | None = None) -> pd.DataFrame:
    """Random search: ``n_trials`` settings drawn by scikit-learn ``ParameterSampler(space, n_trials,
    random_state=seed)`` (same seed, same trials), each passed to ``train_fn(params) -> {score: value}``.

    Every trial is recorded, one row each: ``trial`` (draw order), one column per key of ``space``, the
    scores, ``seconds`` and ``error``. A trial whose ``train_fn`` raises a HamvizError (e.g. ModelError:
    input too small for the drawn blocks) or ValueError is recorded with ``error`` = "Type: message" and
    NaN scores, and the search goes on; other exceptions (bugs) propagate.

    The table is sorted by ``sort_by`` -- default the FIRST key of the first score dict returned, so put
    the score to maximise first -- descending, failed trials last, ties in draw order.
    """
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    draws = list(ParameterSampler(dict(space), n_iter=int(n_trials), random_state=seed))
    rows, score_keys = [], []
    for i, params in enumerate(draws):
        params = {k: params[k] for k in space}  # the space's key order
        t0 = time.perf_counter()
        error = None
        try:
            scores = train_fn(dict(params))
        except (HamvizError, ValueError) as exc:
            scores, error = {}, f"{type(exc).__name__}: {exc}"
        if not isinstance(scores, Mapping):
            raise TypeError(f"train_fn must return a dict of scores, got {type(scores).__name__}")
        for k in scores:
            if k not in score_keys:
                score_keys.append(k)
        clash = set(scores) & (set(space) | {"trial", "seconds", "error"})
        if clash:
            raise ValueError(f"train_fn returned score names that clash with columns: {sorted(clash)}")
        rows.append({"trial": i, **params, **{k: float(v) for k, v in scores.items()},
                     "seconds": time.perf_counter() - t0, "error": error})
    table = pd.DataFrame(rows, columns=["trial", *space, *score_keys, "seconds", "error"])
    key = sort_by or (score_keys[0] if score_keys else None)
    if key is not None:
        if key not in table.columns:
            raise ValueError(f"sort_by {key!r} is not a score; scores are {score_keys}")
        table = table.sort_values(key, ascending=False, na_position="last", kind="mergesort")
    table = table.reset_index(drop=True)
    table.attrs.update(sort_by=key, seed=seed, n_trials=int(n_trials))
    return table


def cnn_train_fn(x_train, y_train, x_val, y_val, *, epochs: int = 10, batch_size: int = 32, seed: int = 0,
                 verbose: int = 0) -> Callable[[dict], dict]:
    """A ``train_fn`` for :func:`random_search` that trains :func:`configurable_cnn` on binary labels.

    Images (N, H, W, 3) in [0, 255], labels 0/1. Each call builds the model from the trial's
    :data:`CNN_KEYS`, compiles it with ``hamviz.train.make_optimizer(optimizer, learning_rate)`` (defaults
    adam, 1e-3), trains ``epochs`` epochs (no augmentation, no early stopping: every trial gets the same
    budget, as in the reference's comparisons) and returns {val_auc, val_balanced_accuracy, val_accuracy}
    (malignant probability, threshold 0.5) -- val_auc first, so random_search sorts by it.
    """
    y_train, y_val = _check_binary(y_train, "y_train"), _check_binary(y_val, "y_val")
    x_train, x_val = np.asarray(x_train, dtype=np.float32), np.asarray(x_val, dtype=np.float32)

    def train_fn(params: dict) -> dict:
        from .models import keras
        from .train import make_optimizer
        keras.utils.set_random_seed(seed)
        model = configurable_cnn(x_train.shape[1:], 2, **{k: params[k] for k in CNN_KEYS if k in params})
        model.compile(optimizer=make_optimizer(params.get("optimizer", "adam"),
                                               params.get("learning_rate", 1e-3)),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, keras.utils.to_categorical(y_train, 2), epochs=int(epochs),
                  batch_size=int(batch_size), verbose=verbose, shuffle=True)
        p = model.predict(x_val, batch_size=256, verbose=0)[:, 1].astype(np.float64)
        if not np.isfinite(p).all():
            raise ValueError("the model predicts NaN (training diverged)")
        rep = binary_report(y_val, p)
        return {"val_auc": rep["auc"], "val_balanced_accuracy": rep["balanced_accuracy"],
                "val_accuracy": rep["accuracy"]}

    return train_fn


# --------------------------------------------------------------------------------------------- combiners
def majority_vote(P, threshold: float = 0.5) -> np.ndarray:
    """The fraction of members voting malignant (member p >= threshold), per image: (N,) in [0, 1].

    Read at 0.5 this is the majority vote. With an even number of members a tie gives exactly 0.5, which
    the p >= threshold rule calls malignant: ties go to malignant, the cautious side for a screening task.
    """
    P = _check_P(P)
    return (P >= threshold).mean(axis=0)


def mean_prob(P) -> np.ndarray:
    """The members' mean probability of malignant, per image (N,)."""
    return _check_P(P).mean(axis=0)


def weighted_mean(P, weights) -> np.ndarray:
    """Weighted mean probability (N,): weights (M,), non-negative, e.g. the members' VALIDATION accuracies;
    normalised to sum 1 here."""
    P = _check_P(P)
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
    P = _check_P(P_val, "P_val")
    y = _check_binary(y_val, "y_val")
    if len(y) != P.shape[1]:
        raise ValueError(f"shape mismatch: {len(y)} labels but {P.shape[1]} images in P_val")
    if len(np.unique(y)) < 2:
        raise ValueError("stacking needs both benign and malignant images in the validation labels")
    return LogisticRegression(C=C, max_iter=1000).fit(P.T, y)


def stacked(model: LogisticRegression, P) -> np.ndarray:
    """The stacking model's probability of malignant (N,) for member probabilities P (M, N)."""
    P = _check_P(P)
    if getattr(model, "n_features_in_", P.shape[0]) != P.shape[0]:
        raise ValueError(f"the stacking model was fitted on {model.n_features_in_} members, P has {P.shape[0]}")
    return model.predict_proba(P.T)[:, list(model.classes_).index(1)]


def fit_combiner(name: str, P_val, y_val, *, threshold: float = 0.5, C: float = 1.0):
    """What :func:`combine` needs as ``fitted`` for ``name``, from VALIDATION predictions only:
    accuracy-weighted -> the members' validation accuracies at ``threshold`` (M,); stacking -> the fitted
    LogisticRegression; vote and mean -> None (nothing to fit)."""
    _check_name(name)
    if name == "accuracy-weighted":
        P, y = _check_P(P_val, "P_val"), _check_binary(y_val, "y_val")
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


# --------------------------------------------------------------------------------------------- thresholds
def threshold_for_sensitivity(y_val, p_val, target: float = 0.95) -> float:
    """The highest threshold whose VALIDATION sensitivity (recall of malignant, p >= threshold) is at least
    ``target``: among scikit-learn ``roc_curve`` thresholds (every distinct score,
    ``drop_intermediate=False``) the first, from the top, reaching the target. The next higher candidate
    misses it. ValueError if ``y_val`` has no malignant image or target is not in (0, 1]."""
    y = _check_binary(y_val, "y_val")
    p = _check_p(p_val, len(y), "p_val")
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
    y = _check_binary(y)
    p = _check_p(p, len(y))
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


def _auc(y, p) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else math.nan


# --------------------------------------------------------------------------------------------- incremental
def incremental(P_val, y_val, P_test, y_test, names: Sequence[str], combiner: str = "mean",
                order: Sequence | None = None, target: float = 0.95) -> pd.DataFrame:
    """Grow the ensemble one member at a time and score it after each addition.

    ``order``: member names or indices; default by validation AUC, best first. After each addition the
    combiner is re-fitted on VALIDATION predictions (weights / stacking; :func:`fit_combiner`), the
    operating threshold is chosen on validation (:func:`threshold_for_sensitivity` at ``target``), and the
    test set is scored. One row per step: step, added, members, val_auc, test_auc,
    test_balanced_accuracy (threshold 0.5), threshold, test_sensitivity, test_specificity (at the
    validation-chosen threshold). A weak member shows as a drop in test_auc at its step. (The "vote"
    combiner gives only M + 1 distinct values, so its chosen threshold is coarse: with one member it is
    often 0, i.e. everything malignant, when the member's own vote misses the target.)
    """
    Pv, Pt = _check_P(P_val, "P_val"), _check_P(P_test, "P_test")
    yv, yt = _check_binary(y_val, "y_val"), _check_binary(y_test, "y_test")
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
        pv, pt = combine(combiner, Pv[use], fitted), combine(combiner, Pt[use], fitted)
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


# --------------------------------------------------------------------------------------------- plots
def binary_roc(y, probs: Mapping[str, np.ndarray], title: str = "ROC: malignant vs benign") -> go.Figure:
    """One ROC curve (scikit-learn ``roc_curve``) per member or ensemble in ``probs`` ({name: p}), AUC in
    the legend, the chance diagonal, equal axes. ValueError if ``y`` lacks benign or malignant images."""
    y = _check_binary(y)
    if not 0 < y.sum() < len(y):
        raise ValueError("a ROC curve needs both benign and malignant images in y")
    colours = px.colors.qualitative.D3
    fig = go.Figure()
    for k, (name, p) in enumerate(probs.items()):
        p = _check_p(p, len(y), f"probs[{name!r}]")
        fpr, tpr, _ = roc_curve(y, p)
        fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUC {roc_auc_score(y, p):.3f})",
                        line_color=colours[k % len(colours)],
                        hovertemplate=f"{name}: FPR %{{x:.3f}}, TPR %{{y:.3f}}<extra></extra>")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", showlegend=False,
                    line=dict(color="grey", dash="dash"), hoverinfo="skip")
    fig.update_layout(title=title, xaxis_title="false positive rate (1 - specificity)",
                      yaxis_title="true positive rate (sensitivity)", xaxis_range=[0, 1], yaxis_range=[0, 1.01],
                      yaxis_scaleanchor="x", yaxis_scaleratio=1, height=500, width=640)
    return fig


def confusion_2x2(report: Mapping, title: str | None = None) -> go.Figure:
    """The 2x2 confusion matrix of a :func:`binary_report` (rows true benign/malignant, columns
    predicted), coloured by row share, each cell with its count and row percentage."""
    from .plots import confusion_heatmap
    cm = pd.DataFrame([[report["tn"], report["fp"]], [report["fn"], report["tp"]]],
                      index=pd.Index(list(BINARY_CLASSES), name="true"),
                      columns=pd.Index(list(BINARY_CLASSES), name="predicted"))
    title = title or f"Benign vs malignant at threshold {report['threshold']:.3g}"
    return confusion_heatmap(cm, title)
