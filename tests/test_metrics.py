"""hamviz.metrics (known answers, agreement with scikit-learn, the bootstrap) and the evaluation plots."""
import json
import math
import re
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss, roc_auc_score

from hamviz import metrics as M
from hamviz import plots
from hamviz.data import CLASSES

ABC = ("a", "b", "c")


def onehot(y, k):
    return np.eye(k)[np.asarray(y)]


def synthetic(n=1000, k=7, seed=1, signal=1.5, decimals=2):
    """HAM10000-like imbalance, informative but imperfect probabilities (rounded, so scores tie)."""
    rng = np.random.default_rng(seed)
    prior = np.array([.03, .05, .11, .01, .11, .67, .02])[:k]
    y = rng.choice(k, n, p=prior / prior.sum())
    logit = rng.normal(size=(n, k))
    logit[np.arange(n), y] += signal
    p = np.round(np.exp(logit) / np.exp(logit).sum(1, keepdims=True), decimals)
    return y, p / p.sum(1, keepdims=True)


# ------------------------------------------------------------------------------------------ known answers
def test_perfect_predictions():
    y = np.tile(np.arange(7), 3)
    h = M.headline(y, onehot(y, 7))
    for m in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_auc"):
        assert h[m] == 1.0, m
    assert h["ece"] == 0.0 and h["log_loss"] < 1e-12 and h["n"] == 21.0
    assert set(M.auc_per_class(y, onehot(y, 7)).values()) == {1.0}


def test_hand_checked_confusion_and_report():
    y, pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    cm = M.confusion(y, pred, ABC)
    assert cm.to_numpy().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.index.name == "true" and cm.columns.name == "predicted" and list(cm.columns) == list(ABC)
    np.testing.assert_allclose(M.confusion(y, pred, ABC, normalize="true").to_numpy(),
                               [[2 / 3, 1 / 3, 0], [0, .5, .5], [0, 0, 1]])
    assert M.confusion(y, onehot(pred, 3), ABC).equals(cm)  # probabilities -> argmax
    rep = M.per_class_report(y, pred, ABC)
    assert list(rep.index) == [*ABC, "macro avg", "weighted avg"] and "auc" not in rep
    np.testing.assert_allclose(rep.loc[list(ABC), "precision"], [1, .5, .5])
    np.testing.assert_allclose(rep.loc[list(ABC), "recall"], [2 / 3, .5, 1])
    np.testing.assert_allclose(rep.loc[list(ABC), "support"], [3, 2, 1])
    assert rep["support"].dtype.kind == "i" and rep.loc["macro avg", "support"] == 6  # counts, shown as such
    rep_p = M.per_class_report(y, onehot(pred, 3) * .9 + .1 / 3, ABC)
    assert rep_p["auc"].notna().sum() == 3 and rep_p.loc["macro avg", "auc"] != rep_p.loc["macro avg", "auc"]


def test_balanced_accuracy_differs_on_imbalance():
    y = [0] * 9 + [1]
    p = np.tile([.8, .2], (10, 1))  # always "benign"
    h = M.headline(y, p, ("benign", "malignant"))
    assert h["accuracy"] == pytest.approx(.9) and h["balanced_accuracy"] == pytest.approx(.5)
    assert h["macro_f1"] < h["weighted_f1"] < h["accuracy"]


def test_auc_absent_class_and_macro_over_present():
    y = [0, 0, 1, 1]  # class c absent
    p = [[.7, .2, .1], [.5, .3, .2], [.3, .6, .1], [.6, .3, .1]]
    auc = M.auc_per_class(y, p, ABC)
    assert auc["a"] == pytest.approx(.75) and auc["b"] == pytest.approx(.875) and math.isnan(auc["c"])
    assert M.headline(y, p, ABC)["macro_auc"] == pytest.approx((.75 + .875) / 2)


def test_ece_known_miscalibration():
    # 10 samples at confidence .85, half right; 10 at .65, all right: ECE = .5 * .35 + .5 * .35
    y = [0] * 5 + [1] * 5 + [0] * 10
    p = [[.85, .15]] * 10 + [[.65, .35]] * 10
    ece, table = M.calibration(y, p)
    assert ece == pytest.approx(.35)
    np.testing.assert_allclose(table[["bin_lower", "bin_upper"]], [[.6, .7], [.8, .9]])
    assert table["count"].tolist() == [10, 10] and table["accuracy"].tolist() == [1.0, .5]
    # per bin the same as sklearn's (binary) calibration_curve on (correct, confidence)
    y, p = synthetic()
    _, table = M.calibration(y, p)
    acc, conf = calibration_curve(p.argmax(1) == y, p.max(1), n_bins=10)
    np.testing.assert_allclose(table["accuracy"], acc)
    np.testing.assert_allclose(table["confidence"], conf)


