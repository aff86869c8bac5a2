"""Reliability at run time, from real users' reports (issue 41, round 3): each fault fixed for its whole kind.

- Grad-CAM on a model saved to .keras and loaded again (functional, Sequential, a nested backbone) is the Grad-CAM
  of the model as built, never silently all zero; a layer the score cannot be traced to is named, with the layers
  to pass instead (fault 4).
- Behind a proxy: the "is the network reachable" check and the downloads go through HTTPS_PROXY / HTTP_PROXY /
  ALL_PROXY (either case) unless NO_PROXY covers the host (fault 8).
- A full disk while the cache, the JPEG test sets, a split or a stored model is written: a hamviz error naming the
  device, the folder and the space needed, nothing temporary left, and the next build works (fault 10).
- Progress in a log file: plain lines, no carriage-return frames, for the decoding bar and the download bar
  (fault 11).
- The book on a static host: ``.nojekyll`` (and a Jekyll ``_config.yml`` for a copy that loses dot-files), every
  local link inside the book folder after ``cp -r book/* site/`` (fault 12).

Tiny models (32x32 inputs, two conv layers), 21 real images, a local TCP listener as the proxy: seconds each.
"""
from __future__ import annotations

import errno
import hashlib
import html
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from hamviz.config import HamvizError, reachable

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
#: a host no machine can reach directly (the .invalid top-level domain never resolves, RFC 2606)
NOWHERE = "ham10000-mirror.invalid"


