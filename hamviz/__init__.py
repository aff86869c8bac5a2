"""hamviz: notebook-first analysis of the HAM10000 dermatoscopic skin-lesion data set.

Layers (checked by import-linter, see pyproject.toml): ``hamviz.cli`` and ``hamviz.book`` run the book;
``hamviz.chapters`` holds one module per notebook; the library below (data, cache, splits, view, pipeline,
models, training, store, metrics, codecs, ...) never imports a chapter or reads a profile section;
``hamviz.registry`` and ``hamviz.config`` are the vocabulary and settings every layer reads.
"""
import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) would fill every notebook's output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .config import DataError, HamvizError, ParamsError, __version__  # noqa: E402,F401
from .registry import CLASSES, CLASS_NAMES, MALIGNANT  # noqa: E402,F401
from .data import Dataset, load_ham10000  # noqa: E402,F401
from . import cache  # noqa: E402,F401


def load_model(path):
    """A Keras model saved by hamviz (``model.keras``), uncompiled, with hamviz's (and Keras-Hub's) layers
    registered: see :func:`hamviz.models.load`."""
    from .models import load
    return load(path)
