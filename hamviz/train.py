"""Training classifiers, the five imbalance strategies, and trained models saved as artefacts.

A :class:`TrainConfig` says everything that determines a trained model. :func:`train_or_load` trains it
once and saves it under ``<cache>/models/<name>-<key>/`` (``model.keras``, ``history.json``,
``config.json``, ``predictions.npz`` with the class probabilities of every split part); the key hashes the
config, the data fingerprint, the split and :data:`TRAINING_VERSION`, so any chapter asking for the same
model loads it instead of training again.

Imbalance strategies (the reference study's): S1 none; S2 oversample classes smaller than 1000 to 1000;
S3 oversample every class to the majority size; S4 class weights; S5 class weights + S2. One epoch is
always ``ceil(n_train / batch_size)`` steps, whatever the strategy, so strategies get the same compute.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .balance import class_weights, oversample
from .config import HamvizError, cache_dir

STRATEGIES = {
    "S1": ("none", False), "S2": ("below", False), "S3": ("majority", False),
    "S4": ("none", True), "S5": ("below", True),
}
STRATEGY_NAMES = {"S1": "none", "S2": "oversample < 1000", "S3": "oversample to majority",
                  "S4": "class weights", "S5": "class weights + oversample < 1000"}
OPTIMIZERS = ("adam", "adamw", "rmsprop", "nadam", "adamax", "sgd")
SCHEDULES = ("none", "plateau", "cosine")


class TrainingError(HamvizError):
    """Training could not go on (NaN loss, impossible settings)."""


@dataclass
class TrainConfig:
    model: str = "small_cnn"
    model_options: dict = field(default_factory=dict)  # weights, trainable, head, dense, dropout, l2
    image_size: int = 64
    strategy: str = "S1"
    oversample_min: int = 1000
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    clipnorm: float | None = None
    schedule: str = "plateau"
    epochs: int = 10
    patience: int = 4
    batch_size: int = 32
    augment: dict = field(default_factory=lambda: {"rot90": True, "flip": True, "zoom": 0.1,
                                                  "shift": 0.1})
    train_limit: int | None = None  # stratified subsample of the training part (tiny profile)
    seed: int = 0

    def __post_init__(self):
        for name, kind in (("epochs", int), ("patience", int), ("batch_size", int), ("image_size", int),
                           ("oversample_min", int), ("seed", int), ("learning_rate", (int, float)),
                           ("train_limit", (int, type(None))), ("clipnorm", (int, float, type(None)))):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, kind):
                raise TrainingError(f"TrainConfig.{name} must be {getattr(kind, '__name__', 'a number')}, "
                                    f"not {v!r} ({type(v).__name__}); fix it in the profile")
        if self.strategy not in STRATEGIES:
            raise TrainingError(f"Unknown imbalance strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}")
        if self.optimizer.lower() not in OPTIMIZERS:
            raise TrainingError(f"Unknown optimizer {self.optimizer!r}: one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"Unknown schedule {self.schedule!r}: one of {', '.join(SCHEDULES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError("epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be positive, not {self.learning_rate}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        return f"{self.model}@{self.image_size} {self.strategy}"


def strategy_plan(strategy: str, labels, n_classes: int, *, min_size: int = 1000, seed: int = 0):
    """(training row indices, class_weight or None) for an imbalance strategy."""
    mode, weighted = STRATEGIES[strategy]
    idx = oversample(labels, mode, min_size=min_size, seed=seed)
    return idx, (class_weights(labels, n_classes) if weighted else None)


def make_optimizer(name: str, learning_rate, clipnorm=None):
    from .models import keras
    kw = {"learning_rate": learning_rate}
    if clipnorm:
        kw["clipnorm"] = float(clipnorm)
    cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
           "rmsprop": keras.optimizers.RMSprop, "nadam": keras.optimizers.Nadam,
           "adamax": keras.optimizers.Adamax,
           "sgd": keras.optimizers.SGD}[name.lower()]
    if name.lower() == "sgd":
        kw["momentum"] = 0.9
    return cls(**kw)


def limit_rows(rows: np.ndarray, labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A stratified subsample of ``rows`` of at most ``limit`` (every class kept)."""
    if not limit or limit >= len(rows):
        return rows
    from sklearn.model_selection import train_test_split
    keep, _ = train_test_split(rows, train_size=limit, stratify=labels, random_state=seed)
    return np.sort(keep)


#: Part of every trained model's key. Bump it when a change to the code alters what training produces
#: (architecture, preprocessing, augmentation, sampling, optimiser set-up), so stale models are not loaded.
TRAINING_VERSION = 2


