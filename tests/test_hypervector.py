"""hamviz.hypervector: keys, similarities, losses, models, and HD training on synthetic colour images."""
import json

import numpy as np
import pandas as pd
import pytest

from hamviz import hypervector as hv
from hamviz.hypervector import Memory


# --------------------------------------------------------------------------------------------- memory
def test_random_templates_shapes_values_seeded():
    m = Memory.random(4, 500, seed=3, classes=["a", "b", "c", "d"])
    assert m.templates.shape == (4, 500) and m.templates.dtype == np.float32
    assert set(np.unique(m.templates)) == {0.0, 1.0} and m.centre == 0.5
    assert m.classes == ("a", "b", "c", "d") and m.dim == 500 and len(m) == 4
    assert np.array_equal(m.templates, Memory.random(4, 500, seed=3).templates)
    assert not np.array_equal(m.templates, Memory.random(4, 500, seed=4).templates)
    assert 0.4 < m.templates.mean() < 0.6  # U{0,1}
    b = Memory.random(7, 1000, kind="bipolar", seed=0)
    assert set(np.unique(b.templates)) == {-1.0, 1.0} and b.centre == 0.0
    cos = hv.cosine_scores(b.templates, b.templates)
    off = cos[~np.eye(7, dtype=bool)]
    assert np.allclose(np.diag(cos), 1) and np.abs(off).max() < 0.15  # near-orthogonal
    # binary keys are near-orthogonal about their centre 0.5 (plain cosine ~ 0.5)
    mb = Memory.random(7, 1000, seed=0)
    plain = hv.cosine_scores(mb.templates, mb.templates)[~np.eye(7, dtype=bool)]
    centred = hv.cosine_scores(mb.templates, mb.templates, centre=0.5)[~np.eye(7, dtype=bool)]
    assert np.abs(plain - 0.5).max() < 0.1 and np.abs(centred).max() < 0.15
    with pytest.raises(ValueError, match="coincide"):
        Memory.random(7, 2, seed=0)
    with pytest.raises(ValueError, match="kind"):
        Memory.random(3, 10, kind="ternary")


def test_memory_dict_round_trip():
    m = Memory.random(3, 64, kind="bipolar", seed=5, classes=["mel", "nv", "bcc"])
    m.add("bkl", np.random.default_rng(0).normal(size=(5, 64)))  # a non-integer template too
    back = Memory.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.classes == m.classes and back.kind == m.kind and back.seed == 5
    assert np.allclose(back.templates, m.templates, atol=1e-6)
    with pytest.raises(ValueError, match="dim=65"):
        Memory.from_dict({**m.to_dict(), "dim": 65})


# --------------------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("kind", hv.KINDS)
def test_template_is_its_own_class(kind):
    m = Memory.random(5, 256, kind=kind, seed=1)
    for mode in hv.MODES:
        assert np.array_equal(hv.predict(m.templates, m, mode), np.arange(5))
    h = hv.hamming_scores(m.templates, m.templates, kind)
    assert np.allclose(np.diag(h), 1.0) and (h[~np.eye(5, dtype=bool)] < 0.7).all()
    # noisy copies: 20 % of the bits flipped are still recognised
    rng = np.random.default_rng(0)
    flip = rng.random((5, 256)) < 0.2
    noisy = np.where(flip, (1 - m.templates) if kind == "binary" else -m.templates, m.templates)
    noisy = noisy + rng.normal(0, 0.1, noisy.shape)
    for mode in hv.MODES:
        assert np.array_equal(hv.predict(noisy, m, mode), np.arange(5))
    # hamming distance counted by hand
    a = np.array([[1, 0, 1, 1]], np.float32)
    t = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], np.float32)
    assert np.allclose(hv.hamming_scores(a * 0.9 + 0.05, t, "binary"), [[0.5, 1.0]])
    assert np.allclose(hv.hamming_scores(np.array([[0.0, -2, 3, 1]]), 2 * t - 1, "bipolar"), [[0.5, 1.0]])


def test_scores_to_proba():
    m = Memory.random(4, 128, seed=2)
    out = m.templates[[0, 1, 2, 3, 2]] + np.random.default_rng(1).normal(0, 0.3, (5, 128))
    from hamviz.metrics import check_inputs
    for mode in hv.MODES:
        s = hv.memory_scores(out, m, mode)
        p = hv.scores_to_proba(s, mode)
        assert p.shape == (5, 4) and np.allclose(p.sum(axis=1), 1)
        assert np.array_equal(p.argmax(1), s.argmax(1)) and np.array_equal(p.argmax(1), [0, 1, 2, 3, 2])
        check_inputs([0, 1, 2, 3, 2], p, m.classes)  # hamviz metrics accept them
    # equal temperatures for binarised vectors: hamming = (1 + centred cosine) / 2
    bits = hv.binarise(out, "binary")
    assert np.allclose(hv.predict_proba(bits, m, "cosine"), hv.predict_proba(bits, m, "hamming"))
    with pytest.raises(ValueError, match="positive"):
        hv.scores_to_proba(s, temperature=0)


