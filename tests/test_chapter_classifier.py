"""hamviz.chapters.classifier: configs from params, the leak table, and the external test set path."""
import numpy as np
import pandas as pd
import pytest
from conftest import write_isic2018

from hamviz.chapters.classifier import ZHANG_SPLIT, config, external, leak_audit, side_by_side
from hamviz.models import small_cnn
from hamviz.params import ParamsError, chapter_params, load_profile
from hamviz.training import TrainConfig


def test_config_from_profiles():
    cpu = config(chapter_params(load_profile("cpu"), "classifier"))
    assert cpu.model == "efficientnet_lite0" and cpu.image_size == 128  # the classifier section's own size
    assert cpu.model_options["weights"] == "imagenet" and cpu.model_options["head"] == "simple"
    assert cpu.head_warmup == 10 and cpu.tta_flips and cpu.select_on == "balanced_val_loss"
    assert load_profile("cpu")["image_size"] == 64  # the other chapters' from-scratch models keep theirs
    paper = config(chapter_params(load_profile("paper"), "classifier"))
    assert paper.model == "inceptionv3" and paper.image_size == 128 and paper.epochs == 35
    assert paper.model_options["weights"] == "imagenet" and paper.model_options["l2"] == 0.0001
    assert config(chapter_params(load_profile("cpu"), "classifier"), strategy="S2").strategy == "S2"


def _known_leak_views():
    """Three views over one 28-image test set (the 'image' view's test part is the same images): the siblings
    view's test part is every other image, and half of those have a shot in training."""
    from types import SimpleNamespace as NS
    y = np.repeat(np.arange(7), 4)
    groups = np.arange(len(y)) // 2
    grouped = NS(labels=y, groups=groups, rows={"test": np.arange(len(y))})
    sib = NS(labels=y, groups=groups, rows={"test": np.arange(0, len(y), 2), "test_leaked": np.arange(0, len(y), 4)})
    zhang = NS(labels=y, groups=groups, rows={"test": np.arange(0, len(y), 2)})  # two of each class
    return {"grouped": grouped, "siblings": sib, "image": grouped, "zhang": zhang}


def test_leak_audit_table():
    """Known answer: the grouped arm misses every vasc image (balanced accuracy 6/7), the arms with the leak none
    (1.0): the inflation is 100/7 points in each of two replicates, paired (on the shared test images) and
    unpaired, and its interval holds it."""
    from types import SimpleNamespace as NS
    views = _known_leak_views()
    y = views["grouped"].labels
    perfect = np.eye(7)[y]
    miss = perfect.copy()
    miss[y == 6] = np.eye(7)[0]
    arm = {"grouped": miss, "siblings": perfect[::2], "image": perfect, "zhang": np.eye(7)[np.zeros(14, int)]}
    models = {k: [NS(proba={"test": p}, config=NS(seed=s)) for s in (3, 4)] for k, p in arm.items()}
    table, record = leak_audit(views, models, n_boot=200)
    assert table.loc["balanced_accuracy", "paired inflation (points)"] == pytest.approx(100 / 7)
    assert table.loc["balanced_accuracy", "unpaired inflation (points)"] == pytest.approx(100 / 7)
    assert table.loc["accuracy", "lesion-grouped split"] == pytest.approx(6 / 7)
    assert table.loc["accuracy", "grouped: shared test images"] == pytest.approx(6 / 7)
    assert table.loc["accuracy", "siblings in training: those images"] == pytest.approx(1.0)
    assert record["balanced_accuracy"]["per_seed"] == pytest.approx({3: 100 / 7, 4: 100 / 7})
    assert record["balanced_accuracy"]["draws"].shape == (2, 200)
    low, high = (float(v) for v in table.loc["balanced_accuracy", "paired 95 % interval"].strip("[]").split(","))
    assert low - 0.05 <= 100 / 7 <= high + 0.05  # shown to one decimal
    # Zhang's split: its own 14 test images, all called akiec: accuracy 2/14, balanced accuracy 1/7 (akiec's recall
    # 1, the rest 0), so it is 6/7 - 1/7 = 5/7 below the grouped split's balanced accuracy
    assert table.loc["accuracy", ZHANG_SPLIT] == pytest.approx(2 / 14)
    assert table.loc["balanced_accuracy", "Zhang's split minus lesion-grouped (points)"] == pytest.approx(-500 / 7)
    zlow, zhigh = (float(v) for v in table.loc["balanced_accuracy", "its 95 % interval"].strip("[]").split(","))
    assert zlow <= -500 / 7 + 0.05 and zhigh < 0


