"""External data sets: the ISIC 2018 Task 3 test set and MedMNIST's DermaMNIST.

Both use the seven HAM10000 diagnoses, so a model trained on HAM10000 can be scored on them with no
relabelling beyond what is done here. As in :mod:`hamviz.data`, every check that can be made without
decoding images is made at load time, and every :class:`~hamviz.config.DataError` names the problem
and the fix.

* :func:`load_isic2018` returns a :class:`hamviz.data.Dataset` (``source="isic2018"``) that the rest of
  hamviz treats like HAM10000 (decoding and caching happen later, in :mod:`hamviz.cache`).
* :func:`load_dermamnist` returns a :class:`DermaMNIST`: the already decoded, already resized arrays of
  a MedMNIST ``dermamnist*.npz`` file, per split.
* :func:`independent_of` finds the external images that are also in the HAM10000 data in use (ISIC 2018 Task 3's and
  ISIC 2019's training data hold HAM10000's images under the same ids; a renamed or losslessly re-encoded copy has
  the same decoded pixels) and leaves them out, stops, or keeps them, saying how many were independent.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataError, cache_dir, check_readable_folder
from .data import (
    IMAGE_SUFFIXES,
    Dataset,
    _first_few,
    drop_damaged,
    fingerprint_files,
    image_size,
    open_image,
    read_table,
    reconcile,
    scan_dirs,
)
from .registry import CLASSES

# --------------------------------------------------------------------------------------------------
# ISIC 2018 Task 3
# --------------------------------------------------------------------------------------------------

#: ISIC 2018 Task 3 ground-truth columns (upper case, in the order of the official CSV) -> hamviz class.
ISIC2018_COLUMNS: dict[str, str] = {
    "MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec", "BKL": "bkl", "DF": "df", "VASC": "vasc",
}
ISIC2018_ID_COLUMN = "image"
ISIC2018_HINT = (
    "Get the ISIC 2018 Task 3 test set from https://challenge.isic-archive.com/data/#2018 "
    "(ISIC2018_Task3_Test_Input.zip and ISIC2018_Task3_Test_GroundTruth.zip) and unpack both into "
    "one folder"
)


def _find_ground_truth(root: Path) -> Path:
    """The one ``*GroundTruth*.csv`` in ``root`` or in a first-level ``*GroundTruth*`` folder."""
    candidates: list[Path] = []
    folders = [root] + sorted(d for d in root.iterdir()
                              if d.is_dir() and "groundtruth" in d.name.lower())
    for folder in folders:
        candidates += sorted(p for p in folder.iterdir() if p.is_file()
                             and p.suffix.lower() == ".csv" and "groundtruth" in p.name.lower())
    if not candidates:
        csvs = sorted(p.name for p in root.glob("*.csv"))
        raise DataError(
            f"No ground-truth CSV in {root}: expected *_GroundTruth.csv (e.g. "
            f"ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv) in that folder or in "
            f"a *GroundTruth* subfolder"
            + (f" (CSV files there: {_first_few(csvs)})" if csvs else "")
            + f". {ISIC2018_HINT}, or pass ground_truth=PATH."
        )
    if len(candidates) > 1:
        raise DataError(
            f"{len(candidates)} ground-truth CSVs in {root} "
            f"({_first_few(str(p.relative_to(root)) for p in candidates)}); which one is meant is "
            f"ambiguous. Pass ground_truth=PATH, or keep one split (e.g. only the Test files) per folder."
        )
    return candidates[0]


def _ham_style_ground_truth(gt: pd.DataFrame, gt_path: Path) -> tuple[pd.DataFrame, dict]:
    """Ground truth in HAM10000's own columns (``lesion_id,image_id,dx,...``), as the ISIC 2018 Task 3 test set
    is distributed on Harvard Dataverse: (image_id, dx[, lesion_id]) rows."""
    ids = gt["image_id"].astype(str).str.strip()
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DataError(f"Ground truth {gt_path} lists {dup.nunique()} image id(s) twice: "
                        f"{_first_few(set(dup))}. Each image must appear once; drop the duplicates.")
    dx = gt["dx"].astype(str).str.strip().str.lower()
    unknown = sorted(set(dx) - set(CLASSES))
    if unknown:
        raise DataError(f"Ground truth {gt_path} has diagnoses hamviz does not know: {_first_few(unknown)} "
                        f"(known: {', '.join(CLASSES)}); fix or drop those rows.")
    out = pd.DataFrame({"image_id": ids.to_numpy(), "dx": dx.to_numpy()})
    if "lesion_id" in gt.columns and gt["lesion_id"].notna().all():
        out["lesion_id"] = gt["lesion_id"].astype(str).str.strip().to_numpy()
    return out, {"format": "HAM-style columns (lesion_id,image_id,dx)"}


def _read_ground_truth(gt_path: Path) -> tuple[pd.DataFrame, dict]:
    """Validate the one-hot ground truth; return (image_id, dx) rows and what was ignored."""
    gt, _ = read_table(gt_path, "ground truth", f"Re-download it ({ISIC2018_HINT}).",
                       dtype={ISIC2018_ID_COLUMN: str, "image_id": str, "lesion_id": str, "dx": str})
    if {"image_id", "dx"} <= set(gt.columns):
        return _ham_style_ground_truth(gt, gt_path)
    upper = {c.upper(): c for c in gt.columns}
    id_col = upper.get(ISIC2018_ID_COLUMN.upper())
    if id_col is None:
        raise DataError(
            f"Ground truth {gt_path} has no '{ISIC2018_ID_COLUMN}' column (has: "
            f"{_first_few(gt.columns, 12)}). The ISIC 2018 Task 3 CSV has columns "
            f"image,{','.join(ISIC2018_COLUMNS)}; fix the header or pass the right file."
        )
    class_cols = [c for c in gt.columns if c != id_col]
    missing = [c for c in ISIC2018_COLUMNS if c not in upper]
    extra = [c for c in class_cols if c.upper() not in ISIC2018_COLUMNS]
    if missing:
        raise DataError(
            f"Ground truth {gt_path} lacks one-hot column(s) {', '.join(missing)} (has: "
            f"{', '.join(class_cols) or 'none'}). ISIC 2018 Task 3 ground truth has one column per "
            f"class: {', '.join(ISIC2018_COLUMNS)}; fix the header (the ISIC 2019 file, with AK/SCC/UNK, "
            f"is a different task) or pass the ISIC 2018 Task 3 CSV."
        )
    if gt.empty:
        raise DataError(f"Ground truth {gt_path} has no rows. Re-download it ({ISIC2018_HINT}).")

    ids = gt[id_col].astype(str).str.strip()
    bad_id = gt[id_col].isna() | (ids == "")
    if bad_id.any():
        raise DataError(f"Ground truth {gt_path} has {int(bad_id.sum())} row(s) without an image id "
                        f"(CSV line(s) {_first_few((bad_id[bad_id].index + 2).tolist())}). "
                        f"Fix or drop those rows.")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DataError(f"Ground truth {gt_path} lists {dup.nunique()} image id(s) twice: "
                        f"{_first_few(set(dup))}. Each image must appear once; drop the duplicates.")

    values = gt[class_cols].apply(pd.to_numeric, errors="coerce")
    values.index = ids
    report: dict = {}
    if extra:
        used = [c for c in extra if values[c].fillna(0).ne(0).any()]
        if used:
            counts = {c: int(values[c].fillna(0).ne(0).sum()) for c in used}
            raise DataError(
                f"Ground truth {gt_path} has class column(s) hamviz does not know: {counts} "
                f"(rows labelled with them). hamviz models know only {', '.join(ISIC2018_COLUMNS)} "
                f"(= {', '.join(CLASSES)}); drop those rows and columns, or score them elsewhere."
            )
        report["ignored_columns"] = extra  # all zero: harmless, dropped
    known = values[[upper[c] for c in ISIC2018_COLUMNS]]
    known.columns = list(ISIC2018_COLUMNS)
    is_binary = known.isin([0, 1]).all(axis=1)
    not_one_hot = ~is_binary | known.where(is_binary, 0).sum(axis=1).ne(1)
    if not_one_hot.any():
        raise DataError(
            f"Ground truth {gt_path} has {int(not_one_hot.sum())} row(s) that are not exactly one-hot "
            f"(each row needs one 1.0 and six 0.0 over {', '.join(ISIC2018_COLUMNS)}): "
            f"{_first_few(known.index[not_one_hot])}. Fix or drop those rows."
        )
    dx = known.to_numpy().argmax(axis=1)
    names = np.array([ISIC2018_COLUMNS[c] for c in known.columns])[dx]
    return pd.DataFrame({"image_id": known.index.to_numpy(), "dx": names}), report


def _isic_images(root: Path) -> tuple[dict[str, Path], list[str]]:
    """(image id -> file, the folders used) over ``root`` and its first-level "*Input*" / "*Images*" folders;
    DataError when there is no image."""
    names = ["."] + sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                           and ("input" in d.name.lower() or "images" in d.name.lower()))
    images: dict[str, Path] = {}
    used_dirs = []
    for name in names:
        found, _ = scan_dirs(root, [name], suffixes=IMAGE_SUFFIXES)
        if found:
            used_dirs.append(name)
            for stem, path in found.items():
                images.setdefault(stem, path)
    if not images:
        raise DataError(
            f"No images (.jpg/.jpeg/.png) in {root} or in a first-level folder whose name contains "
            f"'Input' (e.g. ISIC2018_Task3_Test_Input/). {ISIC2018_HINT}."
        )
    return images, used_dirs


def load_isic2018(root: str | os.PathLike, *, on_missing: str = "error", on_corrupt: str = "error",
                  ground_truth: str | os.PathLike | None = None) -> Dataset:
    """Load the ISIC 2018 Task 3 layout (meant as an external test set) without decoding images.

    root: a folder with the images (``ISIC_*.jpg``/``.jpeg``/``.png``) directly in it and/or in any
      first-level subfolder whose name contains "Input" or "Images" (``ISIC2018_Task3_Test_Input/`` from the
      challenge, ``ISIC2018_Task3_Test_Images/`` from Harvard Dataverse), and a ground-truth CSV
      ``*_GroundTruth.csv`` in it or in a ``*GroundTruth*`` subfolder: the challenge's, with column ``image``
      and one-hot float columns ``MEL,NV,BCC,AKIEC,BKL,DF,VASC``, or Dataverse's in HAM10000's columns
      (``lesion_id,image_id,dx,...``, lesion ids kept). macOS ``._*`` files are ignored. The upper-case columns map
      to the lower-case hamviz :data:`~hamviz.data.CLASSES`; ``label`` is the index into CLASSES.
      Extra class columns are an error unless all zero (then they are ignored and listed in
      ``report["ignored_columns"]``).
    on_missing: "error" (default) stops on image ids without files or files without ids;
      "skip" drops those rows / ignores those files and lists them in ``report``
      (``missing_files``, ``files_without_metadata``), as :func:`hamviz.data.load_ham10000` does.
    on_corrupt: image files that are empty, truncated or no image (a quick look, before any decoding, as
      :func:`hamviz.data.load_ham10000` does): "error" (default) names them, "skip" drops them and lists them in
      ``report["damaged_files"]``.
    ground_truth: the CSV to use when the folder holds several (default: found in ``root``).

    The challenge's CSV gives no lesion ids for its images, so ``lesion_id`` is then set to ``image_id``
    (every image is its own lesion); grouping by lesion is then the same as grouping by image.
    ``mask_path`` is None (no masks). ``source`` and ``layout`` are "isic2018"; ``fingerprint``
    covers the ground-truth CSV and the name and size of every image used.
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', not {on_missing!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"ISIC 2018 folder {root} does not exist or is not a folder. {ISIC2018_HINT}, "
                        f"and pass that folder.")
    root = root.resolve()
    check_readable_folder(root, "the ISIC 2018 folder")
    if ground_truth is not None:
        gt_path = Path(ground_truth).expanduser()
        if not gt_path.is_absolute() and not gt_path.is_file():
            gt_path = root / gt_path
        if not gt_path.is_file():
            raise DataError(f"Ground-truth CSV {ground_truth} not found (also not in {root}). "
                            f"{ISIC2018_HINT}, or pass the right ground_truth=PATH.")
    else:
        gt_path = _find_ground_truth(root)
    meta, report = _read_ground_truth(gt_path)
    report["ground_truth"] = str(gt_path)

    images, used_dirs = _isic_images(root)
    report["image_dirs"] = used_dirs

    meta = reconcile(meta, images, used_dirs, on_missing, report, where=f"ISIC 2018 data in {root}",
                     rows="ground truth", row_noun="ground-truth row",
                     fix="Complete the download (images and ground truth of the same "
                         "split), or pass on_missing='skip' to drop them and report it.")
    if meta.empty:
        raise DataError(f"No image of the ground truth {gt_path} was found in {root}. {ISIC2018_HINT}.")

    meta = meta.reset_index(drop=True)
    meta = pd.DataFrame({
        "image_id": meta["image_id"].to_numpy(),
        # the challenge's one-hot CSV gives no lesion ids (each image its own lesion); the Dataverse one does
        "lesion_id": (meta["lesion_id"] if "lesion_id" in meta else meta["image_id"]).to_numpy(),
        "dx": meta["dx"].to_numpy(),
        "label": meta["dx"].map({c: i for i, c in enumerate(CLASSES)}).astype(np.int64).to_numpy(),
        "path": [str(images[i]) for i in meta["image_id"]],
        "mask_path": None,
    })
    meta = drop_damaged(meta, ("path",), on_corrupt, report, where=str(root),
                        fix=f"Re-download them ({ISIC2018_HINT}), or set on_corrupt: skip to leave them out and "
                            f"report them.").reset_index(drop=True)
    if meta.empty:
        raise DataError(f"Every image of {root} is damaged. {ISIC2018_HINT}.")
    report["class_counts"] = {c: int(n) for c, n in meta["dx"].value_counts().items()}
    fp = fingerprint_files(gt_path, meta["path"])
    return Dataset(meta=meta, root=root, fingerprint=fp, classes=CLASSES, source="isic2018",
                   layout="isic2018", report=report)


