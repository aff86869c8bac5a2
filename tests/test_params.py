"""hamviz.params: profiles, inheritance and validation errors that name the key and the fix."""
import pytest
import yaml

from hamviz import ParamsError
from hamviz.params import chapter_params, load_profile

PROFILES = ("tiny", "cpu", "paper")


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profiles_are_valid(name):
    p = load_profile(name)
    assert p["profile"] == name
    eda = chapter_params(p, "eda")
    assert eda["samples_per_class"] >= 1 and eda["image_size"] >= 16


def test_profile_sizes_grow():
    sizes = [load_profile(n)["image_size"] for n in PROFILES]
    assert sizes == sorted(sizes) and sizes[-1] == 128  # paper: the reference 128x128


# (override, the words the message must contain)
BAD = [
    ({"imgae_size": 64}, "unknown key 'imgae_size' (did you mean 'image_size'?)"),
    ({"image_size": "big"}, "image_size: 'big' is not of type integer"),
    ({"image_size": 4}, "image_size: 4 is less than the minimum of 16"),
    ({"seed": -1}, "seed: -1 is less than the minimum"),
    ({"resize": "squash"}, "resize: 'squash' is not one of"),
    ({"split": {"fractions": [0.5, 0.5, 0.5]}}, "split.fractions: split fractions must be"),
    ({"split": {"fraction": [0.7, 0.2, 0.1]}}, "unknown key 'split.fraction' (did you mean 'fractions'?)"),
    ({"chapters": {"eda": {"samples_per_clas": 3}}}, "did you mean 'samples_per_class'?"),
    ({"chapters": {"eda": {"contrast_ring": 0.9}}}, "contrast_ring: 0.9 is greater than the maximum"),
    ({"chapters": {"edaa": {}}}, "unknown key 'chapters.edaa' (did you mean 'eda'?)"),
    # a type error says how to write the value in YAML, for every type (here a quoted boolean and a quoted number)
    ({"chapters": {"compression": {"tta_flips": "false"}}},
     "chapters.compression.tta_flips: 'false' is not of type ['boolean', 'null']: write true or false (unquoted; not "
     "yes/no/on/off) or null"),
    ({"image_size": "64"}, "image_size: '64' is not of type integer: write a whole number (unquoted)"),
]