def _lesion_view(metadata):
    """A PreparedView over the real metadata (no images) with the lesion-grouped split of seed 0, split id "sid"."""
    from types import SimpleNamespace as NS

    from hamviz.splits import make_split
    from hamviz.view import PreparedView
    split = make_split(metadata, seed=0)
    parts = split.reindex(metadata["image_id"]).to_numpy()
    rows = {p: np.flatnonzero(parts == p) for p in ("train", "val", "test")}
    return PreparedView(None, NS(image_ids=list(metadata["image_id"])), metadata["dx"].factorize()[0],
                        metadata["lesion_id"].to_numpy(), split, "sid", True, rows)


def test_siblings_in_training_on_real_lesions(metadata):
    """The paired leak design on the real metadata and lesion-grouped split: one shot per test lesion stays in
    test, its other shots move to training, as many training images leave, validation is untouched."""
    from hamviz.view import PreparedView
    view = _lesion_view(metadata)
    split, rows = view.split, view.rows
    sib = view.with_siblings_in_training(seed=1)
    g = view.groups
    assert set(sib.rows["test"]) <= set(rows["test"])
    assert len(sib.rows["test"]) == len(set(g[rows["test"]])) == len(set(g[sib.rows["test"]]))  # one per lesion
    assert len(sib.rows["train"]) == len(rows["train"]) and (sib.rows["val"] == rows["val"]).all()
    assert not set(sib.rows["train"]) & set(sib.rows["test"])
    leaked = set(g[sib.rows["test_leaked"]])
    multi = {les for les, n in pd.Series(g[rows["test"]]).value_counts().items() if n > 1}
    assert leaked == multi and leaked <= set(g[sib.rows["train"]]) and len(leaked) > 50
    assert not (set(g[sib.rows["test"]]) - leaked) & set(g[sib.rows["train"]])  # the rest stay lesion-disjoint
    assert (sib.split_id == "sid|siblings-in-training-1"
            and (sib.split[metadata["image_id"][sib.rows["test"]]] == "test").all())
    assert (view.with_siblings_in_training(seed=1).rows["test"] == sib.rows["test"]).all()
    with pytest.raises(ValueError, match="lesion-grouped"):
        PreparedView(None, view.cache, view.labels, g, split, "sid", False, rows).with_siblings_in_training()


def test_single_image_holdout_is_zhangs_arithmetic(metadata):
    """Zhang's split as hamviz reads it, on the real metadata: 1,103 validation and 1,103 test images, all of
    lesions photographed once, the other 7,809 in training (Zhang's three numbers), no lesion in two parts, every
    class in both held-out parts, drawn again the same with the same seed."""
    view = _lesion_view(metadata)
    z = view.with_single_image_holdout(seed=42)
    assert {p: len(r) for p, r in z.rows.items()} == {"train": 7809, "val": 1103, "test": 1103}
    shots = metadata["lesion_id"].map(metadata["lesion_id"].value_counts()).to_numpy()
    assert (shots[z.rows["val"]] == 1).all() and (shots[z.rows["test"]] == 1).all()
    assert sorted(np.concatenate(list(z.rows.values()))) == list(range(len(metadata)))
    g = view.groups
    assert not set(g[z.rows["train"]]) & (set(g[z.rows["val"]]) | set(g[z.rows["test"]]))
    assert len(set(view.labels[z.rows["test"]])) == len(set(view.labels[z.rows["val"]])) == 7
    assert (z.split[metadata["image_id"][z.rows["test"]]] == "test").all()
    assert z.split_id == "sid|single-image-holdout-0.2-42"
    assert (view.with_single_image_holdout(seed=42).rows["test"] == z.rows["test"]).all()
    assert not (view.with_single_image_holdout(seed=43).rows["test"] == z.rows["test"]).all()
    with pytest.raises(ValueError, match="fraction"):
        view.with_single_image_holdout(fraction=0.6)
    lone_df = metadata.index[~metadata["lesion_id"].duplicated(keep=False) & (metadata["dx"] == "df")]
    few = _lesion_view(metadata.drop(lone_df[1:]).reset_index(drop=True))
    with pytest.raises(ValueError, match="at least two single-image lesions of every class"):
        few.with_single_image_holdout()  # one df lesion photographed once: it cannot be in both held-out parts


