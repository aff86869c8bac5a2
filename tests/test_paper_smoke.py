"""The `paper` profile at toy scale on the CPU: every code path it selects runs once, so that a GPU run never
dies on a typo, a shape or a key after an hour of training (issue 18, item 6).

The profile is `paper` itself with only sizes, counts and epochs shrunk (and random weights for the Keras
application backbones, whose ImageNet files cannot be downloaded here): the grid's models with their own settings
(S3, whose oversampled rows are gathered by index; InceptionV3's and DenseNet201's grid settings only
checked: they are ResNet50's, and their builders run in the main model and test_models.py), the InceptionV3 main model
(its leak audit, which retrains it on three more splits, runs with a small CNN in test_chapter_classifier.py), an
autoencoder and its joint model, the HD-MANN CNN and the pretrained HD head, the ensemble of the
reference's four members (its two CNNs as the paper states them, VGG19, InceptionV3 with its own optimiser and clipping,
(0, 1) inputs) beside the random search, Grad-CAM. 84 images (12 per class).
"""
from __future__ import annotations

import json

import pytest
import yaml
from conftest import make_subset

GRID_MODELS = ["small_cnn", "resnet50"]
TOY = {
    "replicates": 1,  # every code path once (the tiny book runs the replicated verdicts with 2)
    "image_size": 76,  # InceptionV3 needs 75; 76 = 4 x 19 for the autoencoders. The explain members use it too
    "split": {"fractions": [0.5, 0.25, 0.25]},
    "chapters": {
        "eda": {"samples_per_class": 1, "sample_size": 32},
        "classifier": {
            "weights": None, "epochs": 1, "patience": 1, "n_boot": 0, "misclassified": 2, "train_limit": None,
            # leak_audit: true retrains the main model on three more splits: three more toy InceptionV3 fits, 150-200 s
            # each on the AVX2-only EPYC (half of this test); that path runs in test_chapter_classifier.py
            "leak_audit": False,
            # DenseNet201 and InceptionV3 are left out of the toy grid: one toy epoch of a large Keras
            # application costs 60-120 s of graph tracing on two cores, and both take ResNet50's path (RMSprop,
            # the grid's transfer settings); InceptionV3's builder runs as the main model, DenseNet201's in
            # test_models.py, and their settings are checked just below
            "grid": {"models": GRID_MODELS, "strategies": ["S3"], "image_size": 76, "epochs": 1,
                     "settings": {m: {"epochs": 1, "patience": 1} for m in GRID_MODELS}},
        },
        "compression": {"qualities": [50, 10], "kmeans_k": [4], "ae_ratios": [3], "ae_epochs": 1, "ae_patience": 1,
                        "n_boot": 0, "widget_qualities": [50, 10], "test_limit": None, "kmeans_limit": None},
        "joint": {"ratios": [3], "epochs": 1, "patience": 1, "n_boot": 0},
        "hypervector": {"image_size": 48, "epochs": 1, "patience": 1, "per_class": 12, "embed_points": 24,
                        "perplexity": 5, "pretrained_head": {"image_size": 32}},
        "explain": {"image_size": None, "member_epochs": 1, "search_trials": 4, "search_epochs": 1,
                    "optimizer_epochs": 1, "optimizers": ["sgd", "nadam"], "cam_images": 8, "gallery": 2,
                    "transfer_members": [{"model": "vgg19", "weights": None, "trainable": "all", "head": "own_top",
                                          "input_scaling": "unit"},
                                         {"model": "inceptionv3", "weights": None, "trainable": 150,
                                          "l2": 0.0001, "head": "reference", "head_warmup": 1, "epochs": 1,
                                          "input_scaling": "unit", "optimizer": "nadam", "clipnorm": 1.0}]},
    },
}


@pytest.fixture(scope="module")
def paper_toy(tmp_path_factory, metadata):
    root = tmp_path_factory.mktemp("paper-toy")
    make_subset(root / "ham", metadata, n_per_class=12)
    profile = root / "paper_toy.yaml"
    profile.write_text(yaml.safe_dump({"extends": "paper", "profile": "paper", **TOY}, sort_keys=False))
    return profile, root / "ham", root / "book"


def test_every_paper_code_path_runs_at_toy_scale(paper_toy):
    from hamviz.book import build
    from hamviz.params import chapter_params, load_profile
    profile, data, out = paper_toy
    full = load_profile(profile)
    # the toy run is the paper profile: only what TOY shrinks differs
    assert chapter_params(full, "explain")["search_space"]["pool_size"] == [2, 3]
    assert chapter_params(full, "classifier")["grid"]["settings"]["resnet50"]["optimizer"] == "rmsprop"
    paper_grid = chapter_params(load_profile("paper", check_weights=False), "classifier")["grid"]
    assert paper_grid["models"] == GRID_MODELS + ["inceptionv3", "densenet201"]  # the toy grid is a prefix
    resnet = paper_grid["settings"]["resnet50"]
    for model in ("inceptionv3", "densenet201"):  # the path ResNet50 runs here
        assert paper_grid["settings"][model] == resnet and resnet["epochs"] == 30 and resnet["batch_size"] == 16
    summary = build(profile, out, data_dir=data, jobs=2, log=lambda *_: None, download=False)
    failed = {c["stem"]: c["note"] for c in summary["chapters"] if c["status"] != "ok"}
    assert not failed, failed
    record = {c["stem"]: json.loads((out / "chapters" / c["stem"] / f"{c['stem']}.json").read_text())["values"]
              for c in summary["chapters"]}
    grid = record["02_classifier"]["grid"]
    assert [(g["model"], g["strategy"]) for g in grid] == [(m, "S3") for m in GRID_MODELS]
    search = record["06_explain"]["search"]  # at 76x76 the first draw (3 blocks of 3x3 pools, valid) cannot be built:
    assert len(search) == 4 and sum(t["error"] is None for t in search) == 3  # recorded, and the search goes on
    members = record["06_explain"]["members"]
    assert len(members) == 4 and {"vgg19", "inceptionv3"} <= set(members), members  # the reference's four:
    assert {m for m in members if m.startswith("CNN Bunu")} == {"CNN Bunu 1 (3 conv, Adam)",  # its two CNNs as stated
                                                               "CNN Bunu 2 (2 conv, RMSProp)"}
    assert record["05_hypervector"]["train_images_per_class"] == {c: 12 for c in ("mel", "nv", "bcc", "bkl")}