# --------------------------------------------------------------------------------------------------
# Overlap of an external set with the HAM10000 data in use
# --------------------------------------------------------------------------------------------------

#: what to do with external images that are also in the HAM10000 data in use (profile: classifier.external_overlap)
EXTERNAL_OVERLAP = ("drop", "error", "keep")
#: part of the name of the stored content hashes: bump it when :func:`content_hash` changes
CONTENT_HASH_VERSION = 1
_RECORDED = 100  # ids of each kind of overlap kept in the record (their counts are always whole)


def content_hash(path) -> str | None:
    """A SHA-256 of an image's decoded pixels (8-bit RGB at its own size, :func:`hamviz.cache.to_rgb`) and its
    size: the same for a renamed copy and for a lossless re-encoding (a PNG of a JPEG's pixels); None for a file
    that does not decode (decoding it into the cache names it later)."""
    from .cache import to_rgb
    try:
        with open_image(path, reduce=False) as img:
            img.load()
            arr = np.ascontiguousarray(to_rgb(img))
    except Exception:  # noqa: BLE001 - any failure to decode: no hash, so no match
        return None
    h = hashlib.sha256(f"{arr.shape[1]}x{arr.shape[0]}|".encode())
    h.update(arr.data)
    return h.hexdigest()[:32]


