"""The results book, built for real: the EDA chapter through papermill with the tiny profile on the
real data, asserting on the numbers it records; skipping, failure, interruption and bad input."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from hamviz import DataError, ParamsError
from hamviz.book import build, discover, prepare
from hamviz.book.index import write_index
from hamviz.registry import CLASSES

REPO = Path(__file__).resolve().parents[1]


def record(out, stem="01_eda"):
    return json.loads((out / "chapters" / stem / f"{stem}.json").read_text())


def test_eda_chapter_records_real_numbers(tiny_book):
    out, summary, _ = tiny_book
    assert [c["status"] for c in summary["chapters"]] == ["ok"] * len(summary["chapters"])
    rec = record(out)
    v = rec["values"]
    assert rec["complete"] and rec["profile"] == "tiny"
    assert v["images"] == 10015 and v["lesions"] == 7470
    assert v["class_images"] == {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113,
                                 "nv": 6705, "vasc": 142}
    assert v["lesions_in_two_parts"] == 0
    assert v["lesion_overlap"] == {"train/val": 0, "train/test": 0, "val/test": 0}
    assert v["image_level_lesion_overlap"]["train/test"] > 100  # the leak the grouped split prevents
    sizes = v["split_sizes"]
    assert sum(sizes.values()) == 10015
    assert abs(sizes["train"] / 10015 - 0.7) < 0.01 and abs(sizes["test"] / 10015 - 0.1) < 0.01
    assert v["cached_images"] == 10015 and v["cache_size"] == [32, 32]
    assert 0.6 < v["majority_share"] < 0.7 and 50 < v["imbalance_ratio"] < 65
    assert 9000 < v["contrast_valid_images"] <= 10015
    by_class = v["contrast_dE2000_median_by_class"]
    assert set(by_class) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert all(1 < x < 60 for x in by_class.values())
    assert 0 < min(v["area_median_by_class"].values()) < max(v["area_median_by_class"].values()) < 1
    prov = rec["provenance"]
    assert prov["data_fingerprint"] and prov["hamviz"] and prov["params"]["image_size"] == 32


def test_classifier_chapter_records_test_metrics(tiny_book, ham):
    from hamviz.splits import get_split
    out, _, _ = tiny_book
    v = record(out, "02_classifier")["values"]
    split = get_split(ham, (0.7, 0.2, 0.1), seed=42)  # the tiny profile's split
    test_ids = set(split.index[split == "test"])
    assert set(v["test_image_ids"]) == test_ids and v["n_test"] == len(test_ids)
    lesion = ham.meta.set_index("image_id")["lesion_id"]
    train_lesions = set(lesion[split.index[split == "train"]])
    assert not train_lesions & set(lesion[list(test_ids)])
    assert v["n_train"] == 1500  # the tiny profile's train_limit
    # the headline numbers agree with the confusion matrix and the per-class report they summarise
    test, cm, rep = v["parts"]["test"], np.array(v["test_confusion"]), v["test_report"]
    assert test["n"] == len(test_ids) and cm.sum() == len(test_ids)
    assert test["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    present = [c for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc") if rep[c]["support"] > 0]
    assert test["balanced_accuracy"] == pytest.approx(np.mean([rep[c]["recall"] for c in present]))
    assert test["macro_f1"] == pytest.approx(np.mean([rep[c]["f1-score"] for c in present]))
    assert [rep[c]["support"] for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")] == cm.sum(1).tolist()
    assert len(v["test_confusion"]) == 7 and set(v["test_auc_per_class"]) == set(v["test_report"]) - {
        "macro avg", "weighted avg"}
    for m, ci in v["test_ci"].items():
        assert ci["low"] - 1e-9 <= ci["value"] <= ci["high"] + 1e-9, m
    # two epochs on 1,500 images mostly predict nv (balanced accuracy near 1/7), but the ranking has learned:
    assert v["parts"]["test"]["macro_auc"] > 0.55
    assert set(v["leak_audit"]) == {"accuracy", "balanced_accuracy", "macro_f1", "macro_auc"}
    assert [(g["model"], g["strategy"], g["seed"]) for g in v["grid"]] == [  # two replicates of each (tiny profile)
        (m, st, seed) for m in ("small_cnn", "efficientnet_lite0 frozen head") for st in ("S1", "S4")
        for seed in (42, 43)]
    for g in v["grid"]:  # per-class precision beside recall and F1: F1 is their harmonic mean
        for c in ("mel", "nv", "bkl"):
            p_, r_ = g[f"precision_{c}"], g[f"recall_{c}"]
            assert g[f"f1_{c}"] == pytest.approx(2 * p_ * r_ / (p_ + r_) if p_ + r_ else 0.0, abs=1e-9)
    val = pd.DataFrame(v["grid"]).groupby(["model", "strategy"])["val_balanced_accuracy"].mean()
    for b in v["grid_best_per_model"]:  # each model's strategy: the best mean VALIDATION balanced accuracy
        assert b["val_balanced_accuracy"] == pytest.approx(val[b["model"]].max())
    heads = pd.DataFrame([g for g in v["grid"] if g["model"].endswith("frozen head")])
    assert (heads["image_size"] == 64).all() and (heads["epochs_run"] == 2).all()  # the main model's size, head_warmup
    # S4 weighs the rare classes up: a head trained with it recalls them better than the unweighted S1 head, in
    # each replicate
    by = heads.pivot(index="seed", columns="strategy", values="balanced_accuracy")
    assert (by["S4"] > by["S1"]).all()
    # the verdicts: every one from both replicates, per seed, with k of N and a pooled interval around its mean
    verdicts = record(out, "02_classifier")["verdicts"]
    assert {"leak_balanced_accuracy", "tuned_rule_macro_f1", "strategy_small_cnn"} <= set(verdicts)
    for key, vd in verdicts.items():
        assert list(vd["per_seed"]) == ["42", "43"] and vd["n"] == 2, key
        assert vd["mean"] == pytest.approx(np.mean(list(vd["per_seed"].values())))
        assert vd["status"] in ("shown", "not settled") and 0 <= vd["k"] <= 2
        assert vd["low"] <= vd["mean"] <= vd["high"] or vd["low"] is None, key
        assert (vd["status"] == "shown") == (vd["k"] == 2
                                             and (vd["low"] > 0 if vd["direction"] > 0 else vd["high"] < 0))
    leak = v["leak_audit"]["balanced_accuracy"]
    assert leak["paired inflation (points)"] == pytest.approx(verdicts["leak_balanced_accuracy"]["mean"])
    assert leak["paired inflation (points)"] == pytest.approx(100 * (
        leak["siblings in training: shared test images"] - leak["grouped: shared test images"]), abs=1e-6)
    assert leak["unpaired inflation (points)"] == pytest.approx(
        100 * (leak["image-level split"] - leak["lesion-grouped split"]), abs=1e-6)
    # Zhang's split (Zhang's own three numbers), scored on its own test part
    assert v["leak_zhang_parts"] == {"train": 7809, "val": 1103, "test": 1103}
    assert leak["Zhang's split minus lesion-grouped (points)"] == pytest.approx(
        100 * (leak["Zhang's split (val/test: single-image lesions)"] - leak["lesion-grouped split"]), abs=1e-6)
    # one shared test image per test lesion, some with other shots in training
    assert 0 < v["leak_shared_leaked"] < v["leak_shared_test"] < v["parts"]["test"]["n"]
    # the replicates of the main model: per seed, and the pooled mean equals the mean of the per-seed test numbers
    reps = v["replicate_metrics"]
    assert [r["seed"] for r in reps["per_seed"]] == [42, 43]
    assert reps["per_seed"][0]["balanced_accuracy"] == pytest.approx(v["parts"]["test"]["balanced_accuracy"])
    assert reps["pooled"]["balanced_accuracy"]["mean"] == pytest.approx(
        np.mean([r["balanced_accuracy"] for r in reps["per_seed"]]))
    assert v["leak_audit_model"].endswith("head on frozen features")
    conv = v["convergence"]["seed 42"]  # whether the main model converged, judged from its own history
    assert (conv["epochs"], conv["best_epoch"]) == (v["epochs_run"], v["best_epoch"])
    assert (conv["status"] == "one epoch") == (v["epochs_run"] == 1) and "converged" in v["convergence_note"]
    # the external set: the 70 600x450 originals, resized as in training, every one scored
    assert v["external_n"] == 70 and v["external_resize"] == "stretch"
    assert np.array(v["external"]["confusion"]).sum() == 70 and v["external"]["headline"]["n"] == 70
    # the decision rule tuned on validation: plain argmax is the chapter's own test result; the weights were
    # fitted on the validation part (where they cannot do worse than argmax), the test part only scored
    # (the cpu profile's floor, inherited: a second tuned rule keeps validation balanced accuracy within 0.02)
    d = v["decision"]
    assert d["objective"] == "macro_f1" and d["max_drop"] == 0.02 and len(d["weights"]) == 2
    assert d["tuned_rule"] == list(d["weights"])[-1] and d["tuned_rule"].endswith(
        "balanced accuracy no more than 2 points below argmax's")
    for rule, w in d["weights"].items():
        assert list(w) == list(CLASSES) and np.prod(list(w.values())) == pytest.approx(1.0)
        assert d[rule]["val"]["macro_f1"] >= d["argmax"]["val"]["macro_f1"]
        assert d[rule]["test"]["n"] == test["n"]
    assert d[d["tuned_rule"]]["val"]["balanced_accuracy"] >= d["argmax"]["val"]["balanced_accuracy"] - 0.02 - 1e-9
    assert d["argmax"]["test"]["balanced_accuracy"] == pytest.approx(test["balanced_accuracy"])
    assert d["argmax"]["test"]["macro_f1"] == pytest.approx(test["macro_f1"])
    assert v["tuned_test_macro_f1"] == pytest.approx(d[d["tuned_rule"]]["test"]["macro_f1"])
    summary = record(out, "02_classifier")["summary"]
    assert {"test_balanced_accuracy_mean_over_replicates", "test_macro_f1_mean_over_replicates",
            "test_macro_auc_mean_over_replicates"} <= set(summary)
    assert "test_balanced_accuracy" not in summary  # replicate 0 alone is not a key result
    assert v["summary_ci"]["test_balanced_accuracy_mean_over_replicates"]["low"] <= summary[
        "test_balanced_accuracy_mean_over_replicates"]
    # the chapter's answers are in its summary, each with k of N
    answers = {k: a for k, a in summary.items() if k.startswith("answer: ")}
    assert len(answers) == len(verdicts) and all("holds in" in a and "of 2" in a for a in answers.values())


def check_subgroups_operating_points_and_calibration(r: dict):
    """The classifier record's subgroup, operating-point and calibration sections against each other and against
    the chapter's other numbers (split out so that a record can be checked without building the book)."""
    v, verdicts = r["values"], r["verdicts"]
    sub = pd.DataFrame(v["subgroups"]).set_index(["attribute", "group"])
    for attr in ("sex", "age", "body site", "diagnosis confirmed by"):  # every test image in one group of each
        assert sub.xs(attr, level="attribute")["images"].sum() == v["n_test"]
    few = sub["note"].str.startswith("too few lesions")
    assert (sub[few]["lesions"] < 20).all() and (sub[~few]["lesions"] >= 20).all()
    for _, g in sub[~few & (sub["note"] != "")].iterrows():  # a metric the group cannot define: missing, and why
        missing = [m for m in ("melanoma sensitivity", "melanoma specificity", "macro AUC") if pd.isna(g[m])]
        assert missing and "undefined" in g["note"] and all(m.split()[-1] in g["note"] for m in missing)
    scored = sub[~few]
    for _, g in scored.iterrows():
        per = g["balanced accuracy per replicate"]
        assert len(per) == len(v["seeds"]) and np.mean(per) == pytest.approx(g["balanced accuracy"])
        assert 0 <= g["balanced accuracy low"] <= g["balanced accuracy"] <= g["balanced accuracy high"] <= 100
    gaps = {k: x for k, x in verdicts.items() if k.startswith("subgroup_gap_")}
    assert gaps  # each gap: the difference of its two groups' balanced accuracies, replicate by replicate
    for key, g in gaps.items():
        attr = key.removeprefix("subgroup_gap_").replace("_", " ")
        a, b = g["question"].split("(")[1].split(", the widest")[0].split(" vs ")
        want = np.subtract(sub.loc[(attr, a), "balanced accuracy per replicate"],
                           sub.loc[(attr, b), "balanced accuracy per replicate"])
        assert list(g["per_seed"].values()) == pytest.approx(want)
    areas = pd.DataFrame(v["operating_areas"]).set_index("task")
    # melanoma vs rest scores the mel probability: its ROC AUC is the per-class AUC the chapter recorded
    assert areas.loc["melanoma vs rest", "ROC AUC per replicate"][0] == pytest.approx(v["test_auc_per_class"]["mel"])
    assert (areas["partial AUC above 80 % sensitivity"] <= 0.2 + 1e-12).all()
    points = pd.DataFrame(v["operating_points"])
    for _, p in points.iterrows():  # thresholds fitted on validation reach the target there
        assert p["val sensitivity"] >= float(p["target sensitivity"].rstrip(" %")) / 100 - 1e-9
        assert 0 <= p["specificity low"] <= p["specificity"] <= p["specificity high"] <= 1
    cal = pd.DataFrame(v["calibration"]).set_index("replicate")
    assert cal.loc[0, "ece_before"] == pytest.approx(100 * v["parts"]["test"]["ece"])  # replicate 0, as trained
    assert list(verdicts["temperature_ece"]["per_seed"].values()) == pytest.approx(
        (cal["ece_after"] - cal["ece_before"]).tolist())


