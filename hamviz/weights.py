"""Where pretrained weights come from, checked without loading TensorFlow (so ``hamviz validate`` and the start of
a book build can name what is missing before any training).

Keras-Hub presets (:data:`hamviz.registry.HUB_BACKBONES`): "imagenet" means the preset folder ``<name>`` in
``$HAMVIZ_WEIGHTS`` or, after it, in the weights cache ``<cache>/weights`` (:func:`preset_folders`) when it is
there, else the model's hub handle, which needs internet; a hub handle (``hf://...``, ``kaggle://...``) or a local
preset folder may be named directly. :func:`fetch_preset` downloads a preset's handle once into the weights cache
(the book does so before any chapter runs, when the folder is missing and the hub can be reached); later runs find
it there. On a machine without internet a request that needs a download fails at once, naming the folder, the
handle and the fix (:func:`how_to_get`).

Keras applications (InceptionV3, DenseNet201, ResNet50, VGG19, MobileNetV2): "imagenet" means Keras' published
no-top ``.h5`` file (:data:`KERAS_WEIGHTS`: its URL and md5), looked for in ``$HAMVIZ_WEIGHTS/keras/``, the weights
cache's ``keras/`` and Keras' own ``~/.keras/models`` (:func:`local_keras_weights`); :func:`fetch_keras_weights`
(``hamviz weights --model resnet50 --dest DIR``) downloads it, checked against its md5, so that a GPU machine
without internet can run the `paper` profile with ``HAMVIZ_WEIGHTS=DIR``.
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
KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications"
#: Keras' published no-top ImageNet weights (what ``keras.applications.<Model>(weights="imagenet",
#: include_top=False)`` downloads): backbone -> (folder on the server, file name, md5 as in Keras' source;
#: None where Keras publishes none). MobileNetV2's name has the input size in it.
KERAS_WEIGHTS = {
    "inceptionv3": ("inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "bcbd6486424b2319ff4ef7d526e38f63"),
    "densenet201": ("densenet", "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "c13680b51ded0fb44dff2d8f86ac8bb1"),
    "resnet50": ("resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "4d473c1dd8becc155b73f8504c6f6626"),
    "vgg19": ("vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "253f8cb515780f3b799900260a226db6"),
    "mobilenetv2": ("mobilenet_v2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5", None),
}
#: Keras' published ImageNet weights WITH the fully connected top (``include_top=True``), for the backbones whose own
#: top a model can keep (``head: own_top``): backbone -> (folder, file name, md5 as in Keras' source). 224x224 only.
KERAS_TOP_WEIGHTS = {
    "vgg19": ("vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels.h5", "cbe5617147190e668d6c5d5026f83318"),
}
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


# ------------------------------------------------------------------------------------------- Keras applications
def keras_weights_file(backbone: str, input_size: int | None = None, top: bool = False) -> tuple[str, str, str | None]:
    """(file name, URL, md5 or None) of the ImageNet weights Keras publishes for ``backbone``: the no-top file
    (:data:`KERAS_WEIGHTS`), or with ``top`` the file with its fully connected top (:data:`KERAS_TOP_WEIGHTS`);
    MobileNetV2's file is the one for the smallest published size >= ``input_size``. Raises KeyError for a
    backbone without such a file."""
    folder, fname, md5 = (KERAS_TOP_WEIGHTS if top else KERAS_WEIGHTS)[backbone]
    if "{size}" in fname:
        size = min((s for s in (96, 128, 160, 192, 224) if s >= (input_size or 224)), default=224)
        fname = fname.format(size=size)
    return fname, f"{KERAS_URL}/{folder}/{fname}", md5


def keras_weights_folders() -> list[Path]:
    """Where Keras-application weight files are looked for, in order: ``$HAMVIZ_WEIGHTS/keras``, the weights
    cache's ``keras/`` (where :func:`fetch_keras_weights` puts them by default), Keras' ``~/.keras/models``."""
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return list(dict.fromkeys([weights_dir() / "keras", weights_cache_dir() / "keras", home / "models"]))


def local_keras_weights(backbone: str, input_size: int | None = None, top: bool = False) -> Path | None:
    """The first of :func:`keras_weights_folders` that holds ``backbone``'s weight file (with ``top``: the one
    with its fully connected top), or None."""
    fname = keras_weights_file(backbone, input_size, top)[0]
    return next((f / fname for f in keras_weights_folders() if (f / fname).is_file()), None)


def fetch_keras_weights(backbone: str, *, into=None, input_size: int | None = None, top: bool = False,
                        get_file=None) -> Path:
    """``backbone``'s Keras ImageNet weights file (with ``top``: the one with its fully connected top) in
    ``into/keras/`` (default: the weights cache), downloaded once from Keras' server and checked against its md5
    (``keras.utils.get_file``, or ``get_file`` with its signature). Raises WeightsError when the download fails."""
    fname, url, md5 = keras_weights_file(backbone, input_size, top)
    root = Path(into).expanduser().absolute() if into else weights_cache_dir()
    final = root / "keras" / fname
    if final.is_file():
        return final
    if get_file is None:
        from keras.utils import get_file  # noqa: PLC0415 - TensorFlow only when a download is asked for
    try:
        got = get_file(fname, url, cache_dir=str(root), cache_subdir="keras", file_hash=md5)
    except Exception as exc:
        raise WeightsError(f"Could not download {url} into {final.parent}: {exc}. "
                           f"{how_to_get_keras(backbone, input_size, top)}") from exc
    return Path(got)


def how_to_get_keras(backbone: str, input_size: int | None = None, top: bool = False) -> str:
    """How to put ``backbone``'s Keras ImageNet weights (with ``top``: with its fully connected top) on a machine
    without internet."""
    fname, url, _ = keras_weights_file(backbone, input_size, top)
    fetch = f"--model {backbone}" + (" --top" if top else "")
    return (f"On a machine with internet run `hamviz weights {fetch} --dest WEIGHTS_DIR` (or download "
            f"{url} into WEIGHTS_DIR/keras/), copy WEIGHTS_DIR here and `export {WEIGHTS_ENV}=WEIGHTS_DIR`; or put "
            f"{fname} in ~/.keras/models.")
