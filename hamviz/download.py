"""``hamviz download``: fetch HAM10000 (and optional extras) with checksums, built on pooch.

Each downloaded file is kept under ``DEST/downloads/`` (``.npz`` files directly in ``DEST``), checked
against its published md5 and unpacked into the layout :func:`hamviz.data.load_ham10000` reads::

    DEST/HAM10000_metadata.csv                      (comma-separated, whatever the server sent)
    DEST/HAM10000_images_part_1/ISIC_*.jpg
    DEST/HAM10000_images_part_2/ISIC_*.jpg
    DEST/HAM10000_segmentations_lesion_tschandl/ISIC_*_segmentation.png     (item "masks")
    DEST/ISIC2018_Task3_Test_Input/, DEST/ISIC2018_Task3_Test_GroundTruth/  (item "isic2018-test")
    DEST/dermamnist[_SIZE].npz                                              (items "dermamnist[-SIZE]")

A second run with the files in place downloads nothing (files are re-checked, zips not re-extracted).
Keep ``downloads/``: without it the next ``hamviz download`` fetches everything again.

Where the URLs and checksums come from (none could be checked from the machine this module was
written on, which has no internet; the tests exercise the code against a local HTTP server):

* ``ham10000``, ``masks``: Harvard Dataverse doi:10.7910/DVN/DBW86T (version 4), access API
  ``https://dataverse.harvard.edu/api/access/datafile/<id>``. File ids and md5s as published by
  Dataverse and quoted, consistently, by several public download scripts and data cards:
  images part 1 = 3172585, part 2 = 3172584, metadata = 4338392 (``?format=original`` asks for the
  uploaded CSV rather than Dataverse's tab-separated export), masks = 3838943.
* ``isic2018-test``: ISIC's S3 bucket. **No checksum is published for these two zips**: they are
  downloaded unverified and a warning says so.
* ``dermamnist*``: Zenodo record 10519652 (MedMNIST+); URLs and md5s from the ``medmnist`` 3.0.2
  package's ``info.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pooch
import requests

from .config import DATA_ENV, GET_DATA_HINT, DataError
from .files import atomic_path

log = logging.getLogger(__name__)

DATAVERSE = "https://dataverse.harvard.edu/api/access/datafile"
ISIC_S3 = "https://isic-challenge-data.s3.amazonaws.com/2018"
ZENODO = "https://zenodo.org/records/10519652/files"
#: Sub-folder of the destination that keeps the archives as downloaded.
DOWNLOADS = "downloads"


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    fname: its name on the server (``base_url`` mode fetches ``base_url/fname``) and on disk.
    kind: "zip" (unpacked into ``DEST/target``; a zip whose members all sit in a ``target/`` folder is
      unpacked into ``DEST``), "table" (written to ``DEST/target`` as a comma-separated file) or "file"
      (kept as ``DEST/fname``).
    known_hash: "md5:<hex>" (or "sha256:<hex>"), None where no checksum is published.
    """

    fname: str
    url: str
    known_hash: str | None
    kind: str = "file"
    target: str | None = None


@dataclass(frozen=True)
class Item:
    description: str
    files: tuple[RemoteFile, ...]


def _dermamnist(size: int, md5: str) -> Item:
    fname = "dermamnist.npz" if size == 28 else f"dermamnist_{size}.npz"
    return Item(f"MedMNIST DermaMNIST {size}x{size} npz (Zenodo 10519652)",
                (RemoteFile(fname, f"{ZENODO}/{fname}?download=1", f"md5:{md5}"),))


