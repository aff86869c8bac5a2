"""Model builders: the reference small CNN, transfer models over Keras applications and Keras-Hub presets, the
random-search CNN and the compression autoencoders.

Keras-application models are one flat functional graph (the backbone's layers inlined), so Grad-CAM and
activation maps can address any layer by name; a Keras-Hub backbone is one nested layer named "backbone"
(:func:`hub_model`). Inputs are float images in [0, 255]; each backbone's preprocessing is a layer inside the
model, so callers never preprocess.

``weights``: ``"imagenet"`` (needs the Keras weights file: in ``$HAMVIZ_WEIGHTS/keras``, the weights cache or
``~/.keras/models``, else downloaded; :func:`hamviz.weights.local_keras_weights`),
``None`` (random init), or a path to a weights file (Keras ``.weights.h5`` of the same backbone without top,
or the no-top ``.h5`` files Keras applications publish). An offline ``"imagenet"`` request fails at once
with a message saying how to get the file, instead of hanging on the download.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ._tf import import_tf

import_tf()
import keras  # noqa: E402
from keras import layers  # noqa: E402

from .config import HamvizError  # noqa: E402
from .registry import AE_DOWNSAMPLE, AE_RATIOS, BACKBONES, HUB_BACKBONES, MODEL_NAMES, latent_problem  # noqa: E402,F401
from .weights import (  # noqa: E402
    KERAS_TOP_WEIGHTS,
    damage,
    how_to_get_keras,
    keras_weights_file,
    keras_weights_folders,
    local_keras_weights,
    preset_source,
    reachable,
)


class ModelError(HamvizError):
    """Impossible model settings (unknown backbone, input too small, weights unavailable...)."""


@keras.saving.register_keras_serializable(package="hamviz")
class ImagenetPreprocess(layers.Layer):
    """The preprocessing of ``keras.applications`` as a layer: ``tf`` scales to [-1, 1]; ``torch``
    scales to [0, 1] and standardises with ImageNet mean/std; ``caffe`` flips RGB to BGR and subtracts
    the ImageNet mean; ``unit`` scales to [0, 1]."""

    MEAN = {"torch": (0.485, 0.456, 0.406), "caffe": (103.939, 116.779, 123.68)}
    STD = (0.229, 0.224, 0.225)

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "torch", "caffe", "unit"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        ops = keras.ops
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(self.MEAN["torch"], dtype=x.dtype)
            std = ops.convert_to_tensor(self.STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        mean = ops.convert_to_tensor(self.MEAN["caffe"], dtype=x.dtype)
        return ops.flip(x, axis=-1) - mean

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _regulariser(l2: float):
    return keras.regularizers.L2(l2) if l2 else None


def small_cnn(input_shape=(64, 64, 3), n_classes: int = 7, *, l2: float = 0.0,
              dropout=(0.25, 0.4, 0.5), name: str = "small_cnn") -> keras.Model:
    """The reference small CNN (Zhang, Table 2): Conv32-Conv32-Pool-Drop.25-Conv64-Conv64-Pool-Drop.4-Flatten-
    Dense128-Drop.5-Dense(n_classes), ReLU, 3x3 'same' convolutions (from Table 2's shapes and parameter counts),
    softmax output."""
    _check_shape(input_shape, 8, "small_cnn")
    reg = _regulariser(l2)
    inputs = keras.Input(input_shape, name="image")
    x = ImagenetPreprocess("unit", name="scale")(inputs)
    for block, (filters, drop) in enumerate(((32, dropout[0]), (64, dropout[1])), start=1):
        for k in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              name=f"conv{block}_{k}")(x)
        x = layers.MaxPooling2D(name=f"pool{block}")(x)
        x = layers.Dropout(drop, name=f"drop{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", kernel_regularizer=reg, name="dense")(x)
    x = layers.Dropout(dropout[2], name="drop_dense")(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_regularizer=reg, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _check_shape(input_shape, minimum, what):
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ModelError(f"{what}: input shape must be (height, width, 3), not {tuple(input_shape)}")
    if min(input_shape[:2]) < minimum:
        raise ModelError(f"{what} needs inputs of at least {minimum}x{minimum} pixels; "
                         f"got {input_shape[0]}x{input_shape[1]}. Raise image_size to {minimum} or more, "
                         f"or choose another model.")


def _check_files(backbone: str, weights, input_size: int | None = None, top: bool = False) -> None:
    """Raise ModelError naming a damaged weights file of ``backbone`` and its fix (:func:`hamviz.weights.damage`:
    sizes and headers), before Keras or Keras-Hub fail inside it."""
    problem = damage(backbone, weights, input_size, top)
    if problem:
        raise ModelError(problem)


def weights_source(backbone: str, weights, input_size: int | None = None, top: bool = False):
    """What to pass to the Keras constructor for ``weights`` (``top``: the file with the fully connected top),
    failing fast when it cannot work: ModelError when the file is not there and cannot be downloaded, or is
    damaged (named, with its fix: :func:`hamviz.weights.damage`)."""
    if weights is None:
        return None
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelError(f"Weights file {path} for {backbone} does not exist. Pass weights='imagenet', "
                             f"None (random init) or the path of a weights file.")
        _check_files(backbone, str(path))  # a truncated file named here, not by h5py inside Keras
        return str(path)
    local = local_keras_weights(backbone, input_size, top)
    if local is not None:
        _check_files(backbone, weights, input_size, top)
        return str(local)  # Keras loads a weights file by path: no download, wherever it was found
    if not reachable("storage.googleapis.com"):
        fname = keras_weights_file(backbone, input_size, top)[0]
        raise ModelError(
            f"ImageNet weights for {backbone} ({fname}) are not on this machine (looked in "
            f"{', '.join(map(str, keras_weights_folders()))}) and cannot be downloaded (no connection to "
            f"storage.googleapis.com). {how_to_get_keras(backbone, input_size, top)} Or pass weights=None (random "
            f"init) or weights='<path to a weights file>'.")
    return "imagenet"


def _check_transfer_options(trainable, head, heads=("reference", "simple", "own_top")) -> None:
    if head not in heads:
        raise ModelError(f"Unknown head {head!r}: one of {', '.join(map(repr, heads))}")
    if not (trainable in ("frozen", "all") or (isinstance(trainable, int) and not isinstance(trainable, bool)
                                               and trainable >= 0)):
        raise ModelError(f"trainable must be 'frozen', 'all' or a number of last layers, not {trainable!r}")


def set_trainable(base_layers, trainable, pretrained: bool) -> None:
    """The backbone's trainability: "frozen" (only the head trains), "all", or an int N (the last N layers of
    ``base_layers``). Fine-tuning pretrained weights keeps every BatchNorm layer frozen (its statistics come from
    ImageNet; Keras then runs it in inference mode); a network trained from random initialisation needs its
    BatchNorm layers to learn."""
    n_trainable = {"frozen": 0, "all": len(base_layers)}.get(trainable, trainable)
    for i, layer in enumerate(base_layers):
        layer.trainable = i >= len(base_layers) - n_trainable and not (
            pretrained and isinstance(layer, layers.BatchNormalization))


def classification_head(features, n_classes: int, head: str, dense: int, dropout: float, l2: float):
    """The classification head on a (N, h, w, c) feature map. "reference": GlobalAveragePooling -
    Dense(dense, relu) - Dropout - BatchNorm - Dense(n, softmax) (Zhang's Table 3: the relu is hamviz's); "simple":
    GlobalAveragePooling - Dropout - Dense(n, softmax). ``l2``: L2 penalty on the head's dense layers."""
    reg = _regulariser(l2)
    y = layers.GlobalAveragePooling2D(name="head_pool")(features)
    if head == "reference":
        y = layers.Dense(dense, activation="relu", kernel_regularizer=reg, name="head_dense")(y)
        y = layers.Dropout(dropout, name="head_dropout")(y)
        y = layers.BatchNormalization(name="head_bn")(y)
    else:
        y = layers.Dropout(dropout, name="head_dropout")(y)
    return layers.Dense(n_classes, activation="softmax", kernel_regularizer=reg, name="predictions")(y)


