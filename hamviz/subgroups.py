"""Whom the classifier fails: its test metrics per patient subgroup, from HAM10000's metadata.

HAM10000 records each image's patient age, sex, body site (``localization``) and how the diagnosis was confirmed
(``dx_type``: histopathology, follow-up, expert consensus or confocal microscopy). :func:`subgroup_columns` turns
them into groups (age bands, body sites with too few lesions pooled as "other", histopathology vs not);
:func:`subgroup_table` scores a model per group with lesion-bootstrap intervals, and says "too few lesions"
rather than print a number for a small group; :func:`gap_draws` gives the gap between two groups on shared
resamples (paired), for the chapter's verdict over replicates.

A gap between groups is read against their class mix: in HAM10000 age, body site and confirmation type go with the
diagnosis (every follow-up lesion is a naevus), and balanced accuracy within a group averages over the classes
present in that group only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .clinical import binary_rates
from .metrics import bootstrap_weights, check_inputs, weighted_metrics
from .registry import CLASSES

#: age bands (years): lower edges of the bands after the first
AGE_EDGES = (30, 50, 70)
#: the subgroup attributes, in the order tables show them
ATTRIBUTES = ("sex", "age", "body site", "diagnosis confirmed by")
#: the metrics :func:`subgroup_table` reports, in points
METRICS = ("balanced_accuracy", "macro_auc", "mel_sensitivity", "mel_specificity")
LABELS = {"balanced_accuracy": "balanced accuracy", "macro_auc": "macro AUC",
          "mel_sensitivity": "melanoma sensitivity", "mel_specificity": "melanoma specificity"}


def age_band(age, edges: Sequence[int] = AGE_EDGES) -> pd.Series:
    """Age in years -> "<30", "30-49", "50-69", ">=70" (with the default ``edges``); missing -> "unknown"."""
    a = pd.to_numeric(pd.Series(age), errors="coerce").to_numpy()
    names = [f"<{edges[0]}"] + [f"{lo}-{hi - 1}" for lo, hi in zip(edges[:-1], edges[1:])] + [f">={edges[-1]}"]
    idx = np.searchsorted(np.asarray(edges), a, side="right")
    return pd.Series(np.where(np.isnan(a), "unknown", np.asarray(names, dtype=object)[np.minimum(idx, len(edges))]))


def subgroup_columns(meta: pd.DataFrame, min_site_lesions: int = 100) -> pd.DataFrame:
    """One column per attribute of :data:`ATTRIBUTES` for the rows of ``meta`` (HAM10000 metadata: lesion_id, sex,
    age, localization, dx_type). Body sites with fewer than ``min_site_lesions`` lesions in ``meta`` are pooled
    as "other" (decided on the metadata alone, never on a model's results); missing or "unknown" values are
    "unknown". Raises ValueError naming a missing column."""
    need = {"lesion_id", "sex", "age", "localization", "dx_type"}
    missing = sorted(need - set(meta.columns))
    if missing:
        raise ValueError(f"subgroups need the metadata columns {missing}; HAM10000_metadata.csv has them")
    def clean(col):
        v = meta[col].astype("string").str.strip().fillna("unknown")
        return v.where(v != "", "unknown").astype(object)
    site = clean("localization")
    lesions = meta.assign(site=site.to_numpy()).groupby("site")["lesion_id"].nunique()
    small = set(lesions[lesions < min_site_lesions].index) - {"unknown"}
    confirmed = meta["dx_type"].astype(str).str.strip().map(lambda v: "histopathology" if v == "histo" else
                                                            "follow-up, consensus or confocal")
    return pd.DataFrame({"sex": clean("sex").to_numpy(), "age": age_band(meta["age"]).to_numpy(),
                         "body site": site.map(lambda s: "other" if s in small else s).to_numpy(),
                         "diagnosis confirmed by": confirmed.to_numpy()}, index=meta.index)


def group_metrics(y, proba, W, classes: Sequence[str] = CLASSES) -> dict[str, np.ndarray]:
    """The :data:`METRICS` of one group's images in points, under weightings ``W`` (B, N) (row 0 all ones for the
    value on the data): balanced accuracy and macro AUC over the classes present in the group, melanoma
    sensitivity and specificity (argmax decision). Returns {metric: (B,)}, NaN where undefined (no melanoma, or a
    resample without a class)."""
    y, p = check_inputs(y, proba, classes)
    out = {m: 100 * v for m, v in weighted_metrics(y, p, W, ["balanced_accuracy", "macro_auc"]).items()}
    mel = list(classes).index("mel")
    rates = binary_rates(W, y == mel, p.argmax(axis=1) == mel)
    out.update(mel_sensitivity=100 * rates["sensitivity"], mel_specificity=100 * rates["specificity"])
    return out


def group_order(group) -> tuple:
    """Tables list age bands youngest first, other groups by name, "other" and "unknown" last."""
    name = str(group)
    if name in ("other", "unknown"):
        return (2, name)
    band = name.lstrip("<>=").split("-")[0]
    return (0, int(band) - (1 if name.startswith("<") else 0), name) if band.isdigit() else (1, name)


def subgroup_table(y, probas: Sequence[np.ndarray], groups: pd.DataFrame, lesions, *, min_lesions: int = 20,
                   n_boot: int = 1000, seed: int = 0, classes: Sequence[str] = CLASSES) -> pd.DataFrame:
    """A model's test metrics per subgroup: ``y`` (N,) labels, ``probas`` each replicate's test probabilities (R
    arrays (N, K); one array for one model), ``groups`` (N rows, one column per attribute:
    :func:`subgroup_columns`), ``lesions`` (N,) lesion ids. Each group: its images, lesions and class mix, then each
    of :data:`METRICS` in points: the mean over replicates with its 95 % interval over training seeds and
    ``n_boot`` resamples of the group's lesions (:func:`hamviz.replicates.pooled_interval`, cut to [0, 100];
    lesions only with one replicate) and each replicate's value. A group with fewer than ``min_lesions`` lesions gets no
    numbers ("too few lesions"), a metric a group cannot define (no melanoma) none either. Returns a DataFrame indexed
    by (attribute, group)."""
    from .replicates import pooled_interval
    if isinstance(probas, np.ndarray) and probas.ndim == 2:
        probas = [probas]
    checked = [check_inputs(y, p, classes) for p in probas]
    y, ps = checked[0][0], [p for _, p in checked]
    lesions = np.asarray(lesions)
    rows = []
    for attr in groups.columns:
        col = groups[attr].to_numpy()
        for g in sorted(pd.unique(col), key=group_order):
            idx = np.flatnonzero(col == g)
            n_les = len(pd.unique(lesions[idx]))
            mix = np.bincount(y[idx], minlength=len(classes)) / len(idx)
            row = {"attribute": attr, "group": g, "images": len(idx), "lesions": n_les,
                   "class mix": ", ".join(f"{c} {100 * m:.0f} %" for c, m in zip(classes, mix) if m >= 0.005)}
            if n_les < min_lesions:
                rows.append({**row, "note": f"too few lesions for an interval (< {min_lesions})"})
                continue
            W = np.vstack([np.ones(len(idx)), bootstrap_weights(len(idx), int(n_boot), np.random.default_rng(seed),
                                                                lesions[idx])])
            per = [group_metrics(y[idx], p[idx], W, classes) for p in ps]
            for m in METRICS:
                values = np.array([r[m][0] for r in per])
                low, high = pooled_interval(values, np.vstack([r[m][1:] for r in per]), bounds=(0.0, 100.0))
                row.update({LABELS[m]: float(values.mean()), f"{LABELS[m]} low": low, f"{LABELS[m]} high": high,
                            f"{LABELS[m]} per replicate": [float(v) for v in values]})
            undefined = [m for m in METRICS if not np.isfinite(row[LABELS[m]])]
            rows.append({**row, "note": _undefined_note(undefined, y[idx], classes)})
    return pd.DataFrame(rows).set_index(["attribute", "group"])


def _undefined_note(metrics, y, classes) -> str:
    """Why a group has no value for ``metrics`` (undefined on its labels ``y``), as the table's note says it."""
    mel = list(classes).index("mel") if "mel" in classes else None
    why = []
    if mel is not None and any(m.startswith("mel") for m in metrics):
        why.append("no melanoma in this group: melanoma sensitivity undefined" if not (y == mel).any()
                   else "only melanoma in this group: melanoma specificity undefined")
    if any(not m.startswith("mel") for m in metrics):
        why.append("fewer than two classes: macro AUC undefined")
    return "; ".join(why)


