"""Clinical operating points, partial AUC, temperature scaling and subgroup metrics: known answers on small fixed
inputs (hamviz.clinical, hamviz.subgroups)."""
import math

import numpy as np
import pandas as pd
import pytest

from hamviz import clinical, subgroups
from hamviz.registry import CLASSES

K = len(CLASSES)


def onehot_proba(labels, sure: float = 0.9) -> np.ndarray:
    """(N, 7) probabilities with ``sure`` on each named class, the rest spread evenly."""
    p = np.full((len(labels), K), (1 - sure) / (K - 1))
    p[np.arange(len(labels)), [CLASSES.index(c) for c in labels]] = sure
    return p


def direct_partial_auc(y, s, min_tpr):
    """The area between the ROC polyline and FPR = 1 over TPR >= min_tpr, integrated segment by segment."""
    from sklearn.metrics import roc_curve
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    area = 0.0
    for (f0, t0), (f1, t1) in zip(zip(fpr[:-1], tpr[:-1]), zip(fpr[1:], tpr[1:])):
        if t1 <= min_tpr or t1 == t0:
            continue
        if t0 < min_tpr:  # the segment crosses the line TPR = min_tpr: start there
            f0, t0 = f0 + (f1 - f0) * (min_tpr - t0) / (t1 - t0), min_tpr
        area += (t1 - t0) * (1 - (f0 + f1) / 2)
    return area


def test_partial_auc_known_answers():
    y, s = [1, 1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.2]
    # above TPR 2/3 the curve stands at FPR 1/2: the strip TPR in [0.8, 1] has area 0.2 x 0.5
    assert clinical.partial_auc(y, s, 0.8) == pytest.approx(0.1)
    assert clinical.partial_auc(y, s, 0.0) == pytest.approx(5 / 6)  # the whole AUC
    assert clinical.partial_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.2)  # perfect
    assert clinical.partial_auc([0, 0, 1, 1], [0.8, 0.9, 0.1, 0.2]) == pytest.approx(0.0)  # reversed
    with pytest.raises(ValueError, match="both classes"):
        clinical.partial_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="min_tpr"):
        clinical.partial_auc(y, s, 1.0)


def test_partial_auc_equals_direct_integration_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(5):
        y = rng.integers(0, 2, 60)
        s = np.round(rng.random(60) * 0.6 + 0.4 * y, 1)  # coarse scores: many ties, diagonal ROC segments
        for m in (0.5, 0.8, 0.9):
            assert clinical.partial_auc(y, s, m) == pytest.approx(direct_partial_auc(y, s, m), abs=1e-9)


def test_positive_score_sums_the_named_classes():
    p = onehot_proba(["mel", "nv", "bcc"], sure=0.7)
    rest = 0.3 / 6
    assert clinical.positive_score(p, ("mel", "bcc", "akiec")) == pytest.approx(
        [0.7 + 2 * rest, 3 * rest, 0.7 + 2 * rest])
    with pytest.raises(ValueError, match="not among"):
        clinical.positive_score(p, ("melanoma",))
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        clinical.positive_score(p[:, :3], ("mel",))


def test_operating_point_fitted_on_validation_scored_on_test():
    y_val, s_val = [1, 1, 1, 1, 0, 0], [0.9, 0.8, 0.7, 0.4, 0.5, 0.1]  # 3 of 4 positives at >= 0.7
    y_test = [1, 1, 0, 0, 0, 1, 0]
    s_test = [0.95, 0.65, 0.75, 0.3, 0.1, 0.7, 0.2]  # at 0.7: TP 2, FN 1, FP 1, TN 3
    t = clinical.operating_points(y_val, s_val, y_test, s_test, targets=(0.75, 1.0), n_boot=200)
    row = t.loc["75 %"]
    assert row["threshold"] == pytest.approx(0.7) and row["val sensitivity"] == pytest.approx(0.75)
    assert (row["sensitivity"], row["specificity"], row["ppv"], row["npv"]) == pytest.approx(
        (2 / 3, 3 / 4, 2 / 3, 3 / 4))
    assert row["sensitivity low"] <= row["sensitivity"] <= row["sensitivity high"]
    assert t.loc["100 %", "threshold"] == pytest.approx(0.4)  # every validation positive: the lowest one
    assert t.loc["100 %", "sensitivity"] == pytest.approx(1.0) and t.loc["100 %", "specificity"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="positive and negative"):
        clinical.operating_points(y_val, s_val, [0, 0], [0.1, 0.2])


def overconfident(n, rng, sharpen=3.0):
    """Labels drawn from true class probabilities, and those probabilities sharpened: softmax(sharpen x logits)."""
    logits = rng.normal(0, 1.0, (n, K))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(K, p=q) for q in true])
    sharp = np.exp(sharpen * logits)
    return y, sharp / sharp.sum(1, keepdims=True)


