"""hamviz.autoenc: latent rates with known answers, and a real (tiny) autoencoder training round trip."""
import dataclasses

import numpy as np
import pytest

from hamviz.autoenc import AEConfig, dequantised, latent_rate, reconstruct, train_autoencoder
from hamviz.view import prepare


def test_latent_rate_known_answers():
    rng = np.random.default_rng(0)
    z = rng.random((10, 16, 16, 8)).astype(np.float32)  # 6x smaller than 64x64x3
    r = latent_rate(z, 64 * 64)
    assert r["float32_bpp"] == 32 * 16 * 16 * 8 / 4096 == 16.0
    assert r["quantised_bpp"] == 4.0
    assert 3.5 < r["entropy_coded_bpp"] <= 4.0  # uniform values: entropy close to 8 bits per value
    const = np.zeros((4, 16, 16, 8), np.float32)
    assert latent_rate(const, 4096)["entropy_coded_bpp"] == 0.0
    assert np.abs(dequantised(z) - z).max() <= (1 / 255) / 2 + 1e-6


def test_train_and_reload_autoencoder(ham, tmp_path):
    view = prepare(ham, 16, seed=2)
    cfg = AEConfig(ratio=3, image_size=16, filters=(8, 16), epochs=1, train_limit=300, seed=1)
    ae = train_autoencoder(cfg, view, cache_root=tmp_path, log=lambda *_: None)
    mae = ae.arrays["test_mae"]
    assert not ae.loaded and len(mae) == len(view.rows["test"]) and np.isfinite(mae).all()
    again = train_autoencoder(cfg, view, cache_root=tmp_path)
    assert again.loaded and again.key == ae.key
    test = np.asarray(view.cache.images[view.rows["test"]])
    rec = reconstruct(again.model, test)
    assert rec.dtype == np.uint8 and rec.shape == test.shape
    # the stored per-image MAE is the reloaded model's error on exactly the test part
    np.testing.assert_allclose(np.abs(rec.astype(np.float32) - test).mean(axis=(1, 2, 3)), mae, atol=0.51)
    # the rows it was trained on are part of its key: other rows, another model
    rows = dict(view.rows, train=view.rows["train"][::2])
    assert train_autoencoder(cfg, view, rows=rows, cache_root=tmp_path, log=lambda *_: None).key != ae.key
    # early stopping on a class-stratified subset of the validation part: its own model, its rows recorded
    small = train_autoencoder(dataclasses.replace(cfg, val_limit=60), view, cache_root=tmp_path,
                              log=lambda *_: None)
    assert small.key != ae.key and len(small.rows["val"]) == 60 < len(view.rows["val"])
    assert set(small.rows["val"]) <= set(view.rows["val"]) and len(small.arrays["test_mae"]) == len(mae)
    assert set(view.labels[small.rows["val"]]) == set(view.labels[view.rows["val"]])  # stratified: every class
    with pytest.raises(Exception, match="view holds 16x16"):
        train_autoencoder(AEConfig(image_size=32), view, cache_root=tmp_path)
