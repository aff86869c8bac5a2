"""Recipes for the cpu profile's main classifier on a pretrained backbone, measured on this machine: each recipe's
validation and test metrics (lesion-grouped split, seed 42) and its minutes, so the profile's choice is made by
measurement (by validation balanced accuracy; test numbers are reported, never used to choose).

Recipes on frozen features (hamviz.features: computed once per size and flip setting, then cached):
  ``lr@S``: scikit-learn logistic regression with balanced class weights on the pooled features at SxS, its
  inverse regularisation C chosen on validation; ``lr@S+flips``: the same on features averaged over the image
  and its two mirror images.

Recipes that fine-tune (through hamviz's training core, :func:`hamviz.training.train_classifier`, S4 class
weights, rot90 and flips):
  ``ft@S-topN-eE``: the last N backbone layers and a simple head (dropout 0.2) trained together for E epochs
  at SxS, Adam with a cosine schedule from ``--lr``, seed 42 or ``--train-seed`` (``-seedN``); ``-warmW``: first
  W epochs of the head alone on the cached frozen features (two-stage); ``+flips``: probabilities averaged
  over flips; ``-balsel``: the kept epoch chosen on the class-weighted validation loss; ``-zoomshiftF``: random
  zoom and shift of F besides rot90 and flips.
  Each fine-tuned recipe is also scored with per-class decision weights fitted on validation for macro-F1
  (:func:`hamviz.metrics.decision_weights`, the classifier chapter's ``tune_decision``), freely and with
  validation balanced accuracy kept within 2 points of argmax's (``tune_decision_max_drop: 0.02``).

Run: ``.venv/bin/python benchmarks/classifier_recipes.py [--sizes 128 224] [--flips] [--finetune 160:60:3 ...]``;
prints a table, writes ``benchmarks/classifier_recipes.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a script from benchmarks/
    import common


def evaluate_lr(feats, view, log=print) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from hamviz.metrics import evaluate
    tr, va, te = (view.rows[p] for p in ("train", "val", "test"))
    scaler = StandardScaler().fit(feats[tr])
    x = scaler.transform(feats)
    best = None
    for C in (0.001, 0.003, 0.01, 0.03, 0.1, 1.0):
        t = time.time()
        clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(x[tr], view.labels[tr])
        val = evaluate(view.labels[va], clf.predict_proba(x[va]), n_boot=0)["headline"]
        log(f"  C={C}: val balanced accuracy {val['balanced_accuracy']:.3f} ({time.time() - t:.0f} s)")
        if best is None or val["balanced_accuracy"] > best[1]["balanced_accuracy"]:
            best = (C, val, clf)
    C, val, clf = best
    test = evaluate(view.labels[te], clf.predict_proba(x[te]), groups=view.groups[te], n_boot=200, seed=0)
    return {"C": C, "val": val, "test": test["headline"], "test_ci": test["ci"]}


def finetune(ham, size: int, top: int, epochs: int, lr: float, warmup: int = 0, tta: bool = False,
             select_on: str = "val_loss", zoom_shift: float = 0.0, train_seed: int = 42) -> dict:
    from hamviz.chapters.classifier import tuned_decision
    from hamviz.metrics import evaluate
    from hamviz.training import TrainConfig, train_classifier
    from hamviz.view import prepare
    view = prepare(ham, size, seed=42)
    cfg = TrainConfig(model="efficientnet_lite0", image_size=size, strategy="S4", optimizer="adam",
                      # dense and l2 as the profile passes them (the simple head has no dense layer): the same
                      # options give the same artefact key, so the cpu book loads a recipe's model instead of
                      # training it again
                      model_options={"weights": "imagenet", "trainable": top, "head": "simple", "dropout": 0.2,
                                     "dense": 1024, "l2": 0.0},
                      learning_rate=lr, schedule="cosine", epochs=epochs, patience=epochs, batch_size=32,
                      augment={"rot90": True, "flip": True, "zoom": zoom_shift, "shift": zoom_shift}, seed=train_seed,
                      head_warmup=warmup, tta_flips=tta, select_on=select_on)
    t = train_classifier(cfg, view)
    ev = {p: evaluate(view.labels[t.rows[p]], t.proba[p], groups=view.groups[t.rows[p]],
                      n_boot=200 if p == "test" else 0, seed=0) for p in ("val", "test")}
    # the decision rules tuned on validation for macro-F1 (the classifier chapter's tune_decision), scored on
    # test: free, and with validation balanced accuracy kept within 2 points of argmax's (the cpu profile's floor)
    _, decision = tuned_decision(view, t, "macro_f1", n_boot=200, seed=0, max_drop=0.02)
    free, floored = list(decision["weights"])
    return {"val": ev["val"]["headline"], "test": ev["test"]["headline"], "test_ci": ev["test"]["ci"],
            "test_tuned_macro_f1": decision[free]["test"], "test_tuned_macro_f1_ci": decision[free]["test_ci"],
            "test_tuned_floor0.02": decision[floored]["test"], "test_tuned_floor0.02_ci": decision[floored]["test_ci"],
            "decision_weights": decision["weights"],
            "train_minutes": round(t.seconds / 60, 1), "epochs_run": len(t.history["loss"]),
            "history": t.history, "config": cfg.to_dict()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224])
    ap.add_argument("--flips", action="store_true", help="also the flip-averaged features")
    ap.add_argument("--finetune", nargs="*", default=[], metavar="SIZE:TOP:EPOCHS[:WARMUP]",
                    help="fine-tuning recipes, e.g. 160:60:3 (size, last layers trained, epochs) or 160:60:3:10")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--tta", action="store_true", help="fine-tuned recipes score the mean over flips")
    ap.add_argument("--zoom-shift", type=float, default=0.0,
                    help="random zoom and shift (fraction) besides rot90 and flips")
    ap.add_argument("--balanced-selection", action="store_true",
                    help="early stopping and the kept epoch on the class-weighted validation loss")
    ap.add_argument("--train-seed", type=int, default=42,
                    help="seed of the fine-tuning (initial head, shuffling, augmentation); the split keeps seed 42")
    ap.add_argument("--skip-lr", action="store_true", help="only the fine-tuning recipes")
    ap.add_argument("--out", default=str(Path(__file__).with_name("classifier_recipes.json")))
    args = ap.parse_args(argv)
    from hamviz import load_ham10000
    from hamviz.features import backbone_features
    from hamviz.view import prepare
    ham = load_ham10000(common.data_dir())
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"machine": common.machine(), "recipes": {}}
    for spec in args.finetune:
        size, top, epochs, *warm = (int(v) for v in spec.split(":"))
        warmup = warm[0] if warm else 0
        name = (f"ft@{size}-top{top}-e{epochs}-lr{args.lr:g}" + (f"-warm{warmup}" if warmup else "")
                + ("+flips" if args.tta else ""))
        name += ("-balsel" if args.balanced_selection else "") + (f"-zoomshift{args.zoom_shift:g}"
                                                                     if args.zoom_shift else "")
        name += f"-seed{args.train_seed}" if args.train_seed != 42 else ""
        results["recipes"][name] = finetune(ham, size, top, epochs, args.lr, warmup, args.tta,
                                            "balanced_val_loss" if args.balanced_selection else "val_loss",
                                            args.zoom_shift, args.train_seed)
        r = results["recipes"][name]
        print(f"{name}: val bal.acc {r['val']['balanced_accuracy']:.3f}; "
              f"test bal.acc {r['test']['balanced_accuracy']:.3f}, "
              f"macro-F1 {r['test']['macro_f1']:.3f}, macro AUC {r['test']['macro_auc']:.3f} "
              f"({r['train_minutes']:.1f} min training, {r['epochs_run']} epochs); decision tuned on val for "
              f"macro-F1: test bal.acc {r['test_tuned_macro_f1']['balanced_accuracy']:.3f}, macro-F1 "
              f"{r['test_tuned_macro_f1']['macro_f1']:.3f}; the same, validation balanced accuracy within 2 points: "
              f"test bal.acc {r['test_tuned_floor0.02']['balanced_accuracy']:.3f}, macro-F1 "
              f"{r['test_tuned_floor0.02']['macro_f1']:.3f}", flush=True)
        out.write_text(json.dumps({**results, "machine": common.machine()}, indent=1, default=float))
    for size in ([] if args.skip_lr else args.sizes):
        t = time.time()
        view = prepare(ham, size, seed=42)
        print(f"{size}x{size}: images ready in {time.time() - t:.0f} s", flush=True)
        for flips in (("none", "hv") if args.flips else ("none",)):
            t = time.time()
            feats = backbone_features(view, "efficientnet_lite0", "imagenet", flips=flips)
            feat_min = (time.time() - t) / 60
            t = time.time()
            r = evaluate_lr(feats, view)
            name = f"lr@{size}" + ("+flips" if flips == "hv" else "")
            results["recipes"][name] = {**r, "feature_minutes": round(feat_min, 1),
                                        "fit_minutes": round((time.time() - t) / 60, 1)}
            h = r["test"]
            print(f"{name}: val bal.acc {r['val']['balanced_accuracy']:.3f}; test bal.acc "
                  f"{h['balanced_accuracy']:.3f}, macro-F1 {h['macro_f1']:.3f}, macro AUC {h['macro_auc']:.3f} "
                  f"(features {feat_min:.1f} min, fit {(time.time() - t) / 60:.1f} min)", flush=True)
    results["machine"] = common.machine()
    out.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
