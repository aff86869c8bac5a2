"""Each chapter's reference protocol beside what this run does: the table at the top of every chapter.

:func:`protocol_table` turns a chapter's flat parameters into rows of setting | reference | this run | same? |
why it differs, so that every difference from a reference work's protocol is stated where its numbers are shown.
Every row's reference cell quotes the reference text it rests on (the plain-text extractions in
``../shared/references``: :data:`TEXTS`), word for word, with the file it is from; where the text does not state
a value the cell says "not stated", and the row names hamviz's choice as hamviz's. ``tests/test_protocol.py``
checks that every quote is in its text.

The reference works: Zhang (five imbalance strategies x a small CNN and three ImageNet backbones on HAM10000);
Doctor (an InceptionV3 transfer classifier at 128x128, K-means palettes, convolutional autoencoders and joint
autoencoder + classifier training, on HAM10000; no JPEG experiment); Barros Everett (an HD-MANN CNN under JPEG at
50-1 % quality, on 2,357 ISIC images of four classes, not HAM10000); Bunu et al. (a benign-vs-malignant ensemble
of VGG19, InceptionV3 and two random-searched CNNs, an optimiser comparison, activation maps; no Grad-CAM).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .registry import BACKBONES

#: the reference texts (file names in ../shared/references), by the short name the rows use
TEXTS = {
    "zhang": "zhang-imbalance-strategies.txt",
    "doctor": "doctor-learned-compression-paper.txt",
    "doctor slides": "doctor-learned-compression-slides.txt",
    "barros everett": "barros-everett-compression-hypervectors.txt",
    "bunu": "bunu-dermoscopy-ensemble.txt",
}
#: "same?" of a row whose reference value the text does not state (the row's "why" names hamviz's choice)
NOT_STATED = "not stated"
#: why hamviz keeps its own split everywhere, whatever the profile
GROUPED = "hamviz's choice for every chapter: one lesion-grouped split (no lesion in two parts); the classifier " \
          "chapter's leak audit measures what an image-level split changes"
CPU = "the cpu / tiny profiles shrink sizes, images and epochs to what two CPU cores afford; run the paper profile " \
      "on a GPU for the reference's settings"
#: why a pretrained backbone does not get the reference's (0, 1) inputs
PREPROCESS = "by default hamviz feeds a pretrained backbone the input scaling its ImageNet weights were trained " \
             "with; input_scaling: unit gives it (0, 1) inputs as the reference did"


@dataclass(frozen=True)
class Setting:
    """One row: ``name``; the ``reference`` value in plain words ("not stated ..." where the text gives none);
    ``quotes``: (text, words) pairs, the words verbatim from ``TEXTS[text]`` (" ... " joins parts left out);
    ``this_run(P)`` -> text; ``same``: ``same(P)`` -> bool, None (hamviz's protocol differs by design) or
    :data:`NOT_STATED`; ``why`` it differs (for a value not stated: hamviz's choice)."""

    name: str
    reference: str
    quotes: tuple[tuple[str, str], ...]
    this_run: Callable[[dict], str]
    same: Callable[[dict], bool] | str | None
    why: str

    def reference_cell(self) -> str:
        quoted = "; ".join(f'"{words}" ({TEXTS[text]})' for text, words in self.quotes)
        return f"{self.reference} — {quoted}" if quoted else self.reference


def _size(P, key="image_size"):
    s = P.get(key) or P["image_size"]
    return f"{s}x{s}"


def _grid(P):
    return P.get("grid") or {}


def _grid_scaling(P, model) -> str:
    """A grid model's input scaling: its own setting, else the main model's."""
    return ((_grid(P).get("settings") or {}).get(model, {})).get("input_scaling", P.get("input_scaling"))


def _grid_settings(P, model):
    g = _grid(P)
    own = (g.get("settings") or {}).get(model, {})
    opt = own.get("optimizer", P["optimizer"])
    lr = own.get("learning_rate", P["learning_rate"])
    epochs = own.get("epochs") or g.get("epochs") or P["epochs"]
    return (f"{opt} {lr:g}, {own.get('schedule', P['schedule'])} schedule, {epochs} epochs, batch "
            f"{own.get('batch_size', P['batch_size'])}, L2 {own.get('l2', P.get('l2') or 0):g}")


def _grid_transfer(P) -> list[str]:
    return [m for m in _grid(P).get("models", []) if m != "small_cnn"]


def _flips(P):
    """The chapter's test-time flips: its own tta_flips, or with null the main model's (``P["_main"]``: the
    classifier chapter's parameters, given by the chapter; None where they are not given)."""
    own = P.get("tta_flips")
    return own if own is not None else (P.get("_main") or {}).get("tta_flips")


def _main(P) -> dict:
    return P.get("_main") or {}


def _main_size(P) -> int:
    return _main(P).get("image_size") or P["image_size"]


def _n(count, word: str) -> str:
    """'1 epoch', '2 epochs'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _split(P):
    kind = "lesion-grouped" if P["split"]["grouped"] else "image-level"
    fractions = P["split"].get("fractions")
    return kind + (", " + "/".join(f"{round(100 * f):g}" for f in fractions) if fractions else "")


def _augment(a) -> str:
    """The augmentation setting in words (True: hamviz's default, None/False: none)."""
    if a is True:
        a = {"rot90": True, "flip": True, "zoom": 0.1, "shift": 0.1}
    if not a:
        return "none"
    parts = (["90-degree rotations"] if a.get("rot90", True) else []) + (["flips"] if a.get("flip", True)
                                                                          else ["no flips"])
    parts += [f"{k} {a.get(k, 0.1):g}" for k in ("zoom", "shift") if a.get(k, 0.1)]
    return ", ".join(parts)


def _aug(a) -> dict:
    return {"rot90": True, "flip": True, "zoom": 0.1, "shift": 0.1} if a is True else dict(a or {})


def _scaling(model: str, input_scaling: str | None = "imagenet") -> str:
    if input_scaling == "unit" or model in ("small_cnn", "configurable_cnn"):
        return "(0, 1)" + (" (input_scaling: unit)" if model not in ("small_cnn", "configurable_cnn") else "")
    if model in BACKBONES:
        return {"tf": "[-1, 1]", "torch": "ImageNet mean/std", "caffe": "BGR minus the ImageNet mean"}[
            BACKBONES[model][1]] + f" ({model}'s ImageNet preprocessing)"
    return "(0, 1)" if model in ("small_cnn", "configurable_cnn") else f"{model}'s own preprocessing"


SPLIT_DOCTOR = Setting(
    "split", "Doctor: 70/20/10; grouping by lesion not stated",
    (("doctor slides", "70/20/10 Train/Validation/Test Split"),), _split, None, GROUPED)

PROTOCOLS: dict[str, tuple[str, list[Setting]]] = {
    "classifier": ("Zhang (strategy table S1-S5); Doctor (the main model of the paper profile; the cpu and tiny "
                   "profiles' main model is hamviz's own recipe)", [
        Setting("split", "Zhang: 7,809 / 1,103 / 1,103 images, grouping by lesion not stated (1,103 is 20 % of the "
                "5,514 single-image lesions); Doctor: 70/20/10, grouping not stated",
                (("zhang", "Since the dataset contains only 7,809 non-duplicated images, we used all these image "
                           "into training set, and separated the rest of the images into validation set (1,103 "
                           "images), and test set (1,103 images)"),
                 ("doctor slides", "70/20/10 Train/Validation/Test Split")), _split, None,
                GROUPED + "; it also scores Zhang's split as hamviz reads it (validation and test drawn from "
                "single-image lesions), a lesion-disjoint split with another test population"),
        Setting("main model", "Doctor: InceptionV3, transfer learning, 128x128 (from which weights: not stated)",
                (("doctor", "The classifier chosen used a transfer-learning approach on Google's Inception V3 "
                            "architecture"), ("doctor", "Input images were resized to 128 x 128")),
                lambda P: f"{P['model']} ({P.get('weights') or 'random init'}) at {_size(P)}",
                lambda P: P["model"] == "inceptionv3" and P.get("weights") == "imagenet" and P["image_size"] == 128,
                "the cpu and tiny profiles' main model is hamviz's own recipe (pretrained EfficientNet-Lite0 in two "
                "stages), chosen for two CPU cores; the paper profile follows Doctor"),
        Setting("main model training", "Doctor: Adam, categorical cross-entropy, L2 on the dense layers, 35 epochs; "
                "learning rate, L2 weight, batch size, schedule and head not stated",
                (("doctor", "The classifier was trained for 35 epochs using the Adam optimizer, categorical "
                            "crossentropy loss, and l2 regularization on the dense layers."),),
                lambda P: f"{P['optimizer']} {P['learning_rate']:g}, {P['schedule']} schedule, {P['epochs']} epochs "
                          f"(early stopping patience {P['patience']}), batch {P['batch_size']}, L2 "
                          f"{P.get('l2') or 0:g}, head {P.get('head')}",
                lambda P: P["optimizer"] == "adam" and (P.get("l2") or 0) > 0 and P["epochs"] == 35
                and P["patience"] >= P["epochs"] and not P.get("head_warmup"),
                "the cpu and tiny profiles use hamviz's own recipe; the paper profile's learning rate, L2 weight, "
                "batch, schedule and head are hamviz's choices"),
        Setting("kept epoch", "Doctor: checkpointing because validation accuracy was unstable (which epoch it "
                "kept is not stated; hamviz reads it as the highest validation accuracy's)",
                (("doctor slides", "Checkpointing due to unstable validation accuracy"),),
                lambda P: "the epoch with the highest validation accuracy" if P.get("select_on") == "val_accuracy"
                else "the epoch with the lowest " + ("class-weighted " if P.get("select_on") == "balanced_val_loss"
                                                     else "") + "validation loss", NOT_STATED,
                "hamviz's choice in the cpu and tiny profiles: the lowest (class-weighted) validation loss "
                "(select_on); the paper profile keeps the highest validation accuracy's"),
        Setting("main model input scaling", "Doctor: 0 to 1",
                (("doctor", "normalized to have values between 0 and 1"),),
                lambda P: _scaling(P["model"], P.get("input_scaling")),
                lambda P: P["model"] == "small_cnn" or P.get("input_scaling") == "unit", PREPROCESS),
        Setting("main model augmentation", "Doctor: 90-degree rotations, flips, zooms, shifts (amounts not stated)",
                (("doctor", "Data augmentation was performed by doing 90 degree rotations, flips, zooms, and "
                            "shifts."),),
                lambda P: _augment(P["augment"]),
                lambda P: all(_aug(P["augment"]).get(k) for k in ("rot90", "flip", "zoom", "shift")),
                "the cpu recipe leaves out zoom and shift (they scored lower on validation); the paper profile's "
                "amounts (0.1) are hamviz's choice"),
        Setting("main model imbalance", "Doctor: none (named as future work)",
                (("doctor slides", "Address unbalanced dataset issue"),),
                lambda P: P["strategy"], lambda P: P["strategy"] == "S1",
                "the cpu recipe uses class weights (S4)"),
        Setting("strategy-table input", "Zhang: 224x224",
                (("zhang", r"We resized the data into $224 \times 224$ pixels"),),
                lambda P: _size({"image_size": _grid(P).get("image_size") or P["image_size"]}),
                lambda P: (_grid(P).get("image_size") or P["image_size"]) == 224, CPU),
        Setting("strategy-table models", "Zhang: small CNN, ResNet50, InceptionV3, DenseNet201, ImageNet weights",
                (("zhang", "transfer learning model like ResNet50, GoogleNet InceptionV3, and DenseNet201"),
                 ("zhang", "all the transfer learning models are pre-trained on the ImageNet")),
                lambda P: ", ".join(_grid(P).get("models", [P["model"]]))
                + (" + frozen-feature head" if _grid(P).get("frozen_head") else ""),
                lambda P: set(_grid(P).get("models", [])) == {"small_cnn", "resnet50", "inceptionv3", "densenet201"},
                "fine-tuning four ImageNet models five times each takes days on two cores"),
        Setting("strategies", "Zhang: S1 none, S2 oversample classes under 1000, S3 oversample to the majority, S4 "
                "class weights, S5 S4 + S2 (S2's target size not stated: hamviz oversamples to 1000)",
                (("zhang", "Adjust with oversampling: only sampling the minority classes with the sizes smaller "
                           "than 1000."),),
                lambda P: ", ".join(_grid(P).get("strategies", ["S1"])),
                lambda P: set(_grid(P).get("strategies", [])) == {"S1", "S2", "S3", "S4", "S5"}, CPU),
        Setting("transfer models' backbone", "Zhang: not stated whether the backbones were frozen or fine-tuned",
                (), lambda P: (f"{P.get('trainable', 'all')} backbone layers train (the main model's setting)"
                               if _grid_transfer(P) else "no transfer model in this run's grid"), NOT_STATED,
                "hamviz's choice: the grid's backbones train as the main model's do (the paper profile: all layers)"),
        Setting("transfer models' head", "Zhang: global average pooling, dense 1024, dropout 0.5, batch "
                "normalisation (Table 3)",
                (("zhang", "We removed the top layer but added a flatten layer, a fully connected layer, a dropout "
                           "layer and batch normalization"),),
                lambda P: (f"{P.get('head')} head: " + ("GAP, Dense 1024 (ReLU), Dropout, BatchNorm"
                                                        if P.get("head") == "reference" else "another head")
                           + f", dense {P.get('dense')}, dropout {P.get('dropout')}") if _grid_transfer(P)
                else "no transfer model in this run's grid",
                lambda P: bool(_grid_transfer(P)) and P.get("head") == "reference" and P.get("dense") == 1024
                and P.get("dropout") == 0.5,
                "no transfer model in this grid, or the main model's head is another one (the grid uses it)"),
        Setting("strategy-table input scaling", "Zhang: (0, 1) for every model",
                (("zhang", "Normalization to (0,1) scale was applied to the data."),),
                lambda P: "; ".join(f"{m} {_scaling(m, _grid_scaling(P, m))}"
                                    for m in _grid(P).get("models", [P["model"]])),
                lambda P: all(_grid_scaling(P, m) == "unit" for m in _grid_transfer(P)), PREPROCESS),
        Setting("strategy-table augmentation", "Zhang: rotations by 90°, zoom 10 %, shifts 10 %; no flips",
                (("zhang", r"randomly rotate some of the training images by $90^\circ$ , randomly zoom in 10% of "
                           "some training images, horizontally shift some training images of the width by 10% and "
                           "vertically shift some training images of the height by 10%"),),
                lambda P: _augment(_grid(P).get("augment") or P["augment"])
                + ("" if _grid(P).get("augment") else " (the main model's)"),
                lambda P: (lambda a: a.get("rot90") and not a.get("flip") and a.get("zoom") == 0.1
                           and a.get("shift") == 0.1)(_aug(_grid(P).get("augment") or P["augment"])),
                "without grid.augment the grid trains with the main model's augmentation (the cpu profile's, with "
                "flips); 'rotate by 90°' is read as random quarter turns"),
        Setting("CNN training", "Zhang: Adam, the learning rate cut every 3 epochs, 50 epochs, batch 16; the "
                "starting rate, the factor, step or plateau, and L2 not stated (hamviz: halved every 3 epochs "
                "from 1e-3, no L2)",
                (("zhang", "The optimizer we chose was the Adam optimizer."),
                 ("zhang", "It was first set with a higher rate and decrease dynamically with every 3 epochs."),
                 ("zhang", "The model was performed with 50 epochs and the 16 batch size.")),
                lambda P: _grid_settings(P, "small_cnn"),
                lambda P: _grid_settings(P, "small_cnn").endswith("50 epochs, batch 16, L2 0")
                and "step" in _grid_settings(P, "small_cnn"), CPU),
        Setting("transfer models' training", "Zhang: RMSprop at a small learning rate, 30 epochs, batch 16; the "
                "rate and L2 not stated (hamviz: 1e-4, no L2)",
                (("zhang", "The optimizer we chose was the RMSprop with a small learning rate to avoid overfitting "
                           "problem."),
                 ("zhang", "The model was performed with 30 epochs and the 16 batch size.")),
                lambda P: _grid_settings(P, "resnet50"),
                lambda P: _grid_settings(P, "resnet50").startswith("rmsprop")
                and _grid_settings(P, "resnet50").endswith("30 epochs, batch 16, L2 0"), CPU),
    ]),
    "compression": ("Doctor (K-means, autoencoders); the JPEG qualities are Barros Everett's", [
        SPLIT_DOCTOR,
        Setting("classifier scored", "Doctor: its InceptionV3 transfer classifier at 128x128",
                (("doctor", "The classifier chosen used a transfer-learning approach on Google's Inception V3 "
                            "architecture"),),
                lambda P: "the classifier chapter's main model" + (
                    f" ({_main(P)['model']} at {_main_size(P)}x{_main_size(P)})" if _main(P).get("model") else ""),
                lambda P: _main(P).get("model") == "inceptionv3" and _main_size(P) == 128,
                "every chapter analyses the book's one main classifier (the paper profile's: InceptionV3 at "
                "128x128)"),
        Setting("JPEG", "none in Doctor's study; the qualities follow Barros Everett (50 to 1 %, on its own CNN "
                "and ISIC data)",
                (("barros everett", "we produce 6 parallel datasets compressed to 50,20,10,5,3 and 1% quality "
                                    "levels"),),
                lambda P: "qualities " + ", ".join(map(str, P["qualities"])) + ", scored by the main model",
                None, "hamviz's addition: JPEG on the same rate-accuracy axis as the other codings"),
        Setting("K-means palettes", "Doctor: judged by eye (K = 16 'high fidelity'), not scored by the classifier",
                (("doctor", "high fidelity image reconstruction with K as low as 16 (4-bit compression). However, "
                            "the K-means approach is not jointly trainable with the classifier"),),
                lambda P: "K = " + ", ".join(map(str, P["kmeans_k"])) + ", scored by the main model", None,
                "hamviz's addition: K-means on the same rate-accuracy axis"),
        Setting("autoencoders", "Doctor: 128x128 input, 32x32xN latent, Adam, MAE, 50 epochs; filters and early "
                "stopping not stated",
                (("doctor", r"The latent space are two convolution layers of with output shape $32 * 32 * n$"),
                 ("doctor", "using Adam optimization and mean absolute error loss"),
                 ("doctor slides", "Train for 50 epochs")),
                lambda P: f"{_main_size(P)}x{_main_size(P)} (the main model's size), "
                          f"{'/'.join(map(str, P['ae_filters']))} filters, Adam, MAE, {P['ae_epochs']} epochs "
                          f"(patience {P['ae_patience']}), {P['ae_train_limit'] or 'all'} training images",
                lambda P: _main_size(P) == 128 and P["ae_epochs"] == 50 and P["ae_patience"] >= P["ae_epochs"]
                and not P["ae_train_limit"],
                CPU + "; the filters (ae_filters) are hamviz's choice"),
        Setting("autoencoder variants", "Doctor: conv-conv-pool levels of the main one not stated (hamviz: two, "
                "128 -> 32); a 3-level one was also tried",
                (("doctor", "The autoencoder architecture uses a conv-conv-pool architecture on the encoder side"),
                 ("doctor", "the autoencoder was extended to include 3 conv-conv-pool layers in the encoder")),
                lambda P: f"{len(P['ae_filters'])}-level", lambda P: False,
                "one variant per run: ae_filters with three entries (e.g. [32, 64, 128]) runs the 3-level one; the "
                "joint chapter trains the compression chapter's autoencoders"),
        Setting("test images", "Doctor: the whole test part",
                (("doctor", "After training, test images were passed through the autoencoder and then the "
                            "classifier trained above."),),
                lambda P: f"{P['test_limit']} class-stratified test images" if P.get("test_limit")
                else "the whole test part", lambda P: not P.get("test_limit"), CPU),
        Setting("views scored", "one per image (no text mentions test-time augmentation)",
                (("doctor", "After training, test images were passed through the autoencoder"),),
                lambda P: {True: "the mean over each image and its two mirror images", False: "one per image",
                           None: "as the main model's own test numbers (classifier.tta_flips)"}[_flips(P)]
                + (" (tta_flips: null, as the main model)" if P.get("tta_flips") is None and _flips(P) is not None
                   else ""),
                lambda P: _flips(P) is False,
                "test-time flips (tta_flips: true, or null with a main model that uses them) triple the model's "
                "predictions for every coding; codings and the uncompressed reference are always scored alike"),
    ]),
    "joint": ("Doctor (joint autoencoder + classifier training)", [
        SPLIT_DOCTOR,
        Setting("training", "Doctor: the classifier's settings (Adam, 35 epochs); the learning rate not stated",
                (("doctor", "the entire pipeline was jointly trained using the same training parameters as with "
                            "the original classifier training"), ("doctor slides", "Trained for 35 Epochs")),
                lambda P: f"{P['epochs']} epochs (patience {P['patience']}), learning rate {P['learning_rate']:g}, "
                          f"{P['train_limit'] or 'all'} training images, the classifier's imbalance strategy",
                lambda P: P["epochs"] == 35 and P["patience"] >= P["epochs"] and not P["train_limit"],
                CPU + "; the learning rate is hamviz's choice"),
        Setting("kept epoch", "Doctor: a checkpoint (which epoch: not stated)",
                (("doctor slides", "Checkpointing due to unstable validation accuracy"),),
                lambda P: "the epoch with the lowest validation loss", NOT_STATED,
                "hamviz's choice: it always restores the epoch with the lowest validation loss; keeping the best "
                "validation accuracy instead has no option yet"),
        Setting("starting point", "not stated",
                (("doctor", "each of the three autoencoder was stacked on top of the classifier architecture"),),
                lambda P: {"pretrained": "the saved autoencoders and main model",
                           "scratch": "random weights"}[P["init"]], NOT_STATED, "hamviz's choice (init)"),
        Setting("loss", "Doctor: the classifier's (categorical cross-entropy); no reconstruction loss is mentioned",
                (("doctor", "The classifier was trained for 35 epochs using the Adam optimizer, categorical "
                            "crossentropy loss"),),
                lambda P: "categorical cross-entropy" + (f" + {P['recon_weight']:g} x MAE reconstruction"
                                                         if P["recon_weight"] else ""),
                lambda P: not P["recon_weight"], "recon_weight adds a reconstruction loss (hamviz's option)"),
    ]),
    "hypervector": ("Barros Everett (HD-MANN under JPEG, on 2,357 ISIC images)", [
        Setting("split", "Barros Everett: 80/20 train/validation, no test part; grouping not stated",
                (("barros everett", "A train/validation split of 80/20 was used."),), _split, None,
                GROUPED + "; the chapter scores a held-out test part"),
        Setting("data", "Barros Everett: 2,357 ISIC images of 10 conditions, the 4 most common (not HAM10000)",
                (("barros everett", "composed of 2357, 180x180 RGB images of 10 skin diseases and conditions"),
                 ("barros everett", "only the top 4 most common classes were used")),
                lambda P: "HAM10000: " + ", ".join(P["classes"] or ["all seven classes"]), None,
                "the book is about HAM10000; its mel, nv, bcc and bkl are the reference's four classes"),
        Setting("input", "Barros Everett: 180x180",
                (("barros everett", "180x180 RGB images"),), lambda P: _size(P),
                lambda P: P["image_size"] == 180, CPU),
        Setting("HD CNN", "Table I: 3x3 'same' convolutions (180-180-90-90-45), Dropout (rate not stated), "
                "Dense(1000), Dense(500)",
                (("barros everett", "Dense (None, 1,000) 259,201,000 Dense (None, 500) 500,500"),),
                lambda P: "'same' convolutions ({0}-{0}-{1}-{1}-{2}), Dropout {3:g}, Dense({4})".format(
                    P["image_size"], P["image_size"] // 2, P["image_size"] // 4, P["dropout"], P["dense"]),
                lambda P: P["dense"] == 1000 and P["image_size"] == 180, CPU + "; the dropout rate is hamviz's"),
        Setting("keys", "Barros Everett: d = 500 (Table I), random binary keys",
                (("barros everett", "To assign a key to a class label, a random vector is sampled from a discrete "
                                    "uniform distribution"),),
                lambda P: f"d = {P['dim']}, {P['template']} keys",
                lambda P: P["dim"] == 500 and P["template"] == "binary", CPU),
        Setting("training set", "Barros Everett: 600 of each class, augmented up from about 400 originals",
                (("barros everett", "Probabilistic rotations, zooming and flips were applied to obtain 600 "
                                    "samples per class from the original 400."),),
                lambda P: ((f"at most {P['originals_per_class']} originals of each class, " if
                            P.get("originals_per_class") else "")
                           + f"{P['per_class']} of each class: a class with more training images subsampled, one "
                           "with fewer repeats its images (the chapter prints which); every batch augmented")
                if P["per_class"] else "the training part as it is",
                lambda P: P["per_class"] == 600 and P.get("originals_per_class") == 400,
                "without originals_per_class hamviz subsamples or repeats the training part to per_class (HAM10000's "
                "classes are far from 400 each: nv has thousands)"),
        Setting("augmentation", "Barros Everett: rotations, zooming, flips (angles and amounts not stated)",
                (("barros everett", "Probabilistic rotations, zooming and flips"),),
                lambda P: _augment(P["augment"]),
                lambda P: (lambda a: bool(a.get("flip") and a.get("zoom") and a.get("rot90"))
                           and not a.get("shift"))(_aug(P["augment"])),
                "hamviz's default adds shifts; quarter turns and zoom 0.1 are hamviz's reading"),
        Setting("epochs", "Barros Everett: 200 with early stopping (90 run); patience not stated",
                (("barros everett", "The model was trained on the full-quality image set for 200 epochs with early "
                                    "stopping, resulting in 90 effective epochs."),),
                lambda P: f"at most {P['epochs']}, stopping after {P['patience']} without a better validation loss",
                lambda P: P["epochs"] >= 200, CPU + "; the patience is hamviz's choice"),
        Setting("optimiser and loss", "Barros Everett: AdamW, MSE; learning rate, weight decay and batch not stated",
                (("barros everett", "The CNN was trained using AdamW [7] as the optimizer and Mean Squared Error "
                                    "(MSE) as the loss function."),),
                lambda P: f"{P['optimizer']} {P['learning_rate']:g}, batch {P['batch_size']}; losses "
                          + ", ".join(P["losses"]) + (" (cosine: hamviz's addition)" if "cosine" in P["losses"]
                                                       else ""),
                lambda P: P["optimizer"] == "adamw" and "mse" in P["losses"],
                "the profile chose another optimiser or left out the MSE loss"),
        Setting("nearest key", "Barros Everett: the closest key; the distance not stated",
                (("barros everett", "searching the EM for the closest known vector"),),
                lambda P: "cosine about the memory's centre, and Hamming on binarised outputs", NOT_STATED,
                "hamviz's choice: the centred cosine ranks keys as the Euclidean distance does"),
        Setting("pretrained HD head", "none: Table I's CNN only",
                (("barros everett", "The architecture of the HD-MANN is that of a standard CNN, with a hypervector "
                                    "output layer"),),
                lambda P: "yes" if P.get("pretrained_head") else "no", None,
                "hamviz's addition: the same HD classifier on frozen ImageNet features"),
    ]),
    "explain": ("Bunu et al. (ensemble, random search)", [
        Setting("split", "Bunu: not stated (1,002 test images)",
                (("bunu", "From our splitting of the database, we obtained 1002 test batches"),), _split, None,
                GROUPED),
        Setting("malignant classes", "Bunu: melanoma and BCC named; the rest not stated (its 2,000 malignant fit "
                "mel + bcc + akiec, 1,954, better than mel + bcc, 1,627)",
                (("bunu", "Our dataset includes two types of skin cancers: Melanoma and Basal cell carcinoma"),
                 ("bunu", "8,000 were of benign lesions and only the remaining 2000 of malignant")),
                lambda P: ", ".join(P["malignant"]), NOT_STATED, "hamviz's reading (chapters.explain.malignant)"),
        Setting("input", "Bunu: 224x224",
                (("bunu", "we resize it to 224 pixels"),),
                lambda P: _size(P) + (" (members trained here; the main model at its own size)" if P["main_member"]
                                      else "") + "".join(f"; {m['model']} at {m['image_size']}x{m['image_size']}"
                                                         for m in P["transfer_members"] if m.get("image_size")),
                lambda P: P["image_size"] == 224 and not P["main_member"]
                and all(m.get("image_size") in (None, 224) for m in P["transfer_members"]), CPU),
        Setting("input scaling", "Bunu: pixels divided by 255",
                (("bunu", "we normalize it by dividing every pixel of every image with 255"),),
                lambda P: "CNNs (0, 1)" + "".join(f"; {m['model']} {_scaling(m['model'], m.get('input_scaling'))}"
                                                  for m in P["transfer_members"]),
                lambda P: all(m.get("input_scaling") == "unit" for m in P["transfer_members"]), PREPROCESS),
        Setting("training images", "Bunu: the whole data set (no subset is mentioned)",
                (("bunu", "Out of the 10,000 pictures, 8,000 were of benign lesions"),),
                lambda P: f"{P['train_limit']:,} class-stratified training images" if P["train_limit"]
                else "the whole training part", lambda P: not P["train_limit"], CPU),
        Setting("augmentation", "Bunu: flips, 180° rotations, scaling, cropping, translation",
                (("bunu", "Flipping the image (both vertically and horizontally) - Rotating the image 180 degrees - "
                          "Scaling - Cropping - Translating the image"),),
                lambda P: _augment(P["augment"]),
                lambda P: (lambda a: a.get("flip") and not a.get("rot90") and a.get("zoom") and a.get("shift"))(
                    _aug(P["augment"])),
                "hamviz reads Bunu's set as flips in both directions (together a 180° rotation), zoom for scaling "
                "and cropping, shift for translation (the amounts are not stated); the cpu profile keeps hamviz's "
                "default with quarter turns"),
        Setting("balancing", "Bunu: the malignant class augmented",
                (("bunu", "we decided to augment the `malign` class in order to balance it"),),
                lambda P: {"class_weights": "class weights",
                           "oversample": "malignant images repeated to the benign count, each repeat augmented"}[
                    P["balancing"]],
                lambda P: P["balancing"] == "oversample",
                "class weights need no extra images and one epoch stays one pass over the data"),
        Setting("search", "Bunu: the searched settings; trials, epochs and value lists not stated",
                (("bunu", "The parameters we tried to search for are: dropout rate, number of hidden layers (conv "
                          "and FC), number of filters in the hidden layers, size of the kernel and the padding, type "
                          "of pooling (avg or max), weight initialization and finally, the optimizer."),),
                lambda P: f"{_n(P['search_trials'], 'trial')} of {_n(P['search_epochs'], 'epoch')} over "
                          + ("the profile's search_space" if P.get("search_space") else "hamviz's default space"),
                NOT_STATED, "hamviz's choice: search_trials, search_epochs, search_space"),
        Setting("searched CNNs", "Bunu: the two kept ones have dropout after the dense layer only",
                (("bunu", "3 Conv layers with relu activation of 32 filters and kernel size of 3, after each an "
                          "MaxPool layer of pool size 3, then 1 dense layer of 64 units with dropout of rate 0.5 and "
                          "an output layer, compiled with Adam optimizer."),
                 ("bunu", "with uniform distribution weight initialization and RMSProp optimizer")),
                lambda P: (f"built as stated: {', '.join(m['name'] for m in P.get('cnn_members') or [])}"
                           if P.get("cnn_members") else "only what the random search finds")
                + ("; the search may drop the blocks' dropout" if False in ((P.get("search_space") or {})
                                                                          .get("block_dropout") or []) else ""),
                lambda P: len(_bunu_cnns(P)) == 2,
                "the cpu profile has no time for them; the search space holds them where block_dropout can be "
                "false"),
        Setting("training length", "Bunu: not stated for VGG19 and the searched CNNs (InceptionV3: its own row)",
                (), lambda P: f"{_n(P['search_trials'], 'search trial')} of {_n(P['search_epochs'], 'epoch')}, "
                              f"members {_n(P['member_epochs'], 'epoch')}", NOT_STATED,
                "hamviz's choice: search_trials, search_epochs, member_epochs"),
        Setting("members", "Bunu: the 2 best searched CNNs, VGG19, InceptionV3",
                (("bunu", "We settled on creating an ensemble of networks, out of which 2 use transfer learning and "
                          "the other are 2 of our best models built from scratch."),),
                lambda P: ", ".join(([("main model")] if P["main_member"] else [])
                                    + (["reference CNN"] if P["reference_member"] else [])
                                    + ([f"{P['search_members']} best search "
                                        f"CNN{'' if P['search_members'] == 1 else 's'}"]
                                       if P["search_members"] else [])
                                    + [m["name"] for m in P.get("cnn_members") or []]
                                    + [m["model"] for m in P["transfer_members"]]
                                    + (["weak CNN"] if P["weak_member"] else [])),
                lambda P: (not P["main_member"] and not P["reference_member"] and not P["weak_member"]
                           and P["search_members"] + len(_bunu_cnns(P)) == 2
                           and sorted(m["model"] for m in P["transfer_members"]) == ["inceptionv3", "vgg19"]),
                "the cpu profile adds the main model, Zhang's small CNN and a weak member to show their effect, and "
                "has no time for VGG19 and InceptionV3"),
        Setting("final ensemble", "Bunu: the top 3 of the 4 (which one was removed: not stated)",
                (("bunu", "After removing the first model, our final result improved"),
                 ("bunu", "Figure 6: Ensemble method with the top 3 models")),
                lambda P: "every member; the chapter adds them one at a time to the mean, best validation AUC first",
                lambda P: False, "the text does not say which model was removed"),
        Setting("combiners", "Bunu: vote, mean probability, accuracy-weighted mean (final; accuracy on which "
                "part not stated)",
                (("bunu", "we calculated their weighted average, using as weights the accuracy percentage from each "
                          "model"),),
                lambda P: "vote, mean, accuracy-weighted (validation accuracy), stacking (hamviz's addition)",
                lambda P: True, ""),
        Setting("optimiser", "Bunu: InceptionV3 Nadam, clipped at 1.0, L2; the searched CNNs Adam and RMSProp; "
                "VGG19 not stated",
                (("bunu", "clipping the gradients (if the gradients ever surpassed the value of 1.0) and adding "
                          "weights regularization"),
                 ("bunu", "we decided to continue with Nadam")),
                lambda P: "; ".join([f"{m['model']} {m.get('optimizer', P['optimizer'])}, clipnorm "
                                     f"{m.get('clipnorm', P['clipnorm'])}" for m in P["transfer_members"]]
                                    + [f"each searched CNN its searched optimiser, clipnorm {P['clipnorm']}"]),
                lambda P: any(m["model"] == "inceptionv3" and m.get("optimizer", P["optimizer"]) == "nadam"
                              and m.get("clipnorm", P["clipnorm"]) == 1.0 for m in P["transfer_members"])
                and not P["clipnorm"],
                "the chapter's optimiser and clipping apply to members that name none (VGG19's is not stated: "
                "hamviz's choice); 'surpassed the value of 1.0' is read as clipping by norm"),
        Setting("InceptionV3 training", "Bunu: 15 epochs frozen, then the last 150 layers for 10",
                (("bunu", "We trained the model for 15 epochs using Nadam"),
                 ("bunu", "we decided to experimentally unfreeze the last 150 layers of the model"),
                 ("bunu", "with 10 extra training epochs")),
                lambda P: _two_stage(_member(P, "inceptionv3")),
                lambda P: _two_stage(_member(P, "inceptionv3")).startswith("15 epochs of the head alone")
                          and _two_stage(_member(P, "inceptionv3")).endswith("the last 150 layers for 10"),
                "no InceptionV3 member in this profile, or other stages; hamviz's first stage trains the head on "
                "cached frozen features (no augmentation in that stage)"),
        Setting("InceptionV3 head", "Bunu: Dense layers with Dropout (how many, how wide: not stated)",
                (("bunu", "we then added some Dense layers paired with Dropout on top"),),
                lambda P: _inception_head(_member(P, "inceptionv3")),
                lambda P: (_member(P, "inceptionv3") or {}).get("head", "reference") == "reference",
                "no InceptionV3 member, or the simple head (no hidden Dense layer); the reference head's one Dense "
                "layer (1024 units), its dropout and its BatchNorm are hamviz's reading of 'some Dense layers'"),
        Setting("VGG19 top", "Bunu: its own fully connected top, last layer replaced by a binary one",
                (("bunu", "to which we changed the last FC layer so it outputs a binary result, and then trained the "
                          "entire network on our dataset"),),
                lambda P: _vgg19_top(_member(P, "vgg19")),
                lambda P: (_member(P, "vgg19") or {}).get("head") == "own_top",
                "no VGG19 member in this profile, or another head (head: own_top keeps VGG19's own)"),
        Setting("optimiser comparison", "Bunu: InceptionV3 with SGD, Adam, Adamax, Nadam, 10 epochs each",
                (("bunu", "We trained the inception model 10 epochs using each"),),
                lambda P: ("Zhang's small CNN (binary)" if P.get("optimizer_model", "small_cnn") == "small_cnn"
                           else P["optimizer_model"]) + f" with {', '.join(P['optimizers'])}, "
                          f"{_n(P['optimizer_epochs'], 'epoch')} each",
                lambda P: P.get("optimizer_model") == "inceptionv3" and P["optimizer_epochs"] == 10
                and sorted(P["optimizers"]) == ["adam", "adamax", "nadam", "sgd"],
                "the cpu profile compares on the small CNN (minutes, not hours per optimiser)"),
        Setting("activation maps", "Bunu: one image's activation maps at layers 1 to 299 (which model: not stated)",
                (("bunu", "Figure 17: Activations for the 299th layer"),),
                lambda P: "the main model's activation maps; Grad-CAM (hamviz's addition)", None,
                "hamviz's choice: the main model, which every chapter analyses"),
    ]),
}


def _member(P: dict, model: str) -> dict | None:
    return next((m for m in P.get("transfer_members", []) if m["model"] == model), None)


def _bunu_cnns(P) -> list:
    """The ``cnn_members`` that are Bunu et al.'s two kept CNNs as stated (blocks, filters, kernel, pooling,
    dense layer, dropout after it only, optimiser)."""
    stated = [(3, 32, 0.5, "adam"), (2, 16, 0.3, "rmsprop")]
    return [m for m in P.get("cnn_members") or [] if (m.get("conv_blocks"), m.get("filters"), m.get("dropout"),
            m.get("optimizer")) in stated and m.get("kernel") == 3 and m.get("pool_size") == 3
            and m.get("convs_per_block") == 1 and m.get("dense_units") == 64 and m.get("dense_layers") == 1
            and m.get("block_dropout") is False and m.get("filter_growth") == "constant"
            and m.get("pooling", "max") == "max"]


def _vgg19_top(m: dict | None) -> str:
    if m is None:
        return "no VGG19 member"
    head = m.get("head", "reference")
    return ("its own fully connected top, last layer replaced" if head == "own_top"
            else f"hamviz's '{head}' head on pooled features")


def _inception_head(m: dict | None) -> str:
    if m is None:
        return "no InceptionV3 member"
    head = m.get("head", "reference")
    return {"simple": "GAP, Dropout, Dense (hamviz's simple head)",
            "reference": "GAP, Dense, Dropout, BatchNorm, Dense (hamviz's reference head)"}.get(
        head, f"hamviz's '{head}' head")


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
    follows the main model's); None for a chapter without a reference protocol (EDA). "reference" holds the value
    and the quoted words with their file; "same?" is "yes", "no", "by design" where hamviz keeps its own protocol
    whatever the profile, or "not stated" where the text gives no value (then "why" names hamviz's choice)."""
    import pandas as pd
    if chapter not in PROTOCOLS:
        return None
    source, settings = PROTOCOLS[chapter]
    rows = []
    for s in settings:
        if isinstance(s.same, str):
            same = s.same
        else:
            same = "by design" if s.same is None else ("yes" if s.same(P) else "no")
        rows.append({"setting": s.name, "reference": s.reference_cell(), "this run": s.this_run(P), "same?": same,
                     "why it differs": "" if same == "yes" else s.why})
    table = pd.DataFrame(rows).set_index("setting")
    table.attrs["source"] = source
    return table
