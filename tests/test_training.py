"""hamviz.training and hamviz.store: strategies, configs, the fit loop's NaN handling, train-or-load over the
artefact store, and damaged artefacts (real data, tiny sizes)."""
import json

import numpy as np
import pytest

from hamviz import store
from hamviz.registry import STRATEGIES
from hamviz.training import TrainConfig, TrainingError, artefact_key, limit_rows, strategy_plan, train_classifier
from hamviz.view import prepare


def test_strategies_counts():
    labels = np.array([0] * 2000 + [1] * 300 + [2] * 50)
    idx, cw = strategy_plan("S1", labels, 3)
    assert len(idx) == 2350 and cw is None
    idx, cw = strategy_plan("S2", labels, 3)
    assert np.bincount(labels[idx]).tolist() == [2000, 1000, 1000] and cw is None
    idx, cw = strategy_plan("S3", labels, 3)
    assert np.bincount(labels[idx]).tolist() == [2000, 2000, 2000]
    idx, cw = strategy_plan("S4", labels, 3)
    assert len(idx) == 2350 and cw[2] > cw[1] > cw[0]
    idx, cw = strategy_plan("S5", labels, 3)
    assert np.bincount(labels[idx]).tolist() == [2000, 1000, 1000] and cw is not None
    assert set(STRATEGIES) == {"S1", "S2", "S3", "S4", "S5"}


@pytest.mark.parametrize("bad,words", [({"strategy": "S6"}, "strategy"), ({"optimizer": "adagrad"}, "optimizer"),
                                       ({"epochs": 0}, "epochs"), ({"learning_rate": 0}, "learning_rate"),
                                       ({"schedule": "exponential"}, "schedule")])
def test_bad_config(bad, words):
    with pytest.raises(TrainingError, match=words):
        TrainConfig(**bad)


def test_limit_rows_keeps_every_class():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    rows = np.arange(1000)
    kept = limit_rows(rows, labels, 200, seed=0)
    assert len(kept) == 200 and set(labels[kept]) == {0, 1, 2}


@pytest.fixture(scope="module")
def small(ham):
    return prepare(ham, 16, seed=1)


def test_train_saves_and_reloads(small, ham, tmp_path):
    split, cache = small.split, small.cache
    cfg = TrainConfig(model="small_cnn", image_size=16, strategy="S4", epochs=2, train_limit=400, seed=3)
    first = train_classifier(cfg, small, cache_root=tmp_path, log=lambda *_: None)
    assert not first.loaded and len(first.history["loss"]) <= 2
    assert {p: len(v) for p, v in first.proba.items()} == {"train": 400, "val": (split == "val").sum(),
                                                           "test": (split == "test").sum()}
    assert np.allclose(first.proba["test"].sum(1), 1, atol=1e-4)
    # test rows are exactly the test part of the split
    assert set(np.asarray(cache.image_ids)[first.rows["test"]]) == set(split.index[split == "test"])
    again = train_classifier(cfg, small, cache_root=tmp_path)
    assert again.loaded and again.key == first.key
    np.testing.assert_allclose(again.proba["test"], first.proba["test"])
    x = np.asarray(cache.images[first.rows["test"][:8]], np.float32)
    np.testing.assert_allclose(again.model.predict(x, verbose=0), first.proba["test"][:8], atol=1e-5)
    saved = json.loads((first.path / "config.json").read_text())
    assert saved["config"]["strategy"] == "S4" and saved["fingerprint"] == ham.fingerprint
    other = TrainConfig(**{**cfg.to_dict(), "strategy": "S1"})
    assert artefact_key("classifier", other, ham.fingerprint, small.split_id) != first.key
    assert first.key == artefact_key("classifier", cfg, ham.fingerprint, small.split_id)
    # a damaged artefact is named, removed and trained again (never loaded)
    model_file = first.path / "model.keras"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    said = []
    assert "SHA-256" in store.damage(first.path)
    third = train_classifier(cfg, small, cache_root=tmp_path, log=said.append)
    assert not third.loaded and any("damaged" in m and "model.keras" in m for m in said)
    np.testing.assert_allclose(third.proba["test"], first.proba["test"], atol=1e-5)  # same seed, same model
    assert store.damage(third.path) is None


def test_nan_loss_stops_with_a_clear_message(small, ham, tmp_path):
    cfg = TrainConfig(model="small_cnn", image_size=16, epochs=3, learning_rate=1e30, optimizer="sgd",
                      train_limit=300, schedule="none", augment={})
    with pytest.raises(TrainingError, match="NaN.*Lower learning_rate.*clipnorm"):
        train_classifier(cfg, small, cache_root=tmp_path, log=lambda *_: None)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("*"))


