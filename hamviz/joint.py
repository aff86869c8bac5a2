"""Joint training of an autoencoder and a classifier, and the measures behind the contrast hypothesis.

The joint model feeds the autoencoder's reconstruction to the classifier and trains both end to end on the
classification loss, plus ``recon_weight`` x the reconstruction loss (mean absolute error) when that weight is
positive: the weight sets the trade-off between "looks like the input" and "classifies well". Both parts can
start from their separately trained artefacts (compression and classifier chapters) or from scratch.

The reference concluded, from looking at reconstructions, that the jointly trained autoencoder keeps mostly the
lesion-skin boundary and that lesion contrast drives the classifier. :func:`boundary_energy` and
:func:`error_by_bins` turn that into numbers.
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
import pandas as pd
from scipy import ndimage

from .config import cache_dir
from .train import TRAINING_VERSION, TrainingError, limit_rows, load_artefact, make_optimizer, save_artefact


@dataclass
class JointConfig:
    ratio: float = 3.0
    image_size: int = 64
    init: str = "pretrained"          # "pretrained": start from the saved AE and classifier; "scratch"
    recon_weight: float = 0.0          # weight of the reconstruction MAE (pixel units / 255) in the loss
    train_autoencoder: bool = True
    train_classifier: bool = True
    optimizer: str = "adam"
    learning_rate: float = 1e-4
    epochs: int = 5
    patience: int = 3
    batch_size: int = 32
    augment: dict = field(default_factory=lambda: {"rot90": True, "flip": True, "zoom": 0.1, "shift": 0.1})
    class_weighted: bool = True
    train_limit: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.init not in ("pretrained", "scratch"):
            raise TrainingError(f"joint init must be 'pretrained' or 'scratch', not {self.init!r}")
        if self.recon_weight < 0:
            raise TrainingError(f"recon_weight must be >= 0, not {self.recon_weight}")
        if not (self.train_autoencoder or self.train_classifier):
            raise TrainingError("a joint model with neither part trainable would not train")

    @property
    def label(self) -> str:
        return f"joint {self.ratio:g}x ({self.init}, recon weight {self.recon_weight:g})"


def config_from_params(P: dict, ratio: float) -> JointConfig:
    """The JointConfig of the joint chapter's parameters ``P`` (flat) for one autoencoder ratio."""
    return JointConfig(ratio=ratio, image_size=P["image_size"], init=P["init"], recon_weight=P["recon_weight"],
                       train_autoencoder=P["train_autoencoder"], train_classifier=P["train_classifier"],
                       learning_rate=P["learning_rate"], epochs=P["epochs"], patience=P["patience"],
                       train_limit=P["train_limit"], seed=P["seed"])


def joint_model(autoencoder, classifier, *, recon_weight: float = 0.0, train_autoencoder: bool = True,
                train_classifier: bool = True):
    """Stack ``autoencoder`` (image -> image in [0, 255]) and ``classifier`` (image -> class probabilities).

    Returns a model with outputs ``{"class": probabilities, "reconstruction": image}`` and the loss weights
    to compile it with; the reconstruction loss is divided by 255 so that 1.0 weighs a mean error of one
    full intensity step as much as one nat of cross-entropy."""
    from .models import keras
    autoencoder.trainable = train_autoencoder
    classifier.trainable = train_classifier
    inp = keras.Input(autoencoder.input.shape[1:], name="image")
    rec = autoencoder(inp)
    rec_out = keras.layers.Rescaling(1 / 255.0, name="reconstruction")(rec)
    probs = keras.layers.Identity(name="class")(classifier(rec))
    model = keras.Model(inp, {"class": probs, "reconstruction": rec_out}, name="joint")
    return model, {"class": 1.0, "reconstruction": float(recon_weight)}