@pytest.mark.parametrize("kind", hv.KINDS)
def test_add_class_without_retraining(kind):
    m = Memory.random(3, 200, kind=kind, seed=0, classes=["a", "b", "c"])
    rng = np.random.default_rng(0)
    # outputs of a new class: a direction of their own (here another random key) plus noise
    direction = Memory.random(4, 200, kind=kind, seed=9).templates[3]
    outs = direction + rng.normal(0, 0.4, (20, 200))
    m.add("new", outs[:10])
    assert m.classes == ("a", "b", "c", "new") and m.templates.shape == (4, 200)
    # the prototype sits at the random keys' distance from the centre
    radius = np.linalg.norm(m.templates - m.centre, axis=1)
    assert np.allclose(radius, radius[0], rtol=1e-4)
    for mode in hv.MODES:
        assert (hv.predict(outs[10:], m, mode) == 3).all()
        assert np.array_equal(hv.predict(m.templates[:3], m, mode), [0, 1, 2])  # old classes unchanged
    m.add("given", direction * 0 + m.templates[0][::-1])  # a given template is stored as it is
    assert np.array_equal(m.templates[4], m.templates[0][::-1])
    with pytest.raises(ValueError, match="already"):
        m.add("a", outs)
    with pytest.raises(ValueError, match="takes a template"):
        m.add("z", outs[:, :10])


def test_targets_and_losses():
    from hamviz.models import keras
    m = Memory.random(3, 32, seed=0)
    y = np.array([2, 0, 1])
    assert np.array_equal(hv.targets_for(y, m, "mse"), m.templates[y])
    assert np.array_equal(hv.targets_for(y, m, "cosine"), y)
    with pytest.raises(ValueError, match="0..2"):
        hv.targets_for([3], m)
    good = m.templates[y]
    bad = m.templates[[0, 1, 2]]
    assert float(keras.ops.mean(hv.mse_loss(good, good))) == 0
    assert float(keras.ops.mean(hv.mse_loss(good, bad))) > 0.2
    loss = hv.make_cosine_loss(m.templates, scale=10.0, centre=m.centre)
    lg, lb = (np.asarray(loss(y, o)) for o in (good, bad))
    assert lg.shape == (3,) and lg.max() < 0.01 and lb.min() > 5
    assert np.allclose(np.asarray(loss(y[:, None], good)), lg)  # (N, 1) labels too


def test_view_subset_renumbers_in_the_given_order(ham):
    """The hypervector chapter's class subset: labels renumbered in the order given, other rows out of every
    part (checked against the metadata)."""
    from hamviz.view import prepare
    view = prepare(ham, 16, seed=1)
    sub = view.subset(["mel", "nv", "bcc", "bkl"])
    assert sub.classes == ("mel", "nv", "bcc", "bkl")
    dx = ham.meta.set_index("image_id").loc[sub.image_ids, "dx"].to_numpy()
    for part, rows in sub.rows.items():
        assert set(dx[rows]) == {"mel", "nv", "bcc", "bkl"}
        np.testing.assert_array_equal(np.array(sub.classes)[sub.labels[rows]], dx[rows])
        assert set(rows) == {r for r in view.rows[part] if dx[r] in sub.classes}
    assert (sub.labels[np.isin(dx, ["akiec", "df", "vasc"])] == -1).all()
    assert view.subset(None) is view
    with pytest.raises(ValueError, match="keep"):
        view.subset(["mel", "melanoma"])


# --------------------------------------------------------------------------------------------- models
def _flat(model):
    from hamviz.models import keras
    return not any(isinstance(l, keras.Model) for l in model.layers)


