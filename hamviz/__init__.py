"""hamviz: notebook-first analysis of the HAM10000 dermatoscopic skin-lesion data set.

Layers (checked by import-linter, see pyproject.toml): ``hamviz.cli`` and ``hamviz.book`` run the book;
``hamviz.chapters`` holds one module per notebook; the library below (data, cache, splits, view, pipeline,
models, training, store, metrics, codecs, ...) never imports a chapter or reads a profile section;
``hamviz.registry`` and ``hamviz.config`` are the vocabulary and settings every layer reads.
"""
import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) would fill every notebook's output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; on an
# AVX2-only CPU they are off, and measured on a 2-core AMD EPYC without AVX-512 (benchmarks/cpu_gap.py,
# 2026-12-02) turning them on made training 1.35x (small CNN, 64x64) to 1.85x (128x128) faster and the main
# model's fine-tuning step (EfficientNet-Lite0, 160x160) 1.67x. Set before TensorFlow loads (keras imports it);
# children (the book's notebook kernels) inherit it. TF_ENABLE_ONEDNN_OPTS=0 in the environment turns it off.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from . import cache  # noqa: E402,F401
from .config import DataError, HamvizError, ParamsError, __version__  # noqa: E402,F401
from .data import Dataset, load_ham10000  # noqa: E402,F401
from .registry import CLASS_NAMES, CLASSES, MALIGNANT  # noqa: E402,F401


def load_model(path):
    """A Keras model saved by hamviz (``model.keras``), uncompiled, with hamviz's (and Keras-Hub's) layers
    registered: see :func:`hamviz.models.load`."""
    from .models import load
    return load(path)