def check_metadata(r: dict):
    """The metadata section: the image-only head is the leak audit's head on the lesion-grouped split (the same
    artefacts), and each verdict's per-seed differences are the table's, in points."""
    v, verdicts = r["values"], r["verdicts"]
    for k in ("balanced_accuracy", "macro_f1", "macro_auc"):
        e = v["metadata_effects"][k]
        assert e["image features"] == pytest.approx(v["leak_audit"][k]["lesion-grouped split"])
        per = list(verdicts[f"metadata_{k}"]["per_seed"].values())
        assert len(per) == len(v["seeds"]) and np.mean(per) == pytest.approx(e["difference (points)"])
        assert e["per replicate"] == ", ".join(f"{x:+.1f}" for x in per)
        assert 100 * (e["image features + metadata"] - e["image features"]) == pytest.approx(np.mean(per))
    # HAM10000 has "unknown"
    assert "sex=missing" in v["metadata_columns"] and "sex=unknown" not in v["metadata_columns"]
    assert any(c.startswith("site=") for c in v["metadata_columns"])


def test_classifier_chapter_records_subgroups_operating_points_and_calibration(tiny_book):
    out, _, _ = tiny_book
    check_subgroups_operating_points_and_calibration(record(out, "02_classifier"))
    check_metadata(record(out, "02_classifier"))


