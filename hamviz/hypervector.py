"""Hyperdimensional memory-augmented classification (HD-MANN; Karunaratne et al. 2021), as the Barros Everett
reference used it to study JPEG compression (on 2,357 ISIC images of four classes at 180x180, an 80/20
train/validation split; not HAM10000): a network whose output is a d-dimensional vector (hypervector), matched
against one random key per class in an explicit memory.

The reference: a CNN (Table I: Rescaling, Conv2D 64 + MaxPool, Conv2D 128 + MaxPool, Dropout, Flatten, Dense
1000, Dense 500) whose output is regressed (MSE, AdamW) onto its class's key, a random vector sampled "from a
discrete uniform distribution" U{0, 1} (keys "usually between 500 and 10.000 bits long"; d = 500 in Table I).
Inference searches the memory "for the closest known vector"; the distance is not stated (hamviz's choice below).
Not stated either: the layers' activations, the dropout rate, the learning rate and the batch size.

Pieces:

- :class:`Memory`: the class keys ("templates"), seeded, saved beside the model (as JSON). Binary
  {0, 1} keys (the reference) or bipolar {-1, +1}. :meth:`Memory.add` adds a class *without retraining*.
- Similarities: :func:`cosine_scores`, :func:`hamming_scores`, :func:`memory_scores`, :func:`predict`, and
  :func:`scores_to_proba` (a softmax over scores, for AUC-type metrics).
- Losses: :func:`mse_loss` (the reference; the dataset yields the class key as the target) and
  :func:`make_cosine_loss` (scaled-cosine cross-entropy against every key; the dataset yields integer
  labels). :func:`targets_for` says what the dataset must yield for each.
- Models: :func:`hd_cnn` (the reference CNN) and :func:`hd_head` (a hypervector head on any hamviz
  classifier, so a backbone can be compared with its softmax head). Both flat functional graphs taking
  float images in [0, 255], like every hamviz model. :func:`hd_feature_head`: the reference's layers after
  its convolutions on a frozen backbone's pooled features (hamviz's addition, not in the reference).
- :func:`fit_hd` trains one through the training core (:func:`hamviz.training.fit`); the hypervector chapter
  stores it with its memory in the artefact store.

**The centre of a memory.** Binary keys live in the cube {0, 1}^d, whose centre is 0.5; bipolar keys are
centred at 0. About its centre, every random key has the same length (sqrt(d)/2, resp. sqrt(d)) and two
random keys are near-orthogonal (plain cosine between random {0, 1} keys is about 0.5, not 0). Hence
:func:`predict` in ``cosine`` mode measures the cosine *about the memory's centre* (``centre=`` of
:func:`cosine_scores`): for keys of equal length about the centre this ranks classes exactly as the
Euclidean distance to the keys does (the reference's "closest known vector"), and for binarised vectors it is
an affine function of the Hamming similarity (``hamming = (1 + cosine) / 2``), so the two modes agree on
clean outputs. The cosine loss uses the same centred cosine, which makes it the continuous relaxation of
the Hamming match. ``cosine_scores(outputs, templates)`` without ``centre`` is the plain cosine.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .registry import HD_KINDS as KINDS  # noqa: F401
from .registry import HD_LOSSES as LOSSES
from .registry import HD_MODES as MODES

#: default softmax temperatures of :func:`scores_to_proba`. Cosine scores lie in [-1, 1] and Hamming
#: similarities in [0, 1] with hamming = (1 + cosine) / 2 on binarised vectors, so 0.05 for Hamming gives the
#: same probabilities as 0.1 for cosine. 0.1 turns a cosine gap of 0.5 between the best and the next key
#: into odds of e^5 ~ 150 : 1. Not calibrated.
TEMPERATURES = {"cosine": 0.1, "hamming": 0.05}


def _centre_of(kind: str) -> float:
    if kind not in KINDS:
        raise ValueError(f"unknown memory kind {kind!r}: one of {', '.join(KINDS)}")
    return 0.5 if kind == "binary" else 0.0


# --------------------------------------------------------------------------------------------- memory
class Memory:
    """Class keys (templates) of an HD classifier: ``templates`` float32 (K, d), ``classes`` K names.

    ``kind``: "binary" ({0, 1} keys, the reference; centre 0.5) or "bipolar" ({-1, +1}; centre 0).
    Build one with :meth:`random`; store it beside its model with :meth:`to_dict` / :meth:`from_dict`.
    """

    def __init__(self, templates, classes: Sequence[str] | None = None, kind: str = "binary",
                 seed: int | None = None):
        t = np.array(templates, dtype=np.float32)
        if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"templates must be a (n_classes, dim) array, got shape {t.shape}")
        if not np.isfinite(t).all():
            raise ValueError("templates must be finite")
        classes = [f"class{i}" for i in range(len(t))] if classes is None else [str(c) for c in classes]
        if len(classes) != len(t):
            raise ValueError(f"{len(t)} templates but {len(classes)} class names")
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be distinct, got {classes}")
        self.kind = kind
        self.centre = _centre_of(kind)
        self.templates = t
        self.classes = tuple(classes)
        self.seed = seed

    @classmethod
    def random(cls, n_classes: int, dim: int, kind: str = "binary", seed: int = 0,
               classes: Sequence[str] | None = None) -> "Memory":
        """``n_classes`` random keys of ``dim`` bits, i.i.d. uniform: {0, 1} (binary, the reference's
        U{0,1}) or {-1, +1} (bipolar). Same seed, same keys. Raises if two keys coincide (only possible
        for a tiny ``dim``)."""
        _centre_of(kind)
        if n_classes < 1 or dim < 1:
            raise ValueError(f"n_classes and dim must be positive, got {n_classes}, {dim}")
        if classes is not None and len(classes) != n_classes:
            raise ValueError(f"n_classes={n_classes} but {len(classes)} class names")
        bits = np.random.default_rng(seed).integers(0, 2, size=(n_classes, dim))
        if len(np.unique(bits, axis=0)) < n_classes:
            raise ValueError(f"two of the {n_classes} random keys of dim {dim} coincide (seed {seed}); "
                             f"use a larger dim (500 or more is usual) or another seed")
        t = bits if kind == "binary" else 2 * bits - 1
        return cls(t.astype(np.float32), classes, kind, seed)

    # ------------------------------------------------------------------ properties
    @property
    def n_classes(self) -> int:
        return len(self.templates)

    @property
    def dim(self) -> int:
        return self.templates.shape[1]

    def __len__(self) -> int:
        return self.n_classes

    def __repr__(self) -> str:
        return (f"Memory({self.n_classes} classes x {self.dim} dims, kind={self.kind!r}, seed={self.seed}, "
                f"classes={list(self.classes)})")

    def index(self, name: str) -> int:
        return self.classes.index(name)

    def binarised(self) -> np.ndarray:
        """The templates binarised as :func:`hamming_scores` does (threshold 0.5, resp. sign)."""
        return binarise(self.templates, self.kind)

    # ------------------------------------------------------------------ new classes
    def add(self, name: str, vectors) -> "Memory":
        """Add class ``name`` to the memory without retraining the network (in place; returns self).

        ``vectors`` 2-D (n, d): network outputs of n examples of the new class; its template becomes their
        *prototype*: the mean output, rescaled about the memory's centre to the length of the random keys
        (sqrt(d)/2 binary, sqrt(d) bipolar), so it sits with them on one sphere. The rescaling changes
        neither the centred cosine nor the Hamming match (binarisation about the centre is scale-free);
        it keeps Euclidean-nearest equal to cosine-nearest. ``vectors`` 1-D (d,): a given template, stored
        as it is (e.g. a fresh random key, when the network is then trained on the new class).
        """
        name = str(name)
        if name in self.classes:
            raise ValueError(f"class {name!r} is already in the memory")
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim not in (1, 2) or v.shape[-1] != self.dim or (v.ndim == 2 and len(v) == 0):
            raise ValueError(f"add() takes a template ({self.dim},) or outputs (n, {self.dim}), "
                             f"got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("vectors must be finite")
        if v.ndim == 2:
            v = prototype(v, self.kind)
        self.templates = np.vstack([self.templates, v[None]]).astype(np.float32)
        self.classes = (*self.classes, name)
        return self

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """JSON-able: kind, seed, classes, dim, templates (a list of lists)."""
        t = self.templates
        exact = np.array_equal(t, np.rint(t))
        return {"kind": self.kind, "seed": self.seed, "classes": list(self.classes), "dim": self.dim,
                "templates": (t.astype(int) if exact else t.astype(float)).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Memory":
        t = np.asarray(d["templates"], dtype=np.float32)
        if "dim" in d and t.shape[-1] != d["dim"]:
            raise ValueError(f"memory says dim={d['dim']} but its templates have {t.shape[-1]}")
        return cls(t, d["classes"], d.get("kind", "binary"), d.get("seed"))


def prototype(outputs, kind: str = "binary") -> np.ndarray:
    """The template of a class from outputs (n, d) of its examples: their mean, rescaled about the centre
    of a ``kind`` memory to the length of its random keys (see :meth:`Memory.add`)."""
    v = np.asarray(outputs, dtype=np.float64)
    c = _centre_of(kind)
    m = v.mean(axis=0) - c
    norm = np.linalg.norm(m)
    if not norm > 1e-12:
        raise ValueError("the mean of these outputs is the memory's centre: no direction to store")
    radius = math.sqrt(v.shape[1]) * (0.5 if kind == "binary" else 1.0)
    return (c + m * (radius / norm)).astype(np.float32)


# --------------------------------------------------------------------------------------------- similarity
def _as_2d(x, name):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (n, dim), got shape {x.shape}")
    return x


def _check_dims(outputs, templates):
    if outputs.shape[1] != templates.shape[1]:
        raise ValueError(f"outputs have dim {outputs.shape[1]} but the templates {templates.shape[1]}")


def cosine_scores(outputs, templates, centre: float = 0.0) -> np.ndarray:
    """(N, K) cosine similarity of each output (N, d) with each template (K, d), both taken about
    ``centre`` (0: the plain cosine; :func:`predict` passes the memory's centre). A zero vector scores 0."""
    o, t = _as_2d(outputs, "outputs"), _as_2d(templates, "templates")
    _check_dims(o, t)
    o = o.astype(np.float64) - centre
    t = t.astype(np.float64) - centre
    on = np.linalg.norm(o, axis=1, keepdims=True)
    tn = np.linalg.norm(t, axis=1, keepdims=True)
    return (o / np.where(on > 0, on, 1)) @ (t / np.where(tn > 0, tn, 1)).T


def binarise(x, kind: str = "binary") -> np.ndarray:
    """Bits of real vectors as float32: binary kind {0, 1} (x >= 0.5 -> 1); bipolar {-1, +1} (sign, 0 -> +1)."""
    x = np.asarray(x, dtype=np.float32)
    if _centre_of(kind) == 0.5:
        return (x >= 0.5).astype(np.float32)
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def hamming_scores(outputs, templates, kind: str = "binary") -> np.ndarray:
    """(N, K) Hamming similarity 1 - hamming_distance / d between the binarised outputs and the binarised
    templates (see :func:`binarise`); 1 = identical bits, about 0.5 for unrelated vectors."""
    o, t = _as_2d(outputs, "outputs"), _as_2d(templates, "templates")
    _check_dims(o, t)
    c = _centre_of(kind)
    # as +-1 vectors the dot product counts agreements minus disagreements (exact in float32 up to 2^24)
    bo = np.where(o >= c, 1.0, -1.0).astype(np.float32)
    bt = np.where(t >= c, 1.0, -1.0).astype(np.float32)
    agree = (bo @ bt.T).astype(np.float64)
    return (1.0 + agree / o.shape[1]) / 2.0


def memory_scores(outputs, memory: Memory, mode: str = "cosine") -> np.ndarray:
    """(N, K) scores of outputs against a memory's keys, higher = closer: ``cosine`` (about the memory's
    centre) or ``hamming``."""
    if mode == "cosine":
        return cosine_scores(outputs, memory.templates, centre=memory.centre)
    if mode == "hamming":
        return hamming_scores(outputs, memory.templates, memory.kind)
    raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")


def predict(outputs, memory: Memory, mode: str = "cosine") -> np.ndarray:
    """Integer labels (N,): the class of the nearest key (label i means ``memory.classes[i]``)."""
    return np.argmax(memory_scores(outputs, memory, mode), axis=1).astype(np.int64)


def scores_to_proba(scores, mode: str = "cosine", temperature: float | None = None) -> np.ndarray:
    """(N, K) softmax(scores / temperature), rows summing to 1.

    A monotone map of the scores (argmax and every ranking kept), so AUC and the other hamviz metrics can
    use them; **not calibrated probabilities**: the temperature sets how peaked they are. Defaults
    (:data:`TEMPERATURES`): cosine 0.1, hamming 0.05, equivalent since hamming = (1 + cosine) / 2 on
    binarised vectors. Fit one on validation data (temperature scaling) where calibration matters.
    """
    if temperature is None:
        if mode not in TEMPERATURES:
            raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
        temperature = TEMPERATURES[mode]
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (n, n_classes), got shape {s.shape}")
    z = s / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(outputs, memory: Memory, mode: str = "cosine", temperature: float | None = None):
    """:func:`scores_to_proba` of :func:`memory_scores`: what :func:`hamviz.metrics.evaluate` takes."""
    return scores_to_proba(memory_scores(outputs, memory, mode), mode, temperature)


# --------------------------------------------------------------------------------------------- losses
def mse_loss(y_true, y_pred):
    """The reference loss: mean squared error between the output and its class key (the target the
    dataset yields, see :func:`targets_for`); per sample, as ``keras.losses.mean_squared_error``."""
    import keras
    return keras.ops.mean(keras.ops.square(y_pred - keras.ops.cast(y_true, y_pred.dtype)), axis=-1)


def make_cosine_loss(templates, scale: float = 10.0, centre: float = 0.0):
    """A Keras loss ``(labels, outputs)``: softmax cross-entropy over logits ``scale * cos(output, key_k)``
    for every key k (hamviz's addition, not in the Barros Everett reference; the scaled-cosine loss of the
    few-shot literature). The dataset yields integer labels (:func:`targets_for` with loss="cosine").
    ``centre``: cosines about it (pass the memory's centre; :func:`fit_hd` does). ``scale`` bounds the logit gap
    (2 * scale); 10 is usual."""
    import keras
    t = np.asarray(templates, dtype=np.float64) - centre
    norms = np.linalg.norm(t, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a template equals the centre: its cosine is undefined")
    keys = np.ascontiguousarray((t / norms).T, dtype=np.float32)  # (d, K)
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale}")

    def cosine_loss(y_true, y_pred):
        ops = keras.ops
        y = y_pred - centre
        y = y / ops.sqrt(ops.sum(ops.square(y), axis=-1, keepdims=True) + 1e-12)
        logits = scale * ops.matmul(y, ops.convert_to_tensor(keys, dtype=y.dtype))
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

    return cosine_loss


def hd_loss(loss: str, memory: Memory, scale: float = 10.0):
    """The Keras loss for ``loss`` ("mse" or "cosine") over ``memory``."""
    if loss == "mse":
        return mse_loss
    if loss == "cosine":
        return make_cosine_loss(memory.templates, scale, memory.centre)
    raise ValueError(f"unknown loss {loss!r}: one of {', '.join(LOSSES)}")


def targets_for(labels, memory: Memory, loss: str = "mse") -> np.ndarray:
    """What the dataset must yield as targets: for "mse" the class keys (N, d) float32; for "cosine" the
    integer labels (N,)."""
    y = np.asarray(labels)
    if y.ndim != 1 or (y.dtype.kind not in "iu" and len(y)):
        raise ValueError(f"labels must be integers (N,), got dtype {y.dtype} shape {y.shape}")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= memory.n_classes):
        raise ValueError(f"labels must be in 0..{memory.n_classes - 1} for this memory")
    if loss == "mse":
        return memory.templates[y]
    if loss == "cosine":
        return y
    raise ValueError(f"unknown loss {loss!r}: one of {', '.join(LOSSES)}")


