"""The one artefact store: every trained model hamviz keeps (classifiers, autoencoders, joint, hypervector and
softmax-twin models, ensemble members, random-search trials) lives in one folder per artefact under
``<cache>/models/``, named ``<name>-<key>``.

An artefact folder holds ``model.keras``, ``history.json`` (per-epoch metrics), ``config.json`` (what made it:
config, key, data fingerprint, split, seconds, ...), ``arrays.npz`` (e.g. the class probabilities of every split
part) and ``manifest.json``, written last, with every file's size and SHA-256 and the Keras version that wrote
the model. Folders are built under a temporary name and renamed into place in one step
(:func:`hamviz.cache.publish`), so a reader never sees a partial artefact; an artefact is trained under its lock
(:func:`training`), so two processes never train it twice; a reader that finds a file whose size or checksum
differs from the manifest removes the folder and reports it, and the artefact is trained again. A model that is
intact but that this Keras cannot load (written by another Keras version, typically) is reported with both
versions, moved to ``<cache>/set-aside/models/`` (for the Keras that wrote it) and trained again.

What the key covers is decided by :func:`hamviz.training.artefact_key`; this module only stores.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .cache import publish
from .config import cache_dir
from .files import describe, locked, raise_if_full, temp_dir_beside

FILES = ("model.keras", "history.json", "config.json", "arrays.npz")


@dataclass
class Stored:
    """What :func:`load` returns: the model and what was saved beside it."""

    model: object
    history: dict
    meta: dict
    arrays: dict


def folder(name: str, key: str, cache_root=None) -> Path:
    """The folder of artefact ``name`` with ``key`` (``<cache>/models/<name>-<key>``)."""
    root = Path(cache_root) if cache_root else cache_dir()
    return root / "models" / f"{name}-{key}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def keras_version() -> str:
    """The version of the Keras installed here (read from its package metadata: TensorFlow is not loaded)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("keras")
    except PackageNotFoundError:  # pragma: no cover - a dependency
        return "unknown"


def _manifest(path: Path) -> dict:
    """The artefact's manifest as {"files": name -> {"bytes", "sha256"}, "keras": version or None}; a manifest
    written before the Keras version was recorded (files only) reads with "keras" None. Raises OSError or
    ValueError when it is missing or unreadable."""
    manifest = json.loads((Path(path) / "manifest.json").read_text())
    if not isinstance(manifest, dict):
        raise ValueError("manifest.json is not a JSON object")
    if isinstance(manifest.get("files"), dict):
        return {"files": manifest["files"], "keras": manifest.get("keras")}
    return {"files": manifest, "keras": None}


def written_by(path: Path) -> str | None:
    """The Keras version that wrote the artefact at ``path``: as its manifest records it, else as its
    model.keras says (:func:`hamviz.models.saved_keras_version`), else None."""
    try:
        recorded = _manifest(path)["keras"]
    except (OSError, ValueError):
        recorded = None
    if recorded:
        return recorded
    from .models import saved_keras_version
    return saved_keras_version(Path(path) / "model.keras")


def save(path: Path, model, history: dict, meta: dict, arrays: dict) -> None:
    """Store a trained ``model`` with its ``history``, ``meta`` (JSON-able) and ``arrays`` (name -> ndarray)
    at ``path``, atomically; an existing artefact there is replaced. The manifest records every file's size and
    SHA-256 and the Keras version (:func:`keras_version`)."""
    path = Path(path)
    tmp = temp_dir_beside(path)  # a unique name: two writers never share it
    try:
        model.save(tmp / "model.keras")
        (tmp / "history.json").write_text(json.dumps(history))
        (tmp / "config.json").write_text(json.dumps(meta, default=str))
        np.savez_compressed(tmp / "arrays.npz", **arrays)
        files = {f: {"bytes": (tmp / f).stat().st_size, "sha256": _sha256(tmp / f)} for f in FILES}
        manifest = {"files": files, "keras": keras_version()}
        shutil.rmtree(path, ignore_errors=True)
        # the manifest is written last: a folder without it was never finished
        (tmp / "manifest.json").write_text(json.dumps(manifest))
        publish(tmp, path, None)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_if_full(exc, path.parent, lambda: 12 * model.count_params() + sum(  # weights, optimiser state, arrays
            np.asarray(a).nbytes for a in arrays.values()), "the stored model")
        raise


