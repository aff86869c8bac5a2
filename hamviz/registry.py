"""hamviz's vocabulary, defined once: classes, the malignant set, models and their input limits, optimisers,
learning-rate schedules, imbalance strategies, hypervector losses, the autoencoder's latent arithmetic, and
the chapters of the book.

Every other module (the profile schema in :mod:`hamviz.params`, the data loaders, training, evaluation) reads
these names from here, in the spirit of MedMNIST's single ``INFO`` dict. It imports nothing from hamviz and
no heavy library, so validation can use it without loading TensorFlow.
"""
from __future__ import annotations

# ------------------------------------------------------------------------------------------------ classes
#: The seven HAM10000 diagnoses in the official (alphabetical) order; label i is CLASSES[i].
CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
CLASS_NAMES = {
    "akiec": "Actinic keratoses / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesions",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevi",
    "vasc": "Vascular lesions",
}
#: Default benign-vs-malignant mapping of the ensemble study (Bunu et al. name melanoma and basal cell carcinoma;
#: adding akiec is hamviz's reading, since their "2000 of malignant" fits mel + bcc + akiec; a parameter wherever
#: it is used).
MALIGNANT: tuple[str, ...] = ("mel", "bcc", "akiec")
BINARY_CLASSES: tuple[str, ...] = ("benign", "malignant")
#: The reference HD-MANN study's four classes (Barros Everett, on ISIC images: melanoma, nevus, basal cell
#: carcinoma, pigmented benign keratosis).
HD_REFERENCE_CLASSES: tuple[str, ...] = ("mel", "nv", "bcc", "bkl")
#: Parts of every split.
SPLITS: tuple[str, ...] = ("train", "val", "test")

# ------------------------------------------------------------------------------------------------ models
#: backbone -> (constructor name in keras.applications, preprocessing mode, minimum input edge)
BACKBONES = {
    "inceptionv3": ("InceptionV3", "tf", 75),
    "densenet201": ("DenseNet201", "torch", 32),
    "resnet50": ("ResNet50", "caffe", 32),
    "vgg19": ("VGG19", "caffe", 32),
    "mobilenetv2": ("MobileNetV2", "tf", 32),
}
#: Keras-Hub backbones -> (preset folder name under the weights folder, hub handle, minimum input edge). "imagenet"
#: loads ``$HAMVIZ_WEIGHTS/<preset folder>`` when it is there, else the handle (which needs internet).
HUB_BACKBONES = {
    "efficientnet_lite0": ("efficientnet_lite0_imagenet", "hf://timm/efficientnet_lite0.ra_in1k", 32),
}
#: models a classifier chapter can name
MODEL_NAMES: tuple[str, ...] = ("small_cnn", *BACKBONES, *HUB_BACKBONES)
#: models built by name that are not classifier-chapter choices (their builders check their own sizes)
OTHER_MODELS: tuple[str, ...] = ("configurable_cnn",)
#: the hypervector chapter's backbones: the reference HD-MANN CNN or any classifier model
HD_BACKBONES: tuple[str, ...] = ("hd_cnn", *MODEL_NAMES)
#: backbones with pretrained weights whose frozen pooled features hamviz caches (:mod:`hamviz.features`); the
#: hypervector chapter's second row (``pretrained_head``) trains its HD head on them
PRETRAINED_BACKBONES: tuple[str, ...] = (*BACKBONES, *HUB_BACKBONES)
MIN_SIZE = {"small_cnn": 8, **{k: v[2] for k, v in BACKBONES.items()}, **{k: v[2] for k, v in HUB_BACKBONES.items()}}


def check_size(model: str, size: int) -> str | None:
    """A message if ``model`` cannot take ``size`` x ``size`` inputs, else None."""
    if model not in MIN_SIZE:
        return f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}"
    if size < MIN_SIZE[model]:
        return (f"{model} needs inputs of at least {MIN_SIZE[model]}x{MIN_SIZE[model]} pixels, "
                f"not {size}x{size}: raise the image size or choose another model")
    return None