# ------------------------------------------------------------------------------------ 4. Grad-CAM after a reload
def _tiny_models():
    from hamviz.models import keras
    L = keras.layers

    def functional():
        i = keras.Input((32, 32, 3))
        x = L.Rescaling(1 / 255.0)(i)
        x = L.Conv2D(4, 3, activation="relu", name="c1")(x)
        x = L.Conv2D(6, 3, activation="relu", name="c2")(x)
        return keras.Model(i, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="functional")

    def sequential():
        return keras.Sequential([keras.Input((32, 32, 3)), L.Rescaling(1 / 255.0),
                                 L.Conv2D(4, 3, activation="relu", name="c1"),
                                 L.Conv2D(6, 3, activation="relu", name="c2"),
                                 L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")], name="sequential")

    def nested():
        i = keras.Input((32, 32, 3))
        x = L.Conv2D(6, 3, activation="relu", name="c2")(L.Conv2D(4, 3, activation="relu", name="c1")(i))
        backbone = keras.Model(i, x, name="backbone")
        j = keras.Input((32, 32, 3))
        y = L.GlobalAveragePooling2D()(backbone(L.Rescaling(1 / 255.0)(j)))
        return keras.Model(j, L.Dense(3, activation="softmax")(y), name="nested")

    def nested_sequential():
        backbone = keras.Sequential([keras.Input((32, 32, 3)), L.Conv2D(4, 3, activation="relu", name="c1"),
                                     L.Conv2D(6, 3, activation="relu", name="c2")], name="backbone")
        return keras.Sequential([keras.Input((32, 32, 3)), L.Rescaling(1 / 255.0), backbone,
                                 L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")],
                                name="nested_sequential")

    return {"functional": functional, "sequential": sequential, "nested": nested,
            "nested_sequential": nested_sequential}


def _images(n=4):
    return np.random.default_rng(0).uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)


def _cams(model, layer=None):
    """Grad-CAM for every class (so that some map is non-zero whatever the random weights)."""
    from hamviz.gradcam import grad_cam
    return np.stack([grad_cam(model, _images(), class_index=k, layer=layer) for k in range(3)])


def _reloaded(model, tmp_path):
    from hamviz.models import keras
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return keras.models.load_model(path)


@pytest.mark.parametrize("kind", ["functional", "sequential", "nested", "nested_sequential"])
def test_grad_cam_is_the_same_after_save_and_load(kind, tmp_path):
    from hamviz.models import keras
    keras.utils.set_random_seed(3)
    built = _tiny_models()[kind]()
    loaded = _reloaded(built, tmp_path)
    np.testing.assert_allclose(loaded.predict(_images(), verbose=0), built.predict(_images(), verbose=0),
                               rtol=1e-5, atol=1e-6)
    before, after = _cams(built), _cams(loaded)
    assert before.max() > 0.5  # a real map, not the all-zero one the reloaded Sequential gave
    np.testing.assert_allclose(after, before, atol=1e-5)


@pytest.mark.parametrize("kind", ["nested", "nested_sequential"])
def test_grad_cam_inside_a_nested_backbone_after_save_and_load(kind, tmp_path):
    """A layer inside the backbone ("backbone/c1", as conv_layers(model, nested=True) names it) is a Grad-CAM
    target too, the same before and after the round trip."""
    from hamviz.gradcam import conv_layers
    from hamviz.models import keras
    keras.utils.set_random_seed(3)
    built = _tiny_models()[kind]()
    assert "backbone/c1" in conv_layers(built, nested=True)
    loaded = _reloaded(built, tmp_path)
    before, after = _cams(built, "backbone/c1"), _cams(loaded, "backbone/c1")
    assert before.max() > 0.5
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_grad_cam_names_the_layer_to_pass_when_the_score_cannot_be_traced_to_it():
    """A layer called twice in the graph: which call is "the" feature map? Say so, and name the layers that
    work, rather than return maps from one call silently."""
    from hamviz.gradcam import ExplainError
    from hamviz.models import keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    shared = L.Conv2D(3, 3, padding="same", activation="relu", name="shared")
    i = keras.Input((32, 32, 3))
    x = L.Conv2D(4, 3, activation="relu", name="c1")(shared(shared(L.Rescaling(1 / 255.0)(i))))
    model = keras.Model(i, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="twice")
    with pytest.raises(ExplainError, match=r"'shared'.*called 2 times.*layer= one of \['c1'\]"):
        _cams(model, "shared")
    assert _cams(model, "c1").max() > 0


# ------------------------------------------------------------------------------------------- 8. behind a proxy
@pytest.fixture
def clean_proxy_env(monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def listener():
    """A local TCP listener standing in for the proxy (the kernel completes the handshake; nothing is read)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_target_alone_is_unreachable(clean_proxy_env):
    assert not reachable(NOWHERE, 443, timeout=2)


@pytest.mark.parametrize("var, port", [("HTTPS_PROXY", 443), ("https_proxy", 443), ("ALL_PROXY", 443),
                                       ("HTTP_PROXY", 80), ("http_proxy", 80)])
def test_reachable_through_the_proxy(clean_proxy_env, listener, var, port):
    clean_proxy_env.setenv(var, f"http://127.0.0.1:{listener}")
    assert reachable(NOWHERE, port, timeout=2)


def test_proxy_without_scheme_and_no_proxy(clean_proxy_env, listener):
    clean_proxy_env.setenv("HTTPS_PROXY", f"127.0.0.1:{listener}")  # requests reads this as http://
    assert reachable(NOWHERE, timeout=2)
    clean_proxy_env.setenv("NO_PROXY", "localhost,.invalid")  # this host goes direct, and cannot
    assert not reachable(NOWHERE, timeout=2)


def test_a_dead_proxy_is_offline(clean_proxy_env):
    clean_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_closed_port()}")
    assert not reachable(NOWHERE, timeout=2)


class _Proxy:
    """A plain HTTP proxy on 127.0.0.1 that answers ``GET http://host/path`` from ``files`` (name -> bytes);
    ``asked`` lists the absolute URLs it was asked for."""

    def __init__(self, files: dict):
        asked = self.asked = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                asked.append(self.path)
                body = files.get(urlsplit(self.path).path.lstrip("/"))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _tiny_item(monkeypatch, body: bytes, name="tiny.npz", url=f"http://{NOWHERE}/tiny.npz"):
    """Register a one-file download item ``tiny`` (kept as DEST/tiny.npz) with ``body``'s md5 and size."""
    from hamviz import download as dl
    item = dl.Item("a test file", (dl.RemoteFile(name, url, "md5:" + hashlib.md5(body).hexdigest(), "file",
                                                 size=len(body)),))
    monkeypatch.setitem(dl.REGISTRY, "tiny", item)


def test_online_check_and_download_go_through_the_proxy(clean_proxy_env, tmp_path):
    from hamviz import download as dl
    body = np.arange(5000, dtype=np.uint8).tobytes()
    proxy = _Proxy({"tiny.npz": body})
    try:
        _tiny_item(clean_proxy_env, body)
        assert not dl.online(["tiny"], timeout=2)  # no proxy: the host is out of reach
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
        assert dl.online(["tiny"], timeout=2)
        dest = dl.download(tmp_path / "data", ["tiny"], progress=False)
        assert (dest / "tiny.npz").read_bytes() == body
        assert proxy.asked == [f"http://{NOWHERE}/tiny.npz"]
    finally:
        proxy.stop()


# -------------------------------------------------------------------------------------------- 10. a full disk
def _enospc(path=""):
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _no_temp_left(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if ".tmp" in p.name]


def _says_no_space(exc: BaseException, folder: Path, mb=True) -> None:
    msg = str(exc)
    assert isinstance(exc, HamvizError), f"{type(exc).__name__}: {msg}"
    assert "no space left on" in msg.lower() and str(folder) in msg, msg
    assert "mounted at" in msg  # the device
    if mb:
        assert re.search(r"needs about \d+ MB", msg), msg


@pytest.mark.parametrize("where", ["reserve", "second array", "index"])
def test_image_cache_on_a_full_disk(subset, tmp_path, monkeypatch, where):
    """The disk fills up while an entry is written: at the reservation of a memory-mapped array (hamviz reserves
    its blocks so that a full disk is an error, not a SIGBUS that kills the kernel), when the second array's file
    is created, or when the index is written last. A hamviz error names the device, the cache folder and the
    space the entry needs; nothing temporary stays; with space again, the next build works."""
    import os

    from hamviz import load_ham10000
    from hamviz.cache import build_cache
    ds = load_ham10000(subset)
    root = tmp_path / "c"
    with monkeypatch.context() as m:
        if where == "reserve":
            def full(fd, offset, length):
                raise _enospc()
            m.setattr(os, "posix_fallocate", full)
        elif where == "second array":
            made = []
            real = np.lib.format.open_memmap

            def open_memmap(path, *a, **k):
                made.append(path)
                if len(made) == 2:
                    Path(path).write_bytes(b"\x93NUMPY")  # a header started, then the disk was full
                    raise _enospc(path)
                return real(path, *a, **k)
            m.setattr(np.lib.format, "open_memmap", open_memmap)
        else:
            real_write = Path.write_text

            def write_text(self, *a, **k):
                if self.name == "index.json":
                    raise _enospc(self)
                return real_write(self, *a, **k)
            m.setattr(Path, "write_text", write_text)
        with pytest.raises(Exception) as err:
            build_cache(ds, 32, cache_root=root)
    _says_no_space(err.value, root)
    assert _no_temp_left(root) == []
    entry = build_cache(ds, 32, cache_root=root)  # space freed: it builds
    assert entry.built and entry.images.shape == (21, 32, 32, 3)


def test_a_dead_build_s_temporary_folder_is_removed(subset, tmp_path):
    """A build killed outright (SIGBUS, kill -9) leaves its temporary folder; the next build of that entry removes
    it."""
    from hamviz import load_ham10000
    from hamviz.cache import build_cache, cache_key
    ds = load_ham10000(subset)
    root = tmp_path / "c"
    stale = root / "images" / f"{cache_key(ds, (32, 32), 'stretch', ds.has_masks)}.tmp-99999-1"
    stale.mkdir(parents=True)
    (stale / "images.npy").write_bytes(b"\0" * 1000)
    build_cache(ds, 32, cache_root=root)
    assert not stale.exists() and _no_temp_left(root) == []


def test_jpeg_sets_on_a_full_disk(subset, tmp_path, monkeypatch):
    from hamviz import load_ham10000
    from hamviz.cache import build_cache, jpeg_test_sets
    root = tmp_path / "c"
    cache = build_cache(load_ham10000(subset), 32, cache_root=root)
    made, real = [], np.lib.format.open_memmap

    def open_memmap(path, *a, **k):
        made.append(path)
        if len(made) == 2:
            raise _enospc(path)
        return real(path, *a, **k)
    with monkeypatch.context() as m:
        m.setattr(np.lib.format, "open_memmap", open_memmap)
        with pytest.raises(Exception) as err:
            jpeg_test_sets(cache, np.arange(10), qualities=(90, 50), cache_root=root)
    _says_no_space(err.value, root)
    assert _no_temp_left(root) == []
    assert jpeg_test_sets(cache, np.arange(10), qualities=(90, 50), cache_root=root).built


def test_split_on_a_full_disk(metadata, tmp_path, monkeypatch):
    import pandas as pd
    from conftest import make_subset

    from hamviz import load_ham10000
    from hamviz.splits import get_split
    make_subset(tmp_path / "ham", metadata, n_per_class=6, masks=False)
    ds = load_ham10000(tmp_path / "ham")
    root = tmp_path / "c"
    real = pd.DataFrame.to_csv

    def to_csv(self, path, *a, **k):
        Path(path).write_text("image_id,split\n")  # part of it written
        raise _enospc(path)
    with monkeypatch.context() as m:
        m.setattr(pd.DataFrame, "to_csv", to_csv)
        with pytest.raises(Exception) as err:
            get_split(ds, (0.6, 0.2, 0.2), grouped=False, cache_root=root)
    _says_no_space(err.value, root / "splits", mb=False)
    assert _no_temp_left(root) == [] and not list((root / "splits").glob("*.csv"))
    assert pd.DataFrame.to_csv is real
    assert len(get_split(ds, (0.6, 0.2, 0.2), grouped=False, cache_root=root)) == len(ds.meta)


def test_stored_model_on_a_full_disk(tmp_path, monkeypatch):
    from hamviz import store
    from hamviz.models import keras
    model = _tiny_models()["functional"]()
    path = store.folder("tiny", "k1", cache_root=tmp_path / "c")
    arrays = {"proba": np.zeros((10, 3), np.float32)}
    with monkeypatch.context() as m:
        def savez(file, **kw):
            Path(file).write_bytes(b"PK")
            raise _enospc(file)
        m.setattr(store.np, "savez_compressed", savez)
        with pytest.raises(Exception) as err:
            store.save(path, model, {"loss": [1.0]}, {"kind": "test"}, arrays)
    _says_no_space(err.value, path.parent)
    assert not path.exists() and _no_temp_left(tmp_path / "c") == []
    store.save(path, model, {"loss": [1.0]}, {"kind": "test"}, arrays)
    assert isinstance(store.load(path).model, keras.Model)


# ------------------------------------------------------------------------------------ 11. progress in a log
def _plain(text: str) -> list[str]:
    assert "\r" not in text, f"carriage-return frames in a log: {text[:300]!r}"
    return text.splitlines()


def test_decoding_progress_in_a_log_is_a_few_plain_lines(subset, tmp_path, capsys, monkeypatch):
    from hamviz import load_ham10000
    from hamviz.cache import build_cache
    monkeypatch.delenv("HAMVIZ_PROGRESS", raising=False)
    build_cache(load_ham10000(subset), 32, cache_root=tmp_path / "c", progress=True)
    lines = [l for l in _plain(capsys.readouterr().err) if l.startswith("decoding 32x32")]
    assert lines[0].startswith("decoding 32x32: started, 21 images") and "done, 21 images" in lines[-1]
    assert 2 <= len(lines) <= 6


def test_download_progress_in_a_log_is_a_few_plain_lines(clean_proxy_env, tmp_path, capsys):
    from hamviz import download as dl
    body = bytes(range(256)) * 400  # 100 kB: pooch reports every kB
    proxy = _Proxy({"tiny.npz": body})
    try:
        _tiny_item(clean_proxy_env, body)
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
        dl.download(tmp_path / "data", ["tiny"], progress=True)
    finally:
        proxy.stop()
    lines = [l for l in _plain(capsys.readouterr().err) if l.startswith("tiny.npz:")]
    assert lines[0] == "tiny.npz: started, 0.1 MB" and lines[-1].startswith("tiny.npz: done, 0.1 MB")
    assert len(lines) <= 6


def test_progress_on_a_terminal_is_still_a_bar(monkeypatch):
    import io

    from tqdm import tqdm

    from hamviz.files import bar

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    monkeypatch.delenv("HAMVIZ_PROGRESS", raising=False)
    stream = Terminal()
    assert isinstance(bar(range(3), file=stream), tqdm)
    monkeypatch.setenv("HAMVIZ_PROGRESS", "/tmp/x")  # a chapter the book runs: its output is the page
    assert not isinstance(bar(range(3), file=stream), tqdm)


# ------------------------------------------------------------------------------ 12. the book on a static host
_REF = re.compile(r"""\s(?:href|src)\s*=\s*["']([^"']*)["']""", re.I)
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+?)["']?\s*\)""")


def _local_refs(site: Path):
    """(page, reference, target) for every local href/src of the HTML pages and url() of the CSS in ``site``
    (the theme's Jinja templates that Sphinx copies into _static/ are not pages)."""
    pages = [p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts]
    for page in pages + list(site.rglob("*.css")):
        text = page.read_text(errors="replace")
        for ref in (_REF if page.suffix == ".html" else _CSS_URL).findall(text):
            ref = html.unescape(ref)
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith(("#", "//")) or not parts.path:
                continue
            yield page, ref, (page.parent / unquote(parts.path)).resolve()


def test_the_book_works_on_a_static_host_and_when_copied(tmp_path):
    import nbformat
    from test_render import RECORD, executed_notebook

    from hamviz.book.pages import Page
    from hamviz.book.render import render_book
    out = tmp_path / "book"
    (out / "chapters" / "03_made").mkdir(parents=True)
    nbformat.write(executed_notebook(), out / "chapters" / "03_made" / "03_made.ipynb")
    info = {"profile": "tiny", "provenance": {}, "data_dir": str(tmp_path / "data"), "chapters": [
        {"stem": "03_made", "title": "Made-up chapter", "status": "ok", "note": "", "seconds": 1.0,
         "summary": RECORD["summary"]}]}
    render_book(out, info, [Page("chapters/03_made/03_made", out / "chapters" / "03_made" / "03_made.ipynb", 3,
                                 "Made-up chapter", RECORD)], {"03_made": ("chapters/03_made/03_made.html", None)})
    assert (out / ".nojekyll").is_file()  # GitHub Pages: no Jekyll, so _static/ is served
    # `cp -r book/* site/`: the dot-files (.nojekyll, .site/) stay behind
    site = tmp_path / "site"
    site.mkdir()
    for p in out.iterdir():
        if not p.name.startswith("."):
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, site / p.name)
    refs = list(_local_refs(site))
    assert len(refs) > 20 and any("_static/" in r for _, r, _ in refs)
    outside = [(str(p.relative_to(site)), r) for p, r, t in refs if not t.is_relative_to(site.resolve())]
    missing = [(str(p.relative_to(site)), r) for p, r, t in refs if not t.exists()]
    hidden = [(str(p.relative_to(site)), r) for p, r, t in refs
              if t.is_relative_to(site.resolve())
              and any(s.startswith(".") for s in t.relative_to(site.resolve()).parts)]
    assert outside == [] and missing == [] and hidden == []
    # a copy without .nojekyll: Jekyll is told to serve every _-folder the pages use
    used = {t.relative_to(site.resolve()).parts[0] for _, _, t in refs}
    underscored = {u for u in used if u.startswith("_")}
    config = (site / "_config.yml").read_text()
    assert underscored and all(u in config for u in underscored)
