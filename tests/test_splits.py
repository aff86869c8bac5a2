"""hamviz.splits: grouped stratified splits, exact fractions, determinism, and the leak they prevent."""
import numpy as np
import pytest

from hamviz.splits import folds_for, get_split, lesion_overlap, make_split, split_summary


def test_grouped_split_on_real_data(ham):
    split = make_split(ham.meta, (0.7, 0.2, 0.1), seed=3)
    assert lesion_overlap(ham.meta, split) == {"train/val": 0, "train/test": 0, "val/test": 0}
    table = split_summary(ham.meta, split)
    shares = table.loc["total", ["train", "val", "test"]] / len(ham)
    np.testing.assert_allclose(shares.to_numpy(dtype=float), [0.7, 0.2, 0.1], atol=0.01)
    # stratified: every class in every part, each class near 70/20/10
    body = table.drop(index="total")
    assert (body[["train", "val", "test"]] > 0).all().all()
    per_class = body["test"] / body["total"]
    assert per_class.between(0.06, 0.14).all(), per_class


def test_image_level_split_leaks(ham):
    leaky = make_split(ham.meta, seed=3, grouped=False)
    assert sum(lesion_overlap(ham.meta, leaky).values()) > 500


def test_deterministic_and_seeded(ham):
    a = make_split(ham.meta, seed=1)
    assert a.equals(make_split(ham.meta, seed=1))
    assert not a.equals(make_split(ham.meta, seed=2))


def test_saved_split_is_reused(ham, tmp_path):
    a = get_split(ham, seed=5, cache_root=tmp_path)
    files = list((tmp_path / "splits").iterdir())
    assert len(files) == 1
    b = get_split(ham, seed=5, cache_root=tmp_path)
    assert a.equals(b)


@pytest.mark.parametrize("fractions,expected", [((0.7, 0.2, 0.1), (10, [7, 2, 1])),
                                                ((0.8, 0.1, 0.1), (10, [8, 1, 1])),
                                                ((0.6, 0.2, 0.2), (5, [3, 1, 1])),
                                                ((0.75, 0.0, 0.25), (4, [3, 0, 1]))])
def test_folds_for(fractions, expected):
    assert folds_for(fractions) == expected


@pytest.mark.parametrize("bad", [(0.7, 0.2), (0.7, 0.2, 0.2), (0.9, 0.1, 0.0), (0.705, 0.2, 0.095)])
def test_bad_fractions(bad):
    with pytest.raises(ValueError, match="fractions"):
        folds_for(bad)