def _accuracy_metric(memory: Memory, loss: str):
    """Nearest-key (centred cosine) accuracy as a Keras metric, for either kind of target."""
    import keras
    t = memory.templates.astype(np.float64) - memory.centre
    keys = (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)
    centre = memory.centre

    def hd_accuracy(y_true, y_pred):
        ops = keras.ops
        k = ops.convert_to_tensor(keys, dtype=y_pred.dtype)
        pred = ops.argmax(ops.matmul(y_pred - centre, ops.transpose(k)), axis=-1)
        if loss == "mse":  # the target is a key: its class is the key it matches
            true = ops.argmax(ops.matmul(ops.cast(y_true, y_pred.dtype) - centre, ops.transpose(k)), axis=-1)
        else:
            true = ops.reshape(ops.cast(y_true, "int64"), (-1,))
        return ops.cast(ops.equal(ops.cast(pred, "int64"), ops.cast(true, "int64")), "float32")

    return hd_accuracy


# --------------------------------------------------------------------------------------------- models
def hd_cnn(input_shape=(64, 64, 3), dim: int = 500, dropout: float = 0.5, dense: int = 1000, *,
           filters=(64, 128), padding: str = "same", name: str = "hd_cnn"):
    """The reference HD-MANN CNN (Barros Everett, Table I): scale to [0, 1], Conv2D(64, 3x3, relu) +
    MaxPool, Conv2D(128, 3x3, relu) + MaxPool, Dropout, Flatten, Dense(dense, relu), Dense(dim, linear) named
    "hypervector". Table I gives the layers, shapes and parameter counts (3x3 kernels follow from them); the
    activations and the dropout rate are hamviz's choices.

    ``filters`` / ``padding`` default to the reference: Table I's feature maps 180 -> 180 -> 90 -> 90 -> 45 at
    180x180 mean "same" convolutions (45 x 45 x 128 = 259,200 inputs to the Dense layer, 259.2M weights at
    dense=1000); smaller filters make test-sized models. Input: (H, W, 3) float images in [0, 255]; output
    (N, dim). Raises ModelError for inputs too small for two poolings."""
    from .models import ImagenetPreprocess, _check_shape, keras
    layers = keras.layers
    _check_shape(input_shape, 10 if padding == "valid" else 4, "hd_cnn")
    if dim < 1 or dense < 1 or not 0 <= dropout < 1:
        raise ValueError(f"hd_cnn needs dim, dense >= 1 and dropout in [0, 1), got {dim}, {dense}, {dropout}")
    inputs = keras.Input(input_shape, name="image")
    x = ImagenetPreprocess("unit", name="scale")(inputs)
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(f, 3, padding=padding, activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, activation="relu", name="dense")(x)
    outputs = layers.Dense(dim, name="hypervector")(x)
    return keras.Model(inputs, outputs, name=name)


