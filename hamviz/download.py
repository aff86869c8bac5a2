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
Keep ``downloads/``: without it the next ``hamviz download`` fetches everything again (the book does not need it:
it trusts the completion marker below).

Before the first byte, :func:`download` states how much it will fetch and about how long that takes, and refuses
(DataError) when the destination's file system has too little free space for the archives and their unpacked
copies (:func:`plan`). Nothing half-done ever looks complete: pooch downloads each file to a temporary name and
moves it into place only once it is whole (an interrupted download is simply fetched again, from the start); a
zip is unpacked into a hidden sibling folder (``DEST/.<target>.partial``) and renamed into place in one step; and
``DEST/.hamviz-complete.json`` (:data:`hamviz.config.COMPLETE_MARKER`) names the items whose every file is in
place -- the book only uses a default data folder that has it.

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
import datetime as _dt
import json
import logging
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pooch
import requests

from .config import COMPLETE_MARKER, DATA_ENV, GET_DATA_HINT, DataError, __version__, completed_items, reachable
from .files import atomic_path, bar

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
    size: its size in bytes, approximate (None: not known); unpacked, a zip of JPEGs or PNGs takes about as much
      again. Used to state the download and check the free space before it starts.
    """

    fname: str
    url: str
    known_hash: str | None
    kind: str = "file"
    target: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Item:
    description: str
    files: tuple[RemoteFile, ...]


def _dermamnist(size: int, md5: str) -> Item:
    fname = "dermamnist.npz" if size == 28 else f"dermamnist_{size}.npz"
    return Item(f"MedMNIST DermaMNIST {size}x{size} npz (Zenodo 10519652)",
                (RemoteFile(fname, f"{ZENODO}/{fname}?download=1", f"md5:{md5}"),))


#: Every downloadable item, by name (the names ``download(items=...)`` accepts). Sizes are estimates: the images
#: from the 70 byte-exact originals in ../shared/data (269.6 kB on average) times 5,000 and 5,015 images, about
#: 2.7 GB in all as commonly quoted; the metadata from the real file; the masks and the ISIC 2018 test images
#: (1,512 originals) likewise estimated.
REGISTRY: dict[str, Item] = {
    "ham10000": Item("HAM10000 images (2 zips, about 2.7 GB) and metadata, Harvard Dataverse", (
        RemoteFile("HAM10000_metadata.csv", f"{DATAVERSE}/4338392?format=original",
                   "md5:8f85fb1aa29d80a2797247e434deb79d", "table", "HAM10000_metadata.csv", 563_277),
        RemoteFile("HAM10000_images_part_1.zip", f"{DATAVERSE}/3172585",
                   "md5:4639bfa73ab251610530a97c898e6e46", "zip", "HAM10000_images_part_1", 1_348_000_000),
        RemoteFile("HAM10000_images_part_2.zip", f"{DATAVERSE}/3172584",
                   "md5:da43d6cc50f6613013be07e8986b384b", "zip", "HAM10000_images_part_2", 1_352_000_000),
    )),
    "masks": Item("HAM10000 lesion segmentation masks (Tschandl), Harvard Dataverse", (
        RemoteFile("HAM10000_segmentations_lesion_tschandl.zip", f"{DATAVERSE}/3838943",
                   "md5:6e8d252e09cfdb0189199f15985a5b84", "zip",
                   "HAM10000_segmentations_lesion_tschandl", 11_000_000),
    )),
    "isic2018-test": Item("ISIC 2018 Task 3 test images and ground truth (no published checksum)", (
        RemoteFile("ISIC2018_Task3_Test_Input.zip", f"{ISIC_S3}/ISIC2018_Task3_Test_Input.zip",
                   None, "zip", "ISIC2018_Task3_Test_Input", 408_000_000),
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


def _names(items) -> list[str]:
    names = [items] if isinstance(items, str) else list(dict.fromkeys(items))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        raise ValueError(f"Unknown download item(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"valid items: {', '.join(REGISTRY)}")
    return names


def download(dest, items=("ham10000",), *, base_url: str | None = None, progress: bool = True) -> Path:
    """Download ``items`` (names in :data:`REGISTRY`) into ``dest`` and unpack them; return ``dest``.

    base_url: fetch every file from ``base_url + "/" + fname`` instead of its own URL (mirrors, tests).
    progress: show a progress bar per file (:func:`hamviz.files.bar`: plain lines in a log) and one line per
      file (on stderr).
    Before anything is fetched, says how many bytes will come and about how long that takes (:func:`plan`).
    Once every file of the items is in place, records them in ``dest``'s completion marker
    (:data:`hamviz.config.COMPLETE_MARKER`). Raises ValueError for an unknown item (before any download) and
    DataError for too little free space (before any download), a failed download or a checksum mismatch.
    """
    names = _names(items)
    dest = Path(dest).expanduser().resolve()
    todo = plan(dest, names, base_url)
    if todo.files:
        _say(progress, todo.describe())
        todo.check_space()
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        for remote in REGISTRY[name].files:
            _get(remote, dest, base_url, progress)
    _mark_complete(dest, names)
    return dest


#: download speeds the time estimate is given for (bits per second)
SPEEDS = (100e6, 10e6)


@dataclass
class Plan:
    """What :func:`download` will fetch into ``dest``: ``files`` (not yet downloaded), ``fetch_bytes`` (their
    known sizes, bytes), ``unpack_bytes`` (what unpacking them takes, bytes), ``unknown`` (file names of unknown
    size), ``free_bytes`` (free space on ``dest``'s file system)."""

    dest: Path
    files: list[RemoteFile] = field(default_factory=list)
    fetch_bytes: int = 0
    unpack_bytes: int = 0
    unknown: list[str] = field(default_factory=list)
    free_bytes: int = 0

    @property
    def need_bytes(self) -> int:
        """Free space needed (bytes): the downloads, their unpacked copies, and 5 % to spare."""
        return int((self.fetch_bytes + self.unpack_bytes) * 1.05)

    def describe(self) -> str:
        """One line: what comes, how big, about how long, where, and the disk space it takes."""
        names = ", ".join(f.fname for f in self.files)
        times = ", ".join(f"{_duration(self.fetch_bytes * 8 / bps)} at {bps / 1e6:g} Mbit/s" for bps in SPEEDS)
        unknown = f" plus {len(self.unknown)} file(s) of unknown size" if self.unknown else ""
        return (f"Downloading {_gb(self.fetch_bytes)}{unknown} ({names}) into {self.dest}: about {times}; it "
                f"takes {_gb(self.need_bytes)} of disk with the unpacked copies ({_gb(self.free_bytes)} free there).")

    def check_space(self) -> None:
        """Raise DataError when the free space is less than :attr:`need_bytes`."""
        if self.free_bytes < self.need_bytes:
            raise DataError(
                f"Not enough disk space to download into {self.dest}: it needs about {_gb(self.need_bytes)} "
                f"({_gb(self.fetch_bytes)} of downloads and {_gb(self.unpack_bytes)} unpacked), and its file system "
                f"has {_gb(self.free_bytes)} free. Free some space, or download onto another disk: "
                f"`hamviz download --dest DIR` then `export {DATA_ENV}=DIR` (or set HAMVIZ_HOME=DIR for the book's "
                f"own download). Nothing was downloaded.")


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{max(1, round(seconds / 60))} min"


def plan(dest, items=("ham10000",), base_url: str | None = None) -> Plan:
    """What :func:`download` of ``items`` into ``dest`` would fetch now (files not yet under ``dest``), with
    their sizes in bytes and the free space of ``dest``'s file system (``shutil.disk_usage`` of its nearest
    existing folder). Reads nothing from the network. Raises ValueError for an unknown item."""
    dest = Path(dest).expanduser().absolute()
    out = Plan(dest)
    for name in _names(items):
        for remote in REGISTRY[name].files:
            if (_local_path(remote, dest)).is_file():
                continue
            out.files.append(remote)
            if remote.size is None:
                out.unknown.append(remote.fname)
                continue
            out.fetch_bytes += remote.size
            if remote.kind in ("zip", "table"):
                out.unpack_bytes += remote.size
    probe = dest
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    out.free_bytes = shutil.disk_usage(probe).free
    return out


def _local_path(remote: RemoteFile, dest: Path) -> Path:
    return (dest if remote.kind == "file" else dest / DOWNLOADS) / remote.fname


def _url(remote: RemoteFile, base_url: str | None) -> str:
    return remote.url if base_url is None else f"{base_url.rstrip('/')}/{remote.fname}"


def _endpoints(items, base_url: str | None) -> list[tuple[str, int, str]]:
    """(host, port, scheme) of every server that downloading ``items`` connects to."""
    out = set()
    for name in _names(items):
        for remote in REGISTRY[name].files:
            parts = urlsplit(_url(remote, base_url))
            scheme = parts.scheme or "https"
            out.add((parts.hostname or "", parts.port or (80 if scheme == "http" else 443), scheme))
    return sorted(out)


def hosts(items=("ham10000",), base_url: str | None = None) -> list[str]:
    """The hosts (``name``, or ``name:port`` for another port than 443) that downloading ``items`` connects to
    (``base_url``'s when given)."""
    return list(dict.fromkeys(h if port == 443 else f"{h}:{port}" for h, port, _ in _endpoints(items, base_url)))


def online(items=("ham10000",), base_url: str | None = None, timeout: float = 3.0) -> bool:
    """Whether every host that downloading ``items`` connects to (:func:`hosts`) could be reached within
    ``timeout`` seconds (:func:`hamviz.config.reachable`: a TCP connection to the host, or to the proxy that
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` name for it unless ``NO_PROXY`` covers it -- the proxies
    pooch's downloads, through requests, go through): a cheap check before any download, so that an offline
    machine is told at once rather than after pooch's attempts. Never raises."""
    return all(reachable(host, port, timeout, scheme) for host, port, scheme in _endpoints(items, base_url))


def _mark_complete(dest: Path, names) -> None:
    """Add ``names`` to ``dest``'s completion marker (written whole, atomically)."""
    done = sorted(completed_items(dest) | set(names))
    tmp = dest / f"{COMPLETE_MARKER}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"items": done, "hamviz": __version__,
                               "completed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
                              indent=1))
    tmp.replace(dest / COMPLETE_MARKER)


