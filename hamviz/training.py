"""The one training core: one fit loop and one train-or-load over the artefact store, for every model hamviz
trains (classifiers and ensemble members here; autoencoders, joint, hypervector and softmax-twin models in
their own modules, through these two functions).

- :func:`fit` trains a compiled Keras model: a NaN guard that stops at the first non-finite loss and names
  the fix, early stopping with the best epoch's weights restored, an optional learning-rate schedule, and the
  history as plain floats with ``best_epoch``.
- :func:`train_or_load` returns the stored artefact for a config, training and storing it on first use. Its
  key (:func:`artefact_key`) covers the config dataclass, the data fingerprint, the split id, the keys of any
  parent artefacts, :data:`TRAINING_VERSION` and the content of the pretrained weights files the model starts
  from, in one place.

Classifiers: a :class:`TrainConfig` says everything that determines one; :func:`train_classifier` trains it
with one of the five imbalance strategies of the reference study (Zhang; :data:`hamviz.registry.STRATEGIES`).
One epoch is always ``ceil(n_train / batch_size)`` steps whatever the strategy, so strategies get the same
compute.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from . import store
from .balance import class_weights, oversample
from .config import PROGRESS_ENV, HamvizError
from .fields import check, param
from .pipeline import AUGMENT_SCHEMA
from .registry import OPTIMIZERS, SCHEDULES, SPLITS, STRATEGIES, STRATEGY_NAMES

#: what a classifier's early stopping and kept epoch are chosen on (see :class:`TrainConfig`)
SELECT_ON = ("val_loss", "balanced_val_loss", "val_accuracy")

#: Part of every trained model's key. Bump it when a change to the code alters what training produces
#: (architecture, preprocessing, augmentation, sampling, optimiser set-up), so stale models are not loaded.
TRAINING_VERSION = 4   # 4: test-time flips score the val and test parts only


class TrainingError(HamvizError):
    """Training could not go on (NaN loss, impossible settings)."""


def make_optimizer(name: str, learning_rate, clipnorm=None):
    """A Keras optimiser by name (:data:`hamviz.registry.OPTIMIZERS`); SGD with momentum 0.9; ``clipnorm``
    clips each gradient's norm."""
    from .models import keras
    if name.lower() not in OPTIMIZERS:
        raise TrainingError(f"Unknown optimizer {name!r}: one of {', '.join(OPTIMIZERS)}")
    kw = {"learning_rate": learning_rate}
    if clipnorm:
        kw["clipnorm"] = float(clipnorm)
    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "rmsprop": keras.optimizers.RMSprop, "nadam": keras.optimizers.Nadam,
           "adamax": keras.optimizers.Adamax, "sgd": keras.optimizers.SGD}[name.lower()]
    if name.lower() == "sgd":
        kw["momentum"] = 0.9
    return cls(**kw)


