"""hamviz.chapters.classifier: configs from params, the leak table, and the external test set path."""
import numpy as np
from conftest import write_isic2018

from hamviz.chapters.classifier import config, external, leak_audit, side_by_side
from hamviz.models import small_cnn
from hamviz.params import chapter_params, load_profile
from hamviz.training import TrainConfig


def test_config_from_profiles():
    cpu = config(chapter_params(load_profile("cpu"), "classifier"))
    assert cpu.model == "efficientnet_lite0" and cpu.image_size == 160  # the classifier section's own size
    assert cpu.model_options["weights"] == "imagenet" and cpu.model_options["head"] == "simple"
    assert cpu.head_warmup == 10 and cpu.tta_flips and cpu.select_on == "balanced_val_loss"
    assert load_profile("cpu")["image_size"] == 64  # the other chapters' from-scratch models keep theirs
    paper = config(chapter_params(load_profile("paper"), "classifier"))
    assert paper.model == "inceptionv3" and paper.image_size == 128 and paper.epochs == 35
    assert paper.model_options["weights"] == "imagenet" and paper.model_options["l2"] == 0.0001
    assert config(chapter_params(load_profile("cpu"), "classifier"), strategy="S2").strategy == "S2"


def test_leak_audit_table():
    g = {"test": {"headline": {"accuracy": 0.7, "balanced_accuracy": 0.5, "macro_f1": 0.4, "macro_auc": 0.8}}}
    i = {"test": {"headline": {"accuracy": 0.8, "balanced_accuracy": 0.6, "macro_f1": 0.45, "macro_auc": 0.9}}}
    t = leak_audit(g, i)
    np.testing.assert_allclose(t["inflation (points)"], [10, 10, 5, 10])


def test_external_test_set(tmp_path, metadata, data_dir):
    write_isic2018(tmp_path / "isic", data_dir / "images", metadata.groupby("dx").head(2))

    class FakeTrained:
        model = small_cnn((32, 32, 3), 7)
        config = TrainConfig(image_size=32)

    P = {"external_test": str(tmp_path / "isic"), "resize": "stretch", "on_corrupt": "error", "seed": 0}
    ev, ds = external(P, FakeTrained(), n_boot=50)
    assert len(ds) == 14 and ev["headline"]["n"] == 14
    assert sum(map(sum, ev["confusion"])) == 14


def test_side_by_side_shows_intervals_where_there_are_some():
    ham = {"headline": {"n": 100, "accuracy": 0.8, "balanced_accuracy": 0.6, "macro_f1": 0.5, "macro_auc": 0.9},
           "ci": {"balanced_accuracy": {"value": 0.6, "low": 0.55, "high": 0.66}}}
    ext = {"headline": {"n": 70, "accuracy": 0.7, "balanced_accuracy": 0.5, "macro_f1": 0.4, "macro_auc": None}}
    t = side_by_side({"HAM10000": ham, "external": ext})
    assert list(t.index) == ["HAM10000", "external"] and t.loc["external", "n"] == 70
    assert t.loc["HAM10000", "balanced_accuracy"] == "0.600 [0.550, 0.660]"
    assert t.loc["HAM10000", "accuracy"] == "0.800" and t.loc["external", "macro_auc"] == "n/a"