def model_key(cfg: TrainConfig, fingerprint: str, split_id: str) -> str:
    raw = json.dumps({"cfg": cfg.to_dict(), "data": fingerprint, "split": split_id,
                      "version": TRAINING_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class Trained:
    """A trained model with its history and the probabilities it gives every split part."""

    model: object
    history: dict
    config: TrainConfig
    key: str
    path: Path
    proba: dict            # part -> (N, K) probabilities
    rows: dict             # part -> row indices into the cache
    seconds: float
    loaded: bool


def _nan_guard():
    """A callback that stops training at the first batch whose loss is NaN or infinite, and remembers where."""
    from ._tf import import_tf
    import_tf()
    import keras

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


def fit(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, parts: dict, n_classes: int,
        verbose: int = 0):
    """Train a model on ``images[parts['train']]``, validating on ``parts['val']``.

    Returns (model, history dict). Raises TrainingError when the loss becomes NaN."""
    from .models import build_model, keras
    from .pipeline import make_dataset

    keras.utils.set_random_seed(cfg.seed)
    shape = (*images.shape[1:3], 3)
    model = build_model(cfg.model, shape, n_classes, **cfg.model_options)
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate, cfg.clipnorm),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    tr = parts["train"]
    idx, cw = strategy_plan(cfg.strategy, labels[tr], n_classes, min_size=cfg.oversample_min,
                            seed=cfg.seed)
    rows = tr[idx]
    steps = math.ceil(len(tr) / cfg.batch_size)
    train_ds = make_dataset(images[rows], labels[rows], batch_size=cfg.batch_size, shuffle=True,
                            augment=cfg.augment, n_classes=n_classes, seed=cfg.seed, repeat=True)
    val_ds = make_dataset(images[parts["val"]], labels[parts["val"]], batch_size=128,
                          n_classes=n_classes)
    guard = _nan_guard()
    callbacks = [guard,
                 keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                               restore_best_weights=True)]
    if cfg.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=max(1, cfg.patience // 2),
                                                           min_lr=cfg.learning_rate / 64))
    elif cfg.schedule == "cosine":
        total = cfg.epochs
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda e: cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * e / total))))
    hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, steps_per_epoch=steps,
                     class_weight=cw, callbacks=callbacks, verbose=verbose,
                     shuffle=False)  # the dataset shuffles
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if guard.where is not None:
        raise TrainingError(
            f"Training {cfg.label} stopped: the loss became NaN in epoch {guard.where[0]}, batch "
            f"{guard.where[1]}. Lower learning_rate (now {cfg.learning_rate}), set clipnorm (gradient "
            f"clipping, e.g. 1.0), or add L2.")
    best = int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else len(history["loss"])
    history["best_epoch"] = best
    return model, history


def predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    from .pipeline import make_dataset
    return model.predict(make_dataset(images, batch_size=batch_size), verbose=0)


def load_artefact(folder: Path):
    """(model, history, meta, arrays) saved by :func:`save_artefact`, or None if absent or damaged
    (a damaged one is removed, so it is trained again)."""
    from .models import keras
    if not folder.is_dir():
        return None
    try:
        model = keras.models.load_model(folder / "model.keras", compile=False)
        history = json.loads((folder / "history.json").read_text())
        meta = json.loads((folder / "config.json").read_text())
        npz = folder / "arrays.npz"
        if not npz.exists():
            npz = folder / "predictions.npz"  # artefacts written before this file was renamed
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        return model, history, meta, arrays
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        shutil.rmtree(folder, ignore_errors=True)
        return None


def save_artefact(folder: Path, model, history: dict, meta: dict, arrays: dict) -> None:
    """Save a trained model with its history, metadata and arrays, atomically (temp folder + rename)."""
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.keras")
    (tmp / "history.json").write_text(json.dumps(history))
    (tmp / "config.json").write_text(json.dumps(meta, default=str))
    np.savez_compressed(tmp / "arrays.npz", **arrays)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def train_or_load(cfg: TrainConfig, cache, labels: np.ndarray, split, fingerprint: str, *,
                  n_classes: int = 7, split_id: str = "", cache_root=None, retrain: bool = False,
                  verbose: int = 0, log=print) -> Trained:
    """The trained model for ``cfg`` from the artefact store, training (and saving) it on first use.

    cache: an ImageCache (images at cfg.image_size); labels: per cache row; split: image_id -> part
    (Series). The probabilities of every part are saved with the model."""
    from .models import keras
    from .splits import SPLITS
    if tuple(cache.size) != (cfg.image_size, cfg.image_size):
        raise TrainingError(f"cache holds {cache.size} images but the config asks for {cfg.image_size}")
    parts_of = split.reindex(cache.image_ids).to_numpy()
    rows = {p: np.flatnonzero(parts_of == p) for p in SPLITS}
    rows["train"] = limit_rows(rows["train"], labels[rows["train"]], cfg.train_limit, cfg.seed)
    key = model_key(cfg, fingerprint, split_id)
    root = Path(cache_root) if cache_root else cache_dir()
    folder = root / "models" / f"{cfg.model}-{cfg.image_size}-{cfg.strategy}-{key}"
    found = None if retrain else load_artefact(folder)
    if found is not None:
        model, history, meta, proba = found
        if all(p in proba and len(proba[p]) == len(rows[p]) for p in SPLITS):
            return Trained(model, history, cfg, key, folder, proba, rows, meta["seconds"], True)
    log(f"training {cfg.label} on {len(rows['train'])} images for up to {cfg.epochs} epochs")
    t = time.time()
    images = np.asarray(cache.images)
    model, history = fit(cfg, images, labels, rows, n_classes, verbose=verbose)
    seconds = time.time() - t
    proba = {p: predict(model, images[rows[p]]) for p in SPLITS}
    save_artefact(folder, model, history, {"config": cfg.to_dict(), "key": key, "fingerprint": fingerprint,
                                           "split": split_id, "seconds": seconds}, proba)
    return Trained(model, history, cfg, key, folder, proba, rows, seconds, False)