def test_hd_cnn_and_hd_head_shapes():
    from hamviz.models import small_cnn
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    m = hv.hd_cnn((32, 32, 3), dim=500, dense=32, filters=(8, 16))
    assert m.output.shape[-1] == 500 and m.get_layer("hypervector").activation.__name__ == "linear"
    assert np.asarray(m(x)).shape == (2, 500) and _flat(m)
    ref = hv.hd_cnn((64, 64, 3))  # the reference sizes
    assert [l.name for l in ref.layers] == ["image", "scale", "conv1", "pool1", "conv2", "pool2", "dropout",
                                            "flatten", "dense", "hypervector"]
    assert ref.get_layer("conv1").filters == 64 and ref.get_layer("conv2").filters == 128
    assert ref.get_layer("dense").units == 1000 and ref.output.shape[-1] == 500
    # Table I's geometry at 180x180: "same" convolutions, 180 -> 180 -> 90 -> 90 -> 45, 259,200 Dense inputs
    t1 = hv.hd_cnn((180, 180, 3), dim=8, dense=1)
    assert [tuple(t1.get_layer(n).output.shape[1:3]) for n in ("conv1", "pool1", "conv2", "pool2")] == \
        [(180, 180), (90, 90), (90, 90), (45, 45)]
    assert t1.get_layer("flatten").output.shape[-1] == 45 * 45 * 128 == 259_200

    clf = small_cnn((32, 32, 3))
    h = hv.hd_head(clf, dim=64)
    assert np.asarray(h(x)).shape == (2, 64) and h.get_layer("hypervector").units == 64 and _flat(h)
    assert "predictions" not in [l.name for l in h.layers]
    assert h.get_layer("dense").input is not None
    # a copy: same weights, not the same variables
    w0 = clf.get_layer("conv1_1").get_weights()[0]
    assert np.array_equal(h.get_layer("conv1_1").get_weights()[0], w0)
    h.get_layer("conv1_1").kernel.assign(np.zeros_like(w0))
    assert np.array_equal(clf.get_layer("conv1_1").get_weights()[0], w0)
    shared = hv.hd_head(clf, dim=8, copy=False)
    assert shared.get_layer("conv1_1") is clf.get_layer("conv1_1")
    with pytest.raises(Exception, match="predictions"):
        hv.hd_head(m)
    with pytest.raises(Exception, match="at least"):
        hv.hd_cnn((3, 3, 3))