def _datasets(images, labels, rows, cfg, n_classes):
    """(train, val) datasets of (image, {"class": one-hot, "reconstruction": image / 255}); the reconstruction
    target is the augmented image itself."""
    from .pipeline import make_dataset

    def pack(x, y):
        return x, {"class": y, "reconstruction": x / 255.0}

    def build(r, train):
        return make_dataset(images[r], labels[r], batch_size=cfg.batch_size if train else 128, shuffle=train,
                            augment=cfg.augment if train else None, n_classes=n_classes, seed=cfg.seed,
                            repeat=train, pack=pack)

    return build(rows["train"], True), build(rows["val"], False)


@dataclass
class TrainedJoint:
    model: object
    autoencoder: object
    classifier: object
    history: dict
    config: JointConfig
    key: str
    path: Path
    proba: dict
    seconds: float
    loaded: bool


def train_or_load_joint(cfg: JointConfig, ae_model, clf_model, cache, rows: dict, labels, fingerprint: str,
                        split_id: str = "", parents: tuple = (), n_classes: int = 7, cache_root=None,
                        log=print) -> TrainedJoint:
    """Train the joint model for ``cfg`` once (saved like every model) and return it with the class
    probabilities of every split part. ``ae_model`` / ``clf_model``: the starting points (their weights are
    used when cfg.init == "pretrained"; with "scratch" only their architecture); ``parents``: the keys of
    those artefacts, part of this model's key."""
    from .balance import class_weights
    from .models import keras
    from .train import _nan_guard
    images = np.asarray(cache.images)
    labels = np.asarray(labels)
    rows = dict(rows)
    rows["train"] = limit_rows(np.asarray(rows["train"]), labels[rows["train"]], cfg.train_limit, cfg.seed)
    raw = json.dumps({"cfg": dataclasses.asdict(cfg), "data": fingerprint, "split": split_id,
                      "parents": list(parents), "version": TRAINING_VERSION}, sort_keys=True)
    key = hashlib.sha256(raw.encode()).hexdigest()[:16]
    folder = (Path(cache_root) if cache_root else cache_dir()) / "models" / f"joint{cfg.ratio:g}x-{key}"
    found = load_artefact(folder)
    if found is not None:
        model, history, meta, arrays = found
        ae, clf = parts_of(model)
        return TrainedJoint(model, ae, clf, history, cfg, key, folder,
                            {p: arrays[p] for p in ("train", "val", "test")}, meta["seconds"], True)
    keras.utils.set_random_seed(cfg.seed)
    ae = keras.models.clone_model(ae_model)
    clf = keras.models.clone_model(clf_model)
    if cfg.init == "pretrained":
        ae.set_weights(ae_model.get_weights())
        clf.set_weights(clf_model.get_weights())
    model, weights = joint_model(ae, clf, recon_weight=cfg.recon_weight,
                                 train_autoencoder=cfg.train_autoencoder, train_classifier=cfg.train_classifier)
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate),
                  loss={"class": "categorical_crossentropy", "reconstruction": "mae"}, loss_weights=weights,
                  metrics={"class": ["accuracy"]})
    train_ds, val_ds = _datasets(images, labels, rows, cfg, n_classes)
    if cfg.class_weighted:  # class weights through per-sample weights (Keras takes no class_weight for dicts)
        cw = class_weights(labels[rows["train"]], n_classes)
        train_ds = train_ds.map(lambda x, y: (x, y, {"class": _tf_gather(cw, y["class"]),
                                                     "reconstruction": _tf_ones(y["class"])[:, None, None]}))
    log(f"training {cfg.label} on {len(rows['train'])} images for up to {cfg.epochs} epochs")
    guard = _nan_guard()
    t = time.time()
    hist = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, verbose=0, shuffle=False,
                     steps_per_epoch=math.ceil(len(rows["train"]) / cfg.batch_size),
                     callbacks=[guard, keras.callbacks.EarlyStopping(
                         monitor="val_loss", patience=cfg.patience, restore_best_weights=True)])
    if guard.where is not None:
        raise TrainingError(f"Training {cfg.label} stopped: NaN loss in epoch {guard.where[0]}; lower "
                            f"learning_rate (now {cfg.learning_rate}).")
    seconds = time.time() - t
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["best_epoch"] = int(np.argmin(history["val_loss"])) + 1
    proba = {p: predict_joint(model, images[rows[p]])[0] for p in ("train", "val", "test")}
    save_artefact(folder, model, history, {"config": dataclasses.asdict(cfg), "key": key, "seconds": seconds,
                                           "parents": list(parents)}, proba)
    return TrainedJoint(model, ae, clf, history, cfg, key, folder, proba, seconds, False)


