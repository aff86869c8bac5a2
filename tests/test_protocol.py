"""hamviz.protocol: every chapter's reference protocol beside this run, with each difference explained, and every
reference value quoted from its text (or said not to be stated)."""
import re

import pytest
from conftest import REPO

from hamviz.params import chapter_params, load_profile
from hamviz.protocol import NOT_STATED, PROTOCOLS, TEXTS, protocol_table

#: the reference texts: ../shared/references beside the repository (not part of the data set)
REFERENCES = REPO.parent / "shared" / "references"

CHAPTERS = ("classifier", "compression", "joint", "hypervector", "explain")


@pytest.mark.parametrize("profile", ["tiny", "cpu", "paper"])
def test_every_difference_is_explained(profile):
    full = load_profile(profile)
    assert protocol_table("eda", chapter_params(full, "eda")) is None  # no reference protocol to compare with
    for chapter in CHAPTERS:
        t = protocol_table(chapter, chapter_params(full, chapter))
        assert list(t.columns) == ["reference", "this run", "same?", "why it differs"]
        assert t.attrs["source"] == PROTOCOLS[chapter][0] and t.loc["split", "same?"] == "by design"
        assert set(t["same?"]) <= {"yes", "no", "by design", NOT_STATED}
        differs = t[t["same?"] != "yes"]
        assert (differs["why it differs"].str.len() > 10).all(), differs
        assert (t.loc[t["same?"] == "yes", "why it differs"] == "").all()
        # a value the text does not state: the row names hamviz's choice as hamviz's
        assert t.loc[t["same?"] == NOT_STATED, "why it differs"].str.startswith("hamviz's").all(), t


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_every_row_quotes_its_text_or_says_not_stated():
    """Every row's reference rests on the words of its text (verbatim, whitespace normalised, case kept; " ... "
    joins parts in order), shown in the reference cell with the file's name, or says "not stated"."""
    for chapter, (_, settings) in PROTOCOLS.items():
        assert len({s.name for s in settings}) == len(settings), chapter  # one row per setting
        for s in settings:
            assert s.quotes or "not stated" in s.reference, (chapter, s.name)
            cell = s.reference_cell()
            for text, words in s.quotes:
                assert text in TEXTS and words in cell and TEXTS[text] in cell, (chapter, s.name, text)


@pytest.mark.skipif(not REFERENCES.is_dir(), reason=f"no reference texts at {REFERENCES}")
def test_every_quote_is_in_its_reference_text():
    texts = {key: _normalised((REFERENCES / name).read_text(encoding="utf-8")) for key, name in TEXTS.items()}
    missing = []
    for chapter, (_, settings) in PROTOCOLS.items():
        for s in settings:
            for text, words in s.quotes:
                at = 0
                for part in _normalised(words).split(" ... "):
                    found = texts[text].find(part, at)
                    if found < 0:
                        missing.append((chapter, s.name, TEXTS[text], part))
                        break
                    at = found + len(part)
    assert not missing, missing