def test_subsets_and_class_names():
    y, p = synthetic(200, k=4)
    names = np.array(CLASSES[:4])[y]
    assert M.headline(names, p, CLASSES[:4]) == M.headline(y, p, CLASSES[:4])
    assert M.headline(y, p, CLASSES[:4]) == pytest.approx({
        "accuracy": accuracy_score(y, p.argmax(1)),
        "balanced_accuracy": balanced_accuracy_score(y, p.argmax(1)),
        "macro_f1": f1_score(y, p.argmax(1), average="macro"),
        "weighted_f1": f1_score(y, p.argmax(1), average="weighted"),
        "macro_auc": roc_auc_score(y, p, multi_class="ovr", average="macro"),
        "log_loss": log_loss(y, p), "ece": M.calibration(y, p)[0], "n": 200.0})


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("y, p, msg", [
    ([0, 1, 2], onehot([0, 1], 3), "shape mismatch"),
    ([0, 1], [[.5, .4, 0], [0, 1, 0]], "sum to 1"),
    ([0, 3], onehot([0, 2], 3), "out of range"),
    ([0, -1], onehot([0, 2], 3), "out of range"),
    ([0, 1], onehot([0, 1], 4), r"shape \(n_samples, 3\)"),
    ([[0, 1]], onehot([0, 1], 3), "1-D"),
    (["a", "x"], onehot([0, 1], 3), "unknown class names"),
    ([0, 1], [[2, -1, 0], [0, 1, 0]], "within \\[0, 1\\]"),
    ([0, 1], [[np.nan, 1, 0], [0, 1, 0]], "finite"),
    ([], np.zeros((0, 3)), "empty"),
])
def test_bad_input(y, p, msg):
    with pytest.raises(ValueError, match=msg):
        M.headline(y, p, ABC)


def test_bad_arguments():
    y, p = [0, 1, 2], onehot([0, 1, 2], 3)
    near = [[.5, .5004, 0], [0, .9995, 0], [.2, .2, .6]]  # within 1e-3 of summing to 1: renormalised
    assert M.check_inputs([0, 1, 2], near, ABC)[1].sum(axis=1) == pytest.approx([1, 1, 1], abs=1e-15)
    assert M.check_inputs([0, 1, 2], near, ABC)[1][2].tolist() == [.2, .2, .6]  # exact rows untouched
    with pytest.raises(ValueError, match="normalize"):
        M.confusion(y, [0, 1, 2], ABC, normalize="rows")
    with pytest.raises(ValueError, match="shape mismatch"):
        M.confusion(y, [0, 1], ABC)
    with pytest.raises(ValueError, match="unknown metric"):
        M.bootstrap_ci(y, p, metrics=("acc",), classes=ABC)
    with pytest.raises(ValueError, match="groups"):
        M.bootstrap_ci(y, p, groups=[1, 2], classes=ABC)
    with pytest.raises(ValueError, match="distinct"):
        M.headline([0, 0], [[1.0], [1.0]], ("a",))


# ------------------------------------------------------------------------------- vectorised = sklearn
def test_weighted_metrics_equal_sklearn_with_sample_weight():
    y, p = synthetic(300)
    w = M.bootstrap_weights(len(y), 4, np.random.default_rng(0))
    got = M.weighted_metrics(y, p, np.vstack([np.ones(len(y)), w]))
    h = M.headline(y, p)
    for m in M.HEADLINE:
        assert got[m][0] == pytest.approx(h[m], abs=1e-12), m  # unit weights: the headline numbers
    pred, k = p.argmax(1), range(7)
    for b, wb in enumerate(w, start=1):
        rep = np.repeat(np.arange(len(y)), wb.astype(int))
        ref = {"accuracy": accuracy_score(y, pred, sample_weight=wb),
               "balanced_accuracy": balanced_accuracy_score(y, pred, sample_weight=wb),
               "macro_f1": f1_score(y, pred, labels=k, average="macro", zero_division=0, sample_weight=wb),
               "weighted_f1": f1_score(y, pred, labels=k, average="weighted", zero_division=0,
                                       sample_weight=wb),
               "macro_auc": np.mean([roc_auc_score(y == c, p[:, c], sample_weight=wb) for c in k]),
               "log_loss": log_loss(y, p, labels=k, sample_weight=wb),
               "ece": M.calibration(y[rep], p[rep])[0]}
        for m, v in ref.items():
            assert got[m][b] == pytest.approx(v, abs=1e-12), m