def parts_of(joint):
    """(autoencoder, classifier) sub-models of a joint model."""
    from .models import keras
    subs = [l for l in joint.layers if isinstance(l, keras.Model)]
    ae = next(m for m in subs if m.name.startswith("autoencoder"))
    return ae, next(m for m in subs if m is not ae)


def _tf_gather(cw: dict, onehot):
    from ._tf import import_tf
    tf = import_tf()
    table = tf.constant([cw.get(i, 0.0) for i in range(len(cw))], tf.float32)
    return tf.gather(table, tf.argmax(onehot, axis=-1))


def _tf_ones(onehot):
    from ._tf import import_tf
    tf = import_tf()
    return tf.ones(tf.shape(onehot)[:1], tf.float32)


def predict_joint(model, images, batch_size: int = 256):
    """(class probabilities, reconstructions as uint8) of a joint model."""
    from .pipeline import make_dataset
    out = model.predict(make_dataset(np.asarray(images), batch_size=batch_size), verbose=0)
    rec = np.clip(np.rint(out["reconstruction"] * 255.0), 0, 255).astype(np.uint8)
    return out["class"], rec


# ------------------------------------------------------------------ the contrast hypothesis, in numbers

def gradient_magnitude(images) -> np.ndarray:
    """Sobel gradient magnitude of the luminance, per image (N, H, W)."""
    x = np.asarray(images, dtype=np.float32)
    lum = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    # 2-D kernels with a singleton batch axis: ndimage.sobel on the stack would also smooth across images
    kx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)[None]
    gx = ndimage.correlate(lum, kx, mode="reflect")
    gy = ndimage.correlate(lum, kx.transpose(0, 2, 1), mode="reflect")
    return np.hypot(gx, gy)


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the lesion boundary (inside or outside)."""
    m = np.asarray(mask, dtype=bool)
    st = np.ones((3, 3), bool)
    grown = ndimage.binary_dilation(m, st, iterations=width)
    shrunk = ndimage.binary_erosion(m, st, iterations=width, border_value=1)
    return grown & ~shrunk


def boundary_energy(images, masks, width: int = 2) -> np.ndarray:
    """Share of each image's gradient energy (squared magnitude) lying in the band around the mask
    boundary; NaN where the mask is empty or full. The band's own share of the pixels is what a
    boundary-indifferent image would give."""
    g2 = gradient_magnitude(images) ** 2
    out = np.full(len(g2), np.nan)
    for i, m in enumerate(np.asarray(masks, dtype=bool)):
        if not m.any() or m.all():
            continue
        band = boundary_band(m, width)
        total = g2[i].sum()
        out[i] = g2[i][band].sum() / total if total > 0 else np.nan
    return out


def band_share(masks, width: int = 2) -> np.ndarray:
    """Fraction of pixels in the boundary band (the share a boundary-indifferent image would have)."""
    return np.array([boundary_band(m, width).mean() if np.asarray(m).any() and not np.asarray(m).all()
                     else np.nan for m in np.asarray(masks, dtype=bool)])


def error_by_bins(values, errors: dict[str, np.ndarray], n_bins: int = 4) -> pd.DataFrame:
    """Error rate per quantile bin of ``values`` (e.g. lesion contrast) for each named model; rows = bins
    (with their value range and count), columns = models. Images with NaN values are left out."""
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    bins = pd.qcut(v[ok], n_bins, duplicates="drop")
    out = pd.DataFrame({name: pd.Series(np.asarray(e, dtype=float)[ok]).groupby(bins.codes).mean().to_numpy()
                        for name, e in errors.items()})
    out.insert(0, "n", np.bincount(bins.codes))
    out.index = [str(c) for c in bins.categories]
    out.index.name = "bin"
    return out


def contrast_verdict(contrast, errors: dict[str, np.ndarray], labels, classes) -> tuple[pd.DataFrame, list[str]]:
    """Does lesion contrast predict the classifier's errors? Per model: mean contrast of misclassified vs
    correctly classified test images with a Mann-Whitney U test, and across classes the Spearman correlation
    between a class's median contrast and its recall. Returns the table and one plain sentence per model."""
    from scipy.stats import mannwhitneyu, spearmanr
    c = np.asarray(contrast, dtype=float)
    ok = ~np.isnan(c)
    labels = np.asarray(labels)
    rows, lines = [], []
    med = np.array([np.nanmedian(c[labels == k]) if (labels == k).any() else np.nan for k in range(len(classes))])
    for name, err in errors.items():
        e = np.asarray(err, dtype=bool)
        wrong, right = c[ok & e], c[ok & ~e]
        p = mannwhitneyu(wrong, right, alternative="less").pvalue if len(wrong) and len(right) else np.nan
        recall = np.array([1 - e[labels == k].mean() if (labels == k).any() else np.nan
                           for k in range(len(classes))])
        keep = ~np.isnan(med) & ~np.isnan(recall)
        rho, rho_p = spearmanr(med[keep], recall[keep]) if keep.sum() > 2 else (np.nan, np.nan)
        rows.append({"model": name, "contrast of errors (median dE2000)": float(np.median(wrong)) if len(wrong) else np.nan,
                     "contrast of correct (median dE2000)": float(np.median(right)) if len(right) else np.nan,
                     "Mann-Whitney p (errors lower)": float(p), "Spearman rho (class contrast vs recall)": float(rho),
                     "Spearman p": float(rho_p)})
        supported = p < 0.05
        lines.append(f"{name}: misclassified images have median contrast {rows[-1]['contrast of errors (median dE2000)']:.1f} "
                     f"vs {rows[-1]['contrast of correct (median dE2000)']:.1f} for correct ones (one-sided Mann-Whitney "
                     f"p = {p:.2g}: {'supports' if supported else 'does not support'} 'low contrast -> errors'); across "
                     f"classes, contrast vs recall Spearman rho = {rho:.2f} (p = {rho_p:.2g}).")
    return pd.DataFrame(rows).set_index("model"), lines


