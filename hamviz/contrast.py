"""Lesion-vs-skin colour contrast, and the contrast hypothesis of the joint-training study in numbers.

Contrast: the CIEDE2000 colour difference (Sharma, Wu & Dalal 2005, as in scikit-image's ``deltaE_ciede2000``)
between the mean CIELAB colour inside a lesion mask and a ring of skin around it.

The joint-training reference (Doctor) concluded, from looking at reconstructions, that the jointly trained
autoencoder keeps mostly the lesion-skin boundary and that low lesion contrast drives the classifier's errors.
:func:`error_by_bins` and :func:`contrast_verdict` test the second claim, :func:`boundary_energy` and
:func:`boundary_verdict` the first.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2lab

from .registry import CLASSES


def to_lab(images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """CIELAB (float32) of uint8 RGB images (N, H, W, 3), in chunks to bound memory."""
    out = np.empty(images.shape, dtype=np.float32)
    for s in range(0, len(images), chunk):
        out[s:s + chunk] = rgb2lab(np.asarray(images[s:s + chunk]))
    return out


def ring_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """The band of skin ``width`` pixels wide around a lesion mask (outside the lesion)."""
    grown = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=width)
    return grown & ~mask


def ring_width(ring: float, size) -> int:
    """The skin ring's width in pixels: ``ring`` (a fraction) of the longer image edge of ``size`` (H, W), at
    least 1."""
    return max(1, int(round(ring * max(size))))


def lesion_contrast(images: np.ndarray, masks: np.ndarray, labels=None, ring: float = 0.1,
                    lab: np.ndarray | None = None) -> pd.DataFrame:
    """Lesion-vs-skin colour contrast per image, from the lesion masks: images uint8 (N, H, W, 3), masks bool
    (N, H, W), labels (N,) optional. ValueError if their shapes differ.

    For each image: the lesion's area fraction; the mean CIELAB colour inside the mask and in a ring of
    skin around it (``ring`` x image edge wide); their colour difference as CIEDE2000 (``dE2000``) and
    CIE76 (``dE76``, Euclidean in Lab); and the lightness difference ``dL`` (skin minus lesion, > 0 for
    a lesion darker than its skin). Images whose mask is empty, or leaves no skin ring, get NaN.
    """
    images, masks = np.asarray(images), np.asarray(masks, dtype=bool)
    if images.shape[:3] != masks.shape:
        raise ValueError(f"images {images.shape[:3]} and masks {masks.shape} differ in shape")
    lab = to_lab(images) if lab is None else lab
    width = ring_width(ring, masks.shape[1:])
    n = len(images)
    lesion_lab = np.full((n, 3), np.nan, np.float32)
    skin_lab = np.full((n, 3), np.nan, np.float32)
    area = masks.mean(axis=(1, 2))
    for i in range(n):
        m = masks[i]
        if not m.any():
            continue
        r = ring_mask(m, width)
        if not r.any():
            continue
        lesion_lab[i] = lab[i][m].mean(axis=0)
        skin_lab[i] = lab[i][r].mean(axis=0)
    ok = ~np.isnan(lesion_lab[:, 0])
    de2000 = np.full(n, np.nan, np.float32)
    de2000[ok] = deltaE_ciede2000(lesion_lab[ok], skin_lab[ok])
    out = pd.DataFrame({
        "area": area, "dE2000": de2000,
        "dE76": np.linalg.norm(lesion_lab - skin_lab, axis=1),
        "dL": skin_lab[:, 0] - lesion_lab[:, 0],
        "lesion_L": lesion_lab[:, 0], "skin_L": skin_lab[:, 0],
    })
    if labels is not None:
        out.insert(0, "dx", np.asarray(CLASSES)[np.asarray(labels)])
    return out



def gradient_magnitude(images) -> np.ndarray:
    """Sobel gradient magnitude of the luminance, per image (N, H, W)."""
    x = np.asarray(images, dtype=np.float32)
    lum = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    # 2-D kernels with a singleton batch axis: ndimage.sobel on the stack would also smooth across images
    kx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)[None]
    gx = ndimage.correlate(lum, kx, mode="reflect")
    gy = ndimage.correlate(lum, kx.transpose(0, 2, 1), mode="reflect")
    return np.hypot(gx, gy)


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the lesion boundary (inside or outside)."""
    m = np.asarray(mask, dtype=bool)
    st = np.ones((3, 3), bool)
    grown = ndimage.binary_dilation(m, st, iterations=width)
    shrunk = ndimage.binary_erosion(m, st, iterations=width, border_value=1)
    return grown & ~shrunk


