"""The verdict rule on synthetic per-replicate numbers (hamviz.replicates): all replicates agree and the pooled
interval excludes no effect -> "shown"; they disagree, or the interval includes no effect -> "not settled"."""
import math

import numpy as np
import pytest

from hamviz import metrics
from hamviz.replicates import (
    NOT_SETTLED,
    SHOWN,
    decide,
    effect_draws,
    holm,
    metric_draws,
    pooled_interval,
    replicate_seeds,
)


def _draws(effects, sd, n_boot=400, seed=0):
    """Draws (R, B) centred on each replicate's effect with test-sampling noise ``sd``, shared across rows
    (the same lesion resample moves every replicate alike)."""
    noise = np.random.default_rng(seed).normal(0, sd, n_boot)
    return np.asarray(effects, float)[:, None] + noise[None, :]


def test_seeds():
    assert replicate_seeds(42, 3) == [42, 43, 44]
    assert replicate_seeds(7, 1) == [7]
    with pytest.raises(ValueError, match="at least 1"):
        replicate_seeds(1, 0)


def test_all_agree_and_interval_excludes_zero_is_shown():
    v = decide({42: -7.7, 43: -6.1, 44: -9.0}, _draws([-7.7, -6.1, -9.0], 1.0))
    assert v.status == SHOWN and v.shown
    assert (v.k, v.n, v.direction) == (3, 3, -1)
    assert v.mean == pytest.approx(np.mean([-7.7, -6.1, -9.0]))
    assert v.high < 0 and v.low < v.mean < v.high
    assert "holds in 3 of 3: shown" in v.text()


def test_sign_flip_between_replicates_is_not_settled():
    # the joint-vs-AE case of issue 37: +2.0 on one machine, -5.4 on another
    v = decide({42: 2.0, 43: -5.4, 44: 1.0}, _draws([2.0, -5.4, 1.0], 0.5))
    assert v.status == NOT_SETTLED
    assert v.k == 1 and v.direction == -1  # the mean is negative: 1 of 3 below 0
    assert "only 1 of 3" in v.why


def test_agreeing_replicates_with_interval_over_zero_is_not_settled():
    v = decide({1: 0.4, 2: 0.6}, _draws([0.4, 0.6], 2.0))
    assert v.k == 2 and v.status == NOT_SETTLED and "includes 0" in v.why
    assert v.low < 0 < v.high


def test_one_replicate_is_never_a_finding():
    v = decide({42: -12.0}, _draws([-12.0], 0.1))
    assert v.status == NOT_SETTLED and "one replicate" in v.why
    assert v.high < 0 and v.interval == "lesions"  # the interval (test sampling only) excludes 0: still not a finding


def test_stated_direction_and_margin():
    # "JPEG q50 stays within 2 points": claim effect (loss) < 2
    within = decide({1: 0.5, 2: 1.0, 3: 0.8}, _draws([0.5, 1.0, 0.8], 0.2), null=2.0, direction=-1)
    assert within.shown and within.k == 3
    # the same losses claimed the other way hold in none
    assert decide({1: 0.5, 2: 1.0, 3: 0.8}, _draws([0.5, 1.0, 0.8], 0.2), null=2.0, direction=1).k == 0


def test_majority_stated_in_advance():
    effects = [3.0, 2.5, -0.1, 2.8, 3.1]
    draws = _draws(effects, 0.3)
    assert decide(dict(enumerate(effects)), draws).status == NOT_SETTLED  # all must agree by default
    v = decide(dict(enumerate(effects)), draws, majority=4)
    assert v.k == 4 and v.shown
    with pytest.raises(ValueError, match="more than half"):
        decide(dict(enumerate(effects)), draws, majority=2)


