"""How long the `paper` profile's book takes on this machine, chapter by chapter, from measured per-step costs.

The profile's training work is counted from the profile itself and the real split sizes: every model it trains
(model, input size, batch, images per epoch, epochs, how many such runs), each epoch one pass over the training
part whatever the imbalance strategy (hamviz's rule). The cost of one training step of each distinct (model,
size, batch) is measured here, each in a fresh process (:func:`benchmarks.training.child`: random weights, every
layer trainable, Adam, ``train_on_batch`` after warm-up). The estimate is steps x measured seconds per step:

- an UPPER bound on training where runs may stop early (the main model, autoencoders, joint, members: their
  epochs are maxima); exact step counts where the profile fixes budgets (the strategy grid, the optimiser
  comparison, search trials);
- training only: prediction passes, K-means, JPEG, t-SNE/UMAP, Grad-CAM and the first-time decode of the images
  are left out (minutes on a GPU machine's CPU cores; they do not scale with epochs);
- a pretrained backbone is timed from random weights (the same arithmetic); frozen layers make real steps faster
  than timed (every layer is timed as trainable);
- a joint model's step is timed as its autoencoder's step plus its classifier's.

Run it on the machine you want the estimate for (on a GPU machine: `python benchmarks/run.py paper_estimate`).
"""
from __future__ import annotations

import math
import sys
from collections import defaultdict

try:
    from . import common
    from .training import _run_child
except ImportError:  # run as a script from benchmarks/
    import common
    from training import _run_child


def _parts(P: dict) -> dict[str, int]:
    """Images in train / val / test of the profile's lesion-grouped split of the data at $HAMVIZ_DATA."""
    import pandas as pd

    from hamviz.config import data_dir
    from hamviz.splits import make_split
    meta = pd.read_csv(data_dir() / "HAM10000_metadata.csv")
    split = make_split(meta, P["split"]["fractions"], P["seed"], P["split"]["grouped"])
    return split.value_counts().to_dict()


def workload(full: dict, parts: dict[str, int]) -> list[dict]:
    """One row per kind of training run the profile ``full`` (a loaded profile) asks for: chapter, what, model,
    size, batch, images per epoch, epochs, runs. ``parts``: images per split part."""
    from hamviz.params import chapter_params
    rows = []

    def add(chapter, what, model, size, batch, images, epochs, runs=1):
        rows.append({"chapter": chapter, "what": what, "model": model, "size": int(size), "batch": int(batch),
                     "images_per_epoch": int(images), "epochs": int(epochs), "runs": int(runs)})

    n_train = parts["train"]
    clf = chapter_params(full, "classifier")
    size = clf["image_size"] or full["image_size"]
    limit = clf["train_limit"] or n_train
    add("classifier", "main model", clf["model"], size, clf["batch_size"], min(limit, n_train), clf["epochs"])
    if clf["leak_audit"] is True:
        add("classifier", "leak audit (image-level split)", clf["model"], size, clf["batch_size"],
            min(limit, n_train), clf["epochs"])
    g = clf.get("grid") or {}
    for m in g.get("models", []):
        own = (g.get("settings") or {}).get(m, {})
        add("classifier", "strategy grid", m, g.get("image_size") or size, own.get("batch_size", clf["batch_size"]),
            min(limit, n_train), own.get("epochs") or g.get("epochs") or clf["epochs"], len(g.get("strategies", [])))
    comp = chapter_params(full, "compression")
    ae_n = min(comp["ae_train_limit"] or n_train, n_train)
    for r in comp["ae_ratios"]:
        add("compression", "autoencoder", f"autoencoder_{r:g}x", size, comp.get("batch_size", 32), ae_n,
            comp["ae_epochs"])
    joint = chapter_params(full, "joint")
    for r in joint["ratios"]:
        add("joint", "joint model", f"joint_{r:g}x+{clf['model']}", size, joint.get("batch_size", 32),
            min(joint["train_limit"] or n_train, n_train), joint["epochs"])
    hd = chapter_params(full, "hypervector")
    n_hd = hd["per_class"] * len(hd["classes"] or range(7)) if hd.get("per_class") else n_train
    add("hypervector", "HD-MANN CNN", "hd_cnn", hd["image_size"] or full["image_size"], hd.get("batch_size", 32),
        n_hd, hd["epochs"])
    ex = chapter_params(full, "explain")
    ex_size = ex["image_size"] or full["image_size"]
    ex_n = min(ex["train_limit"] or n_train, n_train)
    add("explain", "random-search trials", "small_cnn", ex_size, ex["batch_size"], ex_n, ex["search_epochs"],
        ex["search_trials"])
    add("explain", "best search CNNs as members", "small_cnn", ex_size, ex["batch_size"], ex_n,
        ex["member_epochs"], ex["search_members"])
    if ex["reference_member"]:
        add("explain", "reference CNN member", "small_cnn", ex_size, ex["batch_size"], ex_n, ex["member_epochs"])
    for spec in ex["transfer_members"]:
        m = spec["model"] + (":own_top" if spec.get("head") == "own_top" else "")
        add("explain", f"{spec['model']} member", m, spec.get("image_size") or ex_size, ex["batch_size"], ex_n,
            spec.get("epochs") or ex["member_epochs"])
    add("explain", "optimiser comparison", "small_cnn", ex_size, ex["batch_size"], ex_n, ex["optimizer_epochs"],
        len(ex["optimizers"]))
    return rows


