"""The joint-training chapter (``04_joint``, Doctor's study): each of the compression chapter's autoencoders
trained end to end with the main classifier, scored beside the classifier alone and the autoencoder followed
by the untouched classifier; the contrast hypothesis is tested with :mod:`hamviz.contrast`.
"""
from __future__ import annotations

import pandas as pd

from ..joint import JointConfig, train_joint
from ..training import Artefact
from ..view import PreparedView


def config(P: dict, ratio: float, image_size: int, strategy: str = "S4", oversample_min: int = 1000,
           seed: int | None = None) -> JointConfig:
    """The JointConfig of the joint chapter's parameters ``P`` (flat) for one autoencoder ratio at ``image_size``
    (the main classifier's), with the main classifier's imbalance ``strategy`` (and its ``oversample_min``) and a
    replicate's training ``seed`` (default the profile's)."""
    return JointConfig(ratio=ratio, image_size=image_size, init=P["init"], recon_weight=P["recon_weight"],
                       train_autoencoder=P["train_autoencoder"], train_classifier=P["train_classifier"],
                       learning_rate=P["learning_rate"], epochs=P["epochs"], patience=P["patience"],
                       train_limit=P["train_limit"], val_limit=P["val_limit"], strategy=strategy,
                       oversample_min=oversample_min, seed=P["seed"] if seed is None else seed)


def joint_models(P: dict, autoencoders: dict, classifier: Artefact, view: PreparedView,
                 log=print) -> dict[float, Artefact]:
    """ratio -> the joint model of that autoencoder and ``classifier`` (trained once, then loaded), on the
    rows the classifier was trained on, with its imbalance strategy and its training seed (a replicate of the
    classifier, with the autoencoders of the same seed, gives the joint models of that replicate)."""
    missing = [r for r in P["ratios"] if r not in autoencoders]
    if missing:
        raise ValueError(f"joint ratios {missing} are not among the compression chapter's autoencoders "
                         f"{list(autoencoders)}: add them to chapters.compression.ae_ratios")
    c = classifier.config
    return {r: train_joint(config(P, r, view.size, c.strategy, c.oversample_min, c.seed), autoencoders[r], classifier,
                           view, rows=classifier.rows, n_classes=len(view.classes), log=log) for r in P["ratios"]}


def replicate_outputs(P: dict, ch, ts: list[Artefact], view: PreparedView, images, log=print) -> list[dict]:
    """For each replicate of the main model (``ts``, replicate 0 first): its autoencoders and joint models (the
    same seed), and on the test ``images`` the class probabilities of the classifier alone (one view per image),
    of each autoencoder followed by the unchanged classifier and of each joint model, with the standalone and
    joint autoencoders' outputs. Returns one dict per replicate: {"seed", "aes", "joints", "proba": {name: (N, K)},
    "standalone": {ratio: images}, "joint_out": {ratio: images}}."""
    from ..autoenc import reconstruct
    from ..joint import predict_joint
    from ..training import predict
    from .compression import autoencoders
    out = []
    for t in ts:
        aes = autoencoders(ch, view, t.rows, log=log, seed=t.config.seed)
        joints = joint_models(P, aes, t, view, log=log)
        proba, standalone, joint_out = {"classifier alone": predict(t.model, images)}, {}, {}
        for r in P["ratios"]:
            standalone[r] = reconstruct(aes[r].model, images)
            proba[f"AE {r:g}x -> classifier"] = predict(t.model, standalone[r])
            proba[f"joint {r:g}x"], joint_out[r] = predict_joint(joints[r].model, images)
        out.append({"seed": t.config.seed, "aes": aes, "joints": joints, "proba": proba, "standalone": standalone,
                    "joint_out": joint_out})
    return out


def replicate_metrics(reps: list[dict], labels) -> pd.DataFrame:
    """Each replicate's test accuracy, balanced accuracy and macro-F1 for every model in its ``proba`` (from
    :func:`replicate_outputs`; ``labels`` (N,) the test images' class indices): one row per (model, seed)."""
    from ..metrics import headline
    from ..registry import CLASSES
    rows = []
    for rep in reps:
        for name, p_ in rep["proba"].items():
            h = headline(labels, p_, CLASSES)
            rows.append({"model": name, "seed": rep["seed"],
                         **{k: h[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")}})
    return pd.DataFrame(rows)


def parts_by_model(view: PreparedView, models: dict[str, Artefact]) -> pd.DataFrame:
    """The reference's per-model train/validation/test tables (Doctor, Tables 7-9) in one frame: index (model,
    part), columns n, log_loss, accuracy, balanced_accuracy, macro_f1, macro_auc, ece, from the probabilities each
    artefact stored for its own rows (a joint model's train and validation parts are its class-stratified
    subsets: ``train_limit``, ``val_limit``; the test part is the same for every model). No intervals."""
    from .classifier import evaluate_parts, parts_table
    frames = {name: parts_table(evaluate_parts(view, a, n_boot=0)) for name, a in models.items()}
    return pd.concat(frames, names=["model", "part"])


def contrast_verdicts(ch, reps: list[dict], lesion_contrast, labels, groups, names, n_boot: int = 200) -> None:
    """The contrast hypothesis over every replicate, one verdict per model in ``names`` ("classifier alone",
    "joint <r>x"): do its errors have lower lesion contrast than its correct answers within the same class
    (:func:`hamviz.contrast.contrast_gap`: a fixed set of classes, lesion bootstrap with at least 2,000 resamples
    for the corrected tails), each interval Bonferroni-corrected for the number of models (1 - 0.05/m)."""
    from ..contrast import contrast_gap
    from ..registry import CLASSES
    for name in names:
        gap, d, used = contrast_gap(lesion_contrast, [rep["proba"][name].argmax(1) != labels for rep in reps], labels,
                                    groups, max(n_boot, 2000), ch.params["seed"])
        classes = ", ".join(CLASSES[k] for k in used) or "none with 5 errors and 5 correct answers"
        ch.verdict(f"contrast: {name}", f"{name}: do its errors have lower lesion contrast than its correct answers, "
                   f"within class? (classes: {classes})", dict(zip([rep["seed"] for rep in reps], gap)), d,
                   direction=-1, units="dE2000", alpha=0.05 / len(names))


def boundary_verdicts(ch, reps: list[dict], masks, groups, ratios, band_width: int, n_boot: int = 200) -> None:
    """Does each joint autoencoder keep more of the lesion boundary than the standalone one of the same ratio and
    seed (the mean per-image difference of the boundary band's share of gradient energy,
    :func:`hamviz.contrast.boundary_energy`, lesion bootstrap), over every replicate; Bonferroni over the
    ratios."""
    from ..contrast import boundary_energy
    from ..replicates import mean_difference_draws
    for r in ratios:
        joint_be, alone_be = ([boundary_energy(rep[k][r], masks, band_width) for rep in reps]
                              for k in ("joint_out", "standalone"))
        gap, d = mean_difference_draws(joint_be, alone_be, groups=groups, n_boot=n_boot, seed=ch.params["seed"])
        ch.verdict(f"boundary {r:g}x", f"Does the joint AE {r:g}x keep more of the lesion boundary than the "
                   "standalone one? (share of gradient energy)", dict(zip([rep["seed"] for rep in reps], gap)), d,
                   direction=1, units="", digits=3, alpha=0.05 / len(ratios))
