"""hamviz.ensemble, hamviz.search and their model and plots: binary labels, the configurable CNN, random search,
combiners, thresholds, reports."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from hamviz import ensemble as E
from hamviz import plots
from hamviz.search import SEARCH_SPACE, random_search


# --------------------------------------------------------------------------------------------- labels
def test_binary_labels_from_names_and_ints():
    dx = ["mel", "nv", "bcc", "bkl", "akiec", "df", "vasc"]
    assert E.binary_labels(dx).tolist() == [1, 0, 1, 0, 1, 0, 0]
    assert E.binary_labels(np.arange(7)).tolist() == [1, 1, 0, 0, 1, 0, 0]  # CLASSES order
    assert E.binary_labels(pd.Series(dx)).tolist() == [1, 0, 1, 0, 1, 0, 0]
    assert E.binary_labels(dx, malignant=["mel"]).tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert E.binary_labels(dx).dtype == np.int64


def test_binary_labels_errors():
    with pytest.raises(ValueError, match="melanoma"):
        E.binary_labels(["mel"], malignant=["melanoma"])
    with pytest.raises(ValueError):
        E.binary_labels(["xyz"])
    with pytest.raises(ValueError):
        E.binary_labels([7])


# --------------------------------------------------------------------------------------------- model
def test_configurable_cnn_shapes_and_limits():
    from hamviz.models import ModelError, configurable_cnn, keras
    m = configurable_cnn((16, 16, 3), 2, conv_blocks=3, filters=4, dense_units=8, convs_per_block=1)
    out = m.predict(np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 3)).astype("float32"), verbose=0)
    assert out.shape == (5, 2)
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert [l.filters for l in m.layers if isinstance(l, keras.layers.Conv2D)] == [4, 8, 16]
    with pytest.raises(ModelError, match="too small"):
        configurable_cnn((16, 16, 3), conv_blocks=5)
    avg = configurable_cnn((16, 16, 3), conv_blocks=2, filters=4, dense_layers=2, dense_units=8,
                             pooling="avg", init="he_normal")
    kinds = [type(l) for l in avg.layers]
    assert keras.layers.AveragePooling2D in kinds and keras.layers.MaxPooling2D not in kinds
    assert sum(k is keras.layers.Dense for k in kinds) == 3
    with pytest.raises(ModelError, match="pooling"):
        configurable_cnn((16, 16, 3), pooling="median")
    with pytest.raises(ModelError, match="initiali"):
        configurable_cnn((16, 16, 3), init="nonsense_init")
    # the reference's winning shape: one convolution per pooling, 3x3 pools, constant filters; valid padding
    ref = configurable_cnn((64, 64, 3), 2, conv_blocks=3, filters=8, kernel=3, convs_per_block=1, pool_size=3,
                           filter_growth="constant", padding="valid", dense_units=8)
    assert [l.filters for l in ref.layers if isinstance(l, keras.layers.Conv2D)] == [8, 8, 8]
    # 64 -conv-> 62 -pool3-> 20 -conv-> 18 -pool3-> 6 -conv-> 4 -pool3-> 1
    assert [tuple(ref.get_layer(f"pool{b}").output.shape[1:3]) for b in (1, 2, 3)] == [(20, 20), (6, 6), (1, 1)]
    with pytest.raises(ModelError, match="at least 161x161"):  # 161 -> 159 -> 53 -> 51 -> 17 -> 15 -> 5 -> 3 -> 1
        configurable_cnn((64, 64, 3), conv_blocks=4, kernel=3, convs_per_block=1, pool_size=3, padding="valid")
    for bad, words in (({"pool_size": 1}, "pool_size"), ({"padding": "full"}, "padding"),
                       ({"filter_growth": "triple"}, "filter_growth")):
        with pytest.raises(ModelError, match=words):
            configurable_cnn((16, 16, 3), **bad)


# --------------------------------------------------------------------------------------------- search
def _fake(params):
    return {"val_auc": params["filters"] / 100 + params["dropout"] + 0.01 * params["conv_blocks"],
            "val_loss": 1.0}


def test_random_search_records_every_trial_sorted():
    table = random_search(_fake, n_trials=6, seed=1)
    assert len(table) == 6
    for k in SEARCH_SPACE:
        assert k in table.columns
    assert {"trial", "val_auc", "val_loss", "seconds", "error"} <= set(table.columns)
    assert table["val_auc"].is_monotonic_decreasing
    assert table["error"].isna().all()
    assert sorted(table["trial"]) == list(range(6))
    again = random_search(_fake, n_trials=6, seed=1)
    pd.testing.assert_frame_equal(table.drop(columns="seconds"), again.drop(columns="seconds"))
    other = random_search(_fake, n_trials=6, seed=2)
    assert not table.drop(columns="seconds").equals(other.drop(columns="seconds"))


def test_random_search_failed_trials_are_recorded():
    from hamviz.models import ModelError

    def train_fn(params):
        if params["pooling"] == "avg":
            raise ValueError("avg not allowed here")
        if params["conv_blocks"] == 1:
            raise ModelError("too small")
        return _fake(params)

    table = random_search(train_fn, n_trials=10, seed=0)
    assert len(table) == 10
    model_errors = table.loc[(table["conv_blocks"] == 1) & (table["pooling"] == "max"), "error"]
    assert len(model_errors) and (model_errors == "ModelError: too small").all()
    failed = table[(table["pooling"] == "avg") | (table["conv_blocks"] == 1)]
    assert len(failed) and len(failed) < 10
    assert table.loc[table["pooling"] == "avg", "error"].str.contains("ValueError: avg not allowed").all()
    assert failed["val_auc"].isna().all()
    assert table.tail(len(failed))["error"].notna().all()  # failed trials sort last
    ok = table[table["error"].isna()]
    assert ok["val_auc"].is_monotonic_decreasing and len(ok) == 10 - len(failed)


def test_random_search_other_exceptions_propagate():
    def buggy(params):
        raise KeyError("bug")
    with pytest.raises(KeyError):
        random_search(buggy, n_trials=2)


# --------------------------------------------------------------------------------------------- combiners
def test_combiners_known_answers():
    P = np.array([[0.9, 0.1], [0.8, 0.6], [0.2, 0.4]])
    assert E.majority_vote(P) == pytest.approx([2 / 3, 1 / 3])
    assert E.mean_prob(P) == pytest.approx([1.9 / 3, 1.1 / 3])
    assert E.weighted_mean(P, [1, 0, 0]) == pytest.approx(P[0])
    assert E.weighted_mean(P, [2, 2, 0]) == pytest.approx([0.85, 0.35])
    assert E.majority_vote(np.array([[0.9], [0.1]])) == pytest.approx([0.5])  # tie
    assert E.combine("vote", P) == pytest.approx(E.majority_vote(P))
    assert E.combine("mean", P) == pytest.approx(E.mean_prob(P))
    assert E.combine("accuracy-weighted", P, [1, 0, 0]) == pytest.approx(P[0])
    with pytest.raises(ValueError, match="fitted"):
        E.combine("stacking", P)
    with pytest.raises(ValueError, match="unknown combiner"):
        E.combine("median", P)
    with pytest.raises(ValueError):
        E.weighted_mean(P, [0, 0, 0])


def _synthetic(n, rng, good_noise=0.25):
    y = rng.integers(0, 2, n)
    good = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, good_noise, n), 0, 1)
    return y, np.vstack([rng.uniform(size=n), good, rng.uniform(size=n)])


def test_stacking_follows_the_informative_member():
    rng = np.random.default_rng(0)
    yv, Pv = _synthetic(400, rng)
    yt, Pt = _synthetic(400, rng)
    model = E.fit_stacking(Pv, yv)
    assert abs(model.coef_[0, 1]) > 5 * max(abs(model.coef_[0, 0]), abs(model.coef_[0, 2]))
    p = E.combine("stacking", Pt, E.fit_combiner("stacking", Pv, yv))
    assert E.binary_report(yt, p)["auc"] > 0.9
    w = E.fit_combiner("accuracy-weighted", Pv, yv)
    assert w[1] > w[0] and w[1] > w[2]
    assert E.fit_combiner("mean", Pv, yv) is None


def test_out_of_fold_stacking_does_not_flatter_itself():
    """30 pure-noise members on 120 validation images: stacking scored on the predictions it was fitted to
    finds structure that is not there (in-sample AUC well above 0.5); its cross-fitted, out-of-fold AUC is
    near chance, as its AUC on new images is. Mean and vote fit nothing: returned as they are."""
    rng = np.random.default_rng(1)
    y = np.tile([0, 1], 60)
    P, P_new = rng.uniform(size=(30, 120)), rng.uniform(size=(30, 120))
    fitted = E.fit_combiner("stacking", P, y)
    in_sample = E.binary_report(y, E.combine("stacking", P, fitted))["auc"]
    oof = E.binary_report(y, E.out_of_fold("stacking", P, y, seed=0))["auc"]
    new = E.binary_report(y, E.combine("stacking", P_new, fitted))["auc"]
    assert in_sample > 0.7 and abs(oof - 0.5) < 0.15 and abs(new - 0.5) < 0.15 and in_sample - oof > 0.2
    assert np.array_equal(E.out_of_fold("mean", P, y), E.mean_prob(P))
    assert np.array_equal(E.out_of_fold("vote", P, y), E.majority_vote(P))
    # grouped by lesion: the folds need enough lesions of each class, and the error says what to lower
    groups = np.repeat(np.arange(40), 3)  # 40 lesions of 3 images each: 20 benign, 20 malignant lesions
    yg = np.repeat(np.tile([0, 1], 20), 3)
    assert E.out_of_fold("accuracy-weighted", P, yg, groups).shape == (120,)
    assert E.out_of_fold("stacking", P[:, :12], yg[:12], groups[:12]).shape == (12,)  # 2 lesions each: 2 folds
    with pytest.raises(ValueError,
                       match=r"needs at least 2 benign and 2 malignant lesions in validation, got \[1, 1\]"):
        E.out_of_fold("stacking", P[:, :6], yg[:6], groups[:6])


# --------------------------------------------------------------------------------------------- thresholds
def test_paired_auc_difference():
    """Known answers: a perfect and a useless scorer differ by 0.5 with an interval away from 0; a scorer
    against itself by exactly 0; the interval resamples lesions (all images of a lesion together)."""
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    perfect, useless = y * 0.8 + 0.1, np.full(200, 0.5)
    d = E.paired_auc_difference(y, perfect, useless, n_boot=200)
    assert (d["auc_a"], d["auc_b"], d["difference"]) == (1.0, 0.5, 0.5) and d["low"] == d["high"] == 0.5
    noisy = np.clip(y * 0.2 + rng.uniform(size=200) * 0.8, 0, 1)
    same = E.paired_auc_difference(y, noisy, noisy, n_boot=200)
    assert same["difference"] == same["low"] == same["high"] == 0.0
    other = np.clip(y * 0.2 + rng.uniform(size=200) * 0.8, 0, 1)
    ungrouped = E.paired_auc_difference(y, noisy, other, n_boot=300, seed=1)
    grouped = E.paired_auc_difference(y, noisy, other, groups=np.arange(200) // 2, n_boot=300, seed=1)
    assert ungrouped["low"] < ungrouped["difference"] < ungrouped["high"] and grouped["n_boot"] == 300
    assert grouped["difference"] == ungrouped["difference"] and grouped["low"] != ungrouped["low"]
    low, high = E.auc_interval(y, noisy, n_boot=300)  # one scorer's interval holds its AUC; perfect: no width
    assert low < E.binary_report(y, noisy)["auc"] < high and E.auc_interval(y, perfect, n_boot=50) == (1.0, 1.0)
    # every resample's AUC is scikit-learn's with the resample's draw counts as weights (ties included)
    from hamviz.metrics import bootstrap_weights
    tied = np.round(other, 1)
    W = bootstrap_weights(200, 20, np.random.default_rng(3), np.arange(200) // 2)
    boots = E.bootstrap_aucs(y, np.stack([noisy, tied]), np.arange(200) // 2, n_boot=20, seed=3)
    assert boots.shape == (20, 2)
    assert np.allclose(boots, [[roc_auc_score(y, p, sample_weight=w) for p in (noisy, tied)] for w in W])
    with pytest.raises(ValueError, match="both benign and malignant"):
        E.paired_auc_difference(np.ones(4, int), np.full(4, 0.5), np.full(4, 0.5))
    with pytest.raises(ValueError, match="4 labels but 3 probabilities in p_b"):
        E.paired_auc_difference(y[:4], np.full(4, 0.5), np.full(3, 0.5))


def test_threshold_for_sensitivity():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1])
    p = np.array([.95, .9, .8, .7, .65, .6, .5, .4, .3, .2, .1, .05])
    for target in (0.5, 0.6, 0.95, 1.0):
        t = E.threshold_for_sensitivity(y, p, target)
        assert E.binary_report(y, p, t)["recall"] >= target
        higher = p[p > t]
        if len(higher):
            assert E.binary_report(y, p, higher.min())["recall"] < target
    assert E.threshold_for_sensitivity(y, p, 0.5) == pytest.approx(0.7)  # 3 of 6 malignant
    assert E.threshold_for_sensitivity(y, p, 1.0) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="no malignant"):
        E.threshold_for_sensitivity(np.zeros(4, int), np.linspace(0, 1, 4))


# --------------------------------------------------------------------------------------------- report
def test_binary_report_counts():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.5, 0.5]
    r = E.binary_report(y, p)
    # predictions at 0.5 (p >= 0.5): 1 1 0 1 0 0 1 1
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (3, 2, 2, 1)
    assert r["confusion"] == [[2, 2], [1, 3]]
    assert r["precision"] == pytest.approx(3 / 5)
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["specificity"] == pytest.approx(2 / 4)
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["balanced_accuracy"] == pytest.approx(0.625)
    assert r["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert 0 < r["auc"] < 1
    json.dumps(r)
    assert math.isnan(E.binary_report([1, 1], [0.2, 0.8])["auc"])
    assert E.binary_report(y, p, 0.8)["tp"] == 1


# --------------------------------------------------------------------------------------------- incremental
def test_incremental_weak_member_makes_it_worse():
    rng = np.random.default_rng(3)
    yv, yt = rng.integers(0, 2, 300), rng.integers(0, 2, 300)

    def good(y):
        return np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.2, len(y)), 0, 1)

    Pv = np.vstack([rng.uniform(size=300), good(yv)])  # noise first: the default order must fix it
    Pt = np.vstack([rng.uniform(size=300), good(yt)])
    table = E.incremental(Pv, yv, Pt, yt, ["noise", "good"], combiner="mean")
    assert len(table) == 2
    assert table["added"].tolist() == ["good", "noise"]
    assert table["test_auc"].iloc[-1] < table["test_auc"].iloc[0]
    assert {"test_balanced_accuracy", "threshold", "test_sensitivity", "test_specificity"} <= set(table)
    assert (table["test_sensitivity"] > 0.8).all()  # validation threshold aims at 0.95 sensitivity
    for name in E.COMBINERS:
        t = E.incremental(Pv, yv, Pt, yt, ["noise", "good"], combiner=name, order=["good", "noise"])
        assert len(t) == 2 and t["members"].iloc[-1] == "good, noise"
    fig = plots.ensemble_growth(table)  # the figure: one line per metric, the member added at each step on x
    assert [list(d.x) for d in fig.data[:1]] == [["1: +good", "2: +noise"]]
    assert [d.name for d in fig.data] == ["AUC", "balanced accuracy", "sensitivity", "specificity"]
    assert list(fig.data[0].y) == table["test_auc"].tolist()
    with pytest.raises(ValueError, match="test_auc"):
        plots.ensemble_growth(table.drop(columns="test_auc"))


# --------------------------------------------------------------------------------------------- plots
def test_plots():
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.8, 0.4, 0.6, 0.3, 0.2])
    fig = plots.binary_roc(y, {"a": p, "ensemble": 1 - p})
    assert len(fig.data) == 3 and "AUC" in fig.data[0].name
    r = E.binary_report(y, p)
    cm = plots.confusion_2x2(r)
    assert list(cm.data[0].y) == ["benign", "malignant"]
    assert np.asarray(cm.data[0].z).shape == (2, 2)
    assert str(r["tp"]) in cm.data[0].text[1][1]


def test_optimiser_comparison_and_search_trials_get_equal_budgets(monkeypatch):
    """The optimiser comparison and the random-search trials train every run for exactly its epochs at a constant
    learning rate (their epochs used to be maxima: early stopping with the chapter's patience and a plateau
    schedule could give each optimiser a different budget); ensemble members keep early stopping."""
    from types import SimpleNamespace

    from hamviz.chapters import explain
    cfgs = []

    def train_classifier(cfg, b, log=print):
        cfgs.append(cfg)
        rows = {"val": np.arange(4), "test": np.arange(4, 8)}
        proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
        return SimpleNamespace(rows=rows, proba={"val": proba, "test": proba}, seconds=1.0,
                               history={"loss": [1.0] * cfg.epochs, "val_loss": [1.0] * cfg.epochs})

    monkeypatch.setattr(explain, "train_classifier", train_classifier)
    b = SimpleNamespace(size=16, labels=np.array([0, 1, 0, 1] * 2), groups=np.arange(8))
    P = {"optimizer": "adam", "learning_rate": 1e-3, "clipnorm": None, "member_epochs": 6, "patience": 2,
         "batch_size": 8, "train_limit": None, "seed": 0, "optimizers": ["sgd", "adam"], "optimizer_epochs": 5,
         "search_epochs": 4, "search_trials": 2, "augment": {}}
    table = explain.optimizer_comparison(b, P, log=lambda *_: None)
    explain.search(b, P, log=lambda *_: None)
    explain.member(b, "small_cnn", {}, P, log=lambda *_: None)
    *fair, ensemble_member = cfgs
    assert [c.optimizer for c in fair[:2]] == ["sgd", "adam"] and table["epochs"].tolist() == [5, 5]
    assert len(fair) == 4 and all(c.schedule == "none" and c.patience >= c.epochs for c in fair)
    assert [c.epochs for c in fair] == [5, 5, 4, 4]
    assert ensemble_member.epochs == 6 and ensemble_member.patience == 2 and ensemble_member.schedule == "plateau"
    # the profile's search space (the paper profile: the reference's one convolution per 3x3 pool, constant
    # filters) reaches the trials' models; unset optimiser and learning rate fall back to the chapter's
    cfgs.clear()
    space = {"conv_blocks": [3], "filters": [8], "convs_per_block": [1], "pool_size": [3],
             "filter_growth": ["constant"], "padding": ["valid"]}
    trials = explain.search(b, {**P, "search_space": space, "search_trials": 1}, log=lambda *_: None)
    (cfg,) = cfgs
    assert cfg.model == "configurable_cnn" and cfg.optimizer == "adam" and cfg.learning_rate == 1e-3
    assert cfg.model_options == {"conv_blocks": 3, "filters": 8, "convs_per_block": 1, "pool_size": 3,
                                 "filter_growth": "constant", "padding": "valid"}
    opts, opt, lr = explain.member_options(trials.iloc[0])
    assert opts == cfg.model_options and (opt, lr) == ("adam", 1e-3)
    # balancing: class weights (S4) by default; "oversample" repeats the malignant images to the benign count (S3)
    assert cfg.strategy == "S4"
    cfgs.clear()
    explain.member(b, "small_cnn", {}, {**P, "balancing": "oversample"}, log=lambda *_: None)
    assert cfgs[0].strategy == "S3"
    # a transfer member: its own image size, epochs and two stages; the rest are network options
    cfgs.clear()
    sizes = []
    ch = SimpleNamespace(view=lambda size=None: sizes.append(size) or SimpleNamespace(
        size=size or 16, labels=np.arange(8) % 7, classes=list("abcdefg"),
        relabel=lambda y, tag, classes: SimpleNamespace(size=size or 16, labels=y)))
    name, _ = explain.transfer_member(ch, {"model": "inceptionv3", "weights": None, "trainable": 150, "head": "simple",
                                           "image_size": 80, "epochs": 3, "head_warmup": 2},
                                      {**P, "malignant": ["a", "b"]}, log=lambda *_: None)
    (cfg,) = cfgs
    assert name == "inceptionv3" and sizes == [80] and (cfg.image_size, cfg.epochs, cfg.head_warmup) == (80, 3, 2)
    assert cfg.model_options == {"weights": None, "trainable": 150, "head": "simple"}


def test_main_member_sums_the_malignant_classes_and_checks_their_names():
    from types import SimpleNamespace

    from hamviz.chapters.explain import main_member
    from hamviz.registry import CLASSES
    rows = {"val": np.arange(2), "test": np.arange(2, 4)}
    p = np.full((2, 7), 0.1)
    p[:, CLASSES.index("nv")] = 0.4
    t = SimpleNamespace(rows=rows, proba={"val": p, "test": p}, model=None, history={}, config=None, key="k",
                        path=None, seconds=0.0)
    m = main_member(t, SimpleNamespace(rows=rows), ["mel", "bcc"])
    np.testing.assert_allclose(m.proba["test"], [[0.8, 0.2]] * 2)
    with pytest.raises(ValueError, match="unknown class name"):
        main_member(t, SimpleNamespace(rows=rows), ["melanoma"])
