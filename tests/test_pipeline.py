"""hamviz.pipeline: tf.data batches from cached arrays, and the augmentation layers."""
import numpy as np
import pytest

from hamviz.pipeline import augmentation, make_dataset, random_rot90_layer


def test_dataset_shapes_and_onehot():
    x = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    y = np.arange(10) % 7
    batches = list(make_dataset(x, y, batch_size=4, n_classes=7, scale=True))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    xb, yb = batches[0]
    assert yb.shape == (4, 7) and float(xb.numpy().max()) <= 1.0
    np.testing.assert_allclose(xb.numpy(), x[:4] / 255.0, rtol=1e-6)


def test_augmented_batches_differ_but_keep_shape():
    x = np.random.default_rng(1).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    ds = make_dataset(x, np.zeros(8), batch_size=8, augment=True, seed=3)
    a = next(iter(ds))[0].numpy()
    assert a.shape == (8, 16, 16, 3) and not np.allclose(a, x)


def test_targets_and_pack_see_the_augmented_batch():
    """Float targets pass through unchanged; pack builds the element from the *augmented* images (an
    autoencoder's or a joint model's reconstruction target), so input and target always match."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    keys = rng.normal(size=(8, 5)).astype("float32")
    xb, tb = next(iter(make_dataset(x, targets=keys, batch_size=8)))
    np.testing.assert_array_equal(tb.numpy(), keys)
    flips = {"rot90": False, "flip": True, "zoom": 0.0, "shift": 0.0}
    ds = make_dataset(x, np.arange(8) % 7, batch_size=8, n_classes=7, augment=flips, seed=1,
                      pack=lambda a, y: (a, {"class": y, "reconstruction": a / 255.0}))
    a, y = next(iter(ds))
    assert not np.array_equal(a.numpy(), x)  # augmented (a dict of augmentation options works)
    np.testing.assert_allclose(y["reconstruction"].numpy() * 255.0, a.numpy(), rtol=1e-6)
    assert y["class"].shape == (8, 7)
    with pytest.raises(ValueError, match="labels or targets"):
        make_dataset(x, np.zeros(8), targets=keys)
    with pytest.raises(ValueError, match="8 images but 3 targets"):
        make_dataset(x, targets=keys[:3])


def test_rot90_rotates_by_quarter_turns():
    x = np.random.default_rng(2).random((64, 8, 8, 3)).astype("float32")
    out = random_rot90_layer()(seed=0)(x, training=True).numpy()
    for i in range(64):
        assert any(np.array_equal(out[i], np.rot90(x[i], k)) for k in range(4))
    assert len({tuple(out[i, 0, 0]) == tuple(x[i, 0, 0]) for i in range(64)}) == 2  # some moved


def test_bad_arguments():
    with pytest.raises(ValueError, match="zoom"):
        augmentation(zoom=1.5)
    with pytest.raises(ValueError, match="labels"):
        make_dataset(np.zeros((3, 8, 8, 3), np.uint8), [1, 2])


@pytest.mark.parametrize("augment", [None, {"rot90": True, "flip": True, "zoom": 0.0, "shift": 0.0}])
def test_rows_gather_inside_tf_data_the_same_batches_as_copies(augment):
    """Oversampled training rows are gathered batch by batch (each image held once), yielding exactly the
    batches of the materialised copy images[rows], augmentation and shuffling included; feature vectors too."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    rows = np.array([3, 3, 3, 0, 7, 11, 11, 5, 3, 0])  # repeats, as oversampling makes them
    labels = rows % 7

    def batches(**kw):
        return [tuple(np.asarray(t) for t in b)
                for b in make_dataset(batch_size=4, shuffle=True, seed=3, n_classes=7, augment=augment, **kw)]

    by_index = batches(images=images, labels=labels, rows=rows)
    copied = batches(images=images[rows], labels=labels)
    assert [b[0].shape[0] for b in by_index] == [4, 4, 2]
    for a, b in zip(by_index, copied, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    feats = rng.random((12, 5)).astype(np.float32)
    got = np.concatenate([np.asarray(x) for x, _ in make_dataset(feats, labels, rows=rows, batch_size=4,
                                                                  n_classes=7)])
    np.testing.assert_array_equal(got, feats[rows])
    with pytest.raises(ValueError, match="integer indices"):
        make_dataset(images, labels, rows=rows.astype(float))
