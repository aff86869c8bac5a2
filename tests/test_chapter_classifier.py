"""hamviz.chapters.classifier: configs from params, the leak table, and the external test set path."""
import shutil

import numpy as np
import pandas as pd
import pytest

from hamviz.chapters.classifier import config, external, leak_audit
from hamviz.models import small_cnn
from hamviz.params import chapter_params, load_profile
from hamviz.training import TrainConfig


def test_config_from_profiles():
    cpu = config(chapter_params(load_profile("cpu"), "classifier"))
    assert cpu.model == "small_cnn" and cpu.image_size == 64 and cpu.model_options == {}
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
    rows = metadata.groupby("dx").head(2)
    folder = tmp_path / "isic" / "ISIC2018_Task3_Test_Input"
    folder.mkdir(parents=True)
    for i in rows["image_id"]:
        shutil.copy(data_dir / "images" / f"{i}.jpg", folder)
    gt = pd.DataFrame({"image": rows["image_id"]})
    for c in ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"):
        gt[c] = (rows["dx"].str.upper() == c).astype(float).to_numpy()
    gt.to_csv(tmp_path / "isic" / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)

    class FakeTrained:
        model = small_cnn((32, 32, 3), 7)
        config = TrainConfig(image_size=32)

    P = {"external_test": str(tmp_path / "isic"), "resize": "stretch", "on_corrupt": "error", "seed": 0}
    ev, ds = external(P, FakeTrained(), n_boot=50)
    assert len(ds) == 14 and ev["headline"]["n"] == 14
    assert sum(map(sum, ev["confusion"])) == 14
