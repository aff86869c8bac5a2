"""Reliability of pretrained weights and stored models (issue 41, round 3: faults from real users' reports).

1. Weights changed under the same name: every key of what is computed from pretrained weights -- the stored
   model's (:func:`hamviz.training.artefact_key`), the frozen-feature cache entry's
   (:func:`hamviz.features.feature_key`) and the book chapter's (:func:`hamviz.book.spec.chapter_keys`) -- covers the
   content of every file the weights come from: a preset's config.json and model.safetensors, a Keras-application
   ``.h5`` file. Swapping any one of them (same name, same size where it can be) gives new keys, and the stored
   model is trained again rather than loaded; big files' checksums are remembered by (path, size, times).
6. A damaged preset (truncated model.safetensors, a config.json that is not JSON, an empty file) is named, with
   its fix, by the weights check, ``hamviz validate`` and the book's pre-flight -- before any chapter runs.
7. A stored model written by another Keras version that this Keras cannot load is reported (both versions
   named), set aside and trained again: no raw ``TypeError``.

Everything here works on copies in a temporary folder (the shared weights are read-only) and trains nothing
bigger than one Dense layer.
"""
from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import DATA

from hamviz import weights as w
from hamviz.weights import WeightsError

PRESET = "efficientnet_lite0_imagenet"
SHARED_WEIGHTS = Path(os.environ["HAMVIZ_WEIGHTS"])
#: timm's ImageNet normalisation, instead of the converter's (x/255 - 0.498) / 0.502: the reported swap
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture
def weights_copy(tmp_path, monkeypatch) -> Path:
    """A writable copy of the shared weights folder (the EfficientNet-Lite0 preset, plus a stand-in for ResNet50's
    Keras ImageNet file in keras/), which $HAMVIZ_WEIGHTS points at; the cache in the temporary folder too."""
    root = tmp_path / "weights"
    (root / PRESET).mkdir(parents=True)
    for f in (SHARED_WEIGHTS / PRESET).iterdir():
        (root / PRESET / f.name).write_bytes(f.read_bytes())
        os.chmod(root / PRESET / f.name, stat.S_IRUSR | stat.S_IWUSR)
    (root / "keras").mkdir()
    (root / "keras" / w.keras_weights_file("resnet50")[0]).write_bytes(b"resnet50 weights, first release " * 64)
    monkeypatch.setenv("HAMVIZ_WEIGHTS", str(root))
    monkeypatch.setenv("HAMVIZ_CACHE", str(tmp_path / "cache"))
    getattr(w, "_CHECKSUMS", {}).clear()  # checksums this process remembered of other files
    return root


# ------------------------------------------------------------------ 1. weights changed under the same name
def _swap_config(root: Path) -> None:
    """The preset's normalisation changed to timm's ImageNet mean/std (the same number of bytes)."""
    path = root / PRESET / "config.json"
    cfg = json.loads(path.read_text())
    cfg["pretrained_cfg"].update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    path.write_text(json.dumps(cfg, indent=1))


def _swap_safetensors(root: Path) -> None:
    """Other weights of the same size: one byte of the tensor data changed."""
    path = root / PRESET / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def _swap_h5(root: Path) -> None:
    path = root / "keras" / w.keras_weights_file("resnet50")[0]
    path.write_bytes(b"resnet50 weights, next release  " * 64)  # the same size


def _keys(model: str) -> dict:
    """The three keys of what is computed from ``model``'s ImageNet weights: the stored classifier's, the
    frozen-feature cache entry's and the classifier chapter's."""
    from hamviz.book.spec import chapter_keys, discover
    from hamviz.features import feature_key
    from hamviz.params import load_profile
    from hamviz.training import TrainConfig, artefact_key
    cfg = TrainConfig(model=model, model_options={"weights": "imagenet", "head": "simple"}, image_size=64,
                      head_warmup=1)
    params = load_profile("tiny", check_weights=False)
    params["chapters"]["classifier"]["model"] = model
    specs = discover()
    stem = next(s.stem for s in specs if s.name == "classifier")
    cache = SimpleNamespace(path=Path("/nowhere/cache-entry-64"), size=(64, 64))
    return {"stored model": artefact_key("classifier", cfg, "fingerprint", "split"),
            "feature cache": feature_key(cache, model, "imagenet", "none"),
            "chapter": chapter_keys(specs, params, "fingerprint")[stem]}


@pytest.mark.parametrize("swap,model", [(_swap_config, "efficientnet_lite0"),
                                        (_swap_safetensors, "efficientnet_lite0"),
                                        (_swap_h5, "resnet50")],
                         ids=["preset-config.json", "preset-model.safetensors", "keras-application-h5"])
