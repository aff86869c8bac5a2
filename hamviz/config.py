"""Where things live: the data directory, the on-disk cache, the weights, and the errors hamviz raises.

Resolution order for the data directory: an explicit argument (params ``data_dir``, ``--data``), then the
``HAMVIZ_DATA`` environment variable, then the **default data folder** :func:`default_data_dir`
(``$HAMVIZ_HOME/ham10000``, else the platform's user-data folder, ``~/.local/share/hamviz/ham10000`` on Linux)
-- but only once a download into it has completed (its :data:`COMPLETE_MARKER` names the item). ``hamviz book``
downloads HAM10000 there when nothing else is configured (:mod:`hamviz.download`), unless ``--no-download`` or
``HAMVIZ_NO_DOWNLOAD=1``. Otherwise a missing setting is an error that says how to get the data and how to point
hamviz at it.
The cache (decoded images, splits, trained models) lives in ``HAMVIZ_CACHE`` or ``~/.cache/hamviz``; pretrained
weights hamviz fetched itself in ``<cache>/weights`` (:func:`weights_cache_dir`).
"""
from __future__ import annotations

import json
import os
import socket
import threading
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from pathlib import Path

try:
    __version__ = _version("hamviz")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

DATA_ENV = "HAMVIZ_DATA"
CACHE_ENV = "HAMVIZ_CACHE"
WEIGHTS_ENV = "HAMVIZ_WEIGHTS"
#: hamviz's own folder for what it downloads (the default data folder is ``$HAMVIZ_HOME/ham10000``)
HOME_ENV = "HAMVIZ_HOME"
#: set to 1 (true, yes) to turn off the book's automatic downloads (as ``hamviz book --no-download``)
NO_DOWNLOAD_ENV = "HAMVIZ_NO_DOWNLOAD"
#: a mirror: the book's automatic download fetches every file from ``$HAMVIZ_DOWNLOAD_URL/<file name>``
DOWNLOAD_URL_ENV = "HAMVIZ_DOWNLOAD_URL"
#: set by the book for a chapter's process and kernel: a path prefix of the progress reports they write
#: (<prefix>.cells.json, <prefix>.train.json; see hamviz.book.progress)
PROGRESS_ENV = "HAMVIZ_PROGRESS"
#: written into a data folder by :func:`hamviz.download.download` once every item it was asked for is in place
COMPLETE_MARKER = ".hamviz-complete.json"

GET_DATA_HINT = (
    "Get HAM10000 with `hamviz download --dest DIR` (or by hand from "
    "https://doi.org/10.7910/DVN/DBW86T: HAM10000_metadata.csv, HAM10000_images_part_1/, "
    "HAM10000_images_part_2/), then point hamviz at it with `export HAMVIZ_DATA=DIR` "
    "or `data_dir: DIR` in your params file. (`hamviz book` downloads it by itself into the default data "
    "folder when no data location is set and the machine is online.)"
)


class HamvizError(Exception):
    """Base class of every error hamviz raises on purpose: the message names the problem and the fix."""


class DataError(HamvizError):
    """The data on disk is missing, incomplete, corrupt or not what it should be."""


class ParamsError(HamvizError):
    """A parameter profile has an unknown key, a wrong type or an out-of-range value."""


