"""Replicated training and the rule that turns replicates into a verdict.

One trained model is a measurement, not a finding: on HAM10000 the training seed alone moves a recipe's balanced
accuracy by several points, and the same seed trains a different model on another CPU type. A verdict the book
states (A beats B, X costs N points) is therefore computed from ``N`` replicates — the same recipe trained with
the training seeds :func:`replicate_seeds` on the same lesion-grouped split — and decided by :func:`decide`:

- the **effect** of each replicate (e.g. balanced accuracy of JPEG q50 minus uncompressed, in points), paired by
  seed where the verdict compares two models;
- **holds in k of N**: the replicates whose effect lies on the claimed side of ``null`` (no effect, or a margin
  such as "within 2 points");
- a **95 % interval** that covers training seeds *and* test sampling (:func:`pooled_interval`): the t interval
  of the mean over the N seeds (with 2 or 3 replicates the t factor is large, as it must be) combined in
  quadrature with the lesion-bootstrap interval of the replicates' mean (the same lesion resample for every
  replicate and both arms of a comparison: Davison & Hinkley, *Bootstrap Methods and their Application*, 1997,
  sec. 3.8, for clustered data);
- **shown** when the effect holds in every replicate (or in the majority the caller states in advance) *and* the
  pooled interval excludes ``null`` on the claimed side; otherwise **not settled**. One replicate is never a
  finding: its verdict is "not settled (one replicate)".

:func:`metric_draws` and :func:`effect_draws` give the per-replicate values and their bootstrap draws for the
headline metrics (:mod:`hamviz.metrics`); :func:`holm` corrects a chapter's family of p-values.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from .metrics import bootstrap_weights, check_inputs, weighted_metrics
from .registry import CLASSES

#: the words a verdict's status takes
SHOWN, NOT_SETTLED = "shown", "not settled"


def replicate_seeds(seed: int, n: int) -> list[int]:
    """The training seeds of ``n`` replicates of a recipe whose profile seed is ``seed``: seed, seed+1, ...
    (replicate 0 is the model a single-replicate profile trains, so the store keeps it). Raises ValueError for
    n < 1."""
    if int(n) < 1:
        raise ValueError(f"replicates must be at least 1, not {n}")
    return [int(seed) + r for r in range(int(n))]


def _weights(n: int, n_boot: int, seed: int, groups) -> np.ndarray:
    return bootstrap_weights(n, int(n_boot), np.random.default_rng(seed), groups)


def metric_draws(y, probas: Sequence[np.ndarray], metric: str = "balanced_accuracy", *, groups=None,
                 n_boot: int = 1000, seed: int = 0, classes: Sequence[str] = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """A headline ``metric`` (:data:`hamviz.metrics.HEADLINE`) of each replicate's class probabilities on one test
    set: ``y`` (N,) integer labels, ``probas`` R arrays (N, K). Returns (values (R,), draws (R, B)): the metric on
    the whole set, and on the same B bootstrap resamples of the images — of lesions when ``groups`` (N,) are
    given — for every replicate (NaN where a resample lacks a class a class-averaged metric needs).
    Raises ValueError on mismatched shapes or an unknown metric."""
    ys, ps = zip(*(check_inputs(y, p, classes) for p in probas)) if len(probas) else ((), ())
    if not ps:
        raise ValueError("metric_draws needs at least one replicate's probabilities")
    yy = ys[0]
    present = np.bincount(yy, minlength=len(classes)) > 0
    W = _weights(len(yy), n_boot, seed, groups)
    one = np.ones((1, len(yy)))
    values = np.array([weighted_metrics(yy, p, one, [metric], present=present)[metric][0] for p in ps])
    draws = np.stack([weighted_metrics(yy, p, W, [metric], present=present)[metric] for p in ps])
    return values, draws


def effect_draws(y, probas_a: Sequence[np.ndarray], probas_b: Sequence[np.ndarray] | None = None,
                 metric: str = "balanced_accuracy", *, scale: float = 100.0, groups=None, n_boot: int = 1000,
                 seed: int = 0, classes: Sequence[str] = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """The paired effect ``scale`` x (metric of A - metric of B) per replicate (A and B of one replicate share its
    seed), on one test set, with its draws on shared lesion resamples (:func:`metric_draws`); without
    ``probas_b`` the effect is ``scale`` x the metric of A. ``scale`` 100: points. Returns (effects (R,),
    draws (R, B)). Raises ValueError when A and B hold different numbers of replicates."""
    va, da = metric_draws(y, probas_a, metric, groups=groups, n_boot=n_boot, seed=seed, classes=classes)
    if probas_b is None:
        return scale * va, scale * da
    if len(probas_b) != len(probas_a):
        raise ValueError(f"a paired effect needs the same replicates on both sides: {len(probas_a)} vs "
                         f"{len(probas_b)}")
    vb, db = metric_draws(y, probas_b, metric, groups=groups, n_boot=n_boot, seed=seed, classes=classes)
    return scale * (va - vb), scale * (da - db)


def mean_difference_draws(a: Sequence[np.ndarray], b: Sequence[np.ndarray] | None = None, *, groups=None,
                          n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The mean over test images of a per-image difference ``a - b`` (or of ``a`` alone), per replicate: ``a``,
    ``b`` hold R arrays (N,) (e.g. each replicate's per-image boundary share, or Grad-CAM correlation, of two
    settings; NaN left out). Returns (means (R,), draws (R, B)): the mean on the data and on B bootstrap resamples
    of the lesions (``groups``, (N,)), the same resamples for every replicate. Raises ValueError on lengths that
    differ."""
    a = [np.asarray(x, dtype=float) for x in a]
    d = a if b is None else [x - np.asarray(y, dtype=float) for x, y in zip(a, b, strict=True)]
    n = len(d[0])
    if any(len(x) != n for x in d):
        raise ValueError("every replicate's per-image values must cover the same images")
    W = np.vstack([np.ones(n), bootstrap_weights(n, int(n_boot), np.random.default_rng(seed), groups)])
    out = []
    for x in d:
        ok = ~np.isnan(x)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((W * ok) @ np.where(ok, x, 0.0) / (W * ok).sum(1))
    out = np.vstack(out)
    return out[:, 0], out[:, 1:]