def boundary_energy(images, masks, width: int = 2) -> np.ndarray:
    """Share of each image's gradient energy (squared magnitude) lying in the band around the mask
    boundary; NaN where the mask is empty or full. The band's own share of the pixels is what a
    boundary-indifferent image would give."""
    g2 = gradient_magnitude(images) ** 2
    out = np.full(len(g2), np.nan)
    for i, m in enumerate(np.asarray(masks, dtype=bool)):
        if not m.any() or m.all():
            continue
        band = boundary_band(m, width)
        total = g2[i].sum()
        out[i] = g2[i][band].sum() / total if total > 0 else np.nan
    return out


def band_share(masks, width: int = 2) -> np.ndarray:
    """Fraction of pixels in the boundary band (the share a boundary-indifferent image would have)."""
    return np.array([boundary_band(m, width).mean() if np.asarray(m).any() and not np.asarray(m).all()
                     else np.nan for m in np.asarray(masks, dtype=bool)])


def error_by_bins(values, errors: dict[str, np.ndarray], n_bins: int = 4) -> pd.DataFrame:
    """Error rate per quantile bin of ``values`` (e.g. lesion contrast) for each named model; rows = bins
    (with their value range and count), columns = models. Images with NaN values are left out."""
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    bins = pd.qcut(v[ok], n_bins, duplicates="drop")
    out = pd.DataFrame({name: pd.Series(np.asarray(e, dtype=float)[ok]).groupby(bins.codes).mean().to_numpy()
                        for name, e in errors.items()})
    out.insert(0, "n", np.bincount(bins.codes))
    out.index = [str(c) for c in bins.categories]
    out.index.name = "bin"
    return out


def contrast_verdict(contrast, errors: dict[str, np.ndarray], labels, classes) -> tuple[pd.DataFrame, list[str]]:
    """Does lesion contrast predict the classifier's errors? Per model: mean contrast of misclassified vs
    correctly classified test images with a Mann-Whitney U test, and across classes the Spearman correlation
    between a class's median contrast and its recall. Returns the table and one plain sentence per model."""
    from scipy.stats import mannwhitneyu, spearmanr
    c = np.asarray(contrast, dtype=float)
    ok = ~np.isnan(c)
    labels = np.asarray(labels)
    rows, lines = [], []
    med = np.array([np.nanmedian(c[labels == k]) if (labels == k).any() else np.nan for k in range(len(classes))])
    for name, err in errors.items():
        e = np.asarray(err, dtype=bool)
        wrong, right = c[ok & e], c[ok & ~e]
        p = mannwhitneyu(wrong, right, alternative="less").pvalue if len(wrong) and len(right) else np.nan
        recall = np.array([1 - e[labels == k].mean() if (labels == k).any() else np.nan
                           for k in range(len(classes))])
        keep = ~np.isnan(med) & ~np.isnan(recall)
        rho, rho_p = spearmanr(med[keep], recall[keep]) if keep.sum() > 2 else (np.nan, np.nan)
        rows.append({"model": name,
                     "contrast of errors (median dE2000)": float(np.median(wrong)) if len(wrong) else np.nan,
                     "contrast of correct (median dE2000)": float(np.median(right)) if len(right) else np.nan,
                     "Mann-Whitney p (errors lower)": float(p), "Spearman rho (class contrast vs recall)": float(rho),
                     "Spearman p": float(rho_p)})
    table = pd.DataFrame(rows).set_index("model")
    from .replicates import holm
    table["Holm-adjusted p"] = pd.Series(holm(table["Mann-Whitney p (errors lower)"].dropna().to_dict()))
    for name, r in table.iterrows():
        lines.append(f"{name}: misclassified images have median contrast {r['contrast of errors (median dE2000)']:.1f} "
                     f"vs {r['contrast of correct (median dE2000)']:.1f} for correct ones (one-sided Mann-Whitney on "
                     f"images, p = {r['Mann-Whitney p (errors lower)']:.2g}, "
                     f"Holm-adjusted over the {len(table)} models "
                     f"p = {r['Holm-adjusted p']:.2g}; images of one lesion are not independent and classes differ in "
                     f"contrast, so the verdict is the class-stratified, lesion-level one in the answers); across "
                     f"classes, contrast vs recall Spearman rho = {r['Spearman rho (class contrast vs recall)']:.2f} "
                     f"(p = {r['Spearman p']:.2g}).")
    return table, lines


