"""Pretrained backbones through Keras-Hub presets (the shared EfficientNet-Lite0 preset, read-only): the right
ImageNet answer through hamviz's own loading and preprocessing, pretrained features beating random ones in a
linear probe, Grad-CAM on the nested backbone, saving and loading, and clear errors for a missing or damaged
preset (before anything is built)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hamviz import ParamsError
from hamviz.registry import HUB_BACKBONES

PRESET = HUB_BACKBONES["efficientnet_lite0"][0]
SHARED = Path(os.environ["HAMVIZ_WEIGHTS"])
pytestmark = pytest.mark.skipif(not (SHARED / PRESET / "config.json").is_file(),
                                reason=f"the EfficientNet-Lite0 preset is not in {SHARED}")

# ImageNet-1k class indices of the cats scikit-image's chelsea may be
EGYPTIAN_CAT, TIGER_CAT, TABBY = 285, 282, 281


@pytest.fixture
def offline(monkeypatch):
    """No hub can be reached (as on the development machines), whatever the machine running the tests has."""
    import hamviz.weights as w
    monkeypatch.setattr(w, "reachable", lambda host: False)


def test_imagenet_answer_on_a_natural_image():
    from PIL import Image
    from skimage import data

    from hamviz.models import build_model
    cat = np.asarray(Image.fromarray(data.chelsea()).resize((224, 224), Image.Resampling.BICUBIC), np.float32)
    model = build_model("efficientnet_lite0", (224, 224, 3), 1000, weights="imagenet", head="preset")
    assert model.layers[1].name == "preprocess" and model.get_layer("backbone") is not None
    top3 = np.argsort(-model.predict(cat[None], verbose=0)[0])[:3]
    assert set(top3) <= {EGYPTIAN_CAT, TIGER_CAT, TABBY} and top3[0] == EGYPTIAN_CAT, top3


def _probe_sets(ham, tmp_path, per_class=(60, 30), size=64):
    """Fixed, lesion-disjoint train/test images (up to 60 / 30 per class from the grouped split, seed 42)
    decoded at ``size`` into a temporary cache."""
    from hamviz.cache import build_cache
    from hamviz.splits import get_split
    split = get_split(ham, seed=42)
    meta = ham.meta.assign(part=split.reindex(ham.meta["image_id"]).to_numpy())
    rng = np.random.default_rng(0)
    ids = {}
    for part, n in zip(("train", "test"), per_class):
        ids[part] = [i for _, g in meta[meta["part"] == part].groupby("dx")
                     for i in rng.choice(g["image_id"].to_numpy(), min(n, len(g)), replace=False)]
    ds = dataclasses.replace(ham.subset(ids["train"] + ids["test"]), fingerprint=f"{ham.fingerprint}-probe")
    cache = build_cache(ds, size, cache_root=tmp_path, masks=False)
    label = ds.meta.set_index("image_id")["label"]
    out = {}
    for part in ("train", "test"):
        rows = cache.rows(ids[part])
        out[part] = (np.asarray(cache.images[rows]), label[ids[part]].to_numpy())
    return out


def test_pretrained_features_beat_random_ones_in_a_linear_probe(ham, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from hamviz.models import build_model, keras
    sets = _probe_sets(ham, tmp_path)
    scores = {}
    for weights in ("imagenet", None):
        keras.utils.set_random_seed(0)
        m = build_model("efficientnet_lite0", (64, 64, 3), 7, weights=weights, trainable="frozen")
        features = keras.Model(m.input, m.get_layer("head_pool").output)
        (xtr, ytr), (xte, yte) = sets["train"], sets["test"]
        probe = LogisticRegression(max_iter=2000, class_weight="balanced").fit(features.predict(xtr, verbose=0), ytr)
        p = probe.predict_proba(features.predict(xte, verbose=0))
        scores[weights] = (balanced_accuracy_score(yte, p.argmax(1)), roc_auc_score(yte, p, multi_class="ovr"))
    (ba_pre, auc_pre), (ba_rand, auc_rand) = scores["imagenet"], scores[None]
    assert auc_pre > auc_rand + 0.05 and ba_pre > ba_rand + 0.08, scores


def test_finetuning_keeps_batchnorm_frozen_and_gradcam_finds_the_nested_backbone():
    from hamviz import gradcam
    from hamviz.models import build_model, keras
    m = build_model("efficientnet_lite0", (64, 64, 3), 7, weights="imagenet", trainable=30)
    bb = m.get_layer("backbone")
    trainable = [l for l in bb.layers if l.trainable]
    assert trainable and all(l in bb.layers[-30:] for l in trainable)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in trainable)
    scratch = build_model("efficientnet_lite0", (64, 64, 3), 7, weights=None, trainable="all")
    assert any(isinstance(l, keras.layers.BatchNormalization) and l.trainable
               for l in scratch.get_layer("backbone").layers)  # random init: BatchNorm learns
    assert gradcam.default_cam_layer(m) == "backbone"
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    cam, proba = gradcam.predict_with_cam(m, x)
    assert cam.shape == (3, 64, 64) and proba.shape == (3, 7)
    np.testing.assert_allclose(proba, m.predict(x, verbose=0), atol=1e-5)
    # activation maps descend into the nested backbone: its own layers, first to last, as "backbone/<layer>"
    layers = gradcam.default_layers(m, 5)
    assert len(layers) == 5 and all(n.startswith("backbone/") for n in layers)
    acts = gradcam.activations(m, x[0], layers)
    sizes = [a.shape[0] for a in acts.values()]
    assert sizes[0] == 32 and sizes[-1] == 2 and sizes == sorted(sizes, reverse=True)  # stride 2 ... 32
    # the last one is the backbone's output, which the outer model computes in one piece: the same numbers
    whole = gradcam.activations(m, x[0], ["backbone"])["backbone"]
    np.testing.assert_allclose(acts[layers[-1]], whole, rtol=1e-4, atol=1e-4)
    with pytest.raises(gradcam.ExplainError, match="no nested model 'head_pool'"):
        gradcam.resolve_layer(m, "head_pool/x")


def test_saved_model_loads_in_a_fresh_process(tmp_path):
    from hamviz.models import build_model
    m = build_model("efficientnet_lite0", (32, 32, 3), 7, weights="imagenet")
    m.save(tmp_path / "model.keras")
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", m.predict(x, verbose=0))
    code = ("import sys, numpy as np, hamviz; d = sys.argv[1]; m = hamviz.load_model(d + '/model.keras'); "
            "print(float(np.abs(m.predict(np.load(d + '/x.npy'), verbose=0) - np.load(d + '/y.npy')).max()))")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], text=True, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.split()[-1]) < 1e-5


def test_missing_preset_is_named_with_the_fix_before_anything_is_built(tmp_path, monkeypatch, offline):
    from hamviz.models import build_model
    from hamviz.weights import WeightsError
    monkeypatch.setenv("HAMVIZ_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(WeightsError) as err:
        build_model("efficientnet_lite0", (64, 64, 3), 7, weights="imagenet")
    msg = str(err.value)
    for words in (str(tmp_path / "empty" / PRESET), "hf://timm/efficientnet_lite0.ra_in1k", "HAMVIZ_WEIGHTS",
                  "config.json + model.safetensors", "no connection"):
        assert words in msg, (words, msg)
    with pytest.raises(WeightsError, match="not a Keras-Hub preset folder"):
        build_model("efficientnet_lite0", (64, 64, 3), 7, weights=str(tmp_path))
    with pytest.raises(WeightsError, match="cannot be downloaded"):
        build_model("efficientnet_lite0", (64, 64, 3), 7, weights="hf://someone/else")
    # the profile check says the same, before any chapter runs
    from hamviz.params import load_profile
    with pytest.raises(ParamsError, match="chapters.classifier: No efficientnet_lite0 preset"):
        load_profile("tiny", {"chapters": {"classifier": {"model": "efficientnet_lite0", "weights": "imagenet"}}})


@pytest.mark.parametrize("damage", ["truncated weights", "broken config"])
def test_damaged_preset_is_named(tmp_path, damage):
    from hamviz.models import ModelError, build_model
    folder = tmp_path / PRESET
    shutil.copytree(SHARED / PRESET, folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    if damage == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    else:
        (folder / "config.json").write_text(json.dumps({"architecture": "efficientnet_lite0"})[:-3])
    with pytest.raises(ModelError) as err:
        build_model("efficientnet_lite0", (64, 64, 3), 7, weights=str(folder))
    assert str(folder) in str(err.value) and "Copy the preset folder again" in str(err.value)


def test_two_stage_training_warms_the_head_on_cached_features_and_scores_with_flips(ham, tmp_path):
    from hamviz.training import TrainConfig, TrainingError, train_classifier
    from hamviz.view import prepare
    ids = ham.meta.groupby("dx").head(12)["image_id"].tolist()
    ds = dataclasses.replace(ham.subset(ids), fingerprint=f"{ham.fingerprint}-two-stage-84")
    view = prepare(ds, 32, seed=0, masks=False, cache_root=tmp_path)
    options = {"weights": "imagenet", "trainable": 10, "head": "simple", "dropout": 0.2}
    cfg = TrainConfig(model="efficientnet_lite0", model_options=options, image_size=32, strategy="S4", epochs=1,
                      head_warmup=2, tta_flips=True, augment={}, schedule="none", seed=1)
    said = []
    t = train_classifier(cfg, view, cache_root=tmp_path, log=said.append)
    assert len(t.history["head_loss"]) == 2 and len(t.history["loss"]) == 1
    assert any("features" in m for m in said) and (tmp_path / "features").is_dir()  # warmed on cached features
    test = view.images[t.rows["test"]]
    by_hand = np.mean([t.model.predict(v, verbose=0) for v in (test, test[:, :, ::-1], test[:, ::-1])], axis=0)
    np.testing.assert_allclose(t.proba["test"], by_hand, atol=1e-5)  # stored probabilities average the flips
    train = view.images[t.rows["train"]]  # ... of val and test only: the training part is scored once
    np.testing.assert_allclose(t.proba["train"], t.model.predict(train, verbose=0), atol=1e-5)
    from hamviz.training import warm_head  # a backbone's own fully connected top has no pooled-feature stage
    own_top = dataclasses.replace(cfg, model_options={**options, "head": "own_top"})
    with pytest.raises(TrainingError, match="head: simple or reference"):
        warm_head(t.model, own_top, np.zeros((4, 8)), np.zeros(4, int), {"train": np.arange(4)}, 7)