def test_compression_chapter_records_every_method(tiny_book):
    out, _, _ = tiny_book
    rec = record(out, "03_compression")
    v = rec["values"]
    assert v["n_test"] == record(out, "02_classifier")["values"]["n_test"]
    jpeg = [r for r in v["jpeg"] if r["method"] == "JPEG"]
    assert [r["setting"] for r in jpeg] == ["q95", "q50", "q10", "q1"]  # every quality, high to low
    bpp = [r["bpp"] for r in jpeg]
    psnr = [r["psnr"] for r in jpeg]
    assert bpp == sorted(bpp, reverse=True) and psnr == sorted(psnr, reverse=True)
    assert all(np.isfinite(psnr)) and 10 < psnr[-1] < psnr[0] < 60
    payload = [r["bpp"] for r in v["jpeg"] if r["method"] == "JPEG payload"]
    assert all(0 < p < b for p, b in zip(payload, bpp))
    km = v["kmeans"]
    assert [r["setting"] for r in km] == ["K=4", "K=16"] and km[0]["bpp"] < km[1]["bpp"] <= 4 + 16 * 24 / 1024
    assert km[0]["psnr"] < km[1]["psnr"]
    # K-means' own uncompressed reference is scored on the K-means images (kmeans_limit), not the whole set
    assert v["kmeans_reference"]["n"] == v["kmeans_images"] == 100 < v["n_test"]
    ae = {(r["method"], r["setting"]): r for r in v["autoencoder"]}
    for ratio, ch in (("3x", 16), ("6x", 8)):
        assert ae[("autoencoder (float32 latent)", ratio)]["bpp"] == 32 * 8 * 8 * ch / (32 * 32)
        assert ae[("autoencoder (8-bit latent)", ratio)]["bpp"] == 8 * 8 * 8 * ch / (32 * 32)
        assert ae[("autoencoder (entropy-coded)", ratio)]["bpp"] <= ae[("autoencoder (8-bit latent)", ratio)]["bpp"]
    # the uncompressed reference is the classifier chapter's own test result (same model, same images, scored
    # alike: the tiny profile's tta_flips null resolves to the tiny main model's, no test-time flips)
    assert v["tta_flips"] is False and v["protocol"]["views scored"]["this run"] == \
        "one per image (tta_flips: null, as the main model)" and v["protocol"]["views scored"]["same?"] == "yes"
    clf = record(out, "02_classifier")["values"]["parts"]["test"]
    assert v["reference"]["balanced_accuracy"] == pytest.approx(clf["balanced_accuracy"], abs=1e-9)
    assert v["reference"]["accuracy"] == pytest.approx(clf["accuracy"], abs=1e-9)
    # a file and its payload, or a latent at two rates, are the same images: the same metrics
    by = {}
    for r in v["rate_table"]:
        by.setdefault((r["method"].split(" ")[0], r["setting"], r["psnr"]), set()).add(r["balanced_accuracy"])
    assert all(len(values) == 1 for values in by.values()), by
    assert {a["ratio"] for a in v["autoencoders"]} == {"3x", "6x"}
    assert all(np.isfinite(a["test MAE"]) for a in v["autoencoders"])
    # every coding's verdict from both replicates; replicate 0's change is the tables' difference to the
    # uncompressed reference on the same images
    verdicts = rec["verdicts"]
    ref_b = v["reference"]["balanced_accuracy"]
    for r in jpeg:
        vd = verdicts[f"cost: JPEG {r['setting']}"]
        assert list(vd["per_seed"]) == ["42", "43"] and vd["direction"] == -1
        assert vd["per_seed"]["42"] == pytest.approx(100 * (r["balanced_accuracy"] - ref_b))
    for r in km:
        assert verdicts[f"cost: K-means {r['setting']}"]["per_seed"]["42"] == pytest.approx(
            100 * (r["balanced_accuracy"] - v["kmeans_reference"]["balanced_accuracy"]))
    for ratio in ("3x", "6x"):
        assert verdicts[f"cost: autoencoder {ratio} (8-bit latent)"]["per_seed"]["42"] == pytest.approx(
            100 * (ae[("autoencoder (8-bit latent)", ratio)]["balanced_accuracy"] - ref_b))
    changes = pd.DataFrame(v["changes"])
    assert changes["bpp"].is_monotonic_increasing and len(changes) == len(jpeg) + len(km) + 2
    for method, rows_ in changes.groupby("method"):  # a fixed sequence per method, highest rate first: once a
        said = rows_.sort_values("bpp", ascending=False)["within 2 points"].tolist()  # coding fails, none below it
        first_fail = next((i for i, w in enumerate(said) if "not settled" in w), len(said))  # is tested
        assert all(": shown" in w for w in said[:first_fail]) and all(w == "not tested" for w in said[first_fail + 1:])
    ok = changes[changes["within 2 points"].str.contains(": shown")]
    if len(ok):  # the lowest rate among the codings shown within 2 points
        assert changes.set_index("bpp").loc[ok["bpp"].min(), "setting"] in v["lowest_rate_within_2_points"]
        assert verdicts["lowest rate within 2 points"]["status"] == "shown"
    else:
        assert v["lowest_rate_within_2_points"] is None
    for method, rows_ in changes.groupby("method"):  # 'costs accuracy': a fixed sequence per method, lowest rate
        said = rows_.sort_values("bpp")["costs accuracy"].tolist()  # first; after the first coding not shown,
        first_fail = next((i for i, w in enumerate(said) if "not settled" in w), len(said))  # none is tested
        assert all(": shown" in w for w in said[:first_fail]) and all(w == "not tested" for w in said[first_fail + 1:])
        for name in rows_.sort_values("bpp")["setting"].tolist()[first_fail + 1:]:
            untested = next(v for k, v in verdicts.items() if k.startswith("cost: ") and name in k)
            assert untested["status"] == "not settled" and untested["why"].startswith("not tested")
    m = changes["method"].nunique()  # each method's sequence at 0.05 / the number of methods
    assert all(verdicts[f"cost: {n}"]["level"] == pytest.approx(1 - 0.05 / m) for n in
               [k[len("cost: "):] for k in verdicts if k.startswith("cost: ")])
    # the live explorer: its static page shows a note and the precomputed slider, never the widget's repr
    from hamviz.widgets import STATIC_NOTE
    nb = nbformat.read(out / "chapters" / "03_compression" / "03_compression.ipynb", as_version=4)
    texts = [str(o.get("data", {}).get("text/plain", "")) for c in nb.cells if c.cell_type == "code"
             for o in c.get("outputs", [])]
    assert STATIC_NOTE in texts and not [t for t in texts if "VBox(" in t or "HBox(" in t]
    page = (out / "chapters" / "03_compression" / "03_compression.html").read_text()
    assert STATIC_NOTE in page and "VBox(" not in page and "HBox(" not in page
    assert page.count("Plotly.newPlot") >= 1 and "quality " in page  # the precomputed slider


