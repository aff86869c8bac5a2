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

What the weights are made of: :func:`identity` is the content of every file a model's weights come from (a
preset's files by SHA-256, a Keras file by md5; checksums of big files remembered by path, size and times,
:func:`file_checksum`), part of the key of every stored model, cached feature entry and book chapter computed from
them, so that weights changed under the same name are never taken for the old ones. Whether they are whole:
:func:`damage` reads each file's size and header (a safetensors header and its data offsets, config.json
parsing, an HDF5 superblock, a Keras file's md5) and names a damaged file with its fix; ``hamviz validate`` and
the book's pre-flight check call it before any chapter runs.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from .config import WEIGHTS_ENV, HamvizError, cache_dir, reachable, weights_cache_dir, weights_dir
from .files import write_atomic
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


# ------------------------------------------------------------------------------ checksums of the weights' files
#: files at least this big have their checksums remembered on disk too (``<cache>/checksums.json``), keyed by
#: path, size and times: hashing a 500 MB Keras file takes seconds, and every chapter's kernel asks for it
REMEMBER_BYTES = 1 << 20
#: "<path>|<algorithm>" -> [stamp (size, times, inode, algorithm), hex digest]: this process's memory of
#: :func:`file_checksum`
_CHECKSUMS: dict[str, list] = {}


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checksums_file() -> Path | None:
    try:
        return cache_dir() / "checksums.json"
    except HamvizError:  # a cache that cannot be written: checksums are computed each time
        return None