def test_pooled_interval_is_t_over_seeds_and_bootstrap_over_lesions():
    """Known answers: identical replicates -> the lesion-bootstrap interval alone (about +-1.96 sd); replicates
    spread with (almost) no test noise -> the t interval over the seeds (t(0.975, 2) = 4.303 times sd / sqrt 3)."""
    lo, hi = pooled_interval([1.0, 1.0, 1.0], _draws([1.0, 1.0, 1.0], 0.2, n_boot=4000))
    assert (hi - lo) == pytest.approx(2 * 1.96 * 0.2, rel=0.1) and lo < 1.0 < hi
    lo, hi = pooled_interval([-2.0, 1.0, 4.0], _draws([-2.0, 1.0, 4.0], 1e-9))
    assert (lo, hi) == pytest.approx((1.0 - 4.302652729911275 * 3 / math.sqrt(3),
                                      1.0 + 4.302652729911275 * 3 / math.sqrt(3)))
    assert (pooled_interval([1.0, float("nan")], _draws([1.0, 0.0], 0.2))
            != pooled_interval([1.0, 0.0], _draws([1.0, 0.0], 0.2)))


def test_false_findings_stay_below_the_stated_rate():
    """No true effect, training noise (sd 1 between seeds) far larger than test noise (shared draws, sd 0.1): a
    one-sided claim must be 'shown' in at most about 2.5 % of experiments, with 2 and with 3 replicates (the old
    two-stage bootstrap over 2-3 seeds gave 22 % and 12 %)."""
    rng = np.random.default_rng(7)
    for r in (2, 3):
        shown = 0
        for _ in range(2000):
            effects = rng.normal(0, 1, r)
            draws = effects[:, None] + rng.normal(0, 0.1, 100)[None, :]
            shown += decide(dict(enumerate(effects)), draws, direction=1).shown
        assert shown / 2000 < 0.035, (r, shown)


def test_without_draws_a_t_interval_over_seeds():
    v = decide({1: 1.0, 2: 2.0, 3: 3.0})
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert (v.low, v.high) == pytest.approx((2.0 - half, 2.0 + half))
    assert v.interval == "replicates"


def test_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        decide({})
    with pytest.raises(ValueError, match="direction"):
        decide({1: 1.0}, direction=2)
    with pytest.raises(ValueError, match="rows"):
        decide({1: 1.0, 2: 2.0}, np.zeros((3, 10)))


def test_metric_draws_match_the_metric_and_share_resamples():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 20)
    probas = [rng.dirichlet(np.ones(7), len(y)) for _ in range(2)]
    probas[1][np.arange(len(y)), y] += 2.0  # replicate 2 is far better
    probas = [p / p.sum(1, keepdims=True) for p in probas]
    groups = np.arange(len(y)) // 2  # two images per lesion
    values, draws = metric_draws(y, probas, "balanced_accuracy", groups=groups, n_boot=200)
    for p, v in zip(probas, values):
        assert v == pytest.approx(metrics.headline(y, p)["balanced_accuracy"])
    assert draws.shape == (2, 200)
    effects, eff_draws = effect_draws(y, [probas[1]], [probas[0]], groups=groups, n_boot=200)
    assert effects[0] == pytest.approx(100 * (values[1] - values[0]))
    # paired: the difference's draws are the difference of the shared resamples' draws
    np.testing.assert_allclose(eff_draws[0], 100 * (draws[1] - draws[0]), equal_nan=True)
    with pytest.raises(ValueError, match="same replicates"):
        effect_draws(y, probas, [probas[0]])


def test_holm_known_answer():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    # sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1, made monotone
    assert adj == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})


def test_a_replicate_without_a_value_is_not_settled():
    """A model that calls every image one class has no contrast gap (NaN): the verdict says so, never 'shown'."""
    v = decide({1: float("nan"), 2: -12.0}, np.vstack([np.full(50, np.nan), np.full(50, -12.0)]), direction=-1)
    assert v.status == NOT_SETTLED and "1 of 2 replicates have no value" in v.why
    assert v.mean == -12.0 and v.k == 1 and not math.isfinite(v.low)
    assert v.as_dict()["per_seed"]["1"] != v.as_dict()["per_seed"]["1"]  # NaN kept (JSON: null via jsonable)