def pooled_interval(values, draws: np.ndarray, *, alpha: float = 0.05,
                    bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """The 95 % (1 - ``alpha``) interval of the mean effect over replicates, covering training seeds and test
    sampling: ``values`` (R,) each replicate's effect on the whole test set, ``draws`` (R, B) the same effects on B
    lesion resamples shared by all rows. Two half-widths combined in quadrature: the t interval of the mean over
    the R seeds (t with R - 1 degrees of freedom times sd / sqrt(R): with 2 or 3 replicates the seeds' spread is
    poorly known, and the t factor says so) and the lesion-bootstrap percentile interval of the replicates' mean
    (each side measured from the mean). With one replicate the interval covers test sampling only. Columns with a
    NaN are skipped; (nan, nan) when no column is usable or a replicate has no value. ``bounds`` (lowest, highest)
    cuts the interval to what the quantity can take (a rate in [0, 1]: with 2 or 3 replicates the t factor
    otherwise reaches past it; a confidence interval intersected with the parameter space keeps its coverage)."""
    from scipy import stats
    v = np.asarray(values, dtype=np.float64)
    d = np.atleast_2d(np.asarray(draws, dtype=np.float64))
    d = d[:, np.isfinite(d).all(axis=0)]
    if d.size == 0 or not np.isfinite(v).all():
        return math.nan, math.nan
    mean = float(v.mean())
    lo_q, hi_q = np.quantile(d.mean(axis=0), [alpha / 2, 1 - alpha / 2])
    seeds = stats.t.ppf(1 - alpha / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
    low, high = mean - math.hypot(seeds, max(mean - lo_q, 0.0)), mean + math.hypot(seeds, max(hi_q - mean, 0.0))
    if bounds is not None:
        low, high = max(low, float(bounds[0])), min(high, float(bounds[1]))
    return low, high


def _spread_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Without bootstrap draws: the t interval of the mean over replicates (training seeds only)."""
    from scipy import stats
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(1 - alpha / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


@dataclass
class Verdict:
    """One verdict from N replicates (:func:`decide`). ``per_seed``: training seed -> effect; ``direction``
    +1 (the claim: effect > null) or -1 (effect < null); ``k`` of ``n`` replicates on the claimed side;
    ``low``/``high``: the pooled 95 % interval; ``status``: "shown" or "not settled"; ``why``: what decided it;
    ``fewer``: "" or why it rests on fewer replicates than the profile asks for (e.g. the main model's own count),
    which :meth:`text` says beside k of N."""

    per_seed: dict
    mean: float
    sd: float
    minimum: float
    maximum: float
    low: float
    high: float
    k: int
    n: int
    direction: int
    null: float
    needed: int
    status: str
    why: str
    units: str = "points"
    interval: str = "replicates x lesions"
    level: float = 0.95
    fewer: str = ""

    @property
    def level_text(self) -> str:
        """"" for a 95 % interval; " (98.3 % interval)" for a corrected one."""
        return "" if abs(self.level - 0.95) < 1e-9 else f" ({100 * self.level:.3g} % interval)"

    @property
    def shown(self) -> bool:
        return self.status == SHOWN

    def effect_text(self, digits: int = 1) -> str:
        """"-7.7 points [-11.2, -4.1]" (mean over replicates and its pooled interval)."""
        u = f" {self.units}" if self.units else ""
        if not math.isfinite(self.low):
            return f"{self.mean:+.{digits}f}{u} (no interval)"
        return f"{self.mean:+.{digits}f}{u} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]{self.level_text}"

    def text(self, digits: int = 1) -> str:
        """The verdict in one line: effect with its interval, the per-seed range, k of N and the status."""
        spread = (f", replicates {self.minimum:+.{digits}f} to {self.maximum:+.{digits}f}"
                  if self.n > 1 and math.isfinite(self.minimum) else "")
        if not math.isfinite(self.mean):
            return f"no value in any replicate: {self.status}"
        fewer = f" ({self.fewer})" if self.fewer else ""
        return f"{self.effect_text(digits)}{spread}; holds in {self.k} of {self.n}{fewer}: {self.status}"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["per_seed"] = {str(s): float(v) for s, v in self.per_seed.items()}
        for k in ("mean", "sd", "minimum", "maximum", "low", "high"):
            out[k] = None if not math.isfinite(out[k]) else float(out[k])
        return out


def decide(per_seed: Mapping[int, float], draws=None, *, null: float = 0.0, direction: int | None = None,
           majority: int | None = None, alpha: float = 0.05, units: str = "points",
           bounds: tuple[float, float] | None = None) -> Verdict:
    """The verdict rule. ``per_seed``: training seed -> the replicate's effect; ``draws`` (R, B): each replicate's
    effect on shared lesion resamples (rows in ``per_seed``'s order; :func:`effect_draws`), or None (the interval
    then covers training seeds only: a t interval over replicates). ``direction``: the claim stated in advance,
    +1 "effect > null" or -1 "effect < null"; None: the side of the mean (a two-sided question). ``majority``:
    how many replicates must agree (default all; stated in advance, more than half). ``bounds``: (lowest,
    highest) value the effect can take (e.g. -100, +100 for a difference of two rates in points): the interval is
    cut to it (a confidence interval intersected with the parameter space keeps its coverage; with 2 or 3
    replicates and a corrected level, the t factor can otherwise reach past what the metric allows).

    "shown" when at least ``majority`` replicates lie on the claimed side of ``null`` and the pooled interval
    excludes ``null`` on that side; "not settled" otherwise, and always with one replicate.
    Raises ValueError for no replicates, a direction other than +1/-1, or a majority of half or less."""
    seeds = list(per_seed)
    values = np.array([float(per_seed[s]) for s in seeds])
    n = len(values)
    if n == 0:
        raise ValueError("a verdict needs at least one replicate")
    if direction not in (None, 1, -1):
        raise ValueError(f"direction must be +1, -1 or None, not {direction!r}")
    needed = n if majority is None else int(majority)
    if not n / 2 < needed <= n:
        raise ValueError(f"majority must be more than half of the {n} replicates and at most {n}, not {majority}")
    finite = np.isfinite(values)
    mean = float(np.nanmean(values)) if finite.any() else math.nan
    side = direction if direction is not None else (1 if not mean < null else -1)
    k = int(((values - null) * side > 0).sum())
    if draws is not None:
        draws = np.atleast_2d(np.asarray(draws, dtype=np.float64))
        if draws.shape[0] != n:
            raise ValueError(f"draws has {draws.shape[0]} rows for {n} replicates")
        low, high = pooled_interval(values, draws, alpha=alpha)
        interval = "replicates x lesions" if n > 1 else "lesions"
    else:
        low, high = _spread_interval(values, alpha)
        interval = "replicates"
    if bounds is not None and math.isfinite(low):
        low, high = max(low, float(bounds[0])), min(high, float(bounds[1]))
    excludes = math.isfinite(low) and ((low > null) if side > 0 else (high < null))
    word = {1: "above", -1: "below"}[side]
    if n == 1:
        status, why = NOT_SETTLED, "one replicate: training noise not measured"
    elif not finite.all():
        status, why = NOT_SETTLED, (f"{n - finite.sum()} of {n} replicates have no value (e.g. a model that gives "
                                    "every image one class)")
    elif k < needed:
        status, why = NOT_SETTLED, f"only {k} of {n} replicates {word} {null:g} (needed {needed})"
    elif not excludes:
        status, why = NOT_SETTLED, f"the interval includes {null:g}"
    else:
        status, why = SHOWN, f"{k} of {n} replicates {word} {null:g} and the interval excludes it"
    ok = values[finite]
    return Verdict({s: float(v) for s, v in zip(seeds, values)}, mean,
                   float(ok.std(ddof=1)) if len(ok) > 1 else (0.0 if len(ok) else math.nan),
                   float(ok.min()) if len(ok) else math.nan, float(ok.max()) if len(ok) else math.nan, low, high, k, n,
                   side, float(null), needed, status, why, units, interval, 1 - alpha)


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (Holm 1979, "A simple sequentially rejective multiple
    test procedure"): name -> adjusted p (monotone, at most 1). Controls the family-wise error rate."""
    names = sorted(pvalues, key=lambda k: pvalues[k])
    m, running, out = len(names), 0.0, {}
    for i, name in enumerate(names):
        running = max(running, min(1.0, (m - i) * float(pvalues[name])))
        out[name] = running
    return {k: out[k] for k in pvalues}