def transfer_model(backbone: str, input_shape=(128, 128, 3), n_classes: int = 7, *,
                   weights="imagenet", trainable="frozen", head: str = "reference",
                   dense: int = 1024, dropout: float = 0.5, l2: float = 0.0, input_scaling: str = "imagenet",
                   name: str | None = None) -> keras.Model:
    """A Keras application backbone with a classification head, as one flat functional graph.

    trainable: "frozen" (only the head trains), "all", or an int N: the last N backbone layers train
      (see :func:`set_trainable` for BatchNorm). head: see :func:`classification_head`, or "own_top": the
      backbone's own fully connected top (VGG19: flatten - fc1 - fc2, 4096 units each, ImageNet-trained) with its
      1000-class layer replaced by Dense(n_classes) (Bunu et al.'s VGG19; pretrained only at 224x224; ``l2`` on
      the new layer, ``dense`` / ``dropout`` unused).
    input_scaling: "imagenet" (the backbone's own ImageNet preprocessing) or "unit" (pixels divided by 255, as
      Zhang et al. and Bunu et al. fed their backbones).
    Raises ModelError for an unknown backbone or head, an input too small, own_top where it cannot work, an
    unknown input_scaling, or a damaged weights file.
    """
    key = backbone.lower()
    if key not in BACKBONES:
        raise ModelError(f"Unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)} "
                         f"(or 'small_cnn').")
    ctor, mode, minimum = BACKBONES[key]
    mode = "unit" if _scaling(input_scaling) == "unit" else mode
    _check_shape(input_shape, minimum, backbone)
    _check_transfer_options(trainable, head)
    top = head == "own_top"
    if top and key not in KERAS_TOP_WEIGHTS:
        raise ModelError(f"head 'own_top' keeps a backbone's own fully connected top: only "
                         f"{', '.join(KERAS_TOP_WEIGHTS)} has one; use head 'reference' or 'simple' for {backbone}")
    if top and weights is not None and tuple(input_shape[:2]) != (224, 224):
        raise ModelError(f"{backbone}'s pretrained fully connected top (head 'own_top') takes 224x224 inputs, not "
                         f"{input_shape[0]}x{input_shape[1]}: set the image size to 224, or use another head")
    src = weights_source(key, weights, input_shape[0], top)
    inputs = keras.Input(input_shape, name="image")
    x = ImagenetPreprocess(mode, name="preprocess")(inputs)
    base = getattr(keras.applications, ctor)(include_top=top, weights=src, input_tensor=x)
    if top:  # the backbone's own top up to its last hidden layer, then a new output layer (Bunu et al.'s VGG19)
        body = [l for l in base.layers if not isinstance(l, layers.InputLayer) and l.name != "predictions"]
        set_trainable(body, trainable, src is not None)
        outputs = layers.Dense(n_classes, activation="softmax", kernel_regularizer=_regulariser(l2),
                               name="predictions")(base.get_layer("fc2").output)
    else:
        set_trainable([l for l in base.layers if not isinstance(l, layers.InputLayer)], trainable, src is not None)
        outputs = classification_head(base.output, n_classes, head, dense, dropout, l2)
    return keras.Model(inputs, outputs, name=name or key)


