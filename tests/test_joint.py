"""hamviz.joint and hamviz.contrast: the joint-model builder, its config from every profile, and the contrast /
boundary measures on synthetic images."""
import numpy as np
import pandas as pd
import pytest

from hamviz.chapters.joint import config as config_from_params
from hamviz.contrast import band_share, boundary_band, boundary_energy, contrast_verdict, error_by_bins
from hamviz.joint import JointConfig, joint_model
from hamviz.models import autoencoder, small_cnn
from hamviz.training import TrainingError


def test_joint_model_shapes_trainability_and_loss_weights():
    ae, clf = autoencoder((32, 32, 3), 3, (8, 16)), small_cnn((32, 32, 3))
    m, w = joint_model(ae, clf, recon_weight=0.25, train_autoencoder=False)
    out = m.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert out["class"].shape == (2, 7) and out["reconstruction"].shape == (2, 32, 32, 3)
    assert 0 <= out["reconstruction"].min() and out["reconstruction"].max() <= 1  # reconstruction / 255
    assert w == {"class": 1.0, "reconstruction": 0.25}
    trainable = {id(v) for v in m.trainable_weights}
    assert not any(id(v) in trainable for v in ae.weights)
    assert all(id(v) in trainable for v in clf.trainable_weights)
    m2, _ = joint_model(autoencoder((32, 32, 3), 3, (8, 16)), small_cnn((32, 32, 3)), train_classifier=False)
    assert len(m2.trainable_weights) == len(autoencoder((32, 32, 3), 3, (8, 16)).trainable_weights)


@pytest.fixture(scope="module")
def skewed16(ham, tmp_path_factory):
    """200 nv and 20 of each other class (62 % nv) of the real data at 16x16, with its grouped split."""
    import dataclasses

    from hamviz.view import prepare
    ids = pd.concat([ham.meta[ham.meta["dx"] == "nv"].head(200),
                     ham.meta[ham.meta["dx"] != "nv"].groupby("dx").head(20)])["image_id"].tolist()
    ds = dataclasses.replace(ham.subset(ids), fingerprint=f"{ham.fingerprint}-skewed-320")
    return prepare(ds, 16, seed=0, masks=False, cache_root=tmp_path_factory.mktemp("skewed16"))


@pytest.mark.parametrize("strategy, weighted, oversampled", [("S1", False, False), ("S3", False, True),
                                                              ("S4", True, False), ("S5", True, True)])
def test_joint_training_follows_the_classifier_strategy(skewed16, tmp_path, monkeypatch, strategy, weighted,
                                                         oversampled):
    """The joint model trains with its classifier's imbalance strategy: per-sample class weights only for S4/S5
    (it used to weight every strategy, S1 included), oversampled rows for S2/S3/S5; the joint chapter passes
    the main classifier's strategy on."""
    from types import SimpleNamespace

    import hamviz.joint as joint
    seen = {}

    class Stop(Exception):
        pass

    def fit(model, train_ds, val_ds, **kw):
        seen["weighted"] = len(train_ds.element_spec) == 3
        labels = np.concatenate([y["class"].numpy().argmax(1) for _, y, *_ in train_ds.take(kw["steps_per_epoch"])])
        seen["counts"] = np.bincount(labels, minlength=7)
        raise Stop

    monkeypatch.setattr(joint, "fit", fit)
    ae = SimpleNamespace(model=autoencoder((16, 16, 3), 3, (8, 16)), key="ae")
    clf = SimpleNamespace(model=small_cnn((16, 16, 3)), key="clf")
    cfg = JointConfig(image_size=16, epochs=1, train_limit=300, strategy=strategy, oversample_min=60,
                      augment={}, seed=0)
    with pytest.raises(Stop):
        joint.train_joint(cfg, ae, clf, skewed16, cache_root=tmp_path, log=lambda *_: None)
    assert seen["weighted"] is weighted
    nv = seen["counts"][skewed16.classes.index("nv")] / seen["counts"].sum()
    assert bool(nv < 0.45) is oversampled, seen["counts"]  # about 62 % nv unless oversampled
    P = {"init": "pretrained", "recon_weight": 0.0, "train_autoencoder": True, "train_classifier": True,
         "learning_rate": 1e-4, "epochs": 1, "patience": 1, "train_limit": None, "val_limit": None, "seed": 0}
    assert config_from_params(P, 3, 16, strategy, 60).strategy == strategy