def test_balanced_selection_weighs_each_validation_image_by_its_class():
    """select_on: balanced_val_loss -> the validation set carries, per image, its class's balanced weight from
    the training part (n_train / (K * count)); the plain setting carries none."""
    from hamviz.training import _validation
    labels = np.array([0] * 80 + [1] * 15 + [2] * 5 + [0, 1, 2, 2])
    parts = {"train": np.arange(100), "val": np.arange(100, 104)}
    x = np.zeros((104, 8), np.float32)
    cfg = TrainConfig(select_on="balanced_val_loss")
    (xb, yb, wb), = list(_validation(cfg, x, labels, parts, 3, batch_size=8).as_numpy_iterator())
    np.testing.assert_allclose(wb, [100 / (3 * 80), 100 / (3 * 15), 100 / (3 * 5), 100 / (3 * 5)], rtol=1e-6)
    assert yb.shape == (4, 3)
    plain = list(_validation(TrainConfig(), x, labels, parts, 3, batch_size=8).as_numpy_iterator())[0]
    assert len(plain) == 2  # (x, y): no weights
    with pytest.raises(TrainingError, match="select_on"):
        TrainConfig(select_on="val_auc")


def test_fit_keeps_the_highest_validation_accuracy_when_asked():
    """select_on: val_accuracy (Doctor's checkpointing): the kept epoch is the validation accuracy's best, not the
    validation loss's."""
    from hamviz.models import keras
    from hamviz.training import fit
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), np.eye(2)[rng.integers(0, 2, 64)].astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy", metrics=["accuracy"])
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    h = fit(model, ds, ds.take(1), epochs=6, patience=6, label="t", learning_rate=0.05, monitor="val_accuracy")
    assert h["best_epoch"] == int(np.argmax(h["val_accuracy"])) + 1
    with pytest.raises(TrainingError, match="monitors"):
        fit(model, ds, ds, epochs=1, patience=1, label="t", learning_rate=0.05, monitor="val_auc")


def test_convergence_known_answers():
    from hamviz.training import convergence
    early = convergence({"val_loss": [1.0, 0.8, 0.85, 0.9], "best_epoch": 2})
    assert early == {"epochs": 4, "best_epoch": 2, "last_gain": pytest.approx((0.85 - 0.9) / 0.85),
                     "status": "stopped early"}
    assert convergence({"val_loss": [1.0, 0.8, 0.6], "best_epoch": 3})["status"] == "still improving"
    flat = convergence({"val_loss": [1.0, 0.8, 0.7990], "best_epoch": 3})
    assert flat["status"] == "levelling off" and flat["last_gain"] == pytest.approx(0.00125)
    assert convergence({"loss": [2.0, 1.0]})["best_epoch"] == 2  # no validation: the training loss
    assert convergence({"val_loss": [0.5], "best_epoch": 1})["status"] == "one epoch"  # nothing to judge by
    with pytest.raises(KeyError):
        convergence({"val_loss": [1.0]}, monitor="val_class_loss")


def test_convergence_table_names_the_runs_not_converged():
    from hamviz.training import convergence_table
    table, note = convergence_table({"a": {"val_loss": [1.0, 0.5], "best_epoch": 2},
                                     "b": {"val_loss": [1.0, 0.9, 0.95], "best_epoch": 2}})
    assert list(table["status"]) == ["still improving", "stopped early"]
    assert note.startswith("Not shown to have converged (a: ") and "50.0 %" in note and "b:" not in note
    _, note = convergence_table({"b": {"val_loss": [1.0, 0.9, 0.95], "best_epoch": 2}})
    assert note.startswith("Every run stopped early")
    _, note = convergence_table({"c": {"val_loss": [1.0], "best_epoch": 1}})
    assert note == "Not shown to have converged (c: one epoch only): more epochs would likely change its numbers."


def test_warm_head_trains_the_reference_head_on_features_and_copies_it():
    """Two stages with Bunu's Dense + Dropout head: the head (Dense, Dropout, BatchNorm, Dense) is trained on
    pooled features and every weighted layer of it lands in the full model under the same name."""
    from hamviz.models import build_model
    from hamviz.training import warm_head
    rng = np.random.default_rng(0)
    model = build_model("mobilenetv2", (32, 32, 3), 2, weights=None, trainable="frozen", head="reference", dense=8,
                        dropout=0.2, l2=1e-4)
    feats = rng.normal(size=(40, model.get_layer("head_pool").output.shape[-1])).astype("float32")
    labels = rng.integers(0, 2, 40)
    parts = {"train": np.arange(30), "val": np.arange(30, 40), "test": np.arange(30, 40)}
    cfg = TrainConfig(model="mobilenetv2", model_options={"weights": None, "head": "reference", "dense": 8,
                                                          "dropout": 0.2, "l2": 1e-4}, image_size=32, head_warmup=2)
    before = model.get_layer("head_dense").get_weights()[0].copy()
    history = warm_head(model, cfg, feats, labels, parts, 2)
    assert len(history["loss"]) == 2
    assert not np.allclose(before, model.get_layer("head_dense").get_weights()[0])  # trained, then copied
    bn = model.get_layer("head_bn").get_weights()
    assert not np.allclose(bn[2], 0.0)  # the BatchNorm's moving mean came from the features
    with pytest.raises(TrainingError, match="simple or reference"):
        warm_head(model, TrainConfig(model="vgg19", model_options={"head": "own_top"}, head_warmup=1), feats, labels,
                  parts, 2)
