"""Where things live: the data directory, the on-disk cache, and the errors hamviz raises.

Resolution order for the data directory: an explicit argument (params ``data_dir``), then the
``HAMVIZ_DATA`` environment variable. There is no silent default: a missing setting is an error that
says how to get the data and how to point hamviz at it.
The cache (decoded images, splits, trained models) lives in ``HAMVIZ_CACHE`` or ``~/.cache/hamviz``.
"""
from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version as _version
from pathlib import Path

try:
    __version__ = _version("hamviz")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

DATA_ENV = "HAMVIZ_DATA"
CACHE_ENV = "HAMVIZ_CACHE"
WEIGHTS_ENV = "HAMVIZ_WEIGHTS"

GET_DATA_HINT = (
    "Get HAM10000 with `hamviz download --dest DIR` (or by hand from "
    "https://doi.org/10.7910/DVN/DBW86T: HAM10000_metadata.csv, HAM10000_images_part_1/, "
    "HAM10000_images_part_2/), then point hamviz at it with `export HAMVIZ_DATA=DIR` "
    "or `data_dir: DIR` in your params file."
)


class HamvizError(Exception):
    """Base class of every error hamviz raises on purpose: the message names the problem and the fix."""


class DataError(HamvizError):
    """The data on disk is missing, incomplete, corrupt or not what it should be."""


class ParamsError(HamvizError):
    """A parameter profile has an unknown key, a wrong type or an out-of-range value."""


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The HAM10000 directory: ``explicit`` if given, else ``$HAMVIZ_DATA``; it must exist."""
    value = explicit if explicit not in (None, "") else os.environ.get(DATA_ENV)
    if value in (None, ""):
        raise DataError(f"No data directory given: pass data_dir or set {DATA_ENV}. {GET_DATA_HINT}")
    path = Path(value).expanduser()
    if path.is_file():
        raise DataError(f"Data directory {path} is a file, not a folder: point data_dir / {DATA_ENV} at the folder "
                        f"that holds HAM10000_metadata.csv and the image folders (perhaps {path.parent}).")
    if not path.is_dir():
        raise DataError(f"Data directory {path} does not exist. {GET_DATA_HINT}")
    check_readable_folder(path, "the data directory")
    return path.resolve()


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cache root (created if needed): ``explicit``, ``$HAMVIZ_CACHE`` or ``~/.cache/hamviz``."""
    value = explicit or os.environ.get(CACHE_ENV)
    if value:
        path = Path(value).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "hamviz"
    check_writable(path, "The hamviz cache", f"Set {CACHE_ENV} to a writable folder (or unset it for "
                                               f"~/.cache/hamviz).")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def check_writable(path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` as an absolute path if it is, or can become, a folder this process may write in (the folder or
    its nearest existing ancestor is a writable directory; nothing is created). Raises HamvizError naming
    ``what``, the path, what is wrong (a file in the way, no permission, a read-only file system) and ``fix``."""
    p = Path(path).expanduser().absolute()
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    subject = f"{what} {p}" + ("" if probe == p else f": its nearest existing part {probe}")
    if not probe.is_dir():
        raise HamvizError(f"{subject} is a file, not a folder. {fix}")
    if not os.access(probe, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        reason = "is on a read-only file system" if read_only else "is not writable by this user (permission denied)"
        raise HamvizError(f"{subject} {reason}. {fix}")
    return p


def permission_error(what: str, path: Path) -> DataError:
    """The error for a file or folder this user may not read: a permission problem, named as one (not a missing
    or damaged download), with the fix."""
    folder = Path(path).is_dir()
    fix = f"chmod -R a+rX {path}" if folder else f"chmod a+r {path}"
    return DataError(f"Cannot read {what} {path}: permission denied (this user may not "
                     + ("list the folder or open its files" if folder else "open the file")
                     + f"). Give this user read access (e.g. `{fix}`, or ask the owner), or copy the data somewhere "
                       f"readable and point hamviz there.")


def check_readable_folder(folder: Path, what: str) -> None:
    """Raise :func:`permission_error` when this user cannot list ``folder`` and open what is in it (read and
    execute permission). Called before a folder is scanned, so the error says what is wrong rather than "no
    metadata" or "ids without files"."""
    if not os.access(folder, os.R_OK | os.X_OK):
        raise permission_error(what, folder)


def weights_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where pretrained weights live (Keras-Hub preset folders such as ``efficientnet_lite0_imagenet/``):
    ``explicit``, else ``$HAMVIZ_WEIGHTS``, else ``<cache>/weights``. Not created: it may be read-only."""
    value = explicit or os.environ.get(WEIGHTS_ENV)
    if value:
        return Path(value).expanduser().resolve()
    return cache_dir() / "weights"


def _shipped(inside: str, checkout: str) -> Path:
    """A folder that ships inside the installed package (``hamviz/<inside>`` in the wheel), or the source
    checkout's ``<checkout>`` folder when hamviz runs from a checkout (an editable install maps only the
    ``hamviz`` folder)."""
    here = Path(__file__).resolve().parent
    installed = here / inside
    return installed if installed.is_dir() else here.parent / checkout


def notebooks_dir() -> Path:
    """The chapter notebooks shipped with hamviz (``hamviz/notebooks`` in the wheel, ``notebooks/`` in a
    checkout)."""
    return _shipped("notebooks", "notebooks")


def profiles_dir() -> Path:
    """The parameter profiles shipped with hamviz (``hamviz/profiles`` in the wheel, ``params/`` in a
    checkout)."""
    return _shipped("profiles", "params")