@pytest.mark.parametrize("bad", [{"init": "warm"}, {"strategy": "S6"}, {"recon_weight": -1},
                                 {"train_autoencoder": False, "train_classifier": False}])
def test_bad_joint_config(bad):
    with pytest.raises(TrainingError):
        JointConfig(**bad)


@pytest.mark.parametrize("profile", ["tiny", "cpu", "paper"])
def test_config_from_every_profile(profile):
    from hamviz.params import chapter_params, load_profile
    P = chapter_params(load_profile(profile), "joint")
    size = chapter_params(load_profile(profile), "classifier")["image_size"]  # the main model's
    cfgs = [config_from_params(P, r, size) for r in P["ratios"]]
    assert [c.ratio for c in cfgs] == list(P["ratios"])
    assert all(c.image_size == size and c.epochs == P["epochs"] and c.seed == P["seed"]
               and c.recon_weight == P["recon_weight"] and c.init == P["init"] for c in cfgs)


def test_joint_model_keeps_what_the_classifier_froze():
    """A fine-tuned classifier's frozen layers (lower backbone layers, BatchNorm of pretrained weights) stay
    frozen when the joint model trains the classifier: switching the part on must not recurse into them."""
    from hamviz.models import keras
    ae, clf = autoencoder((32, 32, 3), 3, (8, 16)), small_cnn((32, 32, 3))
    frozen = [l for l in clf.layers if l.weights][:2] + [l for l in clf.layers
                                                          if isinstance(l, keras.layers.BatchNormalization)]
    for layer in frozen:
        layer.trainable = False
    n_before = len(clf.trainable_weights)
    m, _ = joint_model(ae, clf, train_autoencoder=True, train_classifier=True)
    assert not any(layer.trainable for layer in frozen)
    assert len(clf.trainable_weights) == n_before > 0
    trainable = {id(v) for v in m.trainable_weights}
    assert not any(id(v) in trainable for layer in frozen for v in layer.weights)


def disc(size=32, r=8):
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r ** 2


def test_boundary_energy_known_answers():
    m = disc()
    sharp = np.where(m[..., None], 40, 220).astype(np.uint8).repeat(3, -1)  # all gradient at the edge
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)  # gradient everywhere
    e = boundary_energy(np.stack([sharp, noise]), np.stack([m, m]), width=2)
    share = band_share(np.stack([m]), 2)[0]
    assert e[0] > 0.95  # a sharp disc: nearly all energy in the band
    assert abs(e[1] - share) < 0.1  # noise: about the band's share of pixels
    assert np.isnan(boundary_energy(sharp[None], np.zeros((1, 32, 32), bool))[0])
    band = boundary_band(m, 2)
    assert band.any() and band[16, 16] == 0 and band[0, 0] == 0


def test_error_by_bins_and_contrast_verdict():
    rng = np.random.default_rng(1)
    contrast = rng.uniform(0, 40, 400)
    labels = rng.integers(0, 3, 400)
    errors = {"contrast-driven": contrast < 10, "random": rng.random(400) < 0.25}
    table = error_by_bins(contrast, errors, 4)
    assert table["n"].sum() == 400 and len(table) == 4
    assert table["contrast-driven"].iloc[0] > 0.9 and table["contrast-driven"].iloc[-1] == 0
    verdict, lines = contrast_verdict(contrast, errors, labels, ["a", "b", "c"])
    assert verdict.loc["contrast-driven", "Mann-Whitney p (errors lower)"] < 1e-6
    assert verdict.loc["random", "Mann-Whitney p (errors lower)"] > 0.01
    # Holm over the two models: the smaller p doubled, the larger kept (and never below the smaller adjusted)
    raw = verdict["Mann-Whitney p (errors lower)"]
    assert verdict.loc["contrast-driven", "Holm-adjusted p"] == pytest.approx(2 * raw["contrast-driven"])
    assert verdict.loc["random", "Holm-adjusted p"] == pytest.approx(max(raw["random"], 2 * raw["contrast-driven"]))
    assert "Holm-adjusted" in lines[0] and "supports" not in " ".join(lines)  # the verdict is the replicated one