def _hashes(paths: dict, jobs: int | None) -> dict:
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        found = dict(zip(paths, pool.map(content_hash, paths.values())))
    return {i: h for i, h in found.items() if h}


def _ham_hashes(ham: Dataset, ids, cache_root, jobs) -> dict:
    """image id -> :func:`content_hash` of ``ids`` of ``ham``: computed once per data set (keyed by its
    fingerprint) and kept under the cache's ``content/`` folder (about 3 ms an image at 600x450)."""
    from .files import atomic_path
    path = (Path(cache_root) if cache_root else cache_dir()) / "content" / \
        f"{ham.source}-{ham.fingerprint}-v{CONTENT_HASH_VERSION}.json"
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):  # damaged: computed again
        known = {}
    missing = [i for i in ids if i not in known]
    if missing:
        paths = ham.meta.set_index("image_id")["path"]
        known.update(_hashes({i: paths[i] for i in missing}, jobs))
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(known))
    return {i: known[i] for i in ids if i in known}


def external_overlap(ext: Dataset, ham: Dataset, *, cache_root=None, jobs: int | None = None) -> dict:
    """The images of ``ext`` that are also in ``ham`` (the HAM10000 data in use): ``by_image_id`` (sorted ids found
    in both) and ``by_content`` (external id -> the HAM10000 image whose decoded pixels it has, under another name).
    Only images of a size that occurs on both sides are decoded (sizes are read from the files' headers); the
    HAM10000 side's hashes are kept (:func:`_ham_hashes`)."""
    ham_ids = set(ham.meta["image_id"])
    by_id = sorted(set(ext.meta["image_id"]) & ham_ids)
    rest = ext.meta[~ext.meta["image_id"].isin(ham_ids)]
    ext_sizes = {i: image_size(p) for i, p in zip(rest["image_id"], rest["path"])}
    ham_sizes = {i: image_size(p) for i, p in zip(ham.meta["image_id"], ham.meta["path"])} if ext_sizes else {}
    common = set(ext_sizes.values()) & set(ham_sizes.values())
    by_content: dict = {}
    if common:
        ext_paths = rest.set_index("image_id")["path"]
        ext_hashes = _hashes({i: ext_paths[i] for i, s in ext_sizes.items() if s in common}, jobs)
        ham_hashes = _ham_hashes(ham, [i for i, s in ham_sizes.items() if s in common], cache_root, jobs)
        owner: dict = {}
        for i, h in ham_hashes.items():
            owner.setdefault(h, i)
        by_content = {i: owner[h] for i, h in sorted(ext_hashes.items()) if h in owner}
    return {"by_image_id": by_id, "by_content": by_content}


