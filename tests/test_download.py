"""hamviz.download against a local HTTP server that serves small archives made from real HAM10000 files.

The archives mimic the Dataverse ones (flat image zips, a masks zip holding a folder plus macOS junk,
a tab-separated metadata export) but hold only a few images from the shared copy (``$HAMVIZ_DATA``,
default ``<repo>/../shared/data/ham10000``). No test touches the internet.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import MASK_DIR, Server, patch_registry, write_archives

from hamviz import download as dl
from hamviz.config import DataError
from hamviz.data import load_ham10000

DATA = Path(os.environ.get("HAMVIZ_DATA") or Path(__file__).resolve().parents[1].parent
            / "shared/data/ham10000")
META_CSV = DATA / "HAM10000_metadata.csv"
IMAGES = DATA / "images"
MASKS = DATA / "masks"

pytestmark = pytest.mark.skipif(not (META_CSV.is_file() and IMAGES.is_dir() and MASKS.is_dir()),
                                reason=f"HAM10000 not found in {DATA} (set HAMVIZ_DATA)")


@pytest.fixture(autouse=True)
def _direct(no_proxy):
    """Every test here talks to 127.0.0.1 directly (conftest's ``no_proxy``)."""


@pytest.fixture(scope="module")
def picked() -> pd.DataFrame:
    """20 real metadata rows whose image and mask exist (deterministic: first by image_id)."""
    meta = pd.read_csv(META_CSV, dtype=str, keep_default_na=False).sort_values("image_id")
    ok = meta["image_id"].map(lambda i: (IMAGES / f"{i}.jpg").is_file()
                              and (MASKS / f"{i}_segmentation.png").is_file())
    return meta[ok].head(20).reset_index(drop=True)


@pytest.fixture
def served(tmp_path, picked, monkeypatch):
    """Serve HAM10000-like archives of the 20 picked images (10 per image zip); the registry's hashes and sizes
    are patched to theirs."""
    root = tmp_path / "served"
    write_archives(root, picked)
    patch_registry(monkeypatch, root, ("ham10000", "masks"))
    server = Server(root)
    yield server
    server.stop()


def test_download_gives_the_official_layout_and_is_idempotent(tmp_path, served, picked):
    dest = tmp_path / "data"
    out = dl.download(dest, items=["ham10000", "masks"], base_url=served.url, progress=False)
    assert out == dest.resolve()
    assert sorted(served.requests) == sorted(
        ["/HAM10000_metadata.csv", "/HAM10000_images_part_1.zip", "/HAM10000_images_part_2.zip",
         f"/{MASK_DIR}.zip"])
    for part in ("1", "2"):
        assert len(list((dest / f"HAM10000_images_part_{part}").glob("*.jpg"))) == 10
    assert len(list((dest / MASK_DIR).glob("*.png"))) == 20
    assert not (dest / MASK_DIR / MASK_DIR).exists()

    meta = pd.read_csv(dest / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    assert list(meta.columns) == list(picked.columns)  # tab export written back as comma-separated
    pd.testing.assert_frame_equal(meta, picked)

    ds = load_ham10000(dest, masks=True)
    assert ds.layout == "official"
    assert ds.has_masks
    assert sorted(ds.meta["image_id"]) == sorted(picked["image_id"])
    jpg = dest / "HAM10000_images_part_1" / f"{picked['image_id'][0]}.jpg"
    assert jpg.read_bytes() == (IMAGES / jpg.name).read_bytes()

    # second run: everything present and verified, nothing requested, nothing rewritten
    mtime = jpg.stat().st_mtime_ns
    n = len(served.requests)
    dl.download(dest, items=["ham10000", "masks"], base_url=served.url, progress=False)
    assert len(served.requests) == n
    assert jpg.stat().st_mtime_ns == mtime
    assert len(load_ham10000(dest, masks=True)) == 20


def test_corrupt_download_raises_checksum_error(tmp_path, served):
    good = dl.REGISTRY["ham10000"].files[1]
    assert good.fname == "HAM10000_images_part_1.zip"
    expected = good.known_hash.split(":")[1]
    served_zip = served.root / good.fname
    served_zip.write_bytes(served_zip.read_bytes()[:-100])  # truncated on the server
    actual = hashlib.md5(served_zip.read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        dl.download(tmp_path / "data", base_url=served.url, progress=False)
    msg = str(err.value)
    assert good.fname in msg and "checksum" in msg
    assert expected in msg and actual in msg
    assert "delete" in msg


def test_corrupt_file_on_disk_raises_without_downloading(tmp_path, served):
    dest = tmp_path / "data"
    dl.download(dest, base_url=served.url, progress=False)
    archive = dest / dl.DOWNLOADS / "HAM10000_images_part_2.zip"
    archive.write_bytes(b"not the zip")
    n = len(served.requests)
    with pytest.raises(DataError, match="HAM10000_images_part_2.zip.*expected .*got"):
        dl.download(dest, base_url=served.url, progress=False)
    assert len(served.requests) == n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DataError) as err:
        dl.download(tmp_path / "data", base_url=url, progress=False)
    msg = str(err.value)
    assert f"{url}/HAM10000_metadata.csv" in msg
    assert "HAMVIZ_DATA" in msg and "by hand" in msg


def test_missing_file_on_server_names_the_url(tmp_path, served):
    (served.root / "HAM10000_images_part_2.zip").unlink()
    with pytest.raises(DataError, match=r"/HAM10000_images_part_2\.zip.*404"):
        dl.download(tmp_path / "data", base_url=served.url, progress=False)


def test_unknown_item_is_refused_before_any_request(tmp_path, served):
    with pytest.raises(ValueError) as err:
        dl.download(tmp_path / "data", items=["ham10000", "ham20000"], base_url=served.url,
                    progress=False)
    assert "ham20000" in str(err.value)
    for name in dl.REGISTRY:
        assert name in str(err.value)
    assert served.requests == []
    assert not (tmp_path / "data").exists()


def test_isic_and_dermamnist(tmp_path, picked, monkeypatch, caplog):
    root = tmp_path / "served"
    root.mkdir()
    ids = list(picked["image_id"][:5])
    with zipfile.ZipFile(root / "ISIC2018_Task3_Test_Input.zip", "w") as zf:
        for i in ids:
            zf.write(IMAGES / f"{i}.jpg", f"ISIC2018_Task3_Test_Input/{i}.jpg")
    gt = pd.DataFrame({"image": ids, "NV": 1.0})
    with zipfile.ZipFile(root / "ISIC2018_Task3_Test_GroundTruth.zip", "w") as zf:
        zf.writestr("ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv",
                    gt.to_csv(index=False))
    buf = io.BytesIO()
    np.savez(buf, train_images=np.zeros((2, 64, 64, 3), np.uint8), train_labels=np.zeros((2, 1)))
    (root / "dermamnist_64.npz").write_bytes(buf.getvalue())
    patch_registry(monkeypatch, root, ["dermamnist-64"])
    server = Server(root)
    try:
        dest = tmp_path / "data"
        with caplog.at_level("WARNING", logger="hamviz.download"):
            dl.download(dest, items=["isic2018-test", dl.dermamnist_item(64)], base_url=server.url,
                        progress=False)
    finally:
        server.stop()
    assert sorted(p.name for p in (dest / "ISIC2018_Task3_Test_Input").iterdir()) == \
        sorted(f"{i}.jpg" for i in ids)
    assert (dest / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv").is_file()
    assert (dest / "dermamnist_64.npz").read_bytes() == buf.getvalue()
    unverified = [r.getMessage() for r in caplog.records if "NOT verified" in r.getMessage()]
    assert len(unverified) == 2 and "ISIC2018_Task3_Test_Input.zip" in unverified[0]


def test_registry_is_consistent():
    for name, item in dl.REGISTRY.items():
        for f in item.files:
            assert f.kind in ("zip", "table", "file"), name
            assert f.url.startswith("https://"), name
            if f.known_hash is not None:
                alg, hexdigest = f.known_hash.split(":")
                assert alg == "md5" and len(hexdigest) == 32, name
    assert [dl.dermamnist_item(s) for s in (28, 64, 128, 224)] == \
        ["dermamnist", "dermamnist-64", "dermamnist-128", "dermamnist-224"]
    with pytest.raises(ValueError):
        dl.dermamnist_item(32)


def test_command_line_arguments(tmp_path, served, capsys):
    parser = dl.add_download_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--dest", str(tmp_path), "--masks", "--dermamnist", "64"])
    assert args.items == ["ham10000", "masks", "dermamnist-64"] and args.base_url is None
    assert parser.parse_args(["--dest", "x"]).items == ["ham10000"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--dest", "x", "--dermamnist", "32"])
    capsys.readouterr()
    dest = tmp_path / "data"
    assert dl.main_download(["--dest", str(dest), "--masks", "--base-url", served.url,
                             "--no-progress"]) == 0
    assert f"HAMVIZ_DATA={dest.resolve()}" in capsys.readouterr().out
    assert load_ham10000(dest, masks=True).has_masks


def test_a_fresh_corrupt_download_is_deleted_so_the_next_run_fetches_it_again(tmp_path, served):
    served_zip = served.root / "HAM10000_images_part_1.zip"
    good = served_zip.read_bytes()
    served_zip.write_bytes(good[:-100])
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="was deleted"):
        dl.download(dest, base_url=served.url, progress=False)
    assert not (dest / dl.DOWNLOADS / served_zip.name).exists()
    served_zip.write_bytes(good)
    dl.download(dest, base_url=served.url, progress=False)
    assert served.requests.count(f"/{served_zip.name}") == 2
    assert len(load_ham10000(dest)) == 20


def test_size_and_time_are_stated_before_the_first_request(tmp_path, served, capsys):
    dest = tmp_path / "data"
    todo = dl.plan(dest, ["ham10000", "masks"], base_url=served.url)
    sizes = sum((served.root / f).stat().st_size for f in os.listdir(served.root))
    assert todo.fetch_bytes == sizes and len(todo.files) == 4
    assert todo.unpack_bytes == sizes  # zips and the table are unpacked or rewritten beside the downloads
    assert todo.need_bytes > todo.fetch_bytes + todo.unpack_bytes
    dl.download(dest, ["ham10000", "masks"], base_url=served.url, progress=True)
    err = capsys.readouterr().err
    first = err.index("Downloading HAM10000_metadata.csv")
    statement = err[:first]
    assert f"into {dest.resolve()}" in statement and "Mbit/s" in statement and "free there" in statement
    assert f"{sizes / 1e6:.1f} MB" in statement
    assert dl.plan(dest, ["ham10000", "masks"]).files == []  # nothing left to fetch


def test_too_little_disk_space_is_refused_before_any_request(tmp_path, served, monkeypatch):
    part = dl.REGISTRY["ham10000"].files[1]
    huge = dataclasses.replace(part, size=10 ** 16)  # 10 PB
    files = (dl.REGISTRY["ham10000"].files[0], huge, dl.REGISTRY["ham10000"].files[2])
    monkeypatch.setitem(dl.REGISTRY, "ham10000", dataclasses.replace(dl.REGISTRY["ham10000"], files=files))
    need = dl.plan(tmp_path / "data").need_bytes
    assert need > 2 * 10 ** 16  # the archive and its unpacked copy
    with pytest.raises(DataError) as err:
        dl.download(tmp_path / "data", base_url=served.url, progress=False)
    msg = str(err.value)
    assert "Not enough disk space" in msg and f"{need / 1e9:.1f} GB" in msg and "HAMVIZ_DATA" in msg
    assert served.requests == []
    assert not (tmp_path / "data").exists()


def _validates(folder: Path) -> bool:
    try:
        load_ham10000(folder, masks="auto")
        return True
    except DataError:
        return False


def test_a_download_cut_off_mid_file_leaves_nothing_that_looks_complete(tmp_path, served):
    from hamviz.config import COMPLETE_MARKER, completed_items
    dest = tmp_path / "data"
    served.drop["/HAM10000_images_part_2.zip"] = 0.5
    with pytest.raises(DataError, match="HAM10000_images_part_2.zip.*failed"):
        dl.download(dest, ["ham10000", "masks"], base_url=served.url, progress=False)
    assert not (dest / COMPLETE_MARKER).exists() and completed_items(dest) == set()
    assert not _validates(dest)  # the metadata and part 1 are there, part 2 is not
    assert not (dest / "HAM10000_images_part_2").exists()
    assert sorted(p.name for p in (dest / dl.DOWNLOADS).iterdir()) == ["HAM10000_images_part_1.zip",
                                                                 "HAM10000_metadata.csv"]  # no temporary file
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no partial folder, no temporary file
    # the next run fetches what is missing, from the start of that file, and nothing else
    served.drop.clear()
    n = len(served.requests)
    dl.download(dest, ["ham10000", "masks"], base_url=served.url, progress=False)
    assert sorted(served.requests[n:]) == ["/HAM10000_images_part_2.zip", f"/{MASK_DIR}.zip"]
    assert completed_items(dest) == {"ham10000", "masks"} and _validates(dest)


def test_an_interrupted_unpack_leaves_no_folder_and_is_redone(tmp_path, served, monkeypatch):
    from hamviz.config import completed_items
    dest = tmp_path / "data"
    real = zipfile.ZipFile.extract
    calls = []

    def dies_on_the_sixth(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 6:
            raise OSError("No space left on device")
        return real(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", dies_on_the_sixth)
    with pytest.raises(OSError, match="No space left"):
        dl.download(dest, base_url=served.url, progress=False)
    assert not (dest / "HAM10000_images_part_1").exists()  # 5 of its 10 images were unpacked, elsewhere
    assert (dest / ".HAM10000_images_part_1.partial").is_dir() and not _validates(dest)
    assert completed_items(dest) == set()
    monkeypatch.setattr(zipfile.ZipFile, "extract", real)
    n = len(served.requests)
    dl.download(dest, base_url=served.url, progress=False)
    assert served.requests[n:] == ["/HAM10000_images_part_2.zip"]  # part 1's archive was whole: not fetched again
    assert len(list((dest / "HAM10000_images_part_1").glob("*.jpg"))) == 10
    assert not (dest / ".HAM10000_images_part_1.partial").exists()
    assert completed_items(dest) == {"ham10000"} and _validates(dest)


def test_a_truncated_unpacked_image_is_unpacked_again(tmp_path, served):
    dest = tmp_path / "data"
    dl.download(dest, base_url=served.url, progress=False)
    jpg = next((dest / "HAM10000_images_part_2").glob("*.jpg"))
    whole = jpg.read_bytes()
    jpg.write_bytes(whole[:100])
    n = len(served.requests)
    dl.download(dest, base_url=served.url, progress=False)
    assert len(served.requests) == n and jpg.read_bytes() == whole
