"""Joint training of an autoencoder and a classifier (Doctor's study): the model, its training and predictions.

The joint model feeds the autoencoder's reconstruction to the classifier and trains both end to end on the
classification loss, plus ``recon_weight`` x the reconstruction loss (mean absolute error) when that weight is
positive: the weight sets the trade-off between "looks like the input" and "classifies well". Both parts can
start from their separately trained artefacts (compression and classifier chapters) or from scratch.

The reference's conclusions about lesion contrast are tested in :mod:`hamviz.contrast`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .registry import SPLITS, STRATEGIES
from .training import Artefact, TrainingError, fit, limit_rows, make_optimizer, strategy_plan, train_or_load


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
    strategy: str = "S4"               # the classifier's imbalance strategy (S1-S5), applied to joint training too
    oversample_min: int = 1000         # S2/S5's class size, as the classifier's
    train_limit: int | None = None
    val_limit: int | None = None       # a class-stratified subset of the validation part (early stopping, stored)
    seed: int = 0

    def __post_init__(self):
        if self.init not in ("pretrained", "scratch"):
            raise TrainingError(f"joint init must be 'pretrained' or 'scratch', not {self.init!r}")
        if self.recon_weight < 0:
            raise TrainingError(f"recon_weight must be >= 0, not {self.recon_weight}")
        if self.strategy not in STRATEGIES:
            raise TrainingError(f"Unknown imbalance strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}")
        if not (self.train_autoencoder or self.train_classifier):
            raise TrainingError("a joint model with neither part trainable would not train")

    @property
    def label(self) -> str:
        return f"joint {self.ratio:g}x ({self.init}, recon weight {self.recon_weight:g})"


def joint_model(autoencoder, classifier, *, recon_weight: float = 0.0, train_autoencoder: bool = True,
                train_classifier: bool = True):
    """Stack ``autoencoder`` (image -> image in [0, 255]) and ``classifier`` (image -> class probabilities).

    Returns a model with outputs ``{"class": probabilities, "reconstruction": image}`` and the loss weights
    to compile it with; the reconstruction loss is divided by 255 so that 1.0 weighs a mean error of one
    full intensity step as much as one nat of cross-entropy. A part that trains keeps the per-layer trainability
    it was trained with (e.g. a fine-tuned backbone's frozen lower layers and BatchNorm layers)."""
    from .models import keras
    # only ever switch a part off: setting trainable = True would recurse into every sub-layer and undo what the
    # part's own training froze (a pretrained backbone's lower layers and its BatchNorm layers)
    if not train_autoencoder:
        autoencoder.trainable = False
    if not train_classifier:
        classifier.trainable = False
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


def train_joint(cfg: JointConfig, autoencoder, classifier, view, *, rows: dict | None = None, n_classes: int = 7,
                cache_root=None, log=print) -> Artefact:
    """The joint model for ``cfg`` (stored like every model) with the class probabilities of every split part
    (``artefact.proba``). ``autoencoder`` / ``classifier``: the stored :class:`hamviz.training.Artefact` s to
    start from (their weights when cfg.init == "pretrained"; with "scratch" only their architecture); their
    keys are part of this model's key. ``rows``: the parts to train on and score (default: the view's; the
    training part is subsampled to cfg.train_limit, the validation part to cfg.val_limit, both
    class-stratified)."""
    rows = dict(rows or view.rows)
    labels = view.labels
    rows["train"] = limit_rows(rows["train"], labels[rows["train"]], cfg.train_limit, cfg.seed)
    rows["val"] = limit_rows(rows["val"], labels[rows["val"]], cfg.val_limit, cfg.seed)

    def train():
        from .models import keras
        images = view.images
        keras.utils.set_random_seed(cfg.seed)
        ae = keras.models.clone_model(autoencoder.model)
        clf = keras.models.clone_model(classifier.model)
        if cfg.init == "pretrained":
            ae.set_weights(autoencoder.model.get_weights())
            clf.set_weights(classifier.model.get_weights())
        model, weights = joint_model(ae, clf, recon_weight=cfg.recon_weight,
                                     train_autoencoder=cfg.train_autoencoder, train_classifier=cfg.train_classifier)
        model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.learning_rate),
                      loss={"class": "categorical_crossentropy", "reconstruction": "mae"}, loss_weights=weights,
                      metrics={"class": ["accuracy"]})
        # the classifier's imbalance strategy: oversampled rows (S2, S3, S5) and/or class weights (S4, S5)
        idx, cw = strategy_plan(cfg.strategy, labels[rows["train"]], n_classes, min_size=cfg.oversample_min,
                                seed=cfg.seed)
        train_ds, val_ds = _datasets(images, labels, dict(rows, train=rows["train"][idx]), cfg, n_classes)
        if cw is not None:  # class weights through per-sample weights (Keras takes no class_weight for dicts)
            train_ds = train_ds.map(lambda x, y: (x, y, {"class": _tf_gather(cw, y["class"]),
                                                         "reconstruction": _tf_ones(y["class"])[:, None, None]}))
        log(f"training {cfg.label} on {len(rows['train'])} images for up to {cfg.epochs} epochs")
        history = fit(model, train_ds, val_ds, epochs=cfg.epochs, patience=cfg.patience, label=cfg.label,
                      learning_rate=cfg.learning_rate, steps_per_epoch=math.ceil(len(rows["train"]) / cfg.batch_size))
        return model, history, {p: predict_joint(model, images[rows[p]])[0] for p in SPLITS}

    return train_or_load("joint", f"joint{cfg.ratio:g}x", cfg, train, fingerprint=view.fingerprint,
                         split_id=view.split_id, rows=rows, parents=(autoencoder.key, classifier.key),
                         cache_root=cache_root, log=log)


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