# --------------------------------------------------------------------------------------------- learning
def _colour_images(n, seed):
    """n 16x16 images of 3 classes: the red, green or blue channel dominant, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rng.shuffle(y)
    x = rng.normal(70, 35, (n, 16, 16, 3))
    x[np.arange(n), :, :, y] += rng.uniform(80, 140, n)[:, None, None]
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def colours():
    xtr, ytr = _colour_images(300, 0)
    xva, yva = _colour_images(60, 1)
    xte, yte = _colour_images(90, 2)
    return xtr, ytr, xva, yva, xte, yte


@pytest.mark.parametrize("loss,kind,augment", [("mse", "binary", None), ("cosine", "binary", True),
                                               ("cosine", "bipolar", None)])
def test_learns_synthetic_colours(colours, tmp_path, loss, kind, augment):
    from hamviz.models import keras
    xtr, ytr, xva, yva, xte, yte = colours
    mem = Memory.random(3, 256, kind=kind, seed=0, classes=["red", "green", "blue"])
    keras.utils.set_random_seed(0)
    model = hv.hd_cnn((16, 16, 3), dim=256, dense=64, filters=(8, 16), dropout=0.25)
    hist = hv.fit_hd(model, mem, xtr, ytr, xva, yva, loss=loss, epochs=6, batch_size=32, patience=3,
                     augment=augment, learning_rate=3e-3)
    assert {"loss", "val_loss", "hd_accuracy", "val_hd_accuracy", "best_epoch"} <= set(hist)
    assert hist["loss"][-1] < hist["loss"][0]
    out = hv.hypervector_outputs(model, xte)
    assert out.shape == (90, 256)
    for mode in hv.MODES:
        acc = (hv.predict(out, mem, mode) == yte).mean()
        assert acc > 0.9, (loss, kind, mode, acc)


def test_hd_feature_head_learns_from_feature_vectors():
    """The second row's head: the reference's layers after its convolutions, on feature vectors (N, C), trained
    by fit_hd like the CNN; feature vectors cannot be augmented."""
    from hamviz.models import keras
    head = hv.hd_feature_head(32, dim=128, dense=16, dropout=0.1)
    assert [l.name for l in head.layers] == ["features", "dropout", "dense", "hypervector"]
    assert head.get_layer("dense").units == 16 and head.output.shape[-1] == 128
    assert [l.name for l in hv.hd_feature_head(32, 64, dense=None).layers] == ["features", "dropout", "hypervector"]
    for bad in ({"n_features": 0}, {"dim": 0}, {"dense": -1}, {"dropout": 1.0}):
        with pytest.raises(ValueError, match="hd_feature_head"):
            hv.hd_feature_head(**{"n_features": 32, "dim": 64, **bad})
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 32)) * 3

    def features(n, seed):
        r = np.random.default_rng(seed)
        y = np.arange(n) % 3
        return (centres[y] + r.normal(0, 1, (n, 32))).astype(np.float32), y

    (xtr, ytr), (xva, yva), (xte, yte) = features(240, 1), features(60, 2), features(90, 3)
    mem = Memory.random(3, 128, seed=0)
    keras.utils.set_random_seed(0)
    head = hv.hd_feature_head(32, dim=128, dense=16, dropout=0.1)
    hist = hv.fit_hd(head, mem, xtr, ytr, xva, yva, loss="mse", epochs=8, batch_size=32, learning_rate=3e-3)
    assert hist["loss"][-1] < hist["loss"][0]
    out = hv.hypervector_outputs(head, xte)
    assert out.shape == (90, 128) and (hv.predict(out, mem) == yte).mean() > 0.9
    with pytest.raises(ValueError, match="augment"):
        hv.fit_hd(head, mem, xtr, ytr, loss="mse", epochs=1, augment=True)


def test_the_two_rows_must_hold_the_same_rows():
    """The chapter's second row is scored on the first row's test images: views that differ are refused."""
    from types import SimpleNamespace

    from hamviz.chapters.hypervector import same_rows

    def view(ids, labels, size, classes=("mel", "nv")):
        rows = {"train": np.array([0, 1]), "val": np.array([2]), "test": np.array([3, 4])}
        return SimpleNamespace(image_ids=ids, labels=np.array(labels), rows=rows, size=size, classes=classes)

    a = view(["i0", "i1", "i2", "i3", "i4"], [0, 1, 0, 1, 0], 32)
    same_rows(a, view(["i0", "i1", "i2", "i3", "i4"], [0, 1, 0, 1, 0], 64))
    with pytest.raises(ValueError, match="test part differs"):
        same_rows(a, view(["i0", "i1", "i2", "i3", "i9"], [0, 1, 0, 1, 0], 64))
    with pytest.raises(ValueError, match="val part differs"):
        same_rows(a, view(["i0", "i1", "i2", "i3", "i4"], [0, 1, 1, 1, 0], 64))
    with pytest.raises(ValueError, match="classes"):
        same_rows(a, view(["i0", "i1", "i2", "i3", "i4"], [0, 1, 0, 1, 0], 64, ("nv", "mel")))


def test_hamming_and_cosine_agree_on_bipolar_vectors():
    """For bipolar vectors, Hamming similarity is an affine map of cosine: 1 - d/D = (1 + cos) / 2, so both
    rank the templates identically and nearest-template predictions coincide."""
    mem = hv.Memory.random(5, 256, "bipolar", seed=3)
    rng = np.random.default_rng(0)
    outputs = np.sign(rng.standard_normal((40, 256))).astype(np.float32)
    outputs[outputs == 0] = 1
    ham = hv.hamming_scores(outputs, mem.templates, "bipolar")
    cos = hv.cosine_scores(outputs, mem.templates)
    np.testing.assert_allclose(ham, (1 + cos) / 2, atol=1e-6)
    np.testing.assert_array_equal(hv.predict(outputs, mem, "hamming"), hv.predict(outputs, mem, "cosine"))


def test_sweep_table_keeps_the_order_and_shows_intervals():
    from hamviz.chapters.hypervector import sweep_table
    sw = pd.DataFrame([{"quality": q, "model": m, "balanced_accuracy": v, "balanced_accuracy_low": v - 0.1,
                        "balanced_accuracy_high": v + 0.05}
                       for q, off in (("clean", 0.0), (95, -0.05), (1, -0.2)) for m, v0 in (("softmax", 0.6),
                                                                                         ("HD mse (cosine)", 0.5))
                       for v in [round(v0 + off, 3)]])
    table = sweep_table(sw)
    assert list(table.index) == ["clean", 95, 1] and list(table.columns) == ["softmax", "HD mse (cosine)"]
    assert table.loc[1, "HD mse (cosine)"] == "0.300 [0.200, 0.350]"
    plain = sweep_table(sw.drop(columns=["balanced_accuracy_low", "balanced_accuracy_high"]))
    assert plain.loc["clean", "softmax"] == 0.6


def test_largest_jpeg_loss_names_the_model_that_loses_most_at_the_lowest_quality():
    from hamviz.chapters.hypervector import largest_jpeg_loss
    sw = pd.DataFrame({"quality": ["clean", "clean", 50, 50, 5, 5], "model": ["a", "b"] * 3,
                       "balanced_accuracy": [0.60, 0.50, 0.40, 0.49, 0.55, 0.30]})
    assert largest_jpeg_loss(sw) == "b: -20.0 points of balanced accuracy, clean to quality 5"  # q5, not q50
    assert largest_jpeg_loss(sw[sw["quality"] == "clean"]) is None
