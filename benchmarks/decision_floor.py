"""How the classifier chapter's decision rule (per-class weights fitted on validation for macro-F1,
:func:`hamviz.metrics.decision_weights`) trades balanced accuracy for macro-F1 as its floor moves: for stored
main-model artefacts (folders of the artefact store, ``$HAMVIZ_CACHE/models/<name>-<key>``, trained on the
lesion-grouped split of seed 42), each ``max_drop`` (how far validation balanced accuracy may fall below plain
argmax's; ``none``: no floor) with its validation and test headline and the test part's 95 % lesion-bootstrap
intervals. The weights see only the validation part; the test part is scored, so this is a sensitivity table for
a preference set in the profile (``tune_decision_max_drop``), not a way to choose it.

Run: ``.venv/bin/python benchmarks/decision_floor.py ~/.cache/hamviz/models/efficientnet_lite0-160-S4-... [...]
[--max-drops none 0 0.01 0.02 0.03 0.05] [--out benchmarks/decision_floor.json]``; prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

try:
    from . import common
except ImportError:  # run as a script from benchmarks/
    import common


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="artefact folders holding arrays.npz and config.json")
    ap.add_argument("--max-drops", nargs="+", default=["none", "0", "0.01", "0.02", "0.03", "0.05"])
    ap.add_argument("--out", default=str(Path(__file__).with_name("decision_floor.json")))
    args = ap.parse_args(argv)
    drops = [None if d == "none" else float(d) for d in args.max_drops]
    for folder in args.models:
        if not (folder / "arrays.npz").is_file() or not (folder / "config.json").is_file():
            ap.error(f"{folder} is not a stored model (no arrays.npz and config.json there): pass folders of "
                     "$HAMVIZ_CACHE/models/")
    from hamviz import load_ham10000
    from hamviz.chapters.classifier import tuned_decision
    from hamviz.view import prepare
    ham = load_ham10000(common.data_dir())
    results = {"machine": common.machine(), "models": {}}
    for folder in args.models:
        stored = json.loads((folder / "config.json").read_text())
        arrays = np.load(folder / "arrays.npz")
        view = prepare(ham, int(stored["config"]["image_size"]), seed=42)
        if stored.get("split") != view.split_id:
            sys.exit(f"{folder} was trained on split {stored.get('split')}, not this data's lesion-grouped split of "
                     f"seed 42 ({view.split_id}): point HAMVIZ_DATA at the data it was trained on")
        t = SimpleNamespace(rows=view.rows, proba={p: arrays[p] for p in ("val", "test")})
        rows = {}
        for drop in drops:
            _, rec = tuned_decision(view, t, "macro_f1", n_boot=200, seed=0, max_drop=drop)
            rule = rec["tuned_rule"]
            rows["argmax"] = {k: rec["argmax"][k] for k in ("val", "test", "test_ci")}
            rows[f"max_drop {drop}"] = {**{k: rec[rule][k] for k in ("val", "test", "test_ci")},
                                        "weights": rec["weights"][rule]}
        results["models"][folder.name] = rows
        print(f"\n{folder.name}\n{'rule':16s} {'val bal.acc':>11s} {'val macro-F1':>12s} {'test bal.acc':>12s} "
              f"{'test macro-F1':>13s} {'test AUC':>8s} {'test acc':>8s}")
        for name, r in rows.items():
            v, te = r["val"], r["test"]
            print(f"{name:16s} {v['balanced_accuracy']:11.3f} {v['macro_f1']:12.3f} {te['balanced_accuracy']:12.3f} "
                  f"{te['macro_f1']:13.3f} {te['macro_auc']:8.3f} {te['accuracy']:8.3f}")
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