def test_temperature_scaling_recovers_the_sharpening_and_lowers_ece():
    rng = np.random.default_rng(0)
    y_val, p_val = overconfident(4000, rng)
    y_test, p_test = overconfident(2000, rng)
    T = clinical.fit_temperature(y_val, p_val)
    assert T == pytest.approx(3.0, rel=0.1)  # the sharpening factor, found on validation
    q = clinical.apply_temperature(p_test, T)
    assert (q.argmax(1) == p_test.argmax(1)).all() and np.allclose(q.sum(1), 1)
    assert np.allclose(clinical.apply_temperature(p_test, 1.0), p_test)
    out = clinical.calibration_change(y_test, p_test, T, n_boot=200)
    assert out["ece_after"] < out["ece_before"] / 3 and out["change high"] < 0
    assert out["ece_before"] == pytest.approx(100 * __import__("hamviz.metrics").metrics.calibration(y_test, p_test)[0])
    with pytest.raises(ValueError, match="temperature"):
        clinical.apply_temperature(p_test, 0)


def test_age_bands_and_subgroup_columns():
    assert subgroups.age_band([12, 30, 49.9, 50, 69, 70, np.nan]).tolist() == [
        "<30", "30-49", "30-49", "50-69", "50-69", ">=70", "unknown"]
    meta = pd.DataFrame({"lesion_id": ["a", "b", "c", "d", "e"], "sex": ["male", "female", None, "male", "unknown"],
                         "age": [20, 55, 80, None, 45], "localization": ["back", "back", "face", "ear", None],
                         "dx_type": ["histo", "follow_up", "consensus", "confocal", "histo"]})
    cols = subgroups.subgroup_columns(meta, min_site_lesions=2)
    assert cols["body site"].tolist() == ["back", "back", "other", "other", "unknown"]
    assert cols["sex"].tolist() == ["male", "female", "unknown", "male", "unknown"]
    assert cols["diagnosis confirmed by"].tolist() == ["histopathology"] + ["follow-up, consensus or confocal"] * 3 + [
        "histopathology"]
    with pytest.raises(ValueError, match=r"\['dx_type'\]"):
        subgroups.subgroup_columns(meta.drop(columns="dx_type"))


def fixed_groups():
    """Two sexes, one lesion per image, the metrics worked out by hand in the test below; a third group of two
    lesions."""
    y_names = ["mel", "mel", "nv", "nv", "mel", "nv", "nv", "bkl", "nv", "nv"]
    pred = ["mel", "nv", "nv", "nv", "mel", "mel", "nv", "bkl", "nv", "mel"]
    sex = ["male"] * 4 + ["female"] * 4 + ["unknown"] * 2
    y = np.array([CLASSES.index(c) for c in y_names])
    return y, onehot_proba(pred), pd.DataFrame({"sex": sex}), np.array([f"L{i}" for i in range(10)])


def test_subgroup_table_known_answers():
    y, p, groups, lesions = fixed_groups()
    t = subgroups.subgroup_table(y, p, groups, lesions, min_lesions=3, n_boot=100)
    male, female = t.loc[("sex", "male")], t.loc[("sex", "female")]
    # male: mel recall 1/2, nv 2/2 -> balanced accuracy 75; melanoma: 1 of 2 found, both non-melanomas kept
    assert male["balanced accuracy"] == pytest.approx(75.0)
    assert (male["melanoma sensitivity"], male["melanoma specificity"]) == pytest.approx((50.0, 100.0))
    # female: mel 1/1, nv 1/2, bkl 1/1 -> 83.3; one of three non-melanomas called melanoma
    assert female["balanced accuracy"] == pytest.approx(250 / 3)
    assert (female["melanoma sensitivity"], female["melanoma specificity"]) == pytest.approx((100.0, 200 / 3))
    assert male["images"] == 4 and male["lesions"] == 4 and male["class mix"] == "mel 50 %, nv 50 %"
    small = t.loc[("sex", "unknown")]
    assert small["note"].startswith("too few lesions") and math.isnan(small["balanced accuracy"])
    assert male["balanced accuracy low"] <= 75.0 <= male["balanced accuracy high"]
    assert subgroups.widest_gap(t, "sex") == ("female", "male")


def test_gap_draws_pairs_groups_and_replicates():
    y, p, groups, lesions = fixed_groups()
    flipped = p.copy()
    flipped[4] = onehot_proba(["nv"])[0]  # replicate 2 misses the female melanoma
    gaps, draws = subgroups.gap_draws(y, [p, flipped], groups["sex"], "male", "female", lesions, n_boot=50)
    # replicate 2, female: mel 0/1, nv 1/2, bkl 1/1 -> 50
    assert gaps == pytest.approx([75 - 250 / 3, 75 - 50])
    assert draws.shape == (2, 50)
    with pytest.raises(ValueError, match="need images"):
        subgroups.gap_draws(y, [p], groups["sex"], "male", "other", lesions)