def limit_rows(rows: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A stratified subsample of ``rows`` of at most ``limit`` (every class kept), sorted."""
    rows = np.asarray(rows)
    if not limit or limit >= len(rows):
        return rows
    from sklearn.model_selection import train_test_split
    keep, _ = train_test_split(rows, train_size=limit, stratify=labels, random_state=seed)
    return np.sort(keep)


def strategy_plan(strategy: str, labels, n_classes: int, *, min_size: int = 1000, seed: int = 0):
    """(training row indices into ``labels``, class_weight or None) for an imbalance strategy S1-S5."""
    mode, weighted = STRATEGIES[strategy]
    idx = oversample(labels, mode, min_size=min_size, seed=seed)
    return idx, (class_weights(labels, n_classes) if weighted else None)


#: every artefact :func:`train_or_load` returned in this process (a chapter's kernel): name, key, the seconds its
#: training took (when it was trained, possibly in an earlier run) and whether it was loaded; a chapter's record
#: sums them (:meth:`hamviz.chapters.base.Chapter.finish`)
TRAINED: list[dict] = []


# ------------------------------------------------------------------------------------------------ the fit loop
def progress_reporter(path: str, label: str, epochs: int, every: float = 2.0):
    """A Keras callback that writes where training is to the JSON file ``path`` (for ``hamviz book``'s progress
    view, :mod:`hamviz.book.progress`): {"label", "epoch", "epochs", "batch", "steps", "started", "time"}, epochs and
    batches 1-based, times in seconds since the epoch; at each epoch's start and end and at most every ``every``
    seconds in between. A file it cannot write is skipped (progress is never worth a failed training)."""
    from .models import keras

    class Reporter(keras.callbacks.Callback):
        started = last = 0.0
        epoch = 1

        def _write(self, batch: int) -> None:
            self.last = time.time()
            info = {"label": label, "epoch": self.epoch, "epochs": epochs, "batch": batch,
                    "steps": (self.params or {}).get("steps"), "started": self.started, "time": self.last}
            try:
                tmp = f"{path}.tmp{os.getpid()}"
                with open(tmp, "w") as f:
                    json.dump(info, f)
                os.replace(tmp, path)
            except OSError:
                pass

        def on_train_begin(self, logs=None):
            self.started = time.time()
            self._write(0)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch + 1
            self._write(0)

        def on_train_batch_end(self, batch, logs=None):
            if time.time() - self.last >= every:
                self._write(batch + 1)

        def on_epoch_end(self, epoch, logs=None):
            self._write((self.params or {}).get("steps") or 0)

    return Reporter()


def nan_guard():
    """A Keras callback that stops training at the first batch whose loss is NaN or infinite and remembers
    where (``where`` = (epoch, batch), 1-based)."""
    from .models import keras

    class NanGuard(keras.callbacks.Callback):
        where = None
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.where = (self.epoch + 1, batch + 1)
                self.model.stop_training = True

    return NanGuard()


def fit(model, train, val=None, *, epochs: int, patience: int, label: str, learning_rate: float,
        steps_per_epoch: int | None = None, class_weight: dict | None = None, schedule: str = "none",
        verbose: int = 0, monitor: str = "val_loss") -> dict:
    """Train the compiled ``model`` on dataset ``train`` (validating on ``val``), in place.

    Early stopping on ``monitor`` (the validation loss, or "val_accuracy": the highest validation accuracy, as
    Doctor's checkpointing "due to unstable validation accuracy"; the training loss without ``val``) with
    ``patience`` epochs, the best epoch's weights restored; ``schedule``: "none", "plateau" (halve the learning rate
    after patience // 2 epochs without progress, down to learning_rate / 64), "cosine" (over ``epochs``) or "step"
    (halve it every 3 epochs: hamviz's reading of Zhang's CNN protocol, "decrease dynamically with every 3 epochs").
    Returns the history: per-epoch metrics as floats and ``best_epoch`` (1-based). Raises
    :class:`TrainingError` naming the epoch, the batch and the fix when the loss becomes NaN.
    """
    from .models import keras
    if schedule not in SCHEDULES:
        raise TrainingError(f"Unknown schedule {schedule!r}: one of {', '.join(SCHEDULES)}")
    if monitor not in ("val_loss", "val_accuracy"):
        raise TrainingError(f"fit monitors val_loss or val_accuracy, not {monitor!r}")
    monitor = monitor if val is not None else "loss"
    mode = "max" if monitor == "val_accuracy" else "min"
    guard = nan_guard()
    callbacks = [guard, keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, mode=mode,
                                                      restore_best_weights=True)]
    if schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, mode=mode,
                                                           patience=max(1, patience // 2),
                                                           min_lr=learning_rate / 64))
    elif schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda e: learning_rate * 0.5 * (1 + math.cos(math.pi * e / epochs))))
    elif schedule == "step":
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda e: learning_rate * 0.5 ** (e // 3)))
    if os.environ.get(PROGRESS_ENV):  # run by `hamviz book`: say where training is
        callbacks.append(progress_reporter(os.environ[PROGRESS_ENV] + ".train.json", label, epochs))
    hist = model.fit(train, validation_data=val, epochs=epochs, steps_per_epoch=steps_per_epoch,
                     class_weight=class_weight, callbacks=callbacks, verbose=verbose,
                     shuffle=False)  # the dataset shuffles
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if guard.where is not None:
        raise TrainingError(
            f"Training {label} stopped: the loss became NaN in epoch {guard.where[0]}, batch "
            f"{guard.where[1]}. Lower learning_rate (now {learning_rate}), set clipnorm (gradient "
            f"clipping, e.g. 1.0), or add L2.")
    pick = np.argmax if mode == "max" else np.argmin
    history["best_epoch"] = int(pick(history[monitor])) + 1 if history.get(monitor) else len(history["loss"])
    return history


CONVERGENCE = ("stopped early", "levelling off", "still improving", "one epoch")


def convergence(history: Mapping, monitor: str | None = None, tolerance: float = 0.01) -> dict:
    """Whether a training run ended converged, from its ``history`` (:func:`fit`'s: per-epoch lists and
    ``best_epoch``, 1-based). ``monitor``: the loss judged (default ``val_loss``, else ``loss``). Returns
    {"epochs", "best_epoch", "last_gain" (the monitored loss's relative fall in the last epoch, 0.012 = 1.2 %),
    "status"}: "stopped early" when a later epoch than the kept one ran without improving (early stopping or the
    epoch budget ended a plateau), "levelling off" when the kept epoch is the last but it gained less than
    ``tolerance``, "still improving" when the kept epoch is the last and it gained more (more epochs would likely
    help: the model is not shown to have converged), "one epoch" when only one ran (nothing to judge by).
    Raises KeyError without the monitored loss."""
    monitor = monitor or ("val_loss" if history.get("val_loss") else "loss")
    losses = [float(v) for v in history[monitor]]
    n, best = len(losses), int(history.get("best_epoch") or int(np.argmin(losses)) + 1)
    gain = (losses[-2] - losses[-1]) / abs(losses[-2]) if n > 1 and losses[-2] else float("nan")
    status = ("one epoch" if n == 1 else "stopped early" if best < n else "levelling off" if gain < tolerance
              else "still improving")
    return {"epochs": n, "best_epoch": best, "last_gain": gain, "status": status}


def convergence_table(histories: Mapping[str, Mapping], monitor: str | None = None):
    """:func:`convergence` of each named run (name -> history), one row per run (a pandas DataFrame with
    "epochs", "best_epoch", "last_gain", "status"), and a sentence for the page: which runs are not shown to have
    converged (their kept epoch is the last and it still improved the monitored loss by more than 1 %), or that
    every run stopped early or levelled off. Returns (table, sentence)."""
    import pandas as pd
    table = pd.DataFrame({name: convergence(h, monitor) for name, h in histories.items()}).T
    table.index.name = "run"
    open_ = table[table["status"].isin(["still improving", "one epoch"])]
    if open_.empty:
        return table, "Every run stopped early or levelled off (under 1 % of its loss gained in its last epoch)."
    why = [f"{name}: one epoch only" if st == "one epoch" else f"{name}: its last epoch, kept, still lowered the "
           f"loss by {100 * g:.1f} %" for name, st, g in zip(open_.index, open_["status"], open_["last_gain"])]
    return table, (f"Not shown to have converged ({'; '.join(why)}): more epochs would likely change "
                   f"{'its' if len(open_) == 1 else 'their'} numbers.")


def predict(model, images: np.ndarray, batch_size: int = 256, flips: bool = False) -> np.ndarray:
    """The model's outputs for uint8 images (N, H, W, 3), batched through :func:`hamviz.pipeline.make_dataset`;
    ``flips``: the mean over the images and their horizontal and vertical mirror images (test-time
    augmentation)."""
    from .pipeline import flip_variants, make_dataset
    variants = flip_variants(images) if flips else [np.asarray(images)]
    return sum(model.predict(make_dataset(v, batch_size=batch_size), verbose=0) for v in variants) / len(variants)


# ------------------------------------------------------------------------------------------------ train or load
def rows_digest(rows: dict) -> str:
    """A short digest of row numbers per part: part of a key when a model is trained on rows chosen elsewhere."""
    h = hashlib.sha256()
    for part in sorted(rows):
        h.update(part.encode())
        h.update(np.asarray(rows[part], dtype=np.int64).tobytes())
    return "rows:" + h.hexdigest()[:16]


def weights_inputs(config) -> str | None:
    """The content of the pretrained weights files a config's model starts from (:func:`hamviz.weights.identity`:
    a preset's files by SHA-256, a Keras application's ImageNet file by md5), for configs that name a ``model``
    and its ``model_options`` as :class:`TrainConfig` does (weights "imagenet" unless the options say otherwise,
    as :func:`hamviz.models.build_model` builds); None for other configs and for models that read no weights
    files. Raises :class:`hamviz.weights.WeightsError` when the weights are not there."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    model, options = cfg.get("model"), cfg.get("model_options")
    if not isinstance(model, str) or not isinstance(options, dict):
        return None
    from .weights import identity
    size = cfg.get("image_size")
    return identity(model, options.get("weights", "imagenet"), size if isinstance(size, int) else None,
                    options.get("head") == "own_top")


def artefact_key(kind: str, config, fingerprint: str, split_id: str, parents=()) -> str:
    """The key of a trained artefact: its kind, its config (a dataclass or a dict), the data fingerprint, the
    split id, the keys of the artefacts it starts from, :data:`TRAINING_VERSION` and, for a model that starts
    from pretrained weights, the content of their files (:func:`weights_inputs`): weights changed under the same
    name give a new key, so the model is trained again rather than loaded. Raises
    :class:`hamviz.weights.WeightsError` when those weights are not there."""
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    body = {"kind": kind, "cfg": cfg, "data": fingerprint, "split": split_id, "parents": list(parents),
            "version": TRAINING_VERSION}
    inputs = weights_inputs(config)
    if inputs:  # only then: the keys of models without pretrained weights stay what they were
        body["weights"] = inputs
    raw = json.dumps(body, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class Artefact:
    """A trained model from the store, with its history, saved arrays and the rows it was trained and
    scored on (part -> row numbers into the view's cache)."""

    model: object
    history: dict
    config: object
    key: str
    path: Path
    arrays: dict
    rows: dict
    seconds: float
    loaded: bool
    meta: dict = field(default_factory=dict)

    @property
    def proba(self) -> dict:
        """part -> the model's outputs on that part, for artefacts that store them (classifiers, joint)."""
        return {p: self.arrays[p] for p in SPLITS if p in self.arrays}


def train_or_load(kind: str, name: str, config, train: Callable[[], tuple], *, fingerprint: str,
                  split_id: str, rows: dict | None = None, parents=(), meta: dict | None = None,
                  accept: Callable[[store.Stored], bool] | None = None, cache_root=None, retrain: bool = False,
                  stored_only: bool = False, log=print) -> Artefact:
    """The artefact for ``config`` from the store, trained on first use.

    ``train()`` returns (model, history, arrays) and is called only when the store has no intact artefact for
    the key (or ``retrain``); ``accept(stored)`` may reject a stored one (e.g. arrays of another length).
    ``name`` prefixes the folder; ``meta`` is saved beside the config. Training holds the artefact's lock
    (:func:`hamviz.store.training`): a second process asking for the same artefact meanwhile waits and then loads
    it, rather than training it again. A stored artefact that is damaged, or that this Keras cannot load (written
    by another Keras version), is reported through ``log`` and trained again (:func:`hamviz.store.load`). Raises
    :class:`hamviz.weights.WeightsError` when the pretrained weights the key covers (:func:`artefact_key`) are
    not there; with ``stored_only``, TrainingError (naming the folder) instead of training when the store has no
    intact artefact."""
    key = artefact_key(kind, config, fingerprint, split_id, parents)
    path = store.folder(name, key, cache_root)

    def stored():
        found = None if retrain else store.load(path, log=log)
        if found is not None and (accept is None or accept(found)):
            TRAINED.append({"name": name, "key": key, "seconds": float(found.meta.get("seconds") or 0.0),
                            "loaded": True})
            return Artefact(found.model, found.history, config, key, path, found.arrays, dict(rows or {}),
                            found.meta.get("seconds", 0.0), True, found.meta)
        return None

    done = stored()
    if done is not None:
        return done
    if stored_only:
        raise TrainingError(f"no trained {name} with key {key} in the store ({path} is absent or damaged)")
    # another process training the same artefact: wait (said on stderr, off the book's pages), then load it
    with store.training(path, log=store.build_log if log is print else log):
        done = stored()  # trained meanwhile by the process that held the lock
        if done is not None:
            return done
        t = time.time()
        model, history, arrays = train()
        seconds = time.time() - t
        TRAINED.append({"name": name, "key": key, "seconds": seconds, "loaded": False})
        cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        info = {"kind": kind, "config": cfg, "key": key, "fingerprint": fingerprint, "split": split_id,
                "parents": list(parents), "weights": weights_inputs(config), "seconds": seconds, **(meta or {})}
        store.save(path, model, history, info, arrays)
    return Artefact(model, history, config, key, path, arrays, dict(rows or {}), seconds, False, info)


# ------------------------------------------------------------------------------------------------ classifiers
@dataclass
class TrainConfig:
    """Everything that determines a trained classifier. ``model``: a name of
    :func:`hamviz.models.build_model` with ``model_options``; ``strategy``: S1-S5; ``train_limit``: a stratified
    subsample of the training part (tiny profile). Two-stage transfer learning: ``head_warmup`` > 0 first trains
    the head alone for that many epochs (at ``head_learning_rate``) on the backbone's cached frozen features
    (:func:`hamviz.features.backbone_features`; pretrained backbones with ``head: simple`` or ``reference``), then
    fine-tunes the trainable layers and the head together. ``tta_flips``: the stored probabilities of the val and test
    parts average the image and its horizontal and vertical mirror images (the training part's, which only show the
    fit, are of the image alone: three passes over it cost minutes on a CPU). ``select_on``: what early
    stopping watches and which epoch's weights are kept: "val_loss" (the plain validation loss), or
    "balanced_val_loss" (each validation image weighted by its class's balanced weight from the training part,
    so that the kept epoch is the one that does best over all classes rather than on the 67 % of nv), or
    "val_accuracy" (the highest validation accuracy: Doctor's "Checkpointing due to unstable validation
    accuracy", slides).

    Each field but ``model`` and ``model_options`` carries its type, bounds, allowed values and default
    (:func:`hamviz.fields.param`): the profile schema takes the classifier section's training keys from here
    (:mod:`hamviz.params`), and a config built in code is checked against the same schema (TrainingError naming
    the field, what it must be and the value given). ``strategy`` defaults to S4 (class weights), as the
    profiles do: on a 67 %-nv data set no balancing is a choice to make on purpose, not a default."""

    model: str = "small_cnn"
    model_options: dict = field(default_factory=dict)  # weights, trainable, head, dense, dropout, l2
    image_size: int = param(64, type="integer", minimum=8, maximum=4096)
    strategy: str = param("S4", enum=list(STRATEGIES))
    oversample_min: int = param(1000, type="integer", minimum=1)
    optimizer: str = param("adam", enum=list(OPTIMIZERS))
    learning_rate: float = param(1e-3, type="number", exclusiveMinimum=0)
    clipnorm: float | None = param(None, type=["number", "null"], exclusiveMinimum=0)
    schedule: str = param("plateau", enum=list(SCHEDULES))
    epochs: int = param(10, type="integer", minimum=1, maximum=1000)
    patience: int = param(4, type="integer", minimum=1)
    batch_size: int = param(32, type="integer", minimum=1, maximum=4096)
    augment: dict = param({"rot90": True, "flip": True, "zoom": 0.1, "shift": 0.1},
                          "training augmentation: rot90, flip (booleans), zoom, shift (fractions in [0, 1))",
                          type="object", properties=AUGMENT_SCHEMA, additionalProperties=False, required=[])
    train_limit: int | None = param(None, "stratified subsample of the training part (tiny profile)",
                                    type=["integer", "null"], minimum=50)
    seed: int = param(0, type="integer", minimum=0)
    head_warmup: int = param(0, "epochs of the head alone on cached frozen-backbone features before fine-tuning "
                                "(pretrained backbone, head: simple or reference); 0: none",
                             type="integer", minimum=0, maximum=1000)
    head_learning_rate: float = param(1e-3, type="number", exclusiveMinimum=0, maximum=1)
    tta_flips: bool = param(False, "score the mean over each image and its two mirror images", type="boolean")
    select_on: str = param("val_loss", "early stopping and the kept epoch: plain or class-weighted validation "
                                       "loss, or the highest validation accuracy (Doctor's checkpointing)",
                           enum=list(SELECT_ON))

    def __post_init__(self):
        check(self, TrainingError)

    @classmethod
    def from_params(cls, params: Mapping, **over) -> "TrainConfig":
        """The config of a chapter's flat parameters ``params``: every field whose name is a key of ``params``
        takes its value, ``over`` replaces fields, the rest keep their defaults. Raises TrainingError for a bad
        value (:func:`hamviz.fields.check`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in params.items() if k in names}, **over})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """What progress lines and figure titles call this model, e.g. "efficientnet_lite0@192 S4 (class weights)"."""
        return f"{self.model}@{self.image_size} {self.strategy} ({STRATEGY_NAMES.get(self.strategy, '?')})"


def _training_set(cfg: TrainConfig, x: np.ndarray, labels: np.ndarray, parts: dict, n_classes: int, augment):
    """(repeating, shuffled training dataset of ``parts['train']`` sampled by cfg's imbalance strategy, its class
    weights or None, steps per epoch = ceil(n_train / batch_size) whatever the strategy)."""
    from .pipeline import make_dataset
    tr = parts["train"]
    idx, cw = strategy_plan(cfg.strategy, labels[tr], n_classes, min_size=cfg.oversample_min, seed=cfg.seed)
    rows = tr[idx]
    ds = make_dataset(x, labels[rows], rows=rows, batch_size=cfg.batch_size, shuffle=True, augment=augment,
                      n_classes=n_classes, seed=cfg.seed, repeat=True)  # gathered by index: no copies
    return ds, cw, math.ceil(len(tr) / cfg.batch_size)


def _validation(cfg: TrainConfig, x: np.ndarray, labels: np.ndarray, parts: dict, n_classes: int, batch_size: int):
    """The validation dataset of ``parts['val']``; with ``select_on: balanced_val_loss`` each image carries its
    class's balanced weight from the training part, so the validation loss weighs every class alike."""
    from .pipeline import make_dataset
    va = parts["val"]
    weights = None
    if cfg.select_on == "balanced_val_loss":
        cw = class_weights(labels[parts["train"]], n_classes)
        weights = np.array([cw[int(k)] for k in labels[va]], dtype=np.float32)
    return make_dataset(x[va], labels[va], batch_size=batch_size, n_classes=n_classes, sample_weight=weights)


def train_head(cfg: TrainConfig, features: np.ndarray, labels: np.ndarray, parts: dict, n_classes: int,
               epochs: int, verbose: int = 0):
    """``cfg``'s classification head without its pooling (:func:`hamviz.models.classification_head`: "simple",
    dropout then a softmax Dense layer named "predictions"; "reference", Dense "head_dense" (relu), dropout,
    BatchNorm "head_bn", then "predictions"; the same layer names and L2) trained on frozen-backbone ``features``
    (N, C) of ``parts['train']`` for ``epochs`` epochs with ``cfg``'s imbalance strategy, optimiser and
    ``head_learning_rate``, validated on ``parts['val']``. Returns (head model, history)."""
    from .models import _regulariser, keras
    keras.utils.set_random_seed(cfg.seed)
    o = cfg.model_options
    reg = _regulariser(o.get("l2", 0.0))
    inputs = keras.Input((features.shape[1],), name="features")
    x = inputs
    if o.get("head", "reference") == "reference":
        x = keras.layers.Dense(o.get("dense", 1024), activation="relu", kernel_regularizer=reg, name="head_dense")(x)
    x = keras.layers.Dropout(o.get("dropout", 0.5), name="head_dropout")(x)
    if o.get("head", "reference") == "reference":
        x = keras.layers.BatchNormalization(name="head_bn")(x)
    head = keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=reg,
                                                  name="predictions")(x))
    head.compile(optimizer=make_optimizer(cfg.optimizer, cfg.head_learning_rate, cfg.clipnorm),
                 loss="categorical_crossentropy", metrics=["accuracy"])
    train_ds, cw, steps = _training_set(cfg, features, labels, parts, n_classes, augment=None)
    val_ds = _validation(cfg, features, labels, parts, n_classes, batch_size=256)
    history = fit(head, train_ds, val_ds, epochs=epochs, patience=epochs, label=f"{cfg.label} head",
                  learning_rate=cfg.head_learning_rate, steps_per_epoch=steps, class_weight=cw, verbose=verbose)
    return head, history


def warm_head(model, cfg: TrainConfig, features: np.ndarray, labels: np.ndarray, parts: dict, n_classes: int,
              verbose: int = 0) -> dict:
    """Stage one of two-stage transfer learning: train ``model``'s head alone on cached frozen-backbone
    ``features`` for ``cfg.head_warmup`` epochs (:func:`train_head`) and copy its weights into ``model``.
    Returns the head's history. Raises TrainingError unless the model's head is "simple" or "reference" (a
    backbone's own top has no cached-feature stage)."""
    if cfg.model_options.get("head", "reference") not in ("simple", "reference"):
        raise TrainingError(f"head_warmup needs head: simple or reference (a head on pooled features), not "
                            f"{cfg.model_options.get('head', 'reference')!r}")
    head, history = train_head(cfg, features, labels, parts, n_classes, cfg.head_warmup, verbose)
    for layer in head.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return history


def fit_classifier(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, parts: dict, n_classes: int,
                   verbose: int = 0, features: np.ndarray | None = None):
    """Build ``cfg``'s model and train it on ``images[parts['train']]`` with its imbalance strategy, validating
    on ``parts['val']``. Images uint8 (N, H, W, 3), labels int (N,); ``features`` (N, C): the frozen backbone's
    pooled features of the same rows, for ``cfg.head_warmup``. Returns (model, history); with a warm-up the
    history holds the head's epochs as ``head_loss`` / ``head_val_loss`` too."""
    from .models import build_model, keras
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg.model, (*images.shape[1:3], 3), n_classes, **cfg.model_options)
    head_history = {}
    if cfg.head_warmup:
        if features is None:
            raise TrainingError("head_warmup needs the backbone's cached features (train_classifier passes them)")
        head_history = warm_head(model, cfg, features, labels, parts, n_classes, verbose)
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate, cfg.clipnorm),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    train_ds, cw, steps = _training_set(cfg, images, labels, parts, n_classes, augment=cfg.augment)
    val_ds = _validation(cfg, images, labels, parts, n_classes, batch_size=128)
    history = fit(model, train_ds, val_ds, epochs=cfg.epochs, patience=cfg.patience, label=cfg.label,
                  learning_rate=cfg.learning_rate, steps_per_epoch=steps,
                  class_weight=cw, schedule=cfg.schedule, verbose=verbose,
                  monitor="val_accuracy" if cfg.select_on == "val_accuracy" else "val_loss")
    history.update({f"head_{k}": v for k, v in head_history.items() if k in ("loss", "val_loss")})
    return model, history