def test_joint_chapter_records_the_comparison_and_the_hypothesis_tests(tiny_book):
    out, _, _ = tiny_book
    v = record(out, "04_joint")["values"]
    assert set(v["table"]) == {"classifier alone", "AE 3x -> classifier", "joint 3x"}  # tiny: the 3x joint model
    per_seed = {(r["model"], r["seed"]): r for r in v["table_per_seed"]}  # the figure's dots: every replicate,
    assert {s_ for _, s_ in per_seed} == {42, 43}  # replicate 0's equal to the table's
    for name, row in v["table"].items():
        assert per_seed[name, 42]["balanced_accuracy"] == pytest.approx(row["balanced_accuracy"], abs=1e-9)
    # the classifier alone re-scored on one view per image, as the joint models are: with the tiny main model (no
    # test-time flips) that is the classifier chapter's own test number
    clf = record(out, "02_classifier")["values"]["parts"]["test"]
    assert abs(v["table"]["classifier alone"]["balanced_accuracy"] - clf["balanced_accuracy"]) < 1e-9
    # "AE -> classifier" is the compression chapter's float32-latent row: the same stored models, the same images
    comp = {r["setting"]: r for r in record(out, "03_compression")["values"]["autoencoder"]
            if r["method"] == "autoencoder (float32 latent)"}
    for ratio in ("3x",):
        assert v["table"][f"AE {ratio} -> classifier"]["balanced_accuracy"] == pytest.approx(
            comp[ratio]["balanced_accuracy"], abs=1e-9)
    # the per-model train/val/test table: its test rows are the comparison's rows, the joint models' train and
    # validation rows their limited subsets (tiny: train_limit / val_limit)
    for name in ("classifier alone", "joint 3x"):
        assert v["parts_by_model"][f"{name} / test"]["balanced_accuracy"] == pytest.approx(
            v["table"][name]["balanced_accuracy"], abs=1e-9)
    P = record(out, "04_joint")["provenance"]["params"]
    assert v["parts_by_model"]["joint 3x / train"]["n"] == P["train_limit"]
    assert v["parts_by_model"]["classifier alone / train"]["n"] > P["train_limit"]
    bins = v["error_by_contrast"]
    assert len(bins) == 4 and sum(b["n"] for b in bins.values()) > 900
    assert set(v["contrast_verdict"]) == {"classifier alone", "joint 3x"}
    be = v["boundary_energy"]
    assert {"original", "AE 3x", "joint AE 3x", "(band's share of pixels)"} <= set(be)
    assert len(v["verdict_lines"]) == 3  # one per model on contrast (2), one per joint autoencoder on the boundary
    for name, row in v["contrast_verdict"].items():  # Holm over the models: adjusted >= raw, never above 1
        assert row["Mann-Whitney p (errors lower)"] <= row["Holm-adjusted p"] <= 1
    assert not [line for line in v["verdict_lines"] if "supports" in line]  # no verdict from one model's p-value
    verdicts = record(out, "04_joint")["verdicts"]  # the verdicts: every replicate, corrected families
    assert {"joint 3x vs AE 3x -> classifier", "joint 3x vs classifier alone", "contrast: classifier alone",
            "contrast: joint 3x", "boundary 3x"} <= set(verdicts)
    assert verdicts["joint 3x vs AE 3x -> classifier"]["per_seed"]["42"] == pytest.approx(
        100 * (v["table"]["joint 3x"]["balanced_accuracy"] - v["table"]["AE 3x -> classifier"]["balanced_accuracy"]))
    assert verdicts["contrast: joint 3x"]["level"] == pytest.approx(1 - 0.05 / 2)  # Bonferroni over 2 models


def test_hypervector_chapter_records_the_sweep_and_geometry(tiny_book):
    out, _, _ = tiny_book
    v = record(out, "05_hypervector")["values"]
    assert v["classes"] == ["mel", "nv", "bcc", "bkl"]
    sweep = v["sweep"]
    qualities = {str(r["quality"]) for r in sweep}
    assert qualities == {"clean", "95", "10", "1"}
    models = {r["model"] for r in sweep}
    scratch = {"HD mse (cosine)", "HD mse (hamming)", "HD cosine (cosine)", "HD cosine (hamming)", "softmax"}
    pretrained = {f"efficientnet_lite0 HD {loss} ({mode})" for loss in ("mse", "cosine")
                  for mode in ("cosine", "hamming")}
    assert models == scratch | pretrained  # the second row: the same HD classifier on the pretrained backbone
    for r in sweep:  # every balanced accuracy with its lesion-bootstrap interval (tiny: 50 resamples)
        assert r["balanced_accuracy_low"] <= r["balanced_accuracy"] + 1e-9 <= r["balanced_accuracy_high"] + 2e-9
    # real intervals: a model that learned something varies across resamples (one that calls every image one
    # class stays at 1/4 in every resample, so its interval is narrow: tiny's HD cosine-loss Hamming row)
    assert sum(r["balanced_accuracy_high"] - r["balanced_accuracy_low"] > 0.02 for r in sweep) > len(sweep) // 2
    # the figure's curves: every replicate (tiny: seeds 42, 43), replicate 0's are the sweep's from-scratch rows
    per_seed = pd.DataFrame(v["sweep_per_seed"])
    assert sorted(per_seed["seed"].unique()) == [42, 43] and set(per_seed["model"]) == scratch
    assert len(per_seed) == 2 * len(scratch) * len(qualities)
    first = per_seed[per_seed["seed"] == 42].astype({"quality": str}).set_index(["model", "quality"])
    for r in sweep:
        if r["model"] in scratch:
            assert first.loc[(r["model"], str(r["quality"])), "balanced_accuracy"] == pytest.approx(
                r["balanced_accuracy"])
    for r in sweep:  # the recorded clean numbers are the sweep's
        if r["quality"] == "clean":
            assert v["clean_balanced_accuracy"][r["model"]] == pytest.approx(r["balanced_accuracy"])
    # the second row: trained and scored on the same rows as the first, at the backbone's own input size
    head = v["pretrained_head"]
    assert head["model"] == "efficientnet_lite0" and head["image_size"] == 64 and head["feature_dim"] == 1280
    assert head["n_test"] == v["n_test"] > 900
    table = {(r["row"], r["loss"]): r for r in v["rows"]}
    assert set(table) == {(row, loss) for row in ("from scratch (reference)", "pretrained backbone (hamviz)")
                          for loss in ("mse", "cosine")}
    clean = {r["model"]: r for r in sweep if r["quality"] == "clean"}
    for loss in ("mse", "cosine"):
        a, b = table[("from scratch (reference)", loss)], table[("pretrained backbone (hamviz)", loss)]
        assert a["n_test"] == b["n_test"] == v["n_test"] and a["n_train"] == b["n_train"] > 400  # oversampled
        for m in ("accuracy", "balanced_accuracy", "macro_f1"):  # the table's numbers are the sweep's
            assert a[m] == pytest.approx(clean[f"HD {loss} (cosine)"][m])
            assert b[m] == pytest.approx(clean[f"efficientnet_lite0 HD {loss} (cosine)"][m])
    # pretrained features learn something in one epoch (0.49-0.51 measured over seeds; chance is 1/4)
    assert table[("pretrained backbone (hamviz)", "cosine")]["balanced_accuracy"] > 0.35
    # under JPEG the row's features come from the coded images: at quality 1 its numbers move
    for m in pretrained:
        at = {str(r["quality"]): r for r in sweep if r["model"] == m}
        assert any(at["1"][k] != at["clean"][k] for k in ("accuracy", "balanced_accuracy", "macro_f1")), m
    assert set(v["geometry"]) == {"clean", "95", "10", "1"}
    for g in v["geometry"].values():  # the margin is the gap between the two mean cosines
        assert g["margin"] == pytest.approx(g["cos_own_template"] - g["cos_nearest_other"], abs=1e-6)
    sim = v["template_similarity"]
    assert all(abs(sim[c][c] - 1) < 1e-6 for c in sim)
    assert v["bipolar_similarity_mean"] < 0.35  # random bipolar keys: near orthogonal
    demo = v["add_class"]
    assert demo["holdout"] == "bcc" and demo["classes"][-1] == "bcc" and demo["prototype_from"] > 0
    change = {m: (at1["balanced_accuracy"] - clean[m]["balanced_accuracy"]) * 100
              for m in models for at1 in sweep if at1["model"] == m and at1["quality"] == 1}
    worst = min(change, key=change.get)
    assert v["largest_jpeg_loss"] == (f"{worst}: {change[worst]:+.1f} points of balanced accuracy, clean to "
                                      "quality 1")
    # the verdicts, from both replicates; replicate 0's numbers are the sweep's (cosine decoding)
    verdicts = record(out, "05_hypervector")["verdicts"]
    at = {(r["model"], str(r["quality"])): r["balanced_accuracy"] for r in sweep}
    for loss in ("mse", "cosine"):
        hd, sm = f"HD {loss} (cosine)", "softmax"
        vd = verdicts[f"HD {loss} minus softmax, clean"]
        assert list(vd["per_seed"]) == ["42", "43"]
        assert vd["per_seed"]["42"] == pytest.approx(100 * (at[hd, "clean"] - at[sm, "clean"]))
        assert verdicts[f"HD {loss} minus softmax, JPEG q1"]["per_seed"]["42"] == pytest.approx(
            100 * (at[hd, "1"] - at[sm, "1"]))
        assert verdicts[f"softmax's drop at JPEG q1 minus HD {loss}'s"]["per_seed"]["42"] == pytest.approx(
            100 * ((at[sm, "clean"] - at[sm, "1"]) - (at[hd, "clean"] - at[hd, "1"])))
    assert len(v["add_class_per_seed"]) == 2 and v["add_class_per_seed"][0] == demo
    assert verdicts["added class"]["per_seed"] == pytest.approx(
        {str(seed): 100 * d["balanced_accuracy"] for seed, d in zip((42, 43), v["add_class_per_seed"])})
    assert verdicts["added class"]["null"] == pytest.approx(100 / 4)


