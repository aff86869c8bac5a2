"""hamviz.deploy without the book: portable models compute what hamviz's model computes, bad images are named,
the command line refuses bad input before reading anything. (Export and predict on the tiny book's main model:
tests/test_book.py.)"""
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hamviz import deploy
from hamviz.cli import main

ORIGINALS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000-originals" / "images"


def _model(pre):
    import keras
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(pre(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("kind", ["scale_offset", "tf", "unit", "torch", "caffe"])
def test_portable_model_computes_the_same_with_standard_layers(kind, tmp_path):
    import keras

    from hamviz.models import ImagenetPreprocess, ScaleOffset
    pre = ScaleOffset((0.5, 0.25, 2.0), (-1.0, 0.0, 3.0)) if kind == "scale_offset" else ImagenetPreprocess(kind)
    model = _model(pre)
    x = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 3)).astype("float32")
    # the preprocessing layer's own output, by its definition (a known answer, not the layer against itself)
    mean = {"torch": np.array(ImagenetPreprocess.MEAN["torch"]), "caffe": np.array(ImagenetPreprocess.MEAN["caffe"])}
    expected = {"scale_offset": x * [0.5, 0.25, 2.0] + [-1.0, 0.0, 3.0], "tf": x / 127.5 - 1, "unit": x / 255,
                "torch": (x / 255 - mean["torch"]) / np.array(ImagenetPreprocess.STD),
                "caffe": x[..., ::-1] - mean["caffe"]}[kind]
    portable = deploy.portable_model(model)
    assert "hamviz" not in {type(layer).__module__.split(".")[0] for layer in portable.layers}
    first = keras.Model(portable.inputs, portable.layers[1].output)
    np.testing.assert_allclose(first.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(portable.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    portable.save(tmp_path / "m.keras")  # and nothing of hamviz in what is saved
    assert "hamviz" not in zipfile.ZipFile(tmp_path / "m.keras").read("config.json").decode()


def test_a_hamviz_layer_without_a_standard_twin_is_refused():

    from hamviz.pipeline import random_rot90_layer
    model = _model(random_rot90_layer()(seed=0))
    with pytest.raises(deploy.DeployError, match="hamviz's own"):
        deploy.portable_model(model)


def _folder_with_bad_images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    good = sorted(ORIGINALS.glob("*.jpg"))[:2]
    for f in good:
        shutil.copy(f, folder)
    data = good[0].read_bytes()
    (folder / "ISIC_truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "ISIC_page.jpg").write_text("<html>not found</html>")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_every_unreadable_image_is_named_and_nothing_is_scored(tmp_path):
    folder = _folder_with_bad_images(tmp_path)
    notes = []
    files = deploy.image_files(folder=folder, log=notes.append)
    assert [f.name for f in files][-2:] == ["ISIC_page.jpg", "ISIC_truncated.jpg"] and len(files) == 4
    assert "notes.txt" in notes[0]  # not an image suffix: said, not scored
    with pytest.raises(deploy.DeployError) as err:
        deploy.read_images(files, 32)
    text = str(err.value)
    assert ("2 of 4" in text and "ISIC_truncated.jpg" in text and "ISIC_page.jpg" in text
            and "nothing was scored" in text)
    assert deploy.read_images(files[:2], 32).shape == (2, 32, 32, 3)


def test_predict_refuses_bad_arguments_before_reading_anything(tmp_path, capsys):
    out = tmp_path / "p.csv"
    out.write_text("kept")
    assert main(["predict", "--model", str(tmp_path / "nowhere"), str(ORIGINALS), "--out", str(out)]) == 2
    assert "exists: pass --force" in capsys.readouterr().err and out.read_text() == "kept"
    assert main(["predict", "--model", str(tmp_path / "nowhere"), "--folder", str(ORIGINALS),
                 "--out", str(tmp_path / "new.csv")]) == 2
    assert "no model.keras there" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), "--out", str(tmp_path / "none" / "p.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), str(tmp_path / "missing.jpg"), "--out",
                 str(tmp_path / "n.csv")]) == 2
    assert "no such image file" in capsys.readouterr().err
    assert not (tmp_path / "new.csv").exists() and not (tmp_path / "n.csv").exists()


def test_export_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    assert main(["export", "--profile", "tiny", "--dest", str(tmp_path / "dest")]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "dest" / "keep.txt").read_text() == "mine"


def test_predict_columns_follow_the_isic_2018_order():
    assert deploy.PREDICTION_COLUMNS == ("image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC", "predicted")
