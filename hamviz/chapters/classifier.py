"""The classifier chapter (``02_classifier``): configs from the profile, the main model, honest evaluation (test
part only for test numbers, lesion-grouped bootstrap intervals), the strategy x model grid (Zhang's Table 4), the
leak audit, the gallery of mistakes and the external test set. Other chapters reuse :func:`main_model`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import evaluate, with_interval
from ..registry import CLASSES
from ..training import Artefact, TrainConfig, train_classifier, train_frozen_head
from ..view import PreparedView

TRANSFER_OPTIONS = ("weights", "trainable", "head", "dense", "dropout", "l2")


def config(P: dict, **over) -> TrainConfig:
    """The TrainConfig of the chapter parameters ``P`` (flat), with ``over`` replacing fields."""
    model = over.pop("model", P["model"])
    options = {} if model == "small_cnn" else {k: P[k] for k in TRANSFER_OPTIONS}
    if model == "small_cnn" and P.get("l2"):
        options["l2"] = P["l2"]
    cfg = dict(model=model, model_options=options, image_size=P["image_size"], strategy=P["strategy"],
               optimizer=P["optimizer"], learning_rate=P["learning_rate"], clipnorm=P["clipnorm"],
               schedule=P["schedule"], epochs=P["epochs"], patience=P["patience"],
               batch_size=P["batch_size"], augment=P["augment"], train_limit=P["train_limit"],
               seed=P["seed"], head_warmup=P["head_warmup"], head_learning_rate=P["head_learning_rate"],
               tta_flips=P["tta_flips"], select_on=P["select_on"])
    if not (options.get("weights") and options.get("head") == "simple"):
        cfg["head_warmup"] = 0  # a two-stage recipe needs a pretrained backbone: the grid's other models skip it
    cfg.update(over)
    return TrainConfig(**cfg)


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


def _grid_row(s: PreparedView, t: Artefact, model: str, strategy: str) -> dict:
    ev = evaluate(s.labels[t.rows["test"]], t.proba["test"], CLASSES, n_boot=0)
    h = ev["headline"]
    return {"model": model, "strategy": strategy, "image_size": s.size,
            "epochs_run": len(t.history["loss"]), "train_seconds": round(t.seconds),
            **{k: h[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")},
            **{f"{m}_{c}": ev["report"][c][name] for m, name in (("precision", "precision"), ("recall", "recall"),
                                                                 ("f1", "f1-score")) for c in CLASSES}}


def grid(ch, P: dict, log=print) -> tuple[pd.DataFrame, dict]:
    """Test metrics of every (model, strategy) of ``P['grid']``: the reference Table 4, with per-class precision,
    recall and F1 (columns ``precision_<class>`` ...). With ``grid.frozen_head``, each strategy also on the main
    model's head alone over its pretrained backbone's cached frozen features at the main model's size (model
    "<backbone> frozen head"), where fine-tuning five times would take too long on a CPU. ``grid.settings[model]``
    sets that model's own optimizer, learning rate, schedule, epochs, patience, batch size and L2 (the reference
    trained its CNN and its transfer models differently).

    Returns (table, runs): one table row per run, and ``runs[(model, strategy)] = (view, artefact)`` for the
    figures (:func:`best_strategies`' confusion matrices, :func:`curves_by_strategy`)."""
    g = P["grid"]
    size = g.get("image_size") or P["image_size"]
    s = ch.view(size)
    rows, runs = [], {}
    for model in g.get("models", [P["model"]]):
        own = dict((g.get("settings") or {}).get(model, {}))  # the reference's protocol for this model
        Pm = {**P, **own}
        for strategy in g.get("strategies", ["S1"]):
            cfg = config(Pm, model=model, strategy=strategy, image_size=size,
                         epochs=own.get("epochs") or g.get("epochs") or P["epochs"])
            t = train_classifier(cfg, s, log=log)
            rows.append(_grid_row(s, t, model, strategy))
            runs[model, strategy] = (s, t)
    if g.get("frozen_head"):
        s_main = ch.view(P["image_size"])
        for strategy in g.get("strategies", ["S1"]):
            t = train_frozen_head(config(P, strategy=strategy), s_main, log=log)
            name = f"{P['model']} frozen head"
            rows.append(_grid_row(s_main, t, name, strategy))
            runs[name, strategy] = (s_main, t)
    return pd.DataFrame(rows), runs


def best_strategies(table: pd.DataFrame) -> pd.DataFrame:
    """Each grid model's row with the highest test balanced accuracy (ties: the first strategy listed), in the
    table's model order: the runs whose confusion matrices the reference shows."""
    best = table.loc[table.groupby("model", sort=False)["balanced_accuracy"].idxmax()]
    return best.reset_index(drop=True)


def curves_by_strategy(runs: dict, model: str, strategies=("S3", "S5")) -> dict[str, dict]:
    """strategy -> training history of ``model`` for each of ``strategies`` the grid ran (the reference compares
    S3's and S5's curves); empty when the grid ran fewer than two of them."""
    found = {st: runs[model, st][1].history for st in strategies if (model, st) in runs}
    return found if len(found) >= 2 else {}


def leak_audit_models(ch, P: dict, t: Artefact, log=print) -> tuple[Artefact, Artefact, PreparedView, str]:
    """The pair the leak audit compares: (model on the lesion-grouped split, the same config on the image-level
    split, the image-level view, its label). ``leak_audit: true`` retrains the main model ``t`` on the image-level
    split; ``frozen_head`` compares the main model's head alone on cached frozen features on both splits."""
    cfg = config(P)
    s_img = ch.view(P["image_size"], grouped=False)
    if P["leak_audit"] == "frozen_head":
        grouped = train_frozen_head(cfg, ch.view(P["image_size"]), log=log)
        return grouped, train_frozen_head(cfg, s_img, log=log), s_img, f"{cfg.label} head on frozen features"
    return t, train_classifier(cfg, s_img, log=log), s_img, cfg.label


def leak_audit(grouped: dict, image_level: dict) -> pd.DataFrame:
    """Test metrics of the same model on the lesion-grouped and the image-level split, and the inflation."""
    keys = ["accuracy", "balanced_accuracy", "macro_f1", "macro_auc"]
    g = {k: grouped["test"]["headline"][k] for k in keys}
    i = {k: image_level["test"]["headline"][k] for k in keys}
    table = pd.DataFrame({"lesion-grouped split": g, "image-level split": i})
    table["inflation (points)"] = 100 * (table["image-level split"] - table["lesion-grouped split"])
    return table


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


def external(P: dict, t: Artefact, n_boot: int = 1000):
    """Every metric on the external test set named by ``P['external_test']`` (ISIC 2018 layout)."""
    from ..cache import build_cache
    from ..external import load_isic2018
    from ..training import predict
    ds = load_isic2018(P["external_test"], on_corrupt=P["on_corrupt"])
    # the resize mode of training (stretch/crop/pad): another collection's sizes and aspect ratios get the same
    cache = build_cache(ds, t.config.image_size, mode=P["resize"], on_corrupt=P["on_corrupt"], masks=False)
    meta = ds.meta.set_index("image_id").loc[cache.image_ids]
    labels = meta["label"].to_numpy()
    proba = predict(t.model, np.asarray(cache.images), flips=t.config.tta_flips)
    # lesion ids where the distribution gives them (Dataverse's CSV): the bootstrap then resamples lesions
    groups = meta["lesion_id"].to_numpy() if (meta["lesion_id"] != meta.index).any() else None
    return evaluate(labels, proba, CLASSES, groups=groups, n_boot=n_boot, seed=P["seed"]), ds


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
