"""The hypervector chapter (``05_hypervector``): HD-MANN models (Barros Everett; MSE and cosine losses) and a
softmax twin on the same backbone, trained once and stored, scored on the parallel JPEG test sets, their output
geometry measured, embedded with t-SNE and UMAP, and a class added to the memory without retraining.

A second row (hamviz's addition, not in the reference; profile key ``pretrained_head``): the same HD classifier
-- same classes, split rows, training-row rules, keys and losses -- as a small head
(:func:`hamviz.hypervector.hd_feature_head`) on a frozen pretrained backbone's cached pooled features
(EfficientNet-Lite0, Tan & Le 2019), scored on the same test images (JPEG-coded at the backbone's input size,
their features computed from the coded images): :func:`pretrained_row`, :func:`pretrained_inputs`.

Every step takes the chapter's class subset of the prepared view (:meth:`hamviz.view.PreparedView.subset`):
labels renumbered 0..K-1 in the order of ``classes``, rows of other classes left out of every part.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import hypervector as hv
from ..balance import cap_per_class, per_class
from ..metrics import bootstrap_ci, evaluate, with_interval
from ..training import Artefact, limit_rows, predict, train_or_load

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
#: parameters that change a trained HD (or softmax twin) model
TRAIN_KEYS = ("image_size", "resize", "seed", "split", "classes", "dim", "template", "backbone", "dense", "dropout",
              "optimizer", "learning_rate", "epochs", "patience", "batch_size", "augment", "train_limit",
              "per_class")


def _train_params(P: dict) -> dict:
    out = {k: P.get(k) for k in TRAIN_KEYS}
    if P.get("originals_per_class"):  # only when set: the models trained without it keep their keys
        out["originals_per_class"] = P["originals_per_class"]
    return out


def train_rows(sub, P: dict, exclude=()) -> np.ndarray:
    rows = sub.rows["train"]
    if exclude:
        rows = rows[~np.isin(sub.labels[rows], exclude)]
    rows = limit_rows(rows, sub.labels[rows], P["train_limit"], P["seed"])
    if P.get("originals_per_class"):  # Barros Everett: about 400 originals, augmented up to 600
        rows = rows[cap_per_class(sub.labels[rows], P["originals_per_class"], seed=P["seed"])]
    if P["per_class"]:
        rows = rows[per_class(sub.labels[rows], P["per_class"], seed=P["seed"])]
    return rows


def _build(P: dict, shape, n_out: int, softmax: bool):
    from ..models import build_model, keras
    keras.utils.set_random_seed(P["seed"])
    if P["backbone"] == "hd_cnn":
        m = hv.hd_cnn(shape, dim=P["dim"], dense=P["dense"], dropout=P["dropout"])
        if not softmax:
            return m
        x = m.get_layer("dense").output
        out = keras.layers.Dense(n_out, activation="softmax", name="predictions")(x)
        return keras.Model(m.input, out, name="hd_cnn_softmax")
    base = build_model(P["backbone"], shape, n_out)
    return base if softmax else hv.hd_head(base, P["dim"], copy=False)


@dataclass(frozen=True)
class Pretrained:
    """A frozen pretrained backbone's pooled features, the inputs of the second row's HD head: ``features``
    float32 (N, C) (row i = row i of the view's image cache; C = 1280 for EfficientNet-Lite0), computed by
    :func:`hamviz.features.backbone_features` from ``model`` with ``weights`` at ``image_size`` x ``image_size``;
    ``key`` names them (image cache entry, weights' identity, flips, features version) in the head's model key."""

    model: str
    weights: str
    image_size: int
    features: np.ndarray = field(repr=False)
    key: str = ""

    @property
    def label(self) -> str:
        return f"{self.model}@{self.image_size}"


def hd_model(sub, P: dict, loss: str, memory: hv.Memory, exclude=(), log=print,
             pretrained: Pretrained | None = None) -> Artefact:
    """The HD model for ``loss`` over ``memory``, trained on the subset view's training part (without the
    classes in ``exclude``, whose labels are then renumbered) and stored; ``artefact.meta["memory"]`` is its
    memory. With ``pretrained`` (the second row): an :func:`hamviz.hypervector.hd_feature_head` (``P``'s
    dense and dropout) trained on ``pretrained.features`` of the same rows instead of the profile's backbone on
    the images, without augmentation; ``sub`` is then the view at ``pretrained.image_size``. Its model takes
    features (N, C), not images."""
    tp = _train_params(P)
    if pretrained is not None:
        tp.update(image_size=pretrained.image_size, backbone=None, augment=None)
    config = {"loss": loss, "P": tp, "memory": memory.to_dict(), "exclude": list(exclude)}
    if pretrained is not None:
        config["pretrained"] = {"model": pretrained.model, "weights": pretrained.weights, "features": pretrained.key}

    def train():
        inputs = sub.images if pretrained is None else pretrained.features
        tr = train_rows(sub, P, exclude)
        va = sub.rows["val"][~np.isin(sub.labels[sub.rows["val"]], exclude)]
        what = "images" if pretrained is None else f"{pretrained.label} features"
        log(f"training HD ({loss}) on {len(tr)} {what} for up to {P['epochs']} epochs")
        if pretrained is None:
            model = _build(P, inputs.shape[1:], memory.dim, softmax=False)
        else:
            from ..models import keras
            keras.utils.set_random_seed(P["seed"])
            model = hv.hd_feature_head(inputs.shape[1], memory.dim, P["dense"], P["dropout"])
        # without the excluded classes, the remaining ones are renumbered 0..K'-1 in their order
        keep = [i for i in range(len(sub.classes)) if i not in exclude]
        remap = np.full(len(sub.classes), -1)
        remap[keep] = np.arange(len(keep))
        history = hv.fit_hd(model, memory, inputs[tr], remap[sub.labels[tr]], inputs[va], remap[sub.labels[va]],
                            loss=loss, optimizer=P["optimizer"], learning_rate=P["learning_rate"],
                            epochs=P["epochs"], batch_size=P["batch_size"], patience=P["patience"],
                            augment=tp["augment"], seed=P["seed"])
        return model, history, {"templates": memory.templates}

    name = f"hd-{loss}-{P['image_size']}" if pretrained is None else \
        f"hd-{loss}-{pretrained.model}-{pretrained.image_size}"
    return train_or_load("hd", name, config, train, fingerprint=sub.fingerprint,
                         split_id=sub.split_id, rows=sub.rows, meta={"memory": memory.to_dict()}, log=log)


@dataclass
class PretrainedRow:
    """The chapter's second row: ``sub`` the class subset at the backbone's size (the same rows as the
    from-scratch row's view), ``pretrained`` its features, ``models`` name -> (trained head, "hd") and
    ``histories`` name -> training history, one per loss, named "<model> HD <loss>"."""

    sub: object
    pretrained: Pretrained
    models: dict
    histories: dict


def same_rows(sub, other) -> None:
    """Raise ValueError unless two subset views hold the same images (by id), labels and classes in every
    split part: the two rows of the chapter's tables must be scored on the same test images."""
    if tuple(sub.classes) != tuple(other.classes):
        raise ValueError(f"the views have other classes: {sub.classes} vs {other.classes}")
    for part, rows in sub.rows.items():
        a, b = other.rows[part], rows
        if [sub.image_ids[i] for i in b] != [other.image_ids[i] for i in a] or \
                not np.array_equal(sub.labels[b], other.labels[a]):
            raise ValueError(f"the {part} part differs between the views at {sub.size} and {other.size} pixels "
                             f"(another split, or images dropped by on_corrupt at one size); the rows would "
                             f"not be comparable")


def pretrained_row(view, sub, P: dict, memory: hv.Memory, log=print) -> PretrainedRow:
    """The second row: ``view`` (the chapter's data at ``P["pretrained_head"]["image_size"]``) cut to ``sub``'s
    classes (checked to be ``sub``'s rows, :func:`same_rows`), the frozen backbone's pooled features of every
    image computed once and cached (:func:`hamviz.features.backbone_features`, no flips), and one HD head per
    loss of ``P["losses"]`` over the same ``memory``, trained through :func:`hd_model` (same training-row rules,
    optimiser, epochs and seed as the from-scratch row). Raises :class:`hamviz.weights.WeightsError` for
    missing weights."""
    from ..features import backbone_features, feature_key
    spec = P["pretrained_head"]
    if view.size != spec["image_size"]:
        raise ValueError(f"the view holds {view.size}x{view.size} images, pretrained_head asks for "
                         f"{spec['image_size']}")
    psub = view.subset(list(sub.classes))
    same_rows(sub, psub)
    feats = backbone_features(view, spec["model"], spec["weights"], flips="none", log=log)
    pre = Pretrained(spec["model"], spec["weights"], view.size, feats,
                     feature_key(view.cache, spec["model"], spec["weights"], "none"))
    models, histories = {}, {}
    for loss in P["losses"]:
        a = hd_model(psub, P, loss, memory, log=log, pretrained=pre)
        models[f"{pre.model} HD {loss}"], histories[f"{pre.model} HD {loss}"] = (a.model, "hd"), a.history
    return PretrainedRow(psub, pre, models, histories)


def pretrained_inputs(row: PretrainedRow, qualities, log=print) -> dict:
    """The second row's inputs for :func:`quality_sweep`: "clean" -> the cached features of the test part, and
    each JPEG quality -> features (N, C) computed from the test images JPEG-coded at the backbone's input size
    (:func:`hamviz.cache.jpeg_test_sets` of the view at that size; :func:`hamviz.features.image_features`), in
    the order of the test part."""
    from ..cache import jpeg_test_sets
    from ..features import image_features
    te = row.sub.rows["test"]
    sets = jpeg_test_sets(row.sub.cache, te, qualities)
    pre = row.pretrained
    log(f"computing {pre.label} features of {len(te)} test images at {len(sets.qualities)} JPEG qualities")
    coded = image_features({q: sets.images[q] for q in sets.qualities}, pre.model, pre.weights)
    return {"clean": pre.features[te], **coded}


def row_table(sweep: pd.DataFrame, sub, P: dict, row: PretrainedRow | None = None) -> pd.DataFrame:
    """The chapter's two rows side by side on the clean test part, nearest key by centred cosine (hamviz's
    reading of the reference's "closest known vector"), one line per row and loss: accuracy, balanced
    accuracy, macro-F1 (from ``sweep``, the :func:`quality_sweep` table), the training rows and test images each
    was trained and scored on, and its input. ``row`` None: the first row only."""
    clean = sweep[sweep["quality"] == "clean"].set_index("model")

    def line(name, model, s, loss, what):
        scores = {m: float(clean.loc[f"{model} (cosine)", m]) for m in METRICS}
        return {"row": name, "loss": loss, **scores, "n_train": len(train_rows(s, P)), "n_test": len(s.rows["test"]),
                "input": what}

    first = "from scratch (reference)" if P["backbone"] == "hd_cnn" else f"{P['backbone']} backbone"
    lines = []
    for loss in P["losses"]:
        lines.append(line(first, f"HD {loss}", sub, loss, f"{P['backbone']} on {sub.size}x{sub.size} images"))
        if row is not None:
            pre = row.pretrained
            lines.append(line("pretrained backbone (hamviz)", f"{pre.model} HD {loss}", row.sub, loss,
                              f"frozen {pre.label} pooled features ({pre.features.shape[1]})"))
    return pd.DataFrame(lines).set_index(["row", "loss"])


def softmax_twin(sub, P: dict, log=print) -> Artefact:
    """The same backbone with a softmax head, trained on the same rows (categorical cross-entropy) and stored."""
    from ..models import keras  # noqa: F401  (TensorFlow imported quietly)
    from ..pipeline import make_dataset
    from ..training import fit, make_optimizer
    config = {"P": _train_params(P), "classes": list(sub.classes)}

    def train():
        images = sub.images
        tr, va, k = train_rows(sub, P), sub.rows["val"], len(sub.classes)
        log(f"training the softmax twin on {len(tr)} images for up to {P['epochs']} epochs")
        model = _build(P, images.shape[1:], k, softmax=True)
        model.compile(optimizer=make_optimizer(P["optimizer"], P["learning_rate"]),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        train_ds = make_dataset(images[tr], sub.labels[tr], batch_size=P["batch_size"], shuffle=True,
                                augment=P["augment"], n_classes=k, seed=P["seed"])
        val_ds = make_dataset(images[va], sub.labels[va], batch_size=128, n_classes=k)
        history = fit(model, train_ds, val_ds, epochs=P["epochs"], patience=P["patience"],
                      label="softmax twin", learning_rate=P["learning_rate"])
        return model, history, {"classes": np.array(sub.classes)}

    return train_or_load("softmax_twin", f"hd-softmax-{P['image_size']}", config, train,
                         fingerprint=sub.fingerprint, split_id=sub.split_id, rows=sub.rows, log=log)


def quality_sweep(models: dict, memory: hv.Memory, images_by_quality: dict, labels, classes, groups=None,
                  n_boot: int = 0, seed: int = 0) -> pd.DataFrame:
    """Metrics per quality (rows) for HD-cosine, HD-Hamming (per HD model) and softmax models.
    ``models``: name -> (model, "hd" | "softmax"); images_by_quality: "clean" / quality -> uint8 images.
    With ``n_boot`` > 0 also each balanced accuracy's 95 % bootstrap interval (``balanced_accuracy_low`` /
    ``_high``), resampling lesions (``groups``: the test images' lesion ids); the same resamples for every row."""
    rows = []

    def row(q, name, proba):
        ev = evaluate(labels, proba, classes, n_boot=0)
        ci = {}  # the balanced accuracy's interval only (evaluate's would bootstrap four metrics, AUC the costliest)
        if n_boot:
            b = bootstrap_ci(labels, proba, ("balanced_accuracy",), n_boot, seed, groups, classes=classes)
            ci = {"balanced_accuracy_low": b.loc["balanced_accuracy", "low"],
                  "balanced_accuracy_high": b.loc["balanced_accuracy", "high"]}
        rows.append({"quality": q, "model": name, **{m: ev["headline"][m] for m in METRICS}, **ci})

    for q, imgs in images_by_quality.items():
        for name, (model, kind) in models.items():
            if kind == "softmax":
                row(q, name, predict(model, imgs))
                continue
            out = hv.hypervector_outputs(model, imgs)
            for mode in ("cosine", "hamming"):
                row(q, f"{name} ({mode})", hv.predict_proba(out, memory, mode))
    return pd.DataFrame(rows)


def largest_jpeg_loss(sweep: pd.DataFrame) -> str | None:
    """The model whose balanced accuracy falls most from clean to the sweep's lowest JPEG quality, in words
    ("<model>: -12.3 points of balanced accuracy, clean to quality 1"); None without a JPEG quality."""
    q_low = min((q for q in sweep["quality"].unique() if q != "clean"), default=None)
    if q_low is None:
        return None
    at = {q: sweep[sweep["quality"] == q].set_index("model")["balanced_accuracy"] for q in ("clean", q_low)}
    change = (at[q_low] - at["clean"]) * 100
    return f"{change.idxmin()}: {change.min():+.1f} points of balanced accuracy, clean to quality {q_low}"


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """Balanced accuracy by quality (rows, in the sweep's order) and model (columns), as "value [low, high]"
    where the sweep has intervals (:func:`quality_sweep` with n_boot), else the values."""
    order = list(dict.fromkeys(sweep["quality"]))
    if "balanced_accuracy_low" in sweep:
        sweep = sweep.assign(balanced_accuracy=[
            with_interval(v, lo, hi) for v, lo, hi in
            zip(sweep["balanced_accuracy"], sweep["balanced_accuracy_low"], sweep["balanced_accuracy_high"])])
    table = sweep.pivot(index="quality", columns="model", values="balanced_accuracy")
    return table.loc[order, list(dict.fromkeys(sweep["model"]))]


def geometry(outputs: np.ndarray, labels, memory: hv.Memory) -> dict:
    """Numbers for "clusters lose density and merge": silhouette of the outputs by class (cosine distance
    about the memory's centre) and the mean centred cosine to the own template vs the nearest other one."""
    from sklearn.metrics import silhouette_score
    c = memory.centre
    sc = hv.cosine_scores(outputs, memory.templates, centre=c)
    labels = np.asarray(labels)
    own = sc[np.arange(len(labels)), labels]
    other = np.where(np.eye(memory.n_classes, dtype=bool)[labels], -np.inf, sc).max(axis=1)
    sil = silhouette_score(outputs - c, labels, metric="cosine") if len(set(labels)) > 1 else np.nan
    return {"silhouette": float(sil), "cos_own_template": float(own.mean()),
            "cos_nearest_other": float(other.mean()), "margin": float((own - other).mean())}


def template_similarity(memory: hv.Memory) -> pd.DataFrame:
    """Pairwise plain cosine similarity of the templates (near 0 for bipolar keys, about 0.5 for {0,1})."""
    t = memory.templates
    n = t / np.linalg.norm(t, axis=1, keepdims=True)
    return pd.DataFrame(n @ n.T, index=memory.classes, columns=memory.classes)


def embed(outputs_by_quality: dict, labels, memory: hv.Memory, method: str = "umap", seed: int = 0,
          max_points: int = 600, perplexity: float = 30.0) -> pd.DataFrame:
    """2-D embeddings of the outputs at each quality, templates included (rows with ``is_template``).

    UMAP is fitted on the clean outputs (with the templates) and every compressed set is transformed with that
    fit, so the axes are comparable across qualities. t-SNE has no transform: it is fitted anew per quality
    (PCA initialisation, the same seed), so compare cluster shapes across panels, not positions."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    pick = np.sort(rng.choice(len(labels), size=min(max_points, len(labels)), replace=False))
    frames = []
    keys = list(outputs_by_quality)
    if method == "umap":
        import umap
        reducer = umap.UMAP(n_neighbors=15, random_state=seed, n_jobs=1)
        reducer.fit(np.vstack([outputs_by_quality[keys[0]][pick], memory.templates]))
    for q in keys:
        x = np.vstack([outputs_by_quality[q][pick], memory.templates])
        if method == "umap":
            xy = reducer.transform(x)
        else:
            from sklearn.manifold import TSNE
            xy = TSNE(perplexity=min(perplexity, (len(x) - 1) / 3), init="pca", random_state=seed).fit_transform(x)
        n = len(pick)
        frames.append(pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "quality": str(q),
                                    "class": [memory.classes[i] for i in labels[pick]] + list(memory.classes),
                                    "is_template": [False] * n + [True] * memory.n_classes}))
    return pd.concat(frames, ignore_index=True)


def add_class_demo(sub, P: dict, memory_full: hv.Memory, holdout: str, log=print) -> dict:
    """Train an HD model without ``holdout``, then add it to the memory as the prototype of the network's
    outputs for its training images, and score every test image (all classes, holdout included)."""
    k = sub.classes.index(holdout)
    others = [c for c in sub.classes if c != holdout]
    mem = hv.Memory(memory_full.templates[[sub.classes.index(c) for c in others]], others, memory_full.kind)
    model = hd_model(sub, {**P, "losses": ["mse"]}, "mse", mem, exclude=(k,), log=log).model
    images = sub.images
    tr_hold = sub.rows["train"][sub.labels[sub.rows["train"]] == k]
    mem.add(holdout, hv.hypervector_outputs(model, images[tr_hold]))
    # memory order is others + holdout: map the test labels into it
    order = others + [holdout]
    te = sub.rows["test"]
    y = np.array([order.index(sub.classes[i]) for i in sub.labels[te]])
    out = hv.hypervector_outputs(model, images[te])
    pred = hv.predict(out, mem, "cosine")
    ev = evaluate(y, hv.predict_proba(out, mem, "cosine"), order, n_boot=0)
    is_new = y == len(order) - 1
    return {"holdout": holdout, "prototype_from": int(len(tr_hold)),
            "recall_new_class": float((pred[is_new] == y[is_new]).mean()) if is_new.any() else None,
            "recall_old_classes": float((pred[~is_new] == y[~is_new]).mean()),
            "balanced_accuracy": ev["headline"]["balanced_accuracy"], "classes": order}


def replicate_models(sub, P: dict, memory: hv.Memory, seeds, log=print) -> list[dict[str, Artefact]]:
    """For each training seed in ``seeds`` (replicate 0 first): name -> Artefact of the HD model of every loss
    ("HD <loss>") and of the softmax twin ("softmax"), over the same ``memory`` (the keys are the profile seed's in
    every replicate), each trained once and then loaded. The seed sets the initialisation, the augmentation and
    the shuffling, and also the training sample where ``per_class`` or ``train_limit`` draws one (the HD models and
    the softmax twin of one seed share it)."""
    out = []
    for seed in seeds:
        Pr = {**P, "seed": seed}
        arts = {f"HD {loss}": hd_model(sub, Pr, loss, memory, log=log) for loss in P["losses"]}
        arts["softmax"] = softmax_twin(sub, Pr, log=log)
        out.append(arts)
    return out


def _proba(name: str, art: Artefact, memory: hv.Memory, images) -> np.ndarray:
    """Class probabilities of :func:`replicate_models`' model ``name`` (the softmax twin, or an HD model decoded by
    cosine to the nearest key)."""
    if name == "softmax":
        return predict(art.model, images)
    return hv.predict_proba(hv.hypervector_outputs(art.model, images), memory, "cosine")


def replicate_effects(reps: list[dict], memory: hv.Memory, clean, coded, quality, labels, classes, groups=None,
                      n_boot: int = 200, seed: int = 0) -> dict[str, dict]:
    """The chapter's comparisons over the replicates ``reps`` (:func:`replicate_models`), in points of test balanced
    accuracy, paired by seed on shared lesion resamples (HD models decoded by cosine to the nearest key): for each
    HD loss, HD minus softmax on the clean images and on JPEG at ``quality`` (``coded``: those images), and the
    softmax twin's drop from clean to ``quality`` minus the HD model's drop (positive: the HD model loses less).
    Returns name -> {"per_seed", "draws"}."""
    from ..replicates import metric_draws
    seeds = [next(iter(r.values())).config["P"]["seed"] for r in reps]
    v, d = {}, {}
    for name in reps[0]:
        for q, imgs in (("clean", clean), (quality, coded)):
            v[name, q], d[name, q] = metric_draws(labels, [_proba(name, r[name], memory, imgs) for r in reps],
                                                  "balanced_accuracy", groups=groups, n_boot=n_boot, seed=seed,
                                                  classes=classes)
    out = {}
    for name in (n for n in reps[0] if n != "softmax"):
        for key, f in ((f"{name} minus softmax, clean", lambda x, n=name: x[n, "clean"] - x["softmax", "clean"]),
                       (f"{name} minus softmax, JPEG q{quality}",
                        lambda x, n=name: x[n, quality] - x["softmax", quality]),
                       (f"softmax's drop at JPEG q{quality} minus {name}'s",
                        lambda x, n=name: (x[n, quality] - x[n, "clean"])
                                          - (x["softmax", quality] - x["softmax", "clean"]))):
            out[key] = {"per_seed": dict(zip(seeds, 100 * f(v))), "draws": 100 * f(d)}
    return out
