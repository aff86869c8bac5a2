"""The classifier chapter (``02_classifier``): configs from the profile, the main model, honest evaluation (test
part only for test numbers, lesion-grouped bootstrap intervals), the strategy x model grid (Zhang's Table 4), the
leak audit, the gallery of mistakes and the external test set. Other chapters reuse :func:`main_model`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import evaluate, with_interval
from ..params import TRANSFER_OPTIONS  # the network options a backbone takes: one definition
from ..registry import CLASSES
from ..training import Artefact, TrainConfig, train_classifier, train_frozen_head
from ..view import PreparedView


def config(P: dict, **over) -> TrainConfig:
    """The TrainConfig of the chapter parameters ``P`` (flat), with ``over`` replacing fields."""
    model = over.pop("model", P["model"])
    options = {} if model == "small_cnn" else {k: P[k] for k in TRANSFER_OPTIONS  # the default scaling: no key
                                                if not (k == "input_scaling" and P[k] == "imagenet")}
    if model == "small_cnn" and P.get("l2"):
        options["l2"] = P["l2"]
    if not (options.get("weights") and options.get("head") in ("simple", "reference")):
        over.setdefault("head_warmup", 0)  # a two-stage recipe needs a pretrained backbone: the grid's others skip it
    return TrainConfig.from_params(P, model=model, model_options=options, **over)


def evaluate_parts(s: PreparedView, t: Artefact, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics of every split part; confidence intervals (lesion-grouped bootstrap) on the test part."""
    out = {}
    for part in ("train", "val", "test"):
        rows = t.rows[part]
        out[part] = evaluate(s.labels[rows], t.proba[part], CLASSES, groups=s.groups[rows],
                             n_boot=n_boot if part == "test" else 0, seed=seed)
    return out


def averaging_notes(evals: dict) -> list[str]:
    """"<part>: <note>" for every evaluate() result (by part or data set name) whose macro metrics average over
    fewer than all classes (:func:`hamviz.metrics.averaging_note`)."""
    from ..metrics import averaging_note
    return [f"{name}: {note}" for name, ev in evals.items() if (note := averaging_note(ev))]