def _how(record: dict) -> str:
    pairs = list(record["by_content"].items())[:3]
    return (f"{record['by_image_id_count']} under the same image id"
            + (f" (e.g. {', '.join(record['by_image_id'][:3])})" if record["by_image_id"] else "")
            + f", {record['by_content_count']} under another name with the same decoded pixels"
            + (f" (e.g. {', '.join(f'{a} = {b}' for a, b in pairs)})" if pairs else ""))


def overlap_note(record: dict) -> str | None:
    """One sentence on an external set's overlap with the HAM10000 data in use (:func:`independent_of`'s record):
    how many, found how, what was done; None when there is none."""
    n, over = record["images"], record["overlapping"]
    if not over:
        return None
    what = (f"{over} of the {n} external images are also in the HAM10000 data in use ({_how(record)}): ISIC 2018 "
            f"Task 3's and ISIC 2019's training data hold HAM10000's images")
    if record["on_overlap"] == "keep":
        return (f"{what}. Scored anyway (external_overlap: keep): only {record['independent']} are independent, so "
                f"these numbers are not an external test.")
    return f"{what}. Left out (external_overlap: drop): {record['independent']} independent images are scored."


def independent_of(ext: Dataset, ham: Dataset, on_overlap: str = "drop", *, cache_root=None,
                   jobs: int | None = None) -> tuple[Dataset, dict]:
    """``ext`` without the images it shares with ``ham``, the HAM10000 data in use (:func:`external_overlap`: by
    image id, and by decoded content under another name), and the record of it: ``images``, ``independent``,
    ``overlapping``, ``left_out``, ``by_image_id`` / ``by_content`` (the first 100) with their ``..._count``, and
    ``on_overlap``. on_overlap: "drop" leaves them out (a DataError when none is independent: there is nothing
    external to score), "error" stops with a DataError naming them, "keep" keeps them (a smoke test on HAM10000's
    own images; the record says how few were independent). Before any decoding into the cache or scoring."""
    if on_overlap not in EXTERNAL_OVERLAP:
        raise ValueError(f"on_overlap must be one of {', '.join(EXTERNAL_OVERLAP)}, not {on_overlap!r}")
    found = external_overlap(ext, ham, cache_root=cache_root, jobs=jobs)
    shared = set(found["by_image_id"]) | set(found["by_content"])
    n = len(ext)
    record = {"images": n, "independent": n - len(shared), "overlapping": len(shared),
              "left_out": len(shared) if on_overlap == "drop" else 0, "on_overlap": on_overlap,
              "by_image_id_count": len(found["by_image_id"]), "by_content_count": len(found["by_content"]),
              "by_image_id": found["by_image_id"][:_RECORDED],
              "by_content": dict(list(found["by_content"].items())[:_RECORDED])}
    if not shared or on_overlap == "keep":
        return ext, record
    if on_overlap == "error" or len(shared) == n:
        lead = (f"Nothing external to score: all {n} external images in {ext.root}" if len(shared) == n else
                f"{len(shared)} of the {n} external images in {ext.root}")
        other = ("drop to leave them out and count them" if on_overlap == "error" else
                 "keep to score them anyway as a smoke test (not an external result)")
        raise DataError(f"{lead} are also in the HAM10000 data in use ({ham.root}): {_how(record)}. ISIC 2018 Task "
                        f"3's and ISIC 2019's training data hold HAM10000's images; scored as external they are no "
                        f"independent test. Point external_test at images outside HAM10000 (e.g. the ISIC 2018 Task 3 "
                        f"test set, not its training data), or set external_overlap: {other}.")
    kept = [i for i in ext.meta["image_id"] if i not in shared]
    sub = ext.subset(kept)
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:8]
    # its own fingerprint: the image cache never serves this subset from the whole set's entry
    return dataclasses.replace(sub, fingerprint=f"{ext.fingerprint}-independent-{digest}"), record