def contrast_gap(contrast, errors: list[np.ndarray], labels, groups=None, n_boot: int = 1000, seed: int = 0,
                 min_count: int = 5):
    """The class-stratified contrast gap of a model's errors, per replicate: within each class, the mean contrast
    of the misclassified test images minus that of the correctly classified ones, averaged (equal weights) over
    one fixed set of classes — those with at least ``min_count`` errors and ``min_count`` correct answers in every
    replicate — so that a class that is both low-contrast and hard cannot make the gap by itself, and every
    replicate and resample averages the same classes. ``contrast`` (N,) (NaN: no mask, left out), ``errors``: R
    bool arrays (N,) (one per replicate), ``labels`` (N,). Returns (gaps (R,), draws (R, B), classes used): the gap
    on the data and on B bootstrap resamples of the lesions (``groups``, (N,)), the same resamples for every
    replicate; a resample that loses a fixed class's errors or correct answers is NaN in every row (and left out
    of the interval). Negative: errors have lower contrast (the reference's claim). No class qualifies: all NaN."""
    from .metrics import bootstrap_weights
    c = np.asarray(contrast, dtype=float)
    ok = ~np.isnan(c)
    labels = np.asarray(labels)
    errs = [np.asarray(e, dtype=bool) for e in errors]
    fixed = [k for k in np.unique(labels)
             if all(min((ok & (labels == k) & e).sum(), (ok & (labels == k) & ~e).sum()) >= min_count for e in errs)]
    W = np.vstack([np.ones(len(c)), bootstrap_weights(len(c), n_boot, np.random.default_rng(seed), groups)])
    Wc, cz = W * ok, np.where(ok, c, 0.0)
    out = []
    for e in errs:
        gaps = []
        for k in fixed:
            we, wr = Wc * ((labels == k) & e), Wc * ((labels == k) & ~e)
            se, sr = we.sum(1), wr.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                gaps.append(np.where((se > 0) & (sr > 0), we @ cz / se - wr @ cz / sr, np.nan))
        out.append(np.vstack(gaps).mean(axis=0) if gaps else np.full(len(W), np.nan))  # NaN if a class is lost
    out = np.vstack(out)
    return out[:, 0], out[:, 1:], [int(k) for k in fixed]


def boundary_verdict(shares: dict[str, np.ndarray], baseline: np.ndarray, joint_names, standalone_names):
    """Mean boundary-band share of gradient energy per image source, and a paired Wilcoxon test of each joint
    autoencoder against its standalone counterpart. Returns (table, sentences)."""
    from scipy.stats import wilcoxon
    table = pd.DataFrame({k: {"mean share of gradient energy in the boundary band": float(np.nanmean(v)),
                              "median": float(np.nanmedian(v))} for k, v in shares.items()}).T
    table.loc["(band's share of pixels)"] = [float(np.nanmean(baseline)), float(np.nanmedian(baseline))]
    lines = []
    for j, s in zip(joint_names, standalone_names):
        a, b = np.asarray(shares[j]), np.asarray(shares[s])
        ok = ~np.isnan(a) & ~np.isnan(b)
        p = wilcoxon(a[ok], b[ok], alternative="greater").pvalue if ok.sum() > 10 else np.nan
        lines.append(f"{j}: {np.nanmean(a):.3f} of the gradient energy lies in the boundary band vs "
                     f"{np.nanmean(b):.3f} for {s} (paired Wilcoxon on images, joint > standalone: p = {p:.2g}; "
                     f"the verdict over replicates and lesions is in the answers).")
    return table, lines

