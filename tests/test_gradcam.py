"""hamviz.gradcam: layer lookup, activation maps, Grad-CAM (with a known answer), overlays, map shifts.

Tiny models only (small_cnn and MobileNetV2 at 32x32, random weights): the whole file runs in seconds.
"""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image

from hamviz import gradcam as ex
from hamviz.models import keras, last_conv_layer, small_cnn, transfer_model

SIZE = 32


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    return small_cnn((SIZE, SIZE, 3))


@pytest.fixture(scope="module")
def mnet():
    keras.utils.set_random_seed(0)
    return transfer_model("mobilenetv2", (SIZE, SIZE, 3), weights=None)


@pytest.fixture(scope="module")
def real_images(data_dir):
    files = sorted((data_dir / "images").glob("*.jpg"))[:3]
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
                     for f in files])


# ------------------------------------------------------------------------------------------------- layers
def test_conv_layers_small_cnn(small):
    assert ex.conv_layers(small) == ["conv1_1", "conv1_2", "pool1", "drop1", "conv2_1", "conv2_2",
                                     "pool2", "drop2"]


def test_conv_layers_mobilenet_ordered_without_input_and_preprocessing(mnet):
    names = ex.conv_layers(mnet)
    order = [l.name for l in mnet.layers]
    assert names[0] == "Conv1" and names[-1] == "out_relu" == last_conv_layer(mnet)
    assert "image" not in names and "preprocess" not in names
    assert [order.index(n) for n in names] == sorted(order.index(n) for n in names)
    assert all(len(mnet.get_layer(n).output.shape) == 4 for n in names)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_default_layers(mnet, small, n):
    for model in (mnet, small):
        all_ = ex.conv_layers(model)
        got = ex.default_layers(model, n)
        assert len(got) == n
        assert [all_.index(g) for g in got] == sorted(all_.index(g) for g in got)
        assert got[-1] == all_[-1]
        if n > 1:
            assert got[0] == all_[0]


def test_default_layers_caps_at_available(small):
    assert ex.default_layers(small, 100) == ex.conv_layers(small)


def test_default_cam_layer_skips_1x1_maps(small, mnet):
    assert ex.default_cam_layer(small) == "drop2" == last_conv_layer(small)
    name = ex.default_cam_layer(mnet)
    assert name != last_conv_layer(mnet)  # out_relu is 1x1 at 32x32
    assert name == "block_13_expand_relu"  # not block_13_pad: a padded border is not image
    h, w = mnet.get_layer(name).output.shape[1:3]
    assert h * w > 1
    later = ex.conv_layers(mnet)[ex.conv_layers(mnet).index(name) + 1:]
    assert later and all(tuple(mnet.get_layer(l).output.shape[1:3]) == (1, 1) for l in later
                         if not isinstance(mnet.get_layer(l), keras.layers.ZeroPadding2D))


def test_resolve_layer(small):
    names = [l.name for l in small.layers]
    assert ex.resolve_layer(small, "conv2_2") == "conv2_2"
    assert ex.resolve_layer(small, names.index("conv1_1")) == "conv1_1"
    assert ex.resolve_layer(small, names.index("pool2") - len(names)) == "pool2"
    assert ex.resolve_layer(small, np.int64(2)) == names[2]


def test_resolve_layer_errors(small):
    with pytest.raises(ValueError, match="conv2_2"):  # suggests the close name
        ex.resolve_layer(small, "conv2_22")
    with pytest.raises(ValueError, match="4-D"):
        ex.resolve_layer(small, "dense")
    with pytest.raises(ValueError, match="4-D"):
        ex.resolve_layer(small, -1)  # predictions (Dense)
    with pytest.raises(ValueError, match="out of range"):
        ex.resolve_layer(small, 99)
    with pytest.raises(ValueError):
        ex.resolve_layer(small, 1.5)


# ----------------------------------------------------------------------------------------- activations
def test_activations_shapes(mnet, real_images):
    layers = ex.default_layers(mnet, 4)
    acts = ex.activations(mnet, real_images[0], layers)
    assert list(acts) == layers
    for name, a in acts.items():
        assert a.shape == tuple(mnet.get_layer(name).output.shape[1:])
    # float and uint8 inputs are the same image; indices resolve to names
    again = ex.activations(mnet, real_images[0].astype(np.float32), [layers[0], -len(mnet.layers) + 2])
    np.testing.assert_allclose(again[layers[0]], acts[layers[0]], rtol=1e-5, atol=1e-5)
    assert "Conv1" in again


