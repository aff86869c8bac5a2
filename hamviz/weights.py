"""Where pretrained weights come from, checked without loading TensorFlow (so ``hamviz validate`` and the start of
a book build can name what is missing before any training).

Keras-Hub presets (:data:`hamviz.registry.HUB_BACKBONES`): "imagenet" means the preset folder ``<name>`` in
``$HAMVIZ_WEIGHTS`` or, after it, in the weights cache ``<cache>/weights`` (:func:`preset_folders`) when it is
there, else the model's hub handle, which needs internet; a hub handle (``hf://...``, ``kaggle://...``) or a local
preset folder may be named directly. :func:`fetch_preset` downloads a preset's handle once into the weights cache
(the book does so before any chapter runs, when the folder is missing and the hub can be reached); later runs find
it there. On a machine without internet a request that needs a download fails at once, naming the folder, the
handle and the fix (:func:`how_to_get`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .config import WEIGHTS_ENV, HamvizError, reachable, weights_cache_dir, weights_dir
from .registry import HUB_BACKBONES


class WeightsError(HamvizError):
    """Pretrained weights that are not where the settings say, or cannot be downloaded."""


HUB_HOSTS = {"hf://": "huggingface.co", "kaggle://": "www.kaggle.com"}
#: approximate download size of each Keras-Hub preset, megabytes
PRESET_MB = {"efficientnet_lite0": 19}
# ``reachable`` (imported from config) is looked up here at call time: tests replace ``hamviz.weights.reachable``


def _is_preset_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def preset_folders(backbone: str) -> list[Path]:
    """Where the preset folder of ``backbone`` is looked for, in order: ``$HAMVIZ_WEIGHTS/<name>`` (else
    ``<cache>/weights/<name>``), then the weights cache ``<cache>/weights/<name>`` where :func:`fetch_preset`
    puts it."""
    name = HUB_BACKBONES[backbone][0]
    return list(dict.fromkeys([weights_dir() / name, weights_cache_dir() / name]))


def local_preset(backbone: str) -> Path | None:
    """The first of :func:`preset_folders` that holds a preset (a folder with config.json), or None."""
    return next((p for p in preset_folders(backbone) if _is_preset_folder(p)), None)


def hub_host(handle: str) -> str:
    """The host a hub handle downloads from (``hf://...``: huggingface.co; ``kaggle://...``: www.kaggle.com)."""
    return HUB_HOSTS[handle.split("//")[0] + "//"]


def hub_fetch(handle: str, dest: Path) -> None:
    """Download the Keras-Hub preset ``handle`` into the empty folder ``dest``: ``hf://owner/name`` with
    huggingface_hub (the repository's configs and weights, not its PyTorch duplicates), ``kaggle://...`` with
    kagglehub. Needs internet; raises whatever those libraries raise."""
    dest = Path(dest)
    if handle.startswith("hf://"):
        from huggingface_hub import snapshot_download  # noqa: PLC0415 - a Keras-Hub dependency, only needed here
        snapshot_download(repo_id=handle[len("hf://"):], local_dir=str(dest),
                          ignore_patterns=["*.bin", "*.pth", "*.pt", "*.msgpack", "*.onnx", "*.ckpt", "*.md",
                                           ".gitattributes"])
        shutil.rmtree(dest / ".cache", ignore_errors=True)  # huggingface_hub's bookkeeping, not the preset
    elif handle.startswith("kaggle://"):
        import kagglehub  # noqa: PLC0415 - a Keras-Hub dependency, only needed here
        shutil.copytree(kagglehub.model_download(handle[len("kaggle://"):]), dest, dirs_exist_ok=True)
    else:
        raise WeightsError(f"Cannot download {handle!r}: not a hub handle (hf://..., kaggle://...).")


def fetch_preset(backbone: str, *, into=None, fetch=None, log=print) -> Path:
    """The preset folder of ``backbone`` in the weights cache (``<cache>/weights/<name>``; ``into/<name>`` when
    ``into`` is given), downloading its hub handle there first when it is not already there.
    ``fetch(handle, folder)`` downloads (default
    :func:`hub_fetch`); it writes into a hidden sibling folder that is renamed into place only once it holds a
    preset, so an interrupted fetch never leaves a folder that looks complete. ``log`` gets one line before the
    download. Raises WeightsError when the download fails or gives no config.json (nothing is left behind)."""
    name, handle, _ = HUB_BACKBONES[backbone]
    final = (Path(into).expanduser().absolute() if into else weights_cache_dir()) / name
    if _is_preset_folder(final):
        return final
    partial = final.with_name(f".{name}.partial{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log(f"[weights] downloading {backbone} ({handle}, about {PRESET_MB.get(backbone, '?')} MB) once into {final}")
    try:
        (fetch or hub_fetch)(handle, partial)
        if not _is_preset_folder(partial):
            raise WeightsError(f"the download of {handle} holds no config.json")
        if final.exists():
            shutil.rmtree(final)  # an earlier fetch without config.json: not a preset
        partial.rename(final)
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise WeightsError(f"Could not download the {backbone} preset {handle} into {final}: {exc}. "
                           f"To put it here by hand, {how_to_get(backbone)}.") from exc
    return final


def how_to_get(backbone: str) -> str:
    """How to put the preset of ``backbone`` on a machine by hand: the command, the URL and the variable."""
    name, handle, _ = HUB_BACKBONES[backbone]
    url = (f"https://huggingface.co/{handle[len('hf://'):]}" if handle.startswith("hf://") else
           f"https://www.kaggle.com/models/{handle[len('kaggle://'):]}")
    return (f"on a machine with internet run `hamviz weights --model {backbone} --dest WEIGHTS_DIR` (or download "
            f"config.json and model.safetensors from {url} into WEIGHTS_DIR/{name}/), copy WEIGHTS_DIR here and "
            f"`export {WEIGHTS_ENV}=WEIGHTS_DIR`")


def preset_source(backbone: str, weights) -> tuple[str, bool]:
    """(the Keras-Hub preset to load ``backbone`` from -- a local folder or a hub handle --, whether to load its
    weights) for ``weights``: None (the preset's architecture, random initialisation), "imagenet" (the preset
    folder ``$HAMVIZ_WEIGHTS/<name>`` when it is there, else the hub handle), a hub handle (``hf://...``,
    ``kaggle://...``) or a local preset folder. Raises ModelError, before anything is built or downloaded,
    naming the folder, the handle and the fix when nothing usable is there."""
    folder_name, handle, _ = HUB_BACKBONES[backbone]
    folder = weights_dir() / folder_name
    fix = (f"Put the preset folder {folder_name}/ (config.json + model.safetensors) under {weights_dir()} or set "
           f"{WEIGHTS_ENV} to the folder that holds it ({how_to_get(backbone)}); on a machine with internet the "
           f"handle {handle} is downloaded instead (`hamviz book` keeps it in {weights_cache_dir() / folder_name}); "
           f"or pass weights=None (random initialisation, which still needs the preset's config.json)")
    if weights is None or weights == "imagenet":
        found = local_preset(backbone)
        if found is not None:
            return str(found), weights is not None
        host = hub_host(handle)
        if reachable(host):
            return handle, weights is not None
        where = " or ".join(str(p) for p in preset_folders(backbone))
        raise WeightsError(f"No {backbone} preset: no folder with config.json at {where}, and {handle} cannot be "
                           f"downloaded (no connection to {host}). {fix}.")
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