@pytest.mark.parametrize("override,words", BAD)
def test_bad_values_are_named(override, words):
    with pytest.raises(ParamsError) as err:
        load_profile("cpu", override)
    assert words in str(err.value)


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "OFF", "y"])
def test_yaml_11_booleans_in_a_file_are_an_error_not_a_silent_boolean(tmp_path, word):
    """YAML 1.1 (PyYAML's default) reads yes/no/on/off as true/false without a word; profiles read YAML 1.2's
    booleans only, so `tta_flips: on` is a type error that says how to write it, and a string stays a string."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"extends: tiny\nchapters:\n  compression:\n    tta_flips: {word}\n")
    with pytest.raises(ParamsError, match=rf"tta_flips: '{word}' is not of type .*write true or false \(unquoted; "
                                          r"not yes/no/on/off\)"):
        load_profile(mine)
    mine.write_text("extends: tiny\nchapters:\n  compression:\n    tta_flips: False\n")  # YAML 1.2's spellings
    assert chapter_params(load_profile(mine), "compression")["tta_flips"] is False


def test_typo_in_a_file_and_unknown_profile(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text(yaml.safe_dump({"extends": "tiny", "sed": 3}))
    with pytest.raises(ParamsError, match=r"(?s)mine.yaml.*unknown key 'sed' \(did you mean 'seed'\?\)"):
        load_profile(bad)
    with pytest.raises(ParamsError, match="No parameter profile 'cpuu' \\(did you mean 'cpu'\\?\\)"):
        load_profile("cpuu")


def test_extends_and_loop(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"extends": "cpu", "seed": 7, "chapters": {"eda": {"sample_size": 64}}}))
    p = load_profile(mine)
    assert p["seed"] == 7 and p["image_size"] == 64 and p["profile"] == "mine"
    assert chapter_params(p, "eda")["samples_per_class"] == 6  # inherited
    (tmp_path / "a.yaml").write_text("extends: " + str(tmp_path / "b.yaml"))
    (tmp_path / "b.yaml").write_text("extends: " + str(tmp_path / "a.yaml"))
    with pytest.raises(ParamsError, match="loop"):
        load_profile(tmp_path / "a.yaml")


def test_not_yaml(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("seed: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_profile(f)


def test_hypervector_pretrained_head(tmp_path):
    """The hypervector chapter's second row: set in cpu (inherited by tiny at 64 and paper at 224), null skips it,
    and a bad value is named with the key."""
    heads = {n: chapter_params(load_profile(n), "hypervector")["pretrained_head"] for n in PROFILES}
    assert heads == {"tiny": {"model": "efficientnet_lite0", "weights": "imagenet", "image_size": 64},
                     "cpu": {"model": "efficientnet_lite0", "weights": "imagenet", "image_size": 128},
                     "paper": {"model": "efficientnet_lite0", "weights": "imagenet", "image_size": 224}}
    off = load_profile("tiny", {"chapters": {"hypervector": {"pretrained_head": None}}})
    assert chapter_params(off, "hypervector")["pretrained_head"] is None
    where = "chapters.hypervector.pretrained_head"
    for head, words in [({"model": "small_cnn"}, f"{where}.model: 'small_cnn' is not one of"),
                        ({"weights": None}, f"{where}.weights: None is not of type string"),
                        ({"image_size": 20}, f"{where}: efficientnet_lite0 needs inputs of at least 32x32"),
                        ({"image_sise": 64}, f"unknown key '{where}.image_sise' (did you mean 'image_size'?)"),
                        (True, f"{where}: True is not of type ['object', 'null']")]:
        with pytest.raises(ParamsError) as err:
            load_profile("tiny", {"chapters": {"hypervector": {"pretrained_head": head}}})
        assert words in str(err.value), (head, str(err.value))
    # on a profile that turned the row off, an override that names only a size is told what is missing
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"extends": "tiny", "chapters": {"hypervector": {"pretrained_head": None}}}))
    assert chapter_params(load_profile(mine), "hypervector")["pretrained_head"] is None
    with pytest.raises(ParamsError, match=f"{where}: 'model' is a required property"):
        load_profile(mine, {"chapters": {"hypervector": {"pretrained_head": {"image_size": 64}}}})


def test_optimizer_model_names_a_transfer_member():
    """Bunu et al. compared optimisers on InceptionV3: optimizer_model names a transfer member's model (or
    small_cnn); any other name stops the profile, naming the members there are."""
    paper = chapter_params(load_profile("paper", check_weights=False), "explain")
    assert paper["optimizer_model"] == "inceptionv3" and chapter_params(load_profile(
        "cpu", check_weights=False), "explain")["optimizer_model"] == "small_cnn"
    with pytest.raises(ParamsError, match=r"optimizer_model: 'resnet50' is neither small_cnn nor .*vgg19, inceptionv3"):
        load_profile("paper", {"chapters": {"explain": {"optimizer_model": "resnet50"}}}, check_weights=False)


def test_training_keys_are_defined_once_in_train_config():
    """The classifier section's training keys are TrainConfig's fields (type, bounds, allowed values, default,
    description): a key written again in the schema, or a default that drifts, fails here."""
    import dataclasses

    from hamviz.fields import schema_entries
    from hamviz.params import CHAPTER_SCHEMAS, TRAIN_KEYS
    from hamviz.training import TrainConfig
    section = CHAPTER_SCHEMAS["classifier"]["properties"]
    for key, entry in schema_entries(TrainConfig, list(TRAIN_KEYS)).items():
        profile_only = {"maximum": 1} if key == "learning_rate" else {}  # a profile also caps the learning rate
        assert section[key] == {**entry, **profile_only}, key
    # every classifier key that names a TrainConfig field is one of them (model and image_size: the section's own,
    # image_size null meaning the profile's)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(section) & fields == set(TRAIN_KEYS) | {"model", "image_size"}
    # a profile that sets nothing but the required keys trains TrainConfig's defaults: no second default anywhere
    from hamviz.chapters.classifier import config
    P = chapter_params({"seed": 0, "image_size": 48}, "classifier")
    built, plain = config(P).to_dict(), TrainConfig(image_size=48).to_dict()
    assert built == plain and built["strategy"] == "S4"


@pytest.mark.parametrize("bad,words", [
    ({"learning_rate": "fast"}, "TrainConfig.learning_rate must be a number > 0, not 'fast'"),
    ({"epochs": 2.0}, "TrainConfig.epochs must be an integer >= 1 and <= 1000, not 2.0"),
    ({"strategy": "S6"}, "TrainConfig.strategy must be one of S1, S2, S3, S4, S5, not 'S6'"),
    ({"augment": {"zoom": 1.5}}, "TrainConfig.augment must be a mapping, not .* \\(zoom: 1.5 is greater than"),
    ({"tta_flips": 1}, "TrainConfig.tta_flips must be true or false, not 1"),
])
def test_train_config_is_checked_against_its_own_schema(bad, words):
    from hamviz.training import TrainConfig, TrainingError
    with pytest.raises(TrainingError, match=words) as err:
        TrainConfig(**bad)
    assert "fix it in the profile" in str(err.value)