# --------------------------------------------------------------------------------------------------
# DermaMNIST
# --------------------------------------------------------------------------------------------------

#: DermaMNIST label names, as in medmnist's INFO["dermamnist"]["label"] (medmnist/info.py).
#: Label i is hamviz CLASSES[i]: the two orders are the same, so no remapping is needed.
DERMAMNIST_LABELS: dict[int, str] = {
    0: "actinic keratoses and intraepithelial carcinoma",  # akiec
    1: "basal cell carcinoma",                             # bcc
    2: "benign keratosis-like lesions",                    # bkl
    3: "dermatofibroma",                                   # df
    4: "melanoma",                                         # mel
    5: "melanocytic nevi",                                 # nv
    6: "vascular lesions",                                 # vasc
}
DERMAMNIST_SPLITS: tuple[str, ...] = ("train", "val", "test")
DERMAMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
DERMAMNIST_HINT = (
    "Get it with `hamviz download --dermamnist SIZE` (SIZE one of 28, 64, 128, 224) or by hand from "
    "https://zenodo.org/records/10519652 (dermamnist.npz, dermamnist_64.npz, dermamnist_128.npz, "
    "dermamnist_224.npz)"
)


@dataclass
class DermaMNIST:
    """MedMNIST DermaMNIST arrays per split (``train``, ``val``, ``test``; fewer if restricted).

    ``images[split]`` is uint8 (N, size, size, 3); ``labels[split]`` is int64 (N,), label i being
    ``classes[i]`` (DermaMNIST's order equals hamviz CLASSES). ``fingerprint`` is the first 16 hex
    characters of the sha256 of the file's bytes."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    size: int
    fingerprint: str
    path: Path | None = None
    classes: tuple[str, ...] = CLASSES
    report: dict = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in DERMAMNIST_SPLITS if s in self.images)

    def __len__(self) -> int:
        return sum(len(v) for v in self.labels.values())

    def as_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 (N, H, W, 3), labels int64 (N,)) of one split."""
        if split not in self.images:
            raise ValueError(f"Split {split!r} is not loaded (loaded: {', '.join(self.splits)}); "
                             f"splits are {', '.join(DERMAMNIST_SPLITS)}, and load_dermamnist(path) "
                             f"without split= loads them all.")
        return self.images[split], self.labels[split]


