"""Training the compression autoencoders (latent 1.5x / 3x / 6x smaller than the input), saved as artefacts,
and what their latents cost in bits.

The reference trained each autoencoder with Adam and mean absolute error for 50 epochs. Models are stored
like classifiers (:func:`hamviz.train.save_artefact`), keyed by their config, the data and the split, with
the test reconstructions' per-image MAE saved beside them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import cache_dir
from .train import TRAINING_VERSION, TrainingError, limit_rows, load_artefact, make_optimizer, save_artefact


@dataclass
class AEConfig:
    ratio: float = 3.0
    image_size: int = 64
    filters: tuple = (32, 64)
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    epochs: int = 10
    patience: int = 3
    batch_size: int = 32
    augment: dict = field(default_factory=lambda: {"rot90": True, "flip": True, "zoom": 0.0, "shift": 0.0})
    train_limit: int | None = None
    seed: int = 0

    @property
    def label(self) -> str:
        return f"autoencoder {self.ratio:g}x @{self.image_size}"

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["filters"] = list(self.filters)
        return d


@dataclass
class TrainedAE:
    model: object
    history: dict
    config: AEConfig
    key: str
    path: Path
    test_mae: np.ndarray   # per test image, pixel units (0..255)
    seconds: float
    loaded: bool


def fit_autoencoder(cfg: AEConfig, images: np.ndarray, train_rows, val_rows, verbose: int = 0):
    """Train an autoencoder (MAE on [0, 255] images) with early stopping on validation MAE."""
    from .models import autoencoder, keras
    from .pipeline import make_dataset
    from .train import _nan_guard

    keras.utils.set_random_seed(cfg.seed)
    model = autoencoder((cfg.image_size, cfg.image_size, 3), cfg.ratio, cfg.filters)
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate), loss="mae")
    # target = input: augment first, then pair each augmented image with itself
    train_ds = make_dataset(images[train_rows], batch_size=cfg.batch_size, shuffle=True, augment=cfg.augment,
                            seed=cfg.seed, repeat=True, pack=lambda x: (x, x))
    val_ds = make_dataset(images[val_rows], batch_size=128, pack=lambda x: (x, x))
    guard = _nan_guard()
    hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, shuffle=False,
                     steps_per_epoch=math.ceil(len(train_rows) / cfg.batch_size), verbose=verbose,
                     callbacks=[guard, keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                                                     restore_best_weights=True)])
    if guard.where is not None:
        raise TrainingError(f"Training {cfg.label} stopped: the loss became NaN in epoch {guard.where[0]}. "
                            f"Lower learning_rate (now {cfg.learning_rate}).")
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["best_epoch"] = int(np.argmin(history["val_loss"])) + 1
    return model, history


def reconstruct(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Reconstructions as uint8 images (what a classifier downstream receives)."""
    from .pipeline import make_dataset
    out = model.predict(make_dataset(images, batch_size=batch_size), verbose=0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def train_or_load_ae(cfg: AEConfig, cache, rows: dict, labels, fingerprint: str, split_id: str = "",
                     cache_root=None, log=print) -> TrainedAE:
    """The autoencoder for ``cfg``, trained on ``rows['train']`` (validated on ``rows['val']``) on first use."""
    if tuple(cache.size) != (cfg.image_size, cfg.image_size):
        raise TrainingError(f"cache holds {cache.size} images but the autoencoder config asks for "
                            f"{cfg.image_size}")
    train_rows = limit_rows(np.asarray(rows["train"]), np.asarray(labels)[rows["train"]], cfg.train_limit,
                            cfg.seed)
    raw = json.dumps({"cfg": cfg.to_dict(), "data": fingerprint, "split": split_id,
                      "version": TRAINING_VERSION}, sort_keys=True)
    key = hashlib.sha256(raw.encode()).hexdigest()[:16]
    root = Path(cache_root) if cache_root else cache_dir()
    folder = root / "models" / f"ae{cfg.ratio:g}x-{cfg.image_size}-{key}"
    found = load_artefact(folder)
    if found is not None:
        model, history, meta, arrays = found
        if len(arrays.get("test_mae", [])) == len(rows["test"]):
            return TrainedAE(model, history, cfg, key, folder, arrays["test_mae"], meta["seconds"], True)
    log(f"training {cfg.label} on {len(train_rows)} images for up to {cfg.epochs} epochs")
    images = np.asarray(cache.images)
    t = time.time()
    model, history = fit_autoencoder(cfg, images, train_rows, rows["val"])
    seconds = time.time() - t
    rec = reconstruct(model, images[rows["test"]]).astype(np.float32)
    test_mae = np.abs(rec - images[rows["test"]]).mean(axis=(1, 2, 3))
    save_artefact(folder, model, history, {"config": cfg.to_dict(), "key": key, "fingerprint": fingerprint,
                                           "split": split_id, "seconds": seconds}, {"test_mae": test_mae})
    return TrainedAE(model, history, cfg, key, folder, test_mae, seconds, False)


def latent_rate(latents: np.ndarray, pixels_per_image: int, bits: int = 8) -> dict:
    """Bits per pixel of autoencoder latents (N, h, w, c) stored three ways.

    float32: 32 bits per latent value, as the network produces it.
    quantised: ``bits``-bit uniform quantisation per channel (min/max over the set), fixed-length codes.
    entropy-coded: the same quantised values at their empirical Shannon entropy per channel (the rate an
      ideal entropy coder reaches; side information of a few floats per channel is ignored).
    Also returns the quantisation's PSNR-like error on the latent (for checking that 8 bits suffice).
    """
    z = np.asarray(latents, dtype=np.float32)
    n, h, w, c = z.shape
    values_per_image = h * w * c
    lo = z.min(axis=(0, 1, 2))
    hi = z.max(axis=(0, 1, 2))
    levels = 2 ** bits - 1
    scale = np.where(hi > lo, (hi - lo) / levels, 1.0)
    q = np.rint((z - lo) / scale).astype(np.int64)
    entropy = 0.0
    for ch in range(c):
        counts = np.bincount(q[..., ch].ravel(), minlength=levels + 1)
        p = counts[counts > 0] / counts.sum()
        entropy += float(-(p * np.log2(p)).sum()) * h * w
    deq = q * scale + lo
    return {
        "float32_bpp": 32 * values_per_image / pixels_per_image,
        "quantised_bpp": bits * values_per_image / pixels_per_image,
        "entropy_coded_bpp": entropy / pixels_per_image,
        "quantisation_rmse": float(np.sqrt(np.mean((deq - z) ** 2))),
        "latent_shape": [h, w, c],
    }


def dequantised(latents: np.ndarray, bits: int = 8) -> np.ndarray:
    """Latents after ``bits``-bit quantisation and back (what a decoder receives from a quantised code)."""
    z = np.asarray(latents, dtype=np.float32)
    lo, hi = z.min(axis=(0, 1, 2)), z.max(axis=(0, 1, 2))
    scale = np.where(hi > lo, (hi - lo) / (2 ** bits - 1), 1.0)
    return (np.rint((z - lo) / scale) * scale + lo).astype(np.float32)


def config_from_params(P: dict, ratio: float) -> AEConfig:
    """The AEConfig of the compression chapter's parameters ``P`` (flat) for one ratio."""
    return AEConfig(ratio=ratio, image_size=P["image_size"], filters=tuple(P["ae_filters"]),
                    epochs=P["ae_epochs"], patience=P["ae_patience"], learning_rate=P["ae_learning_rate"],
                    train_limit=P["ae_train_limit"], seed=P["seed"])


def chapter_autoencoders(profile: dict, s, rows: dict, log=print) -> dict:
    """The compression chapter's autoencoders (ratio -> TrainedAE) for a profile: loaded from their
    artefacts, trained if missing. ``s``: a hamviz.classify.Setup at the profile's image size."""
    from .params import chapter_params
    P = chapter_params(profile, "compression")
    return {r: train_or_load_ae(config_from_params(P, r), s.cache, rows, s.labels, s.data.fingerprint,
                                s.split_id, log=log) for r in P["ae_ratios"]}
