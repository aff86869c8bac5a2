"""The EDA chapter (``01_eda``): class balance, repeat shots, demographics, colour statistics, sample images.

Pure functions of the metadata table and the cached image arrays; lesion contrast is :mod:`hamviz.contrast`,
figures are :mod:`hamviz.plots`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..contrast import ring_width, to_lab
from ..registry import CLASSES


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


def class_mix_by_subgroup(meta: pd.DataFrame) -> pd.DataFrame:
    """The classifier chapter's subgroups (:func:`hamviz.subgroups.subgroup_columns`: sex, age band, body site,
    how the diagnosis was confirmed) and each group's class mix: one row per (attribute, group) with its images,
    lesions and the share of each class in % of its images. Raises ValueError naming a missing metadata column."""
    from ..subgroups import group_order, subgroup_columns
    groups = subgroup_columns(meta)
    parts = []
    for attr in groups.columns:
        g = groups[attr]
        mix = 100 * pd.crosstab(g, pd.Categorical(meta["dx"], categories=CLASSES), dropna=False, normalize="index")
        mix.insert(0, "lesions", meta.groupby(g)["lesion_id"].nunique())
        mix.insert(0, "images", g.value_counts())
        mix = mix.loc[sorted(mix.index, key=group_order)]
        parts.append(mix.assign(attribute=attr).rename_axis("group").reset_index())
    out = pd.concat(parts).set_index(["attribute", "group"])
    out.columns.name = None
    return out


def colour_stats(images: np.ndarray, labels, lab: np.ndarray | None = None) -> pd.DataFrame:
    """Per-image mean R, G, B and L*, a*, b* (one row per image, with its class)."""
    lab = to_lab(images) if lab is None else lab
    rgb = np.asarray(images, dtype=np.float32).mean(axis=(1, 2))
    labm = lab.mean(axis=(1, 2))
    return pd.DataFrame({"dx": np.asarray(CLASSES)[np.asarray(labels)],
                         "R": rgb[:, 0], "G": rgb[:, 1], "B": rgb[:, 2],
                         "L*": labm[:, 0], "a*": labm[:, 1], "b*": labm[:, 2]})


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
    from ..cache import decode
    from ..data import image_size  # from the file's header: any size (a trusted local image, never a "bomb")
    paths = meta.set_index("image_id")["path"]
    out = {}
    for c, ids in samples.items():
        imgs = []
        for i in ids:
            w, h = image_size(paths[i])
            imgs.append(decode(paths[i], (max(8, round(width * h / w)), width)))
        out[c] = imgs
    return out


def contrast_note(contrast_table: pd.DataFrame, size, ring: float) -> str:
    """What the lesion-contrast numbers are measured on, in one paragraph: the cached image size (H, W), the masks,
    the skin ring's width in pixels (:func:`hamviz.contrast.ring_width` of ``ring``), how many images give a
    value (``contrast_table`` from :func:`hamviz.contrast.lesion_contrast`), and what dL means."""
    valid = int(contrast_table["dE2000"].notna().sum())
    return (f"Measured on the {size[0]}x{size[1]} cached images and their lesion masks (the masks/ folder of the data: "
            f"HAM10000's lesion segmentations, Tschandl et al.); the skin ring is {ring_width(ring, size)} px wide "
            f"(contrast_ring {ring:g} of the image edge); {valid:,} of {len(contrast_table):,} images give a value (an "
            "empty mask, or one that leaves no ring of skin, gives none). dL: skin minus lesion lightness L*, > 0 for "
            "a lesion darker than its skin. The median over all images is mostly nv's.")