def train_classifier(cfg: TrainConfig, view, *, cache_root=None, retrain: bool = False, verbose: int = 0,
                     stored_only: bool = False, log=print) -> Artefact:
    """The classifier for ``cfg`` on a :class:`hamviz.view.PreparedView` (its labels and split), trained once
    and stored with the class probabilities of every split part (``artefact.proba``) and the view's resize
    mode (``meta["resize"]``: what ``hamviz predict`` resizes images with). ``stored_only``: raise TrainingError
    rather than train (:func:`train_or_load`)."""
    if view.size != cfg.image_size:
        raise TrainingError(f"the view holds {view.size}x{view.size} images but the config asks for "
                            f"{cfg.image_size}")
    rows = dict(view.rows)
    rows["train"] = limit_rows(rows["train"], view.labels[rows["train"]], cfg.train_limit, cfg.seed)
    n_classes = len(view.classes)

    def train():
        features = None
        if cfg.head_warmup:
            from .features import backbone_features
            features = backbone_features(view, cfg.model, cfg.model_options.get("weights"), cache_root=cache_root,
                                         input_scaling=cfg.model_options.get("input_scaling", "imagenet"),
                                         log=log)
        log(f"training {cfg.label} on {len(rows['train'])} images for up to {cfg.epochs} epochs")
        images = view.images
        model, history = fit_classifier(cfg, images, view.labels, rows, n_classes, verbose=verbose,
                                        features=features)
        return model, history, {p: predict(model, images[rows[p]], flips=cfg.tta_flips and p != "train")
                                for p in SPLITS}

    return train_or_load("classifier", f"{cfg.model}-{cfg.image_size}-{cfg.strategy}", cfg, train,
                         fingerprint=view.fingerprint, split_id=view.split_id, rows=rows,
                         accept=lambda s: all(len(s.arrays.get(p, ())) == len(rows[p]) for p in SPLITS),
                         meta={"resize": view.resize}, cache_root=cache_root, retrain=retrain,
                         stored_only=stored_only, log=log)


