"""Exploratory statistics of HAM10000: class balance, repeat shots, demographics, colour, lesion contrast.

Pure functions of the metadata table and the cached image/mask arrays; figures live in :mod:`hamviz.plots`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2lab

from .data import CLASSES


def class_counts(meta: pd.DataFrame) -> pd.DataFrame:
    """Images and lesions per class, each class's share of the images, and majority/class ratio."""
    images = meta["dx"].value_counts().reindex(CLASSES, fill_value=0)
    lesions = meta.groupby("dx")["lesion_id"].nunique().reindex(CLASSES, fill_value=0)
    out = pd.DataFrame({"images": images, "lesions": lesions})
    out["share"] = out["images"] / out["images"].sum()
    out["majority_ratio"] = out["images"].max() / out["images"].where(out["images"] > 0)
    out.index.name = "dx"
    return out


def images_per_lesion(meta: pd.DataFrame, cap: int = 4) -> pd.DataFrame:
    """Lesions per class (rows) by how many images each has (columns 1 .. cap, 'cap+' the rest)."""
    per = meta.groupby("lesion_id").agg(dx=("dx", "first"), n=("image_id", "size"))
    labels = [str(i) for i in range(1, cap)] + [f"{cap}+"]
    per["images"] = pd.Categorical([labels[min(n, cap) - 1] for n in per["n"]], categories=labels)
    table = pd.crosstab(pd.Categorical(per["dx"], categories=CLASSES), per["images"], dropna=False)
    table.index.name, table.columns.name = "dx", "images per lesion"
    return table


def by_class(meta: pd.DataFrame, column: str, normalize: bool = True, top: int | None = None,
             missing: str = "unknown") -> pd.DataFrame:
    """Crosstab of ``column`` (rows) by class (columns); column shares when ``normalize``.
    ``top`` keeps the most frequent values and groups the rest as 'other'."""
    values = meta[column].fillna(missing).astype(str)
    if top is not None:
        keep = values.value_counts().index[:top]
        values = values.where(values.isin(keep), "other")
    table = pd.crosstab(values, pd.Categorical(meta["dx"], categories=CLASSES), dropna=False,
                        normalize="columns" if normalize else False)
    table.index.name, table.columns.name = column, "dx"
    return table


def to_lab(images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """CIELAB (float32) of uint8 RGB images (N, H, W, 3), in chunks to bound memory."""
    out = np.empty(images.shape, dtype=np.float32)
    for s in range(0, len(images), chunk):
        out[s:s + chunk] = rgb2lab(np.asarray(images[s:s + chunk]))
    return out


def colour_stats(images: np.ndarray, labels, lab: np.ndarray | None = None) -> pd.DataFrame:
    """Per-image mean R, G, B and L*, a*, b* (one row per image, with its class)."""
    lab = to_lab(images) if lab is None else lab
    rgb = np.asarray(images, dtype=np.float32).mean(axis=(1, 2))
    labm = lab.mean(axis=(1, 2))
    return pd.DataFrame({"dx": np.asarray(CLASSES)[np.asarray(labels)],
                         "R": rgb[:, 0], "G": rgb[:, 1], "B": rgb[:, 2],
                         "L*": labm[:, 0], "a*": labm[:, 1], "b*": labm[:, 2]})


def ring_mask(mask: np.ndarray, width: int) -> np.ndarray:
    """The band of skin ``width`` pixels wide around a lesion mask (outside the lesion)."""
    grown = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=width)
    return grown & ~mask


def lesion_contrast(images: np.ndarray, masks: np.ndarray, labels=None, ring: float = 0.1,
                    lab: np.ndarray | None = None) -> pd.DataFrame:
    """Lesion-vs-skin colour contrast per image, from the lesion masks.

    For each image: the lesion's area fraction; the mean CIELAB colour inside the mask and in a ring of
    skin around it (``ring`` x image edge wide); their colour difference as CIEDE2000 (``dE2000``) and
    CIE76 (``dE76``, Euclidean in Lab); and the lightness difference ``dL`` (skin minus lesion, > 0 for
    a lesion darker than its skin). Images whose mask is empty, or leaves no skin ring, get NaN.
    """
    images, masks = np.asarray(images), np.asarray(masks, dtype=bool)
    if images.shape[:3] != masks.shape:
        raise ValueError(f"images {images.shape[:3]} and masks {masks.shape} differ in shape")
    lab = to_lab(images) if lab is None else lab
    width = max(1, int(round(ring * max(masks.shape[1:]))))
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


def summarise_by_class(table: pd.DataFrame, columns) -> pd.DataFrame:
    """Median and inter-quartile range of ``columns`` per class."""
    g = table.groupby("dx")[list(columns)]
    med, q1, q3 = g.median(), g.quantile(0.25), g.quantile(0.75)
    parts = {f"{c} median": med[c] for c in columns}
    parts.update({f"{c} IQR": (q3[c] - q1[c]) for c in columns})
    out = pd.DataFrame(parts).reindex([c for c in CLASSES if c in med.index])
    return out[[f"{c} {s}" for c in columns for s in ("median", "IQR")]]


def sample_ids(meta: pd.DataFrame, per_class: int, seed: int = 0) -> dict[str, list[str]]:
    """``per_class`` image ids of each class, drawn at random (seeded), one per lesion where possible."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in CLASSES:
        sub = meta[meta["dx"] == c].drop_duplicates("lesion_id")
        if len(sub):
            pick = rng.choice(len(sub), size=min(per_class, len(sub)), replace=False)
            out[c] = sub["image_id"].iloc[np.sort(pick)].tolist()
    return out


def gallery_images(meta: pd.DataFrame, samples: dict[str, list[str]], width: int = 150) -> dict:
    """Decoded sample images ``width`` pixels wide, keeping each image's aspect ratio."""
    from .cache import decode
    paths = meta.set_index("image_id")["path"]
    out = {}
    for c, ids in samples.items():
        imgs = []
        for i in ids:
            with Image.open(paths[i]) as im:
                w, h = im.size
            imgs.append(decode(paths[i], (max(8, round(width * h / w)), width)))
        out[c] = imgs
    return out