def test_rank_auc_equals_sklearn_with_ties():
    y, p = synthetic(400, decimals=1)  # heavy ties
    w = np.random.default_rng(3).integers(0, 4, size=(3, len(y))).astype(float)
    auc = M.weighted_auc(y, p, w, np.ones(7, bool))
    for b in range(3):
        for c in range(7):
            assert auc[b, c] == pytest.approx(roc_auc_score(y == c, p[:, c], sample_weight=w[b]), abs=1e-12)


# ------------------------------------------------------------------------------------------ bootstrap
def width(t, m):
    return t.loc[m, "high"] - t.loc[m, "low"]


def test_bootstrap_ci_contains_value_and_shrinks():
    y, p = synthetic(300)
    small = M.bootstrap_ci(y, p, n_boot=300)
    assert list(small.columns) == ["value", "low", "high"] and list(small.index) == [
        "accuracy", "balanced_accuracy", "macro_f1", "macro_auc"]
    assert ((small["low"] <= small["value"]) & (small["value"] <= small["high"])).all()
    y4, p4 = synthetic(1200, seed=2)
    large = M.bootstrap_ci(y4, p4, n_boot=300)
    for m in small.index:
        assert width(large, m) < 0.75 * width(small, m), m
    assert M.bootstrap_ci(y, p, n_boot=300).equals(small)  # seeded


def test_group_bootstrap_wider_than_iid_on_duplicates():
    y, p = synthetic(250)
    y4, p4, g = np.repeat(y, 4), np.repeat(p, 4, axis=0), np.repeat(np.arange(250), 4)  # 4 shots per lesion
    iid = M.bootstrap_ci(y4, p4, n_boot=400)
    grouped = M.bootstrap_ci(y4, p4, n_boot=400, groups=g)
    one = M.bootstrap_ci(y, p, n_boot=400)
    for m in ("accuracy", "macro_auc"):
        assert width(grouped, m) > 1.5 * width(iid, m), m
        assert width(grouped, m) == pytest.approx(width(one, m), rel=0.3), m  # as if each lesion once


def test_bootstrap_skips_resamples_missing_a_class():
    y, p = synthetic(200)
    y[0], p[0] = 3, onehot(3, 7)  # df: one sample; absent from about 1/e of the resamples
    y[1:][y[1:] == 3] = 5
    t = M.bootstrap_ci(y, p, n_boot=200)
    used = t.attrs["resamples"]
    assert used["accuracy"] == 200 and 90 < used["balanced_accuracy"] < 160 and used["macro_auc"] < 200
    assert t.notna().all().all()