def build_log(message: str) -> None:
    """A message about the build itself (another process holds a lock, this one waits) on stderr: in a chapter it
    stays in the executed notebook and its log, and off the book's page (which shows what the chapter found)."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def training(path: Path, log=build_log) -> Iterator[None]:
    """Hold the lock of the artefact at ``path`` (``<cache>/locks/models/<name>-<key>.lock``: lock files stay out
    of the artefact folders) while it is trained and saved, so that two processes (two books, parallel chapters, a
    notebook) never train the same artefact at once: the second waits (saying for whom, through ``log``: stderr by
    default, :func:`build_log`) and then finds it in the store. The lock is released when the block ends or the
    process dies."""
    path = Path(path)
    with locked(path.parent.parent / "locks" / path.parent.name / f"{path.name}.lock",
                on_wait=lambda who: log(f"{path.name} is being trained by {describe(who)}: waiting for it, then "
                                        f"loading it")):
        yield


def damage(path: Path) -> str | None:
    """Why the artefact at ``path`` cannot be trusted (a file missing, or its size or checksum not what the
    manifest recorded), or None when it is intact."""
    try:
        files = _manifest(path)["files"]
    except (OSError, ValueError):
        return "manifest.json is missing or unreadable (the artefact was never finished)"
    for name, want in files.items():
        f = Path(path) / name
        if not f.is_file():
            return f"{name} is missing"
        try:
            if f.stat().st_size != want["bytes"]:
                return f"{name} has {f.stat().st_size} bytes, {want['bytes']} were written"
            if _sha256(f) != want["sha256"]:
                return f"{name} does not match its recorded SHA-256"
        except (TypeError, KeyError):
            return f"manifest.json's entry of {name} is unreadable"
    return None


def set_aside(path: Path) -> Path:
    """Move the artefact at ``path`` to ``<cache>/set-aside/models/<name>-<key>.keras-<version>`` (the Keras
    version that wrote it; an earlier one set aside there is replaced) and return where; the store then has none
    for its key. Raises OSError when it cannot be moved."""
    path = Path(path)
    dest = path.parent.parent / "set-aside" / "models" / f"{path.name}.keras-{written_by(path) or 'unknown'}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(path, dest)
    return dest


def _unloadable(path: Path, exc: Exception, log) -> None:
    """An intact artefact whose model this Keras cannot load: say which Keras wrote it and which one runs, and set
    it aside (removed when it cannot be moved), so that it is trained again."""
    written, running = written_by(path), keras_version()
    by = f"Keras {written}" if written else "a Keras version it does not record"
    cause = exc.__cause__ or exc  # Keras' own error, under hamviz.models.LoadError
    why = f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
    try:
        where = f"set aside in {set_aside(path)} (load it there with Keras {written or 'that wrote it'})"
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        where = "removed (it could not be set aside)"
    log(f"stored model {path} was written by {by} and does not load with Keras {running}, the one running here "
        f"({why}); {where}; training it again")


def load(path: Path, log=print) -> Stored | None:
    """The artefact at ``path``, or None if there is none. A damaged one (see :func:`damage`) is named through
    ``log``, removed, and None is returned, so the caller trains it again. An intact one whose model this Keras
    cannot load (:class:`hamviz.models.LoadError`: one written by another Keras version, e.g. with a layer
    argument this one does not know) is named through ``log`` with the Keras version that wrote it and the one
    running, set aside (:func:`set_aside`), and None is returned: trained again too. Raises
    :class:`hamviz.models.ModelError` only when the model needs keras-hub and it is not installed."""
    from . import models
    path = Path(path)
    if not path.is_dir():
        return None
    problem = damage(path)
    if problem is None:
        try:
            model = models.load(path / "model.keras")
        except models.LoadError as exc:
            _unloadable(path, exc, log)
            return None
        try:
            history = json.loads((path / "history.json").read_text())
            meta = json.loads((path / "config.json").read_text())
            with np.load(path / "arrays.npz") as z:
                arrays = {k: z[k] for k in z.files}
            return Stored(model, history, meta, arrays)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            problem = f"it does not load ({type(exc).__name__}: {exc})"
    log(f"stored model {path} is damaged: {problem}; removing it and training it again")
    shutil.rmtree(path, ignore_errors=True)
    return None
