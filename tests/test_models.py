"""hamviz.models: builders, flat graphs, weights handling and impossible settings."""
import os
from pathlib import Path

import numpy as np
import pytest

from hamviz.models import ImagenetPreprocess, ModelError, build_model, last_conv_layer, small_cnn, transfer_model


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
    monkeypatch.setenv("HAMVIZ_WEIGHTS", str(tmp_path / "none"))
    with pytest.raises(ModelError, match="cannot be downloaded.*hamviz weights --model resnet50.*weights=None"):
        transfer_model("resnet50", (64, 64, 3), weights="imagenet")
    assert time.time() - t < 5


def test_keras_imagenet_weights_carried_in_hamviz_weights_load_offline(monkeypatch, tmp_path, capsys):
    """A GPU machine without internet: `hamviz weights --profile paper --dest DIR` on a machine with internet
    fetches each Keras application's md5-checked file into DIR/keras/ (downloads faked here: the real file's
    name, URL and md5 are checked); with HAMVIZ_WEIGHTS=DIR, weights='imagenet' loads that file with no
    network."""
    import socket

    import keras

    from hamviz import cli
    from hamviz import weights as w
    asked = []

    def get_file(fname, origin, cache_dir, cache_subdir, file_hash):
        asked.append((fname, origin, file_hash))
        target = Path(cache_dir) / cache_subdir / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        if fname.startswith("mobilenet_v2"):  # a real weights file (Keras' legacy .h5 layout) for the model below
            import h5py
            from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
            src = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
            src.get_layer("Conv1").set_weights([np.full_like(k, 0.125) for k in src.get_layer("Conv1").get_weights()])
            with h5py.File(target, "w") as f:
                save_weights_to_hdf5_group(f, src)
        else:
            target.write_bytes(b"weights")
        return str(target)

    import keras.utils
    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setattr(w, "fetch_preset", lambda model, into=None: Path(into) / model)
    carry = tmp_path / "carry"
    assert cli.main(["weights", "--profile", "paper", "--dest", str(carry)]) == 0
    names = {a[0] for a in asked}
    assert {"resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5"} == names  # the paper profile's four
    vgg = next(a for a in asked if a[0].startswith("vgg19"))  # its ensemble member keeps VGG19's own top
    assert vgg[1].endswith("/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5")
    assert vgg[2] == "cbe5617147190e668d6c5d5026f83318"  # Keras' md5 of the file with the top
    resnet = next(a for a in asked if a[0].startswith("resnet50"))
    assert resnet[1] == ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                         "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert resnet[2] == "4d473c1dd8becc155b73f8504c6f6626"  # Keras' own md5
    assert f"export HAMVIZ_WEIGHTS={carry}" in capsys.readouterr().out
    # offline, with HAMVIZ_WEIGHTS pointing at the carried folder
    w.fetch_keras_weights("mobilenetv2", into=carry, input_size=96, get_file=get_file)
    monkeypatch.setenv("HAMVIZ_WEIGHTS", str(carry))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert w.local_keras_weights("resnet50") == carry / "keras" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    m = transfer_model("mobilenetv2", (96, 96, 3), weights="imagenet")
    assert np.all(m.get_layer("Conv1").get_weights()[0] == 0.125)  # the carried file's weights, loaded offline


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


def test_three_level_autoencoder_pools_three_times():
    """The reference's 3-level variant: three encoder levels, the latent at 1/8 of the edge with 192/ratio channels
    (the same compression ratio as the 2-level one), an input edge that must be a multiple of 8."""
    from hamviz.models import autoencoder, encoder_of
    ae = autoencoder((64, 64, 3), 3, filters=(8, 16, 32))
    assert tuple(encoder_of(ae).output.shape[1:]) == (8, 8, 64) and tuple(ae.output.shape[1:]) == (64, 64, 3)
    assert 8 * 8 * 64 * 3 == 64 * 64 * 3  # 3x smaller
    assert [l.name for l in ae.layers if l.name.endswith("_pool")] == ["enc1_pool", "enc2_pool", "enc3_pool"]
    with pytest.raises(ModelError, match="divisible by 8"):
        autoencoder((60, 60, 3), 3, filters=(8, 16, 32))
    from hamviz.params import ParamsError, load_profile
    with pytest.raises(ParamsError, match="divisible by 8"):
        load_profile("tiny", {"chapters": {"classifier": {"image_size": 60},
                                           "compression": {"ae_filters": [8, 16, 32]}}})


def test_encoder_decoder_compose_to_the_autoencoder():
    from hamviz.models import autoencoder, decoder_of, encoder_of
    ae = autoencoder((32, 32, 3), 6)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    z = encoder_of(ae).predict(x, verbose=0)
    np.testing.assert_allclose(decoder_of(ae).predict(z, verbose=0), ae.predict(x, verbose=0), atol=1e-3)


