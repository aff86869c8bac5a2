"""Where pretrained weights come from, checked without loading TensorFlow (so ``hamviz validate`` and the start of
a book build can name what is missing before any training).

Keras-Hub presets (:data:`hamviz.registry.HUB_BACKBONES`): "imagenet" means the preset folder
``$HAMVIZ_WEIGHTS/<name>`` (default ``<cache>/weights/<name>``) when it is there, else the model's hub handle,
which needs internet; a hub handle (``hf://...``, ``kaggle://...``) or a local preset folder may be named
directly. On a machine without internet a request that needs a download fails at once, naming the folder, the
handle and the fix.
"""
from __future__ import annotations

import socket
from pathlib import Path

from .config import WEIGHTS_ENV, HamvizError, weights_dir
from .registry import HUB_BACKBONES


class WeightsError(HamvizError):
    """Pretrained weights that are not where the settings say, or cannot be downloaded."""


HUB_HOSTS = {"hf://": "huggingface.co", "kaggle://": "www.kaggle.com"}


def reachable(host: str) -> bool:
    """Whether ``host`` answers on port 443 within 3 s (a download could start)."""
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _is_preset_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def preset_source(backbone: str, weights) -> tuple[str, bool]:
    """(the Keras-Hub preset to load ``backbone`` from -- a local folder or a hub handle --, whether to load its
    weights) for ``weights``: None (the preset's architecture, random initialisation), "imagenet" (the preset
    folder ``$HAMVIZ_WEIGHTS/<name>`` when it is there, else the hub handle), a hub handle (``hf://...``,
    ``kaggle://...``) or a local preset folder. Raises ModelError, before anything is built or downloaded,
    naming the folder, the handle and the fix when nothing usable is there."""
    folder_name, handle, _ = HUB_BACKBONES[backbone]
    folder = weights_dir() / folder_name
    fix = (f"Put the preset folder {folder_name}/ (config.json + model.safetensors) under {weights_dir()} or set "
           f"{WEIGHTS_ENV} to the folder that holds it; on a machine with internet the handle {handle} is "
           f"downloaded instead; or pass weights=None (random initialisation, which still needs the preset's "
           f"config.json)")
    if weights is None or weights == "imagenet":
        if _is_preset_folder(folder):
            return str(folder), weights is not None
        host = HUB_HOSTS[handle.split("//")[0] + "//"]
        if reachable(host):
            return handle, weights is not None
        raise WeightsError(f"No {backbone} preset: {folder} does not exist (or has no config.json) and {handle} "
                         f"cannot be downloaded (no connection to {host}). {fix}.")
    w = str(weights)
    for prefix, host in HUB_HOSTS.items():
        if w.startswith(prefix):
            if reachable(host):
                return w, True
            raise WeightsError(f"The {backbone} weights {w} cannot be downloaded (no connection to {host}). {fix}.")
    path = Path(w).expanduser()
    if _is_preset_folder(path):
        return str(path.resolve()), True
    raise WeightsError(f"Weights {w!r} for {backbone} are not a Keras-Hub preset folder (a folder with "
                     f"config.json and model weights) nor a handle (hf://..., kaggle://...). {fix}.")


def check(model: str, weights) -> str | None:
    """Why ``model`` cannot get ``weights`` on this machine (a message naming the fix), or None. Only Keras-Hub
    backbones are checked here; Keras-application weights are checked when the model is built."""
    if model not in HUB_BACKBONES:
        return None
    try:
        preset_source(model, weights)
    except WeightsError as exc:
        return str(exc)
    return None
