"""The Grad-CAM and ensemble chapter (``06_explain``): binary benign/malignant members (Zhang's small CNN, the best
CNNs of a recorded random search, optionally ImageNet backbones; Bunu et al.), combiners fitted on validation
only, the operating threshold for a target sensitivity, an optimiser comparison at equal budget, and how far
Grad-CAM maps (Selvaraju et al. 2017) move as JPEG quality drops.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import ensemble as ens
from .. import gradcam
from ..metrics import with_interval
from ..registry import BINARY_CLASSES, CLASSES
from ..search import SEARCH_SPACE, random_search
from ..training import Artefact, TrainConfig, predict, train_classifier
from ..view import PreparedView

#: ``balancing`` -> the imbalance strategy of the binary members: class weights (S4), or the malignant class repeated
#: up to the benign count with on-the-fly augmentation of every repeat (S3: oversample to the majority).
BALANCING = {"class_weights": "S4", "oversample": "S3"}


def binary_view(s: PreparedView, malignant) -> PreparedView:
    """The view with 0/1 labels (1 = malignant: the classes in ``malignant``); its split id keys binary models
    apart from the 7-class ones."""
    y = ens.binary_labels(s.labels, malignant, s.classes)
    return s.relabel(y, f"binary:{','.join(sorted(malignant))}", BINARY_CLASSES)


def member(b: PreparedView, model: str, options: dict, P: dict, *, epochs=None, optimizer=None, seed=None,
           fixed_budget: bool = False, head_warmup: int = 0, log=print) -> Artefact:
    """One binary member on the binary view ``b``, trained once (``P["balancing"]``: class weights, or the
    malignant class oversampled to the benign count; the chapter's augmentation) and stored. ``epochs`` (default
    ``P["member_epochs"]``) is a maximum: early stopping (``P["patience"]``) and a learning-rate plateau schedule apply,
    unless ``fixed_budget``: then every run trains exactly ``epochs`` epochs at a constant learning rate (what a
    comparison of optimisers or search trials needs to be fair). ``head_warmup`` > 0: two stages, the head alone on the
    pretrained backbone's cached frozen features for that many epochs, then ``epochs`` with the ``trainable`` layers
    unfrozen (Bunu et al.'s InceptionV3). ``P``'s optimizer, learning_rate and clipnorm apply unless ``optimizer`` is
    given (a transfer member's own settings come in ``P``: :func:`transfer_member`)."""
    n = epochs or P["member_epochs"]
    cfg = TrainConfig(model=model, model_options=dict(options), image_size=b.size,
                      strategy=BALANCING[P.get("balancing", "class_weights")],
                      optimizer=optimizer or P["optimizer"], learning_rate=P["learning_rate"],
                      clipnorm=P["clipnorm"], epochs=n, patience=n if fixed_budget else P["patience"],
                      schedule="none" if fixed_budget else "plateau", batch_size=P["batch_size"],
                      train_limit=P["train_limit"], head_warmup=head_warmup, augment=dict(P["augment"]),
                      seed=P["seed"] if seed is None else seed)
    return train_classifier(cfg, b, log=log)


def transfer_member(ch, spec: dict, P: dict, log=print, seed: int | None = None) -> tuple[str, Artefact]:
    """(name, member) for one ``transfer_members`` entry: its backbone at its own ``image_size`` (default the
    profile's) on the binary view of that size (the same lesion-grouped split: the same rows), trained for its
    ``epochs`` (default ``member_epochs``) after its ``head_warmup``, with its own ``optimizer``,
    ``learning_rate`` and ``clipnorm`` where it names them (default the chapter's); every other key is a network
    option (weights, trainable, head, dense, dropout, l2, input_scaling)."""
    from ..params import MEMBER_TRAINING_KEYS
    spec = dict(spec)
    name = spec.pop("model")
    train = {k: spec.pop(k) for k in MEMBER_TRAINING_KEYS if k in spec}
    b = binary_view(ch.view(train.get("image_size")), P["malignant"])
    own = {k: train[k] for k in ("optimizer", "learning_rate", "clipnorm") if k in train}  # Bunu: per member
    return name, member(b, name, spec, {**P, **own}, epochs=train.get("epochs"),
                        head_warmup=train.get("head_warmup", 0), seed=seed, log=log)


def members(ch, b: PreparedView, P: dict, trials: pd.DataFrame, t: Artefact | None, seed: int,
            log=print) -> dict[str, Artefact]:
    """The ensemble's members of one replicate, each trained with the training ``seed`` (the weak member with
    seed + 1) on the binary view ``b``: the main model ``t`` (that replicate's; P(malignant) summed), the
    reference small CNN, the ``search_members`` best configurations of the random search ``trials`` (the search
    is run once; its winners are retrained per seed), the ``cnn_members`` as the profile states them, the
    transfer members and the weak member, as the profile asks. Name -> Artefact."""
    out = {}
    if P["main_member"] and t is not None:
        out[f"main model ({t.config.label}, P(malignant) summed)"] = main_member(t, b, P["malignant"])
    if P["reference_member"]:
        out["reference CNN"] = member(b, "small_cnn", {}, P, seed=seed, log=log)
    for _, row in trials.dropna(subset=["val_auc"]).head(P["search_members"]).iterrows():
        opts, opt, lr = member_options(row)
        out[f"search CNN #{int(row.name)}"] = member(b, "configurable_cnn", opts, {**P, "learning_rate": lr},
                                                     optimizer=opt, seed=seed, log=log)
    for spec in P.get("cnn_members") or []:  # CNNs built as the profile states them (Bunu's two)
        spec = dict(spec)
        name, own = spec.pop("name"), {k: spec.pop(k) for k in ("optimizer", "learning_rate") if k in spec}
        out[f"CNN {name}"] = member(b, "configurable_cnn", spec, {**P, **own}, seed=seed, log=log)
    for spec in P["transfer_members"]:  # each at its own image_size, if it names one
        name, out[name] = transfer_member(ch, spec, P, log=log, seed=seed)
    if P["weak_member"]:
        out["weak CNN (1 epoch)"] = member(b, "small_cnn", {}, P, epochs=1, seed=seed + 1, log=log)
    return out


def ensemble_effect(results: list[dict], seeds, groups_test=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """The best combiner (chosen on validation) minus the best member (chosen on validation) in test AUC points,
    per replicate (``results``: :func:`evaluate_ensemble` of each replicate's members), on shared lesion
    resamples of the test part (:func:`hamviz.ensemble.bootstrap_aucs`). Returns {"per_seed", "draws"}."""
    per_seed, draws = {}, []
    for sd, r in zip(seeds, results):
        p = r["test_probs"]
        boots = ens.bootstrap_aucs(r["y_test"], np.stack([p[r["best"]], p[r["best_member"]]]), groups_test,
                                   n_boot, seed)
        per_seed[sd] = 100 * r["best_vs_best_member"]["difference"]
        draws.append(100 * (boots[:, 0] - boots[:, 1]))
    return {"per_seed": per_seed, "draws": np.vstack(draws)}


def operating_point(results: list[dict], groups_test=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Sensitivity and specificity of each replicate's best combiner at its validation threshold (the target
    sensitivity), with the replicates' mean and a 95 % interval over replicates and test lesions
    (:func:`hamviz.replicates.pooled_interval`). Returns {"sensitivity"|"specificity": {"mean", "low", "high",
    "per_seed"}} (fractions)."""
    from ..metrics import bootstrap_weights
    from ..replicates import pooled_interval
    out = {}
    y = results[0]["y_test"]
    W = bootstrap_weights(len(y), n_boot, np.random.default_rng(seed), groups_test)
    for name, cls in (("sensitivity", 1), ("specificity", 0)):
        values, draws = [], []
        for r in results:
            hit = (r["test_probs"][r["best"]] >= r["reports"][r["best"]]["at_target"]["threshold"]) == (cls == 1)
            mask = (y == cls).astype(float)
            values.append(float((hit * mask).sum() / mask.sum()))
            with np.errstate(invalid="ignore", divide="ignore"):
                draws.append((W @ (hit * mask)) / (W @ mask))
        low, high = pooled_interval(values, np.vstack(draws))
        out[name] = {"mean": float(np.mean(values)), "low": low, "high": high, "per_seed": values}
    return out


def main_member(t: Artefact, b: PreparedView, malignant) -> Artefact:
    """The classifier chapter's main (7-class) model ``t`` as a binary member: P(malignant) = the sum of its
    probabilities of the ``malignant`` classes, on the validation and test rows it shares with the binary view
    ``b`` (same split: the same rows at any image size). No training; ``meta["from_main_model"]`` marks it.
    Raises ValueError when the rows differ (another split or data set) or ``malignant`` names no class."""
    malignant = ens._check_malignant(malignant, CLASSES)
    for part in ("val", "test"):
        if not np.array_equal(t.rows[part], b.rows[part]):
            raise ValueError(f"the main model's {part} rows are not the binary view's: the ensemble needs one split "
                             "(same data, fractions and seed)")
    cols = [CLASSES.index(c) for c in malignant]
    arrays = {}
    for part in ("val", "test"):
        pm = t.proba[part][:, cols].sum(1).clip(0, 1)
        arrays[part] = np.stack([1 - pm, pm], 1)
    return Artefact(t.model, t.history, t.config, t.key, t.path, arrays, {p: t.rows[p] for p in ("val", "test")},
                    t.seconds, True, {"from_main_model": True, "malignant": list(malignant)})


def missed_malignant(m: Artefact, s: PreparedView, b: PreparedView, malignant, n: int):
    """The member ``m``'s missed malignant test lesions (P(malignant) < 0.5), at most ``n``: (test positions,
    images, Grad-CAM maps) on the images the member sees (the main model's view ``s`` for the main-model
    member, the binary view ``b`` otherwise); maps for class "malignant", or for the main model the malignant
    class it finds likeliest."""
    te = m.rows["test"]
    p = m.proba["test"][:, 1]
    missed = np.flatnonzero((b.labels[te] == 1) & (p < 0.5))[:n]
    if not len(missed):
        return missed, None, None
    if m.meta.get("from_main_model"):
        images = np.asarray(s.cache.images[te[missed]])
        cols = [CLASSES.index(c) for c in malignant]
        proba = predict(m.model, images)
        cls = np.asarray(cols)[proba[:, cols].argmax(1)]
        return missed, images, gradcam.grad_cam(m.model, images, class_index=cls)
    images = np.asarray(b.cache.images[te[missed]])
    return missed, images, gradcam.grad_cam(m.model, images, class_index=1)


def search(b: PreparedView, P: dict, log=print) -> pd.DataFrame:
    """The recorded random search over configurable CNNs (``P["search_epochs"]`` epochs each, equal budgets,
    scored on validation AUC): one row per trial, indexed by trial number, with ``training_seconds`` (what the
    trial's model took to train, whether trained now or loaded from the artefact store) in place of
    :func:`hamviz.search.random_search`'s wall time of this run."""
    from sklearn.metrics import roc_auc_score

    from ..models import CNN_KEYS
    space = search_space(P)

    def train_fn(params):
        opts = {k: params[k] for k in CNN_KEYS if k in params}
        t = member(b, "configurable_cnn", opts, {**P, "learning_rate": params["learning_rate"]},
                   epochs=P["search_epochs"], optimizer=params["optimizer"], fixed_budget=True, log=log)
        yv = b.labels[t.rows["val"]]
        return {"val_auc": float(roc_auc_score(yv, t.proba["val"][:, 1])),
                "val_accuracy": float(((t.proba["val"][:, 1] >= 0.5) == yv).mean()),
                "training_seconds": float(t.seconds)}

    table = random_search(train_fn, space, n_trials=P["search_trials"], seed=P["seed"])
    return table.drop(columns="seconds").set_index("trial")


def search_space(P: dict) -> dict:
    """The random search's space: the profile's ``search_space`` where it sets one, else hamviz's
    :data:`hamviz.search.SEARCH_SPACE` with adamax among the optimisers. Keys without a value list (optimizer,
    learning_rate) fall back to the chapter's own ``optimizer`` / ``learning_rate``."""
    if P.get("search_space"):
        space = {k: list(v) for k, v in P["search_space"].items()}
        space.setdefault("optimizer", [P["optimizer"]])
        space.setdefault("learning_rate", [P["learning_rate"]])
        return space
    space = dict(SEARCH_SPACE)
    space["optimizer"] = sorted(set(space["optimizer"]) | {"adamax"})
    return space


def member_options(row: pd.Series) -> tuple[dict, str, float]:
    """(configurable_cnn options, optimizer, learning rate) of one random-search trial."""
    from ..models import CNN_KEYS
    ints = ("conv_blocks", "filters", "kernel", "convs_per_block", "dense_layers", "dense_units", "pool_size")
    opts = {}
    for k in CNN_KEYS:
        if k in row and not (isinstance(row[k], float) and np.isnan(row[k])):
            opts[k] = (int(row[k]) if k in ints else float(row[k]) if k == "dropout"
                       else bool(row[k]) if k == "block_dropout" else str(row[k]))
    return opts, str(row["optimizer"]), float(row["learning_rate"])


def evaluate_ensemble(members: dict, y, target: float, groups=None, seed: int = 0) -> dict:
    """Member and combiner reports on the test part, at 0.5 and at the threshold that reaches ``target``
    sensitivity on validation; every weight, stacker and threshold is fitted on validation only, and a fitted
    combiner's validation AUC and threshold come from its out-of-fold validation probabilities
    (:func:`hamviz.ensemble.out_of_fold`, grouped by ``groups``: the lesion id of every image of the view).
    Returns reports, test probabilities, the incremental table, the best combiner and the best member (by
    validation AUC) and ``best_vs_best_member``: their paired test-AUC difference with its 95 % lesion-bootstrap
    interval (:func:`hamviz.ensemble.paired_auc_difference`, 1000 resamples)."""
    names = list(members)
    any_t = members[names[0]]
    rows_val, rows_test = any_t.rows["val"], any_t.rows["test"]
    Pv = np.stack([members[n].proba["val"][:, 1] for n in names])
    Pt = np.stack([members[n].proba["test"][:, 1] for n in names])
    yv, yt = y[rows_val], y[rows_test]
    gv = None if groups is None else np.asarray(groups)[rows_val]
    out, probs = {}, {}
    gt = None if groups is None else np.asarray(groups)[rows_test]
    for n, pv, pt in zip(names, Pv, Pt):
        out[n] = _reports(yv, pv, yt, pt, target, gt, seed)
        probs[n] = pt
    for c in ens.COMBINERS:
        fitted = ens.fit_combiner(c, Pv, yv)
        pv, pt = ens.out_of_fold(c, Pv, yv, gv, seed=seed), ens.combine(c, Pt, fitted)
        out[f"ensemble: {c}"] = _reports(yv, pv, yt, pt, target, gt, seed)
        probs[f"ensemble: {c}"] = pt
    inc = ens.incremental(Pv, yv, Pt, yt, names, combiner="mean", target=target, groups_val=gv)
    # chosen on validation (members' own, combiners' out-of-fold), compared on test with a paired interval
    best = max((k for k in out if k.startswith("ensemble: ")), key=lambda k: out[k]["val_auc"])
    best_member = max(names, key=lambda k: out[k]["val_auc"])
    vs = ens.paired_auc_difference(yt, probs[best], probs[best_member], gt, seed=seed)
    return {"reports": out, "test_probs": probs, "y_test": yt, "incremental": inc, "best": best,
            "best_member": best_member, "best_vs_best_member": vs}


def _reports(yv, pv, yt, pt, target, groups_test=None, seed: int = 0) -> dict:
    thr = ens.threshold_for_sensitivity(yv, pv, target)
    return {"at_0.5": ens.binary_report(yt, pt, 0.5), "at_target": ens.binary_report(yt, pt, thr),
            "val_auc": ens.binary_report(yv, pv, 0.5)["auc"],
            "test_auc_ci": ens.auc_interval(yt, pt, groups_test, seed=seed)}


def report_table(reports: dict) -> pd.DataFrame:
    """One row per member / combiner: validation AUC, test AUC with its 95 % lesion-bootstrap interval, and
    sensitivity, specificity, precision at both thresholds."""
    rows = []
    for name, r in reports.items():
        a, b = r["at_0.5"], r["at_target"]
        ci = r.get("test_auc_ci")
        rows.append({"model": name, "val AUC": r["val_auc"], "test AUC": a["auc"],
                     "test AUC 95% interval": with_interval(None, *ci) if ci else "",
                     "bal.acc @0.5": a["balanced_accuracy"], "sensitivity @0.5": a["recall"],
                     "specificity @0.5": a["specificity"], "precision @0.5": a["precision"],
                     "threshold (val)": b["threshold"], "sensitivity @thr": b["recall"],
                     "specificity @thr": b["specificity"], "precision @thr": b["precision"]})
    return pd.DataFrame(rows).set_index("model")


def optimizer_comparison(b: PreparedView, P: dict, log=print, seed: int | None = None,
                         probs: dict | None = None) -> pd.DataFrame:
    """The same binary network trained with each optimiser for exactly ``P["optimizer_epochs"]`` epochs at a
    constant learning rate (no early stopping, no schedule: equal budgets): Zhang's small CNN, or with
    ``optimizer_model`` naming a transfer member (Bunu et al. compared on InceptionV3) that member's network
    options, learning rate and clipping, from its pretrained weights. Per optimiser: losses, validation
    and test AUC (with its 95 % lesion-bootstrap interval), training seconds, and whether the final training
    loss fell below ln 2 (the class-weighted binary cross-entropy of a constant guess: above it the model has
    not learned within the budget). ``seed``: the training seed (default the profile's); ``probs``: a dict that
    receives each optimiser's test P(malignant) and "y_test" (for :func:`optimizer_effect`)."""
    from sklearn.metrics import roc_auc_score

    from ..params import MEMBER_TRAINING_KEYS
    name, options, Pm = "small_cnn", {}, P
    if P.get("optimizer_model", "small_cnn") != "small_cnn":  # validated with the profile: a transfer member's
        spec = next(m for m in P["transfer_members"] if m["model"] == P["optimizer_model"])
        name = spec["model"]
        options = {k: v for k, v in spec.items() if k != "model" and k not in MEMBER_TRAINING_KEYS}
        Pm = {**P, **{k: spec[k] for k in ("learning_rate", "clipnorm") if k in spec}}
    rows = []
    for opt in P["optimizers"]:
        t = member(b, name, options, Pm, epochs=P["optimizer_epochs"], optimizer=opt, fixed_budget=True, seed=seed,
                   log=log)
        yv, yt = b.labels[t.rows["val"]], b.labels[t.rows["test"]]
        low, high = ens.auc_interval(yt, t.proba["test"][:, 1], b.groups[t.rows["test"]], seed=P["seed"])
        rows.append({"optimizer": opt, "epochs": len(t.history["loss"]),
                     "final train loss": t.history["loss"][-1], "best val loss": min(t.history["val_loss"]),
                     "learned (train loss < ln 2)": bool(t.history["loss"][-1] < np.log(2) - 0.01),
                     "val AUC": float(roc_auc_score(yv, t.proba["val"][:, 1])),
                     "test AUC": float(roc_auc_score(yt, t.proba["test"][:, 1])),
                     "test AUC 95% interval": with_interval(None, low, high), "seconds": round(t.seconds)})
        if probs is not None:
            probs[opt], probs["y_test"] = t.proba["test"][:, 1], yt
    return pd.DataFrame(rows).set_index("optimizer")


def optimizer_effect(tables: list[pd.DataFrame], probs: list[dict], seeds, groups_test=None, n_boot: int = 1000,
                     seed: int = 0) -> dict | None:
    """The optimiser with the best mean validation AUC over replicates (``tables``: :func:`optimizer_comparison`
    of each seed, ``probs`` the test probabilities it gave) against the runner-up, in test AUC points, paired by
    seed on shared lesion resamples. Returns {"best", "runner_up", "per_seed", "draws"}, or None with fewer than
    two optimisers."""
    val = pd.concat([t["val AUC"] for t in tables], axis=1).mean(axis=1).sort_values(ascending=False)
    if len(val) < 2:
        return None
    best, second = val.index[:2]
    per_seed, draws = {}, []
    for sd, t, p in zip(seeds, tables, probs):
        y = p["y_test"]
        boots = ens.bootstrap_aucs(y, np.stack([p[best], p[second]]), groups_test, n_boot, seed)
        per_seed[sd] = 100 * (t.loc[best, "test AUC"] - t.loc[second, "test AUC"])
        draws.append(100 * (boots[:, 0] - boots[:, 1]))
    return {"best": best, "runner_up": second, "per_seed": per_seed, "draws": np.vstack(draws)}


def cam_correlations(model, cache, rows, qualities, n: int = 200, seed: int = 0, layer=None) -> dict:
    """Per image, the correlation of the Grad-CAM map (for the class predicted on the clean image) at each JPEG
    quality in ``qualities`` with the clean image's map, on the same ``n`` test images :func:`cam_under_jpeg`
    picks. Returns quality -> (n,) correlations, and "pick" -> the picked positions into ``rows``."""
    from ..cache import jpeg_test_sets
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))
    sets = jpeg_test_sets(cache, rows, qualities)
    cam0, p0 = gradcam.predict_with_cam(model, np.asarray(cache.images[rows[pick]]), layer=layer)
    out = {"pick": pick}
    for q in qualities:
        camq, _ = gradcam.predict_with_cam(model, np.asarray(sets.images[q])[pick], class_index=p0.argmax(1),
                                           layer=layer)
        out[q] = gradcam.cam_shift_batch(cam0, camq)["correlation"].to_numpy()
    return out


def cam_under_jpeg(model, cache, rows, qualities, n: int = 200, seed: int = 0, layer=None):
    """Grad-CAM (for the class predicted on the clean image) on ``n`` test images at every JPEG quality,
    and how far each map moved from the clean one: per-quality means of correlation, top-20% IoU and
    centre-of-mass distance (pixels), and the share of predictions that changed."""
    from ..cache import jpeg_test_sets
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))
    sets = jpeg_test_sets(cache, rows, qualities)
    clean = np.asarray(cache.images[rows[pick]])
    cam0, p0 = gradcam.predict_with_cam(model, clean, layer=layer)
    cls = p0.argmax(1)
    table, cams = [], {"clean": cam0}
    for q in sets.qualities:
        imgs = np.asarray(sets.images[q])[pick]
        camq, pq = gradcam.predict_with_cam(model, imgs, class_index=cls, layer=layer)
        shift = gradcam.cam_shift_batch(cam0, camq)
        table.append({"quality": q, "correlation": float(shift["correlation"].mean()),
                      "top-20% IoU": float(shift["iou"].mean()),
                      "centre shift (px)": float(shift["com_distance"].mean()),
                      "prediction changed": float((pq.argmax(1) != cls).mean())})
        cams[q] = camq
    return pd.DataFrame(table).set_index("quality"), cams, pick