def test_external_test_set(tmp_path, metadata, data_dir):
    write_isic2018(tmp_path / "isic", data_dir / "images", metadata.groupby("dx").head(2))

    class FakeTrained:
        model = small_cnn((32, 32, 3), 7)
        config = TrainConfig(image_size=32)

    # HAM10000's own images: kept (external_overlap: keep), and the record says none was independent
    P = {"external_test": str(tmp_path / "isic"), "resize": "stretch", "on_corrupt": "error", "seed": 0,
         "external_overlap": "keep"}
    ev, ds = external(P, FakeTrained(), n_boot=50)
    assert len(ds) == 14 and ev["headline"]["n"] == 14
    assert ev["external_overlap"]["independent"] == 0 and ev["external_overlap"]["by_image_id_count"] == 14
    assert sum(map(sum, ev["confusion"])) == 14


def test_side_by_side_shows_intervals_where_there_are_some():
    ham = {"headline": {"n": 100.0, "accuracy": 0.8, "balanced_accuracy": 0.6, "macro_f1": 0.5, "macro_auc": 0.9},
           "ci": {"balanced_accuracy": {"value": 0.6, "low": 0.55, "high": 0.66}}}
    ext = {"headline": {"n": 70.0, "accuracy": 0.7, "balanced_accuracy": 0.5, "macro_f1": 0.4, "macro_auc": None}}
    t = side_by_side({"HAM10000": ham, "external": ext})
    assert list(t.index) == ["HAM10000", "external"] and t.loc["external", "n"] == 70
    assert t["n"].dtype.kind == "i"  # evaluate() records n as a float: shown as a count, not "70.0"
    # columns carry the field's names, not the record's keys
    assert list(t.columns) == ["n", "accuracy", "balanced accuracy", "macro-F1", "macro AUC"]
    assert t.loc["HAM10000", "balanced accuracy"] == "0.600 [0.550, 0.660]"
    assert t.loc["HAM10000", "accuracy"] == "0.800" and t.loc["external", "macro AUC"] == "n/a"


def test_grid_trains_each_model_with_its_own_settings(monkeypatch):
    """grid.settings gives a grid model the reference's own protocol (the strategy study trained its CNN with
    Adam and a step schedule, batch 16, 50 epochs, and its transfer models with RMSprop, 30 epochs): each
    model's configs carry its settings, the others keep the main model's."""
    from types import SimpleNamespace

    from hamviz.chapters import classifier
    seen = []
    monkeypatch.setattr(classifier, "train_classifier", lambda cfg, s, log=print: seen.append(cfg) or cfg)
    monkeypatch.setattr(classifier, "_grid_row", lambda s, t, model, strategy: {"model": model,
                                                                                 "strategy": strategy})
    P = chapter_params(load_profile("cpu"), "classifier")
    P = {**P, "grid": {"models": ["small_cnn", "resnet50"], "strategies": ["S1", "S3"], "image_size": 32,
                       "epochs": 7, "settings": {"small_cnn": {"schedule": "step", "batch_size": 16, "epochs": 50,
                                                               "optimizer": "adam", "learning_rate": 1e-3},
                                                 "resnet50": {"optimizer": "rmsprop", "learning_rate": 1e-5,
                                                              "l2": 0.0}}}}
    ch = SimpleNamespace(view=lambda size=None, **kw: SimpleNamespace(size=size), seeds=[42, 43])
    table, runs = classifier.grid(ch, P, log=lambda *_: None)
    assert list(runs) == [("small_cnn", "S1"), ("small_cnn", "S3"), ("resnet50", "S1"), ("resnet50", "S3")]
    assert all(len(r) == 2 for r in runs.values())  # one run per replicate seed, replicate 0 first
    assert table[["model", "strategy"]].values.tolist() == [[m, st] for m in ("small_cnn", "resnet50")
                                                             for st in ("S1", "S3") for _ in (42, 43)]
    assert [c.seed for c in seen] == [42, 43] * 4
    cnn, res = seen[0], seen[4]
    assert (cnn.schedule, cnn.batch_size, cnn.epochs, cnn.optimizer) == ("step", 16, 50, "adam")
    assert (res.optimizer, res.learning_rate, res.epochs, res.schedule) == ("rmsprop", 1e-5, 7, P["schedule"])
    assert res.model_options["l2"] == 0.0 and res.batch_size == P["batch_size"] and seen[6].strategy == "S3"
    with pytest.raises(ParamsError, match="settings"):
        load_profile("cpu", {"chapters": {"classifier": {"grid": {"settings": {"small_cnn": {"momentum": 0.9}}}}}})


