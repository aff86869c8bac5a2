"""Training the compression autoencoders (latent 1.5x / 3x / 6x smaller than the input), saved as artefacts,
and what their latents cost in bits.

The reference (Doctor) trained each autoencoder with Adam and mean absolute error, for 50 epochs (its slides); its
filters and any early stopping are not stated. Models are stored
like every model (:func:`hamviz.training.train_or_load`), keyed by their config, the data and the split, with
the test reconstructions' per-image MAE saved beside them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .training import Artefact, TrainingError, fit, limit_rows, make_optimizer, rows_digest, train_or_load


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
    val_limit: int | None = None    # a class-stratified subset of the validation part for early stopping
    seed: int = 0

    @property
    def label(self) -> str:
        return f"autoencoder {self.ratio:g}x @{self.image_size}"

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["filters"] = list(self.filters)
        return d


def fit_autoencoder(cfg: AEConfig, images: np.ndarray, train_rows, val_rows, verbose: int = 0):
    """Build and train an autoencoder (mean absolute error on [0, 255] images, Adam as in the reference) with
    early stopping on the validation MAE. Returns (model, history)."""
    from .models import autoencoder, keras
    from .pipeline import make_dataset

    keras.utils.set_random_seed(cfg.seed)
    model = autoencoder((cfg.image_size, cfg.image_size, 3), cfg.ratio, cfg.filters)
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate), loss="mae")
    # target = input: augment first, then pair each augmented image with itself
    train_ds = make_dataset(images[train_rows], batch_size=cfg.batch_size, shuffle=True, augment=cfg.augment,
                            seed=cfg.seed, repeat=True, pack=lambda x: (x, x))
    val_ds = make_dataset(images[val_rows], batch_size=128, pack=lambda x: (x, x))
    history = fit(model, train_ds, val_ds, epochs=cfg.epochs, patience=cfg.patience, label=cfg.label,
                  learning_rate=cfg.learning_rate, steps_per_epoch=math.ceil(len(train_rows) / cfg.batch_size),
                  verbose=verbose)
    return model, history


def reconstruct(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Reconstructions (N, H, W, 3) as uint8 images (what a classifier downstream receives)."""
    from .pipeline import make_dataset
    out = model.predict(make_dataset(images, batch_size=batch_size), verbose=0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def train_autoencoder(cfg: AEConfig, view, *, rows: dict | None = None, cache_root=None, log=print) -> Artefact:
    """The autoencoder for ``cfg`` on a :class:`hamviz.view.PreparedView`, trained on its training part
    (validated on ``val``) on first use and stored with the per-image MAE of the test reconstructions
    (``artefact.arrays["test_mae"]``, pixel units 0..255). ``rows``: the parts to use (default: the view's;
    the training part is subsampled to cfg.train_limit, the validation part that early stopping watches to
    cfg.val_limit, both class-stratified)."""
    if view.size != cfg.image_size:
        raise TrainingError(f"the view holds {view.size}x{view.size} images but the autoencoder config asks "
                            f"for {cfg.image_size}")
    parents = (rows_digest(rows),) if rows is not None else ()
    rows = dict(rows or view.rows)
    rows["train"] = limit_rows(rows["train"], view.labels[rows["train"]], cfg.train_limit, cfg.seed)
    rows["val"] = limit_rows(rows["val"], view.labels[rows["val"]], cfg.val_limit, cfg.seed)

    def train():
        log(f"training {cfg.label} on {len(rows['train'])} images for up to {cfg.epochs} epochs")
        images = view.images
        model, history = fit_autoencoder(cfg, images, rows["train"], rows["val"])
        rec = reconstruct(model, images[rows["test"]]).astype(np.float32)
        return model, history, {"test_mae": np.abs(rec - images[rows["test"]]).mean(axis=(1, 2, 3))}

    return train_or_load("autoencoder", f"ae{cfg.ratio:g}x-{cfg.image_size}", cfg, train,
                         fingerprint=view.fingerprint, split_id=view.split_id, rows=rows, parents=parents,
                         accept=lambda s: len(s.arrays.get("test_mae", ())) == len(rows["test"]),
                         cache_root=cache_root, log=log)


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
