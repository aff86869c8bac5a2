"""The compression chapter (``03_compression``): the main classifier scored on JPEG, K-means and autoencoder
versions of the same test images, with every method's rate in bits per pixel, so that all of them sit on one
rate-accuracy axis.

Each study returns rows of one table (``method``, ``setting``, ``bpp``, ``rate_kind``, fidelity, metrics),
plus the evaluations (:func:`hamviz.metrics.evaluate`) by setting for per-class reports.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import codecs
from ..autoenc import AEConfig, dequantised, latent_rate, reconstruct, train_autoencoder
from ..cache import jpeg_test_sets
from ..metrics import evaluate
from ..registry import CLASSES
from ..training import Artefact, predict

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")


def _fidelity(original: np.ndarray, coded: np.ndarray) -> dict:
    ps = np.array([codecs.psnr(a, b) for a, b in zip(original, coded)])
    ss = np.array([codecs.ssim(a, b) for a, b in zip(original, coded)])
    return {"psnr": float(np.mean(ps[np.isfinite(ps)])) if np.isfinite(ps).any() else float("inf"),
            "ssim": float(np.mean(ss))}


def _row(method, setting, bpp, rate_kind, ev, fidelity) -> dict:
    return {"method": method, "setting": setting, "bpp": float(bpp), "rate_kind": rate_kind, **fidelity,
            **{m: ev["headline"][m] for m in METRICS}}


def score(model, images, labels, groups=None, n_boot=0, seed=0, flips=False) -> dict:
    """evaluate() of ``model`` on uint8 ``images`` (the classifier's own preprocessing applies); ``flips``: the
    mean over each image and its mirror images, as the main model's ``tta_flips`` (its stored probabilities).
    The class probabilities (N, K) are kept under ``"proba"`` (for the replicate verdicts; not JSON-able)."""
    proba = predict(model, np.asarray(images), flips=flips)
    ev = evaluate(labels, proba, CLASSES, groups=groups, n_boot=n_boot, seed=seed)
    ev["proba"] = proba
    return ev


def reference(model, images, labels, groups=None, n_boot=0, seed=0, flips=False):
    """The uncompressed images (24 bpp raw): the reference line."""
    ev = score(model, images, labels, groups, n_boot, seed, flips)
    return _row("none", "original", 24.0, "raw 8-bit RGB", ev, {"psnr": float("inf"), "ssim": 1.0}), ev


def jpeg_study(model, cache, rows, labels, qualities, groups=None, n_boot=0, seed=0, flips=False):
    """Rows per quality, twice: the whole JPEG file, and its payload without the (shared) headers."""
    sets = jpeg_test_sets(cache, rows, qualities)
    original = np.asarray(cache.images[rows])
    table, evals = [], {}
    for q in sets.qualities:
        coded = np.asarray(sets.images[q])
        ev = score(model, coded, labels, groups, n_boot, seed, flips)
        fid = _fidelity(original, coded)
        header = codecs.jpeg_header_bytes(q, original.shape[1:3])
        file_bpp = float(codecs.bits_per_pixel(sets.n_bytes[q], original.shape).mean())
        payload_bpp = float(codecs.bits_per_pixel(sets.n_bytes[q] - header, original.shape).mean())
        table.append(_row("JPEG", f"q{q}", file_bpp, "JPEG file", ev, fid))
        table.append(_row("JPEG payload", f"q{q}", payload_bpp, "JPEG without headers", ev, fid))
        evals[f"JPEG q{q}"] = ev
    return table, evals, sets


def kmeans_study(model, images, labels, ks, groups=None, n_boot=0, seed=0, flips=False):
    """Rows per K: each image quantised to its own K-colour palette (index bits + 24-bit palette)."""
    table, evals, coded_by_k = [], {}, {}
    for k in ks:
        coded, bits = codecs.kmeans_batch(images, k, seed=seed)
        ev = score(model, coded, labels, groups, n_boot, seed, flips)
        bpp = float(codecs.bits_per_pixel(bits / 8, images.shape).mean())
        table.append(_row("K-means", f"K={k}", bpp, "palette indices + palette", ev, _fidelity(images, coded)))
        evals[f"K-means K={k}"] = ev
        coded_by_k[k] = (coded, np.asarray(bits))
    return table, evals, coded_by_k


def autoencoder_study(model, autoencoders: dict, images, labels, groups=None, n_boot=0, seed=0, flips=False):
    """Rows per ratio: reconstructions from the float32 latent, and from the 8-bit quantised latent at its
    float32, 8-bit fixed-length and entropy-coded rates. ``autoencoders``: ratio -> Artefact."""
    from ..models import decoder_of, encoder_of
    table, evals, recons = [], {}, {}
    pixels = images.shape[1] * images.shape[2]
    for ratio, ae in autoencoders.items():
        enc, dec = encoder_of(ae.model), decoder_of(ae.model)
        z = predict(enc, images)
        rate = latent_rate(z, pixels)
        rec = reconstruct(ae.model, images)
        rec_q = np.clip(np.rint(dec.predict(dequantised(z), verbose=0)), 0, 255).astype(np.uint8)
        ev = score(model, rec, labels, groups, n_boot, seed, flips)
        ev_q = score(model, rec_q, labels, groups, n_boot, seed, flips)
        name = f"{ratio:g}x"
        table.append(_row("autoencoder (float32 latent)", name, rate["float32_bpp"], "float32 latent", ev,
                          _fidelity(images, rec)))
        table.append(_row("autoencoder (8-bit latent)", name, rate["quantised_bpp"], "8-bit latent", ev_q,
                          _fidelity(images, rec_q)))
        table.append(_row("autoencoder (entropy-coded)", name, rate["entropy_coded_bpp"],
                          "8-bit latent, ideal entropy coder", ev_q, _fidelity(images, rec_q)))
        evals[f"autoencoder {name}"] = ev
        evals[f"autoencoder {name} (8-bit latent)"] = ev_q
        recons[ratio] = (rec, rec_q, rate["entropy_coded_bpp"] * pixels)
    return table, evals, recons


def ae_config(P: dict, ratio: float, image_size: int, seed: int | None = None) -> AEConfig:
    """The AEConfig of the compression chapter's parameters ``P`` (flat) for one ratio at ``image_size`` (the
    main classifier's: the autoencoders code the images that model sees); ``seed``: a replicate's training seed
    (default the profile's)."""
    return AEConfig(ratio=ratio, image_size=image_size, filters=tuple(P["ae_filters"]),
                    epochs=P["ae_epochs"], patience=P["ae_patience"], learning_rate=P["ae_learning_rate"],
                    train_limit=P["ae_train_limit"], val_limit=P["ae_val_limit"],
                    seed=P["seed"] if seed is None else seed)


def autoencoders(ch, view, rows: dict, log=print, seed: int | None = None) -> dict[float, Artefact]:
    """The compression chapter's autoencoders (ratio -> Artefact, ``arrays["test_mae"]``) for the profile of
    the running chapter ``ch``, trained with ``seed`` (default the profile's: replicate 0): loaded from the store,
    trained if missing, on ``rows`` of ``view``."""
    P = ch.section("compression")
    return {r: train_autoencoder(ae_config(P, r, view.size, seed), view, rows=rows, log=log) for r in P["ae_ratios"]}


def coded_versions(ae_models: dict, images: np.ndarray) -> dict[str, np.ndarray]:
    """"AE <ratio>x" -> the reconstructions of ``images`` from each autoencoder's 8-bit quantised latent (what is
    sent at the entropy-coded rate)."""
    from ..models import decoder_of, encoder_of
    out = {}
    for ratio, ae in ae_models.items():
        z = predict(encoder_of(ae.model), images)
        out[f"autoencoder {ratio:g}x (8-bit latent)"] = np.clip(np.rint(decoder_of(ae.model).predict(
            dequantised(z), verbose=0)), 0, 255).astype(np.uint8)
    return out


def replicate_effects(models: list, first: dict[str, np.ndarray], coded: list[dict[str, np.ndarray]], images,
                      labels, groups, *, flips: bool, metric: str = "balanced_accuracy", n_boot: int = 200,
                      seed: int = 0) -> dict[str, dict]:
    """Each coding's effect on the main model, per replicate, in points of ``metric`` against the uncompressed
    ``images`` (the same images), paired by seed on shared lesion resamples
    (:func:`hamviz.replicates.effect_draws`). ``models``: the main model's replicates (Artefacts); ``first``:
    name -> replicate 0's probabilities already computed ("original" and every coding); ``coded[r]``: name ->
    replicate r's coded images (r >= 1; the same JPEG / K-means images for every replicate, each replicate's own
    autoencoders' reconstructions). Returns name -> {"per_seed", "draws"}."""
    from ..replicates import effect_draws
    probas = [first] + [{"original": predict(t.model, images, flips=flips),
                         **{name: predict(t.model, x, flips=flips) for name, x in c.items()}}
                        for t, c in zip(models[1:], coded)]
    out = {}
    for name in (n for n in first if n != "original"):
        effects, draws = effect_draws(labels, [p[name] for p in probas], [p["original"] for p in probas], metric,
                                      groups=groups, n_boot=n_boot, seed=seed)
        out[name] = {"per_seed": {t.config.seed: float(e) for t, e in zip(models, effects)}, "draws": draws}
    return out


def rates(table: pd.DataFrame) -> dict[str, tuple[str, str, float]]:
    """The name :func:`replicate_effects` gives each coding -> (method, setting, bpp): JPEG at its whole file,
    K-means at palette + indices, an autoencoder at its 8-bit latent's entropy-coded rate."""
    out = {}
    for _, r in table.iterrows():
        name = {"JPEG": f"JPEG {r['setting']}", "K-means": f"K-means {r['setting']}",
                "autoencoder (entropy-coded)": f"autoencoder {r['setting']} (8-bit latent)"}.get(r["method"])
        if name:
            out[name] = (r["method"].split(" (")[0], r["setting"], float(r["bpp"]))
    return out


def _in_rate_order(effects: dict, rates_: dict, method: str, highest_first: bool = False) -> list[str]:
    """The codings of ``method`` in ``effects``, ordered by their rate (bits per pixel): a fixed sequence's order."""
    return sorted((n for n in effects if rates_[n][0] == method), key=lambda n: rates_[n][2], reverse=highest_first)


def verdicts(ch, effects: dict[str, dict], rates_: dict, margin: float = 2.0) -> tuple[pd.DataFrame, str | None]:
    """Two families of verdicts from all replicates, multiple testing controlled, each a fixed sequence per method
    stated in advance (a fixed sequence needs no correction within it: Maurer, Hothorn & Lehmacher 1995; each
    method's sequence at 0.05 / the number of methods, Bonferroni over the methods):

    - **costs accuracy** (claim: change < 0), one verdict per coding, tested from the method's lowest rate up
      (where a cost is most expected), stopping at the first coding that is not shown: the codings above it are
      recorded with their numbers as "not tested" (not settled), with :meth:`Chapter.verdict`;
    - **within ``margin`` points** (claim: change > -margin), tested from the method's highest rate down,
      stopping at the first coding that is not shown. The lowest rate that passes, over all methods, is recorded as
      the verdict "lowest rate within <margin> points".

    With 3 replicates this matters: a Bonferroni correction over all m codings (the earlier rule) puts each
    interval at 1 - 0.05/m, where the t factor of 2 degrees of freedom is about 18 for m = 16, and codings that cost
    35 points in every replicate were "not settled".

    Returns (table sorted by rate: method, setting, bpp, mean change with its interval, per-seed changes, both
    verdicts ("not tested" after a sequence stopped); the name of the lowest-rate coding shown within the margin,
    or None)."""
    from ..replicates import decide
    methods = sorted({rates_[n][0] for n in effects})
    alpha = 0.05 / max(1, len(methods))
    rows, passed = {}, []
    for method in methods:  # costs: the lowest rate first, stop at the first coding not shown
        stopped = None
        for name in _in_rate_order(effects, rates_, method):
            e = effects[name]
            _, setting, bpp = rates_[name]
            cost = ch.verdict(f"cost: {name}", f"Does {name} cost balanced accuracy?", e["per_seed"], e["draws"],
                              direction=-1, alpha=alpha, untested=stopped and (
                                  f"not tested: the {method} sequence (lowest rate first) stopped at {stopped}"))
            rows[name] = {"method": method, "setting": setting, "bpp": bpp, "mean": cost.mean, "low": cost.low,
                          "high": cost.high, "per_seed": cost.per_seed, "change [interval]": cost.effect_text(),
                          "costs accuracy": "not tested" if stopped else f"{cost.k} of {cost.n}: {cost.status}",
                          f"within {margin:g} points": "not tested"}
            if not stopped and not cost.shown:
                stopped = name
    for method in methods:  # the fixed sequence: highest rate first, stop at the first failure
        for name in _in_rate_order(effects, rates_, method, highest_first=True):
            e = effects[name]
            within = decide(e["per_seed"], e["draws"], null=-margin, direction=1, alpha=alpha)
            rows[name][f"within {margin:g} points"] = f"{within.k} of {within.n}: {within.status}{within.level_text}"
            if not within.shown:
                break
            passed.append((rates_[name][2], name))
    lowest = min(passed)[1] if passed else None
    if lowest:
        e = effects[lowest]
        ch.verdict(f"lowest rate within {margin:g} points", f"Is {lowest} ({rates_[lowest][2]:.2f} bpp, the lowest "
                   f"rate shown within {margin:g} points, testing each method from its highest rate down) within "
                   f"{margin:g} points of the uncompressed images?", e["per_seed"], e["draws"], null=-margin,
                   direction=1, alpha=alpha)
    table = pd.DataFrame(list(rows.values())).sort_values("bpp").reset_index(drop=True)
    table.attrs["levels"] = {"costs accuracy": 1 - alpha, "within": 1 - alpha}
    return table, lowest


def gallery(images_by_setting: dict[str, np.ndarray], labels, per_class: int = 1, seed: int = 0):
    """The same test images (``per_class`` of each class present) under every setting: (images, captions)
    in rows of one image, settings left to right."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(np.asarray(labels) == c)
        if len(idx):
            picks += list(rng.choice(idx, size=min(per_class, len(idx)), replace=False))
    images, captions = [], []
    for i in picks:
        for name, arr in images_by_setting.items():
            images.append(np.asarray(arr[i]))
            captions.append(f"{CLASSES[labels[i]]}: {name}")
    return images, captions, len(images_by_setting)


def as_table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def alternatives(i: int, coded_by_k: dict, recons: dict) -> dict:
    """Other codings of image ``i`` for the widget: name -> (image, bits). Autoencoders as the decoder sees
    the 8-bit latent, at the entropy-coded rate; K-means at palette + index bits."""
    out = {f"autoencoder {r:g}x": (rq[i], int(round(bits))) for r, (_, rq, bits) in recons.items()}
    out.update({f"K-means {k}": (coded[i], int(bits[i])) for k, (coded, bits) in coded_by_k.items()})
    return out


def confusion_frame(ev: dict) -> pd.DataFrame:
    """The count confusion matrix of an evaluate() result as a DataFrame (true rows, predicted columns)."""
    names = list(ev.get("classes", CLASSES))
    return pd.DataFrame(ev["confusion"], index=pd.Index(names, name="true"),
                        columns=pd.Index(names, name="predicted"))