def hd_head(backbone_model, dim: int = 500, *, copy: bool = True, name: str | None = None):
    """A hypervector head on a hamviz classifier: its final "predictions" layer dropped, Dense(dim, linear)
    named "hypervector" on the output of the layer before it. One flat functional graph.

    copy: True (default) works on a copy with the same weights and trainable flags, so training the HD
    model leaves ``backbone_model`` as it was; False shares the layers (and weights) with it."""
    from .models import ModelError, keras
    names = [l.name for l in backbone_model.layers]
    if "predictions" not in names:
        raise ModelError(f"model {backbone_model.name} has no 'predictions' layer to replace; hd_head takes a "
                         f"hamviz classifier (small_cnn, transfer_model, build_model)")
    src = backbone_model
    if copy:
        src = keras.models.clone_model(backbone_model)
        src.set_weights(backbone_model.get_weights())
        for a, b in zip(backbone_model.layers, src.layers):
            b.trainable = a.trainable
    features = src.get_layer("predictions").input
    outputs = keras.layers.Dense(dim, name="hypervector")(features)
    return keras.Model(src.input, outputs, name=name or f"{backbone_model.name}_hd")


def hd_feature_head(n_features: int, dim: int = 500, dense: int | None = 1000, dropout: float = 0.5, *,
                    name: str = "hd_feature_head"):
    """The reference HD-MANN's layers after its convolutions, on pooled backbone features (hamviz's addition):
    Dropout, Dense(dense, relu) (left out for ``dense`` None or 0), Dense(dim, linear) named "hypervector"
    (Barros Everett's head of :func:`hd_cnn` without Flatten, which a pooled vector does not need).

    Input: float feature vectors (N, n_features), e.g. the frozen EfficientNet-Lite0 (Tan & Le 2019) pooled
    features of :func:`hamviz.features.backbone_features` (n_features = 1280); output (N, dim). Train it with
    :func:`fit_hd` on the features (no augmentation). Raises ValueError for n_features, dim < 1, dense < 0 or
    dropout outside [0, 1)."""
    from .models import keras
    layers = keras.layers
    dense = dense or 0
    if n_features < 1 or dim < 1 or dense < 0 or not 0 <= dropout < 1:
        raise ValueError(f"hd_feature_head needs n_features, dim >= 1, dense >= 0 (0: no hidden layer) and dropout "
                         f"in [0, 1), got {n_features}, {dim}, {dense}, {dropout}")
    inputs = keras.Input((n_features,), name="features")
    x = layers.Dropout(dropout, name="dropout")(inputs)
    if dense:
        x = layers.Dense(dense, activation="relu", name="dense")(x)
    outputs = layers.Dense(dim, name="hypervector")(x)
    return keras.Model(inputs, outputs, name=name)