#: Every downloadable item, by name (the names ``download(items=...)`` accepts).
REGISTRY: dict[str, Item] = {
    "ham10000": Item("HAM10000 images (2 zips, about 2.8 GB) and metadata, Harvard Dataverse", (
        RemoteFile("HAM10000_metadata.csv", f"{DATAVERSE}/4338392?format=original",
                   "md5:8f85fb1aa29d80a2797247e434deb79d", "table", "HAM10000_metadata.csv"),
        RemoteFile("HAM10000_images_part_1.zip", f"{DATAVERSE}/3172585",
                   "md5:4639bfa73ab251610530a97c898e6e46", "zip", "HAM10000_images_part_1"),
        RemoteFile("HAM10000_images_part_2.zip", f"{DATAVERSE}/3172584",
                   "md5:da43d6cc50f6613013be07e8986b384b", "zip", "HAM10000_images_part_2"),
    )),
    "masks": Item("HAM10000 lesion segmentation masks (Tschandl), Harvard Dataverse", (
        RemoteFile("HAM10000_segmentations_lesion_tschandl.zip", f"{DATAVERSE}/3838943",
                   "md5:6e8d252e09cfdb0189199f15985a5b84", "zip",
                   "HAM10000_segmentations_lesion_tschandl"),
    )),
    "isic2018-test": Item("ISIC 2018 Task 3 test images and ground truth (no published checksum)", (
        RemoteFile("ISIC2018_Task3_Test_Input.zip", f"{ISIC_S3}/ISIC2018_Task3_Test_Input.zip",
                   None, "zip", "ISIC2018_Task3_Test_Input"),
        RemoteFile("ISIC2018_Task3_Test_GroundTruth.zip",
                   f"{ISIC_S3}/ISIC2018_Task3_Test_GroundTruth.zip",
                   None, "zip", "ISIC2018_Task3_Test_GroundTruth"),
    )),
    "dermamnist": _dermamnist(28, "0744692d530f8e62ec473284d019b0c7"),
    "dermamnist-64": _dermamnist(64, "b70a2f5635c6199aeaa28c31d7202e1f"),
    "dermamnist-128": _dermamnist(128, "2defd784463fa5243564e855ed717de1"),
    "dermamnist-224": _dermamnist(224, "8974907d8e169bef5f5b96bc506ae45d"),
}
DERMAMNIST_SIZES = (28, 64, 128, 224)


def dermamnist_item(size: int | str) -> str:
    """The registry name of the DermaMNIST file of ``size`` pixels (28, 64, 128 or 224)."""
    size = int(size)
    if size not in DERMAMNIST_SIZES:
        raise ValueError(f"DermaMNIST comes in sizes {', '.join(map(str, DERMAMNIST_SIZES))}, not {size}")
    return "dermamnist" if size == 28 else f"dermamnist-{size}"


def download(dest, items=("ham10000",), *, base_url: str | None = None, progress: bool = True) -> Path:
    """Download ``items`` (names in :data:`REGISTRY`) into ``dest`` and unpack them; return ``dest``.

    base_url: fetch every file from ``base_url + "/" + fname`` instead of its own URL (mirrors, tests).
    progress: show tqdm progress bars and one line per file (on stderr).
    Raises ValueError for an unknown item (before any download) and DataError for a failed download
    or a checksum mismatch.
    """
    names = [items] if isinstance(items, str) else list(dict.fromkeys(items))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        raise ValueError(f"Unknown download item(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"valid items: {', '.join(REGISTRY)}")
    dest = Path(dest).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        for remote in REGISTRY[name].files:
            _get(remote, dest, base_url, progress)
    return dest


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)
    else:
        log.info(message)