def item_size(name: str) -> int:
    """The known download size of item ``name`` in bytes (files of unknown size count 0)."""
    return sum(f.size or 0 for f in REGISTRY[_names(name)[0]].files)


def how_to_get(names, dest) -> str:
    """How to get ``names`` into ``dest`` by hand: the exact command, and the URLs of the files."""
    names = _names(names)
    flags = "".join(f" --{n}" for n in names if n != "ham10000")
    urls = "; ".join(f"{f.fname}: {f.url}" for n in names for f in REGISTRY[n].files)
    return (f"on a machine with internet run `hamviz download --dest {dest}{flags}` (or fetch {urls}; "
            f"doi:10.7910/DVN/DBW86T), and copy {dest} here")


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
    url = _url(remote, base_url)
    path = _local_path(remote, dest)
    folder = path.parent
    action = "fetch"
    if not path.is_file():
        _say(progress, f"Downloading {remote.fname} from {url}")
        # hamviz's bar: tqdm on a terminal, a few plain lines in a log (pooch's own bar writes \r frames there)
        meter = bar(desc=remote.fname, unit="B", unit_scale=True, ncols=79, leave=True) if progress else False
        downloader = pooch.HTTPDownloader(progressbar=meter, headers={"User-Agent": "hamviz-download (pooch)"})
        try:
            with _quiet_pooch():
                # known_hash=None: pooch streams into a temporary file and moves it into place only once it is
                # whole (an interrupted download leaves nothing under this name); we check the hash just below,
                # so that a bad download and a bad file already on disk give the same error.
                pooch.retrieve(url, known_hash=None, fname=remote.fname, path=folder,
                               downloader=downloader)
        except requests.exceptions.RequestException as exc:
            raise DataError(f"Download of {remote.fname} from {url} failed: {exc}. Check the connection "
                            f"and retry (what is complete is kept; this file starts again), or download the file "
                            f"by hand into {folder}. {GET_DATA_HINT}") from exc
        action = "download"
    if remote.known_hash is None:
        log.warning("%s (from %s) has no published checksum: it was NOT verified. Check it by hand "
                    "(it should unpack without errors) before relying on it.", path, url)
    else:
        _check_hash(path, remote.known_hash, url, fresh=action == "download")
    if remote.kind == "zip":
        _unzip(path, remote.target, dest, action, progress)
    elif remote.kind == "table":
        _write_table(path, dest / remote.target, action)