def file_checksum(path, algo: str = "sha256") -> str:
    """The ``algo`` checksum (hex) of the file at ``path``. Remembered by (resolved path, size, modification and
    change times, inode): in this process, and for files of at least :data:`REMEMBER_BYTES` in the cache's
    ``checksums.json`` for later processes; a file rewritten in any way (even to the same size) is hashed again.
    Raises OSError when the file cannot be read."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, algo]
    known = _CHECKSUMS.get(f"{path}|{algo}")
    if known and known[0] == stamp:
        return known[1]
    book = _checksums_file() if st.st_size >= REMEMBER_BYTES else None
    saved = {}
    if book is not None:
        try:
            saved = json.loads(book.read_text())
        except (OSError, ValueError):
            saved = {}
        saved = saved if isinstance(saved, dict) else {}
        known = saved.get(f"{path}|{algo}")
        if known and known[0] == stamp:
            _CHECKSUMS[f"{path}|{algo}"] = known
            return known[1]
    digest = _hash_file(path, algo)
    _CHECKSUMS[f"{path}|{algo}"] = [stamp, digest]
    if book is not None:
        saved = {k: v for k, v in saved.items() if Path(k.rsplit("|", 1)[0]).exists()}  # forget removed files
        saved[f"{path}|{algo}"] = [stamp, digest]
        with contextlib.suppress(OSError):
            write_atomic(book, json.dumps(saved))
    return digest


def _preset_files(folder: Path) -> list[Path]:
    """Every file of the preset ``folder``, sub-folders included, in a fixed order (hidden files left out)."""
    return sorted((f for f in folder.rglob("*") if f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(folder).parts)),
                  key=lambda f: f.relative_to(folder).as_posix())


def _is_weights_file(path: Path) -> bool:
    return path.suffix in (".safetensors", ".h5", ".bin", ".npz", ".ckpt")


def preset_digest(folder, with_weights: bool = True) -> str:
    """A digest of what the preset ``folder`` holds: every file's path in it, size and SHA-256 (
    :func:`file_checksum`); ``with_weights=False`` leaves the weight files out (a random initialisation uses only
    the configuration). Raises OSError when a file cannot be read."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in _preset_files(folder):
        if with_weights or not _is_weights_file(f):
            h.update(f.relative_to(folder).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            h.update(bytes.fromhex(file_checksum(f)))
    return h.hexdigest()[:16]


def _keras_file_names(backbone: str, input_size: int | None, top: bool) -> list[str]:
    """The Keras ImageNet file names ``backbone`` may load: MobileNetV2's every published size when
    ``input_size`` is not given."""
    if input_size is None and "{size}" in (KERAS_TOP_WEIGHTS if top else KERAS_WEIGHTS)[backbone][1]:
        return list(dict.fromkeys(keras_weights_file(backbone, s, top)[0] for s in (96, 128, 160, 192, 224)))
    return [keras_weights_file(backbone, input_size, top)[0]]


def identity(model: str, weights, input_size: int | None = None, top: bool = False) -> str | None:
    """What determines ``model``'s starting weights with ``weights``, for the keys of what is computed from them
    (stored models, cached features, book chapters): the content of every file they come from, so that files
    changed under the same name give new keys. A Keras-Hub preset folder: :func:`preset_digest` (its configuration
    alone for ``weights=None``, which still builds from it); a hub handle: the handle; a Keras application's
    ImageNet file: its name and md5 (the published md5 while it is not yet downloaded: the download is checked
    against it); a weights file given by path: its SHA-256. None for a model that reads no weights files (a
    from-scratch CNN, a Keras application with ``weights=None``). Raises WeightsError as :func:`preset_source`
    does, OSError when a file cannot be read."""
    if model in HUB_BACKBONES:
        source, load = preset_source(model, weights)
        if Path(source).is_dir():
            return f"{model}|{'preset' if load else 'random-init'}:{preset_digest(source, with_weights=load)}"
        return f"{model}|{source}" if load else f"{model}|random-init:{source}"
    if weights is None or model not in (KERAS_TOP_WEIGHTS if top else KERAS_WEIGHTS):
        return None  # (a top Keras does not publish: transfer_model refuses it)
    if weights != "imagenet":
        path = Path(str(weights)).expanduser()
        return f"{model}|file:{file_checksum(path)[:16]}" if path.is_file() else f"{model}|{weights}"
    parts = []
    for fname in _keras_file_names(model, input_size, top):
        local = next((f / fname for f in keras_weights_folders() if (f / fname).is_file()), None)
        published = (KERAS_TOP_WEIGHTS if top else KERAS_WEIGHTS)[model][2]
        parts.append(f"{fname}:" + (f"md5:{file_checksum(local, 'md5')}" if local is not None else
                                    f"md5:{published}" if published else "not downloaded"))
    return f"{model}|imagenet:" + ",".join(parts)


# ------------------------------------------------------------------------------ damaged weights files
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _safetensors_problem(path: Path, size: int) -> str | None:
    """Why ``path`` is not a whole safetensors file (an 8-byte little-endian header length, a JSON header whose
    tensors' ``data_offsets`` cover the rest of the file exactly, as the safetensors library requires), or None."""
    if size < 8:
        return f"truncated: {size} bytes, fewer than the 8 bytes of a safetensors header length"
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if 8 + n > size:
            return (f"truncated: its header says {n:,} bytes of metadata follow, the file has {size - 8:,} after the "
                    f"header length")
        try:
            header = json.loads(fh.read(n))
            ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
            bad = [k for k, t in header.items() if k != "__metadata__"
                   and not 0 <= int(t["data_offsets"][0]) <= int(t["data_offsets"][1])]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            return f"its header is not a safetensors header ({type(exc).__name__}: {str(exc)[:100]})"
    if bad:
        return f"its header gives impossible data offsets for {bad[0]}"
    data = size - 8 - n
    if max(ends, default=0) > data:
        return (f"truncated: its header says the tensor data is {max(ends):,} bytes, the file holds {data:,} bytes of "
                f"it")
    if max(ends, default=0) < data:
        return f"{data - max(ends):,} bytes more than its header describes (not the file that was published)"
    return None


def _hdf5_problem(path: Path, size: int) -> str | None:
    """Why ``path`` is not a whole HDF5 file (its signature, and its superblock's end-of-file address within the
    file), or None. Superblock versions 0-3; a file that starts with a user block is only checked for its size."""
    with open(path, "rb") as fh:
        head = fh.read(96)
    if not head.startswith(HDF5_SIGNATURE):
        return "not an HDF5 file (it does not start with the HDF5 signature)"
    version = head[8]
    offsets, base = (head[13], 24 if version == 0 else 28) if version in (0, 1) else (head[9], 12)
    if version > 3 or offsets not in (2, 4, 8) or len(head) < base + 3 * offsets:
        return None  # a layout this check does not know: the loader judges it
    start = int.from_bytes(head[base:base + offsets], "little")
    eof = int.from_bytes(head[base + 2 * offsets:base + 3 * offsets], "little")
    if start + eof > size:
        return f"truncated: its HDF5 superblock says the file ends at byte {start + eof:,}, it has {size:,} bytes"
    return None


def file_damage(path) -> str | None:
    """Why the weights or configuration file ``path`` cannot be read whole (empty, truncated, not JSON, not the
    format its name says), from its size and header only -- nothing is loaded --, or None. ``.json``: must
    parse (to an object); ``.safetensors``: :func:`_safetensors_problem`; ``.h5``: the HDF5 signature and
    end-of-file address."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty (0 bytes)"
        if path.suffix == ".json":
            try:
                if not isinstance(json.loads(path.read_bytes()), dict):
                    return "not a JSON object"
            except ValueError as exc:
                return f"not JSON ({str(exc)[:80]})"
            return None
        if path.suffix == ".safetensors":
            return _safetensors_problem(path, size)
        if path.suffix == ".h5":
            return _hdf5_problem(path, size)
    except PermissionError:
        return "this user may not read it (permission denied)"
    except OSError as exc:
        return f"cannot be read ({exc})"
    return None


def preset_damage(folder, load: bool = True) -> tuple[Path, str] | None:
    """(the damaged file, why) for the first file of the preset ``folder`` that cannot be read whole
    (:func:`file_damage`; a folder without config.json, or without any weights file when ``load``, counts too;
    without ``load`` its weight files are not looked at), or None."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return folder / "config.json", "missing"
    files = _preset_files(folder)
    if load and not any(f.suffix in (".safetensors", ".h5") for f in files):
        return folder / "model.safetensors", "missing (the folder holds no weights file)"
    for f in files:
        why = file_damage(f) if load or not _is_weights_file(f) else None  # random init reads no weights
        if why:
            return f, why
    return None


def _keras_damage(model: str, weights, input_size: int | None, top: bool) -> str | None:
    """:func:`damage` for a Keras application."""
    if weights != "imagenet":
        path = Path(str(weights)).expanduser()
        why = file_damage(path) if path.is_file() else None
        return (f"The {model} weights file {path} is damaged: {why}. Copy it again, or pass weights='imagenet' or "
                f"another file.") if why else None
    published = (KERAS_TOP_WEIGHTS if top else KERAS_WEIGHTS)[model][2]
    for fname in _keras_file_names(model, input_size, top):
        path = next((f / fname for f in keras_weights_folders() if (f / fname).is_file()), None)
        if path is not None:  # the copy Keras loads (:func:`local_keras_weights`)
            why = file_damage(path)
            if why is None and published and file_checksum(path, "md5") != published:
                why = f"its md5 is not the {published} Keras publishes (a damaged or another file)"
            if why:
                how = how_to_get_keras(model, input_size, top)
                return f"The {model} ImageNet weights file {path} is damaged: {why}. Delete it, then: {how}"
    return None


def damage(model: str, weights, input_size: int | None = None, top: bool = False) -> str | None:
    """Why the weights files ``model`` would load for ``weights`` on this machine are damaged -- a message naming
    the file, what is wrong (empty, truncated, not JSON, not the published file) and the fix --, or None (also
    when they are not here: :func:`check` says so). Reads sizes and headers only (:func:`file_damage`; a Keras
    file's md5 once, remembered by :func:`file_checksum`), so ``hamviz validate`` and the start of a book build
    name a damaged preset before any chapter runs. Raises nothing."""
    if model in HUB_BACKBONES:
        try:
            source, load = preset_source(model, weights)
        except WeightsError:
            return None
        found = preset_damage(source, load) if Path(source).is_dir() else None
        if found is None:
            return None
        path, why = found
        return (f"The {model} preset folder {path.parent} is damaged: {path}: {why}. Copy the preset folder "
                f"again: {how_to_get(model)}; or delete {path.parent} and run `hamviz weights --model {model}` (or "
                f"`hamviz book`) on this machine when it is online, which downloads it again.")
    if model in (KERAS_TOP_WEIGHTS if top else KERAS_WEIGHTS) and weights is not None:
        return _keras_damage(model, weights, input_size, top)
    return None


def check_files(model: str, weights, input_size: int | None = None, top: bool = False) -> None:
    """Raise WeightsError with :func:`damage`'s message when ``model``'s weights files are damaged."""
    problem = damage(model, weights, input_size, top)
    if problem:
        raise WeightsError(problem)