def test_activations_wrong_size(small):
    with pytest.raises(ValueError, match="shape"):
        ex.activations(small, np.zeros((64, 64, 3), np.uint8), ["conv1_1"])


def test_activation_figure(small, real_images):
    acts = ex.activations(small, real_images[0], ["conv1_1", "pool2"])
    fig = ex.activation_figure(acts, max_channels=9, title="t")
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert all(isinstance(t, go.Heatmap) for t in fig.data)
    titles = [a.text for a in fig.layout.annotations]
    assert "conv1_1" in titles[0] and "32x32x32" in titles[0] and "9 of 32" in titles[0]
    assert "pool2" in titles[1] and "8x8x64" in titles[1]


# --------------------------------------------------------------------------------------------- Grad-CAM
def known_model(split_softmax=True):
    """image (16,16,3) -> 1x1 conv averaging RGB ("feat") -> GAP -> Dense [+1, -1] ("out") -> softmax."""
    inp = keras.Input((16, 16, 3), name="image")
    feat = keras.layers.Conv2D(1, 1, use_bias=False, name="feat")(inp)
    g = keras.layers.GlobalAveragePooling2D(name="gap")(feat)
    if split_softmax:
        z = keras.layers.Dense(2, use_bias=False, name="out")(g)
        out = keras.layers.Activation("softmax", name="softmax")(z)
    else:
        out = keras.layers.Dense(2, use_bias=False, activation="softmax", name="out")(g)
    model = keras.Model(inp, out)
    model.get_layer("feat").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    model.get_layer("out").set_weights([np.array([[1.0, -1.0]], np.float32)])
    return model


def top_left_image(value=200.0):
    img = np.zeros((16, 16, 3), np.float32)
    img[:8, :8] = value
    return img


@pytest.mark.parametrize("split_softmax", [True, False])
def test_grad_cam_known_answer(split_softmax):
    model = known_model(split_softmax)
    img = top_left_image()
    cam0 = ex.grad_cam(model, img[None], class_index=0)
    assert cam0.shape == (1, 16, 16)
    np.testing.assert_allclose(cam0[0, :8, :8], 1.0, atol=1e-6)  # the bright quadrant, at the max
    mask = np.ones((16, 16), bool)
    mask[:8, :8] = False
    assert np.abs(cam0[0][mask]).max() < 1e-6  # the rest ~0
    cam1 = ex.grad_cam(model, img[None], class_index=1)
    assert (cam1 == 0).all()  # negative weights: nothing left after the ReLU
    maps, proba = ex.predict_with_cam(model, img[None])  # predicted class is 0
    assert proba.argmax() == 0
    np.testing.assert_allclose(maps, cam0, atol=1e-6)


def test_grad_cam_proba_score_saturates():
    """The same model, differentiating the probability: fine for a dim image, but a confident prediction
    (p = 1.0 in float32) has zero gradient, hence the logit default."""
    model = known_model()
    dim = ex.grad_cam(model, top_left_image(2.0)[None], class_index=0, score="proba")
    np.testing.assert_allclose(dim[0, :8, :8], 1.0, atol=1e-6)
    saturated = ex.grad_cam(model, top_left_image(200.0)[None], class_index=0, score="proba")
    assert (saturated == 0).all()


def test_grad_cam_real_images(small, real_images):
    cams, proba = ex.predict_with_cam(small, real_images)
    assert cams.shape == (3, SIZE, SIZE) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    assert all(c.max() in (0.0, 1.0) for c in cams)
    np.testing.assert_allclose(proba, small.predict(real_images.astype(np.float32), verbose=0), atol=1e-5)
    pred = proba.argmax(axis=1)
    np.testing.assert_allclose(ex.grad_cam(small, real_images, class_index=pred, batch_size=2), cams,
                               atol=1e-5)
    other = ex.grad_cam(small, real_images, class_index=np.array([0, 3, 6]), layer="conv2_2")
    assert other.shape == (3, SIZE, SIZE) and 0 <= other.min() and other.max() <= 1
    with pytest.raises(ValueError, match="0..6"):
        ex.grad_cam(small, real_images, class_index=7)
    with pytest.raises(ValueError, match="one per image"):
        ex.grad_cam(small, real_images, class_index=[0, 1])
    with pytest.raises(ValueError, match="4-D"):
        ex.grad_cam(small, real_images, layer="dense")


def test_grad_cam_mobilenet_default_layer(mnet, real_images):
    cams = ex.grad_cam(mnet, real_images[:2], class_index=1)
    assert cams.shape == (2, SIZE, SIZE) and 0 <= cams.min() and cams.max() <= 1


