"""The classifier chapter (``02_classifier``): configs from the profile, the main model, honest evaluation (test
part only for test numbers, lesion-grouped bootstrap intervals), the strategy x model grid (Zhang's Table 4), the
leak audit, the gallery of mistakes and the external test set. Other chapters reuse :func:`main_model`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics import evaluate
from ..registry import CLASSES
from ..training import Artefact, TrainConfig, train_classifier
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


def parts_table(evals: dict) -> pd.DataFrame:
    """Headline metrics (rows: train/val/test), as in the reference works' metrics tables."""
    cols = ["n", "log_loss", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "ece"]
    return pd.DataFrame({p: {c: e["headline"].get(c) for c in cols} for p, e in evals.items()}).T


def main_model(ch, log=print) -> tuple[Artefact, PreparedView]:
    """The classifier chapter's main model (trained once, then loaded from the store) and its view: what the
    later chapters analyse. ``ch``: any running chapter (its profile's classifier section is used)."""
    P = ch.section("classifier")
    s = ch.view(P["image_size"])
    return train_classifier(config(P), s, log=log), s


def grid(ch, P: dict, log=print) -> pd.DataFrame:
    """Test metrics of every (model, strategy) of ``P['grid']``: the reference Table 4."""
    g = P["grid"]
    size = g.get("image_size") or P["image_size"]
    s = ch.view(size)
    rows = []
    for model in g.get("models", [P["model"]]):
        for strategy in g.get("strategies", ["S1"]):
            cfg = config(P, model=model, strategy=strategy, image_size=size,
                         epochs=g.get("epochs") or P["epochs"])
            t = train_classifier(cfg, s, log=log)
            ev = evaluate(s.labels[t.rows["test"]], t.proba["test"], CLASSES, n_boot=0)
            h = ev["headline"]
            rows.append({"model": model, "strategy": strategy, "image_size": size,
                         "epochs_run": len(t.history["loss"]), "train_seconds": round(t.seconds),
                         **{k: h[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")},
                         **{f"f1_{c}": ev["report"][c]["f1-score"] for c in CLASSES},
                         **{f"recall_{c}": ev["report"][c]["recall"] for c in CLASSES}})
    return pd.DataFrame(rows)


def leak_audit(grouped: dict, image_level: dict) -> pd.DataFrame:
    """Test metrics of the same model on the lesion-grouped and the image-level split, and the inflation."""
    keys = ["accuracy", "balanced_accuracy", "macro_f1", "macro_auc"]
    g = {k: grouped["test"]["headline"][k] for k in keys}
    i = {k: image_level["test"]["headline"][k] for k in keys}
    table = pd.DataFrame({"lesion-grouped split": g, "image-level split": i})
    table["inflation (points)"] = 100 * (table["image-level split"] - table["lesion-grouped split"])
    return table


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
    ds = load_isic2018(P["external_test"])
    cache = build_cache(ds, t.config.image_size, mode=P["resize"], on_corrupt=P["on_corrupt"], masks=False)
    labels = ds.meta.set_index("image_id").loc[cache.image_ids, "label"].to_numpy()
    proba = predict(t.model, np.asarray(cache.images), flips=t.config.tta_flips)
    return evaluate(labels, proba, CLASSES, n_boot=n_boot, seed=P["seed"]), ds