def _sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def _resolve_npz(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(path.glob("dermamnist*.npz"))
        if len(found) == 1:
            return found[0]
        if not found:
            raise DataError(f"No dermamnist*.npz in folder {path}. {DERMAMNIST_HINT}; then pass the "
                            f"file's path.")
        raise DataError(f"{len(found)} DermaMNIST files in {path} ({_first_few(p.name for p in found)}); "
                        f"pass the path of the one to use.")
    if not path.is_file():
        raise DataError(f"DermaMNIST file {path} does not exist. {DERMAMNIST_HINT}; then pass its path.")
    return path


def load_dermamnist(path: str | os.PathLike, *, split: str | None = None) -> DermaMNIST:
    """Load a MedMNIST DermaMNIST ``.npz`` of any size (28, 64, 128 or 224 pixels).

    path: the ``.npz`` (or a folder holding exactly one ``dermamnist*.npz``), with keys
      ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``,
      ``test_labels``; images uint8 (N, H, W, 3), labels (N, 1) or (N,) integers in 0..6.
    split: "train", "val" or "test" to load only that split (only its two keys are then required).

    Label order: medmnist's ``INFO["dermamnist"]["label"]`` is 0 actinic keratoses and
    intraepithelial carcinoma (akiec), 1 basal cell carcinoma (bcc), 2 benign keratosis-like lesions
    (bkl), 3 dermatofibroma (df), 4 melanoma (mel), 5 melanocytic nevi (nv), 6 vascular lesions
    (vasc): the same order as hamviz :data:`~hamviz.data.CLASSES`, so labels are used as they are.
    DermaMNIST is made from HAM10000 itself, so it is not independent of a HAM10000 training set.
    """
    if split is not None and split not in DERMAMNIST_SPLITS:
        raise ValueError(f"split must be None or one of {', '.join(DERMAMNIST_SPLITS)}, not {split!r}")
    path = _resolve_npz(path)
    splits = DERMAMNIST_SPLITS if split is None else (split,)
    with open(path, "rb") as fh:  # our handle: closed even when np.load fails half-way
        images, labels, size = _read_npz(fh, path, splits)
    report = {"path": str(path), "counts": {s: int(len(labels[s])) for s in splits}}
    if size not in DERMAMNIST_SIZES:
        report["nonstandard_size"] = size
    return DermaMNIST(images=images, labels=labels, size=size, fingerprint=_sha256_file(path),
                      path=path, classes=CLASSES, report=report)


def _read_npz(fh, path: Path, splits) -> tuple[dict, dict, int]:
    try:
        npz = np.load(fh, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a valid .npz file ({exc}). The download is probably truncated "
                        f"or corrupt: delete it and download it again. {DERMAMNIST_HINT}.") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is a single .npy array, not a .npz archive with train/val/test arrays. "
                        f"{DERMAMNIST_HINT}.")
    with npz:
        keys = set(npz.files)
        needed = [f"{s}_{k}" for s in splits for k in ("images", "labels")]
        missing = [k for k in needed if k not in keys]
        if missing:
            raise DataError(f"DermaMNIST file {path} lacks key(s) {', '.join(missing)} (has: "
                            f"{_first_few(keys, 12) or 'none'}). Is it a MedMNIST DermaMNIST file? "
                            f"{DERMAMNIST_HINT}.")
        images: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        sizes = set()
        for s in splits:
            try:
                x = npz[f"{s}_images"]
                y = npz[f"{s}_labels"]
            except Exception as exc:  # corrupt member, or an object array needing pickle
                raise DataError(f"Cannot read {s}_images/{s}_labels from {path} ({exc}). Delete the file "
                                f"and download it again. {DERMAMNIST_HINT}.") from exc
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] != x.shape[2]:
                raise DataError(f"{s}_images in {path} is {x.dtype} {x.shape}; DermaMNIST images must be "
                                f"uint8 (N, H, W, 3) with H == W (RGB, 0..255). {DERMAMNIST_HINT}.")
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1:
                raise DataError(f"{s}_labels in {path} has shape {y.shape}; expected (N, 1) or (N,) "
                                f"class indices (not one-hot). {DERMAMNIST_HINT}.")
            if len(y) != len(x):
                raise DataError(f"{path}: {s}_images has {len(x)} image(s) but {s}_labels has {len(y)} "
                                f"label(s); they must match one to one. The file is damaged: download "
                                f"it again. {DERMAMNIST_HINT}.")
            if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            if y.dtype.kind not in "iu":
                raise DataError(f"{s}_labels in {path} has dtype {y.dtype}; expected integer class "
                                f"indices 0..{len(CLASSES) - 1}. {DERMAMNIST_HINT}.")
            y = y.astype(np.int64)
            bad = (y < 0) | (y >= len(CLASSES))
            if bad.any():
                raise DataError(f"{s}_labels in {path} has {int(bad.sum())} label(s) outside "
                                f"0..{len(CLASSES) - 1} (values {_first_few(set(y[bad].tolist()))}); "
                                f"DermaMNIST has 7 classes ({', '.join(CLASSES)}). Is this another "
                                f"MedMNIST data set? {DERMAMNIST_HINT}.")
            images[s], labels[s] = x, y
            sizes.add(int(x.shape[1]))
        if len(sizes) > 1:
            raise DataError(f"Splits of {path} have different image sizes {sorted(sizes)}; one file holds "
                            f"one size. {DERMAMNIST_HINT}.")
    return images, labels, sizes.pop()