# ---------------------------------------------------------------------------------------------- display
def test_overlay(real_images):
    img = real_images[0]
    cam = np.zeros((SIZE, SIZE), np.float32)
    cam[:16, :16] = 1.0
    out = ex.overlay(img, cam)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(ex.overlay(img, cam, alpha=0.0), img)
    pure = ex.overlay(np.zeros_like(img), cam, alpha=1.0)
    np.testing.assert_array_equal(pure[0, 0], [128, 0, 0])  # jet at 1: dark red
    np.testing.assert_array_equal(pure[-1, -1], [0, 0, 128])  # jet at 0: dark blue
    assert ex.overlay(img, cam[::4, ::4], colormap="Viridis").shape == img.shape  # resized, plotly scale
    assert ex.colormap_lut("Viridis").shape == (256, 3)


def test_cam_gallery(real_images):
    cams = np.random.default_rng(0).random((3, SIZE, SIZE))
    fig = ex.cam_gallery(real_images, cams, ["a: nv", "b: mel", "c: bcc"], ncols=2, title="g")
    assert isinstance(fig, go.Figure) and len(fig.data) == 3
    assert all(isinstance(t, go.Image) for t in fig.data)


# ------------------------------------------------------------------------------------------- cam shifts
def blob(cy, cx, size=48, sigma=4.0):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def test_cam_shift_identical():
    a = blob(20, 20)
    s = ex.cam_shift_batch(a[None], a[None]).iloc[0]
    assert s["correlation"] == pytest.approx(1.0)
    assert s["iou"] == 1.0 and s["com_distance"] == pytest.approx(0.0, abs=1e-9)


def test_cam_shift_moved_blob():
    a, b = blob(20, 18), blob(23, 22)  # moved by (3, 4): 5 px
    s = ex.cam_shift_batch(a[None], b[None]).iloc[0]
    assert s["com_distance"] == pytest.approx(5.0, abs=1.0)
    assert s["com_dy"] == pytest.approx(3.0, abs=1.0) and s["com_dx"] == pytest.approx(4.0, abs=1.0)
    assert s["iou"] < 1 and s["correlation"] < 1


def test_cam_shift_batch():
    a = np.stack([blob(20, 20), blob(10, 30), np.zeros((48, 48))])
    b = np.stack([blob(20, 20), blob(10, 36), np.zeros((48, 48))])
    df = ex.cam_shift_batch(a, b)
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert list(df.columns) == ["correlation", "iou", "com_distance", "com_dy", "com_dx"]
    assert df.loc[0, "iou"] == 1.0 and df.loc[1, "com_distance"] == pytest.approx(6.0, abs=1.0)
    assert df.loc[2].isna().all()  # two all-zero maps: nothing to compare
    one = ex.cam_shift_batch(a[1:2], b[1:2]).iloc[0]
    assert one.to_dict() == pytest.approx(df.loc[1].to_dict())
    with pytest.raises(ValueError):
        ex.cam_shift_batch(a, b[:2])


def test_sequential_and_nested_sequential_models():
    """Grad-CAM and activation maps on a keras.Sequential classifier (whose ``model.input`` raises in Keras 3)
    and on a functional classifier wrapping a Sequential backbone: maps of the right shape, the model's own
    probabilities, and the nested backbone's last map equal to its output computed in one piece."""
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    seq = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255.0),
                            keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
                            keras.layers.Conv2D(8, 3, activation="relu", name="c2"),
                            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    cam, proba = ex.predict_with_cam(seq, x)
    assert cam.shape == (2, 32, 32) and ex.default_cam_layer(seq) == "c2"
    np.testing.assert_allclose(proba, seq.predict(x, verbose=0), atol=1e-6)
    assert {k: v.shape for k, v in ex.activations(seq, x[0]).items()} == {"c1": (30, 30, 8), "c2": (28, 28, 8)}
    bb = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu", name="k1"),
                           keras.layers.Conv2D(8, 3, activation="relu", name="k2")], name="bb")
    inp = keras.Input((32, 32, 3))
    wrapped = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(bb(inp))))
    cam, _ = ex.predict_with_cam(wrapped, x)
    assert cam.shape == (2, 32, 32) and ex.default_cam_layer(wrapped) == "bb"
    acts = ex.activations(wrapped, x[0])
    assert list(acts) == ["bb/k1", "bb/k2"]
    np.testing.assert_allclose(acts["bb/k2"], ex.activations(wrapped, x[0], ["bb"])["bb"], atol=1e-5)