def test_vgg19_keeps_its_own_top_with_a_new_output_layer():
    """head own_top (Bunu et al.'s VGG19): flatten - fc1 - fc2 of VGG19 itself, then Dense(n_classes); only VGG19
    has such a top, and its pretrained one takes 224x224 only (checked before any download)."""
    m = transfer_model("vgg19", (32, 32, 3), n_classes=2, weights=None, trainable="all", head="own_top", l2=1e-4)
    names = [l.name for l in m.layers]
    assert names[-4:] == ["flatten", "fc1", "fc2", "predictions"] and m.output.shape[-1] == 2
    assert m.get_layer("fc1").units == 4096 and m.get_layer("fc1").input.shape[-1] == 512  # 1x1x512 flattened
    assert len(m.losses) == 1  # the L2 on the new layer
    with pytest.raises(ModelError, match="only vgg19"):
        transfer_model("resnet50", (32, 32, 3), weights=None, head="own_top")
    with pytest.raises(ModelError, match="224x224"):
        transfer_model("vgg19", (128, 128, 3), weights="imagenet", head="own_top")
    from hamviz import cli
    assert cli.main(["weights", "--model", "resnet50", "--top"]) == 2  # no such file to fetch: said, not tried


@pytest.mark.parametrize("given, expected", [(None, ("1", "True")), ("0", ("0", "False"))])
def test_importing_hamviz_turns_onednn_on_unless_the_user_said_otherwise(given, expected):
    """TensorFlow leaves its oneDNN kernels off on AVX2-only CPUs, where they made training 1.35-1.85x faster
    (benchmarks/cpu_gap.py); hamviz turns them on before TensorFlow loads, and a user's own setting wins."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    code = ("import os, hamviz; from hamviz.models import keras; "
            "from tensorflow.python.util import _pywrap_util_port as u; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], u.IsMklEnabled())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[-2:] == list(expected), out.stderr[-500:]


def test_input_scaling_unit_feeds_the_backbone_pixels_over_255():
    """input_scaling: unit (Zhang's and Bunu's (0, 1) inputs) replaces a backbone's ImageNet preprocessing, for a
    Keras application and a Keras-Hub preset alike; the frozen features get a key of their own."""
    from types import SimpleNamespace as NS

    from hamviz.features import feature_key
    from hamviz.models import keras
    x = np.full((1, 32, 32, 3), 51.0, dtype="float32")
    for name in ("mobilenetv2", "efficientnet_lite0"):
        own = build_model(name, (32, 32, 3), 2, weights=None, trainable="frozen", head="simple")
        unit = build_model(name, (32, 32, 3), 2, weights=None, trainable="frozen", head="simple", input_scaling="unit")
        pre = [keras.Model(m.input, m.get_layer("preprocess").output)(x).numpy() for m in (own, unit)]
        np.testing.assert_allclose(pre[1], 0.2, rtol=1e-6)
        assert not np.allclose(pre[0], 0.2), name
    with pytest.raises(ModelError, match="input_scaling"):
        build_model("mobilenetv2", (32, 32, 3), 2, weights=None, input_scaling="zero_one")
    cache = NS(path="/x/ham-64-stretch-abc", size=(64, 64))
    assert (feature_key(cache, "mobilenetv2", None, "none")
            == feature_key(cache, "mobilenetv2", None, "none", "imagenet"))
    assert feature_key(cache, "mobilenetv2", None, "none", "unit") != feature_key(cache, "mobilenetv2", None, "none")


def test_configurable_cnn_builds_bunus_kept_cnns_exactly():
    """Bunu et al.'s first kept CNN: 3 conv layers of 32 3x3 filters, each followed by a 3x3 max pool, one dense
    layer of 64 units with dropout 0.5: block_dropout=False leaves dropout after the dense layer only."""
    from hamviz.models import configurable_cnn
    m = configurable_cnn((224, 224, 3), 2, conv_blocks=3, filters=32, kernel=3, convs_per_block=1, pool_size=3,
                         filter_growth="constant", dense_layers=1, dense_units=64, dropout=0.5, block_dropout=False)
    assert [l.name for l in m.layers] == ["image", "scale", "conv1_1", "pool1", "conv2_1", "pool2", "conv3_1",
                                          "pool3", "flatten", "dense1", "drop_dense1", "predictions"]
    assert m.get_layer("flatten").output.shape[-1] == 8 * 8 * 32  # 224 -> 74 -> 24 -> 8
    assert "drop1" in [l.name for l in configurable_cnn((64, 64, 3), 2).layers]  # the default keeps it