def test_every_key_covers_the_content_of_every_weights_file(weights_copy, swap, model):
    """The reported fault: the preset folder keeps its name but holds other content, and the classifier chapter
    was "up to date", the stored main model (trained with the old scaling) loaded and the feature cache entry
    kept. Each file the weights come from, swapped alone, changes every key."""
    before = _keys(model)
    assert _keys(model) == before  # nothing changed: the same keys (they are not random)
    swap(weights_copy)
    after = _keys(model)
    same = [what for what in before if before[what] == after[what]]
    assert not same, f"{same} kept their key after {swap.__name__}"


def test_a_stored_model_is_trained_again_when_its_preset_changes(weights_copy, tmp_path):
    """train_or_load (what `hamviz book --force` reaches) trains again after the preset's config.json changed,
    instead of loading the model trained with the old scaling; unchanged, it loads."""
    from hamviz.models import keras
    from hamviz.training import TrainConfig, train_or_load
    cfg = TrainConfig(model="efficientnet_lite0", model_options={"weights": "imagenet", "head": "simple"},
                      image_size=64)
    trained = []

    def train():
        trained.append(1)
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")]), {"loss": [1.0]}, {}

    def get():
        return train_or_load("classifier", "main", cfg, train, fingerprint="fp", split_id="split",
                             cache_root=tmp_path / "store", log=lambda *_: None)

    first = get()
    assert not first.loaded and get().loaded and len(trained) == 1
    _swap_config(weights_copy)
    again = get()
    assert not again.loaded and again.key != first.key and len(trained) == 2


def test_big_files_are_hashed_once_per_content(weights_copy, monkeypatch):
    """model.safetensors' checksum is remembered by (path, size, times), in this process and on disk (a new
    process, e.g. a chapter's kernel, reads it), and computed again only when the file changes."""
    hashed = []
    real = w._hash_file
    monkeypatch.setattr(w, "_hash_file", lambda path, algo: hashed.append(Path(path).name) or real(path, algo))
    path = weights_copy / PRESET / "model.safetensors"
    first = w.file_checksum(path)
    assert w.file_checksum(path) == first and hashed == ["model.safetensors"]
    w._CHECKSUMS.clear()  # as a new process
    assert w.file_checksum(path) == first and hashed == ["model.safetensors"]
    _swap_safetensors(weights_copy)
    assert w.file_checksum(path) != first and len(hashed) == 2


# ------------------------------------------------------------------ 6. a damaged preset, found before any chapter
def _truncate(root):
    path = root / PRESET / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "model.safetensors", "truncated"


def _cut_in_header(root):
    path = root / PRESET / "model.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    return "model.safetensors", "truncated"


def _config_not_json(root):
    (root / PRESET / "config.json").write_text("<html><body>502 Bad Gateway</body></html>")
    return "config.json", "not JSON"


def _empty_safetensors(root):
    (root / PRESET / "model.safetensors").write_bytes(b"")
    return "model.safetensors", "empty"


def _empty_config(root):
    (root / PRESET / "config.json").write_bytes(b"")
    return "config.json", "empty"


DAMAGE = [_truncate, _cut_in_header, _config_not_json, _empty_safetensors, _empty_config]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__.strip("_") for d in DAMAGE])
def test_the_weights_check_names_a_damaged_preset_file_and_the_fix(weights_copy, damage):
    assert w.damage("efficientnet_lite0", "imagenet") is None  # the intact copy
    name, why = damage(weights_copy)
    message = w.damage("efficientnet_lite0", "imagenet")
    assert message and str(weights_copy / PRESET / name) in message and why in message, message
    assert "hamviz weights --model efficientnet_lite0" in message and "HAMVIZ_WEIGHTS" in message, message
    with pytest.raises(WeightsError, match="damaged"):
        w.check_files("efficientnet_lite0", "imagenet")


def _h5_bytes(tmp_path) -> bytes:
    import h5py
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f["conv1/kernel"] = np.arange(20000, dtype=np.float32)
    return (tmp_path / "w.h5").read_bytes()


@pytest.mark.parametrize("content,why", [
    (lambda tmp: b"<html>404 Not Found</html>", "not an HDF5 file"),
    (lambda tmp: _h5_bytes(tmp)[:30000], "truncated"),
    (lambda tmp: _h5_bytes(tmp), "md5"),  # whole, but not the file Keras publishes
], ids=["not-hdf5", "truncated-hdf5", "not-the-published-file"])
def test_a_damaged_keras_application_file_is_named(weights_copy, tmp_path, content, why):
    path = weights_copy / "keras" / w.keras_weights_file("resnet50")[0]
    path.write_bytes(content(tmp_path))
    message = w.damage("resnet50", "imagenet")
    assert message and str(path) in message and why in message, message
    assert "hamviz weights --model resnet50" in message, message