def test_step_schedule_halves_the_learning_rate_every_three_epochs():
    from hamviz.models import keras
    from hamviz.training import fit
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).random((16, 3)).astype("float32")
    import tensorflow as tf
    h = fit(m, tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8), epochs=7, patience=7, label="t",
            learning_rate=0.1, schedule="step")
    np.testing.assert_allclose(h["learning_rate"], [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025], rtol=1e-6)


def test_best_strategy_per_model_and_the_s3_s5_pair():
    from types import SimpleNamespace

    from hamviz.chapters import classifier
    table = pd.DataFrame({"model": ["cnn", "cnn", "cnn", "res", "res"], "strategy": ["S1", "S3", "S5", "S1", "S4"],
                          "val_balanced_accuracy": [0.4, 0.6, 0.6, 0.7, 0.5], "balanced_accuracy": [0.1] * 5,
                          "accuracy": [0.1] * 5, "macro_f1": [0.1] * 5, "macro_auc": [0.1] * 5})
    best = classifier.best_strategies(table)
    assert best[["model", "strategy"]].values.tolist() == [["cnn", "S3"], ["res", "S1"]]  # a tie: the first listed
    run = lambda loss: [(None, SimpleNamespace(history={"loss": loss, "val_loss": loss}))]  # one replicate
    runs = {("cnn", "S3"): run([1.0, 0.5]), ("cnn", "S5"): run([1.2, 0.9]), ("res", "S1"): run([1.0])}
    assert classifier.curves_by_strategy(runs, "cnn") == {"S3": {"loss": [1.0, 0.5], "val_loss": [1.0, 0.5]},
                                                         "S5": {"loss": [1.2, 0.9], "val_loss": [1.2, 0.9]}}
    assert classifier.curves_by_strategy(runs, "res") == {}  # only one of the pair ran
    from hamviz import plots
    fig = plots.curves_compared(classifier.curves_by_strategy(runs, "cnn"))
    assert [(t.name, list(t.y)) for t in fig.data] == [("S3", [1.0, 0.5]), ("S5", [1.2, 0.9]),
                                                        ("S3", [1.0, 0.5]), ("S5", [1.2, 0.9])]
    with pytest.raises(ValueError, match="no runs"):
        plots.curves_compared({})


def test_tuned_decision_fits_on_validation_and_scores_test():
    """A model that puts 0.4 on class 0 (nv-like, frequent) and 0.6 on class 1 for every class-0 image: argmax
    gets every class-0 image wrong; the weights fitted on validation turn that round, and the test part, which
    the fit never sees, scores it. Labels of the rules use the field's names."""
    from types import SimpleNamespace

    from hamviz.chapters.classifier import tuned_decision
    from hamviz.registry import CLASSES
    K = len(CLASSES)

    def part(n0, n1, offset):
        y = np.r_[np.zeros(n0, int), np.ones(n1, int)] + offset
        p = np.full((n0 + n1, K), 1e-3)
        p[:n0, offset], p[:n0, offset + 1] = 0.4, 0.6    # class-0 images: the wrong class on top
        p[n0:, offset], p[n0:, offset + 1] = 0.1, 0.9    # class-1 images: right, and more confident
        return y, p / p.sum(1, keepdims=True)
    yv, pv = part(40, 10, 0)
    yt, pt = part(20, 5, 0)
    y = np.r_[yv, yt]
    s = SimpleNamespace(labels=y, groups=np.arange(len(y)))
    t = SimpleNamespace(rows={"val": np.arange(50), "test": np.arange(50, 75)}, proba={"val": pv, "test": pt})
    table, record = tuned_decision(s, t, "macro_f1", n_boot=0)
    assert list(table.index) == ["argmax", "weights tuned on validation for macro-F1"]
    assert record["tuned_rule"] == "weights tuned on validation for macro-F1"
    w = record["weights"]["weights tuned on validation for macro-F1"]
    assert 0.4 * w[CLASSES[0]] > 0.6 * w[CLASSES[1]] and 0.9 * w[CLASSES[1]] > 0.1 * w[CLASSES[0]]  # both right
    assert record["argmax"]["test"]["accuracy"] == pytest.approx(0.2)
    assert record["weights tuned on validation for macro-F1"]["test"]["accuracy"] == pytest.approx(1.0)
    assert table["n"].tolist() == [25, 25]
    assert list(table.columns) == ["n", "accuracy", "balanced accuracy", "macro-F1"]
    # with a floor on balanced accuracy: a third rule; here the free weights raise balanced accuracy too (0.5 ->
    # 1 on validation), so the floor never binds and the same weights come back
    table, record = tuned_decision(s, t, "macro_f1", n_boot=0, max_drop=0.0)
    floored = "weights tuned on validation for macro-F1, balanced accuracy no lower than argmax's"
    assert list(table.index) == ["argmax", "weights tuned on validation for macro-F1", floored]
    assert record["tuned_rule"] == floored and record["max_drop"] == 0.0
    assert record["weights"][floored] == record["weights"]["weights tuned on validation for macro-F1"]
    assert record[floored]["test"]["accuracy"] == pytest.approx(1.0)