def gap_draws(y, probas: Sequence[np.ndarray], column, a, b, lesions, metric: str = "balanced_accuracy", *,
              n_boot: int = 1000, seed: int = 0, classes: Sequence[str] = CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """The gap ``metric`` (points) of group ``a`` minus group ``b`` of one attribute (``column`` (N,) group names)
    for each replicate's test probabilities ``probas`` (R arrays (N, K)), and its draws on B resamples of the
    test lesions shared by both groups and every replicate (paired; :func:`hamviz.replicates.decide` takes them).
    Returns (gaps (R,), draws (R, B)). Raises ValueError for a group with no image."""
    col = np.asarray(column)
    ia, ib = np.flatnonzero(col == a), np.flatnonzero(col == b)
    if not len(ia) or not len(ib):
        raise ValueError(f"groups {a!r} and {b!r} need images; the attribute holds {sorted(set(col), key=str)}")
    W = np.vstack([np.ones(len(col)), bootstrap_weights(len(col), int(n_boot), np.random.default_rng(seed),
                                                        np.asarray(lesions))])
    gaps = [group_metrics(np.asarray(y)[ia], pr[ia], W[:, ia], classes)[metric]
            - group_metrics(np.asarray(y)[ib], pr[ib], W[:, ib], classes)[metric] for pr in probas]
    g = np.vstack(gaps)
    return g[:, 0], g[:, 1:]


def widest_gap(table: pd.DataFrame, attribute: str, metric: str = "balanced accuracy") -> tuple[str, str] | None:
    """The (highest, lowest) groups of ``attribute`` by ``metric`` among the groups of ``table``
    (:func:`subgroup_table`; a table of means over replicates) that have a value, "unknown" left out; None with
    fewer than two such groups."""
    if metric not in table:
        return None
    t = table.xs(attribute, level="attribute")[metric].dropna()
    t = t[t.index != "unknown"]
    if len(t) < 2:
        return None
    return str(t.idxmax()), str(t.idxmin())
