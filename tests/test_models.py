"""hamviz.models: builders, flat graphs, weights handling and impossible settings."""
import numpy as np
import pytest

from hamviz.models import (ImagenetPreprocess, ModelError, build_model, last_conv_layer, small_cnn,
                           transfer_model)


def test_small_cnn_is_the_reference_architecture():
    m = small_cnn((32, 32, 3), 7)
    kinds = [type(l).__name__ for l in m.layers]
    assert kinds == ["InputLayer", "ImagenetPreprocess", "Conv2D", "Conv2D", "MaxPooling2D", "Dropout",
                     "Conv2D", "Conv2D", "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert [l.filters for l in m.layers if type(l).__name__ == "Conv2D"] == [32, 32, 64, 64]
    assert [l.rate for l in m.layers if type(l).__name__ == "Dropout"] == [0.25, 0.4, 0.5]
    out = m.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert out.shape == (2, 7) and np.allclose(out.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("backbone,size", [("mobilenetv2", 32), ("resnet50", 32), ("inceptionv3", 75),
                                           ("densenet201", 32), ("vgg19", 32)])
def test_transfer_models_are_flat(backbone, size):
    m = transfer_model(backbone, (size, size, 3), 7, weights=None)
    assert not any(hasattr(l, "layers") and len(getattr(l, "layers", [])) > 1 for l in m.layers), \
        "backbone nested as a sub-model"
    names = [l.name for l in m.layers]
    assert names[-5:] == ["head_pool", "head_dense", "head_dropout", "head_bn", "predictions"]
    assert len(m.layers) > 20
    assert len(m.get_layer(last_conv_layer(m)).output.shape) == 4


def test_trainable_options():
    frozen = transfer_model("mobilenetv2", (32, 32, 3), weights=None, trainable="frozen")
    head = {"head_dense", "head_bn", "predictions"}
    assert {l.name for l in frozen.layers if l.trainable_weights} == head
    last = transfer_model("mobilenetv2", (32, 32, 3), weights=None, trainable=10)
    tl = [l for l in last.layers if l.trainable_weights and l.name not in head]
    # trained from random init, BatchNorm layers learn too
    assert 0 < len(tl) <= 10 and any(type(l).__name__ == "BatchNormalization" for l in tl)
    full = transfer_model("mobilenetv2", (32, 32, 3), weights=None, trainable="all")
    assert len(full.trainable_weights) > len(last.trainable_weights) > len(frozen.trainable_weights)


def test_pretrained_batchnorm_stays_frozen_when_fine_tuning(tmp_path):
    import keras
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    f = tmp_path / "mnv2.weights.h5"
    base.save_weights(f)
    m = transfer_model("mobilenetv2", (32, 32, 3), weights=f, trainable=10)
    tl = [l for l in m.layers if l.trainable_weights and l.name not in {"head_dense", "head_bn", "predictions"}]
    assert 0 < len(tl) <= 10 and not any(type(l).__name__ == "BatchNormalization" for l in tl)


def test_weights_from_a_local_file(tmp_path):
    import keras
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    base.layers[-3].set_weights([w + 1.0 for w in base.layers[-3].get_weights()])
    f = tmp_path / "mnv2_notop.weights.h5"
    base.save_weights(f)
    m = transfer_model("mobilenetv2", (32, 32, 3), weights=f)
    np.testing.assert_allclose(m.get_layer(base.layers[-3].name).get_weights()[0],
                               base.layers[-3].get_weights()[0])


@pytest.mark.parametrize("call,words", [
    (lambda: transfer_model("inceptionv3", (64, 64, 3), weights=None), "at least 75x75"),
    (lambda: transfer_model("resnet5", (64, 64, 3), weights=None), "Unknown backbone 'resnet5'"),
    (lambda: transfer_model("vgg19", (64, 64, 3), weights="/no/such/file.h5"), "does not exist"),
    (lambda: transfer_model("vgg19", (64, 64, 3), weights=None, trainable="some"), "trainable"),
    (lambda: transfer_model("vgg19", (64, 64, 1), weights=None), "height, width, 3"),
    (lambda: build_model("small_cnn", (32, 32, 3), weights=None), "does not take"),
])
def test_impossible_settings(call, words):
    with pytest.raises(ModelError, match=words):
        call()


def test_offline_imagenet_fails_fast(monkeypatch, tmp_path):
    import socket
    import time
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def refuse(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)
    t = time.time()
    with pytest.raises(ModelError, match="cannot be downloaded.*weights=None"):
        transfer_model("resnet50", (64, 64, 3), weights="imagenet")
    assert time.time() - t < 5


@pytest.mark.parametrize("mode,expected", [("tf", [-1.0, 1.0]), ("unit", [0.0, 1.0])])
def test_preprocess_ranges(mode, expected):
    x = np.array([[[[0, 0, 0]], [[255, 255, 255]]]], np.float32)
    y = np.asarray(ImagenetPreprocess(mode)(x))
    assert np.allclose([y.min(), y.max()], expected)


def test_caffe_preprocess_flips_to_bgr():
    x = np.zeros((1, 1, 1, 3), np.float32)
    x[..., 0] = 200  # red
    y = np.asarray(ImagenetPreprocess("caffe")(x))[0, 0, 0]
    np.testing.assert_allclose(y, [-103.939, -116.779, 200 - 123.68], rtol=1e-5)


@pytest.mark.parametrize("ratio,channels", [(1.5, 32), (3, 16), (6, 8)])
def test_autoencoder_ratios(ratio, channels):
    from hamviz.models import autoencoder, encoder_of
    ae = autoencoder((64, 64, 3), ratio)
    latent = encoder_of(ae).output.shape
    assert tuple(latent[1:]) == (16, 16, channels)
    assert 64 * 64 * 3 / (16 * 16 * channels) == ratio
    out = ae.predict(np.full((2, 64, 64, 3), 128, np.float32), verbose=0)
    assert out.shape == (2, 64, 64, 3) and 0 <= out.min() and out.max() <= 255
    assert tuple(encoder_of(autoencoder((128, 128, 3), ratio)).output.shape[1:]) == (32, 32, channels)


@pytest.mark.parametrize("shape,ratio,words", [((64, 64, 3), 5, "whole number"), ((66, 66, 3), 3, "divisible by 4"),
                                               ((64, 64, 3), 0, "positive")])
def test_autoencoder_impossible_ratio(shape, ratio, words):
    from hamviz.models import autoencoder
    with pytest.raises(ModelError, match=words):
        autoencoder(shape, ratio)


def test_encoder_decoder_compose_to_the_autoencoder():
    from hamviz.models import autoencoder, decoder_of, encoder_of
    ae = autoencoder((32, 32, 3), 6)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    z = encoder_of(ae).predict(x, verbose=0)
    np.testing.assert_allclose(decoder_of(ae).predict(z, verbose=0), ae.predict(x, verbose=0), atol=1e-3)