def test_contrast_gap_is_measured_within_class():
    """Class 0 has low contrast and every one of its images is wrong; within each class, errors and correct
    answers have the same contrast. Pooled over classes the errors look low-contrast (Mann-Whitney p tiny); the
    class-stratified gap is about 0. A model whose errors are the low-contrast half of every class (contrast
    uniform within +-2 of the class's level) has a gap of about -2 (the two halves' means are -1 and +1)."""
    from hamviz.contrast import contrast_gap
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 200)
    contrast = np.where(labels == 0, 5.0, 30.0) + rng.uniform(-2, 2, 600)
    confounded = (labels == 0) | (rng.random(600) < 0.3)  # class 0 all wrong, others wrong at random
    verdict, _ = contrast_verdict(contrast, {"m": confounded}, labels, ["a", "b", "c"])
    assert verdict.loc["m", "Mann-Whitney p (errors lower)"] < 1e-6
    groups = np.arange(600) // 2
    gap, draws, used = contrast_gap(contrast, [confounded], labels, groups, n_boot=200)
    assert used == [1, 2]  # class 0 has no correct answer: left out of every replicate and resample
    assert abs(gap[0]) < 0.5 and draws.shape == (1, 200)  # classes 1, 2: errors random within class
    driven = np.zeros(600, bool)
    for k in (0, 1, 2):  # the lower half of each class's contrast is wrong
        idx = np.flatnonzero(labels == k)
        driven[idx[contrast[idx] < np.median(contrast[idx])]] = True
    gap, draws, used = contrast_gap(contrast, [driven], labels, groups, n_boot=200)
    assert used == [0, 1, 2]
    assert -2.5 < gap[0] < -1.5  # uniform +-2 split at its median: means -1 and +1
    assert (draws < 0).all()


def test_parts_by_model_scores_each_model_on_its_own_rows():
    """The per-model train/val/test table (the reference's Tables 7-9): each artefact on its own rows, known
    answers on a made-up view (one model right everywhere, one wrong on its validation rows only)."""
    from types import SimpleNamespace

    from hamviz.chapters.joint import parts_by_model
    from hamviz.registry import CLASSES
    labels = np.arange(28) % 7
    view = SimpleNamespace(labels=labels, groups=np.arange(28))
    onehot = np.eye(7)[labels] * 0.9 + 0.1 / 7
    rows = {"train": np.arange(14), "val": np.arange(14, 21), "test": np.arange(21, 28)}
    right = SimpleNamespace(rows=rows, proba={p: onehot[r] for p, r in rows.items()})
    sub = {**rows, "train": np.arange(7)}  # a limited training subset
    wrong_val = SimpleNamespace(rows=sub, proba={"train": onehot[sub["train"]], "test": onehot[rows["test"]],
                                                 "val": np.roll(onehot[rows["val"]], 1, axis=1)})
    t = parts_by_model(view, {"alone": right, "joint 3x": wrong_val})
    assert list(t.index) == [(m, p) for m in ("alone", "joint 3x") for p in ("train", "val", "test")]
    assert t.loc[("alone", "val"), "balanced_accuracy"] == 1.0 and t.loc[("joint 3x", "val"), "balanced_accuracy"] == 0
    assert t.loc[("joint 3x", "train"), "n"] == 7 and t.loc[("alone", "train"), "n"] == 14
    assert t.loc[("joint 3x", "test"), "macro_f1"] == 1.0 and len(CLASSES) == 7