def test_best_strategy_is_chosen_on_validation_not_test():
    """S4 has the best test balanced accuracy, S2 the best validation one (mean over two replicates): S2 is chosen."""
    from hamviz.chapters.classifier import best_strategies, grid_means
    rows = [("m", "S1", 0.50, 0.50), ("m", "S1", 0.52, 0.50), ("m", "S2", 0.60, 0.55), ("m", "S2", 0.58, 0.53),
            ("m", "S4", 0.55, 0.70), ("m", "S4", 0.57, 0.60)]
    table = pd.DataFrame([{"model": m, "strategy": st, "val_balanced_accuracy": v, "balanced_accuracy": b,
                           "accuracy": b, "macro_f1": b, "macro_auc": b} for m, st, v, b in rows])
    means = grid_means(table)
    assert means["replicates"].tolist() == [2, 2, 2]
    assert means.loc[2, "balanced_accuracy"] == pytest.approx(0.65)
    assert means.loc[2, "test balanced accuracy, range over replicates"] == pytest.approx(0.10)
    best = best_strategies(table)
    assert best[["model", "strategy"]].values.tolist() == [["m", "S2"]]
    assert best.loc[0, "val_balanced_accuracy"] == pytest.approx(0.59)


def test_grid_augmentation_replaces_the_main_models(monkeypatch):
    """grid.augment (Zhang's augmentation, no flips) trains the grid's models; without it they get the main
    model's; a model's own settings still apply."""
    from types import SimpleNamespace as NS

    import hamviz.chapters.classifier as clf
    seen = []
    monkeypatch.setattr(clf, "train_classifier", lambda cfg, s, log=print: seen.append(cfg) or NS())
    monkeypatch.setattr(clf, "_grid_row", lambda s, t, model, strategy: {"model": model, "strategy": strategy})
    P = chapter_params(load_profile("cpu"), "classifier")
    zhang = {"rot90": True, "flip": False, "zoom": 0.1, "shift": 0.1}
    ch = NS(view=lambda size: NS(size=size), seeds=[42])
    P = {**P, "grid": {**P["grid"], "strategies": ["S1"], "frozen_head": False, "augment": zhang,
                       "settings": {"small_cnn": {"epochs": 3}}}}
    clf.grid(ch, P)
    assert [(c.augment, c.epochs) for c in seen] == [(zhang, 3)]
    seen.clear()
    clf.grid(ch, {**P, "grid": {**P["grid"], "augment": None}})
    assert seen[0].augment == P["augment"]