def boundary_verdict(shares: dict[str, np.ndarray], baseline: np.ndarray, joint_names, standalone_names):
    """Mean boundary-band share of gradient energy per image source, and a paired Wilcoxon test of each joint
    autoencoder against its standalone counterpart. Returns (table, sentences)."""
    from scipy.stats import wilcoxon
    table = pd.DataFrame({k: {"mean share of gradient energy in the boundary band": float(np.nanmean(v)),
                              "median": float(np.nanmedian(v))} for k, v in shares.items()}).T
    table.loc["(band's share of pixels)"] = [float(np.nanmean(baseline)), float(np.nanmedian(baseline))]
    lines = []
    for j, s in zip(joint_names, standalone_names):
        a, b = np.asarray(shares[j]), np.asarray(shares[s])
        ok = ~np.isnan(a) & ~np.isnan(b)
        p = wilcoxon(a[ok], b[ok], alternative="greater").pvalue if ok.sum() > 10 else np.nan
        lines.append(f"{j}: {np.nanmean(a):.3f} of the gradient energy lies in the boundary band vs "
                     f"{np.nanmean(b):.3f} for {s} (paired Wilcoxon, joint > standalone: p = {p:.2g}); "
                     f"{'supports' if p < 0.05 else 'does not support'} 'the joint autoencoder keeps the boundary'.")
    return table, lines
