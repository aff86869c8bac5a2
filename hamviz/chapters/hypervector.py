"""The hypervector chapter (``05_hypervector``): HD-MANN models (Barros Everett; MSE and cosine losses) and a
softmax twin on the same backbone, trained once and stored, scored on the parallel JPEG test sets, their output
geometry measured, embedded with t-SNE and UMAP, and a class added to the memory without retraining.

Every step takes the chapter's class subset of the prepared view (:meth:`hamviz.view.PreparedView.subset`):
labels renumbered 0..K-1 in the order of ``classes``, rows of other classes left out of every part.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import hypervector as hv
from ..balance import oversample
from ..metrics import evaluate
from ..training import Artefact, limit_rows, predict, train_or_load

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
#: parameters that change a trained HD (or softmax twin) model
TRAIN_KEYS = ("image_size", "resize", "seed", "split", "classes", "dim", "template", "backbone", "dense", "dropout",
              "optimizer", "learning_rate", "epochs", "patience", "batch_size", "augment", "train_limit",
              "oversample_to")


def _train_params(P: dict) -> dict:
    return {k: P.get(k) for k in TRAIN_KEYS}


def _train_rows(sub, P: dict, exclude=()) -> np.ndarray:
    rows = sub.rows["train"]
    if exclude:
        rows = rows[~np.isin(sub.labels[rows], exclude)]
    rows = limit_rows(rows, sub.labels[rows], P["train_limit"], P["seed"])
    if P["oversample_to"]:
        rows = rows[oversample(sub.labels[rows], "below", min_size=P["oversample_to"], seed=P["seed"])]
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


def hd_model(sub, P: dict, loss: str, memory: hv.Memory, exclude=(), log=print) -> Artefact:
    """The HD model for ``loss`` over ``memory``, trained on the subset view's training part (without the
    classes in ``exclude``, whose labels are then renumbered) and stored; ``artefact.meta["memory"]`` is its
    memory."""
    config = {"loss": loss, "P": _train_params(P), "memory": memory.to_dict(), "exclude": list(exclude)}

    def train():
        images = sub.images
        tr = _train_rows(sub, P, exclude)
        va = sub.rows["val"][~np.isin(sub.labels[sub.rows["val"]], exclude)]
        log(f"training HD ({loss}) on {len(tr)} images for up to {P['epochs']} epochs")
        model = _build(P, images.shape[1:], memory.dim, softmax=False)
        # without the excluded classes, the remaining ones are renumbered 0..K'-1 in their order
        keep = [i for i in range(len(sub.classes)) if i not in exclude]
        remap = np.full(len(sub.classes), -1)
        remap[keep] = np.arange(len(keep))
        history = hv.fit_hd(model, memory, images[tr], remap[sub.labels[tr]], images[va], remap[sub.labels[va]],
                            loss=loss, optimizer=P["optimizer"], learning_rate=P["learning_rate"],
                            epochs=P["epochs"], batch_size=P["batch_size"], patience=P["patience"],
                            augment=P["augment"], seed=P["seed"])
        return model, history, {"templates": memory.templates}

    return train_or_load("hd", f"hd-{loss}-{P['image_size']}", config, train, fingerprint=sub.fingerprint,
                         split_id=sub.split_id, rows=sub.rows, meta={"memory": memory.to_dict()}, log=log)


def softmax_twin(sub, P: dict, log=print) -> Artefact:
    """The same backbone with a softmax head, trained on the same rows (categorical cross-entropy) and stored."""
    from ..models import keras  # noqa: F401  (TensorFlow imported quietly)
    from ..pipeline import make_dataset
    from ..training import fit, make_optimizer
    config = {"P": _train_params(P), "classes": list(sub.classes)}

    def train():
        images = sub.images
        tr, va, k = _train_rows(sub, P), sub.rows["val"], len(sub.classes)
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


def quality_sweep(models: dict, memory: hv.Memory, images_by_quality: dict, labels, classes) -> pd.DataFrame:
    """Metrics per quality (rows) for HD-cosine, HD-Hamming (per HD model) and softmax models.
    ``models``: name -> (model, "hd" | "softmax"); images_by_quality: "clean" / quality -> uint8 images."""
    rows = []
    for q, imgs in images_by_quality.items():
        for name, (model, kind) in models.items():
            if kind == "softmax":
                ev = evaluate(labels, predict(model, imgs), classes, n_boot=0)
                rows.append({"quality": q, "model": name, **{m: ev["headline"][m] for m in METRICS}})
                continue
            out = hv.hypervector_outputs(model, imgs)
            for mode in ("cosine", "hamming"):
                ev = evaluate(labels, hv.predict_proba(out, memory, mode), classes, n_boot=0)
                rows.append({"quality": q, "model": f"{name} ({mode})", **{m: ev["headline"][m] for m in METRICS}})
    return pd.DataFrame(rows)


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