@pytest.mark.data  # reads the HAM10000 folder (DATA) directly
def test_the_book_stops_on_a_damaged_preset_before_any_chapter(weights_copy, tmp_path, monkeypatch):
    from hamviz import book
    from hamviz.book import scheduler
    started = []
    monkeypatch.setattr(scheduler, "run_in_child", lambda *a, **k: started.append(a) or {})
    _truncate(weights_copy)
    with pytest.raises(WeightsError) as info:
        book.build("tiny", tmp_path / "book", data_dir=DATA, only=["classifier"], download=False,
                   log=lambda *_: None)
    assert "model.safetensors" in str(info.value) and "truncated" in str(info.value) and not started


@pytest.mark.parametrize("damage", [_truncate, _config_not_json], ids=["truncated", "config-not-json"])
@pytest.mark.data  # reads the HAM10000 folder (DATA) directly
def test_validate_names_a_damaged_preset(weights_copy, damage, capsys):
    from hamviz.cli import main
    name, why = damage(weights_copy)
    assert main(["validate", "--profile", "tiny", "--data", str(DATA)]) == 2
    err = capsys.readouterr().err
    assert str(weights_copy / PRESET / name) in err and why in err and "hamviz weights" in err, err


# ------------------------------------------------------------------ 7. a stored model from another Keras version
def _from_newer_keras(path: Path) -> None:
    """Rewrite the stored model as a newer Keras would have written it: a layer argument this Keras does not
    know, and another Keras version in the store's manifest (the checksums made to match: an intact file)."""
    from hamviz import store
    model_file = path / "model.keras"
    with zipfile.ZipFile(model_file) as z:
        items = {n: z.read(n) for n in z.namelist()}
    config = json.loads(items["config.json"])
    config["config"]["layers"][-1]["config"]["quantization_mode_v9"] = "int2"
    items["config.json"] = json.dumps(config).encode()
    meta = json.loads(items["metadata.json"])
    meta["keras_version"] = "9.9.0"
    items["metadata.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(model_file, "w") as z:
        for name, data in items.items():
            z.writestr(name, data)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["keras"] = "9.9.0"
    manifest.setdefault("files", {})["model.keras"] = {"bytes": model_file.stat().st_size,
                                                       "sha256": store._sha256(model_file)}
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_model_from_another_keras_version_is_set_aside_and_trained_again(tmp_path):
    from hamviz import store
    from hamviz.models import keras
    from hamviz.training import train_or_load
    trained, said = [], []

    def train():
        trained.append(1)
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")]), {"loss": [1.0]}, \
            {"test": np.zeros(3)}

    def get():
        return train_or_load("tiny", "tiny", {"units": 2}, train, fingerprint="fp", split_id="split",
                             cache_root=tmp_path, log=said.append)

    first = get()
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["keras"] == keras.__version__ and "model.keras" in manifest["files"]
    assert store.damage(first.path) is None
    _from_newer_keras(first.path)
    assert store.damage(first.path) is None  # intact: it is the Keras version, not the file
    again = get()  # no raw TypeError: reported, set aside, treated as absent and trained again
    assert not again.loaded and len(trained) == 2 and again.key == first.key
    line = next(m for m in said if "set aside" in m)
    assert "9.9.0" in line and keras.__version__ in line and str(first.path) in line, line
    aside = [p for p in (tmp_path / "set-aside").rglob("manifest.json")]
    assert len(aside) == 1 and "9.9.0" in str(aside[0].parent)
    assert get().loaded and len(trained) == 2  # the one trained again loads


def test_an_unloadable_model_without_a_recorded_version_is_set_aside_too(tmp_path):
    """An artefact stored before the store recorded the Keras version (old manifest: files only) that does not
    load is named with the version in its model.keras, set aside and trained again."""
    from hamviz import store
    from hamviz.models import keras
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")])
    path = tmp_path / "models" / "old-key"
    store.save(path, model, {"loss": [1.0]}, {}, {})
    _from_newer_keras(path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(manifest["files"]))  # the old manifest format
    assert store.damage(path) is None
    from hamviz.models import ModelError, load  # what hamviz.load_model says of it: the versions, not a TypeError
    with pytest.raises(ModelError, match=f"does not load with Keras {keras.__version__}.*written by Keras 9.9.0"):
        load(path / "model.keras")
    said = []
    assert store.load(path, log=said.append) is None and not path.exists()
    assert "9.9.0" in said[-1] and keras.__version__ in said[-1], said