def _check_hash(path: Path, known_hash: str, url: str, fresh: bool = False) -> None:
    """Raise DataError if ``path`` does not match ``known_hash``. ``fresh``: the file was just downloaded, so
    it is deleted (the next run downloads it again); a file found on disk is left for the user to look at."""
    alg, _, expected = known_hash.rpartition(":")
    alg = alg or "sha256"
    actual = pooch.file_hash(str(path), alg=alg)
    if actual.lower() != expected.lower():
        if fresh:
            path.unlink(missing_ok=True)
            fix = "The download is corrupt or incomplete and was deleted: run `hamviz download` again."
        else:
            fix = f"The file is corrupt or incomplete: delete {path} and run `hamviz download` again."
        raise DataError(
            f"{alg} checksum mismatch for {path.name} ({path}): expected {expected}, got {actual}. {fix} "
            f"If it fails again, the file at {url} has changed; download it by hand. {GET_DATA_HINT}")


def _junk(member: str) -> bool:
    name = member.rsplit("/", 1)[-1]
    return member.endswith("/") or "__MACOSX/" in member or name.startswith("._") or name == ".DS_Store"


def _unzip(archive: Path, target: str, dest: Path, action: str, progress: bool) -> None:
    """Unpack ``archive`` into ``dest/target``: into the hidden sibling ``dest/.<target>.partial`` first, then
    renamed into place in one step, so that ``dest/target`` is either the whole archive or absent (or its
    previous complete copy). Skipped when nothing was downloaded and every member is there with its size."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not _junk(i.filename)]
            # The Dataverse image zips are flat; the masks zip holds a folder of the target's name.
            nested = bool(infos) and all(i.filename.startswith(target + "/") for i in infos)
            final = dest / target
            inside = (lambda name: name[len(target) + 1:]) if nested else (lambda name: name)
            if action == "fetch" and all(_same_size(final / inside(i.filename), i.file_size) for i in infos):
                return
            _say(progress, f"Unpacking {archive.name} into {final}")
            partial = dest / f".{target}.partial"
            shutil.rmtree(partial, ignore_errors=True)  # what an interrupted unpack left
            partial.mkdir(parents=True)
            for info in infos:
                zf.extract(info, partial)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} is not a valid zip file ({exc}): delete it and run "
                        f"`hamviz download` again.") from exc
    _replace_folder(partial / target if nested else partial, final)
    shutil.rmtree(partial, ignore_errors=True)


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _replace_folder(src: Path, final: Path) -> None:
    """Move the folder ``src`` to ``final`` (renames on one file system), replacing what was there."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        final.rename(old)
    src.rename(final)
    shutil.rmtree(old, ignore_errors=True)


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