# ------------------------------------------------------------------------------------------------ training
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "rmsprop", "nadam", "adamax", "sgd")
SCHEDULES: tuple[str, ...] = ("none", "plateau", "cosine", "step")
#: what :func:`hamviz.metrics.decision_weights` can maximise on validation (the classifier's ``tune_decision``)
DECISION_OBJECTIVES: tuple[str, ...] = ("macro_f1", "balanced_accuracy")
#: The five imbalance strategies of the reference study (Zhang): strategy -> (oversampling mode of
#: :func:`hamviz.balance.oversample`, class weights?). S1 none; S2 oversample classes smaller than 1000 to
#: 1000 (the target size is hamviz's reading); S3 oversample every class to the majority size; S4 class
#: weights; S5 class weights + S2.
STRATEGIES = {
    "S1": ("none", False), "S2": ("below", False), "S3": ("majority", False),
    "S4": ("none", True), "S5": ("below", True),
}
STRATEGY_NAMES = {"S1": "none", "S2": "oversample < 1000", "S3": "oversample to majority",
                  "S4": "class weights", "S5": "class weights + oversample < 1000"}
#: HD-MANN training losses and inference modes (see :mod:`hamviz.hypervector`)
HD_LOSSES: tuple[str, ...] = ("mse", "cosine")
HD_MODES: tuple[str, ...] = ("cosine", "hamming")
HD_KINDS: tuple[str, ...] = ("binary", "bipolar")
#: ensemble combiners (see :mod:`hamviz.ensemble`)
COMBINERS: tuple[str, ...] = ("vote", "mean", "accuracy-weighted", "stacking")

# ------------------------------------------------------------------------------------------------ autoencoder
#: the reference autoencoder's latent ratios and its spatial downsampling (two 2x2 poolings: hamviz's reading of
#: Doctor's 128x128 -> 32x32 latent; the 3-level variant Doctor also tried pools three times: 8)
AE_RATIOS: tuple[float, ...] = (1.5, 3.0, 6.0)
AE_DOWNSAMPLE = 4


def latent_problem(size: int, ratio: float, channels: int = 3, levels: int = 2) -> str | None:
    """Why an autoencoder latent ``ratio`` times smaller than a ``size`` x ``size`` x ``channels`` image cannot
    be built (None if it can): with ``levels`` 2x2 poolings (2, or 3 for the 3-level variant) the latent is
    (size/d) x (size/d) x N with d = 2**levels, so N = channels * d**2 / ratio must be a whole number >= 1 and
    size a multiple of d."""
    d = 2 ** levels
    if size % d:
        return (f"autoencoder input {size}x{size} must be divisible by {d} ({levels} 2x2 poolings); "
                f"use an image_size that is a multiple of {d}")
    if not ratio > 0:
        return f"autoencoder ratio must be positive, not {ratio}"
    full = channels * d ** 2
    exact = full / ratio
    if round(exact) < 1 or abs(exact - round(exact)) > 1e-9:
        ns = (full * 2 // 3, full // 2, full // 3, full // 4, full // 6, full // 12)
        examples = ", ".join(f"{full / n:g} ({'N=' if i == 0 else ''}{n})" for i, n in enumerate(ns))
        return (f"a latent {ratio:g}x smaller than {size}x{size}x{channels} would need {full}/{ratio:g} = "
                f"{exact:g} channels at {size // d}x{size // d}; the ratio must be {full}/N for a whole number "
                f"N of channels, e.g. {examples}")
    return None


def latent_channels(size: int, ratio: float, channels: int = 3, levels: int = 2) -> int:
    """Latent channels N of an autoencoder with ``levels`` 2x2 poolings whose latent is ``ratio`` times smaller
    than the input: H*W*C / ratio = (H/d)*(W/d)*N, d = 2**levels. ValueError (with the fix) for a ratio the shape
    cannot give."""
    problem = latent_problem(size, ratio, channels, levels)
    if problem:
        raise ValueError(problem)
    return round(channels * (2 ** levels) ** 2 / ratio)


# ------------------------------------------------------------------------------------------------ chapters
#: The book's chapters in order: name -> (notebook stem, title). A chapter's notebook, its profile section
#: and its module in :mod:`hamviz.chapters` all carry this name.
CHAPTERS = {
    "eda": ("01_eda", "Exploratory data analysis"),
    "classifier": ("02_classifier", "Classifier"),
    "compression": ("03_compression", "Compression"),
    "joint": ("04_joint", "Joint training"),
    "hypervector": ("05_hypervector", "Hypervectors"),
    "explain": ("06_explain", "Grad-CAM and ensemble"),
}