def configured_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data location the user set: ``explicit`` if given, else ``$HAMVIZ_DATA``; None when neither is (no
    check that it exists)."""
    value = explicit if explicit not in (None, "") else os.environ.get(DATA_ENV)
    return None if value in (None, "") else Path(value).expanduser()


def home_dir() -> Path:
    """hamviz's folder for downloaded data: ``$HAMVIZ_HOME``, else the platform's user-data folder
    (``$XDG_DATA_HOME/hamviz`` or ``~/.local/share/hamviz`` on Linux, ``~/Library/Application Support/hamviz`` on
    macOS, ``%LOCALAPPDATA%\\hamviz`` on Windows; platformdirs). Not created."""
    value = os.environ.get(HOME_ENV)
    if value:
        return Path(value).expanduser().absolute()
    import platformdirs  # noqa: PLC0415 - a dependency of pooch; only needed here
    return Path(platformdirs.user_data_dir("hamviz", appauthor=False)).absolute()


def default_data_dir() -> Path:
    """Where ``hamviz book`` downloads HAM10000 when no data location is set: ``home_dir() / "ham10000"``."""
    return home_dir() / "ham10000"


def completed_items(folder: str | os.PathLike) -> set[str]:
    """The download items (``"ham10000"``, ``"masks"``, ...) whose download into ``folder`` completed, from its
    :data:`COMPLETE_MARKER`; empty when there is none (never downloaded, or interrupted) or it is unreadable."""
    try:
        items = json.loads((Path(folder) / COMPLETE_MARKER).read_text()).get("items", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(i) for i in items} if isinstance(items, list) else set()


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The HAM10000 directory: ``explicit`` if given, else ``$HAMVIZ_DATA``, else :func:`default_data_dir` when a
    download into it completed. Raises DataError when none is set, or the one set is a file or does not exist."""
    path = configured_data_dir(explicit)
    if path is None:
        default = default_data_dir()
        if "ham10000" in completed_items(default):
            return default.resolve()
        raise DataError(f"No data directory given: pass data_dir or set {DATA_ENV} (the default data folder "
                        f"{default} holds no completed download). {GET_DATA_HINT}")
    if path.is_file():
        raise DataError(f"Data directory {path} is a file, not a folder: point data_dir / {DATA_ENV} at the folder "
                        f"that holds HAM10000_metadata.csv and the image folders (perhaps {path.parent}).")
    if not path.is_dir():
        raise DataError(f"Data directory {path} does not exist. {GET_DATA_HINT}")
    check_readable_folder(path, "the data directory")
    return path.resolve()


def downloads_allowed(flag: bool | None = None) -> bool:
    """Whether the book may download what it lacks: ``flag`` when given, else unless ``$HAMVIZ_NO_DOWNLOAD`` is
    set to 1, true or yes (any case)."""
    if flag is not None:
        return bool(flag)
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def proxy_for(host: str, port: int = 443, scheme: str | None = None) -> tuple[str, int] | None:
    """The (host, port) of the proxy a download of ``scheme``://``host``:``port`` goes through, as requests,
    pooch and urllib choose it: ``https_proxy`` / ``http_proxy`` (either case; lower case wins), else
    ``all_proxy``, unless ``no_proxy`` covers the host (``urllib.request.getproxies`` / ``proxy_bypass``, which
    also read the system settings on macOS and Windows). None: the connection goes direct. ``scheme`` defaults to
    "http" for port 80, else "https"."""
    import urllib.request  # noqa: PLC0415 - only for this check
    from urllib.parse import urlsplit  # noqa: PLC0415

    scheme = scheme or ("http" if port == 80 else "https")
    try:
        proxies = urllib.request.getproxies()
        url = proxies.get(scheme) or proxies.get("all")
        if not url or urllib.request.proxy_bypass(host) or urllib.request.proxy_bypass(f"{host}:{port}"):
            return None
        parts = urlsplit(url if "://" in url else f"http://{url}")  # requests reads "proxy:3128" as http
        default = {"https": 443, "http": 80}.get(parts.scheme, 1080)  # socks*: 1080
        return (parts.hostname, parts.port or default) if parts.hostname else None
    except (OSError, ValueError):  # a malformed variable: let the download itself say what is wrong
        return None


def reachable(host: str, port: int = 443, timeout: float = 3.0, scheme: str | None = None) -> bool:
    """Whether a download from ``host``:``port`` could start: a TCP connection opens within ``timeout`` seconds,
    name lookup included, to the host or, when a proxy applies to it (:func:`proxy_for`: ``HTTPS_PROXY``,
    ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, as requests and pooch use them), to the proxy instead (a machine
    whose only way out is a proxy cannot reach the host itself). Never raises; at most about ``timeout`` seconds
    even where name lookup hangs."""
    target = proxy_for(host, port, scheme) or (host, port)
    result: list[bool] = []

    def probe():
        try:
            socket.create_connection(target, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


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
    ``explicit``, else ``$HAMVIZ_WEIGHTS``, else :func:`weights_cache_dir`. Not created: it may be read-only."""
    value = explicit or os.environ.get(WEIGHTS_ENV)
    if value:
        return Path(value).expanduser().resolve()
    return weights_cache_dir()


def weights_cache_dir() -> Path:
    """Where hamviz keeps the pretrained weights it fetched itself: ``<cache>/weights`` (not created). Searched
    after ``$HAMVIZ_WEIGHTS``."""
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