def test_a_transfer_member_trains_with_its_own_optimiser(monkeypatch):
    """Bunu et al.: Nadam and clipping for InceptionV3 only; a member that names none gets the chapter's."""
    from types import SimpleNamespace as NS

    import hamviz.chapters.explain as ex
    got = {}
    monkeypatch.setattr(ex, "binary_view", lambda view, malignant: view)
    monkeypatch.setattr(ex, "member", lambda b, name, spec, P, **kw: got.setdefault(name, (P, spec, kw)))
    ch = NS(view=lambda size=None: NS(size=size))
    P = {"optimizer": "adam", "learning_rate": 1e-3, "clipnorm": None, "malignant": ["mel"]}
    ex.transfer_member(ch, {"model": "inceptionv3", "trainable": 150, "optimizer": "nadam", "clipnorm": 1.0,
                            "head_warmup": 15, "epochs": 10}, P)
    ex.transfer_member(ch, {"model": "vgg19", "head": "own_top"}, P)
    (Pi, spec_i, kw_i), (Pv, _, _) = got["inceptionv3"], got["vgg19"]
    assert (Pi["optimizer"], Pi["clipnorm"], Pi["learning_rate"]) == ("nadam", 1.0, 1e-3)
    assert (Pv["optimizer"], Pv["clipnorm"]) == ("adam", None)
    assert spec_i == {"trainable": 150} and kw_i["head_warmup"] == 15 and kw_i["epochs"] == 10  # network keys only


def test_replicates_table_interval_stays_within_what_a_rate_can_take():
    """Two replicates far apart (one near-perfect, one at chance): the t factor with 1 degree of freedom reaches past
    0 and 1; the pooled interval is cut there, and the mean is the replicates' mean."""
    from types import SimpleNamespace

    from hamviz.chapters.classifier import replicates_table
    rng = np.random.default_rng(0)
    y = np.tile(np.arange(7), 20)
    good = np.full((len(y), 7), 0.01)
    good[np.arange(len(y)), y] = 0.94
    noise = rng.dirichlet(np.ones(7), len(y))
    s = SimpleNamespace(labels=y, groups=np.arange(len(y)))
    ts = [SimpleNamespace(rows={"val": np.arange(len(y)), "test": np.arange(len(y))}, proba={"val": p, "test": p},
                          history={"loss": [1.0, 0.5], "best_epoch": 2}, config=SimpleNamespace(seed=seed))
          for seed, p in ((42, good), (43, noise))]
    _, rec = replicates_table(s, ts, n_boot=200)
    b = rec["pooled"]["balanced_accuracy"]
    assert b["high"] == 1.0 and b["low"] == 0.0
    assert b["mean"] == pytest.approx((1.0 + rec["per_seed"][1]["balanced_accuracy"]) / 2)


@pytest.mark.data
def test_leak_audit_retrains_the_recipe_on_every_split(ham):
    """``leak_audit: true`` (the paper profile's): the main model's recipe and seed retrained on the siblings, the
    image-level and Zhang's split, each artefact on its own view's parts, the grouped arm the main model itself; the
    table then has every arm's column. A small CNN at 32x32, one epoch on 100 images, stands in for InceptionV3
    (whose toy run in test_paper_smoke.py would cost minutes per split)."""
    from types import SimpleNamespace as NS

    from hamviz.chapters.classifier import leak_audit_models
    from hamviz.training import train_classifier
    from hamviz.view import prepare
    views = {g: prepare(ham, 32, seed=0, grouped=g) for g in (True, False)}
    ch = NS(view=lambda size, grouped=True: views[grouped])
    P = {**chapter_params(load_profile("tiny"), "classifier"), "model": "small_cnn", "image_size": 32,
         "head_warmup": 0, "train_limit": 100, "epochs": 1, "seed": 0, "leak_audit": True}
    main = train_classifier(config(P, seed=5), views[True], log=lambda *_: None)
    models, audited, label = leak_audit_models(ch, P, [main], log=lambda *_: None)
    assert set(models) == {"grouped", "siblings", "image", "zhang"} and models["grouped"] == [main]
    assert label == main.config.label
    for k, (t,) in models.items():
        assert t.config.seed == 5 and (t.rows["test"] == audited[k].rows["test"]).all(), k
        assert len(t.proba["test"]) == len(t.rows["test"]) and len(t.rows["train"]) == 100, k
    assert audited["zhang"].grouped and len(audited["zhang"].rows["test"]) == 1103
    table, record = leak_audit(audited, models, n_boot=10)
    assert {ZHANG_SPLIT, "unpaired inflation (points)", "paired inflation (points)"} <= set(table.columns)
    assert list(record["balanced_accuracy"]["per_seed"]) == [5]
