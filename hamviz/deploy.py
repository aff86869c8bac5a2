"""Using a trained classifier outside the book: an export folder that loads with Keras and Keras-Hub alone, and
class probabilities for image files (``hamviz export``, ``hamviz predict``).

An export folder holds ``model.keras`` (the classifier with standard Keras layers only: the preset's pixel
scaling as ``keras.layers.Rescaling``, so ``keras.models.load_model`` needs ``import keras_hub`` and nothing of
hamviz), ``preprocessing.json`` (:data:`PREPROCESSING_FILE`: input size, resize mode, test-time flips, class
order, where the model came from) and ``MODEL_CARD.md``. :func:`load_predictor` reads such a folder or an
artefact folder of hamviz's store (``<cache>/models/<name>-<key>``); :func:`predict_table` scores image files
the way the book scored its test part: the same decoding and resize (:func:`hamviz.cache.decode`), the same
test-time flips (:func:`hamviz.training.predict`), one row per image with the seven class probabilities under
the ISIC 2018 Task 3 column names, in that challenge's order (:data:`ISIC_COLUMNS`).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import HamvizError, __version__
from .data import IMAGE_SUFFIXES
from .external import ISIC2018_COLUMNS, ISIC2018_ID_COLUMN
from .registry import CLASSES

PREPROCESSING_FILE = "preprocessing.json"
MODEL_FILE = "model.keras"
CARD_FILE = "MODEL_CARD.md"
#: the ISIC 2018 Task 3 columns in the challenge's order (MEL, NV, BCC, AKIEC, BKL, DF, VASC)
ISIC_COLUMNS = tuple(ISIC2018_COLUMNS)
#: what :func:`predict_table` writes: the image id, the seven probabilities, the predicted class (hamviz's code)
PREDICTION_COLUMNS = (ISIC2018_ID_COLUMN, *ISIC_COLUMNS, "predicted")


class DeployError(HamvizError):
    """A model folder, an image or a destination that export or predict cannot use (named, with the fix)."""


@dataclass
class Predictor:
    """A classifier ready to score image files: the Keras model (float images (N, S, S, 3) in [0, 255] -> class
    probabilities (N, K)), its input edge ``image_size`` in pixels, the ``resize`` mode of its training images
    (stretch, crop or pad: :func:`hamviz.cache.resize_image`), whether it was scored with test-time flips, its
    ``classes`` in output order, and ``source`` (what it is and where it came from)."""

    model: object
    image_size: int
    resize: str
    tta_flips: bool
    classes: tuple
    source: dict


# ------------------------------------------------------------------------------------------------ export
def portable_model(model):
    """``model`` with hamviz's own preprocessing layers (:class:`hamviz.models.ScaleOffset`,
    :class:`hamviz.models.ImagenetPreprocess`) replaced by standard Keras layers that compute the same
    (``Rescaling`` per channel; Caffe's RGB->BGR flip as a fixed 1x1 convolution); every other layer is shared
    with ``model`` (same weights). Raises DeployError for any other layer from hamviz (a model that would need
    hamviz to load)."""
    import keras

    from .models import ImagenetPreprocess, ScaleOffset

    def standard(layer):
        if isinstance(layer, ScaleOffset):
            return keras.layers.Rescaling(layer.scale, layer.offset, name=layer.name)
        if isinstance(layer, ImagenetPreprocess):
            return _standard_preprocess(layer)
        if type(layer).__module__.startswith("hamviz"):
            raise DeployError(f"the model's layer {layer.name!r} ({type(layer).__name__}) is hamviz's own: an "
                              f"exported model must load without hamviz; export a classifier hamviz builds "
                              f"from a Keras application or a Keras-Hub preset")
        return layer

    return keras.models.clone_model(model, clone_function=standard)


def _standard_preprocess(layer):
    """The standard Keras layer that computes :class:`hamviz.models.ImagenetPreprocess` ``layer``."""
    import keras
    if layer.mode in ("tf", "unit"):
        scale = 1 / 127.5 if layer.mode == "tf" else 1 / 255
        return keras.layers.Rescaling(scale, -1.0 if layer.mode == "tf" else 0.0, name=layer.name)
    if layer.mode == "torch":
        mean, std = np.asarray(layer.MEAN["torch"]), np.asarray(layer.STD)
        return keras.layers.Rescaling(list(1 / (255 * std)), list(-mean / std), name=layer.name)
    flip = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)  # caffe: BGR, minus the ImageNet mean
    conv = keras.layers.Conv2D(3, 1, name=layer.name, trainable=False)
    conv.build((None, None, None, 3))
    conv.set_weights([flip, -np.asarray(layer.MEAN["caffe"], dtype="float32")])
    return conv


def check_destination(dest) -> Path:
    """``dest`` as a Path if it is absent or an empty folder; DeployError otherwise (nothing is overwritten)."""
    dest = Path(dest).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DeployError(f"{dest} exists and is not an empty folder: export writes a new folder; name another "
                          f"--dest or remove that one")
    return dest


def write_export(dest, model, *, image_size: int, resize: str, tta_flips: bool, classes=CLASSES,
                 source: dict | None = None, card: str = "") -> Path:
    """Write the export folder ``dest`` (absent or empty, :func:`check_destination`): ``model.keras`` (the
    :func:`portable_model` of ``model``), ``preprocessing.json`` and ``MODEL_CARD.md`` (``card``). The folder is
    written beside ``dest`` and renamed into place, so a failure leaves no half export. Returns ``dest``."""
    dest = check_destination(dest)
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        portable_model(model).save(tmp / MODEL_FILE)
        info = {"format": 1, "image_size": int(image_size), "resize": resize, "tta_flips": bool(tta_flips),
                "classes": list(classes), "isic_columns": {c: ISIC2018_COLUMNS[c] for c in ISIC_COLUMNS},
                "input": "RGB images (N, H, W, 3), float in [0, 255], resized to image_size x image_size",
                "output": "class probabilities (N, K) in the order of 'classes'",
                "hamviz": __version__, "source": source or {}}
        (tmp / PREPROCESSING_FILE).write_text(json.dumps(info, indent=1))
        (tmp / CARD_FILE).write_text(card)
        if dest.exists():
            dest.rmdir()  # empty (checked above)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# ------------------------------------------------------------------------------------------------ predict
def _from_store(folder: Path, resize: str | None) -> tuple[dict, str]:
    """(the config of a stored classifier artefact, its resize mode): the artefact's own record, else ``resize``."""
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("kind") != "classifier":
        raise DeployError(f"{folder} holds a {meta.get('kind')} artefact, not a classifier: pass a classifier's "
                          f"folder (<cache>/models/<model>-<size>-<strategy>-<key>) or an export folder")
    mode = resize or meta.get("resize")
    if mode is None:
        raise DeployError(f"{folder} does not record how its training images were resized: pass --resize as "
                          f"the profile that trained it says (stretch, crop or pad; hamviz's default: stretch)")
    return meta["config"], mode


def load_predictor(path, resize: str | None = None) -> Predictor:
    """The classifier of an export folder (:func:`write_export`) or of an artefact folder of hamviz's store,
    loaded: raises DeployError naming what is missing when ``path`` is neither; ``resize`` overrides the recorded
    resize mode (needed only for a stored model that does not record it)."""
    import keras
    folder = Path(path).expanduser()
    if not folder.is_dir() or not (folder / MODEL_FILE).is_file():
        raise DeployError(f"{folder}: no {MODEL_FILE} there; --model takes a folder that `hamviz export` wrote "
                          f"or a classifier's folder in hamviz's store (<cache>/models/...)")
    if (folder / PREPROCESSING_FILE).is_file():
        info = json.loads((folder / PREPROCESSING_FILE).read_text())
        import keras_hub  # noqa: F401 - registers the Keras-Hub backbones the model holds
        model = keras.models.load_model(folder / MODEL_FILE, compile=False)
        return Predictor(model, int(info["image_size"]), resize or info["resize"], bool(info["tta_flips"]),
                         tuple(info["classes"]), {"export": str(folder), **info.get("source", {})})
    if not (folder / "config.json").is_file():
        raise DeployError(f"{folder} has {MODEL_FILE} but neither {PREPROCESSING_FILE} (an export folder) nor "
                          f"config.json (a stored artefact): hamviz does not know how to feed it images")
    cfg, mode = _from_store(folder, resize)
    from .models import load
    return Predictor(load(folder / MODEL_FILE), int(cfg["image_size"]), mode, bool(cfg.get("tta_flips")),
                     CLASSES, {"artefact": str(folder)})


def image_files(paths=(), folder=None, log=print) -> list[Path]:
    """The image files to score: ``paths`` as given, then every JPEG/PNG directly in ``folder`` (sorted by name;
    its other files are named through ``log``, not scored). Raises DeployError naming paths that do not exist,
    and when there is nothing to score."""
    files = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DeployError(f"no such image file(s): {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    if folder is not None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise DeployError(f"--folder {folder} is not a folder")
        found = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        others = [p.name for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            log(f"note: {len(others)} file(s) in {folder} are not .jpg/.jpeg/.png and are not scored: "
                + ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
        files += [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DeployError("no images to score: name image files, or --folder a folder holding .jpg/.jpeg/.png "
                          "files")
    return files


def read_images(files, image_size: int, resize: str = "stretch") -> np.ndarray:
    """Every file decoded and resized as the book's image cache does (:func:`hamviz.cache.decode`): uint8
    (N, image_size, image_size, 3). Raises DeployError naming every file that does not decode (all of them, not
    the first), before anything is scored."""
    from .cache import decode
    images, bad = [], []
    for f in files:
        try:
            images.append(decode(f, image_size, resize))
        except HamvizError as exc:  # the decoder's own reason (corrupt, truncated, not an image, no permission)
            bad.append(f"{f}: {exc.__cause__ or exc}")
    if bad:
        raise DeployError(f"{len(bad)} of {len(files)} image(s) cannot be read; nothing was scored. Remove or "
                          f"replace them:\n  - " + "\n  - ".join(bad))
    return np.stack(images)


def predict_table(predictor: Predictor, files, batch_size: int = 64) -> pd.DataFrame:
    """One row per file: ``image`` (the file name without its suffix, as ISIC names images), the probability of
    each class under its ISIC 2018 column name in the challenge's order (:data:`ISIC_COLUMNS`) and ``predicted``
    (hamviz's class code of the highest probability). Images are read first (:func:`read_images`: DeployError
    naming every unreadable file) and scored as the model was scored in the book (its test-time flips)."""
    from .training import predict
    files = [Path(f) for f in files]
    images = read_images(files, predictor.image_size, predictor.resize)
    proba = predict(predictor.model, images, batch_size=batch_size, flips=predictor.tta_flips)
    classes = list(predictor.classes)
    out = pd.DataFrame({ISIC2018_ID_COLUMN: [f.stem for f in files]})
    for col in ISIC_COLUMNS:
        out[col] = proba[:, classes.index(ISIC2018_COLUMNS[col])]
    out["predicted"] = [classes[i] for i in proba.argmax(axis=1)]
    return out
