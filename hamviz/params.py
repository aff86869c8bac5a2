"""Parameter profiles (``params/<profile>.yaml``): loading, inheritance and validation.

A profile is YAML with the shared settings at the top level and one section per chapter under
``chapters:`` (keyed by the chapter name, the notebook file name without its number: ``01_eda.ipynb`` ->
``eda``). ``extends: other`` starts from another profile and overrides it key by key.
Every profile is validated against :data:`SCHEMA` (JSON Schema, via ``jsonschema``) before any notebook
runs, every key of every section down to list entries (ensemble transfer members, augmentation options): an
unknown key (with the closest known key suggested), a wrong type or an out-of-range value is a
:class:`~hamviz.config.ParamsError` naming the file, the key and the fix. ``extends:`` and the paths a profile
names are resolved against the profile's own folder, to absolute paths, when it is loaded: the book and its
chapters (which run in ``notebooks/``) read the same files.
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from .config import ParamsError, profiles_dir
from .fields import schema_entries
from .pipeline import AUGMENT_SCHEMA
from .registry import (
    CLASSES,
    DECISION_OBJECTIVES,
    HD_BACKBONES,
    HD_KINDS,
    HD_LOSSES,
    MALIGNANT,
    MODEL_NAMES,
    OPTIMIZERS,
    PRETRAINED_BACKBONES,
    SCHEDULES,
    STRATEGIES,
    check_size,
    latent_problem,
)
from .training import TrainConfig

PARAMS_ENV = "HAMVIZ_PARAMS"

_int = {"type": "integer"}
_bool = {"type": "boolean"}


def _obj(props: dict, required=()) -> dict:
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": list(required)}


#: The options a backbone takes (:func:`hamviz.models.transfer_model`, :func:`hamviz.models.hub_model`): the
#: classifier section's keys of the same names, and each ensemble transfer member's.
TRANSFER_OPTIONS = {
    "weights": {"type": ["string", "null"], "default": None,
                "description": "imagenet | null (random init) | a weights file (Keras applications) | a "
                               "Keras-Hub preset folder or handle (hf://..., kaggle://...)"},
    "trainable": {"anyOf": [{"enum": ["frozen", "all"]}, {"type": "integer", "minimum": 0}],
                  "default": "all", "description": "backbone layers that train: frozen, all, or the last N"},
    "head": {"enum": ["reference", "simple", "own_top"], "default": "reference",
             "description": "reference: GAP-Dense-Dropout-BN-Dense; simple: GAP-Dropout-Dense; own_top: the "
                            "backbone's own fully connected top with a new output layer (vgg19, 224x224)"},
    "dense": {**_int, "minimum": 1, "default": 1024},
    "dropout": {"type": "number", "minimum": 0, "maximum": 0.9, "default": 0.5},
    "l2": {"type": "number", "minimum": 0, "default": 0.0},
    "input_scaling": {"enum": ["imagenet", "unit"], "default": "imagenet",
                      "description": "imagenet: the backbone's own ImageNet preprocessing; unit: pixels / 255 "
                                     "(Zhang's and Bunu's inputs)"},
}
#: One ensemble member on an ImageNet backbone (``chapters.explain.transfer_members`` entries).
TRANSFER_MEMBER = _obj({
    "model": {"enum": list(PRETRAINED_BACKBONES), "description": "the backbone, e.g. vgg19"},
    **{k: {kk: vv for kk, vv in v.items() if kk != "default"} for k, v in TRANSFER_OPTIONS.items()},
    "image_size": {**_int, "minimum": 16, "maximum": 1024,
                   "description": "the member's own input edge (the reference's transfer members: 224); default "
                                  "the profile's image_size"},
    "epochs": {**_int, "minimum": 1, "maximum": 1000,
               "description": "epochs of training (after any head_warmup); default the chapter's member_epochs"},
    "head_warmup": {**_int, "minimum": 0, "maximum": 1000,
                    "description": "two stages: this many epochs of the head alone on the frozen backbone's cached "
                                   "features first, then `epochs` with `trainable` layers unfrozen (needs head: "
                                   "simple)"},
    "optimizer": {"enum": list(OPTIMIZERS), "description": "this member's optimiser; default the chapter's"},
    "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                      "description": "this member's learning rate; default the chapter's"},
    "clipnorm": {"type": ["number", "null"], "exclusiveMinimum": 0,
                 "description": "this member's gradient clipping by norm (null: none); default the chapter's"},
}, required=("model",))
#: The keys of a transfer member that set its training rather than its network.
MEMBER_TRAINING_KEYS = ("image_size", "epochs", "head_warmup", "optimizer", "learning_rate", "clipnorm")

#: The classifier section's training keys, from :class:`hamviz.training.TrainConfig`'s fields (type, bounds, allowed
#: values, default and description written once, there); a profile's learning rate is also at most 1.
TRAIN_KEYS = schema_entries(TrainConfig, ("strategy", "optimizer", "learning_rate", "head_warmup",
                                          "head_learning_rate", "select_on", "tta_flips", "clipnorm", "schedule",
                                          "epochs", "patience", "batch_size", "augment", "train_limit"))
TRAIN_KEYS["learning_rate"]["maximum"] = 1

#: Chapter sections, by chapter name. Chapters added later register their schema here.
CHAPTER_SCHEMAS: dict[str, dict] = {
    "eda": _obj({
        "samples_per_class": {**_int, "minimum": 1, "maximum": 24, "default": 6,
                              "description": "sample images shown per class"},
        "sample_size": {**_int, "minimum": 32, "maximum": 600, "default": 150,
                        "description": "edge of the sample images in the gallery (pixels)"},
        "contrast_ring": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5, "default": 0.1,
                          "description": "width of the skin ring around the lesion, as a fraction "
                                         "of the image edge"},
    }),
    "classifier": _obj({
        "model": {"enum": list(MODEL_NAMES), "default": "small_cnn",
                  "description": "small_cnn or a backbone: inceptionv3, densenet201, resnet50, vgg19, "
                                 "mobilenetv2"},
        "image_size": {"type": ["integer", "null"], "minimum": 16, "maximum": 1024, "default": None,
                       "description": "input edge of the main model (and of the chapters that analyse it: "
                                      "compression, joint, Grad-CAM); null: the profile's image_size"},
        **TRANSFER_OPTIONS,
        # the training keys: TrainConfig's fields, their one definition (a profile also caps the learning rate at 1)
        **TRAIN_KEYS,
        "main_replicates": {**_int, "type": ["integer", "null"], "minimum": 1, "maximum": 20, "default": None,
                            "description": "replicates of the main model (seeds seed, seed+1, ...), which every "
                                           "chapter's verdicts about the main model use (compression, joint, "
                                           "Grad-CAM, the ensemble); null: the classifier chapter's replicates. "
                                           "Fewer than the profile's replicates: those verdicts say so"},
        "leak_audit": {"enum": [True, False, "frozen_head"], "default": True,
                       "description": "train on the image-level split too and show the inflation: true (the "
                                      "main model again), frozen_head (its head alone on cached frozen "
                                      "features: minutes less for a pretrained backbone), false"},
        "grid": {**_obj({
            "models": {"type": "array", "items": {"enum": list(MODEL_NAMES)}, "uniqueItems": True},
            "strategies": {"type": "array", "items": {"enum": list(STRATEGIES)},
                           "uniqueItems": True},
            "image_size": {**_int, "minimum": 16, "maximum": 1024},
            "epochs": {**_int, "minimum": 1, "maximum": 1000},
            "augment": {**_obj(AUGMENT_SCHEMA),
                        "description": "the grid's own augmentation (Zhang's: quarter turns, zoom and shifts, no "
                                       "flips); default: the main model's"},
            "frozen_head": {**_bool, "description": "also each strategy on the main model's head alone over "
                                                    "its backbone's cached frozen features (pretrained "
                                                    "backbone, head: simple; head_warmup epochs)"},
            "settings": {"type": "object", "propertyNames": {"enum": list(MODEL_NAMES)},
                         "additionalProperties": _obj({
                             "optimizer": {"enum": list(OPTIMIZERS)},
                             "learning_rate": {"type": "number", "exclusiveMinimum": 0},
                             "schedule": {"enum": list(SCHEDULES)},
                             "epochs": {**_int, "minimum": 1, "maximum": 1000},
                             "patience": {**_int, "minimum": 1},
                             "batch_size": {**_int, "minimum": 1},
                             "l2": {"type": "number", "minimum": 0},
                             "input_scaling": {"enum": ["imagenet", "unit"]},
                         }),
                         "description": "per grid model, training settings that differ from the main model's "
                                        "(the reference's own protocol per model)"},
        }), "default": {"models": ["small_cnn"], "strategies": list(STRATEGIES)},
            "description": "strategy x model table; image_size and epochs default to the main model's"},
        "external_test": {"type": ["string", "null"], "default": None,
                          "description": "ISIC 2018 Task 3 folder evaluated as an external test set"},
        "external_overlap": {"enum": ["drop", "error", "keep"], "default": "drop",
                             "description": "external images that are also in the HAM10000 data in use (same image "
                                            "id, or the same decoded pixels under another name: ISIC 2018 Task 3's "
                                            "and ISIC 2019's training data hold HAM10000): drop (left out, counted), "
                                            "error (stop before anything runs), keep (scored anyway, for a smoke "
                                            "test: the record then says how few were independent)"},
        "n_boot": {**_int, "minimum": 0, "maximum": 100000, "default": 1000},
        "misclassified": {**_int, "minimum": 0, "maximum": 100, "default": 16},
        "tune_decision": {"enum": [*DECISION_OBJECTIVES, None], "default": "macro_f1",
                          "description": "also show the main model with per-class decision weights fitted on "
                                         "validation to maximise this metric, scored on test (null: skip)"},
        "tune_decision_max_drop": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "default": None,
                                   "description": "also a rule tuned for tune_decision under a floor: the other "
                                                  "metric (balanced accuracy when tuning macro-F1, and vice "
                                                  "versa) may fall at most this much (0.02 = two points) below "
                                                  "plain argmax's on validation (null: no such rule)"},
    }),
    "compression": _obj({
        "qualities": {"type": "array", "items": {**_int, "minimum": 1, "maximum": 100}, "minItems": 1,
                      "uniqueItems": True, "default": [95, 50, 20, 10, 5, 3, 1]},
        "kmeans_k": {"type": "array", "items": {**_int, "minimum": 2, "maximum": 256}, "uniqueItems": True,
                     "default": [2, 4, 8, 16, 32, 64]},
        "test_limit": {"type": ["integer", "null"], "minimum": 10, "default": None,
                       "description": "score every coding on this many test images (stratified by class, the "
                                      "uncompressed reference on the same ones); null: the whole test part"},
        "kmeans_limit": {"type": ["integer", "null"], "minimum": 10, "default": None,
                         "description": "K-means on this many test images (stratified); null: all"},
        "tta_flips": {"type": ["boolean", "null"], "default": None,
                      "description": "score every coding (and the uncompressed reference) as the mean over each "
                                     "image and its two mirror images; null: as the main model's own test "
                                     "numbers (classifier.tta_flips)"},
        "ae_ratios": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "uniqueItems": True,
                      "default": [1.5, 3, 6]},
        "ae_filters": {"type": "array", "items": {**_int, "minimum": 1}, "minItems": 2, "maxItems": 3,
                       "default": [32, 64],
                       "description": "filters of each encoder level: two entries, the reference's autoencoder; "
                                      "three, its 3-level variant (latent at 1/8 of the edge)"},
        "ae_epochs": {**_int, "minimum": 1, "maximum": 1000, "default": 10},
        "ae_patience": {**_int, "minimum": 1, "default": 3},
        "ae_learning_rate": {"type": "number", "exclusiveMinimum": 0, "default": 1e-3},
        "ae_train_limit": {"type": ["integer", "null"], "minimum": 50, "default": None},
        "ae_val_limit": {"type": ["integer", "null"], "minimum": 50, "default": None,
                         "description": "validation images (class-stratified) early stopping watches; null: all"},
        "n_boot": {**_int, "minimum": 0, "maximum": 100000, "default": 200},
        "gallery_per_class": {**_int, "minimum": 1, "maximum": 5, "default": 1},
        "widget_qualities": {"type": "array", "items": {**_int, "minimum": 1, "maximum": 100},
                             "default": [95, 75, 50, 30, 20, 15, 10, 7, 5, 3, 2, 1]},
    }),
    "joint": _obj({
        "ratios": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "uniqueItems": True,
                   "default": [1.5, 3, 6], "description": "autoencoder ratios (from the compression chapter)"},
        "init": {"enum": ["pretrained", "scratch"], "default": "pretrained"},
        "recon_weight": {"type": "number", "minimum": 0, "default": 0.0,
                         "description": "weight of the reconstruction loss beside the classification loss"},
        "train_autoencoder": {**_bool, "default": True},
        "train_classifier": {**_bool, "default": True},
        "learning_rate": {"type": "number", "exclusiveMinimum": 0, "default": 1e-4},
        "epochs": {**_int, "minimum": 1, "maximum": 1000, "default": 5},
        "patience": {**_int, "minimum": 1, "default": 3},
        "train_limit": {"type": ["integer", "null"], "minimum": 50, "default": None},
        "val_limit": {"type": ["integer", "null"], "minimum": 50, "default": None,
                      "description": "validation images (class-stratified) early stopping watches; null: all"},
        "contrast_bins": {**_int, "minimum": 2, "maximum": 20, "default": 4},
        "band_width": {**_int, "minimum": 1, "maximum": 16, "default": 2,
                       "description": "half-width of the mask-boundary band (pixels at image_size)"},
        "n_boot": {**_int, "minimum": 0, "maximum": 100000, "default": 200},
        "gallery_per_class": {**_int, "minimum": 1, "maximum": 5, "default": 1},
    }),
    "hypervector": _obj({
        "classes": {"type": ["array", "null"], "items": {"enum": list(CLASSES)},
                    "uniqueItems": True, "minItems": 2, "default": ["mel", "nv", "bcc", "bkl"],
                    "description": "class subset (the reference's four), or null for all seven"},
        "image_size": {"type": ["integer", "null"], "minimum": 16, "maximum": 1024, "default": None,
                       "description": "input edge for this chapter; null: the profile's image_size"},
        "dim": {**_int, "minimum": 8, "maximum": 100000, "default": 500},
        "template": {"enum": list(HD_KINDS), "default": "binary"},
        "losses": {"type": "array", "items": {"enum": list(HD_LOSSES)}, "minItems": 1, "uniqueItems": True,
                   "default": ["mse", "cosine"]},
        "backbone": {"enum": list(HD_BACKBONES), "default": "hd_cnn"},
        "dense": {**_int, "minimum": 1, "default": 1000},
        "dropout": {"type": "number", "minimum": 0, "maximum": 0.9, "default": 0.5},
        "optimizer": {"enum": list(OPTIMIZERS), "default": "adamw"},
        "learning_rate": {"type": "number", "exclusiveMinimum": 0, "default": 1e-3},
        "epochs": {**_int, "minimum": 1, "maximum": 1000, "default": 10},
        "patience": {**_int, "minimum": 1, "default": 3},
        "batch_size": {**_int, "minimum": 1, "default": 32},
        "augment": {"type": ["object", "boolean", "null"], "properties": AUGMENT_SCHEMA, "additionalProperties": False,
                    "default": {"rot90": True, "flip": True, "zoom": 0.1, "shift": 0.1},
                    "description": "as chapters.classifier.augment; null or false: none, true: the default"},
        "train_limit": {"type": ["integer", "null"], "minimum": 50, "default": None},
        "per_class": {"type": ["integer", "null"], "minimum": 1, "default": 600,
                      "description": "every class exactly this many training images: larger classes subsampled, "
                                     "smaller ones repeated (reference: 600 of each); null: the training part "
                                     "as it is"},
        "originals_per_class": {"type": ["integer", "null"], "minimum": 1, "default": None,
                                "description": "first keep at most this many training images of each class, then "
                                               "repeat them (augmented) up to per_class: the reference's 600 from "
                                               "about 400 originals; null: all"},
        "qualities": {"type": ["array", "null"], "items": {**_int, "minimum": 1, "maximum": 100}, "default": None,
                      "description": "JPEG qualities; null: the compression chapter's"},
        "n_boot": {**_int, "minimum": 0, "maximum": 100000, "default": 200,
                   "description": "bootstrap resamples (of lesions) for the sweep's 95 % intervals; 0: none"},
        "embed_points": {**_int, "minimum": 20, "maximum": 20000, "default": 600},
        "perplexity": {"type": "number", "exclusiveMinimum": 1, "default": 30},
        "holdout_class": {"enum": [*CLASSES, None], "default": "bcc",
                          "description": "class added to the memory without retraining (demo), one of the "
                                         "chapter's classes; null: skip"},
        "pretrained_head": {
            **_obj({
                "model": {"enum": list(PRETRAINED_BACKBONES),
                          "description": "the frozen pretrained backbone, e.g. efficientnet_lite0"},
                "weights": {"type": "string", "minLength": 1,
                            "description": "imagenet | a Keras-Hub preset folder or handle | a weights file "
                                           "(random weights make no pretrained row: use null to skip it)"},
                "image_size": {**_int, "minimum": 16, "maximum": 1024,
                               "description": "the backbone's input edge; the test images are JPEG-coded at "
                                              "this size for this row"},
            }, required=("model", "weights", "image_size")),
            "type": ["object", "null"], "default": None,
            "description": "second row (hamviz's addition, not in the reference): the same HD classifier as a "
                           "head on the backbone's cached frozen pooled features; null: skip the row"},
    }),
    "explain": _obj({
        "image_size": {"type": ["integer", "null"], "minimum": 16, "maximum": 1024, "default": None,
                       "description": "input edge of the binary members trained here (reference and search CNNs, "
                                      "and transfer members without their own); null: the profile's image_size"},
        "malignant": {"type": "array", "items": {"enum": list(CLASSES)},
                      "minItems": 1, "uniqueItems": True, "default": list(MALIGNANT)},
        "optimizer": {"enum": list(OPTIMIZERS), "default": "adam"},
        "learning_rate": {"type": "number", "exclusiveMinimum": 0, "default": 3e-4},
        "clipnorm": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": 1.0},
        "augment": {**_obj(AUGMENT_SCHEMA), "default": {"rot90": True, "flip": True, "zoom": 0.1, "shift": 0.1},
                    "description": "the trained members' augmentation (hamviz's default: quarter turns, flips, "
                                   "zoom and shift 10 %)"},
        "balancing": {"enum": ["class_weights", "oversample"], "default": "class_weights",
                      "description": "how the binary members meet the benign/malignant imbalance: class weights, or "
                                     "the malignant images repeated up to the benign count, each repeat augmented "
                                     "on the fly (the reference augmented the malignant class)"},
        "member_epochs": {**_int, "minimum": 1, "maximum": 1000, "default": 8},
        "patience": {**_int, "minimum": 1, "default": 3},
        "batch_size": {**_int, "minimum": 1, "default": 32},
        "train_limit": {"type": ["integer", "null"], "minimum": 50, "default": None},
        "search_trials": {**_int, "minimum": 1, "maximum": 200, "default": 6},
        "search_epochs": {**_int, "minimum": 1, "maximum": 100, "default": 3},
        "search_members": {**_int, "minimum": 0, "maximum": 10, "default": 2,
                           "description": "best random-search CNNs that join the ensemble"},
        "search_space": {
            "type": ["object", "null"], "default": None, "additionalProperties": False,
            "description": "the random search's space (key -> values drawn uniformly); null: hamviz's default "
                           "(hamviz.search.SEARCH_SPACE, optimisers with adamax)",
            "properties": {
                "conv_blocks": {"type": "array", "minItems": 1, "items": {**_int, "minimum": 1, "maximum": 8}},
                "filters": {"type": "array", "minItems": 1, "items": {**_int, "minimum": 1, "maximum": 1024}},
                "kernel": {"type": "array", "minItems": 1, "items": {**_int, "minimum": 1, "maximum": 15}},
                "convs_per_block": {"type": "array", "minItems": 1, "items": {**_int, "minimum": 1, "maximum": 4}},
                "dense_layers": {"type": "array", "minItems": 1, "items": {**_int, "minimum": 0, "maximum": 4}},
                "dense_units": {"type": "array", "minItems": 1, "items": {**_int, "minimum": 1, "maximum": 8192}},
                "dropout": {"type": "array", "minItems": 1, "items": {"type": "number", "minimum": 0,
                                                                      "exclusiveMaximum": 1}},
                "pooling": {"type": "array", "minItems": 1, "items": {"enum": ["max", "avg"]}},
                "pool_size": {"type": "array", "minItems": 1, "items": {**_int, "minimum": 2, "maximum": 8}},
                "padding": {"type": "array", "minItems": 1, "items": {"enum": ["same", "valid"]}},
                "filter_growth": {"type": "array", "minItems": 1, "items": {"enum": ["double", "constant"]}},
                "block_dropout": {"type": "array", "minItems": 1, "items": _bool},
                "init": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "optimizer": {"type": "array", "minItems": 1, "items": {"enum": list(OPTIMIZERS)}},
                "learning_rate": {"type": "array", "minItems": 1, "items": {"type": "number",
                                                                            "exclusiveMinimum": 0}},
            }},
        "cnn_members": {"type": "array", "default": [], "items": _obj({
            "name": {"type": "string", "minLength": 1},
            "conv_blocks": {**_int, "minimum": 1, "maximum": 8}, "filters": {**_int, "minimum": 1},
            "kernel": {**_int, "minimum": 1}, "convs_per_block": {**_int, "minimum": 1},
            "dense_layers": {**_int, "minimum": 0}, "dense_units": {**_int, "minimum": 1},
            "dropout": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
            "pooling": {"enum": ["max", "avg"]}, "pool_size": {**_int, "minimum": 2},
            "padding": {"enum": ["same", "valid"]}, "filter_growth": {"enum": ["double", "constant"]},
            "block_dropout": _bool, "init": {"type": "string", "minLength": 1},
            "optimizer": {"enum": list(OPTIMIZERS)}, "learning_rate": {"type": "number", "exclusiveMinimum": 0},
        }, required=("name",)),
            "description": "CNN members built as given (hamviz.models.configurable_cnn options, plus optimizer and "
                           "learning_rate; default the chapter's): Bunu et al.'s two searched CNNs as the paper "
                           "states them"},
        "main_member": {**_bool, "default": True,
                        "description": "the classifier chapter's main model (its malignant classes summed) as an "
                                       "ensemble member (hamviz's addition)"},
        "reference_member": {**_bool, "default": True,
                             "description": "the reference small CNN as an ensemble member (hamviz's addition)"},
        "transfer_members": {"type": "array", "items": TRANSFER_MEMBER, "default": [],
                             "description": "backbone members, e.g. {model: vgg19, weights: imagenet, "
                                            "trainable: all}; trained at the profile's image_size"},
        "weak_member": {**_bool, "default": True,
                        "description": "add a deliberately under-trained member (1 epoch) to show its effect"},
        "target_sensitivity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.95},
        "optimizers": {"type": "array", "items": {"enum": list(OPTIMIZERS)},
                       "default": ["sgd", "adam", "adamax", "nadam"]},
        "optimizer_epochs": {**_int, "minimum": 1, "maximum": 100, "default": 3},
        "optimizer_model": {"type": "string", "default": "small_cnn",
                            "description": "the network the optimisers are compared on: small_cnn, or the model "
                                           "of a transfer member (Bunu: inceptionv3), with that member's network "
                                           "options and clipping"},
        "cam_images": {**_int, "minimum": 4, "maximum": 5000, "default": 200},
        "gallery": {**_int, "minimum": 1, "maximum": 48, "default": 8},
        "layers": {"type": ["array", "null"], "items": {"type": ["string", "integer"]}, "default": None,
                   "description": "layers for the activation maps (names or indices); null: five from first "
                                  "to last conv layer"},
    }),
}

#: How many times every model behind a verdict is trained, with the training seeds seed, seed+1, ... on the same
#: lesion-grouped split (:func:`hamviz.replicates.replicate_seeds`); top level, and per chapter (null: the top level's).
REPLICATES = {**_int, "minimum": 1, "maximum": 20,
              "description": "training replicates of every model behind a verdict (seeds seed, seed+1, ...; the "
                             "split stays the seed's); a verdict needs at least 2 to be more than one measurement"}
for _section in CHAPTER_SCHEMAS.values():  # every chapter may override it (null: the profile's top level)
    _section["properties"]["replicates"] = {**REPLICATES, "type": ["integer", "null"], "default": None}

SCHEMA: dict = _obj({
    "profile": {"type": "string", "description": "profile name, shown in the book"},
    "description": {"type": "string"},
    "extends": {"type": "string", "description": "profile this one starts from"},
    "data_dir": {"type": ["string", "null"],
                 "description": "HAM10000 folder; null: $HAMVIZ_DATA"},
    "masks": {"enum": ["auto", True, False]},
    "on_missing": {"enum": ["error", "skip"],
                   "description": "image ids without files / files without ids"},
    "on_corrupt": {"enum": ["error", "skip"], "description": "images that do not decode"},
    "on_mask_mismatch": {"enum": ["error", "skip"],
                         "description": "lesion masks whose size is neither their image's nor an exact integer "
                                        "multiple of it (transposed, cropped, a few pixels off): error names them; "
                                        "skip treats them as missing and reports them"},
    "seed": {**_int, "minimum": 0},
    "image_size": {**_int, "minimum": 16, "maximum": 1024,
                   "description": "edge of the square images models see (pixels)"},
    "resize": {"enum": ["stretch", "crop", "pad"]},
    "split": _obj({
        "fractions": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                      "minItems": 3, "maxItems": 3},
        "grouped": _bool,
    }),
    "jobs": {**_int, "minimum": 1, "description": "parallel chapters in the book build"},
    "replicates": REPLICATES,
    "chapters": {"type": "object",
                 "properties": {name: s for name, s in CHAPTER_SCHEMAS.items()},
                 "additionalProperties": False},
}, required=["seed", "image_size"])

DEFAULTS = {
    "data_dir": None, "masks": "auto", "on_missing": "error", "on_corrupt": "error", "on_mask_mismatch": "error",
    "resize": "stretch", "split": {"fractions": [0.7, 0.2, 0.1], "grouped": True}, "jobs": 1,
    "replicates": 1,
    "chapters": {},
}


def params_dirs() -> list[Path]:
    """Where a profile's bare name is looked up: $HAMVIZ_PARAMS, the shipped profiles, ``params/`` of the working
    folder and of its parent (a notebook's kernel runs in ``notebooks/``)."""
    dirs = []
    if os.environ.get(PARAMS_ENV):
        dirs.append(Path(os.environ[PARAMS_ENV]))
    dirs += [profiles_dir(), Path.cwd() / "params", Path.cwd().parent / "params"]
    return dirs


def _is_path(profile) -> bool:
    """Whether a profile argument is a file's path (it ends in .yaml or .yml, or names a folder) rather than a
    bare name."""
    text = str(profile)
    return Path(text).suffix in (".yaml", ".yml") or "/" in text or os.sep in text


def moved_from() -> Path | None:
    """The folder the command was run from, when this process runs in another one, else None: a notebook kernel
    started by ``papermill --cwd DIR`` (or a Jupyter server) runs in DIR, but inherits ``$PWD``, which the user's
    shell set to the folder the command was typed in. None when $PWD is unset or names the working folder."""
    pwd = os.environ.get("PWD")
    if not pwd or not os.path.isabs(pwd) or not os.path.isdir(pwd):
        return None
    try:
        return None if os.path.samefile(pwd, os.getcwd()) else Path(pwd)
    except OSError:
        return None


def _profile_file(profile) -> Path:
    """The file a profile argument that is a path names (:func:`find_profile`'s first rule)."""
    p = Path(profile).expanduser()
    if not p.is_absolute():
        where = moved_from()
        if where is not None:
            raise ParamsError(
                f"Profile {str(profile)!r} is a relative path, but this process runs in {Path.cwd()}, not in the "
                f"folder the command was run from ({where}; papermill's --cwd moves a notebook's kernel): which "
                f"file is meant is ambiguous. Give the profile's absolute path (e.g. -p profile {where / p}), or a "
                f"bare name from params/.")
        p = Path.cwd() / p
    if p.is_file():
        return p.resolve()
    given = Path(str(profile))
    named = _named(given.stem) if given.parent == Path(".") else {}
    hint = (f" (the profile named {given.stem!r}, without .yaml, is {', '.join(map(str, named))})" if named else "")
    raise ParamsError(f"No profile file {p}: a profile given with .yaml (or a folder) is a file, relative to the "
                      f"folder the command was run from ({Path.cwd()}){hint}. Give the path of an existing .yaml "
                      f"file, or a bare name from params/.")


def _named(name: str) -> dict[Path, Path]:
    """Every different file ``<name>.yaml`` (or ``.yml``) in :func:`params_dirs`, in their order: resolved file ->
    its folder. One file reached twice (a checkout's ``params/`` is the shipped folder) and byte-identical copies
    (a clone's ``params/`` beside an installed hamviz) count once, as the first found."""
    found: dict[Path, Path] = {}
    contents: set[bytes] = set()
    for d in params_dirs():
        for cand in (d / f"{name}.yaml", d / f"{name}.yml"):
            if cand.is_file() and cand.resolve() not in found:
                text = cand.read_bytes()
                if text not in contents:
                    contents.add(text)
                    found[cand.resolve()] = d
    return found


def find_profile(profile: str | os.PathLike, beside: Path | None = None) -> Path:
    """A profile's file, as an absolute path, by one rule (``hamviz book``, ``validate``, ``cache`` and a notebook
    run by hand alike):

    * a path (it ends in ``.yaml``/``.yml`` or names a folder) is that file: absolute, or relative to the folder
      the command was run from. A process that runs in another folder (a notebook kernel started by ``papermill
      --cwd``, :func:`moved_from`) refuses a relative path: give it absolute. A missing file is an error, never a
      lookup by name;
    * a bare name is ``<name>.yaml`` in $HAMVIZ_PARAMS, the shipped profiles, or ``params/`` of the working folder
      or its parent; a name that two different files answer (a user's ``params/tiny.yaml`` beside the shipped
      ``tiny``) is refused as ambiguous, naming both: give the path of the one you mean.

    beside: the file of a profile that ``extends:`` this one. Its name (``base``, ``base.yaml``, ``../x.yaml``) is
    then looked up next to that file first, else in $HAMVIZ_PARAMS and the shipped profiles, never relative to
    the working folder: a chapter (which runs in ``notebooks/``) resolves it to the same file as ``hamviz
    validate`` did. A profile never extends itself this way (``params/tiny.yaml`` with ``extends: tiny`` beside
    a shipped ``tiny`` means the shipped one)."""
    if beside is not None:
        return _extended_profile(profile, beside)
    if _is_path(profile):
        return _profile_file(profile)
    found = _named(str(profile))
    if len(found) == 1:
        return next(iter(found))
    if len(found) > 1:
        listed = "; ".join(f"{f}" + (" (shipped with hamviz)" if d == profiles_dir() else "")
                           for f, d in found.items())
        own = next((f for f, d in found.items() if d != profiles_dir()), next(iter(found)))
        raise ParamsError(f"Profile name {str(profile)!r} is ambiguous: {len(found)} different files answer it: "
                          f"{listed}. Give the path of the one you mean (--profile or -p profile with its .yaml, "
                          f"e.g. {own}), or rename your own (it can still start from the shipped one with "
                          f"extends: {profile}).")
    _unknown_profile(profile, params_dirs())


def _extended_profile(profile, beside: Path) -> Path:
    """The profile that the one at ``beside`` extends (:func:`find_profile`)."""
    p = Path(profile).expanduser()
    here = Path(beside).resolve()
    if p.is_absolute():
        if p.is_file():
            return p.resolve()
        dirs = []
    else:
        for cand in (here.parent / p, here.parent / f"{p}.yaml", here.parent / f"{p}.yml"):
            if cand.suffix in (".yaml", ".yml") and cand.is_file() and cand.resolve() != here:
                return cand.resolve()
        dirs = ([Path(os.environ[PARAMS_ENV])] if os.environ.get(PARAMS_ENV) else []) + [profiles_dir()]
    for d in dirs:
        for cand in (d / f"{profile}.yaml", d / str(profile)):
            if cand.suffix in (".yaml", ".yml") and cand.is_file():
                return cand.resolve()
    _unknown_profile(profile, dirs, beside)


def _unknown_profile(profile, dirs, beside: Path | None = None):
    """Raise the ParamsError for a profile found nowhere, with the closest known name."""
    places = dirs if beside is None else [Path(beside).resolve().parent, *dirs]
    known = sorted({f.stem for d in places if d.is_dir() for f in d.glob("*.yaml")})
    hint = difflib.get_close_matches(str(profile), known, n=1)
    where = "" if beside is None else f" (extended by {beside}; looked next to it, then in " \
        f"{', '.join(map(str, dirs))})"
    raise ParamsError(f"No parameter profile {str(profile)!r}{where}"
                      + (f" (did you mean {hint[0]!r}?)" if hint else "")
                      + f"; known profiles: {', '.join(known) or 'none'}. "
                        f"Give a name from params/ or a path to a .yaml file"
                      + (" (relative to the extending profile's folder, or absolute)." if beside else "."))


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else \
            copy.deepcopy(v)
    return out


class _ProfileLoader(yaml.SafeLoader):
    """YAML for profiles: numbers as people write them (``1e-3`` is a float, not YAML 1.1's string), booleans
    only ``true``/``false`` as in YAML 1.2 (YAML 1.1 silently reads ``yes``, ``no``, ``on``, ``off`` as booleans:
    here they stay strings, so a boolean setting written so is an error that says how to write it) and no key
    given twice in one mapping (YAML would silently keep the last)."""


_ProfileLoader.yaml_implicit_resolvers = {  # YAML 1.1's booleans out: only YAML 1.2's true/false below
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_ProfileLoader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                     __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


_ProfileLoader.add_implicit_resolver(  # YAML 1.2 floats: 1e-3, 1E+5, .5, 3. besides YAML 1.1's forms
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                             |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                             |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                             |[-+]?\.(?:inf|Inf|INF)
                             |\.(?:nan|NaN|NAN))$""", __import__("re").X),
    list("-+0123456789."))


def _mapping_without_duplicates(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ParamsError(f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}"
                              f" of {key_node.start_mark.name}): YAML would silently keep the last; keep one")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_ProfileLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_yaml(text: str, name: str = "<params>"):
    """YAML text as profiles read it (:class:`_ProfileLoader`); raises ParamsError naming ``name``."""
    import io
    stream = io.StringIO(text)
    stream.name = name  # named in YAML's error marks
    try:
        return yaml.load(stream, Loader=_ProfileLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{name} is not valid YAML: {exc}") from exc


def _read_yaml(path: Path) -> dict:
    data = parse_yaml(path.read_text(), str(path)) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must be a mapping of keys to values, not {type(data).__name__}")
    return data


def _whole_numbers_as_int(params, schema=None):
    """Whole-number floats (``image_size: 32.0``) where the schema wants an integer, as ints (JSON Schema counts
    32.0 as an integer, but Python code would get a float); other floats stay (the schema then rejects them)."""
    schema = SCHEMA if schema is None else schema
    if isinstance(params, dict):
        props = schema.get("properties", {})
        for k, v in params.items():
            params[k] = _whole_numbers_as_int(v, props.get(k, {}))
        return params
    if isinstance(params, list):
        return [_whole_numbers_as_int(v, schema.get("items", {})) for v in params]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else (kinds or [])
    if "anyOf" in schema:
        kinds += [t for alt in schema["anyOf"] for t in ([alt["type"]] if isinstance(alt.get("type"), str) else
                                                         alt.get("type", []))]
    if isinstance(params, float) and "integer" in kinds and "number" not in kinds and params.is_integer():
        return int(params)
    return params


#: how each JSON-schema type is written in a YAML profile (the fix a type error names); a quoted "true" or "64"
#: is a string
_YAML_SPELLING = {"boolean": "true or false (unquoted; not yes/no/on/off)", "null": "null",
                  "integer": "a whole number (unquoted)",
                  "number": "a number (unquoted)", "string": "a string", "array": "a list such as [a, b]",
                  "object": "a mapping of keys"}


def _allowed(schema: dict) -> str:
    """What a (sub)schema allows, in words: "one of 'frozen', 'all'", "an integer >= 0"."""
    if "enum" in schema:
        return "one of " + ", ".join("null" if v is None else repr(v) for v in schema["enum"])
    kinds = schema.get("type", "value")
    kinds = " or ".join(kinds) if isinstance(kinds, list) else kinds
    bounds = [f"{op} {schema[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                                                 ("exclusiveMaximum", "<")) if k in schema]
    return f"a{'n' if kinds[0] in 'aeiou' else ''} {kinds}" + (" " + " and ".join(bounds) if bounds else "")


def _schema_at(path) -> dict:
    node = SCHEMA
    for part in path:
        if isinstance(part, int) and isinstance(node.get("items"), dict):  # an entry of a list
            node = node["items"]
            continue
        props = node.get("properties", {})
        if part not in props:
            return {}
        node = props[part]
    return node


def validate(params: dict, source: str = "params", partial: bool = False, check_weights: bool = True) -> dict:
    """Check ``params`` against the schema; raise one ParamsError listing every problem.

    partial: a profile file that extends another may leave required keys to its parent.
    check_weights: also check that the pretrained weights the chapters ask for are on this machine or can be
    downloaded (:func:`weights_problems`)."""
    problems = []
    _whole_numbers_as_int(params)
    for err in sorted(Draft202012Validator(SCHEMA).iter_errors(params), key=lambda e: list(e.path)):
        if partial and err.validator == "required":
            continue
        where = ".".join(str(p) for p in err.path) or "(top level)"
        if err.validator == "additionalProperties":
            known = list(_schema_at(err.path).get("properties", {}))
            extra = [k for k in err.instance if k not in known]
            for k in extra:
                close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.6)
                at = f"{where}.{k}" if err.path else k
                problems.append(f"unknown key {at!r}"
                                + (f" (did you mean {close[0]!r}?)" if close else "")
                                + f"; known keys there: {', '.join(known)}")
        elif err.validator == "type":
            wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            problems.append(f"{where}: {err.instance!r} is not of type {err.validator_value}: write "
                            + " or ".join(_YAML_SPELLING.get(t, t) for t in wanted))
        elif err.validator == "anyOf":  # jsonschema says only "is not valid under any of the given schemas"
            problems.append(f"{where}: {err.instance!r} is not allowed; it must be "
                            + " or ".join(_allowed(alt) for alt in err.validator_value))
        else:
            problems.append(f"{where}: {err.message}")
    if not problems:
        problems += _model_size_problems(params)
        if not partial and "chapters" in params:
            problems += _frozen_head_problems(params)
            problems += _member_problems(params)
            problems += weights_problems(params) if check_weights else []
        fr = (params.get("split") or {}).get("fractions")
        if fr is not None:
            from .splits import folds_for
            try:
                folds_for(fr)
            except ValueError as exc:
                problems.append(f"split.fractions: {exc}")
    if problems:
        raise ParamsError(f"Invalid parameters in {source}:\n  - " + "\n  - ".join(problems)
                          + "\nFix these keys in the profile (see params/cpu.yaml for a complete one).")
    return params


def _frozen_head_problems(params: dict) -> list[str]:
    """Classifier-chapter keys that train the main model's head alone on frozen features, set for a main model
    that has no such head."""
    clf = chapter_params(params, "classifier")
    if clf["head"] == "simple" and clf["weights"] and clf["model"] != "small_cnn":
        return []
    fix = "set the main model to a pretrained backbone (weights, head: simple) or turn the key off"
    out = []
    if (clf.get("grid") or {}).get("frozen_head"):
        out.append(f"chapters.classifier.grid.frozen_head needs a pretrained main model with head: simple; {fix} "
                   "(frozen_head: false)")
    if clf["leak_audit"] == "frozen_head":
        out.append(f"chapters.classifier.leak_audit: frozen_head needs a pretrained main model with head: simple; "
                   f"{fix} (leak_audit: true)")
    return out


def _member_problems(params: dict) -> list[str]:
    """Entries of lists and sections that are valid one by one but not together: two ensemble transfer members
    on one backbone (members are named by their model: the second would silently replace the first), a member
    or hypervector backbone that cannot take the size it trains at, a hypervector hold-out class outside the
    chapter's classes (its demo would silently not run)."""
    out = []
    size = params.get("image_size")
    explain = chapter_params(params, "explain")
    members, member_size = explain["transfer_members"], explain.get("image_size") or size
    seen: dict[str, int] = {}
    for i, spec in enumerate(members):
        where = f"chapters.explain.transfer_members.{i}"
        if spec["model"] in seen:
            out.append(f"{where}: model {spec['model']!r} is already member {seen[spec['model']]}; members are named "
                       f"by their model, so this one would replace it. Keep one entry per backbone")
        seen.setdefault(spec["model"], i)
        own = spec.get("image_size")
        msg = (check_size(spec["model"], own or member_size) if (own or member_size) else None) or \
            own_top_problem(spec["model"], {"weights": "imagenet", **spec}, own or member_size)
        if msg:
            out.append(f"{where}: {msg} (the member trains at " + (f"its image_size, {own})" if own else
                                                                 f"the chapter's image_size, {member_size})"))
        if spec.get("head_warmup") and spec.get("head", "reference") not in ("simple", "reference"):
            out.append(f"{where}: head_warmup {spec['head_warmup']} trains the head alone on the backbone's frozen "
                       f"pooled features first, which needs head: simple or reference (a head on pooled features); "
                       f"this member has head: {spec.get('head')}. Use one of those, or drop head_warmup")
    if explain["optimizer_model"] != "small_cnn" and explain["optimizer_model"] not in seen:
        out.append(f"chapters.explain.optimizer_model: {explain['optimizer_model']!r} is neither small_cnn nor the "
                   f"model of a transfer member ({', '.join(seen) or 'none'}); name one of them")
    hd = chapter_params(params, "hypervector")
    hd_size = hd.get("image_size") or size
    if hd["backbone"] != "hd_cnn" and hd_size:
        msg = check_size(hd["backbone"], hd_size)
        if msg:
            out.append(f"chapters.hypervector.backbone: {msg} (the chapter's image_size is {hd_size})")
    classes = hd["classes"] or list(CLASSES)
    if hd["holdout_class"] is not None and hd["holdout_class"] not in classes:
        out.append(f"chapters.hypervector.holdout_class: {hd['holdout_class']!r} is not one of the chapter's classes "
                   f"{classes}, so its demo would not run; choose one of them, or null to skip the demo")
    return out


def wanted_weights(params: dict) -> list[tuple[str, str, object, bool]]:
    """The pretrained weights the profile's chapters ask for: (where in the profile, e.g.
    ``"chapters.classifier.grid"``, model name, weights, own top?) for every model that may load weights; "own
    top" is True where the model keeps the backbone's fully connected top (``head: own_top``), whose weights are
    another file."""
    clf = chapter_params(params, "classifier")
    top = clf.get("head") == "own_top"
    wanted = [("chapters.classifier", clf["model"], clf["weights"], top)]
    wanted += [("chapters.classifier.grid", m, clf["weights"], top)
               for m in (clf.get("grid") or {}).get("models", [])]
    for spec in chapter_params(params, "explain")["transfer_members"]:
        if isinstance(spec, dict) and "model" in spec:
            wanted.append(("chapters.explain.transfer_members", spec["model"], spec.get("weights", "imagenet"),
                           spec.get("head") == "own_top"))
    hd = chapter_params(params, "hypervector")
    wanted.append(("chapters.hypervector.backbone", hd["backbone"], "imagenet", False))
    if hd.get("pretrained_head"):
        wanted.append(("chapters.hypervector.pretrained_head", hd["pretrained_head"]["model"],
                       hd["pretrained_head"]["weights"], False))
    return wanted


def weights_problems(params: dict, chapters=None) -> list[str]:
    """Pretrained weights a chapter will ask for that are not on this machine (Keras-Hub presets; checked
    without loading TensorFlow), so the error comes before any training. ``chapters``: only those chapters'
    (names; None: every chapter's)."""
    from .weights import check
    out, seen = [], set()
    for where, model, weights, _ in wanted_weights(params):
        if chapters is not None and where.split(".")[1] not in chapters:
            continue
        if (model, weights) in seen:
            continue
        seen.add((model, weights))
        problem = check(model, weights)
        if problem:
            skip = " Or set it to null to skip the pretrained row." if where.endswith("pretrained_head") else ""
            out.append(f"{where}: {problem}{skip}")
    return out


#: chapters that train or analyse the main (seven-class) classifier: each needs two classes in every split part
MAIN_MODEL_CHAPTERS = ("classifier", "compression", "joint", "explain")
#: the fix for :func:`data_problems`' lines, said once after them
DATA_FIX = ("use data with more classes, or more lesions of them (a class with fewer lesions than the split has folds "
            "is missing from some parts: split.fractions with fewer folds, e.g. [0.5, 0.25, 0.25], puts it in every "
            "part), or build only the chapters that run on this data (e.g. --only eda)")


def data_problems(params: dict, chapters, parts: dict[str, dict[str, int]]) -> list[str]:
    """What the ``chapters`` (names) of a profile need of its data that the split does not give, one line each
    (empty when all is there; :data:`DATA_FIX` is the general fix). ``parts``: split part -> {class: images} of the
    profile's own split (seed, fractions, grouping), as the chapters will see it. The classifier (and the chapters
    that analyse its main model) needs two classes in every non-empty part, the benign/malignant members of
    ``explain`` both kinds in training and test, the hypervector chapter training images of each of its classes
    and test images of two."""
    def present(part, classes=None):
        return [c for c, k in sorted(parts.get(part, {}).items()) if k and (classes is None or c in classes)]

    def having(part, classes=None):
        have = present(part, classes)
        return f"only {', '.join(have)}" if have else "none"

    out = []
    users = [c for c in chapters if c in MAIN_MODEL_CHAPTERS]
    thin = [p for p in ("train", "val", "test") if sum(parts.get(p, {}).values()) and len(present(p)) < 2]
    if users and thin:
        out.append(f"{', '.join(users)}: the classifier needs images of at least two classes in every split part, "
                   f"but " + "; ".join(f"the {p} part has {having(p)}" for p in thin))
    if "explain" in chapters:
        malignant = chapter_params(params, "explain")["malignant"]
        benign = [c for c in CLASSES if c not in malignant]
        lacking = [f"the {p} part has no {kind} image" for p in ("train", "test")
                   for kind, group in (("malignant", malignant), ("benign", benign)) if not present(p, group)]
        if lacking:
            out.append(f"explain: its benign/malignant members (malignant: {', '.join(malignant)}) need both kinds in "
                       f"the train and test parts, but " + "; ".join(lacking))
    if "hypervector" in chapters:
        classes = chapter_params(params, "hypervector")["classes"] or list(CLASSES)
        absent = [c for c in classes if c not in present("train")]
        if absent or len(present("test", classes)) < 2:
            out.append(f"hypervector: its classes {classes} need training images of each and test images of at least "
                       f"two, but " + (f"{', '.join(absent)} have no training image" if absent else
                                       f"the test part has {having('test', classes)}")
                       + " (or set chapters.hypervector.classes to classes this data has, at least two, the "
                         "holdout_class among them)")
    return out


def _model_size_problems(params: dict) -> list[str]:
    """Models that cannot take the image size they are given (caught here, before any training)."""
    out = []
    clf = (params.get("chapters") or {}).get("classifier") or {}
    # the main model's size: also the compression and joint chapters' (they analyse that model)
    size = clf.get("image_size") or params.get("image_size")
    if size and clf.get("model"):
        msg = check_size(clf["model"], size) or own_top_problem(clf["model"], clf, size)
        if msg:
            out.append(f"chapters.classifier.model: {msg} (image_size is {size})")
    comp = (params.get("chapters") or {}).get("compression") or {}
    if size:
        levels = len(comp.get("ae_filters") or (32, 64))
        for where, ratios in (("compression.ae_ratios", comp.get("ae_ratios", [])),
                              ("joint.ratios", (params.get("chapters", {}).get("joint") or {}).get("ratios", []))):
            for r in ratios:
                problem = latent_problem(size, r, levels=levels)
                if problem:
                    out.append(f"chapters.{where}: {problem}")
    head = ((params.get("chapters") or {}).get("hypervector") or {}).get("pretrained_head") or {}
    if head.get("model") and head.get("image_size"):
        msg = check_size(head["model"], head["image_size"])
        if msg:
            out.append(f"chapters.hypervector.pretrained_head: {msg} (its image_size is {head['image_size']})")
    grid = clf.get("grid") or {}
    gsize = grid.get("image_size") or size

    for m in grid.get("models", []) if gsize else []:
        msg = check_size(m, gsize) or own_top_problem(m, clf, gsize)
        if msg:
            out.append(f"chapters.classifier.grid.models: {msg} (grid image_size is {gsize})")
    return out


def own_top_problem(model: str, options: dict, size: int | None) -> str | None:
    """Why ``head: own_top`` cannot work for ``model`` with ``options`` (its head and weights) at ``size`` x
    ``size``, or None: only backbones with a published fully connected top have one (VGG19), and its pretrained
    top takes 224x224 inputs only."""
    from .weights import KERAS_TOP_WEIGHTS
    if options.get("head") != "own_top":
        return None
    if model not in KERAS_TOP_WEIGHTS:
        return (f"head own_top keeps a backbone's own fully connected top, and only {', '.join(KERAS_TOP_WEIGHTS)} "
                f"has one, not {model}: use head reference or simple")
    if options.get("weights") and size and size != 224:
        return (f"{model}'s pretrained fully connected top (head own_top) takes 224x224 inputs, not {size}x{size}: "
                f"set its image_size to 224, or use head reference or simple")
    return None


def _local_path(value) -> bool:
    """Whether a ``weights`` value names a local file or folder (not imagenet, null or a hub handle)."""
    return isinstance(value, str) and value != "imagenet" and "://" not in value


def _absolute_paths(raw: dict, folder: Path) -> None:
    """Relative paths a profile file names (``data_dir``, ``chapters.classifier.external_test``, weights files
    and preset folders) made absolute against the file's own folder, in place: a profile means the same files
    from any working folder (the book's, a chapter's in ``notebooks/``, a user's)."""
    def absolute(value):
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (folder / p).resolve())

    if isinstance(raw.get("data_dir"), str) and raw["data_dir"]:
        raw["data_dir"] = absolute(raw["data_dir"])
    chapters = raw.get("chapters") or {}
    clf = chapters.get("classifier") or {}
    if isinstance(clf.get("external_test"), str) and clf["external_test"]:
        clf["external_test"] = absolute(clf["external_test"])
    specs = [clf, *((chapters.get("explain") or {}).get("transfer_members") or []),
             (chapters.get("hypervector") or {}).get("pretrained_head") or {}]
    for spec in specs:
        if isinstance(spec, dict) and _local_path(spec.get("weights")):
            spec["weights"] = absolute(spec["weights"])


def load_profile(profile: str | os.PathLike = "cpu", overrides: dict | None = None,
                 _seen: tuple = (), check_weights: bool = True) -> dict:
    """The validated, fully merged parameters of a profile (defaults < extended profile < file < overrides).
    check_weights: see :func:`validate` (the book checks them itself, after fetching what is missing). Raises
    ParamsError listing every problem."""
    path = find_profile(profile)
    if path in _seen:
        raise ParamsError(f"Profiles extend each other in a loop: {' -> '.join(map(str, _seen + (path,)))}")
    raw = _read_yaml(path)
    validate(raw, source=str(path), partial="extends" in raw, check_weights=check_weights)
    _absolute_paths(raw, path.parent)
    base = load_profile(find_profile(raw["extends"], beside=path), _seen=_seen + (path,), check_weights=check_weights) \
        if "extends" in raw else copy.deepcopy(DEFAULTS)
    merged = deep_merge(base, {k: v for k, v in raw.items() if k != "extends"})
    if "profile" not in raw:
        merged["profile"] = path.stem
    merged["_source"] = str(path)
    if overrides:
        merged = deep_merge(merged, overrides)
    _whole_numbers_as_int(merged)
    validate({k: v for k, v in merged.items() if k != "_source"},
             source=f"{path}" + (" with overrides" if overrides else ""), check_weights=check_weights)
    return merged


def chapter_params(params: dict, chapter: str) -> dict:
    """Shared settings plus the chapter's own section, flattened (the chapter's keys win)."""
    if chapter not in CHAPTER_SCHEMAS:
        raise ParamsError(f"Unknown chapter {chapter!r}; chapters with parameters: "
                          f"{', '.join(CHAPTER_SCHEMAS)}")
    shared = {k: v for k, v in params.items() if k not in ("chapters", "_source")}
    defaults = {k: s["default"] for k, s in CHAPTER_SCHEMAS[chapter]["properties"].items()
                if "default" in s}
    own = copy.deepcopy(params.get("chapters", {}).get(chapter, {}))
    # a chapter key that shadows a shared one (e.g. image_size) with null means "use the shared value"
    merged = {**defaults, **own}
    return {**shared, **{k: v for k, v in merged.items() if not (v is None and k in shared)}}
