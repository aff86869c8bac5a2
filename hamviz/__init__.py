"""hamviz: notebook-first analysis of the HAM10000 dermatoscopic skin-lesion data set."""
import os as _os
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("hamviz")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

# TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) would fill every notebook's output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .config import DataError, HamvizError, ParamsError  # noqa: E402,F401
from .data import CLASSES, CLASS_NAMES, MALIGNANT, Dataset, load_ham10000  # noqa: E402,F401
from . import cache, notebook  # noqa: E402,F401
