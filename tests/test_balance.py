"""hamviz.balance: oversampling and class weights."""
import numpy as np
import pytest

from hamviz.balance import class_weights, oversample, per_class


def test_oversample_below():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 500)
    idx = oversample(labels, "below", min_size=100, seed=0)
    counts = np.bincount(labels[idx])
    assert counts.tolist() == [100, 100, 500]
    assert set(idx) == set(range(len(labels)))  # every original row kept
    assert np.array_equal(idx, oversample(labels, "below", min_size=100, seed=0))


def test_oversample_majority_and_none():
    labels = np.array([0] * 3 + [1] * 10)
    assert np.bincount(labels[oversample(labels, "majority")]).tolist() == [10, 10]
    assert sorted(oversample(labels, "none")) == list(range(13))
    with pytest.raises(ValueError, match="oversampling mode"):
        oversample(labels, "smote")


def test_per_class_gives_every_class_exactly_n():
    """The hypervector reference's 600 of each class: larger classes subsampled without repeats, smaller ones
    repeated whole first (every row at least twice for a class of 5 asked for 12), absent classes stay absent."""
    labels = np.array([0] * 50 + [1] * 5 + [3] * 500)
    idx = per_class(labels, 12, seed=0)
    assert np.bincount(labels[idx]).tolist() == [12, 12, 0, 12]
    big = idx[labels[idx] == 3]
    assert len(set(big)) == 12  # subsampled, no row twice
    small = np.bincount(idx[labels[idx] == 1], minlength=55)[50:55]
    assert small.min() == 2 and small.sum() == 12
    assert np.array_equal(idx, per_class(labels, 12, seed=0)) and not np.array_equal(idx, per_class(labels, 12,
                                                                                                     seed=1))
    with pytest.raises(ValueError, match="at least 1"):
        per_class(labels, 0)


def test_class_weights_balanced(ham):
    w = class_weights(ham.labels, 7)
    counts = np.bincount(ham.labels)
    # weight x count is the same for every class
    np.testing.assert_allclose([w[c] * counts[c] for c in range(7)], len(ham.labels) / 7)
    assert class_weights(np.array([0, 0, 2]), 3)[1] == 0.0


def test_cap_per_class_keeps_at_most_n_originals():
    """Barros Everett's 'about 400 originals' per class: a larger class keeps n of its rows (no repeats), a
    smaller one all of them; per_class then repeats them up to 600."""
    from hamviz.balance import cap_per_class, per_class
    y = np.array([0] * 10 + [1] * 3 + [2] * 6)
    keep = cap_per_class(y, 5, seed=1)
    assert np.bincount(y[keep]).tolist() == [5, 3, 5] and len(set(keep)) == len(keep)
    assert (keep == np.sort(keep)).all() and (keep == cap_per_class(y, 5, seed=1)).all()
    assert set(keep[y[keep] == 1]) == {10, 11, 12}
    up = keep[per_class(y[keep], 8, seed=1)]
    assert np.bincount(y[up]).tolist() == [8, 8, 8] and set(up) == set(keep)  # repeats of the kept originals only
    with pytest.raises(ValueError):
        cap_per_class(y, 0)