def test_explain_chapter_records_cams_and_the_ensemble(tiny_book):
    out, _, _ = tiny_book
    v = record(out, "06_explain")["values"]
    assert len(v["activation_layers"]) == 5 and all(len(s) == 3 for s in v["activation_layers"].values())
    shift = v["cam_shift"]
    assert set(shift) == {"95", "50", "10", "1"}
    for q, r in shift.items():  # a share of the cam_images images
        assert (r["prediction changed"] * v["cam_images"]) == pytest.approx(round(r["prediction changed"]
                                                                                  * v["cam_images"]))
    assert shift["95"]["correlation"] > shift["1"]["correlation"]  # maps move more at lower quality
    table = v["ensemble_table"]
    assert {"ensemble: vote", "ensemble: mean", "ensemble: accuracy-weighted", "ensemble: stacking",
            "reference CNN", "weak CNN (1 epoch)"} <= set(table)
    for r in table.values():
        assert r["sensitivity @thr"] >= r["sensitivity @0.5"] - 1e-9 or r["threshold (val)"] > 0.5
        low, high = map(float, r["test AUC 95% interval"].strip("[]").split(", "))  # lesion bootstrap
        assert low - 1e-3 <= r["test AUC"] <= high + 1e-3 and high - low > 0.01
    # one member alone, "combined" by the mean, is that member: the first incremental step repeats its test AUC
    first = v["incremental"][0]
    assert first["test_auc"] == pytest.approx(table[first["added"]]["test AUC"], abs=1e-9)
    assert len(v["search"]) == 2 and all("val_auc" in t for t in v["search"])
    # each trial's training time (loaded or not), not the seconds it took to load it; trials named by number
    assert all(t["training_seconds"] > 1 and t["trial"] in (0, 1) for t in v["search"])
    # best combiner and best member chosen on validation, compared on test by a paired interval
    vs = v["best_vs_best_member"]
    assert v["best_member"] == max(v["members"], key=lambda m: table[m]["val AUC"])
    assert v["best_ensemble"] == max((k for k in table if k.startswith("ensemble")),
                                     key=lambda k: table[k]["val AUC"])
    assert (vs["auc_a"], vs["auc_b"]) == (pytest.approx(v["best_ensemble_test_auc"]),
                                          pytest.approx(v["best_member_test_auc"]))
    # the verdicts, from both replicates: replicate 0's ensemble effect is the paired difference above
    verdicts = record(out, "06_explain")["verdicts"]
    ev = verdicts["ensemble vs best member"]
    assert list(ev["per_seed"]) == ["42", "43"] and ev["per_seed"]["42"] == pytest.approx(100 * vs["difference"])
    per_seed = v["optimizers_per_seed"]
    assert verdicts["optimiser ranking"]["n"] == 2 and set(per_seed) == {"42", "43"}
    best_opt = max(("sgd", "adam"), key=lambda o: np.mean([per_seed[sd][o]["val AUC"] for sd in per_seed]))
    assert verdicts["optimiser ranking"]["question"].startswith(best_opt)  # chosen on validation, over replicates
    other = ({"sgd", "adam"} - {best_opt}).pop()
    assert verdicts["optimiser ranking"]["per_seed"]["43"] == pytest.approx(
        100 * (per_seed["43"][best_opt]["test AUC"] - per_seed["43"][other]["test AUC"]))
    drift = verdicts["Grad-CAM drift"]
    # the same images, maps and measure as the table (which averages each quality over its own non-NaN maps)
    assert drift["direction"] == 1 and drift["per_seed"]["42"] == pytest.approx(
        shift["95"]["correlation"] - shift["1"]["correlation"], abs=0.02)
    cam = {(r["seed"], r["quality"]): r["correlation with the clean map"] for r in v["cam_correlation_per_seed"]}
    for seed, gap in drift["per_seed"].items():  # the figure's dots: each replicate's two means, on the verdict's
        assert cam[int(seed), "q95"] - cam[int(seed), "q1"] == pytest.approx(gap, abs=1e-9)  # paired images
    for k in ("sensitivity", "specificity"):  # the operating point: mean over replicates with its interval
        o = v["operating_point"][k]
        assert o["mean"] == pytest.approx(np.mean(o["per_seed"])) and o["low"] <= o["mean"] <= o["high"]
    assert vs["low"] <= vs["difference"] <= vs["high"] and vs["n_boot"] > 900
    assert [r["step"] for r in v["incremental"]] == list(range(1, len(v["members"]) + 1))
    assert set(v["optimizers"]) == {"sgd", "adam"}
    for r in v["optimizers"].values():  # each optimiser's test AUC with its lesion-bootstrap interval
        low, high = map(float, r["test AUC 95% interval"].strip("[]").split(", "))
        assert low - 1e-3 <= r["test AUC"] <= high + 1e-3