def _step_cases(rows: list[dict]) -> list[tuple[str, int, int]]:
    """The distinct (model, size, batch) to time; a joint model is timed as its two halves."""
    cases = []
    for r in rows:
        if r["model"].startswith("joint_"):
            ae, clf = r["model"].removeprefix("joint_").split("+")
            cases += [(f"autoencoder_{ae}", r["size"], r["batch"]), (clf, r["size"], r["batch"])]
        else:
            cases.append((r["model"], r["size"], r["batch"]))
    return list(dict.fromkeys(cases))


def _seconds_per_step(model: str, size: int, batch: int, measured: dict) -> float | None:
    if model.startswith("joint_"):
        ae, clf = model.removeprefix("joint_").split("+")
        halves = [measured.get((f"autoencoder_{ae}", size, batch)), measured.get((clf, size, batch))]
        return None if None in halves else sum(halves)
    return measured.get((model, size, batch))


def run(quick: bool = False, profile: str = "paper") -> dict:
    from hamviz.params import load_profile
    full = load_profile(profile, check_weights=False)
    parts = _parts(full)
    rows = workload(full, parts)
    settings = ({"warmup": 1, "min_steps": 2, "min_seconds": 0.0, "timeout_s": 900} if quick else
                {"warmup": 2, "min_steps": 5, "min_seconds": 5.0, "timeout_s": 1800})
    measured, errors = {}, {}
    for model, size, batch in _step_cases(rows):
        r = _run_child(model, size, {**settings, "batch": batch})
        key = (model, size, batch)
        if "error" in r:
            errors[f"{model}@{size}/b{batch}"] = r["error"][-300:]
        else:
            measured[key] = r["ms_per_step"] / 1000
        print(f"  {model}@{size} batch {batch}: " + (r.get("error", "")[-120:] or f"{r['ms_per_step']} ms/step"),
              flush=True)
    by_chapter = defaultdict(float)
    for r in rows:
        r["steps"] = math.ceil(r["images_per_epoch"] / r["batch"]) * r["epochs"] * r["runs"]
        s = _seconds_per_step(r["model"], r["size"], r["batch"], measured)
        r["seconds_per_step"] = s
        r["hours"] = None if s is None else round(r["steps"] * s / 3600, 2)
        by_chapter[r["chapter"]] += r["hours"] or 0.0
    return {"profile": profile, "parts": parts, "settings": settings, "runs": rows, "errors": errors,
            "hours_by_chapter": {k: round(v, 2) for k, v in by_chapter.items()},
            "hours_total": round(sum(by_chapter.values()), 2)}


def table(result: dict) -> str:
    rows = [(r["chapter"], r["what"], r["model"], r["size"], r["batch"], r["images_per_epoch"], r["epochs"],
             r["runs"], r["steps"], None if r["seconds_per_step"] is None else round(r["seconds_per_step"], 3),
             r["hours"]) for r in result["runs"]]
    rows += [(c, "(chapter total)", "", "", "", "", "", "", "", "", h) for c, h in result["hours_by_chapter"].items()]
    rows.append(("all", "(book total, training only)", "", "", "", "", "", "", "", "", result["hours_total"]))
    notes = [f"profile {result['profile']}; split parts {result['parts']}; per-step cost measured here "
             f"({result['settings']}); epochs are maxima where runs stop early (an upper bound there)"]
    notes += [f"not measured: {k}: {v}" for k, v in result["errors"].items()]
    return common.render(("chapter", "what", "model", "size", "batch", "images/epoch", "epochs", "runs", "steps",
                          "s/step", "hours"), rows, title="paper profile: training time estimate", notes=notes)


if __name__ == "__main__":
    res = run(quick="--quick" in sys.argv)
    print(table(res))
