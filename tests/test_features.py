"""hamviz.features: frozen-backbone features computed once, keyed by what determines them, verified on read."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from hamviz.registry import HUB_BACKBONES

SHARED = Path(os.environ["HAMVIZ_WEIGHTS"])
pytestmark = pytest.mark.skipif(not (SHARED / HUB_BACKBONES["efficientnet_lite0"][0] / "config.json").is_file(),
                                reason="the EfficientNet-Lite0 preset is not there")


@pytest.fixture(scope="module")
def small_view(ham, tmp_path_factory):
    from hamviz.view import prepare
    ids = ham.meta.groupby("dx").head(12)["image_id"].tolist()
    ds = dataclasses.replace(ham.subset(ids), fingerprint=f"{ham.fingerprint}-features-84")
    return prepare(ds, 32, seed=0, masks=False, cache_root=tmp_path_factory.mktemp("fcache"))


def test_features_are_computed_once_and_match_the_backbone(small_view, tmp_path, monkeypatch):
    import hamviz.models as models
    from hamviz.features import backbone_features
    said = []
    first = backbone_features(small_view, cache_root=tmp_path, log=said.append)
    assert first.shape == (84, 1280) and first.dtype == np.float32 and len(said) == 1
    # the same as running the frozen backbone and its pooling by hand
    net = models.build_model("efficientnet_lite0", (32, 32, 3), 2, weights="imagenet", trainable="frozen")
    ref = models.keras.Model(net.input, net.get_layer("head_pool").output).predict(small_view.images, verbose=0)
    np.testing.assert_allclose(first, ref, rtol=1e-4, atol=1e-4)
    # a second call reads the entry: no model is built
    monkeypatch.setattr(models, "build_model", lambda *a, **k: pytest.fail("features recomputed"))
    np.testing.assert_array_equal(backbone_features(small_view, cache_root=tmp_path, log=said.append), first)
    assert len(said) == 1


def test_flips_have_their_own_key_and_a_damaged_entry_is_recomputed(small_view, tmp_path):
    from hamviz.features import backbone_features
    plain = backbone_features(small_view, cache_root=tmp_path, log=lambda *_: None)
    flipped = backbone_features(small_view, flips="hv", cache_root=tmp_path, log=lambda *_: None)
    assert len(list((tmp_path / "features").iterdir())) == 2 and not np.allclose(plain, flipped)
    entry = next(p for p in (tmp_path / "features").iterdir() if "-none-" in p.name)
    data = bytearray((entry / "features.npy").read_bytes())
    data[-7] ^= 0xFF
    (entry / "features.npy").write_bytes(bytes(data))
    said = []
    again = backbone_features(small_view, cache_root=tmp_path, log=said.append)
    assert said and np.allclose(again, plain, atol=1e-5)
    with pytest.raises(ValueError, match="flips"):
        backbone_features(small_view, flips="rot", cache_root=tmp_path)


def test_image_features_of_arrays_are_the_cached_features(small_view, tmp_path):
    """Features of arbitrary uint8 arrays (e.g. JPEG-coded test images) come from the same backbone and
    preprocessing as the cached ones: the same images give the same vectors, with or without flips."""
    from hamviz.features import backbone_features, image_features
    cached = backbone_features(small_view, cache_root=tmp_path, log=lambda *_: None)
    images = small_view.images
    np.testing.assert_allclose(image_features(images[:5]), cached[:5], rtol=1e-4, atol=1e-4)
    both = image_features({"a": images[:3], 95: images[10:12]})  # one backbone for several arrays
    assert set(both) == {"a", 95} and both[95].shape == (2, 1280) and both[95].dtype == np.float32
    np.testing.assert_allclose(both["a"], cached[:3], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(both[95], cached[10:12], rtol=1e-4, atol=1e-4)
    flipped = backbone_features(small_view, flips="hv", cache_root=tmp_path, log=lambda *_: None)
    np.testing.assert_allclose(image_features(images[:4], flips="hv"), flipped[:4], rtol=1e-4, atol=1e-4)
    # another image gives another vector
    assert not np.allclose(image_features(images[20:21]), cached[:1], atol=1e-3)
    with pytest.raises(ValueError, match="uint8"):
        image_features(images[:2].astype(np.float32))
    with pytest.raises(ValueError, match="one size"):
        image_features({"a": images[:2], "b": np.zeros((2, 48, 48, 3), np.uint8)})
    with pytest.raises(ValueError, match="flips"):
        image_features(images[:2], flips="rot")