def hypervector_outputs(model, images, batch_size: int = 256) -> np.ndarray:
    """The model's output vectors (N, d) for uint8 images (N, H, W, 3), or for float feature vectors (N, C)
    when the model is an :func:`hd_feature_head`."""
    from .pipeline import make_dataset
    return np.asarray(model.predict(make_dataset(images, batch_size=batch_size), verbose=0), dtype=np.float32)


# --------------------------------------------------------------------------------------------- training
def fit_hd(model, memory: Memory, images, labels, val_images=None, val_labels=None, *, loss: str = "mse",
           optimizer: str = "adamw", learning_rate: float = 1e-3, epochs: int = 10, batch_size: int = 32,
           patience: int = 3, augment=None, seed: int = 0, scale: float = 10.0, clipnorm=None,
           verbose: int = 0) -> dict:
    """Train an HD model (in place) on uint8 images (N, H, W, 3) with integer labels into ``memory``; or an
    :func:`hd_feature_head` on float feature vectors (N, C) (then ``augment`` must be off: ValueError otherwise).

    loss: "mse" (the reference: output regressed onto its class key) or "cosine" (scaled-cosine
    cross-entropy against every key, ``scale``). Optimizer: a :func:`hamviz.training.make_optimizer` name
    (AdamW, the reference's, by default). Early stopping on the validation loss (the training loss without
    validation data) with ``patience``, best weights restored. augment: None/False, True (hamviz's default
    augmentation), a dict of :func:`hamviz.pipeline.augmentation` options, or a Keras layer.
    ``seed`` seeds shuffling, augmentation and dropout; set it (``keras.utils.set_random_seed``) before
    building the model for reproducible initial weights.

    Returns the history: per-epoch ``loss``, ``hd_accuracy`` (nearest key, centred cosine) and their
    ``val_`` versions, ``best_epoch``. Raises :class:`hamviz.training.TrainingError` when the loss becomes NaN.
    """
    from .models import keras
    from .pipeline import make_dataset
    from .training import fit, make_optimizer
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: one of {', '.join(LOSSES)}")
    out_dim = model.output.shape[-1]
    if out_dim != memory.dim:
        raise ValueError(f"the model outputs {out_dim} dims but the memory's keys have {memory.dim}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1")
    if np.ndim(images) == 2 and augment:
        raise ValueError("feature vectors (N, C) cannot be augmented: pass augment=None (augmentation acts on "
                         "images, before the backbone)")
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=make_optimizer(optimizer, learning_rate, clipnorm),
                  loss=hd_loss(loss, memory, scale), metrics=[_accuracy_metric(memory, loss)])
    train_ds = make_dataset(images, targets=targets_for(labels, memory, loss), batch_size=batch_size,
                            shuffle=True, augment=augment, seed=seed)
    val_ds = None
    if val_images is not None:
        val_ds = make_dataset(val_images, targets=targets_for(val_labels, memory, loss), batch_size=128)
    return fit(model, train_ds, val_ds, epochs=epochs, patience=patience, label=f"HD model ({loss} loss)",
               learning_rate=learning_rate, verbose=verbose)