def frozen_head_problem(cfg: TrainConfig) -> str | None:
    """Why ``cfg`` has no frozen-feature stage for :func:`train_frozen_head` (it needs a pretrained backbone,
    ``head: simple`` and ``head_warmup`` >= 1), or None when it has one."""
    if cfg.model_options.get("head") != "simple" or not cfg.model_options.get("weights") or cfg.head_warmup < 1:
        return (f"a frozen-feature head needs a pretrained backbone with head: simple and head_warmup >= 1 (epochs "
                f"of the head); {cfg.label} has head {cfg.model_options.get('head')!r}, weights "
                f"{cfg.model_options.get('weights')!r}, head_warmup {cfg.head_warmup}")
    return None


def train_frozen_head(cfg: TrainConfig, view, *, extra: tuple | None = None, cache_root=None, retrain: bool = False,
                      verbose: int = 0, log=print) -> Artefact:
    """``cfg``'s head alone (dropout, then a softmax Dense layer) on the frozen pretrained backbone: trained for
    ``cfg.head_warmup`` epochs on the backbone's pooled features of ``view`` (cached on disk by
    :func:`hamviz.features.backbone_features`, so every strategy and split reuses one feature pass), with
    ``cfg``'s imbalance strategy and ``head_learning_rate``; the stage one of two-stage transfer learning, kept as
    a model of its own (the strategy table, the leak audit). Stored like a classifier; ``artefact.model`` takes
    features (N, C), ``artefact.proba`` holds every part's class probabilities. Raises TrainingError unless
    ``cfg`` names a pretrained backbone with ``head: simple`` and ``head_warmup`` >= 1. ``extra``: (tag, matrix
    (N, K) float aligned with the view's rows, e.g. :func:`hamviz.metadata.metadata_matrix`) concatenated to the
    features (the head then takes (N, C + K)); the tag and the matrix's digest are part of the key."""
    if problem := frozen_head_problem(cfg):
        raise TrainingError(problem)
    if view.size != cfg.image_size:
        raise TrainingError(f"the view holds {view.size}x{view.size} images but the config asks for {cfg.image_size}")
    rows = dict(view.rows)
    rows["train"] = limit_rows(rows["train"], view.labels[rows["train"]], cfg.train_limit, cfg.seed)
    n_classes = len(view.classes)

    def train():
        from .features import backbone_features
        features = backbone_features(view, cfg.model, cfg.model_options["weights"], cache_root=cache_root, log=log,
                                     input_scaling=cfg.model_options.get("input_scaling", "imagenet"))
        if extra is not None:
            features = np.hstack([features, np.asarray(extra[1], dtype=features.dtype)])
        log(f"training the {cfg.label} head on frozen features{f' and {tag}' if extra is not None else ''} of "
            f"{len(rows['train'])} images for {cfg.head_warmup} epochs")
        head, history = train_head(cfg, features, view.labels, rows, n_classes, cfg.head_warmup, verbose)
        return head, history, {p: head.predict(features[rows[p]], batch_size=1024, verbose=0) for p in SPLITS}

    tag, parents = "", ()
    if extra is not None:
        from .metadata import matrix_digest
        tag, matrix = extra
        if len(matrix) != len(view.image_ids):
            raise TrainingError(f"extra inputs {tag!r} have {len(matrix)} rows, the view {len(view.image_ids)}")
        parents = (f"{tag}:{matrix_digest(np.asarray(matrix), [tag])}",)
    return train_or_load("frozen_head",
                         f"{cfg.model}-{cfg.image_size}-{cfg.strategy}-head" + (f"-{tag}" if tag else ""),
                         cfg, train, fingerprint=view.fingerprint, split_id=view.split_id, rows=rows, parents=parents,
                         accept=lambda s: all(len(s.arrays.get(p, ())) == len(rows[p]) for p in SPLITS),
                         cache_root=cache_root, retrain=retrain, log=log)
