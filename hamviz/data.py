"""Loading HAM10000 from disk, in the official download layout or a flat ``images/`` folder.

A :class:`Dataset` is one table (``meta``, one row per image) plus where it came from and a fingerprint.
Every check that can be made without decoding images is made here, before any expensive work:
folders and files this user may not read, missing metadata or columns, unknown labels, lesions with two
diagnoses, image ids without files and files without ids, and empty or truncated image files (a quick look at
each file's size and first and last bytes). Decoding (and so the detection of damage inside a file) happens
once, in :mod:`hamviz.cache`.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import GET_DATA_HINT, DataError, check_readable_folder, permission_error
from .config import data_dir as _resolve_data_dir
from .registry import CLASS_NAMES, CLASSES, MALIGNANT  # noqa: E402,F401  (re-exported)

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
#: columns only the EDA chapter's demographics section reads: without them that section is skipped, said so
OPTIONAL_COLUMNS = ("dx_type", "age", "sex", "localization")
METADATA_NAMES = ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata")
IMAGE_DIRS = ("images", "HAM10000_images_part_1", "HAM10000_images_part_2",
              "ham10000_images_part_1", "ham10000_images_part_2", "HAM10000_images")
MASK_DIRS = ("masks", "HAM10000_segmentations_lesion_tschandl")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class Dataset:
    """Images and labels of one data source. ``meta`` has one row per image with at least
    ``image_id``, ``lesion_id``, ``dx``, ``label`` (index into ``classes``) and ``path``;
    ``mask_path`` when masks were found (else None)."""

    meta: pd.DataFrame
    root: Path
    fingerprint: str
    classes: tuple[str, ...] = CLASSES
    source: str = "ham10000"
    layout: str = "flat"
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def labels(self) -> np.ndarray:
        return self.meta["label"].to_numpy(dtype=np.int64)

    @property
    def has_masks(self) -> bool:
        return "mask_path" in self.meta and self.meta["mask_path"].notna().all()

    def subset(self, image_ids) -> "Dataset":
        """The same dataset restricted to ``image_ids`` (in that order)."""
        meta = self.meta.set_index("image_id").loc[list(image_ids)].reset_index()
        return Dataset(meta, self.root, self.fingerprint, self.classes, self.source, self.layout,
                       dict(self.report))


def _first_few(items, n=5) -> str:
    items = sorted(items)
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def find_metadata(root: Path) -> Path:
    for name in METADATA_NAMES:
        if (root / name).is_file():
            return root / name
    found = sorted(p.name for p in root.glob("*.csv"))
    raise DataError(
        f"No HAM10000 metadata in {root}: expected one of {', '.join(METADATA_NAMES)}"
        + (f" (CSV files there: {_first_few(found)})" if found else "")
        + f". {GET_DATA_HINT}"
    )


#: the delimiters a table may use (comma, tab, semicolon as spreadsheets in many locales write, pipe)
DELIMITERS = ",\t;|"
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def delimiter_of(path: Path, sample_bytes: int = 64 * 1024) -> str:
    """The delimiter of a text table, from its first lines (the standard library's ``csv.Sniffer`` over
    :data:`DELIMITERS`); a comma when the sample is ambiguous (e.g. a single column)."""
    import csv
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        sample = f.read(sample_bytes)
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def read_table(path: Path, what: str, fix: str, dtype=None) -> tuple[pd.DataFrame, str]:
    """(table, its delimiter) of a CSV/TSV file whatever its delimiter (:func:`delimiter_of`); column names
    stripped of spaces and quotes. Raises DataError: a permission problem as such, anything else unreadable
    with ``fix``."""
    try:
        sep = delimiter_of(path)
        table = pd.read_csv(path, sep=sep, dtype=dtype, encoding="utf-8-sig")
    except PermissionError as exc:
        raise DataError(f"Cannot read {what} {path}: permission denied. Give this user read access (chmod a+r) "
                        f"or copy the file somewhere readable.") from exc
    except Exception as exc:  # pandas raises several types for unreadable files
        raise DataError(f"Cannot read {what} {path}: {exc}. {fix}") from exc
    table.columns = [str(c).strip().strip('"') for c in table.columns]
    return table, sep


def read_metadata(path: Path) -> pd.DataFrame:
    meta, sep = read_table(path, "metadata", f"Re-download it ({GET_DATA_HINT})",
                           dtype={"lesion_id": str, "image_id": str, "dx": str})
    missing = [c for c in REQUIRED_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(
            f"Metadata {path} lacks column(s) {', '.join(missing)} (has: {', '.join(meta.columns)}; read as "
            f"{_DELIMITER_NAMES.get(sep, repr(sep))}-separated). HAM10000_metadata.csv has columns "
            f"lesion_id,image_id,dx,dx_type,age,sex,localization; re-download it or fix the header."
        )
    return meta


def scan_dirs(root: Path, names, suffixes=IMAGE_SUFFIXES, strip: str = "",
              what: str = "image folder") -> tuple[dict, list[str]]:
    """Map file stem (minus ``strip``) -> path over the first-level folders ``names`` that exist. One id with two
    different files (e.g. in both image parts) is a DataError naming them; identical copies are accepted. A folder
    this user may not read is a DataError naming the permission problem and the fix."""
    found: dict[str, Path] = {}
    clashes: list[tuple[Path, Path]] = []
    used = []
    for name in names:
        folder = root / name
        if not folder.is_dir():
            continue
        used.append(name)
        check_readable_folder(folder, f"the {what}")
        try:
            entries = list(os.scandir(folder))
        except PermissionError:
            raise permission_error(f"the {what}", folder) from None
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if entry.name.startswith("._"):  # macOS AppleDouble metadata from unzipping, not an image
                continue
            if suffix.lower() in suffixes and entry.is_file():
                if strip and stem.endswith(strip):
                    stem = stem[: -len(strip)]
                if stem in found and not _same_file_contents(found[stem], Path(entry.path)):
                    clashes.append((found[stem], Path(entry.path)))
                found.setdefault(stem, Path(entry.path))
    if clashes:
        a, b = clashes[0]
        raise DataError(f"{len(clashes)} image id(s) have two different files in {root}, e.g. {a} and {b}: which "
                        f"one is meant is ambiguous. Keep one file per image id (identical copies are fine).")
    return found, used


def _same_file_contents(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return a.read_bytes() == b.read_bytes()


def reconcile(meta: pd.DataFrame, images: dict, used_dirs, on_missing: str, report: dict, *, where: str,
              rows: str, fix: str, row_noun: str | None = None) -> pd.DataFrame:
    """Match table rows (``image_id``) to image files. Ids without files and files without ids are an
    error naming both counts and the first names (``on_missing="error"``), or are dropped / ignored and
    listed in ``report`` (``"skip"``)."""
    ids = set(meta["image_id"])
    no_file = ids - images.keys()
    no_id = images.keys() - ids
    by_lower = {k.lower(): k for k in no_id}
    case_only = {i: by_lower[i.lower()] for i in no_file if i.lower() in by_lower}
    if case_only:
        pairs = ", ".join(f"{i!r} vs file {f!r}" for i, f in sorted(case_only.items())[:3])
        raise DataError(f"{where}: {len(case_only)} image id(s) in the {rows} differ from their files' names only in "
                        f"upper/lower case ({pairs}{', ...' if len(case_only) > 3 else ''}). Image ids are "
                        f"case-sensitive: fix the case in the {rows} or rename the files.")
    if (no_file or no_id) and on_missing == "error":
        parts = []
        if no_file:
            parts.append(f"{len(no_file)} image id(s) in the {rows} have no file in "
                         f"{', '.join(used_dirs)} ({_first_few(no_file)})")
        if no_id:
            parts.append(f"{len(no_id)} image file(s) have no {row_noun or rows + ' row'} ({_first_few(no_id)})")
        raise DataError(f"{where} is incomplete: " + "; ".join(parts) + ". " + fix)
    if no_file:
        meta = meta[~meta["image_id"].isin(no_file)]
        report["missing_files"] = sorted(no_file)
    if no_id:
        report["files_without_metadata"] = sorted(no_id)
    return meta


# ------------------------------------------------------------------------------------- opening image files
#: the edges (w, h) a large JPEG is decoded to at least when the caller asks for no size: hamviz resizes every image
#: it decodes to at most 600 pixels
DRAFT_SIZE = (600, 600)
_PIL_LIMIT = threading.Lock()  # Pillow's decompression-bomb limit is process-wide: changed only under this lock


def pillow_limit() -> int | None:
    """Pillow's decompression-bomb limit now (``PIL.Image.MAX_IMAGE_PIXELS``; 89,478,485 pixels by default, None when
    lifted): above it Pillow warns, above twice it ``Image.open`` raises DecompressionBombError."""
    from PIL import Image
    with _PIL_LIMIT:
        return Image.MAX_IMAGE_PIXELS


def open_image(source, min_size=None, *, reduce: bool = True):
    """Open a local image file (a path, or its bytes) with Pillow as the trusted data it is: without Pillow's
    decompression-bomb check, which guards a server against hostile uploads, not a user against the files they point
    hamviz at (a 16000x12000 scan stopped `hamviz cache` with a raw DecompressionBombError). A JPEG above Pillow's
    limit (:func:`pillow_limit`) is set to decode at reduced size (with ``reduce``; Pillow's ``draft``: libjpeg's
    DCT scaling by 1/2, 1/4 or 1/8, the most that keeps it at least ``min_size`` (w, h), default
    :data:`DRAFT_SIZE`): what hamviz resizes it to anyway, without a 576 MB array for 192 MP. Other formats decode in
    full. Returns the lazy Pillow image (use it in a ``with`` block); its ``size`` is the size it decodes to."""
    from PIL import Image
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with _PIL_LIMIT:  # lifted for this call only, then set back (a header is parsed: microseconds)
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = Image.open(fp)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    if reduce and img.format == "JPEG" and limit is not None and img.width * img.height > limit:
        w, h = min_size or DRAFT_SIZE
        img.draft(None, (max(1, min(int(w), img.width)), max(1, min(int(h), img.height))))
    return img


#: JPEG frame headers (SOF0-15 but DHT, JPG and DAC), which hold the image's size
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_size(f) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk or a JPEG's frame header, reading only the headers; None for other
    files or a header this cannot read."""
    head = f.read(24)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    for _ in range(10_000):
        f.seek(pos)
        seg = f.read(9)
        if len(seg) < 4 or seg[0] != 0xFF:
            return None
        marker = seg[1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _SOF_MARKERS:
            return (int.from_bytes(seg[7:9], "big"), int.from_bytes(seg[5:7], "big")) if len(seg) == 9 else None
        elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            pos += 2
        elif marker in (0xD9, 0xDA):  # the end, or a scan before any frame header
            return None
        else:
            pos += 2 + int.from_bytes(seg[2:4], "big")
    return None


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image file, from its header without decoding it (a PNG's IHDR, a JPEG's frame header;
    other formats through :func:`open_image`): about 20 microseconds a file. Raises DataError naming a file that is
    no readable image."""
    try:
        with open(path, "rb") as f:
            size = _header_size(f)
        if not size or not all(size):
            with open_image(path, reduce=False) as img:
                size = img.size
    except PermissionError:
        raise permission_error("image", Path(path)) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises several types for a file it cannot identify
        raise DataError(f"Cannot read the size of {path}: {exc}. Re-download the file.") from exc
    return int(size[0]), int(size[1])


def check_intact(data: bytes) -> None:
    """Raise ValueError when an image file's bytes are damaged, whatever process-wide Pillow setting another
    library or notebook changed (``ImageFile.LOAD_TRUNCATED_IMAGES`` makes Pillow pad truncated files, and Pillow
    never reports corrupt JPEG entropy-coded data: it decodes grey or smeared rows). JPEG: a strict decode by
    libjpeg-turbo (``simplejpeg``, its warnings as errors: "Corrupt JPEG data: premature end of data segment",
    extraneous bytes, bad Huffman codes), then :func:`jpeg_zero_run` for a block of zero bytes inside the
    compressed data, which the decoder reads as valid; other formats: Pillow's ``verify`` (PNG chunk checksums).

    What no check here can see: bytes changed inside a JPEG's compressed data in a way that still decodes without
    a warning (60 of 350 random 64-byte overwrites of the 70 HAM10000 originals, and a zeroed run shorter than
    :data:`ZERO_RUN_BYTES`): the decoder gives no signal and the file has no checksum of its own."""
    if data[:2] == b"\xff\xd8":
        import simplejpeg
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        limit = pillow_limit()
        # a JPEG above Pillow's limit: decoded at 1/8 of its size (every coefficient is still read, and checked)
        scaled = {"min_factor": 8} if limit is not None and width * height > limit else {}
        simplejpeg.decode_jpeg(data, colorspace={"Gray": "GRAY", "CMYK": "CMYK"}.get(colorspace, "RGB"),
                               strict=True, **scaled)
        problem = jpeg_zero_run(data)
        if problem:
            raise ValueError(problem)
    else:
        with open_image(data) as img:  # trusted local data: no decompression-bomb check (:func:`open_image`)
            img.verify()


#: A run of this many zero bytes inside a JPEG scan whose Huffman tables give zero bits a coefficient is damage: it
#: would need dozens of consecutive AC coefficients of exactly -(2^k - 1) (the longest run in the 10,015 HAM10000
#: images and the 70 originals is 4 bytes). Zeroed blocks are what a damaged disk, a failed sector or an interrupted
#: copy into a preallocated file leave, and libjpeg-turbo decodes them without a warning.
ZERO_RUN_BYTES = 16
_ZEROS = b"\x00" * ZERO_RUN_BYTES
_SCAN_END = re.compile(b"\xff[^\x00\xd0-\xd7\xff]")  # a marker: not stuffing (FF00), a restart (FFD0-D7) or fill


def _zeros_are_content(seg: bytes, first_symbol: dict) -> bool:
    """Whether zero bits may be real image data in the scan whose SOS segment (after its length) is ``seg``:
    its DC-only and refinement scans (raw bits), or a scan where every component's AC table gives the all-zero
    code (the first symbol of a canonical Huffman table) to "no coefficient" (EOB, a run of EOBs, or ZRL), as
    optimised tables do for flat areas. A component whose all-zero AC code is a coefficient bounds every run of
    zero bits (each of its blocks ends in an EOB code with a 1 in it, or holds 63 coefficients), whatever the other
    components' tables. A table the file does not define counts as "may be content"."""
    n = seg[0]
    if len(seg) < 4 + 2 * n:  # not a whole SOS segment (the strict decode judges the file)
        return True
    ss, se, ah = seg[1 + 2 * n], seg[2 + 2 * n], seg[3 + 2 * n] >> 4
    if se == 0 or ss > se or ah:
        return True
    symbols = [first_symbol.get((1, seg[2 + 2 * k] & 0x0F)) for k in range(n)]
    return None in symbols or all(sym & 0x0F == 0 for sym in symbols)


def jpeg_zero_run(data: bytes) -> str | None:
    """Why the entropy-coded data of a JPEG holds a block of zeros that no encoder writes, or None: a run of at
    least :data:`ZERO_RUN_BYTES` zero bytes in a scan where zero bits cannot be image data
    (:func:`_zeros_are_content`). libjpeg-turbo decodes such a block without any warning and shows everything
    after it shifted in colour. Reads only the markers and searches the scans (well under a millisecond)."""
    first_symbol: dict = {}  # (table class, id) -> the symbol of its all-zero code
    i, n = 2, len(data)
    while i + 4 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:
            break
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a segment
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        seg = data[i + 4:i + 2 + length]
        if marker == 0xC4:  # Huffman tables: class/id, 16 counts of code lengths, the symbols
            j = 0
            while j + 17 <= len(seg):
                count = sum(seg[j + 1:j + 17])
                if count:
                    first_symbol[(seg[j] >> 4, seg[j] & 0x0F)] = seg[j + 17] if j + 17 < len(seg) else None
                j += 17 + count
        i += 2 + length
        if marker == 0xDA and seg:
            end = _SCAN_END.search(data, i)
            end = end.start() if end else n
            at = -1 if _zeros_are_content(seg, first_symbol) else data.find(_ZEROS, i, end)
            if at >= 0:
                length = len(data[at:end]) - len(data[at:end].lstrip(b"\x00"))
                return (f"{length} zero bytes at byte {at:,} inside its compressed image "
                        f"data, where zero bits cannot be image data: a block of zeros left by damage on disk or "
                        f"in a copy (the decoder reads it without a warning, and shows everything after it "
                        f"shifted in colour)")
            i = end
    return None


JPEG_SOI, JPEG_EOI = b"\xff\xd8\xff", b"\xff\xd9"
PNG_SIGNATURE, PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND"
_TAIL = 1024  # bytes read from the end of each file: the end marker sits there unless trailing data follows it


def _file_problem(path: str) -> str | None:
    """Why an image file is unusable by a quick look (its size and first and last bytes), or None. An empty
    file, a JPEG without its end marker or a PNG without its IEND chunk (truncated downloads), a file that is
    no image (e.g. an HTML error page saved under an image name). A file whose end looks wrong but that decodes
    strictly (:func:`check_intact`; e.g. data appended after the end marker) is fine. A file this
    user may not read is "permission denied"."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty (0 bytes)"
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if head.startswith(JPEG_SOI):
        if JPEG_EOI in tail:
            return None
        why = f"truncated: no JPEG end marker (FFD9) at its end ({size:,} bytes)"
    elif head.startswith(PNG_SIGNATURE):
        if PNG_IEND in tail:
            return None
        why = f"truncated: no PNG IEND chunk at its end ({size:,} bytes)"
    else:
        why = f"not a JPEG or PNG image (it starts with {head[:12]!r})"
    try:  # the strict decode: only for the rare file whose ends look wrong
        with open(path, "rb") as f:
            check_intact(f.read())
    except Exception:  # noqa: BLE001 - any failure to decode confirms the quick check
        return why
    return None


def damaged_files(paths, jobs: int = 1, chunk: int = 1024) -> dict[str, str]:
    """path -> why, for every file of ``paths`` that :func:`_file_problem` finds unusable (a few reads per file:
    about 0.3 s for HAM10000's 10,015 images and their masks on a local disk, measured on 2 cores), in the order
    given. ``jobs`` > 1: threads of ``chunk`` files each, for a slow or network disk where reads wait; on a local
    disk one thread is fastest (measured on 2 cores: 0.3 s with one, 0.45 s with two, 0.7 s with four, 1.6 s with
    the earlier eight threads of one task per file)."""
    from concurrent.futures import ThreadPoolExecutor
    paths = [str(p) for p in paths]
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(chunks)))) as pool:
        problems = [why for part in pool.map(lambda c: [_file_problem(p) for p in c], chunks) for why in part]
    return {p: why for p, why in zip(paths, problems) if why is not None}


def drop_damaged(meta: pd.DataFrame, columns, on_corrupt: str, report: dict, where: str, fix: str) -> pd.DataFrame:
    """Check the files named in ``meta``'s ``columns`` (e.g. path, mask_path) with :func:`damaged_files`
    before any decoding. Files this user may not read are always an error (a permission problem, with its
    fix). Empty, truncated or non-image files are an error naming each one (the first few and the count) and
    ``fix`` with ``on_corrupt="error"``; with ``"skip"`` their rows are dropped and listed in
    ``report["damaged_files"]`` (image id -> why)."""
    if on_corrupt not in ("error", "skip"):
        raise ValueError(f"on_corrupt must be 'error' or 'skip', not {on_corrupt!r}")
    paths = [p for c in columns if c in meta for p in meta[c] if isinstance(p, str) and p]
    bad = damaged_files(paths)
    if not bad:
        return meta
    denied = [p for p, why in bad.items() if why == "permission denied"]
    if denied:
        raise DataError(f"Cannot read {len(denied)} file(s) in {where}: permission denied "
                        f"({_first_few(denied, 3)}). Give this user read access (e.g. `chmod -R a+rX "
                        f"{Path(denied[0]).parent}`, or ask the owner), or copy the data somewhere readable.")
    named = [f"{Path(p).name} ({why})" for p, why in bad.items()]
    if on_corrupt == "error":
        raise DataError(f"{len(bad)} file(s) in {where} are damaged (a quick check of each file's size and first "
                        f"and last bytes, before any decoding): {_first_few_in_order(named)}. {fix}")
    hit = pd.Series(False, index=meta.index)
    for c in columns:
        if c in meta:
            hit |= meta[c].isin(bad.keys())
    report["damaged_files"] = {
        i: "; ".join(bad[p] for c in columns if c in meta for p in [row[c]] if p in bad)
        for i, row in meta[hit].set_index("image_id").iterrows()}
    return meta[~hit]


def _first_few_in_order(items, n=5) -> str:
    items = list(items)
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def fingerprint_files(meta_path: Path, paths) -> str:
    """sha256 over the metadata bytes and the name and size of every image file used.

    Cheap (no image is read) yet changes when an image is added, removed, renamed or re-encoded to a
    different size; that is what the cache keys need."""
    h = hashlib.sha256()
    h.update(Path(meta_path).read_bytes())
    for p in sorted(paths, key=lambda p: Path(p).name):
        p = Path(p)
        h.update(f"{p.name}:{p.stat().st_size};".encode())
    return h.hexdigest()[:16]


def _attach_masks(meta: pd.DataFrame, root: Path, masks, report: dict) -> None:
    """Set ``meta["mask_path"]`` (in place): every image's mask file when masks are used (``masks`` True, or
    "auto" and every image has one), else None. Raises DataError when masks are required and missing."""
    if masks is False:  # mask folders are not even looked at
        meta["mask_path"] = None
        return
    mask_files, mask_dirs = scan_dirs(root, MASK_DIRS, suffixes=(".png",), strip="_segmentation", what="mask folder")
    missing_masks = set(meta["image_id"]) - mask_files.keys()
    if masks is True and (not mask_dirs or missing_masks):
        raise DataError(
            "Lesion masks requested but "
            + (f"{len(missing_masks)} image(s) have none in {', '.join(mask_dirs)} "
               f"({_first_few(missing_masks)})" if mask_dirs else
               f"no mask folder in {root} (expected masks/ or HAM10000_segmentations_lesion_tschandl/)")
            + ". Download HAM10000_segmentations_lesion_tschandl.zip (`hamviz download --masks`) "
              "or run without masks.")
    if mask_dirs and not missing_masks:
        meta["mask_path"] = [str(mask_files[i]) for i in meta["image_id"]]
        report["mask_dirs"] = mask_dirs
    elif mask_dirs:
        report["images_without_mask"] = len(missing_masks)
    if "mask_path" not in meta:
        meta["mask_path"] = None


def mask_geometry_problem(image_wh, mask_wh) -> str | None:
    """Why a lesion mask of size ``mask_wh`` (width, height) cannot outline its image of size ``image_wh``, or None
    when it can: a mask has its image's size, or an exact integer multiple of it (the same aspect: 400x300 for a
    200x150 image; resized onto it, nearest neighbour). Any other size (two pixels larger, transposed, cropped to the
    lesion's bounding box, another aspect) would put the outline on other pixels of the image once resized."""
    (iw, ih), (mw, mh) = (int(v) for v in image_wh), (int(v) for v in mask_wh)
    if iw > 0 and ih > 0 and mw % iw == 0 and mh % ih == 0 and mw // iw == mh // ih >= 1:
        return None
    if (mw, mh) == (ih, iw):
        hint = "transposed"
    elif mw <= iw and mh <= ih:
        hint = "smaller than its image: cropped?"
    elif mw * ih == mh * iw:
        hint = "the same aspect, but not an integer multiple"
    else:
        hint = "another aspect"
    return f"mask {mw}x{mh}, image {iw}x{ih}: {hint}"


def check_mask_geometry(meta: pd.DataFrame, masks, on_mask_mismatch: str, report: dict, where: str) -> None:
    """Check every used mask's size against its image's (:func:`mask_geometry_problem`, from the files' headers:
    half a second for HAM10000's 10,015 pairs), before any decoding. ``on_mask_mismatch="error"``: a DataError naming
    the masks, their images and both sizes; ``"skip"``: such masks are treated as missing (in place: with masks
    "auto", as with any missing mask, no mask is used; with masks True, a DataError), and listed in
    ``report["mask_mismatch"]`` (image id -> why)."""
    if "mask_path" not in meta or not meta["mask_path"].map(lambda p: isinstance(p, str)).any():
        return
    bad = {}
    for image_id, path, mask_path in zip(meta["image_id"], meta["path"], meta["mask_path"]):
        if isinstance(mask_path, str):
            why = mask_geometry_problem(image_size(path), image_size(mask_path))
            if why:
                bad[image_id] = f"{Path(mask_path).name} for {Path(path).name} ({why})"
    if not bad:
        return
    rule = ("A mask must have its image's size or an exact integer multiple of it (the same aspect, e.g. 400x300 for "
            "200x150: then it is resized); any other size outlines other pixels.")
    if on_mask_mismatch == "error":
        raise DataError(f"{len(bad)} lesion mask(s) in {where} do not fit their image: "
                        f"{_first_few_in_order(bad.values(), 3)}. {rule} Replace them with these images' own masks "
                        f"(`hamviz download --masks`), or set on_mask_mismatch: skip to treat them as missing and "
                        f"report them.")
    report["mask_mismatch"] = bad
    if masks is True:
        raise DataError(f"Lesion masks requested (masks: true) but {len(bad)} image(s) have a mask of another geometry "
                        f"(treated as missing, on_mask_mismatch: skip): {_first_few_in_order(bad.values(), 3)}. "
                        f"{rule} Replace them, or run with masks: auto (then without masks) or masks: false.")
    meta["mask_path"] = None
    report["images_without_mask"] = len(bad)
    report.pop("mask_dirs", None)


def _check_metadata(meta: pd.DataFrame, meta_path: Path) -> None:
    """Duplicate image ids, unknown labels and lesions with two diagnoses: a DataError naming them."""
    dup = meta["image_id"][meta["image_id"].duplicated()]
    if len(dup):
        raise DataError(f"Metadata {meta_path} lists {dup.nunique()} image id(s) twice: "
                        f"{_first_few(set(dup))}. Each image_id must appear once.")
    unknown = sorted(set(meta["dx"]) - set(CLASSES))
    if unknown:
        counts = meta["dx"][meta["dx"].isin(unknown)].value_counts().to_dict()
        raise DataError(f"Metadata {meta_path} has unknown dx label(s) {counts}; "
                        f"HAM10000 labels are {', '.join(CLASSES)}. Fix or drop those rows.")
    per_lesion = meta.groupby("lesion_id")["dx"].nunique()
    mixed = per_lesion[per_lesion > 1]
    if len(mixed):
        raise DataError(f"{len(mixed)} lesion_id(s) have more than one dx: {_first_few(mixed.index)}. "
                        f"A lesion has one diagnosis; fix the metadata.")


def load_ham10000(root: str | os.PathLike | None = None, *, masks: bool | str = "auto",
                  on_missing: str = "error", on_corrupt: str = "error",
                  on_mask_mismatch: str = "error") -> Dataset:
    """Load HAM10000 metadata and locate every image (and lesion mask) without decoding them.

    root: the data directory (default ``$HAMVIZ_DATA``), in the official layout
      (``HAM10000_metadata.csv``, ``HAM10000_images_part_1/``, ``HAM10000_images_part_2/``) or flat
      (``HAM10000_metadata.csv``, ``images/``); masks from ``masks/`` or
      ``HAM10000_segmentations_lesion_tschandl/`` (``ISIC_xxxxxxx_segmentation.png``).
    masks: True to require masks, False to ignore them, "auto" to use them when every image has one.
    on_missing: "error" (default) stops on image ids without files or files without ids;
      "skip" drops those rows / ignores those files and lists them in ``report``.
    on_corrupt: image (and used mask) files that are empty, truncated or no image by a quick look at their
      size and first and last bytes (:func:`drop_damaged`): "error" (default) names them; "skip" drops their
      rows and lists them in ``report["damaged_files"]``. Damage inside a file is found when it is decoded
      (:mod:`hamviz.cache`, with the same setting).
    on_mask_mismatch: masks whose size is neither their image's nor an exact integer multiple of it
      (:func:`check_mask_geometry`): "error" (default) names them; "skip" treats them as missing and lists them in
      ``report["mask_mismatch"]``.

    Raises DataError naming the problem and the fix: a folder or file this user may not read (a permission
    problem), missing metadata or columns, unknown labels, ids without files, damaged files, ...
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', not {on_missing!r}")
    if on_corrupt not in ("error", "skip"):
        raise ValueError(f"on_corrupt must be 'error' or 'skip', not {on_corrupt!r}")
    if on_mask_mismatch not in ("error", "skip"):
        raise ValueError(f"on_mask_mismatch must be 'error' or 'skip', not {on_mask_mismatch!r}")
    root = _resolve_data_dir(root)
    meta_path = find_metadata(root)
    meta = read_metadata(meta_path)
    for col in REQUIRED_COLUMNS:
        meta[col] = meta[col].astype(str).str.strip()
    _check_metadata(meta, meta_path)

    images, used_dirs = scan_dirs(root, IMAGE_DIRS)
    if not used_dirs:
        raise DataError(f"No image folder in {root}: expected HAM10000_images_part_1/ and "
                        f"HAM10000_images_part_2/ (official layout) or images/ (flat layout). "
                        f"{GET_DATA_HINT}")
    layout = "flat" if used_dirs == ["images"] else "official"
    report: dict = {"image_dirs": used_dirs}
    meta = reconcile(meta, images, used_dirs, on_missing, report, where=f"Data in {root}", rows="metadata",
                     fix="Complete the download, or pass on_missing='skip' (params: on_missing: skip) to drop "
                         "them and report it.")
    if meta.empty:
        raise DataError(f"No image of the metadata {meta_path} was found in {root}. {GET_DATA_HINT}")

    meta = meta.reset_index(drop=True).copy()
    meta["label"] = meta["dx"].map({c: i for i, c in enumerate(CLASSES)}).astype(np.int64)
    meta["path"] = [str(images[i]) for i in meta["image_id"]]

    if masks not in (True, False, "auto"):
        raise ValueError(f"masks must be True, False or 'auto', not {masks!r}")
    _attach_masks(meta, root, masks, report)

    meta = drop_damaged(meta, ("path", "mask_path"), on_corrupt, report, where=str(root),
                        fix="Re-download them (`hamviz download`, with --masks for masks), or set on_corrupt: skip "
                            "to leave those images out and report them.")
    if meta.empty:
        raise DataError(f"Every image of {root} is damaged ({len(report['damaged_files'])}). {GET_DATA_HINT}")
    meta = meta.reset_index(drop=True)
    check_mask_geometry(meta, masks, on_mask_mismatch, report, str(root))
    absent = [c for c in OPTIONAL_COLUMNS if c not in meta.columns]
    if absent:
        report["missing_optional_columns"] = absent
    fp = fingerprint_files(meta_path, meta["path"])
    return Dataset(meta=meta, root=root, fingerprint=fp, layout=layout, report=report)
