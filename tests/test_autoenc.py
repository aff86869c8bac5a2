"""hamviz.autoenc: latent rates with known answers, and a real (tiny) autoencoder training round trip."""
import numpy as np
import pytest

from hamviz.autoenc import AEConfig, dequantised, latent_rate, reconstruct, train_or_load_ae
from hamviz.cache import build_cache
from hamviz.splits import get_split, split_indices


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
    cache = build_cache(ham, 16)
    split = get_split(ham, seed=2)
    rows = split_indices(ham.meta.set_index("image_id").loc[cache.image_ids].reset_index(), split)
    labels = ham.meta.set_index("image_id").loc[cache.image_ids, "label"].to_numpy()
    cfg = AEConfig(ratio=3, image_size=16, filters=(8, 16), epochs=1, train_limit=300, seed=1)
    ae = train_or_load_ae(cfg, cache, rows, labels, ham.fingerprint, cache_root=tmp_path, log=lambda *_: None)
    assert not ae.loaded and len(ae.test_mae) == len(rows["test"]) and np.isfinite(ae.test_mae).all()
    assert 0 < ae.test_mae.mean() < 128
    again = train_or_load_ae(cfg, cache, rows, labels, ham.fingerprint, cache_root=tmp_path)
    assert again.loaded and again.key == ae.key
    rec = reconstruct(again.model, np.asarray(cache.images[rows["test"][:4]]))
    assert rec.dtype == np.uint8 and rec.shape == (4, 16, 16, 3)
    with pytest.raises(Exception, match="cache holds"):
        train_or_load_ae(AEConfig(image_size=32), cache, rows, labels, ham.fingerprint, cache_root=tmp_path)