def test_bootstrap_speed():
    y, p = synthetic(1000)
    t0 = time.perf_counter()
    M.bootstrap_ci(y, p, n_boot=1000, groups=np.arange(1000) // 2)
    assert time.perf_counter() - t0 < 5


# ------------------------------------------------------------------------------------------ evaluate / compare
def test_evaluate_json_and_compare():
    y, p = synthetic(150, k=4)
    y[y == 3] = 0  # class 3 absent: NaN AUC -> None
    r = M.evaluate(y, p, CLASSES[:4], groups=np.arange(150) // 3, n_boot=50)
    json.dumps(r, allow_nan=False)
    assert set(r) >= {"headline", "auc_per_class", "report", "confusion", "confusion_normalized",
                      "calibration_table", "ci"}
    assert r["auc_per_class"]["df"] is None and r["report"]["macro avg"]["auc"] is None
    assert np.array(r["confusion"]).sum() == 150 and len(r["confusion_normalized"]) == 4
    assert set(r["ci"]["accuracy"]) == {"value", "low", "high"}
    assert sum(b["count"] for b in r["calibration_table"]) == 150
    r2 = M.evaluate(*synthetic(150, k=4, seed=5), CLASSES[:4], n_boot=0)
    table = M.compare({"first": r, "second": r2})
    assert list(table.index) == ["first", "second"] and list(table.columns) == list(M.COMPARE)
    assert table.loc["first", "accuracy"] == r["headline"]["accuracy"]


# ------------------------------------------------------------------------------------------ plots
def test_plots():
    y, p = synthetic(300)
    hist = {"loss": [1.0, .7, .6], "accuracy": [.5, .6, .7], "val_loss": [1.1, .8, .9],
            "val_accuracy": [.4, .55, .6], "learning_rate": [1e-3] * 3}
    fig = plots.training_curves(hist)
    assert isinstance(fig, go.Figure) and len(fig.data) == 4 and "epoch 2" in fig.layout.title.text
    assert list(fig.data[0].x) == [1, 2, 3] and fig.data[1].line.dash == "dash"
    assert len(plots.training_curves({"loss": [1, .5], "auc": [.6, .7]}).data) == 2

    cm = M.confusion(y, p)
    fig = plots.confusion_heatmap(cm)
    assert len(fig.data) == 1 and fig.layout.xaxis.title.text == "predicted"
    assert fig.data[0].text[0][0] == f"{cm.iloc[0, 0]}<br>{cm.iloc[0, 0] / cm.iloc[0].sum():.0%}"

    y3 = y.copy()
    y3[y3 == 3] = 5  # df absent: no curve
    fig = plots.roc_curves(y3, p)
    assert len(fig.data) == 7 and fig.data[0].name.startswith("akiec (AUC 0.")

    ece, table = M.calibration(y, p)
    fig = plots.reliability_diagram(table, ece)
    assert len(fig.data) == 2 and f"{ece:.3f}" in fig.layout.title.text

    results = {"a": M.evaluate(y, p, n_boot=50), "b": M.evaluate(*synthetic(300, seed=4), n_boot=50)}
    fig = plots.metric_bars(M.compare(results), ci={k: r["ci"] for k, r in results.items()})
    assert len(fig.data) == 3 and fig.data[0].error_y.array is not None
    assert len(plots.metric_bars(M.compare(results), metrics=("accuracy",)).data) == 1
    assert [d.name for d in fig.data] == ["accuracy", "balanced accuracy", "macro-F1"]  # the field's terms


def test_rate_figure_draws_each_reference_line_in_every_panel():
    table = pd.DataFrame({"method": ["JPEG", "JPEG", "K-means"], "setting": ["q90", "q10", "K=8"],
                          "bpp": [2.0, 0.5, 0.4], "rate_kind": ["file"] * 3,
                          "balanced_accuracy": [0.7, 0.5, 0.6], "accuracy": [0.8, 0.6, 0.7]})
    ref, km = {"balanced_accuracy": 0.71, "accuracy": 0.81}, {"balanced_accuracy": 0.69, "accuracy": 0.79}
    fig = plots.rate_figure(table, reference=ref, method_references={"K-means": km})
    assert len(fig.data) == 4  # 2 methods x 2 panels
    lines = sorted((s.y0, s.line.dash) for s in fig.layout.shapes)
    assert lines == [(0.69, "dot"), (0.71, "dash"), (0.79, "dot"), (0.81, "dash")]
    texts = [a.text for a in fig.layout.annotations]
    assert "balanced accuracy" in texts and "uncompressed, K-means images 0.690" in texts
    assert len(plots.rate_figure(table, reference=ref).layout.shapes) == 2


def test_tables_show_the_field_names_of_metrics_and_keep_their_keys():
    known = {"balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1", "ece": "ECE", "macro_auc": "macro AUC",
             "test_macro_f1": "test macro-F1", "val_auc": "validation AUC", "f1_mel": "F1 mel", "log_loss": "log loss",
             "reference_balanced_accuracy": "reference balanced accuracy", "train_seconds": "train seconds",
             "leak_inflation_balanced_accuracy_points": "leak inflation balanced accuracy points",
             "median_contrast_dE2000": "median contrast CIEDE2000", "cos_own_template": "cosine to own class key",
             "joint 3x bal.acc": "joint 3x balanced accuracy", "bal.acc @0.5": "balanced accuracy @0.5",
             # left alone: model names, text that is not snake_case, non-strings
             "efficientnet_lite0": "efficientnet_lite0", "small_cnn": "small_cnn", "JPEG q50": "JPEG q50",
             "n": "n", "accuracy": "accuracy", 50: 50}
    assert {k: M.field_name(k) for k in known} == known
    table = pd.DataFrame({"balanced_accuracy": [0.5], "macro_f1": [0.25], "n": [7]}, index=["ece"])
    html = M.labelled(table).format("{:.2f}", subset=["macro_f1"]).to_html()  # subsets still take the keys
    assert re.findall(r"<th[^>]*>([^<]*)</th>", html) == ["&nbsp;", "balanced accuracy", "macro-F1", "n", "ECE"]
    assert ">0.25<" in html and ">0.500000<" in html and list(table.columns) == ["balanced_accuracy", "macro_f1", "n"]
    assert M.labelled(table.style.format(precision=1)).to_html().count(">0.5<") == 1  # a Styler keeps its formats
    with pytest.raises(TypeError, match="DataFrame or Styler"):
        M.labelled({"balanced_accuracy": 0.5})


def test_a_class_absent_from_the_part_every_macro_metric_over_the_same_classes():
    """Class d has no sample here (a class missing from a split part) but is predicted once. Worked by hand:
    recall a 1/2, b 2/2, c 1/2; precision a 1/1, b 2/3, c 1/1; F1 a 2/3, b 4/5, c 2/3; one-vs-rest AUC a 6/8,
    b 7/8, c 6/8 (scores 0.7 for the predicted class, 0.1 for the others; ties count 1/2). Balanced accuracy,
    macro-F1 and macro AUC all average over a, b, c: macro-F1 used to divide by 4 (0.533) while the other two
    divided by 3. The result says over which classes, and the note says it in one line."""
    classes = ("a", "b", "c", "d")
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 1, 2, 3]
    p = np.full((6, 4), 0.1)
    p[np.arange(6), pred] = 0.7
    h = M.headline(y, p, classes)
    assert h["accuracy"] == pytest.approx(4 / 6)
    assert h["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert h["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 2 / 3) / 3)  # 32/45, not 32/60
    assert h["macro_auc"] == pytest.approx((6 / 8 + 7 / 8 + 6 / 8) / 3)
    rep = M.per_class_report(y, p, classes)
    assert rep.loc["macro avg", "f1-score"] == pytest.approx(h["macro_f1"])
    assert rep.loc["macro avg", "recall"] == pytest.approx(h["balanced_accuracy"])
    assert rep.loc["macro avg", "precision"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert rep.loc["d", "f1-score"] == 0 and rep.loc["d", "support"] == 0  # shown, not averaged
    w = M.weighted_metrics(*M.check_inputs(y, p, classes), np.ones((1, 6)))
    for m in ("balanced_accuracy", "macro_f1", "macro_auc"):
        assert w[m][0] == pytest.approx(h[m]), m  # the bootstrap's formulas average over the same classes
    r = M.evaluate(y, p, classes, n_boot=20)
    assert r["averaged_over"] == {m: ["a", "b", "c"] for m in ("balanced_accuracy", "macro_f1", "macro_auc")}
    assert r["absent_classes"] == ["d"]
    assert M.averaging_note(r) == ("balanced_accuracy, macro_f1 and macro_auc average over 3 of 4 classes "
                                   "(a, b, c): d has no image here")
    full = M.evaluate([0, 1, 2, 3], np.eye(4), classes, n_boot=0)
    assert full["absent_classes"] == [] and M.averaging_note(full) is None


# --------------------------------------------------------------------------------------------- decision rule
def test_decision_weights_known_answer_moves_the_threshold():
    """Class 1 is true exactly when its probability exceeds 0.3: argmax (threshold 0.5) misses the images
    between 0.3 and 0.5; the fitted weights move the threshold there and classify every image right."""
    q = np.round(np.linspace(0.01, 0.99, 99), 2)
    q = q[np.abs(q - 0.3) > 0.015]          # no image at the boundary itself
    y = (q > 0.3).astype(int)
    p = np.column_stack([1 - q, q])
    before = f1_score(y, p.argmax(1), average="macro")
    w = M.decision_weights(y, p, classes=("a", "b"))
    after = f1_score(y, M.reweight(p, w).argmax(1), average="macro")
    assert before < 0.9 and after == 1.0
    # class 1 is predicted when q > w0 / (w0 + w1): that threshold must fall between 0.28 (y=0) and 0.32 (y=1)
    assert 0.68 / 0.32 < w[1] / w[0] <= 0.72 / 0.28
    assert np.isclose(np.prod(w), 1.0)


def test_decision_score_matches_sklearn_with_an_absent_class():
    y, p = synthetic(n=500, k=7, seed=3)
    y = np.where(y == 3, 5, y)              # df absent from y, still predicted sometimes
    pred = p.argmax(1)
    present = M.present_classes(y, 7)
    assert M._decision_score(y, pred, 7, present, "macro_f1") == pytest.approx(
        f1_score(y, pred, labels=present, average="macro", zero_division=0))
    assert M._decision_score(y, pred, 7, present, "balanced_accuracy") == pytest.approx(
        M.headline(y, p)["balanced_accuracy"])


def test_decision_weights_stay_one_when_argmax_is_already_perfect():
    y = np.array([0, 1, 2, 0, 1, 2])
    p = onehot(y, 3) * 0.8 + 0.2 / 3
    assert np.array_equal(M.decision_weights(y, p, classes=ABC), np.ones(3))


def test_decision_weights_help_macro_f1_on_held_out_imbalanced_data():
    """A 'balanced' classifier (probabilities divided by the class prior, as class weights make them) on
    HAM10000-like imbalance: weights fitted on one half raise macro-F1 on the other half, and trade balanced
    accuracy for it (the relation the classifier chapter reports)."""
    y, p = synthetic(n=4000, k=7, seed=5, signal=1.2, decimals=6)
    prior = np.bincount(y, minlength=7) / len(y)
    balanced = M.reweight(p, 1 / prior)
    fit, held = slice(0, 2000), slice(2000, None)
    w = M.decision_weights(y[fit], balanced[fit])
    h_arg, h_tuned = M.headline(y[held], balanced[held]), M.headline(y[held], M.reweight(balanced[held], w))
    assert h_tuned["macro_f1"] > h_arg["macro_f1"] + 0.01
    assert w[5] == w.max()                  # nv, the majority class, gets its probability raised most


def test_decision_weights_floor_keeps_the_other_metric():
    """Tuned for macro-F1 without a limit, the weights pay with balanced accuracy on the very data they are
    fitted on (more than 2 points here); with ``max_drop=0.02`` balanced accuracy there stays within 2 points
    of argmax's while macro-F1 still rises; a floor of 1 (balanced accuracy can never fall below argmax's - 1)
    gives the unconstrained weights exactly. The same holds with the objectives swapped."""
    y, balanced = synthetic(n=2000, k=7, seed=5, signal=1.5, decimals=6)   # no prior in it: a 'balanced' model
    arg = M.headline(y, balanced)
    free = M.decision_weights(y, balanced)
    floored = M.decision_weights(y, balanced, max_drop=0.02)
    h_free, h_floor = M.headline(y, M.reweight(balanced, free)), M.headline(y, M.reweight(balanced, floored))
    assert h_free["balanced_accuracy"] < arg["balanced_accuracy"] - 0.02        # the floor has work to do
    assert h_floor["balanced_accuracy"] >= arg["balanced_accuracy"] - 0.02 - 1e-12
    assert h_floor["macro_f1"] > arg["macro_f1"] + 0.005
    assert np.array_equal(M.decision_weights(y, balanced, max_drop=1.0), free)
    ba_floor = M.decision_weights(y, balanced, "balanced_accuracy", max_drop=0.0)
    h_ba = M.headline(y, M.reweight(balanced, ba_floor))
    assert h_ba["macro_f1"] >= arg["macro_f1"] - 1e-12 and h_ba["balanced_accuracy"] >= arg["balanced_accuracy"]


def test_decision_rule_errors():
    y, p = synthetic(n=50, k=3, seed=2)
    with pytest.raises(ValueError, match="objective must be one of"):
        M.decision_weights(y, p, "accuracy", classes=ABC)
    for bad in (-0.1, 1.5, True, "0.02"):
        with pytest.raises(ValueError, match=r"max_drop must be a fraction in \[0, 1\]"):
            M.decision_weights(y, p, classes=ABC, max_drop=bad)
    with pytest.raises(ValueError, match="3 positive numbers"):
        M.reweight(p, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="3 positive numbers"):
        M.reweight(p, [1.0, 2.0])
    r = M.reweight(p, [1.0, 2.0, 0.5])
    assert np.allclose(r.sum(1), 1) and np.array_equal(r.argmax(1), (p * [1.0, 2.0, 0.5]).argmax(1))
    # the floored metric is the other objective, both ways; an unknown one is named
    assert M.other_objective("macro_f1") == "balanced_accuracy"
    assert M.other_objective("balanced_accuracy") == "macro_f1"
    with pytest.raises(ValueError, match="'macro_auc'"):
        M.other_objective("macro_auc")


def test_with_interval():
    """Known answers: value and interval rounded alike; the interval alone without a value."""
    assert M.with_interval(0.71549, 0.6512, 0.77501) == "0.715 [0.651, 0.775]"
    assert M.with_interval(None, 0.6512, 0.77501) == "[0.651, 0.775]"
    assert M.with_interval(0.5, 0.25, 0.75, digits=1) == "0.5 [0.2, 0.8]"