def test_operating_report_pools_replicates_and_matches_one_model():
    rng = np.random.default_rng(5)
    names = rng.choice(["mel", "nv", "bcc", "bkl"], 300, p=[0.2, 0.5, 0.15, 0.15])
    y = np.array([CLASSES.index(c) for c in names])
    noisy = lambda: np.clip(onehot_proba(names, 0.5) + rng.random((300, K)) * 0.5, 0, None)  # noqa: E731
    pv, pt = [noisy() for _ in range(2)], [noisy() for _ in range(2)]
    pv, pt = [p / p.sum(1, keepdims=True) for p in pv], [p / p.sum(1, keepdims=True) for p in pt]
    lesions = np.arange(300) // 2
    areas, points = clinical.operating_report(y, pv, y, pt, lesions=lesions, n_boot=100)
    mel = [CLASSES.index("mel")]
    for task, positive in clinical.TASKS.items():
        pos = np.isin(y, [CLASSES.index(c) for c in positive])
        one = [clinical.partial_auc(pos, clinical.positive_score(p, positive)) for p in pt]
        assert areas.loc[task, "partial AUC above 80 % sensitivity per replicate"] == pytest.approx(one)
        assert areas.loc[task, "partial AUC above 80 % sensitivity"] == pytest.approx(np.mean(one))
        single = clinical.operating_points(pos, clinical.positive_score(pv[1], positive), pos,
                                           clinical.positive_score(pt[1], positive), n_boot=10)
        row = points.loc[(task, "95 %")]
        assert row["specificity per replicate"][1] == pytest.approx(single.loc["95 %", "specificity"])
        assert row["sensitivity low"] <= row["sensitivity"] <= row["sensitivity high"]
    assert areas.loc["melanoma vs rest", "positives"] == int(np.isin(y, mel).sum())


def test_calibration_report_one_row_per_replicate():
    rng = np.random.default_rng(1)
    y_val, p_val = overconfident(1500, rng)
    y_test, p_test = overconfident(800, rng)
    table, changes, draws = clinical.calibration_report(y_val, [p_val, p_val], y_test, [p_test, p_test], n_boot=50)
    assert list(table.index) == [0, 1] and table["temperature"].iloc[0] == pytest.approx(3.0, rel=0.15)
    assert (changes < 0).all() and draws.shape == (2, 50) and changes[0] == pytest.approx(changes[1])


def test_subgroup_table_means_replicates():
    y, p, groups, lesions = fixed_groups()
    flipped = p.copy()
    flipped[4] = onehot_proba(["nv"])[0]
    t = subgroups.subgroup_table(y, [p, flipped], groups, lesions, min_lesions=3, n_boot=100)
    female = t.loc[("sex", "female")]
    assert female["balanced accuracy per replicate"] == pytest.approx([250 / 3, 50.0])
    assert female["balanced accuracy"] == pytest.approx((250 / 3 + 50) / 2)
    assert female["balanced accuracy low"] < female["balanced accuracy"] < female["balanced accuracy high"]


def test_no_resamples_no_intervals():
    """n_boot 0 (the paper profile's toy run): values without intervals, no error."""
    rng = np.random.default_rng(2)
    y, p = overconfident(200, rng)
    out = clinical.calibration_change(y, p, 2.0, n_boot=0)
    assert math.isfinite(out["ece_before"]) and math.isnan(out["change low"])
    areas, points = clinical.operating_report(y, [p], y, [p], n_boot=0)
    assert math.isfinite(areas["ROC AUC"].iloc[0]) and math.isnan(areas["ROC AUC low"].iloc[0])
    yy, pp, groups, lesions = fixed_groups()
    t = subgroups.subgroup_table(yy, [pp], groups, lesions, min_lesions=3, n_boot=0)
    assert t.loc[("sex", "male"), "balanced accuracy"] == pytest.approx(75.0)


def test_subgroup_table_says_why_a_metric_is_missing():
    y, p, groups, lesions = fixed_groups()
    groups = groups.assign(site=["back"] * 3 + ["face"] * 7)  # back: mel, mel, nv; face: the other seven
    y = y.copy()
    y[4] = CLASSES.index("nv")  # the face group now holds no melanoma
    t = subgroups.subgroup_table(y, p, groups[["site"]], lesions, min_lesions=3, n_boot=20)
    face, back = t.loc[("site", "face")], t.loc[("site", "back")]
    assert math.isnan(face["melanoma sensitivity"]) and not math.isnan(face["melanoma specificity"])
    assert face["note"] == "no melanoma in this group: melanoma sensitivity undefined"
    assert back["note"] == ""  # every metric defined