def test_verdicts_forest_draws_every_replicate_and_marks_shown():
    from hamviz.plots import verdicts_forest
    shown = decide({42: 3.0, 43: 3.5, 44: 2.5}, None, direction=1)
    open_ = decide({42: 1.0, 43: -2.0, 44: 0.5}, None)
    assert shown.shown and not open_.shown
    verdicts = {k: {"question": k, **v.as_dict()} for k, v in (("a", shown), ("b", open_))}
    fig = verdicts_forest(verdicts)
    replicates = [t for t in fig.data if t.marker.symbol == "circle-open"]
    means = [t for t in fig.data if str(t.marker.symbol).startswith("diamond")]
    assert [sorted(t.x) for t in replicates] == [[2.5, 3.0, 3.5], [-2.0, 0.5, 1.0]]
    assert [t.marker.symbol for t in means] == ["diamond", "diamond-open"]  # filled only when shown
    assert means[0].x[0] == pytest.approx(3.0) and means[0].error_x.array[0] == pytest.approx(shown.high - 3.0)
    with pytest.raises(ValueError, match="no verdicts"):
        verdicts_forest({})


def test_interval_is_cut_to_what_the_effect_can_take():
    """Three replicates at a Bonferroni-corrected level: the t factor (about 18 with 2 degrees of freedom) reaches
    past -100 points for a difference of two rates; with ``bounds`` the interval stops at the limit, the verdict
    is unchanged, and the chapter's verdict() bounds "points" and "%" by default."""
    per_seed = {42: -43.2, 43: -30.7, 44: -32.8}
    wide = decide(per_seed, alpha=0.05 / 16)
    assert wide.low < -100 < wide.high < 100
    cut = decide(per_seed, alpha=0.05 / 16, bounds=(-100, 100))
    assert cut.low == -100 and cut.high == wide.high and cut.status == wide.status == "not settled"
    level = decide({0: 96.0, 1: 99.0, 2: 90.0}, null=25, bounds=(0, 100))
    assert level.high == 100 and decide({0: 96.0, 1: 99.0, 2: 90.0}, null=25).high > 100


def test_chapter_verdicts_are_bounded_by_their_units(tmp_path):
    from hamviz.chapters.base import Chapter
    ch = Chapter("joint", {}, tmp_path / "joint.json")
    per_seed = {42: -43.2, 43: -30.7, 44: -32.8}
    assert ch.verdict("a", "rates", per_seed, alpha=0.05 / 16).low == -100
    assert ch.verdict("b", "colour", per_seed, alpha=0.05 / 16, units="dE2000").low < -100
    assert ch.verdict("c", "level", {0: 96.0, 1: 99.0, 2: 90.0}, null=25, units="%").high == 100


def test_compression_costs_are_a_fixed_sequence_per_method_from_the_lowest_rate(tmp_path):
    """Known answers: JPEG q1 costs 40 points in every replicate (shown), q5 flips sign between replicates (not
    shown), so q50 is not tested although its numbers say a cost; K-means: both shown. Each method at 0.05 / 2."""
    from hamviz.chapters.base import Chapter
    from hamviz.chapters.compression import verdicts
    ch = Chapter("compression", {}, tmp_path / "compression.json")
    rng = np.random.default_rng(0)

    def effect(values):
        return {"per_seed": dict(zip((42, 43, 44), values)),
                "draws": np.array(values)[:, None] + rng.normal(0, 0.5, (3, 200))}
    effects = {"JPEG q1": effect([-40, -41, -39]), "JPEG q5": effect([-3, 2, -1]), "JPEG q50": effect([-9, -10, -9]),
               "K-means K=2": effect([-30, -31, -29]), "K-means K=64": effect([-8, -9, -8.5])}
    rates_ = {"JPEG q1": ("JPEG", "q1", 0.2), "JPEG q5": ("JPEG", "q5", 0.5), "JPEG q50": ("JPEG", "q50", 2.0),
              "K-means K=2": ("K-means", "K=2", 1.0), "K-means K=64": ("K-means", "K=64", 6.0)}
    table, _ = verdicts(ch, effects, rates_)
    said = table.set_index("setting")["costs accuracy"].to_dict()
    assert said["q1"].endswith("shown") and "not settled" in said["q5"] and said["q50"] == "not tested"
    assert said["K=2"].endswith("shown") and said["K=64"].endswith("shown")
    v = ch.record["verdicts"]
    assert v["cost: JPEG q50"]["status"] == "not settled" and "stopped at JPEG q5" in v["cost: JPEG q50"]["why"]
    assert v["cost: JPEG q50"]["k"] == 3  # its numbers are recorded all the same
    assert all(x["level"] == pytest.approx(1 - 0.05 / 2) for k, x in v.items() if k.startswith("cost: "))