def test_book_html_is_complete_and_offline(tiny_book):
    out, _, _ = tiny_book
    index = (out / "index.html").read_text()
    assert "Exploratory data analysis of HAM10000" in index and 'class="status ok"' in index
    assert "10,015" in index and "7,470" in index  # summary numbers from the record
    assert "fingerprint" in index and "image_size: 32" in index  # provenance and params
    page = (out / "chapters" / "01_eda" / "01_eda.html").read_text()
    assert page.count("Plotly.newPlot") >= 8  # every figure is in the page
    shared = re.findall(r'<script src="\.\./\.\./(assets/plotly-[^"]+\.min\.js)"></script>', page)
    assert len(shared) == 1 and "plotly.js v" not in page  # plotly.js once in the book, not in every page
    assert (out / shared[0]).read_text()[:40].lstrip("/* \n").startswith("plotly.js v")  # figures render offline
    assert not re.search(r'<(script|link)[^>]*(src|href)="https?://', page)  # nothing fetched from the network
    assert "# Parameters" not in page and "/.work/" not in page  # the parameters cells (local paths) left out
    assert "Key results" in page and "Figure 1.1" in page and "Show code cell source" in page
    assert (out / "search.html").is_file() and (out / "searchindex.js").is_file()
    nb = nbformat.read(out / "chapters" / "01_eda" / "01_eda.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # every table's headers and the key results name metrics in the field's terms, never by their record keys
    from hamviz.metrics import METRIC_LABELS
    keys = "|".join(k for k in METRIC_LABELS if "_" in k or k == "ece")
    for html_page in sorted((out / "chapters").glob("*/*.html")):
        text = html_page.read_text()
        headers = re.findall(r'<th[^>]*>([^<]*)</th>', text)
        assert len(headers) > 5, html_page.name
        snake = [h for h in headers if re.search(rf"(^|_)({keys})($|_)", h)]
        assert not snake, (html_page.name, snake)
        legends = re.findall(rf'"(?:name|text)":"((?:[a-z]+_)*(?:{keys})(?:_[a-z0-9]+)*)"', text)  # figures too
        assert not legends, (html_page.name, legends)
        keras_keys = re.findall(r'"text":"(val_[a-z_]+)"', text)  # training-curve panels: "validation loss"
        assert not keras_keys, (html_page.name, keras_keys)
    key = "test_balanced_accuracy_mean_over_replicates"
    assert re.search(rf'<th title="{key}">test balanced accuracy mean over replicates</th>',
                     (out / "chapters" / "02_classifier" / "02_classifier.html").read_text())
    index = (out / "index.html").read_text()  # the front page's key numbers too
    assert f'<b title="{key}">test balanced accuracy mean over replicates</b>' in index
    assert not re.search(r"<b>[a-z0-9]+(_[a-z0-9]+)+</b>", index), re.findall(r"<b>[a-z0-9_]+</b>", index)
    # each chapter's training time: what its models took to train, loaded or not
    info = json.loads((out / "book.json").read_text())
    trained = {c["stem"]: c["training"] for c in info["chapters"]}
    assert trained["02_classifier"]["models"] >= 1 and trained["02_classifier"]["seconds"] > 0
    assert trained["01_eda"]["models"] == 0


def test_readme_results_come_from_the_records(tiny_book):
    """benchmarks/results_table.py turns a built book into README's Results: every verdict of every chapter, with
    its interval, each replicate and k of N, read from the records (nothing recomputed, nothing left out)."""
    import importlib.util
    out, summary, _ = tiny_book
    spec = importlib.util.spec_from_file_location("results_table", REPO / "benchmarks" / "results_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.table(out)
    n = 0
    for c in summary["chapters"]:
        for v in (record(out, c["stem"]).get("verdicts") or {}).values():
            line = next(l for l in text.splitlines() if l.startswith(f"| {v['question']} |"))
            assert f"holds in {v['k']} of {v['n']}" in line and v["text"].split(" [")[0] in line, line
            n += 1
    assert n >= 10  # every chapter states verdicts
    with pytest.raises(SystemExit, match="no built book"):
        mod.table(out / "chapters")


def test_every_chapter_states_its_protocol_before_its_numbers(tiny_book):
    """Chapters 2-6 record and show their protocol table (reference | this run | why) above their results; the
    tiny profile differs from the reference in input size, and says so."""
    out, summary, _ = tiny_book
    for c in summary["chapters"][1:]:
        v = record(out, c["stem"])["values"]
        assert v["protocol"]["split"]["same?"] == "by design" and v["protocol_source"], c["stem"]
        nb = nbformat.read(out / "chapters" / c["stem"] / f"{c['stem']}.ipynb", as_version=4)
        texts = [json.dumps(o.get("data", {})) for cell in nb.cells if cell.cell_type == "code"
                 for o in cell.get("outputs", [])]
        first = next(i for i, t in enumerate(texts) if "Protocol" in t)
        assert "why it differs" in texts[first + 1], c["stem"]  # the table, right under its heading
    hd = record(out, "05_hypervector")["values"]["protocol"]
    assert hd["input"]["this run"] == "32x32" and hd["input"]["same?"] == "no" and hd["input"]["why it differs"]


def test_unchanged_book_is_not_rerun(tiny_book, tiny_profile):
    out, _, first = tiny_book
    t = time.time()
    summary = build(tiny_profile, out, log=lambda *_: None)
    assert summary["this_run"] == {} and time.time() - t < first


def write_nb(folder: Path, stem: str, body: str, depends=()):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(f"# Test chapter {stem}"),
        nbformat.v4.new_code_cell('profile = "tiny"\nparams = {}\ndata_dir = None\nrecord_path = None',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('import hamviz.chapters\nch = hamviz.chapters.start("eda", profile, params, '
                                  'data_dir, record_path, load_data=False)'),
        nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["hamviz"] = {"depends": list(depends)}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{stem}.ipynb")


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_failed_chapter_is_reported_not_published(tmp_path):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", 'ch.log(summary=True, n=1)\nch.finish()')
    assert build("tiny", out, notebooks_dir=nbs, log=lambda *_: None)["chapters"][0]["status"] == "ok"
    write_nb(nbs, "01_eda", 'raise RuntimeError("deliberate failure for the test")')
    summary = build("tiny", out, notebooks_dir=nbs, log=lambda *_: None)
    entry = summary["chapters"][0]
    assert entry["status"] == "failed" and "deliberate failure for the test" in entry["note"]
    assert (out / "failed" / "01_eda" / "01_eda.html").is_file()
    # the previous complete chapter is kept, and the index says it is the previous run
    assert json.loads((out / "chapters/01_eda/done.json").read_text())["key"] != entry["key"]
    index = (out / "index.html").read_text()
    assert "deliberate failure for the test" in index and "previous complete run" in index
    # a notebook that never calls finish() is not complete either
    write_nb(nbs, "01_eda", 'ch.log(n=2)')
    assert build("tiny", out, notebooks_dir=nbs, log=lambda *_: None)["chapters"][0]["status"] == "failed"


NAN_CHAPTER = """\
import numpy as np
import pandas as pd
from hamviz.registry import CLASSES
from hamviz.training import TrainConfig, fit_classifier
x = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
y = np.arange(64) % 7
cfg = TrainConfig(model="small_cnn", image_size=16, epochs=2, learning_rate=1e30, optimizer="sgd",
                  schedule="none", augment={})
fit_classifier(cfg, x, y, {"train": np.arange(48), "val": np.arange(48, 64)}, 7)
ch.finish()"""


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_nan_loss_is_recorded_in_the_book(tmp_path):
    """A chapter whose training diverges fails with the NaN message, and the index shows that message."""
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", NAN_CHAPTER)
    entry = build("tiny", out, notebooks_dir=nbs, log=lambda *_: None)["chapters"][0]
    assert entry["status"] == "failed"
    assert "loss became NaN" in entry["note"] and "Lower learning_rate" in entry["note"]
    assert not (out / "chapters" / "01_eda").exists()  # nothing published that looks complete
    failure = json.loads((out / "failed" / "01_eda" / "failure.json").read_text())
    assert "loss became NaN" in json.dumps(failure)
    assert "loss became NaN" in (out / "index.html").read_text()


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_dependents_of_a_failed_chapter_are_skipped(tmp_path, monkeypatch):
    """02_later starts early (its dependency runs, a slot is free); 01_eda fails: 02_later is stopped, skipped,
    and leaves nothing behind, as if it had waited. 03_last, behind both, never starts."""
    from hamviz.params import CHAPTER_SCHEMAS
    monkeypatch.setitem(CHAPTER_SCHEMAS, "later", CHAPTER_SCHEMAS["eda"])
    monkeypatch.setitem(CHAPTER_SCHEMAS, "last", CHAPTER_SCHEMAS["eda"])
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", 'import time\ntime.sleep(3)\nraise ValueError("boom")')
    write_nb(nbs, "02_later", 'import time\ntime.sleep(300)\nch.finish()', depends=["eda"])
    write_nb(nbs, "03_last", 'ch.finish()', depends=["later"])
    t = time.time()
    summary = build("tiny", out, notebooks_dir=nbs, jobs=2, log=lambda *_: None)
    assert time.time() - t < 120  # 02_later was stopped, not waited for
    assert [c["status"] for c in summary["chapters"]] == ["failed", "not built", "not built"]
    assert summary["this_run"]["02_later"]["status"] == "skipped"
    assert "depends on failed chapter(s) ['eda']" in summary["this_run"]["02_later"]["error"]
    assert "started early and was stopped" in summary["this_run"]["02_later"]["error"]
    assert summary["this_run"]["03_last"]["error"] == "depends on failed chapter(s) ['later']"  # never started
    assert not (out / "failed" / "02_later").exists() and not list((out / ".work").glob("02_later*"))
    write_nb(nbs, "03_eda", 'ch.finish()')
    with pytest.raises(Exception, match="share the chapter name 'eda'"):
        discover(nbs)


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_a_dependent_starts_while_its_dependency_runs(tmp_path, monkeypatch):
    """With two slots, 02_later (depends on eda) runs beside 01_eda: 01_eda finishes only once 02_later has
    written a file (it would fail after 90 s waiting, had 02_later waited for it)."""
    from hamviz.params import CHAPTER_SCHEMAS
    monkeypatch.setitem(CHAPTER_SCHEMAS, "later", CHAPTER_SCHEMAS["eda"])
    nbs, out, flag = tmp_path / "nbs", tmp_path / "out", tmp_path / "later-ran"
    write_nb(nbs, "01_eda", f'import time, pathlib\nt = time.time()\nwhile not pathlib.Path({str(flag)!r}).exists():'
                            f'\n    assert time.time() - t < 90, "02_later never ran"'
                            f'\n    time.sleep(0.2)\nch.finish()')
    write_nb(nbs, "02_later", f'import pathlib\npathlib.Path({str(flag)!r}).touch()\nch.finish()', depends=["eda"])
    lines = []
    summary = build("tiny", out, notebooks_dir=nbs, jobs=2, log=lines.append)
    assert [c["status"] for c in summary["chapters"]] == ["ok", "ok"]
    assert any("02_later: starting while eda still run" in line for line in lines)


def test_next_chapter_prefers_ready_then_the_least_to_wait_for():
    from hamviz.book.scheduler import next_chapter
    from hamviz.book.spec import ChapterSpec

    def spec(name, *deps):
        return ChapterSpec(name, name, Path(name), name, list(deps))
    compression, joint = spec("compression", "classifier"), spec("joint", "classifier", "compression")
    explain, hd = spec("explain", "classifier"), spec("hypervector")
    # the book's chapters while the classifier trains: compression starts early, the first in book order
    assert next_chapter([compression, joint, explain], {"classifier"}, {"eda", "hypervector"}) == (compression, True)
    # a ready chapter goes first, even after one that could start early
    assert next_chapter([joint, explain, hd], {"classifier", "compression"}, set()) == (hd, False)
    # early: explain waits for one running chapter, joint for two
    assert next_chapter([joint, explain], {"classifier", "compression"}, set()) == (explain, True)
    assert next_chapter([joint], {"explain"}, {"classifier", "compression"}) == (joint, False)
    # a dependency not started (pending, or failed) never lets a chapter start
    assert next_chapter([joint], {"compression"}, set()) is None
    assert next_chapter([compression, joint], set(), set()) is None


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_interrupted_build_leaves_no_complete_looking_chapter(tmp_path):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", 'import time\ntime.sleep(60)\nch.finish()')
    proc = subprocess.Popen([sys.executable, "-m", "hamviz", "book", "--profile", "tiny", "--out", str(out),
                             "--notebooks", str(nbs)], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((out / ".work").glob("01_eda-*/01_eda.json")):
            time.sleep(0.5)
        assert list((out / ".work").glob("01_eda-*")), "the chapter never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "chapters" / "01_eda").exists()
    book = prepare("tiny", out, notebooks_dir=nbs)
    info = write_index(book, 0)
    assert info["chapters"][0]["status"] == "interrupted"
    # rerunning completes it (with a quick notebook) and cleans the leftovers
    write_nb(nbs, "01_eda", 'ch.finish()')
    assert build("tiny", out, notebooks_dir=nbs, log=lambda *_: None)["chapters"][0]["status"] == "ok"
    assert not [p for p in (out / ".work").iterdir() if p.is_dir()]


def _wait_for(condition, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and not condition():
        time.sleep(0.3)
    return condition()


def _kernels_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the chapter's notebook kernel)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_a_chapter_and_its_kernel_die_with_a_killed_book(tmp_path):
    """kill -9 of the book alone: its chapter process (and that one's kernel) end too, instead of training on
    unsupervised and publishing under a marker nobody removes; the next build sees an interrupted chapter by
    its dead pid and reruns it."""
    from hamviz.book.spec import pid_alive as _pid_alive
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", 'import time\ntime.sleep(120)\nch.finish()')
    proc = subprocess.Popen([sys.executable, "-m", "hamviz", "book", "--profile", "tiny", "--out", str(out),
                             "--notebooks", str(nbs)], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / ".work" / "01_eda.running.json"
    try:
        assert _wait_for(lambda: list((out / ".work").glob("01_eda-*/01_eda.json")) and marker.exists())
        child = json.loads(marker.read_text())["pid"]
        assert _wait_for(lambda: _kernels_of(child), 30), "no kernel started"
        kernels = _kernels_of(child)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the book only, not its process group
        proc.wait()
    assert _wait_for(lambda: not _pid_alive(child) and not any(_pid_alive(k) for k in kernels), 20)
    assert not (out / "chapters" / "01_eda").exists()
    book = prepare("tiny", out, notebooks_dir=nbs)
    assert write_index(book, 0)["chapters"][0]["status"] == "interrupted"
    write_nb(nbs, "01_eda", 'ch.finish()')
    assert build("tiny", out, notebooks_dir=nbs, log=lambda *_: None)["chapters"][0]["status"] == "ok"
    assert not marker.exists()


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_a_killed_chapter_is_failed_and_the_book_goes_on(tmp_path):
    """The chapter process killed (the out-of-memory killer's SIGKILL): that chapter is failed with the reason,
    the book does not crash in its own progress message, and the next chapter still runs."""
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", 'import time\ntime.sleep(120)\nch.finish()')
    write_nb(nbs, "02_classifier", 'ch.finish()')
    marker = out / ".work" / "01_eda.running.json"
    said = []

    def killer():
        if _wait_for(lambda: list((out / ".work").glob("01_eda-*/01_eda.json")) and marker.exists()):
            os.kill(json.loads(marker.read_text())["pid"], signal.SIGKILL)
    import threading
    threading.Thread(target=killer, daemon=True).start()
    summary = build("tiny", out, notebooks_dir=nbs, log=said.append)
    status = {c["stem"]: c["status"] for c in summary["chapters"]}
    assert status == {"01_eda": "failed", "02_classifier": "ok"}
    assert "killed by signal 9 (SIGKILL" in summary["this_run"]["01_eda"]["error"]
    assert any(line.startswith("[book] 01_eda: failed in ") for line in said)


TRAINING_CHAPTER = """\
import numpy as np
import pandas as pd
from hamviz.registry import CLASSES
from hamviz.training import TrainConfig, fit_classifier
x = np.random.default_rng(0).integers(0, 256, (512, 16, 16, 3), dtype=np.uint8)
y = np.arange(512) % 7
cfg = TrainConfig(model="small_cnn", image_size=16, epochs=3, learning_rate=1e-3, optimizer="adam",
                  schedule="none", augment={}, batch_size=8)
fit_classifier(cfg, x, y, {"train": np.arange(448), "val": np.arange(448, 512)}, 7)
ch.finish()"""


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_a_running_chapter_reports_its_cell_and_epoch(tmp_path):
    """The chapter process reports the code cell it runs (of how many) and the kernel the training epoch,
    through the files the progress view reads; both are gone once the chapter ends."""
    from hamviz.book.progress import BuildProgress
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", TRAINING_CHAPTER)
    seen, prefixes = [], []

    class Recording(BuildProgress):
        def started(self, stem, prefix):
            prefixes.append(Path(prefix))
            super().started(stem, prefix)

    def watch():
        while not stop:
            for prefix in prefixes:
                for kind in (".cells.json", ".train.json"):
                    try:
                        seen.append((kind, json.loads(prefix.with_name(prefix.name + kind).read_text())))
                    except (OSError, ValueError):
                        pass
            time.sleep(0.05)
    import threading
    stop = False
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        summary = build("tiny", out, notebooks_dir=nbs, progress=Recording(log=lambda *_: None))
    finally:
        stop = True
        watcher.join()
    assert summary["chapters"][0]["status"] == "ok"
    cells = [r for kind, r in seen if kind == ".cells.json"]
    assert cells and {r["cells"] for r in cells} == {4}  # the injected parameters cell counts: it runs
    assert {r["cell"] for r in cells} >= {3, 4}
    train = [r for kind, r in seen if kind == ".train.json"]
    assert train and all(r["epochs"] == 3 and r["label"].startswith("small_cnn") for r in train)
    assert max(r["epoch"] for r in train) >= 2 and all(r["steps"] == 56 for r in train if r["steps"])
    assert not list((out / ".work").glob("01_eda.progress*"))


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_the_command_line_shows_progress_and_a_table_unless_quiet(tmp_path):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    write_nb(nbs, "01_eda", 'ch.log(summary=True, answer=42)\nch.finish()')
    cmd = [sys.executable, "-m", "hamviz", "book", "--profile", "tiny", "--out", str(out), "--notebooks", str(nbs)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)  # stdout is a pipe: no bars
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert "[book] 01_eda: running" in lines and any(re.match(r"\[book\] 01_eda: ok in \d+ s", x) for x in lines)
    header = next(i for i, x in enumerate(lines) if x.startswith("chapter"))
    assert lines[header].split()[:2] == ["chapter", "status"] and lines[header + 2].split()[:2] == ["01_eda", "ok"]
    assert "\r" not in res.stdout  # no progress bars in a log
    quiet = subprocess.run(cmd + ["--quiet", "--force"], cwd=REPO, capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout.splitlines() == [f"[book] {out}/index.html: 1 chapter(s) ok"]


def test_bad_input_fails_before_any_notebook_runs(tmp_path, monkeypatch):
    bad = tmp_path / "typo.yaml"
    bad.write_text("extends: tiny\nimage_sise: 32\n")
    with pytest.raises(ParamsError, match="did you mean 'image_size'"):
        build(bad, tmp_path / "out1")
    assert not (tmp_path / "out1").exists()
    with pytest.raises(DataError, match="does not exist"):
        build("tiny", tmp_path / "out2", data_dir=tmp_path / "missing")
    assert not (tmp_path / "out2").exists()
    res = subprocess.run([sys.executable, "-m", "hamviz", "book", "--profile", str(bad), "--out",
                          str(tmp_path / "out3")], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown key 'image_sise'" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.data  # builds a book: prepare() reads the HAM10000 folder
def test_relative_output_folder(tmp_path, monkeypatch):
    nbs = tmp_path / "nbs"
    write_nb(nbs, "01_eda", 'ch.log(summary=True, answer=42)\nch.finish()')
    monkeypatch.chdir(tmp_path)
    summary = build("tiny", "rel-book", notebooks_dir=nbs, log=lambda *_: None)
    assert summary["chapters"][0]["summary"] == {"answer": 42}
    assert (tmp_path / "rel-book" / "chapters" / "01_eda" / "01_eda.json").is_file()
    assert not (nbs / "rel-book").exists()


def test_eda_records_the_subgroups_class_mix(tiny_book):
    out, _, _ = tiny_book
    v = record(out, "01_eda")["values"]
    mix = pd.DataFrame(v["subgroup_class_mix"]).set_index(["attribute", "group"])
    for attr in ("sex", "age", "body site", "diagnosis confirmed by"):
        assert mix.xs(attr, level="attribute")["images"].sum() == v["images"]  # each image in one group
    assert mix[list(CLASSES)].sum(axis=1).to_numpy() == pytest.approx(100.0)
    # HAM10000: follow-up confirms naevi only, so the non-histopathology group holds no melanoma
    assert mix.loc[("diagnosis confirmed by", "follow-up, consensus or confocal"), "mel"] == pytest.approx(0.0)


def test_export_and_predict_reproduce_the_chapters_probabilities(tiny_book, tiny_profile, tmp_path, ham):
    """`hamviz export` writes the tiny book's main model with its card; the folder loads with keras and keras_hub
    alone; `hamviz predict` on the images the chapter read gives the probabilities the chapter stored for them."""
    from hamviz.chapters import classifier
    from hamviz.chapters.base import start
    from hamviz.cli import main
    from hamviz.deploy import ISIC_COLUMNS, PREDICTION_COLUMNS
    from hamviz.external import ISIC2018_COLUMNS
    out, _, _ = tiny_book
    v = record(out, "02_classifier")["values"]
    dest = tmp_path / "export"
    assert main(["export", "--profile", str(tiny_profile), "--dest", str(dest)]) == 0
    card = (dest / "MODEL_CARD.md").read_text()
    assert "Not for clinical use" in card and "CC BY-NC-SA 4.0" in card
    assert f"| balanced accuracy | {v['test_balanced_accuracy']:.3f} [" in card  # replicate 0's, as recorded
    assert f"{v['external_n']:,} images of" in card and "| sex: female |" in card
    # loads in a Python where hamviz cannot be imported
    code = ("import sys; sys.modules['hamviz'] = None\nimport keras, keras_hub\n"
            f"m = keras.models.load_model({str(dest / 'model.keras')!r})\nprint(m.output_shape)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "(None, 7)" in run.stdout, run.stderr[-2000:]
    # the 70 originals' ids, read from the files the chapter read (the data set's 200x150 copies)
    originals = pd.read_csv(REPO.parent / "shared" / "data" / "ham10000-originals" / "HAM10000_metadata.csv")
    ids = originals["image_id"].tolist()
    folder = tmp_path / "images"
    folder.mkdir()
    for i in ids:
        (folder / f"{i}.jpg").symlink_to(ham.meta.set_index("image_id").loc[i, "path"])
    assert main(["predict", "--model", str(dest), "--folder", str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    got = pd.read_csv(tmp_path / "p.csv")
    assert tuple(got.columns) == PREDICTION_COLUMNS and sorted(got["image"]) == sorted(ids)
    ch = start("classifier", str(tiny_profile), record_path=tmp_path / "r.json")
    ts, s = classifier.main_models(ch)
    t, pos = ts[0], {image_id: r for r, image_id in enumerate(s.image_ids)}
    compared = 0
    for part in ("val", "test"):  # stored with the flips the model is scored with (train: without)
        where = {int(r): k for k, r in enumerate(t.rows[part])}
        for _, row in got.iterrows():
            k = where.get(pos[row["image"]])
            if k is not None:
                stored = t.proba[part][k]
                np.testing.assert_allclose([row[c] for c in ISIC_COLUMNS],
                                           [stored[CLASSES.index(ISIC2018_COLUMNS[c])] for c in ISIC_COLUMNS],
                                           atol=2e-5)
                assert row["predicted"] == CLASSES[int(stored.argmax())]
                compared += 1
    assert compared >= 15  # about 30 % of the 70 ids fall in validation and test
    # the 600x450 originals themselves: another source resolution, so close to but not the same as the above
    assert main(["predict", "--model", str(dest), "--folder", str(REPO.parent / "shared" / "data" /
                 "ham10000-originals" / "images"), "--out", str(tmp_path / "o.csv")]) == 0
    orig = pd.read_csv(tmp_path / "o.csv").set_index("image").loc[got["image"], list(ISIC_COLUMNS)].to_numpy()
    mine = got[list(ISIC_COLUMNS)].to_numpy()
    between_images = np.abs(mine[:, None] - mine[None]).sum(-1).mean()
    assert np.abs(orig - mine).sum(-1).mean() < 0.5 * between_images