# ------------------------------------------------------------------------------------------------ Keras-Hub
@keras.saving.register_keras_serializable(package="hamviz")
class ScaleOffset(layers.Layer):
    """``x * scale + offset`` per channel: a Keras-Hub preset's pixel scaling (its image converter's), applied
    to float images in [0, 255]."""

    def __init__(self, scale=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(v) for v in scale]
        self.offset = [float(v) for v in offset]

    def call(self, x):
        ops = keras.ops
        return x * ops.convert_to_tensor(self.scale, dtype=x.dtype) + ops.convert_to_tensor(self.offset,
                                                                                           dtype=x.dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _keras_hub():
    try:
        import keras_hub
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ModelError(f"Keras-Hub backbones need the keras-hub package ({exc}): pip install keras-hub "
                         f"safetensors") from None
    return keras_hub


class LoadError(ModelError):
    """A saved model this Keras cannot rebuild, whole as its file is: written by another Keras version, typically
    (a layer argument this one does not know). ``written``: the Keras version that saved it (None when unknown)."""

    def __init__(self, message: str, written: str | None = None):
        super().__init__(message)
        self.written = written


def saved_keras_version(path) -> str | None:
    """The Keras version that wrote the ``.keras`` file at ``path`` (its metadata.json), or None."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("metadata.json")).get("keras_version")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError):
        return None


def load(path) -> keras.Model:
    """A Keras model saved by hamviz (``model.keras``), uncompiled. hamviz's own layers are registered by this
    module; Keras-Hub's are registered by importing keras_hub, done here when the file needs it. Raises
    :class:`LoadError` naming the Keras version that wrote the file and the one running when this Keras cannot
    rebuild it (instead of Keras' raw ``TypeError: ... could not be deserialized properly``)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            needs_hub = b"keras_hub" in z.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        needs_hub = False  # keras reports the damage itself
    if needs_hub:
        _keras_hub()
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises TypeError, ValueError, ... for what it cannot rebuild
        written = saved_keras_version(path)
        why = " ".join(str(exc).split())[:300]
        raise LoadError(f"The saved model {path} does not load with Keras {keras.__version__}, the one running "
                        f"here; it was written by " + (f"Keras {written}" if written else "an unknown Keras version")
                        + f" ({type(exc).__name__}: {why}). Load it with the Keras that wrote it "
                          f"(`pip install keras=={written or '<version>'}`), or train it again.", written) from exc


def _load_preset(what: str, preset: str, **kw):
    """``keras_hub.models.<what>.from_preset(preset)``, with a damaged or incomplete preset named."""
    hub = _keras_hub()
    try:
        if what == "ImageConverter":
            return hub.layers.ImageConverter.from_preset(preset)
        return getattr(hub.models, what).from_preset(preset, **kw)
    except Exception as exc:  # keras-hub raises many kinds for a damaged preset
        raise ModelError(f"The Keras-Hub preset {preset} could not be loaded ({type(exc).__name__}: "
                         f"{str(exc)[:300]}). Copy the preset folder again (config.json and model.safetensors; "
                         f"compare their SHA-256 with the provider's) or point {what} at another one.") from None


def hub_model(backbone: str, input_shape=(224, 224, 3), n_classes: int = 7, *, weights="imagenet",
              trainable="frozen", head: str = "reference", dense: int = 1024, dropout: float = 0.5,
              l2: float = 0.0, input_scaling: str = "imagenet", name: str | None = None) -> keras.Model:
    """A Keras-Hub backbone (:data:`hamviz.registry.HUB_BACKBONES`, e.g. EfficientNet-Lite0, Tan & Le 2019)
    with a classification head. Input: float images (N, H, W, 3) in [0, 255]; the preset's own pixel scaling
    (:class:`ScaleOffset`, from its image converter) is the model's first layer; the backbone is one nested
    layer named "backbone" whose (N, H/32, W/32, C) output is the Grad-CAM target. ``weights``: see
    :func:`preset_source`. ``trainable``: see :func:`set_trainable` (the backbone's layers). ``head``:
    "reference" or "simple" (:func:`classification_head`), or "preset": the preset's own classifier (pooling
    and its ``n_classes`` = 1000 ImageNet logits), to check the weights. Raises ModelError for an unknown
    backbone, an input too small or a damaged preset file (named: :func:`hamviz.weights.damage`),
    :class:`hamviz.weights.WeightsError` for weights that are not there."""
    key = backbone.lower()
    if key not in HUB_BACKBONES:
        raise ModelError(f"Unknown Keras-Hub backbone {backbone!r}; choose one of {', '.join(HUB_BACKBONES)}")
    _check_shape(input_shape, HUB_BACKBONES[key][2], backbone)
    _check_transfer_options(trainable, head, ("reference", "simple", "preset"))
    preset, load = preset_source(key, weights)  # WeightsError (before anything is built) when it is not there
    if Path(preset).is_dir():
        _check_files(key, weights)  # a damaged file named, with its fix, before Keras-Hub fails inside it
    converter = _load_preset("ImageConverter", preset)
    inputs = keras.Input(input_shape, name="image")
    unit = _scaling(input_scaling) == "unit"  # pixels / 255 instead of the preset's own scaling
    x = ScaleOffset((1 / 255,) * 3 if unit else converter.scale, (0.0,) * 3 if unit else converter.offset,
                    name="preprocess")(inputs)
    if head == "preset":
        clf = _load_preset("ImageClassifier", preset, load_weights=load)
        if clf.num_classes != n_classes:
            raise ModelError(f"head='preset' gives the preset's {clf.num_classes} classes, not {n_classes}")
        base = clf.backbone
        base.name = "backbone"  # one name whatever the preset calls it: the Grad-CAM target
        y = clf.get_layer("pooler")(base(x))
        outputs = clf.get_layer("predictions")(y)
    else:
        base = _load_preset("Backbone", preset, load_weights=load)
        base.name = "backbone"
        outputs = classification_head(base(x), n_classes, head, dense, dropout, l2)
    set_trainable(base.layers, trainable, load)
    return keras.Model(inputs, outputs, name=name or key)


#: the keyword arguments of :func:`configurable_cnn` (a search trial's other keys, e.g. optimizer and
#: learning_rate, are for training)
CNN_KEYS = ("conv_blocks", "filters", "kernel", "convs_per_block", "dense_layers", "dense_units", "dropout",
            "pooling", "init", "pool_size", "padding", "filter_growth", "block_dropout")


def configurable_cnn(input_shape=(64, 64, 3), n_classes: int = 2, *, conv_blocks: int = 2, filters: int = 32,
                     kernel: int = 3, convs_per_block: int = 2, dense_layers: int = 1, dense_units: int = 128,
                     dropout: float = 0.3, pooling: str = "max", init: str = "glorot_uniform",
                     pool_size: int = 2, padding: str = "same", filter_growth: str = "double",
                     block_dropout: bool = True, name: str = "configurable_cnn"):
    """A small CNN whose shape is set by the arguments (the search space of the reference's random search,
    Bunu et al., whose two best CNNs had one convolution per pooling, pool size 3, constant filters and dropout
    after the dense layer only: ``block_dropout=False``).

    One flat functional graph: image in [0, 255] -> ``ImagenetPreprocess("unit")`` (scale to [0, 1]) ->
    ``conv_blocks`` blocks of [``convs_per_block`` x Conv2D(f_b, kernel, padding, relu) -> ``pool_size`` x
    ``pool_size`` max or average pooling (stride = pool size) -> Dropout(dropout) if ``block_dropout``] -> Flatten ->
    ``dense_layers`` x [Dense(dense_units, relu) -> Dropout(dropout)] -> Dense(n_classes, softmax), where f_b
    is ``filters`` * 2**b with ``filter_growth`` "double" and ``filters`` in every block with "constant".
    ``padding``: "same" or "valid" convolutions. ``init`` is the Keras kernel initializer of every conv and
    dense layer (e.g. glorot_uniform, he_normal, he_uniform, lecun_normal).
    Layer names: scale, conv{b}_{k}, pool{b}, drop{b}, flatten, dense{i}, drop_dense{i}, predictions.

    Raises ModelError for impossible settings, e.g. an input too small for ``conv_blocks`` poolings
    (each divides the size by ``pool_size``: 16x16 allows at most 4 blocks of 2x2).
    """
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
    if not isinstance(pool_size, (int, np.integer)) or isinstance(pool_size, bool) or pool_size < 2:
        raise ModelError(f"configurable_cnn: pool_size must be an integer >= 2, not {pool_size!r}")
    if padding not in ("same", "valid"):
        raise ModelError(f"configurable_cnn: padding must be 'same' or 'valid', not {padding!r}")
    if filter_growth not in ("double", "constant"):
        raise ModelError(f"configurable_cnn: filter_growth must be 'double' or 'constant', not {filter_growth!r}")
    h, w = int(input_shape[0]), int(input_shape[1])
    lose = 0 if padding == "same" else convs_per_block * (int(kernel) - 1)  # what valid convolutions cut
    fh, fw = h, w
    for _ in range(conv_blocks):
        fh, fw = (fh - lose) // pool_size, (fw - lose) // pool_size
    if min(fh, fw) < 1:
        need = 1
        for _ in range(conv_blocks):
            need = need * pool_size + lose
        raise ModelError(f"configurable_cnn: a {h}x{w} input is too small for {conv_blocks} pooling blocks of "
                         f"{pool_size}x{pool_size} with {padding!r} {kernel}x{kernel} convolutions (it would reach "
                         f"{max(fh, 0)}x{max(fw, 0)}). Use fewer conv_blocks at this size, or images of at least "
                         f"{need}x{need}.")
    inputs = keras.Input(tuple(input_shape), name="image")
    x = ImagenetPreprocess("unit", name="scale")(inputs)
    for b in range(1, conv_blocks + 1):
        f = int(filters) * (2 ** (b - 1) if filter_growth == "double" else 1)
        for k in range(1, convs_per_block + 1):
            x = layers.Conv2D(f, int(kernel), padding=padding, activation="relu",
                              kernel_initializer=init, name=f"conv{b}_{k}")(x)
        x = pool_layer(pool_size=int(pool_size), name=f"pool{b}")(x)
        if block_dropout:
            x = layers.Dropout(float(dropout), name=f"drop{b}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in range(1, dense_layers + 1):
        x = layers.Dense(int(dense_units), activation="relu", kernel_initializer=init, name=f"dense{i}")(x)
        x = layers.Dropout(float(dropout), name=f"drop_dense{i}")(x)
    outputs = layers.Dense(int(n_classes), activation="softmax", kernel_initializer=init,
                           name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


INPUT_SCALINGS = ("imagenet", "unit")


def _scaling(input_scaling: str) -> str:
    if input_scaling not in INPUT_SCALINGS:
        raise ModelError(f"input_scaling must be one of {', '.join(INPUT_SCALINGS)}, not {input_scaling!r}")
    return input_scaling


def build_model(name: str, input_shape, n_classes: int = 7, **kw) -> keras.Model:
    """``small_cnn`` or a backbone name, with the keyword options of the matching builder."""
    if name == "configurable_cnn":  # the random-search CNN of the ensemble chapter
        return configurable_cnn(input_shape, n_classes, **kw)
    if name == "small_cnn":
        allowed = {"l2", "dropout"}
        bad = set(kw) - allowed
        if bad:
            raise ModelError(f"small_cnn does not take {sorted(bad)}; it takes {sorted(allowed)}")
        return small_cnn(input_shape, n_classes, **kw)
    if name in HUB_BACKBONES:
        return hub_model(name, input_shape, n_classes, **kw)
    return transfer_model(name, input_shape, n_classes, **kw)


def last_conv_layer(model: keras.Model) -> str:
    """Name of the last layer with a 4-D output (the usual Grad-CAM target)."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4:
            return layer.name
    raise ModelError(f"model {model.name} has no convolutional layer")


def latent_channels(input_shape, ratio: float, levels: int = 2) -> int:
    """Latent channels N giving a latent ``ratio`` times smaller than the input after ``levels`` 2x2 poolings:
    H*W*3 / ratio = (H/d)*(W/d)*N with d = 2**levels, so N = 48 / ratio for two levels, 192 / ratio for three
    (:func:`hamviz.registry.latent_problem`). Raises ModelError for a ratio the shape cannot give."""
    h, w, c = input_shape
    problem = latent_problem(h, ratio, c, levels) or (latent_problem(w, ratio, c, levels) if w != h else None)
    if problem:
        raise ModelError(problem)
    return round(c * (2 ** levels) ** 2 / ratio)


def autoencoder(input_shape=(64, 64, 3), ratio: float = 3.0, filters=(32, 64), *,
                name: str | None = None) -> keras.Model:
    """The reference SegNet-like convolutional autoencoder (Doctor), with the latent ``ratio`` x smaller than the
    input.

    Encoder: (conv-conv-pool) once per entry of ``filters`` (two levels: hamviz's reading of the reference's main
    variant, 128x128 to a 32x32 latent, whose levels and filters the text does not give; three: the 3-level
    variant it also tried); latent: two conv layers with N = 3 * d**2 / ratio channels at H/d x W/d, d = 2**levels (48 /
    ratio at H/4 for two levels; the second is named ``latent``); decoder: (upsample-conv-conv) per level and a
    3-channel sigmoid conv. Input and output are images in [0, 255] (scaled inside), so the output can feed any
    hamviz classifier. Raises ModelError when the size or ratio cannot give a whole number of channels.
    """
    _check_shape(input_shape, 8, "autoencoder")
    n = latent_channels(input_shape, ratio, levels=len(filters))
    inputs = keras.Input(input_shape, name="image")
    x = ImagenetPreprocess("unit", name="scale")(inputs)
    for b, f in enumerate(filters, start=1):
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"enc{b}_conv1")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"enc{b}_conv2")(x)
        x = layers.MaxPooling2D(name=f"enc{b}_pool")(x)
    x = layers.Conv2D(n, 3, padding="same", activation="relu", name="latent_conv")(x)
    x = layers.Conv2D(n, 3, padding="same", activation="relu", name="latent")(x)
    for b, f in enumerate(reversed(filters), start=1):
        x = layers.UpSampling2D(name=f"dec{b}_up")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"dec{b}_conv1")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"dec{b}_conv2")(x)
    x = layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="reconstruction_unit")(x)
    outputs = layers.Rescaling(255.0, name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=name or f"autoencoder_{ratio:g}x")


def encoder_of(ae: keras.Model) -> keras.Model:
    """The encoder half of an :func:`autoencoder` (image -> latent)."""
    return keras.Model(ae.input, ae.get_layer("latent").output, name=f"{ae.name}_encoder")


def decoder_of(ae: keras.Model) -> keras.Model:
    """The decoder half of an :func:`autoencoder` (latent -> image), sharing its layers."""
    names = [l.name for l in ae.layers]
    start = names.index("latent") + 1
    inp = keras.Input(ae.get_layer("latent").output.shape[1:], name="latent_in")
    x = inp
    for layer in ae.layers[start:]:
        x = layer(x)
    return keras.Model(inp, x, name=f"{ae.name}_decoder")