def test_replicate_dots_show_each_seed_and_the_mean():
    import pandas as pd

    from hamviz.plots import replicate_dots
    t = pd.DataFrame({"recipe": ["a", "a", "a", "b", "b", "b"], "seed": [42, 43, 44] * 2,
                      "val": [0.5, 0.6, 0.7, 0.2, 0.3, 0.1], "test": [0.4, 0.5, 0.9, 0.3, 0.3, 0.3]})
    fig = replicate_dots(t, "recipe", ["val", "test"], order=["b", "a"])
    bars = [d for d in fig.data if d.type == "bar"]
    dots = [d for d in fig.data if d.type == "scatter"]
    assert [list(b.x) for b in bars] == [["b", "a"]] * 2
    np.testing.assert_allclose(bars[0].y, [0.2, 0.6]) and np.testing.assert_allclose(bars[1].y, [0.3, 0.6])
    assert len(dots) == 2 and all(len(d.y) == 6 for d in dots) and list(dots[0].customdata) == [42, 43, 44] * 2
    with pytest.raises(KeyError, match="seed"):
        replicate_dots(t.drop(columns="seed"), "recipe", ["val"])


def test_joint_replicate_metrics_are_each_seeds_own():
    from hamviz.chapters.joint import replicate_metrics
    labels = np.array([0, 1, 2, 1])
    right = np.eye(7)[labels]
    wrong = np.eye(7)[[1, 1, 1, 1]]
    reps = [{"seed": 42, "proba": {"classifier alone": right, "joint 3x": wrong}},
            {"seed": 43, "proba": {"classifier alone": wrong, "joint 3x": right}}]
    t = replicate_metrics(reps, labels).set_index(["model", "seed"])
    assert t.loc[("classifier alone", 42), "accuracy"] == 1.0 and t.loc[("joint 3x", 42), "accuracy"] == 0.5
    assert t.loc[("classifier alone", 43), "balanced_accuracy"] == pytest.approx(1 / 3)  # class 1 of three present


def test_a_verdict_on_fewer_replicates_than_the_profile_says_so(tmp_path):
    """The main model trained twice (main_replicates: 2) under a profile of 3 replicates: every chapter's verdict
    that pairs with it rests on 2 and says so; a verdict on all 3 carries no label; main_replicates null follows
    the classifier chapter's replicates."""
    from hamviz.chapters.base import Chapter
    from hamviz.chapters.classifier import main_seeds
    from hamviz.params import chapter_params
    profile = {"seed": 42, "image_size": 64, "replicates": 3, "chapters": {"classifier": {"main_replicates": 2}}}
    ch = Chapter("joint", chapter_params(profile, "joint"), tmp_path / "joint.json", profile=profile)
    assert ch.seeds == [42, 43, 44] and main_seeds(ch) == [42, 43]
    two = ch.verdict("a", "q", {42: -5.0, 43: -6.0})
    label = "rests on 2 replicates, not the profile's 3: the main model is trained 2 times"
    assert label in two.text() and label in ch.record["verdicts"]["a"]["text"]
    three = ch.verdict("b", "q", {42: -5.0, 43: -6.0, 44: -5.5})
    assert three.fewer == "" and "rests on" not in three.text()
    assert "not the profile's 3" in ch.answers().loc["q", "holds in"].iloc[0]
    same = {**profile, "chapters": {"classifier": {"replicates": 2}}}
    ch2 = Chapter("joint", chapter_params(same, "joint"), tmp_path / "j2.json", profile=same)
    assert main_seeds(ch2) == [42, 43]
    assert ch2.verdict("a", "q", {42: -5.0, 43: -6.0}).fewer == "rests on 2 replicates, not the profile's 3"