def parts_table(evals: dict) -> pd.DataFrame:
    """Headline metrics (rows: train/val/test), as in the reference works' metrics tables."""
    cols = ["n", "log_loss", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece"]
    table = pd.DataFrame({p: {c: e["headline"].get(c) for c in cols} for p, e in evals.items()}).T
    return table.astype({"n": int})  # a count: shown as 1001, not 1001.000000


def main_model(ch, log=print) -> tuple[Artefact, PreparedView]:
    """The classifier chapter's main model (trained once, then loaded from the store) and its view: what the
    later chapters analyse. ``ch``: any running chapter (its profile's classifier section is used)."""
    P = ch.section("classifier")
    s = ch.view(P["image_size"])
    return train_classifier(config(P), s, log=log), s


def main_seeds(ch) -> list[int]:
    """The training seeds of the main model's replicates, the same in every chapter that runs ``ch``'s profile:
    ``chapters.classifier.main_replicates`` of them (null: the classifier chapter's ``replicates``), seed, seed+1,
    ... (:func:`hamviz.replicates.replicate_seeds`). A verdict pairing with the main model rests on these; when
    they are fewer than a chapter's own replicates, :meth:`Chapter.verdict` labels it."""
    from ..replicates import replicate_seeds
    P = ch.section("classifier")
    return replicate_seeds(P["seed"], P["main_replicates"] or P["replicates"] or 1)


def main_models(ch, log=print) -> tuple[list[Artefact], PreparedView]:
    """The main model's replicates, one per seed of :func:`main_seeds` (replicate 0 is :func:`main_model`), each
    trained once and then loaded from the store (the classifier chapter trains them first), and their view: what
    the verdicts about the main model use."""
    P = ch.section("classifier")
    s = ch.view(P["image_size"])
    return [train_classifier(config(P, seed=seed), s, log=log) for seed in main_seeds(ch)], s


def replicates_table(s: PreparedView, ts: list[Artefact], n_boot: int = 1000,
                     seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """One row per replicate of one recipe (``ts``, trained with different seeds on view ``s``): its seed, epochs
    run, kept epoch (and whether it is the last: training then may not have converged), validation and test
    balanced accuracy, test macro-F1 and macro AUC; then a row "mean [95 % interval]" whose intervals pool
    replicates and test lesions (:func:`hamviz.replicates.metric_draws`, :func:`pooled_interval`).
    Returns (table, record: {"per_seed": rows, "pooled": {metric: {"mean", "low", "high", "min", "max"}}})."""
    from ..replicates import metric_draws, pooled_interval
    rows = []
    for t in ts:
        val = evaluate(s.labels[t.rows["val"]], t.proba["val"], CLASSES, n_boot=0)["headline"]
        test = evaluate(s.labels[t.rows["test"]], t.proba["test"], CLASSES, n_boot=0)["headline"]
        epochs = len(t.history["loss"])
        rows.append({"seed": t.config.seed, "epochs run": epochs, "kept epoch": t.history["best_epoch"],
                     "kept the last epoch": t.history["best_epoch"] == epochs,
                     "val balanced_accuracy": val["balanced_accuracy"], "balanced_accuracy": test["balanced_accuracy"],
                     "macro_f1": test["macro_f1"], "macro_auc": test["macro_auc"]})
    test_rows = ts[0].rows["test"]
    pooled = {}
    for m in ("balanced_accuracy", "macro_f1", "macro_auc"):
        values, draws = metric_draws(s.labels[test_rows], [t.proba["test"] for t in ts], m,
                                     groups=s.groups[test_rows], n_boot=n_boot, seed=seed)
        low, high = pooled_interval(values, draws)
        low, high = max(low, 0.0), min(high, 1.0)  # a rate: the interval cut to what it can take
        pooled[m] = {"mean": float(values.mean()), "low": low, "high": high, "min": float(values.min()),
                     "max": float(values.max())}
    table = pd.DataFrame(rows).set_index("seed")
    table.index = table.index.map(lambda v: f"seed {v}")
    shown = table.astype(object)
    shown.loc["mean [95 % interval]"] = {**{c: "" for c in table.columns},
                                         **{m: with_interval(p["mean"], p["low"], p["high"])
                                            for m, p in pooled.items()}}
    return shown, {"per_seed": rows, "pooled": pooled}


def _grid_row(s: PreparedView, t: Artefact, model: str, strategy: str) -> dict:
    ev = evaluate(s.labels[t.rows["test"]], t.proba["test"], CLASSES, n_boot=0)
    val = evaluate(s.labels[t.rows["val"]], t.proba["val"], CLASSES, n_boot=0)["headline"]
    h = ev["headline"]
    return {"model": model, "strategy": strategy, "seed": t.config.seed, "image_size": s.size,
            "epochs_run": len(t.history["loss"]), "train_seconds": round(t.seconds),
            "val_balanced_accuracy": val["balanced_accuracy"],
            **{k: h[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")},
            **{f"{m}_{c}": ev["report"][c][name] for m, name in (("precision", "precision"), ("recall", "recall"),
                                                                 ("f1", "f1-score")) for c in CLASSES}}


def grid(ch, P: dict, log=print) -> tuple[pd.DataFrame, dict]:
    """Validation and test metrics of every (model, strategy) of ``P['grid']``, each trained once per replicate
    seed (:attr:`Chapter.seeds`): the reference Table 4, with per-class precision, recall and F1 (columns
    ``precision_<class>`` ...). With ``grid.frozen_head``, each strategy also on the main model's head alone over
    its pretrained backbone's cached frozen features at the main model's size (model "<backbone> frozen head"),
    where fine-tuning five times would take too long on a CPU. ``grid.augment`` replaces the main model's
    augmentation for the grid's models. ``grid.settings[model]`` sets that model's own
    optimizer, learning rate, schedule, epochs, patience, batch size and L2 (the reference trained its CNN and its
    transfer models differently).

    Returns (table, runs): one table row per run (model, strategy, seed), and ``runs[(model, strategy)]`` = the
    list of (view, artefact) of its replicates, replicate 0 first (figures: :func:`best_strategies`' confusion
    matrices, :func:`curves_by_strategy`; verdicts: :func:`strategy_effects`)."""
    g = P["grid"]
    size = g.get("image_size") or P["image_size"]
    s = ch.view(size)
    rows, runs = [], {}
    for model in g.get("models", [P["model"]]):
        own = dict((g.get("settings") or {}).get(model, {}))  # the reference's protocol for this model
        Pm = {**P, **({"augment": g["augment"]} if g.get("augment") else {}), **own}
        for strategy in g.get("strategies", ["S1"]):
            for seed in ch.seeds:
                cfg = config(Pm, model=model, strategy=strategy, image_size=size, seed=seed,
                             epochs=own.get("epochs") or g.get("epochs") or P["epochs"])
                t = train_classifier(cfg, s, log=log)
                rows.append(_grid_row(s, t, model, strategy))
                runs.setdefault((model, strategy), []).append((s, t))
    if g.get("frozen_head"):
        s_main = ch.view(P["image_size"])
        name = f"{P['model']} frozen head"
        for strategy in g.get("strategies", ["S1"]):
            for seed in ch.seeds:
                t = train_frozen_head(config(P, strategy=strategy, seed=seed), s_main, log=log)
                rows.append(_grid_row(s_main, t, name, strategy))
                runs.setdefault((name, strategy), []).append((s_main, t))
    return pd.DataFrame(rows), runs


GRID_SHOWN = ("val_balanced_accuracy", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc")


def grid_means(table: pd.DataFrame) -> pd.DataFrame:
    """The grid's replicates averaged: one row per (model, strategy) in the table's order, with the number of
    replicates and the mean and the range (min-max) over them of validation balanced accuracy and each test metric."""
    groups = table.groupby(["model", "strategy"], sort=False)
    means = groups[list(GRID_SHOWN)].mean()
    spread = groups["balanced_accuracy"].agg(lambda v: v.max() - v.min())
    spread = spread.rename("test balanced accuracy, range over replicates")
    out = means.join(spread)
    out.insert(0, "replicates", groups.size())
    return out.reset_index()


def best_strategies(table: pd.DataFrame) -> pd.DataFrame:
    """Each grid model's strategy with the highest **validation** balanced accuracy, averaged over replicates
    (ties: the first strategy listed), in the table's model order (Zhang shows the confusion matrices of its best
    CNN and best DenseNet201, chosen by test accuracy). The test part chooses nothing: its numbers are only reported."""
    means = grid_means(table)
    best = means.loc[means.groupby("model", sort=False)["val_balanced_accuracy"].idxmax()]
    return best.reset_index(drop=True)


def strategy_effects(runs: dict, best: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """For each grid model: its strategy chosen on validation (``best``) against no strategy (S1) — or, when S1
    is the one chosen, against the runner-up on validation — in test balanced accuracy points, paired by
    training seed, with each replicate's effect and its draws on shared lesion resamples
    (:func:`hamviz.replicates.effect_draws`). Returns [{"model", "chosen", "against", "per_seed", "draws"}];
    empty for a model with one strategy."""
    from ..replicates import effect_draws
    out = []
    for _, row in best.iterrows():
        model, chosen = row["model"], row["strategy"]
        others = [st for (m, st) in runs if m == model and st != chosen]
        if not others:
            continue
        if "S1" in others:
            against = "S1"
        else:
            val = {st: np.mean([_val_bacc(s, t) for s, t in runs[model, st]]) for st in others}
            against = max(others, key=lambda st: val[st])
        a, b = runs[model, chosen], runs[model, against]
        s = a[0][0]
        rows = a[0][1].rows["test"]
        effects, draws = effect_draws(s.labels[rows], [t.proba["test"] for _, t in a], [t.proba["test"] for _, t in b],
                                      groups=s.groups[rows], n_boot=n_boot, seed=seed)
        out.append({"model": model, "chosen": chosen, "against": against,
                    "per_seed": {t.config.seed: float(e) for (_, t), e in zip(a, effects)}, "draws": draws})
    return out


def _val_bacc(s: PreparedView, t: Artefact) -> float:
    return evaluate(s.labels[t.rows["val"]], t.proba["val"], CLASSES, n_boot=0)["headline"]["balanced_accuracy"]


def curves_by_strategy(runs: dict, model: str, strategies=("S3", "S5")) -> dict[str, dict]:
    """strategy -> training history of ``model``'s first replicate for each of ``strategies`` the grid ran
    (Zhang's Fig. 6 compares a model "with oversampling" and one "with both oversampling and weights"; which
    oversampling is not stated: here S3 and S5); empty when the grid ran fewer than two of them."""
    found = {st: runs[model, st][0][1].history for st in strategies if (model, st) in runs}
    return found if len(found) >= 2 else {}


def leak_audit_models(ch, P: dict, ts: list[Artefact], log=print) -> tuple[dict, dict, str]:
    """The models the leak audit compares, one per replicate seed of ``ts`` (the main model's replicates), the same
    config and seed on four splits: "grouped" (the lesion-grouped split), "siblings" (the same split with the
    other shots of test lesions moved into training, :meth:`~hamviz.view.PreparedView.with_siblings_in_training`:
    the same test images, paired), "image" (an image-level random split: its own test images) and "zhang" (Zhang et
    al.'s split as hamviz reads it, :meth:`~hamviz.view.PreparedView.with_single_image_holdout`: lesion-disjoint,
    validation and test drawn from single-image lesions, its own test images; left out, and said through ``log``,
    where the data have too few single-image lesions of some class). Returns
    (split -> list of artefacts, split -> view, the audited model's label). ``leak_audit: true`` retrains the
    main model on the other splits; ``frozen_head`` compares the main model's head alone on cached frozen
    features."""
    s = ch.view(P["image_size"])
    views = {"grouped": s, "siblings": s.with_siblings_in_training(P["seed"]),
             "image": ch.view(P["image_size"], grouped=False)}
    try:  # a data set of your own may have too few lesions photographed once for Zhang's split
        views["zhang"] = s.with_single_image_holdout(seed=P["seed"])
    except ValueError as exc:
        log(f"Zhang's split is left out of the leak audit: {exc}")
    models: dict = {k: [] for k in views}
    for t in ts:
        cfg = config(P, seed=t.config.seed)
        for k, v in views.items():
            if P["leak_audit"] == "frozen_head":
                models[k].append(train_frozen_head(cfg, v, log=log))
            else:
                models[k].append(t if k == "grouped" else train_classifier(cfg, v, log=log))
    label = f"{ts[0].config.label} head on frozen features" if P["leak_audit"] == "frozen_head" else ts[0].config.label
    return models, views, label


#: the leak audit's column of Zhang's split (:meth:`~hamviz.view.PreparedView.with_single_image_holdout`)
ZHANG_SPLIT = "Zhang's split (val/test: single-image lesions)"


def leak_audit(views: dict, models: dict, n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Test metrics of one recipe on the splits of :func:`leak_audit_models`, averaged over the replicates, and
    the inflation in points per metric with its 95 % interval over replicates and test lesions: paired ("siblings
    in training" minus "lesion-grouped" on the same test images, shared lesion resamples: the verdicts) and
    unpaired (the image-level split minus the lesion-grouped split, each on its own test part, resampled on its
    own). Also both paired arms on the test images whose lesion has shots in training, and, where ``views`` has
    "zhang", Zhang's split minus the lesion-grouped split (unpaired, each on its own test part: a different test
    population, not a leak). Returns (table: rows = metric; record: {metric: {"per_seed", "draws"}} of the paired
    inflation)."""
    from ..replicates import effect_draws, metric_draws, pooled_interval
    s, sib, img = views["grouped"], views["siblings"], views["image"]
    pos = np.searchsorted(s.rows["test"], sib.rows["test"])  # the shared test images in the grouped test part
    leaked = np.isin(sib.rows["test"], sib.rows["test_leaked"])
    y, g = sib.labels[sib.rows["test"]], sib.groups[sib.rows["test"]]
    rows, record = {}, {}
    for k in ["accuracy", "balanced_accuracy", "macro_f1", "macro_auc"]:
        pg = [m.proba["test"][pos] for m in models["grouped"]]
        ps = [m.proba["test"] for m in models["siblings"]]
        effects, draws = effect_draws(y, ps, pg, k, groups=g, n_boot=n_boot, seed=seed)
        low, high = pooled_interval(effects, draws)
        vg, dg = metric_draws(s.labels[s.rows["test"]], [m.proba["test"] for m in models["grouped"]], k,
                              groups=s.groups[s.rows["test"]], n_boot=n_boot, seed=seed)
        vi, di = metric_draws(img.labels[img.rows["test"]], [m.proba["test"] for m in models["image"]], k,
                              groups=img.groups[img.rows["test"]], n_boot=n_boot, seed=seed + 1)
        ulow, uhigh = pooled_interval(100 * (vi - vg), 100 * (di - dg))
        on = [metric_draws(y[leaked], [p[leaked] for p in arm], k, n_boot=1, seed=seed)[0].mean() for arm in (pg, ps)]
        rows[k] = {"grouped: shared test images": metric_draws(y, pg, k, n_boot=1)[0].mean(),
                   "siblings in training: shared test images": metric_draws(y, ps, k, n_boot=1)[0].mean(),
                   "paired inflation (points)": effects.mean(), "paired 95 % interval": f"[{low:+.1f}, {high:+.1f}]",
                   "grouped: images with shots in training": on[0], "siblings in training: those images": on[1],
                   "lesion-grouped split": vg.mean(), "image-level split": vi.mean(),
                   "unpaired inflation (points)": 100 * (vi - vg).mean(),
                   "unpaired 95 % interval": f"[{ulow:+.1f}, {uhigh:+.1f}]"}
        if "zhang" in views:
            z = views["zhang"]
            vz, dz = metric_draws(z.labels[z.rows["test"]], [m.proba["test"] for m in models["zhang"]], k,
                                  groups=z.groups[z.rows["test"]], n_boot=n_boot, seed=seed + 2)
            zlow, zhigh = pooled_interval(100 * (vz - vg), 100 * (dz - dg))
            rows[k] |= {ZHANG_SPLIT: vz.mean(), "Zhang's split minus lesion-grouped (points)": 100 * (vz - vg).mean(),
                        "its 95 % interval": f"[{zlow:+.1f}, {zhigh:+.1f}]"}
        record[k] = {"per_seed": {m.config.seed: float(e) for m, e in zip(models["grouped"], effects)}, "draws": draws}
    return pd.DataFrame.from_dict(rows, orient="index"), record


def has_frozen_head(P: dict) -> bool:
    """Whether the profile's main model has a frozen-feature stage (a pretrained backbone, head "simple", at least
    one head epoch): what the leak audit's frozen heads and the metadata comparison train."""
    from ..training import frozen_head_problem
    return frozen_head_problem(config(P)) is None


def metadata_models(ch, P: dict, ts: list[Artefact], log=print) -> tuple[dict, list[str]]:
    """The head on the frozen backbone's features alone and the same head on the features plus the one-hot
    metadata (:func:`hamviz.metadata.metadata_matrix`: age, sex, body site), one of each per replicate seed of
    ``ts``, same rows, strategy and seed. Returns ({"image": artefacts, "image + metadata": artefacts}, the
    metadata columns)."""
    from ..metadata import metadata_matrix
    s = ch.view(P["image_size"])
    matrix, names = metadata_matrix(s.meta)
    models: dict = {"image": [], "image + metadata": []}
    for t in ts:
        cfg = config(P, seed=t.config.seed)
        models["image"].append(train_frozen_head(cfg, s, log=log))
        models["image + metadata"].append(train_frozen_head(cfg, s, extra=("metadata", matrix), log=log))
    return models, names


def metadata_effects(s: PreparedView, models: dict, n_boot: int = 1000, seed: int = 0,
                     alpha: float = 0.05) -> tuple[pd.DataFrame, dict]:
    """Test metrics of :func:`metadata_models`' two heads (means over replicates) and the paired difference
    (image + metadata minus image) in points per metric, its 1 - ``alpha`` interval over replicates and test
    lesions and its draws on shared lesion resamples. Returns (table: rows = metric; {metric: {"per_seed",
    "draws"}})."""
    from ..replicates import effect_draws, metric_draws, pooled_interval
    test = models["image"][0].rows["test"]
    y, g = s.labels[test], s.groups[test]
    rows, record = {}, {}
    for k in ("balanced_accuracy", "macro_f1", "macro_auc"):
        pm, pi = [m.proba["test"] for m in models["image + metadata"]], [m.proba["test"] for m in models["image"]]
        effects, draws = effect_draws(y, pm, pi, k, groups=g, n_boot=n_boot, seed=seed)
        low, high = pooled_interval(effects, draws, alpha=alpha, bounds=(-100.0, 100.0))
        rows[k] = {"image features": metric_draws(y, pi, k, n_boot=1)[0].mean(),
                   "image features + metadata": metric_draws(y, pm, k, n_boot=1)[0].mean(),
                   "difference (points)": effects.mean(),
                   f"{100 * (1 - alpha):.1f} % interval": f"[{low:+.1f}, {high:+.1f}]",
                   "per replicate": ", ".join(f"{e:+.1f}" for e in effects)}
        record[k] = {"per_seed": {m.config.seed: float(e) for m, e in zip(models["image"], effects)}, "draws": draws}
    return pd.DataFrame.from_dict(rows, orient="index"), record


def tuned_decision(s: PreparedView, t: Artefact, objective: str = "macro_f1", n_boot: int = 1000,
                   seed: int = 0, max_drop: float | None = None) -> tuple[pd.DataFrame, dict]:
    """The main model's test metrics under plain argmax and under argmax after per-class weights fitted on the
    VALIDATION part to maximise ``objective`` (:func:`hamviz.metrics.decision_weights`; the test part is only
    scored); with ``max_drop`` (a fraction) a third rule, fitted the same way but keeping the other metric
    (balanced accuracy when tuning macro-F1) on validation at most ``max_drop`` below argmax's.
    Returns (table: one row per rule, n and each metric "value [low, high]" with 95 % lesion-bootstrap
    intervals; record: "objective", "max_drop", "tuned_rule" (the last row: the rule the profile asks for),
    "weights" {rule: {class: weight}}, and per rule its validation and test headline and test intervals)."""
    from ..metrics import METRIC_LABELS, decision_weights, other_objective, reweight
    val, test = t.rows["val"], t.rows["test"]
    other = other_objective(objective)
    name = f"weights tuned on validation for {METRIC_LABELS[objective]}"
    weights = {name: decision_weights(s.labels[val], t.proba["val"], objective, CLASSES)}
    if max_drop is not None:
        bound = "no lower than" if max_drop == 0 else f"no more than {100 * max_drop:g} points below"
        floored = f"{name}, {METRIC_LABELS[other]} {bound} argmax's"
        weights[floored] = decision_weights(s.labels[val], t.proba["val"], objective, CLASSES, max_drop=max_drop)
    evals, record = {}, {"objective": objective, "max_drop": max_drop, "tuned_rule": list(weights)[-1],
                         "weights": {r: dict(zip(CLASSES, map(float, w))) for r, w in weights.items()}}
    rules = {"argmax": lambda p: p, **{r: (lambda p, w=w: reweight(p, w)) for r, w in weights.items()}}
    for rule, f in rules.items():
        evals[rule] = evaluate(s.labels[test], f(t.proba["test"]), CLASSES, groups=s.groups[test],
                               n_boot=n_boot, seed=seed)
        record[rule] = {"val": evaluate(s.labels[val], f(t.proba["val"]), CLASSES, n_boot=0)["headline"],
                        "test": evals[rule]["headline"], "test_ci": evals[rule]["ci"]}
    table = side_by_side(evals, ("accuracy", "balanced_accuracy", "macro_f1"))
    table.index.name = "decision rule"
    return table, record


def decision_effects(s: PreparedView, ts: list[Artefact], objective: str = "macro_f1", max_drop: float | None = None,
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """The tuned decision rule against argmax over the main model's replicates ``ts``: for each replicate, weights
    fitted on its own VALIDATION part (the last rule of :func:`tuned_decision`: under ``max_drop`` when given), and
    the test effect in points on ``objective`` and on the other metric (macro-F1 <-> balanced accuracy), paired by
    seed on shared lesion resamples. Returns {metric: {"per_seed", "draws"}}."""
    from ..metrics import decision_weights, other_objective, reweight
    from ..replicates import effect_draws
    val, test = ts[0].rows["val"], ts[0].rows["test"]
    tuned = [reweight(t.proba["test"], decision_weights(s.labels[val], t.proba["val"], objective, CLASSES,
                                                         **({} if max_drop is None else {"max_drop": max_drop})))
             for t in ts]
    out = {}
    for m in (objective, other_objective(objective)):
        effects, draws = effect_draws(s.labels[test], tuned, [t.proba["test"] for t in ts], m,
                                      groups=s.groups[test], n_boot=n_boot, seed=seed)
        out[m] = {"per_seed": {t.config.seed: float(e) for t, e in zip(ts, effects)}, "draws": draws}
    return out


def misclassified(s: PreparedView, t: Artefact, n: int = 16):
    """The ``n`` most confident mistakes on the test part: (images, captions)."""
    rows = t.rows["test"]
    proba = t.proba["test"]
    pred = proba.argmax(1)
    wrong = np.flatnonzero(pred != s.labels[rows])
    order = wrong[np.argsort(-proba[wrong, pred[wrong]])][:n]
    images = [np.asarray(s.cache.images[rows[i]]) for i in order]
    captions = [f"{s.cache.image_ids[rows[i]]}: true {CLASSES[s.labels[rows[i]]]}, "
                f"predicted {CLASSES[pred[i]]} ({proba[i, pred[i]]:.2f})" for i in order]
    return images, captions


def external(P: dict, t: Artefact, n_boot: int = 1000, ham=None, log=print):
    """Every metric on the external test set named by ``P['external_test']`` (ISIC 2018 layout), scored on its
    images that are independent of the HAM10000 data in use (``ham``, default: the profile's data, ``P['data_dir']``):
    images also in it (by image id, or with the same decoded pixels under another name) are found before anything
    is scored, and left out, stop the run or are kept as ``P['external_overlap']`` says
    (:func:`hamviz.external.independent_of`), said through ``log``. Returns (evaluate()'s result with
    ``external_overlap``: how many external images there were, how many were independent, how many were left out;
    the data set scored)."""
    from ..cache import build_cache
    from ..data import load_ham10000
    from ..external import independent_of, load_isic2018, overlap_note
    from ..training import predict
    ds = load_isic2018(P["external_test"], on_corrupt=P["on_corrupt"])
    if ham is None:
        ham = load_ham10000(P.get("data_dir"), masks=False, on_missing=P.get("on_missing", "error"),
                            on_corrupt=P.get("on_corrupt", "error"))
    ds, overlap = independent_of(ds, ham, P.get("external_overlap", "drop"))
    if note := overlap_note(overlap):
        log(("Warning: " if overlap["on_overlap"] == "keep" else "Note: ") + note)
    # the resize mode of training (stretch/crop/pad): another collection's sizes and aspect ratios get the same
    cache = build_cache(ds, t.config.image_size, mode=P["resize"], on_corrupt=P["on_corrupt"], masks=False)
    meta = ds.meta.set_index("image_id").loc[cache.image_ids]
    labels = meta["label"].to_numpy()
    proba = predict(t.model, np.asarray(cache.images), flips=t.config.tta_flips)
    # lesion ids where the distribution gives them (Dataverse's CSV): the bootstrap then resamples lesions
    groups = meta["lesion_id"].to_numpy() if (meta["lesion_id"] != meta.index).any() else None
    ev = evaluate(labels, proba, CLASSES, groups=groups, n_boot=n_boot, seed=P["seed"])
    ev["external_overlap"] = overlap  # recorded with the chapter's external numbers: how many were independent
    return ev, ds


def side_by_side(evals: dict, metrics=("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")) -> pd.DataFrame:
    """One row per named evaluate() result (e.g. the HAM10000 test part and an external test set): n, and each
    metric as "value [low, high]" with its 95% bootstrap interval where the result has one; columns named by
    the field's terms (:data:`hamviz.metrics.METRIC_LABELS`: "balanced accuracy", "macro-F1", ...)."""
    from ..metrics import METRIC_LABELS
    rows = {}
    for name, ev in evals.items():
        n = ev["headline"].get("n")
        row = {"n": None if n is None else int(n)}
        for m in metrics:
            v, ci = ev["headline"].get(m), (ev.get("ci") or {}).get(m)
            shown = "n/a" if v is None else with_interval(v, ci["low"], ci["high"]) if ci else f"{v:.3f}"
            row[METRIC_LABELS.get(m, m)] = shown
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def with_intervals(table: pd.DataFrame, names, digits: int = 1, scale: float = 1.0) -> pd.DataFrame:
    """``table`` with each of ``names`` shown as "value [low, high]" (from its ``<name> low`` / ``<name> high``
    columns, times ``scale``), "n/a" where it has none; the interval and per-replicate columns dropped."""
    out = table.copy()
    for n in names:
        if n not in out:
            continue
        out[n] = [with_interval(v * scale, lo * scale, hi * scale, digits) if pd.notna(v) else "n/a"
                  for v, lo, hi in zip(out[n], out[f"{n} low"], out[f"{n} high"])]
    return out.drop(columns=[c for c in out if c.endswith((" low", " high", " per replicate"))])


def subgroup_report(s: PreparedView, ts: list[Artefact], n_boot: int = 1000, seed: int = 0, min_lesions: int = 20,
                    min_site_lesions: int = 200) -> tuple[pd.DataFrame, dict]:
    """The main model's test metrics per subgroup (:func:`hamviz.subgroups.subgroup_table`, over the replicates
    ``ts``; body sites with fewer than ``min_site_lesions`` lesions in the whole data set pooled as "other"), and
    per attribute the widest gap in balanced accuracy (groups with an interval, "unknown" left out) with each
    replicate's gap and its draws on shared lesion resamples (:func:`hamviz.subgroups.gap_draws`). Returns
    (table, {attribute: {"pair", "groups", "per_seed", "draws"}})."""
    from ..subgroups import ATTRIBUTES, gap_draws, subgroup_columns, subgroup_table, widest_gap
    test = ts[0].rows["test"]
    cols = subgroup_columns(s.meta, min_site_lesions).iloc[test]
    probas = [t.proba["test"] for t in ts]
    table = subgroup_table(s.labels[test], probas, cols, s.groups[test], min_lesions=min_lesions, n_boot=n_boot,
                           seed=seed)
    gaps = {}
    for attr in ATTRIBUTES:
        pair = widest_gap(table, attr)
        if pair is None:
            continue
        values = table.xs(attr, level="attribute")["balanced accuracy"].dropna()
        effects, draws = gap_draws(s.labels[test], probas, cols[attr].to_numpy(), *pair, s.groups[test],
                                   n_boot=n_boot, seed=seed)
        gaps[attr] = {"pair": pair, "groups": int((values.index != "unknown").sum()),
                      "per_seed": {t.config.seed: float(e) for t, e in zip(ts, effects)}, "draws": draws}
    return table, gaps



# ------------------------------------------------------------------------------------------------ export
def _markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """``table`` as a Markdown table (index as the first column; floats at ``digits`` decimals)."""
    from ..metrics import field_name

    def cell(v):
        if isinstance(v, tuple):  # a MultiIndex row: "sex: female"
            return ": ".join(str(x) for x in v)
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    head = [table.index.name or ""] + [field_name(str(c).replace(" ", "_")) if "_" in str(c) else str(c)
                                       for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([cell(i)] + [cell(v) for v in row]) + " |"
              for i, row in zip(table.index, table.itertuples(index=False))]
    return "\n".join(lines)


def _metrics_markdown(ev: dict) -> str:
    """An evaluate() result's headline metrics with their lesion-bootstrap 95 % intervals, as Markdown."""
    from ..metrics import METRIC_LABELS
    rows = {METRIC_LABELS[m]: with_interval(ev["headline"][m], ev["ci"][m]["low"], ev["ci"][m]["high"])
            if (ev.get("ci") or {}).get(m) else f"{ev['headline'][m]:.3f}"
            for m in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece")}
    return _markdown(pd.DataFrame({"value [95 % interval]": rows}).rename_axis("metric"))


def model_card(ch, s: PreparedView, ts: list[Artefact], log=print) -> str:
    """The model card (Markdown) of the main model's replicate 0 (``ts[0]``; ``ts``: every replicate, view ``s``):
    data and split, training recipe, test metrics of replicate 0 and over the replicates with their intervals,
    the external test set's, the subgroup table, intended use and the licences of the data and the weights."""
    from ..subgroups import LABELS, METRICS
    P, t = ch.params, ts[0]
    cfg, prov = t.config, ch.record["provenance"]
    n = {p: len(t.rows[p]) for p in ("train", "val", "test")}
    lesions = {p: len(set(s.groups[t.rows[p]])) for p in n}
    ev = evaluate_parts(s, t, n_boot=P["n_boot"], seed=P["seed"])["test"]
    reps, _ = replicates_table(s, ts, n_boot=P["n_boot"], seed=P["seed"])
    sub, _ = subgroup_report(s, ts, n_boot=P["n_boot"], seed=P["seed"])
    sub = with_intervals(sub.drop(columns="class mix"), [LABELS[m] for m in METRICS])
    if P["external_test"]:
        ext, ext_ds = external(P, t, n_boot=P["n_boot"], ham=ch.data, log=log)
        external_text = (f"{len(ext_ds):,} images of {P['external_test']} (ISIC 2018 Task 3 layout), replicate 0, "
                         f"lesion-bootstrap 95 % intervals where the set gives lesion ids:\n\n{_metrics_markdown(ext)}")
    else:
        external_text = ("None given (profile: `chapters.classifier.external_test` is null): every number above "
                         "is from HAM10000's held-out lesions, one collection; expect lower numbers elsewhere.")
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in ("model_options",)}
    recipe.update({f"model_options.{k}": v for k, v in cfg.model_options.items()})
    return "\n\n".join([
        f"# Model card: {cfg.model} at {cfg.image_size}x{cfg.image_size}, HAM10000's seven classes",
        "**Research use only. Not for clinical use**: not a medical device, not validated on patients, not for "
        "diagnosing or excluding skin cancer.",
        "## Model\n" + _markdown(pd.DataFrame({"value": {
            "classes (output order)": ", ".join(s.classes), "input": f"RGB {cfg.image_size}x{cfg.image_size}, "
            f"pixels 0-255, images resized with '{s.resize}'", "test-time flips": str(cfg.tta_flips),
            "replicate exported": f"seed {cfg.seed} (replicate 0 of {len(ts)})",
            "kept epoch": f"{t.history['best_epoch']} of {len(t.history['loss'])}",
            "artefact key": t.key, "hamviz": prov.get("hamviz"), "commit": str(prov.get("git_commit")),
            "profile": f"{P['profile']} ({ch.profile['_source']})"}}).rename_axis("")),
        "## Training recipe\n" + _markdown(pd.DataFrame({"value": {k: str(v) for k, v in recipe.items()}})
                                           .rename_axis("setting")),
        f"## Data and split\nHAM10000 (Tschandl et al. 2018, doi:10.1038/sdata.2018.161): {len(s.image_ids):,} "
        f"images, data fingerprint {s.fingerprint}. Split grouped by lesion_id (no lesion in two parts), "
        f"fractions {P['split']['fractions']}, seed {P['seed']}: train {n['train']:,} images ({lesions['train']:,} "
        f"lesions), validation {n['val']:,} ({lesions['val']:,}), test {n['test']:,} ({lesions['test']:,}). "
        f"The kept epoch was chosen on validation ({cfg.select_on}); the test part chose nothing.",
        "## Test part (held-out lesions)\nReplicate 0 (the exported model), 95 % intervals by bootstrap over "
        f"test lesions:\n\n{_metrics_markdown(ev)}\n\nEvery replicate (same recipe and split, training seeds "
        f"{', '.join(str(x.config.seed) for x in ts)}); the last row's intervals cover training seeds and test "
        f"lesions:\n\n{_markdown(reps)}",
        f"## External test set\n{external_text}",
        "## Subgroups (test part)\nMean over replicates [95 % interval over seeds and test lesions]; groups with "
        "too few lesions for an interval are marked so, not given a number.\n\n" + _markdown(sub),
        "## Intended use and limits\nResearch on dermatoscopic images like HAM10000's: comparing methods, teaching, "
        "studying failure modes. HAM10000 comes from two sites (Vienna, Austria, and Queensland, Australia), "
        "67 % naevi; body site and age are associated with the diagnosis in it. "
        "The model has not been tested on other populations, devices or clinical photographs, and no threshold "
        "here was fitted for a clinical decision.",
        "## Licences\nData: HAM10000 is CC BY-NC-SA 4.0 (non-commercial, attribution, share-alike); a model "
        "trained on it carries those terms as far as they apply to it: cite Tschandl et al. 2018. Pretrained "
        f"weights: {cfg.model} files {t.meta.get('weights') or 'as recorded by the store'}; "
        "their own licence applies (Google's EfficientNet-Lite0 ImageNet checkpoint, the default, is Apache-2.0). "
        "hamviz itself: see its repository.",
    ]) + "\n"


def export(ch, dest, log=print):
    """Write the main model (replicate 0 of the profile's classifier section, from the store) to the export
    folder ``dest`` (:func:`hamviz.deploy.write_export`) with its model card (:func:`model_card`). ``ch``: the
    classifier chapter started on the profile (:func:`hamviz.chapters.base.start`). Raises DeployError when
    ``dest`` is not new or empty (checked first) or when the book has not trained the replicates yet."""
    from ..deploy import DeployError, check_destination, write_export
    from ..training import TrainingError
    dest = check_destination(dest)
    P = ch.params
    s = ch.view(P["image_size"])
    try:
        ts = [train_classifier(config(P, seed=seed), s, stored_only=True, log=log) for seed in main_seeds(ch)]
    except TrainingError as exc:
        raise DeployError(f"{exc}. The {P['profile']} profile's main model is trained by the book: run "
                          f"`hamviz book --profile {ch.profile['_source']} --only classifier` (same data), then "
                          f"export again") from None
    card = model_card(ch, s, ts, log=log)
    source = {"profile": P["profile"], "artefact": ts[0].key, "seed": ts[0].config.seed,
              "data_fingerprint": s.fingerprint, "split": s.split_id}
    return write_export(dest, ts[0].model, image_size=s.size, resize=s.resize, tta_flips=ts[0].config.tta_flips,
                        classes=s.classes, source=source, card=card)