def test_the_table_follows_the_profile():
    """The paper profile follows the hypervector and strategy-table protocols where hamviz can; shrinking a setting
    shows up as a difference, the cpu profile's reductions are all stated."""
    paper = load_profile("paper")
    hd = protocol_table("hypervector", chapter_params(paper, "hypervector"))
    # the reference augmented about 400 originals per class up to 600: so does the paper profile
    assert hd[~hd["same?"].isin(["yes", "by design"])]["same?"].to_dict() == {"nearest key": NOT_STATED}
    assert hd.loc["training set", "this run"].startswith("at most 400 originals of each class, 600 of each class")
    small = protocol_table("hypervector", chapter_params(load_profile("paper", {"chapters": {"hypervector": {
        "image_size": 64, "per_class": None}}}), "hypervector"))
    assert small.loc["input", ["this run", "same?"]].tolist() == ["64x64", "no"]
    assert small.loc["training set", ["this run", "same?"]].tolist() == ["the training part as it is", "no"]
    grid = protocol_table("classifier", chapter_params(paper, "classifier"))
    # what the paper profile cannot express yet, and what the texts leave open
    assert grid[grid["same?"] != "yes"]["same?"].to_dict() == {
        "split": "by design", "kept epoch": NOT_STATED, "transfer models' backbone": NOT_STATED}, grid
    assert grid.loc["strategy-table augmentation", "this run"] == "90-degree rotations, no flips, zoom 0.1, shift 0.1"
    assert grid.loc["main model input scaling", "this run"] == "(0, 1) (input_scaling: unit)"
    assert grid.loc["kept epoch", "this run"] == "the epoch with the highest validation accuracy"
    imagenet = protocol_table("classifier", chapter_params(load_profile("paper", {"chapters": {"classifier": {
        "input_scaling": "imagenet"}}}), "classifier"))
    assert imagenet.loc["main model input scaling", "same?"] == "no"  # InceptionV3's own [-1, 1]
    assert grid.loc["transfer models' training", "this run"].startswith("rmsprop 0.0001")
    cpu = protocol_table("explain", chapter_params(load_profile("cpu"), "explain"))
    assert cpu.loc["members", "this run"] == "main model, reference CNN, 2 best search CNNs, weak CNN"
    # the sizes and amounts a cpu run shrinks, each a row: images, training length, the main model's own size
    assert cpu.loc["training images", ["this run", "same?"]].tolist() == [
        "2,000 class-stratified training images", "no"]
    assert cpu.loc["training length", "this run"] == "4 search trials of 2 epochs, members 4 epochs"
    assert cpu.loc["input", "this run"] == "64x64 (members trained here; the main model at its own size)"
    hd = protocol_table("hypervector", chapter_params(load_profile("cpu"), "hypervector"))
    assert hd.loc["HD CNN", ["this run", "same?"]].tolist() == [
        "'same' convolutions (32-32-16-16-8), Dropout 0.5, Dense(1000)", "no"]
    assert hd.loc["epochs", "same?"] == "no" and hd.loc["epochs", "this run"].startswith("at most 10, stopping after 3")
    assert protocol_table("explain", chapter_params(paper, "explain")).loc["members", "same?"] == "yes"
    # the compression chapter scores the main model: the paper profile's is Doctor's InceptionV3 at 128x128
    scored = protocol_table("compression", {**chapter_params(paper, "compression"),
                                            "_main": chapter_params(paper, "classifier")}).loc["classifier scored"]
    assert scored.tolist()[1:3] == ["the classifier chapter's main model (inceptionv3 at 128x128)", "yes"]


def test_explain_follows_the_ensemble_protocol_where_hamviz_can():
    """The paper ensemble trains at 224x224 with InceptionV3 in two stages; one stage, or another size, shows up."""
    paper = load_profile("paper")
    t = protocol_table("explain", chapter_params(paper, "explain"))
    assert t.loc[["input", "InceptionV3 training", "optimiser", "searched CNNs", "members", "augmentation"],
                 "same?"].tolist() == ["yes"] * 6  # Bunu's two kept CNNs built as stated, beside VGG19 and InceptionV3
    assert t.loc["augmentation", "this run"] == "flips, zoom 0.1, shift 0.1"  # both flips: the 180° rotation
    assert t.loc["optimiser", "this run"].startswith("vgg19 adam, clipnorm None; inceptionv3 nadam, clipnorm 1.0")
    assert t.loc["InceptionV3 training", "this run"] == ("15 epochs of the head alone (on cached frozen features), "
                                                         "then the last 150 layers for 10")
    one = load_profile("paper", {"chapters": {"explain": {"image_size": 128, "transfer_members": [
        {"model": "inceptionv3", "weights": "imagenet", "trainable": 150, "epochs": 25}]}}})
    t = protocol_table("explain", chapter_params(one, "explain"))
    assert t.loc["InceptionV3 training", ["this run", "same?"]].tolist() == [
        "one stage: the last 150 layers for 25 epochs", "no"]
    assert t.loc["input", ["this run", "same?"]].tolist() == ["128x128", "no"]


def test_views_scored_with_null_follows_the_main_model():
    """compression.tta_flips: null scores as the main model does: the chapter gives the classifier chapter's
    parameters as P["_main"]; the row says what that means and compares it with the reference's one view."""
    P = chapter_params(load_profile("tiny"), "compression")
    assert P["tta_flips"] is None
    row = lambda main: protocol_table("compression", {**P, **main}).loc["views scored", ["this run", "same?"]].tolist()
    assert row({"_main": {"tta_flips": False}}) == ["one per image (tta_flips: null, as the main model)", "yes"]
    assert row({"_main": {"tta_flips": True}}) == [
        "the mean over each image and its two mirror images (tta_flips: null, as the main model)", "no"]
    assert row({}) == ["as the main model's own test numbers (classifier.tta_flips)", "no"]  # main model unknown
    assert row({"tta_flips": False, "_main": {"tta_flips": True}}) == ["one per image", "yes"]  # its own setting
