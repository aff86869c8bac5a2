"""Each chapter's reference protocol beside what this run does: the table at the top of every chapter.

:func:`protocol_table` turns a chapter's flat parameters into rows of setting | reference | this run | same? |
why it differs, so that every difference from a reference work's protocol is stated where its numbers are shown.
The reference values are the settings each reference work states, as hamviz's developers read them (issue 18 of
the project); where a work does not state a value hamviz had to choose, the row says so.

References: Zhang (imbalance strategies with transfer learning, the classifier chapter's strategy table);
Doctor (JPEG / K-means / autoencoder compression and joint autoencoder+classifier training); Barros Everett et al.
(HD-MANN hypervector classifier under JPEG); Bunu et al. (benign-vs-malignant ensemble, random search, Grad-CAM).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: why hamviz keeps its own protocol everywhere, whatever the profile
GROUPED = ("lesion-grouped (no lesion in two parts)",
           "repeat shots of one lesion in train and test inflate every metric (the classifier chapter's leak "
           "audit measures by how much)")
CPU = "the cpu / tiny profiles shrink sizes, images and epochs to what two CPU cores afford; run the paper profile " \
      "on a GPU for the reference's settings"


@dataclass(frozen=True)
class Setting:
    """One row: ``name``; the ``reference`` value (text); ``this_run(P)`` -> text; ``same(P)`` -> bool (None:
    hamviz's protocol differs by design); ``why`` it differs."""

    name: str
    reference: str
    this_run: Callable[[dict], str]
    same: Callable[[dict], bool] | None
    why: str


def _size(P, key="image_size"):
    s = P.get(key) or P["image_size"]
    return f"{s}x{s}"


def _grid(P):
    return P.get("grid") or {}


def _grid_settings(P, model):
    g = _grid(P)
    own = (g.get("settings") or {}).get(model, {})
    opt = own.get("optimizer", P["optimizer"])
    lr = own.get("learning_rate", P["learning_rate"])
    epochs = own.get("epochs") or g.get("epochs") or P["epochs"]
    return (f"{opt} {lr:g}, {own.get('schedule', P['schedule'])} schedule, {epochs} epochs, batch "
            f"{own.get('batch_size', P['batch_size'])}, L2 {own.get('l2', P.get('l2') or 0):g}")


def _flips(P):
    """The chapter's test-time flips: its own tta_flips, or with null the main model's (``P["_main"]``: the
    classifier chapter's parameters, given by the chapter; None where they are not given)."""
    own = P.get("tta_flips")
    return own if own is not None else (P.get("_main") or {}).get("tta_flips")


def _n(count, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _split(P):
    return "lesion-grouped" if P["split"]["grouped"] else "image-level"


PROTOCOLS: dict[str, tuple[str, list[Setting]]] = {
    "classifier": ("Zhang (strategy table S1-S5); the main model is hamviz's own recipe", [
        Setting("split", "not grouped by lesion", _split, None, GROUPED[1]),
        Setting("strategy-table input", "224x224",
                lambda P: _size({"image_size": _grid(P).get("image_size") or P["image_size"]}),
                lambda P: (_grid(P).get("image_size") or P["image_size"]) == 224, CPU),
        Setting("strategy-table models", "small CNN, ResNet50, InceptionV3, DenseNet201",
                lambda P: ", ".join(_grid(P).get("models", [P["model"]]))
                + (" + frozen-feature head" if _grid(P).get("frozen_head") else ""),
                lambda P: set(_grid(P).get("models", [])) == {"small_cnn", "resnet50", "inceptionv3", "densenet201"},
                "fine-tuning four ImageNet models five times each takes days on two cores"),
        Setting("CNN training", "Adam, learning rate cut every 3 epochs, 50 epochs, batch 16, no L2",
                lambda P: _grid_settings(P, "small_cnn"),
                lambda P: _grid_settings(P, "small_cnn").endswith("50 epochs, batch 16, L2 0")
                and "step" in _grid_settings(P, "small_cnn"), CPU),
        Setting("transfer models' training", "RMSprop at a small learning rate, 30 epochs, batch 16, no L2",
                lambda P: _grid_settings(P, "resnet50"),
                lambda P: _grid_settings(P, "resnet50").startswith("rmsprop")
                and _grid_settings(P, "resnet50").endswith("30 epochs, batch 16, L2 0"), CPU),
    ]),
    "compression": ("Doctor (compression vs classification)", [
        Setting("split", "not grouped by lesion", _split, None, GROUPED[1]),
        Setting("classifier scored", "a CNN from scratch at 128x128",
                lambda P: "the classifier chapter's main model", None,
                "every chapter analyses the book's one main classifier"),
        Setting("autoencoders", "128x128, 32x32xN latents, 32/64 filters, Adam, MAE, 50 epochs",
                lambda P: f"main-model size, {'/'.join(map(str, P['ae_filters']))} filters, Adam, MAE, "
                          f"{P['ae_epochs']} epochs, {P['ae_train_limit'] or 'all'} training images",
                lambda P: list(P["ae_filters"]) == [32, 64] and P["ae_epochs"] >= 50, CPU),
        Setting("autoencoder variants", "2-level and 3-level",
                lambda P: f"{len(P['ae_filters'])}-level", lambda P: False,
                "one variant per run: ae_filters with three entries (e.g. [32, 64, 128]) runs the 3-level one; the "
                "joint chapter trains the compression chapter's autoencoders"),
        Setting("test images", "the whole test part",
                lambda P: f"{P['test_limit']} class-stratified test images" if P.get("test_limit")
                else "the whole test part", lambda P: not P.get("test_limit"), CPU),
        Setting("views scored", "one per image",
                lambda P: {True: "the mean over each image and its two mirror images", False: "one per image",
                           None: "as the main model's own test numbers (classifier.tta_flips)"}[_flips(P)]
                + (" (tta_flips: null, as the main model)" if P.get("tta_flips") is None and _flips(P) is not None
                   else ""),
                lambda P: _flips(P) is False,
                "test-time flips (tta_flips: true, or null with a main model that uses them) triple the model's "
                "predictions for every coding; codings and the uncompressed reference are always scored alike"),
    ]),
    "joint": ("Doctor (joint autoencoder + classifier training)", [
        Setting("split", "not grouped by lesion", _split, None, GROUPED[1]),
        Setting("training", "the classifier's settings (35 epochs)",
                lambda P: f"{P['epochs']} epochs, learning rate {P['learning_rate']:g}, "
                          f"{P['train_limit'] or 'all'} training images, the classifier's imbalance strategy",
                lambda P: P["epochs"] >= 35 and not P["train_limit"], CPU),
    ]),
    "hypervector": ("Barros Everett et al. (HD-MANN)", [
        Setting("split", "not grouped by lesion", _split, None, GROUPED[1]),
        Setting("input", "180x180", lambda P: _size(P), lambda P: P["image_size"] == 180, CPU),
        Setting("HD CNN", "Table I: 'same' convolutions (180-180-90-90-45), Dense(1000)",
                lambda P: "'same' convolutions ({0}-{0}-{1}-{1}-{2}), Dense({3})".format(
                    P["image_size"], P["image_size"] // 2, P["image_size"] // 4, P["dense"]),
                lambda P: P["dense"] == 1000 and P["image_size"] == 180, CPU),
        Setting("training set", "600 images of each class",
                lambda P: (f"{P['per_class']} of each class (a class with more training images subsampled, one "
                           "with fewer repeats its images: the chapter prints which)") if P["per_class"]
                else "the training part as it is",
                lambda P: P["per_class"] == 600, CPU),
        Setting("epochs", "200",
                lambda P: f"at most {P['epochs']}, stopping after {P['patience']} without a better validation loss",
                lambda P: P["epochs"] >= 200, CPU),
        Setting("optimiser", "AdamW", lambda P: P["optimizer"], lambda P: P["optimizer"] == "adamw",
                "the profile chose another optimiser (chapters.hypervector.optimizer)"),
        Setting("pretrained HD head", "(not in the reference)", lambda P: "yes" if P.get("pretrained_head") else "no",
                None, "hamviz's addition: the same HD classifier on frozen ImageNet features"),
    ]),
    "explain": ("Bunu et al. (ensemble, random search)", [
        Setting("split", "not grouped by lesion", _split, None, GROUPED[1]),
        Setting("input", "224x224",
                lambda P: _size(P) + (" (members trained here; the main model at its own size)" if P["main_member"]
                                      else "") + "".join(f"; {m['model']} at {m['image_size']}x{m['image_size']}"
                                                         for m in P["transfer_members"] if m.get("image_size")),
                lambda P: P["image_size"] == 224 and not P["main_member"]
                and all(m.get("image_size") in (None, 224) for m in P["transfer_members"]), CPU),
        Setting("training images", "the whole training part",
                lambda P: f"{P['train_limit']:,} class-stratified training images" if P["train_limit"]
                else "the whole training part", lambda P: not P["train_limit"], CPU),
        Setting("training length", "not stated; the paper profile: 20 search trials of 10 epochs, members 30 epochs",
                lambda P: f"{_n(P['search_trials'], 'search trial')} of {_n(P['search_epochs'], 'epoch')}, members "
                          f"{_n(P['member_epochs'], 'epoch')}",
                lambda P: (P["search_trials"], P["search_epochs"], P["member_epochs"]) == (20, 10, 30), CPU),
        Setting("members", "the 2 best search CNNs, VGG19, InceptionV3",
                lambda P: ", ".join(([("main model")] if P["main_member"] else [])
                                    + (["reference CNN"] if P["reference_member"] else [])
                                    + [f"{P['search_members']} best search CNN{'' if P['search_members'] == 1 else 's'}"]
                                    + [m["model"] for m in P["transfer_members"]]
                                    + (["weak CNN"] if P["weak_member"] else [])),
                lambda P: (not P["main_member"] and not P["reference_member"] and not P["weak_member"]
                           and P["search_members"] == 2
                           and sorted(m["model"] for m in P["transfer_members"]) == ["inceptionv3", "vgg19"]),
                "the cpu profile adds the main model and a weak member to show their effect, and has no time "
                "for VGG19 and InceptionV3"),
        Setting("optimiser", "Nadam, gradient clipping at 1.0, L2",
                lambda P: f"{P['optimizer']}, clipnorm {P['clipnorm']}",
                lambda P: P["optimizer"] == "nadam" and P["clipnorm"] == 1.0,
                "the cpu profile keeps Adam for its short member training; the optimiser comparison below shows "
                "how Nadam and the others fare at equal budgets"),
        Setting("InceptionV3 training", "two stages: 15 epochs frozen, then the last 150 layers for 10",
                lambda P: _two_stage(_member(P, "inceptionv3")),
                lambda P: _two_stage(_member(P, "inceptionv3")).startswith("15 epochs of the head alone")
                          and _two_stage(_member(P, "inceptionv3")).endswith("the last 150 layers for 10"),
                "no InceptionV3 member in this profile, or other stages; hamviz's first stage trains the head on "
                "cached frozen features (no augmentation in that stage)"),
        Setting("VGG19 top", "its own fully connected top, last layer replaced by the binary one",
                lambda P: _vgg19_top(_member(P, "vgg19")),
                lambda P: (_member(P, "vgg19") or {}).get("head") == "own_top",
                "no VGG19 member in this profile, or another head (head: own_top keeps VGG19's own)"),
        Setting("balancing", "augmented malignant class",
                lambda P: {"class_weights": "class weights",
                           "oversample": "malignant images repeated to the benign count, each repeat augmented"}[
                    P["balancing"]],
                lambda P: P["balancing"] == "oversample",
                "class weights need no extra images and one epoch stays one pass over the data"),
    ]),
}


def _member(P: dict, model: str) -> dict | None:
    return next((m for m in P.get("transfer_members", []) if m["model"] == model), None)


def _vgg19_top(m: dict | None) -> str:
    if m is None:
        return "no VGG19 member"
    head = m.get("head", "reference")
    return ("its own fully connected top, last layer replaced" if head == "own_top"
            else f"hamviz's '{head}' head on pooled features")


def _two_stage(m: dict | None) -> str:
    if m is None:
        return "no such member"
    epochs = m.get("epochs", "member_epochs")
    layers = {"all": "all layers", "frozen": "no backbone layer"}.get(m.get("trainable", "all"),
                                                                      f"the last {m.get('trainable')} layers")
    if not m.get("head_warmup"):
        return f"one stage: {layers} for {epochs} epochs"
    return f"{m['head_warmup']} epochs of the head alone (on cached frozen features), then {layers} for {epochs}"


def protocol_table(chapter: str, P: dict):
    """The chapter's protocol table (a pandas DataFrame indexed by setting: reference, this run, same?, why),
    from its flat parameters ``P`` (with ``P["_main"]``, the classifier chapter's parameters, where a setting
    follows the main model's); None for a chapter without a reference protocol (EDA). "same?" is "yes",
    "no", or "by design" where hamviz keeps its own protocol whatever the profile."""
    import pandas as pd
    if chapter not in PROTOCOLS:
        return None
    source, settings = PROTOCOLS[chapter]
    rows = []
    for s in settings:
        same = "by design" if s.same is None else ("yes" if s.same(P) else "no")
        rows.append({"setting": s.name, "reference": s.reference, "this run": s.this_run(P), "same?": same,
                     "why it differs": "" if same == "yes" else s.why})
    table = pd.DataFrame(rows).set_index("setting")
    table.attrs["source"] = source
    return table