@contextlib.contextmanager
def _quiet_pooch():
    """pooch logs every download and every unzipped member at INFO; we report for ourselves."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _get(remote: RemoteFile, dest: Path, base_url: str | None, progress: bool) -> None:
    url = remote.url if base_url is None else f"{base_url.rstrip('/')}/{remote.fname}"
    folder = dest if remote.kind == "file" else dest / DOWNLOADS
    path = folder / remote.fname
    action = "fetch"
    if not path.is_file():
        _say(progress, f"Downloading {remote.fname} from {url}")
        downloader = pooch.HTTPDownloader(progressbar=progress,
                                          headers={"User-Agent": "hamviz-download (pooch)"})
        try:
            with _quiet_pooch():
                # known_hash=None: pooch moves the complete file into place; we check it just below,
                # so that a bad download and a bad file already on disk give the same error.
                pooch.retrieve(url, known_hash=None, fname=remote.fname, path=folder,
                               downloader=downloader)
        except requests.exceptions.RequestException as exc:
            raise DataError(f"Download of {remote.fname} from {url} failed: {exc}. Check the connection "
                            f"and retry, or download the file by hand into {folder}. {GET_DATA_HINT}") from exc
        action = "download"
    if remote.known_hash is None:
        log.warning("%s (from %s) has no published checksum: it was NOT verified. Check it by hand "
                    "(it should unpack without errors) before relying on it.", path, url)
    else:
        _check_hash(path, remote.known_hash, url)
    if remote.kind == "zip":
        _unzip(path, remote.target, dest, action, progress)
    elif remote.kind == "table":
        _write_table(path, dest / remote.target, action)


def _check_hash(path: Path, known_hash: str, url: str) -> None:
    alg, _, expected = known_hash.rpartition(":")
    alg = alg or "sha256"
    actual = pooch.file_hash(str(path), alg=alg)
    if actual.lower() != expected.lower():
        raise DataError(
            f"{alg} checksum mismatch for {path.name} ({path}): expected {expected}, got {actual}. "
            f"The file is corrupt or incomplete: delete {path} and run `hamviz download` again. "
            f"If it fails again, the file at {url} has changed; download it by hand. {GET_DATA_HINT}")


def _junk(member: str) -> bool:
    name = member.rsplit("/", 1)[-1]
    return member.endswith("/") or "__MACOSX/" in member or name.startswith("._") or name == ".DS_Store"


def _unzip(archive: Path, target: str, dest: Path, action: str, progress: bool) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if not _junk(m)]
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} is not a valid zip file ({exc}): delete it and run "
                        f"`hamviz download` again.") from exc
    # The Dataverse image zips are flat; the masks zip holds a folder of the target's name.
    nested = bool(members) and all(m.startswith(target + "/") for m in members)
    extract_dir = dest if nested else dest / target
    if action != "fetch" or not all((extract_dir / m).is_file() for m in members):
        _say(progress, f"Unpacking {archive.name} into {dest / target}")
    with _quiet_pooch():
        # Unzip re-extracts only after a download or when a member is missing.
        pooch.Unzip(members=members, extract_dir=str(extract_dir))(str(archive), action, None)


def _write_table(raw: Path, out: Path, action: str) -> None:
    """Write the metadata as a comma-separated ``out``; Dataverse's export is tab-separated."""
    if out.is_file() and action == "fetch":
        return
    with raw.open(encoding="utf-8-sig") as fh:
        header = fh.readline()
    with atomic_path(out) as tmp:
        if "\t" in header:
            import pandas as pd  # noqa: PLC0415 - only needed for the conversion

            table = pd.read_csv(raw, sep="\t", dtype=str, keep_default_na=False)
            table.columns = [str(c).strip().strip('"') for c in table.columns]
            table.to_csv(tmp, index=False)
        else:
            shutil.copyfile(raw, tmp)


# --------------------------------------------------------------------------------------------------
# Command line: `hamviz download --dest DIR [--masks] [--isic2018-test] [--dermamnist SIZE] ...`
# --------------------------------------------------------------------------------------------------

def _dermamnist_arg(text: str) -> str:
    try:
        return dermamnist_item(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_download_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``download`` options; the parsed Namespace has ``dest``, ``items``, ``base_url``,
    ``progress`` (``items`` always starts with "ham10000")."""
    parser.add_argument("--dest", required=True, type=Path, help="folder to download into")
    parser.add_argument("--masks", dest="items", action="append_const", const="masks",
                        help="also get the lesion segmentation masks (about 11 MB)")
    parser.add_argument("--isic2018-test", dest="items", action="append_const", const="isic2018-test",
                        help="also get the ISIC 2018 Task 3 test set (unverified: no published checksum)")
    parser.add_argument("--dermamnist", dest="items", action="append", type=_dermamnist_arg,
                        metavar="SIZE", help="also get MedMNIST DermaMNIST at 28, 64, 128 or 224 px")
    parser.add_argument("--base-url", default=None, metavar="URL",
                        help="fetch every file from URL/<file name> (a mirror) instead of its source")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")
    parser.set_defaults(items=["ham10000"])  # after add_argument: also the append actions' default
    return parser


def run_download(args: argparse.Namespace) -> int:
    """Run a parsed ``download`` command (attributes dest, items, base_url[, progress])."""
    items = list(getattr(args, "items", None) or ["ham10000"])
    dest = download(args.dest, items, base_url=getattr(args, "base_url", None),
                    progress=getattr(args, "progress", True))
    print(f"Downloaded {', '.join(items)} into {dest}.")
    if "ham10000" in items:
        print(f"Point hamviz at it with: export {DATA_ENV}={dest}")
    return 0


def main_download(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hamviz download", description=__doc__.splitlines()[0])
    return run_download(add_download_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_download())
