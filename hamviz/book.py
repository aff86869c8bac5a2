"""The results book: every notebook in ``notebooks/`` run headless by papermill with one profile, rendered
to HTML by a book engine (:mod:`hamviz.render`: Sphinx + MyST-NB + sphinx-book-theme), with an ``index.html``
of each chapter's key numbers, times and provenance.

Layout of the output folder::

    index.html                 chapters, status, run and training times, key numbers, provenance
    book.json                  the same, machine-readable
    chapters/<nb>/             a complete chapter: <nb>.ipynb (executed), <nb>.json (record), done.json (its key,
                               times), and its page <nb>.html
    failed/<nb>/               the last failed run of a chapter: the partly executed notebook, why, its page
    search.html, _static/, assets/plotly-<v>.min.js, .site/   the rest of the rendered book (see hamviz.render)
    .work/                     chapters being built (never read as results), their progress reports

Before any chapter runs, :func:`provide` makes sure what the chapters need is on this machine: with no data
location set it downloads HAM10000 (and the lesion masks the chapters use) into the default data folder, and a
missing Keras-Hub preset into the weights cache, once; offline, or with downloads turned off, it stops at once
with one message listing every missing piece and how to get it.

A chapter is re-run only when its key changes: the notebook's cells, its parameters, the hamviz source,
the data fingerprint, the content of the pretrained weights files it starts from (a preset changed under the same
name re-runs it), and the keys of the chapters it depends on (notebook metadata
``{"hamviz": {"depends": ["classifier"]}}``). A chapter is built in ``.work`` and moved into ``chapters/``
only once it finished and its record says ``complete``, so an interrupted or failed run never leaves a
half-written chapter that looks complete. With ``jobs > 1`` chapters run in parallel: a chapter whose
dependencies finished first, else one whose dependencies are still running (it waits in the model store for
what they train; stopped and skipped if one of them fails): see :func:`next_chapter`.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

from .config import DataError, HamvizError, ParamsError, notebooks_dir
from .files import Busy, describe, locked, write_atomic
from .params import (
    CHAPTER_SCHEMAS,
    DATA_FIX,
    MAIN_MODEL_CHAPTERS,
    chapter_params,
    data_problems,
    find_profile,
    load_profile,
    wanted_weights,
    weights_problems,
)
from .progress import BuildProgress
from .record import jsonable as _jsonable
from .record import provenance
from .render import Page, RenderError, duration, render_book, share_plotly_js, strip_remote_scripts  # noqa: F401 (RenderError: raised by build)  # noqa: F401 (where they were before hamviz.render)

NOTEBOOKS = notebooks_dir()
#: Parameters every chapter notebook declares in its ``parameters`` cell (the book sets them).
NOTEBOOK_PARAMETERS = ("profile", "params", "data_dir", "record_path")
#: Keys that do not change a chapter's results (left out of its key).
NEUTRAL_KEYS = ("jobs", "description", "data_dir", "profile", "_source")
#: chapters that use the lesion masks when the profile's ``masks`` is "auto" (their lesion-contrast analyses)
MASK_CHAPTERS = ("eda", "joint")


@dataclass
class ChapterSpec:
    stem: str          # "01_eda"
    name: str          # "eda"
    path: Path
    title: str
    depends: list[str] = field(default_factory=list)


def discover(notebooks_dir: Path = NOTEBOOKS) -> list[ChapterSpec]:
    """The chapters, in book order (file name order: ``01_eda.ipynb``, ``02_...``)."""
    specs = []
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        title = next((re.sub(r"^#+\s*", "", c.source.splitlines()[0]) for c in nb.cells
                      if c.cell_type == "markdown" and c.source.strip().startswith("#")), path.stem)
        meta = nb.metadata.get("hamviz", {})
        specs.append(ChapterSpec(path.stem, path.stem.split("_", 1)[1], path, title,
                                 list(meta.get("depends", []))))
    names = {s.name for s in specs}
    for name in names:
        same = [s.path.name for s in specs if s.name == name]
        if len(same) > 1:
            raise HamvizError(f"Notebooks {same} share the chapter name {name!r}; rename one.")
    for s in specs:
        unknown = set(s.depends) - names
        if unknown:
            raise HamvizError(f"{s.path.name} depends on unknown chapter(s) {sorted(unknown)}; "
                              f"chapters: {sorted(names)}")
    return specs


def source_hash(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(f"{p.parent.name}/{p.name}".encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def notebook_hash(path: Path) -> str:
    """Hash of a notebook's cells (sources and types only: outputs and ids do not count)."""
    nb = nbformat.read(path, as_version=4)
    return hashlib.sha256(json.dumps([(c.cell_type, c.source) for c in nb.cells]).encode()).hexdigest()


def check_notebook(spec: ChapterSpec) -> None:
    """Every chapter declares the parameters the book passes, and has a schema section."""
    import papermill as pm
    declared = pm.inspect_notebook(str(spec.path))
    missing = [p for p in NOTEBOOK_PARAMETERS if p not in declared]
    if missing:
        raise HamvizError(f"{spec.path.name}: its 'parameters' cell lacks {missing}; every chapter "
                          f"declares {list(NOTEBOOK_PARAMETERS)}.")
    if spec.name not in CHAPTER_SCHEMAS:
        raise HamvizError(f"{spec.path.name}: no parameter schema for chapter {spec.name!r} in "
                          f"hamviz.params.CHAPTER_SCHEMAS.")


def _write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(_jsonable(obj), indent=1))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _pid_alive(pid) -> bool:
    """Whether process ``pid`` runs (a zombie, left by a killed parent, counts as gone)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return True  # no /proc (macOS): trust kill()


def _report_cells(prefix: str):
    """A papermill engine (registered as "hamviz") that writes the code cell being executed, out of how many, to
    ``<prefix>.cells.json`` as each cell starts (read by :mod:`hamviz.progress`)."""
    from papermill.engines import NBClientEngine, papermill_engines

    path = prefix + ".cells.json"

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                k = code.index(cell_index) + 1 if cell_index in code else 0
                try:
                    _write_json(Path(path), {"cell": k, "cells": len(code), "time": time.time()})
                except OSError:
                    pass  # progress is never worth a failed chapter
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("hamviz", Engine)
    return "hamviz"


def run_chapter(spec_path: Path, profile_path: Path, data_dir: str | None, out: Path,
                key: str) -> dict:
    """Execute one notebook into ``out/.work`` and, if it completes, move it to ``out/chapters``.

    Runs in a child process of the book (see :func:`build`); returns and writes a result dict. With
    $HAMVIZ_PROGRESS set, reports each code cell as it starts (:func:`_report_cells`); the notebook's kernel
    inherits the variable and reports training epochs (:func:`hamviz.training.fit`). The page is rendered
    later, by the book (:func:`write_index`)."""
    import papermill as pm

    from .config import PROGRESS_ENV

    stem = spec_path.stem
    out = Path(out).resolve()  # the notebook runs in its own folder: every path it gets is absolute
    work = out / ".work" / f"{stem}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    record_path = work / f"{stem}.json"
    nb_out = work / f"{stem}.ipynb"
    engine = _report_cells(os.environ[PROGRESS_ENV]) if os.environ.get(PROGRESS_ENV) else None
    started = time.time()
    error = None
    try:
        pm.execute_notebook(
            str(spec_path), str(nb_out), cwd=str(spec_path.parent), kernel_name="python3",
            parameters={"profile": str(profile_path), "params": {}, "data_dir": data_dir,
                        "record_path": str(record_path)},
            progress_bar=False, log_output=False, report_mode=False, engine_name=engine)
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
        error = f"{type(exc).__name__}: {getattr(exc, 'evalue', None) or exc}"
    seconds = time.time() - started
    record = _read_json(record_path) or {}
    if error is None and not record.get("complete"):
        error = ("the notebook finished without marking its record complete "
                 "(its last cell must call ch.finish())")
    result = {"stem": stem, "key": key, "seconds": round(seconds, 1),
              "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(
                  timespec="seconds"),
              "status": "ok" if error is None else "failed", "error": error}
    if error is None:
        _write_json(work / "done.json", result)
        final = out / "chapters" / stem
        final.parent.mkdir(parents=True, exist_ok=True)
        trash = out / ".work" / f"{stem}-old-{os.getpid()}"
        if final.exists():
            final.rename(trash)
        work.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(out / "failed" / stem, ignore_errors=True)
    else:
        failed = out / "failed" / stem
        shutil.rmtree(failed, ignore_errors=True)
        failed.parent.mkdir(parents=True, exist_ok=True)
        _write_json(work / "failure.json", result)
        work.rename(failed)
    return result


@dataclass
class Book:
    out: Path
    profile: dict
    chapters: list[ChapterSpec]
    keys: dict[str, str]
    fingerprint: str
    status: dict = field(default_factory=dict)


def chapter_weights(params: dict, chapter: str) -> list[str]:
    """The content of the pretrained weights files the chapter ``chapter`` (a name) starts from, one
    :func:`hamviz.weights.identity` per model of :func:`hamviz.params.wanted_weights` that reads any; weights
    that are not here (or not readable) count as such (the pre-flight check names them)."""
    from .weights import identity
    out = set()
    for where, model, weights, top in wanted_weights(params):
        if where.split(".")[1] == chapter:
            try:
                got = identity(model, weights, None, top)
            except (HamvizError, OSError) as exc:
                got = f"{model}|{weights}|unavailable: {type(exc).__name__}"
            if got:
                out.add(got)
    return sorted(out)


def chapter_keys(specs, params: dict, fingerprint: str) -> dict[str, str]:
    """Each chapter's key: what its results depend on (see the module docstring), the content of the pretrained
    weights files it starts from included (:func:`chapter_weights`)."""
    pkg = source_hash(Path(__file__).parent.rglob("*.py"))
    keys: dict[str, str] = {}
    by_name = {s.name: s for s in specs}

    def key(s: ChapterSpec) -> str:
        if s.stem in keys:
            return keys[s.stem]
        flat = {k: v for k, v in chapter_params(params, s.name).items() if k not in NEUTRAL_KEYS}
        body = {"nb": notebook_hash(s.path), "params": flat, "pkg": pkg, "data": fingerprint,
                "deps": [key(by_name[d]) for d in s.depends]}
        used = chapter_weights(params, s.name)
        if used:  # only then: the keys of chapters without pretrained weights stay what they were
            body["weights"] = used
        raw = json.dumps(body, sort_keys=True, default=str)
        keys[s.stem] = hashlib.sha256(raw.encode()).hexdigest()[:16]
        return keys[s.stem]

    for s in specs:
        key(s)
    return keys


def prepare(profile="cpu", out="book", data_dir=None, notebooks_dir=NOTEBOOKS, only=None,
            download: bool | None = False, log=print) -> Book:
    """Every check that can fail before a notebook runs: the profile against its schema, each notebook's
    parameters, what the chapters need on this machine (:func:`provide`, which downloads what is missing when
    ``download`` allows: True, False, or None for "unless $HAMVIZ_NO_DOWNLOAD"), the pretrained weights (there,
    and their files whole: :func:`check_weights_files`), the data (metadata, files, masks) and what the chosen
    chapters need of it (:func:`check_chapter_data`). Raises a HamvizError naming the problem
    (:class:`hamviz.weights.WeightsError` for a damaged weights file)."""
    from .config import cache_dir, check_writable
    from .data import load_ham10000
    check_writable(out, "The book's output folder", "Pass --out a folder this user can write (or create).")
    cache_dir()  # the cache must be writable too: checked here, not after a model has trained
    profile_path = find_profile(profile)
    # weights are checked below, for the chosen chapters, once provide() has fetched what it can
    params = load_profile(profile_path, {"data_dir": str(data_dir)} if data_dir else None, check_weights=False)
    specs = select(discover(notebooks_dir), only)
    if not specs:
        raise HamvizError(f"No chapter notebooks (NN_name.ipynb) in {notebooks_dir}")
    for s in specs:
        check_notebook(s)
    names = [s.name for s in specs]
    params["data_dir"] = str(provide(params, names, download, log))
    problems = weights_problems(params, names)
    if problems:
        raise ParamsError(f"Invalid parameters in {profile_path}:\n  - " + "\n  - ".join(problems))
    check_weights_files(params, names)
    ds = load_ham10000(params["data_dir"], masks=params["masks"], on_missing=params["on_missing"],
                       on_corrupt=params["on_corrupt"], on_mask_mismatch=params["on_mask_mismatch"])
    params["data_dir"] = str(ds.root)
    mismatch = list(ds.report.get("mask_mismatch", {}).values())
    if mismatch:
        print(f"[book] note: {len(mismatch)} lesion mask(s) of another geometry than their image treated as missing "
              f"(on_mask_mismatch: skip; masks: auto then runs without masks): " + "; ".join(mismatch[:3])
              + (f"; ... ({len(mismatch) - 3} more)" if len(mismatch) > 3 else ""))
    damaged = ds.report.get("damaged_files")
    if damaged:
        print(f"[book] note: {len(damaged)} damaged image file(s) left out (on_corrupt: skip): "
              + ", ".join(f"{i} ({why})" for i, why in list(damaged.items())[:5])
              + (f", ... ({len(damaged) - 5} more)" if len(damaged) > 5 else ""))
    absent = ds.report.get("missing_optional_columns")
    if absent and "eda" in names:
        log(f"[book] note: the metadata has no {', '.join(absent)} column(s): the EDA chapter skips what needs "
            f"them (demographics); every other chapter needs only lesion_id, image_id, dx")
    from .splits import check_splittable
    for warning in check_splittable(ds.meta, params["split"]["fractions"], params["split"]["grouped"]):
        log(f"[book] warning: {warning}")
    check_chapter_data(params, ds, names)
    external = (params.get("chapters", {}).get("classifier") or {}).get("external_test")
    if external and "classifier" in names:
        from .external import independent_of, load_isic2018, overlap_note
        # the folder, its ground truth and images, and its overlap with the data in use: checked before any training
        ext = load_isic2018(external, on_corrupt=params["on_corrupt"])
        _, overlap = independent_of(ext, ds, chapter_params(params, "classifier")["external_overlap"])
        if note := overlap_note(overlap):
            log(f"[book] note: external test set: {note}")
    return Book(Path(out).resolve(), params, specs, chapter_keys(specs, params, ds.fingerprint), ds.fingerprint)


def check_weights_files(params: dict, names) -> None:
    """Read the files of the pretrained weights the chapters ``names`` start from -- sizes and headers, nothing
    loaded (:func:`hamviz.weights.damage`: a safetensors header and its data offsets, config.json parsing, a Keras
    file's HDF5 header and md5) --, so that a truncated model.safetensors, a config.json that is not JSON or an
    empty file is named with its fix before any chapter runs, not inside one. Raises
    :class:`hamviz.weights.WeightsError` naming every damaged file."""
    from .weights import WeightsError, damage
    problems: list[str] = []
    for where, model, weights, top in wanted_weights(params):
        if where.split(".")[1] in names:
            problem = damage(model, weights, None, top)
            if problem and problem not in problems:
                problems.append(problem)
    if len(problems) == 1:
        raise WeightsError(problems[0])
    if problems:
        raise WeightsError(f"{len(problems)} pretrained weights files are damaged; nothing was run:\n  - "
                           + "\n  - ".join(problems))


def check_chapter_data(params: dict, ds, names) -> None:
    """What the chapters ``names`` need of the data (:func:`hamviz.params.data_problems`: two classes in every split
    part for the classifier, ...), on the profile's own split, made here and saved as the chapters would make it
    (:func:`hamviz.splits.get_split`; a few seconds once, read afterwards). Raises DataError naming every problem
    before any chapter runs."""
    if not set(names) & {*MAIN_MODEL_CHAPTERS, "hypervector"}:
        return
    import warnings

    from .registry import SPLITS
    from .splits import get_split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes too small for every part: logged by the caller
        split = get_split(ds, params["split"]["fractions"], params["seed"], params["split"]["grouped"])
    parts = split.reindex(ds.meta["image_id"]).to_numpy()
    counts = {p: ds.meta["dx"][parts == p].value_counts().to_dict() for p in SPLITS}
    problems = data_problems(params, names, counts)
    if problems:
        raise DataError(f"The data at {ds.root} cannot give what the chosen chapters need (split "
                        f"{params['split']['fractions']}, seed {params['seed']}):\n  - " + "\n  - ".join(problems)
                        + f"\nFix: {DATA_FIX}.")


def select(specs: list[ChapterSpec], only=None) -> list[ChapterSpec]:
    """The chapters named in ``only`` (names or stems) and every chapter they depend on, in book order; all of
    ``specs`` when ``only`` is empty. Raises ParamsError for an unknown name."""
    if not only:
        return specs
    names = {s.name for s in specs} | {s.stem for s in specs}
    unknown = [o for o in only if o not in names]
    if unknown:
        raise ParamsError(f"Unknown chapter(s) {unknown}; chapters: {[s.name for s in specs]}")
    wanted = set(only)
    changed = True
    while changed:  # a chapter brings the chapters it depends on
        changed = False
        for s in specs:
            if (s.name in wanted or s.stem in wanted) and not set(s.depends) <= wanted:
                wanted |= set(s.depends)
                changed = True
    return [s for s in specs if s.name in wanted or s.stem in wanted]


@dataclass
class _Need:
    """One thing the chapters need that is not on this machine: what it is, how to get it by hand, and whether
    (and why not) this run can download it."""
    what: str
    how: str
    fetchable: bool
    why_not: str = ""
    optional: bool = False
    data: bool = True  # data (DataError) or weights (WeightsError)


def provide(params: dict, chapters, download: bool | None = None, log=print) -> Path:
    """Make sure what ``chapters`` (names) need is on this machine before any of them runs; return the data folder.

    Data: the folder set by ``params["data_dir"]`` or $HAMVIZ_DATA is used as it is; with neither, the default data
    folder (:func:`hamviz.config.default_data_dir`), where HAM10000 -- and the lesion masks when the profile's
    ``masks`` is true, or "auto" and a chapter of :data:`MASK_CHAPTERS` runs -- are downloaded once
    (:func:`hamviz.download.download`: size, time and free space stated and checked first; from
    ``$HAMVIZ_DOWNLOAD_URL`` when set). Weights: each Keras-Hub preset the chapters ask for ("imagenet" or None)
    that is in no preset folder is fetched once into the weights cache (:func:`hamviz.weights.fetch_preset`).
    ``download``: True, False, or None ("unless $HAMVIZ_NO_DOWNLOAD"). Whether the hosts can be reached is checked
    first (a few seconds at most). Raises HamvizError, before anything is downloaded, with one message listing
    every missing piece (data, masks, weights) with its command or URL and the variables that point hamviz at
    local copies, when one of them cannot be downloaded (offline, or downloads off): a DataError when data is among
    them, else a WeightsError; DataError / WeightsError when a download fails or the disk is too full."""
    from . import config
    from . import download as dl
    from . import weights as w
    from .registry import HUB_BACKBONES
    allowed = config.downloads_allowed(download)
    configured = config.configured_data_dir(params.get("data_dir"))
    data = configured if configured is not None else config.default_data_dir()
    items, needs = _data_needs(params, chapters, configured, data)
    presets = _preset_needs(params, chapters)
    keras_files = _keras_needs(params, chapters)
    if not (items or presets or needs or keras_files):
        if configured is None:
            log(f"[book] data: {data} (the default data folder, downloaded earlier)")
        return data
    base_url = os.environ.get(config.DOWNLOAD_URL_ENV) or None
    data_ok = False
    if items:
        hosts = dl.hosts(items, base_url)
        data_ok = allowed and dl.online(items, base_url)
        needs += _data_pieces(items, data, params["masks"] is True, data_ok, _why_not(allowed, hosts))
    for backbone, where in presets.items():
        host = w.hub_host(HUB_BACKBONES[backbone][1])
        needs.append(_Need(f"{backbone} pretrained weights (Keras-Hub preset {HUB_BACKBONES[backbone][1]}, about "
                           f"{w.PRESET_MB.get(backbone, '?')} MB; for {', '.join(where)})",
                           w.how_to_get(backbone), allowed and w.reachable(host), _why_not(allowed, [host]),
                           data=False))
    keras_host = "storage.googleapis.com"
    for (backbone, top), where in keras_files.items():
        fname = w.keras_weights_file(backbone, None, top)[0]
        needs.append(_Need(f"{backbone} ImageNet weights ({fname}; for {', '.join(where)})",
                           w.how_to_get_keras(backbone, None, top).rstrip("."), allowed and w.reachable(keras_host),
                           _why_not(allowed, [keras_host]), data=False))
    blocking = [n for n in needs if not n.fetchable and not n.optional]
    if blocking:
        raise (DataError if any(n.data for n in blocking) else w.WeightsError)(
            _missing_message(needs, allowed, params.get("_source") or params.get("profile")))
    for backbone in presets:
        w.fetch_preset(backbone, log=log)
    for backbone, top in keras_files:  # now, not hours later when a chapter builds the model
        log(f"[book] fetching {backbone}'s ImageNet weights{' with its top' if top else ''} into the weights cache")
        w.fetch_keras_weights(backbone, top=top)
    if items and not data_ok:  # only the optional masks, and they cannot come now
        log(f"[book] note: the lesion masks are not in {data} and cannot be downloaded now "
            f"({_why_not(allowed, hosts)}): the chapters skip their lesion-contrast analyses")
    elif items:
        log(f"[book] no data location is set (--data, {config.DATA_ENV}, data_dir): downloading "
            f"{' and '.join(items)} into the default data folder {data}")
        dl.download(data, items, base_url=base_url, progress=True)
        log(f"[book] {' and '.join(items)}: in {data} now; later builds use it without downloading. To use another "
            f"copy: `hamviz book --data DIR`, `make book {config.DATA_ENV}=DIR` or `export {config.DATA_ENV}=DIR`; "
            f"to download elsewhere: `export {config.HOME_ENV}=DIR` (then DIR/ham10000); to never download: "
            f"`--no-download` or {config.NO_DOWNLOAD_ENV}=1.")
    return data


def _why_not(allowed: bool, hosts) -> str:
    return "downloads are turned off" if not allowed else f"no connection to {', '.join(hosts)}"


_ITEM_WHAT = {"ham10000": "HAM10000 images and metadata", "masks": "the HAM10000 lesion masks"}


def _data_needs(params: dict, chapters, configured: Path | None, data: Path) -> tuple[list[str], list[_Need]]:
    """(download items the default data folder lacks, pieces missing from a configured folder)."""
    from . import config
    from .data import MASK_DIRS
    masks = params["masks"] is True or (params["masks"] == "auto" and bool(set(chapters) & set(MASK_CHAPTERS)))
    if configured is None:
        done = config.completed_items(data)
        return [i for i in ("ham10000", "masks") if (i == "ham10000" or masks) and i not in done], []
    if not configured.is_dir():
        return [], [_Need(f"the data folder {configured} (set by --data, data_dir or {config.DATA_ENV})",
                          config.GET_DATA_HINT.rstrip("."), False, "it is set but does not exist")]
    if params["masks"] is True and not any((configured / m).is_dir() for m in MASK_DIRS):
        from .download import how_to_get
        return [], [_Need(f"the lesion masks for {configured} (the profile says masks: true)",
                          how_to_get(["masks"], configured), False, "the book downloads only into its default "
                          "data folder")]
    return [], []


def _data_pieces(items, data: Path, masks_required: bool, ok: bool, why: str) -> list[_Need]:
    """The missing data ``items`` of the default data folder ``data`` as pieces of the book's message."""
    from . import config
    from .download import REGISTRY, how_to_get, item_size
    masks = "the HAM10000 lesion masks (about {:.0f} MB; the chapters' lesion-contrast analyses use them)".format(
        item_size("masks") / 1e6)
    masks_url = REGISTRY["masks"].files[0].url
    if "ham10000" not in items:
        return [_Need(masks, how_to_get(["masks"], data), ok, why, optional=not masks_required)]
    out = [_Need(f"HAM10000 images and metadata (about {item_size('ham10000') / 1e9:.1f} GB)",
                 f"{how_to_get(items, 'DIR')}, then `export {config.DATA_ENV}=DIR` (or `hamviz book --data DIR`, "
                 f"`make book {config.DATA_ENV}=DIR`, data_dir: DIR in the profile); or run `hamviz book` once "
                 f"online: it downloads into {data}", ok, why)]
    if "masks" in items:
        out.append(_Need(masks, f"`--masks` in the command above (by hand: {masks_url}, unpacked into "
                                f"DIR/HAM10000_segmentations_lesion_tschandl/)", ok, why))
    return out


def _preset_needs(params: dict, chapters) -> dict[str, list[str]]:
    """Keras-Hub backbones the chapters ask pretrained weights (or the architecture) of that are in no preset
    folder: backbone -> where in the profile."""
    from .registry import HUB_BACKBONES
    from .weights import local_preset
    out: dict[str, list[str]] = {}
    for where, model, weights, _ in wanted_weights(params):
        if where.split(".")[1] in chapters and model in HUB_BACKBONES and weights in (None, "imagenet") \
                and local_preset(model) is None:
            out.setdefault(model, []).append(where)
    return out


def _keras_needs(params: dict, chapters) -> dict[tuple[str, bool], list[str]]:
    """Keras-application ImageNet weight files the chapters ask for that are on this machine nowhere hamviz looks
    (:func:`hamviz.weights.local_keras_weights`): (backbone, with its fully connected top?) -> where in the
    profile."""
    from .weights import KERAS_WEIGHTS, local_keras_weights
    out: dict[tuple[str, bool], list[str]] = {}
    for where, model, weights, top in wanted_weights(params):
        if where.split(".")[1] in chapters and model in KERAS_WEIGHTS and weights == "imagenet" \
                and local_keras_weights(model, top=top) is None:
            out.setdefault((model, top), []).append(where)
    return out


def _missing_message(needs: list[_Need], allowed: bool, profile: str | None = None) -> str:
    from . import config
    lines = [f"  - {n.what}: not here ({'it could be downloaded now' if n.fetchable else n.why_not}). "
             f"To get it: {n.how}." for n in needs]
    weights = sum(not n.data for n in needs)
    if weights > 1 and profile:
        lines.append(f"  All the weights this profile needs in one folder, on a machine with internet: `hamviz weights "
                     f"--profile {profile} --dest WEIGHTS_DIR`, then copy WEIGHTS_DIR here and "
                     f"`export {config.WEIGHTS_ENV}=WEIGHTS_DIR`.")
    return (f"The book needs {len(needs)} thing(s) that are not on this machine; nothing was run:\n"
            + "\n".join(lines)
            + f"\nVariables that point hamviz at local copies: {config.DATA_ENV} (the HAM10000 folder), "
              f"{config.WEIGHTS_ENV} (the folder holding the preset folders), {config.HOME_ENV} (where the book "
              f"downloads: $HAMVIZ_HOME/ham10000), {config.DOWNLOAD_URL_ENV} (a mirror of the data files). "
            + ("Once online, `hamviz book` downloads them itself." if allowed else
               f"Downloads are off (`--no-download`, {config.NO_DOWNLOAD_ENV}=1, or `hamviz validate`): without "
               f"those `hamviz book` downloads what it lacks when online."))


def _started(result: dict) -> float:
    try:
        return _dt.datetime.fromisoformat(result["started"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def chapter_state(book: Book, spec: ChapterSpec) -> dict:
    """What the output folder holds for a chapter: done with the current key, stale, failed, or none."""
    done = _read_json(book.out / "chapters" / spec.stem / "done.json")
    failed = _read_json(book.out / "failed" / spec.stem / "failure.json")
    running = _read_json(book.out / ".work" / f"{spec.stem}.running.json")
    state = {"done": done, "failed": failed}
    if running and not _pid_alive(running.get("pid")):
        if done and done.get("key") == book.keys[spec.stem] and _started(done) >= running.get("started", 0) - 1:
            # the chapter published after the book that started it died: done, and the marker is stale
            (book.out / ".work" / f"{spec.stem}.running.json").unlink(missing_ok=True)
        else:
            state["interrupted"] = running
    elif running:
        state["running"] = running
    state["current"] = bool(done and done.get("key") == book.keys[spec.stem])
    return state


#: The lock file of an output folder: held by the build that writes into it (see :func:`build`).
LOCK = ".hamviz-book.lock"


def build(profile="cpu", out="book", data_dir=None, jobs: int | None = None, force: bool = False,
          only=None, notebooks_dir=NOTEBOOKS, log=print, download: bool | None = None,
          progress: BuildProgress | None = None) -> dict:
    """Build (or bring up to date) the results book; returns the book summary (also ``book.json``) with
    ``this_run`` (the result of every chapter run now).

    ``download``: whether missing data and weights may be downloaded first (:func:`provide`; None: unless
    $HAMVIZ_NO_DOWNLOAD is set). ``progress``: the live view (:class:`hamviz.progress.BuildProgress`; default:
    one line through ``log`` as each chapter starts and ends). The book's pages are rendered in the background
    while chapters run (the index shows which one runs), and once more at the end. Raises HamvizError for what
    :func:`prepare` finds before any chapter runs, and :class:`hamviz.render.RenderError` when the final
    rendering fails (the chapters' results are kept).

    One build at a time writes into an output folder: after the checks (:func:`prepare`) the build takes the
    folder's lock (``<out>/.hamviz-book.lock``, released when the build ends or dies), and a second build into the
    same folder stops at once with a HamvizError naming the folder and the process that holds it, before it runs
    anything: it would otherwise train the same models and overwrite the same pages. Builds into different folders
    run side by side (models they share are trained once: :func:`hamviz.training.train_or_load` locks each)."""
    t0 = time.time()
    progress = progress or BuildProgress(log=log)
    book = prepare(profile, out, data_dir, notebooks_dir, only, download=download, log=progress.log)
    book.out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(book.out / LOCK, wait=False))
        except Busy as exc:
            raise HamvizError(f"Another hamviz book is building into {book.out} ({describe(exc.holder)}): two "
                              f"builds into one folder would train the same models twice and overwrite each other's "
                              f"pages. Wait for it to finish (or stop it), or pass --out another folder.") from None
        return _build_locked(book, jobs, force, t0, progress)


def _build_locked(book: Book, jobs, force: bool, t0: float, progress: BuildProgress) -> dict:
    """:func:`build` once it holds the output folder's lock."""
    clean_work(book.out)
    jobs = jobs or book.profile.get("jobs", 1)
    profile_path = Path(book.profile["_source"])
    todo = [s for s in book.chapters if force or not chapter_state(book, s)["current"]]
    for s in book.chapters:
        if s not in todo:
            progress.log(f"[book] {s.stem}: up to date (key {book.keys[s.stem]})")
    results: dict[str, dict] = {}
    pending = {s.stem: s for s in todo}
    failed_names: set[str] = set()
    running: dict = {}
    renderer = _Renderer(book, t0, progress.log) if todo else None
    try:
        _schedule(book, pending, results, failed_names, running, jobs, profile_path, t0, progress, renderer)
    finally:
        if renderer:
            renderer.stop()
    summary = write_index(book, time.time() - t0)  # the final pages, rendered here: errors are raised
    summary["this_run"] = results
    return summary


class _Renderer:
    """Renders the book (:func:`write_index`) in a background thread whenever :meth:`request` is called, one
    rendering at a time (requests made while one runs give one more); a failed rendering is logged, the next
    request tries again. A request waits ``settle`` seconds first: a build that ends by then (a chapter that runs
    in seconds) renders only once, at the end, instead of competing with its own chapter for the cores."""

    def __init__(self, book: Book, t0: float, log, settle: float = 20.0):
        self.book, self.t0, self.log, self.settle = book, t0, log, settle
        self.cv = threading.Condition()
        self.wanted = self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="hamviz-render", daemon=True)
        self.thread.start()

    def request(self) -> None:
        with self.cv:
            self.wanted = True
            self.cv.notify()

    def stop(self) -> None:
        """Wait for the rendering in progress (not for the ones still wanted: the book renders once more)."""
        with self.cv:
            self.stopping = True
            self.cv.notify()
        self.thread.join()

    def _loop(self) -> None:
        while True:
            with self.cv:
                while not (self.wanted or self.stopping):
                    self.cv.wait()
                if self.cv.wait_for(lambda: self.stopping, timeout=self.settle):
                    return  # the build is over: its final rendering follows
                self.wanted = False
            try:
                write_index(self.book, time.time() - self.t0)
            except Exception as exc:  # noqa: BLE001 -- the chapters go on; the final rendering raises
                self.log(f"[book] the pages could not be rendered now (tried again later): {exc}")


def _schedule(book, pending, results, failed_names, running, jobs, profile_path, t0, progress, renderer) -> None:
    """Run the ``pending`` chapters, ``jobs`` at a time, each after the chapters it depends on."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            _schedule_loop(pool, book, pending, results, failed_names, running, jobs, profile_path, progress,
                           renderer)
        except BaseException:  # Ctrl-C, or the book itself failing: no chapter keeps running unsupervised
            _end_children()   # (before the pool's exit, which waits for the threads watching them)
            raise


def next_chapter(pending: list[ChapterSpec], running: set[str], ok: set[str]) -> tuple[ChapterSpec, bool] | None:
    """The chapter to start in a free slot, and whether it starts early, or None when none can start now.

    A chapter is *ready* when every chapter it depends on finished ok; the first ready one (book order) starts.
    With none ready, a chapter whose dependencies are each running or ok (at least one still running; the fewest
    still running, then book order) starts early: chapters share what they train through the model store, whose locks
    make the one that needs an artefact another chapter is training wait for it and then load it
    (:func:`hamviz.store.training`), so the compression chapter can begin while the classifier chapter, which trained
    the main model, still fills its strategy table. A chapter with a dependency still pending or failed never starts
    here."""
    def deps_in(names):
        return lambda s: set(s.depends) <= names
    ready = next(filter(deps_in(ok), pending), None)
    if ready is not None:
        return ready, False
    early = [s for s in pending if deps_in(ok | running)(s) and set(s.depends) & running]
    if not early:
        return None
    return min(early, key=lambda s: len(set(s.depends) & running)), True  # the least still to wait for


class _Child:
    """The process of a running chapter, so that the scheduler can stop it (:meth:`cancel`): a chapter started
    early whose dependency then failed is stopped and skipped, as it would have been had it waited."""

    def __init__(self):
        self.proc, self.cancelled, self.reason, self.lock = None, False, "stopped", threading.Lock()

    def attach(self, proc) -> None:
        with self.lock:
            self.proc = proc
            if self.cancelled:
                _kill_group(proc)

    def cancel(self, reason: str) -> None:
        with self.lock:
            self.cancelled, self.reason = True, reason
            if self.proc is not None:
                _kill_group(self.proc)


def _schedule_loop(pool, book, pending, results, failed_names, running, jobs, profile_path, progress,
                   renderer) -> None:
    """One pass of the scheduler until every chapter has run (see :func:`_schedule` and :func:`next_chapter`)."""
    children: dict[str, _Child] = {}
    ok_names: set[str] = set()
    while pending or running:
        for stem, s in list(pending.items()):  # dependents of failed chapters are skipped, never started
            if set(s.depends) & failed_names:
                results[stem] = {"stem": stem, "status": "skipped",
                                 "error": f"depends on failed chapter(s) "
                                          f"{sorted(set(s.depends) & failed_names)}"}
                failed_names.add(s.name)
                del pending[stem]
        while pending and len(running) < max(1, jobs):
            live = {r.name for r in running.values() if not children[r.stem].cancelled}
            pick = next_chapter(list(pending.values()), live, ok_names)
            if pick is None:
                break
            s, early = pick
            del pending[s.stem]
            prefix = progress_prefix(book.out, s.stem)
            if early:
                waiting = sorted(set(s.depends) & live)
                progress.log(f"[book] {s.stem}: starting while {', '.join(waiting)} still run(s): a model they "
                             f"are training is waited for and loaded from the store")
            progress.started(s.stem, prefix)
            children[s.stem] = _Child()
            running[pool.submit(_run_in_child, book, s, profile_path, prefix, children[s.stem])] = s
            if renderer:
                renderer.request()  # the index says which chapter runs now
        if not running:
            continue
        finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for fut in finished:
            s = running.pop(fut)
            children.pop(s.stem, None)
            res = fut.result()
            results[s.stem] = res
            if res["status"] == "ok":
                ok_names.add(s.name)
            else:
                failed_names.add(s.name)
            progress.finished(s.stem, res)
            if renderer and (pending or running):  # after the last one, the build's final rendering follows
                renderer.request()
        for r in running.values():  # started early, and a dependency has failed since
            bad = set(r.depends) & failed_names
            if bad and not children[r.stem].cancelled:
                children[r.stem].cancel(f"depends on failed chapter(s) {sorted(bad)}")


def progress_prefix(out: Path, stem: str) -> Path:
    """Where a running chapter writes its progress reports (``<prefix>.cells.json``, ``<prefix>.train.json``)."""
    return Path(out) / ".work" / f"{stem}.progress"


def clean_work(out: Path) -> None:
    """Remove what interrupted runs left in ``.work`` (folders of processes that are gone)."""
    work = Path(out) / ".work"
    if not work.is_dir():
        return
    for p in work.iterdir():
        m = re.search(r"-(?:old-)?(\d+)$", p.name)
        if p.is_dir() and m and not _pid_alive(m.group(1)):
            shutil.rmtree(p, ignore_errors=True)


def _run_in_child(book: Book, spec: ChapterSpec, profile_path: Path, prefix: Path | None = None,
                  child: _Child | None = None) -> dict:
    """Run a chapter in its own process (a crash or kill of one chapter cannot take the book down); it reports
    its progress through the files of ``prefix`` (:mod:`hamviz.progress`), removed when it ends. Stopped through
    ``child`` (:meth:`_Child.cancel`), it leaves nothing and is reported skipped."""
    from .config import PROGRESS_ENV
    marker = book.out / ".work" / f"{spec.stem}.running.json"
    prefix = Path(prefix or progress_prefix(book.out, spec.stem))
    env = dict(os.environ, **{PROGRESS_ENV: str(prefix)})
    args = [sys.executable, "-m", "hamviz.book", str(spec.path), str(profile_path),
            book.profile["data_dir"] or "", str(book.out), book.keys[spec.stem], str(os.getpid())]
    started = time.time()
    # its own session: the book can end the chapter and its kernel together (and the chapter ends itself and its
    # kernel when the book dies: _bind_to_parent)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)
    _CHILDREN.add(proc)
    if child is not None:
        child.attach(proc)
    _write_json(marker, {"pid": proc.pid, "started": started})
    try:
        output, _ = proc.communicate()
    finally:
        _CHILDREN.discard(proc)
        marker.unlink(missing_ok=True)
        for report in (".cells.json", ".train.json"):
            prefix.with_name(prefix.name + report).unlink(missing_ok=True)
    last = output.strip().splitlines()[-1] if output.strip() else ""
    try:
        return json.loads(last)
    except json.JSONDecodeError:
        code = proc.returncode
        if child is not None and child.cancelled:  # stopped by the scheduler: no failure to keep
            shutil.rmtree(book.out / ".work" / f"{spec.stem}-{proc.pid}", ignore_errors=True)
            return {"stem": spec.stem, "status": "skipped", "seconds": round(time.time() - started, 1),
                    "error": f"{child.reason}; it had started early and was stopped"}
        how = (f"was killed by signal {-code} ({_signal_name(-code)}; the out-of-memory killer sends SIGKILL)"
               if code is not None and code < 0 else f"exited with code {code}")
        result = {"stem": spec.stem, "key": book.keys[spec.stem], "status": "failed",
                  "seconds": round(time.time() - started, 1),
                  "started": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
                  "error": f"the chapter process {how} before reporting: {output[-2000:]}"}
        # what it left is the failed chapter (its partial notebook, to read), as run_chapter files a failure
        failed, work = book.out / "failed" / spec.stem, book.out / ".work" / f"{spec.stem}-{proc.pid}"
        shutil.rmtree(failed, ignore_errors=True)
        failed.parent.mkdir(parents=True, exist_ok=True)
        if work.is_dir():
            work.rename(failed)
        _write_json(failed / "failure.json", result)
        return result


#: chapter processes running now (so that an interrupted build ends them)
_CHILDREN: set = set()


def _signal_name(num: int) -> str:
    import signal
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _end_children() -> None:
    """End every running chapter process and its kernel (their own process groups)."""
    for proc in list(_CHILDREN):
        _kill_group(proc)


def _kill_group(proc) -> None:
    """End a chapter process and its kernel (its own process group)."""
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- index and pages

_RENDER_LOCK = threading.Lock()


def _status(st: dict) -> tuple[str, str]:
    """(status, note) of a chapter from :func:`chapter_state`."""
    done = st["done"]
    if st.get("running"):
        return "running", "building now"
    if st.get("interrupted"):
        return "interrupted", "the last run was interrupted before it finished"
    if st["failed"] and (not done or st["failed"].get("started", "") > done.get("started", "")):
        return "failed", st["failed"].get("error") or ""
    if st["current"]:
        return "ok", ""
    if done:
        return "stale", "inputs changed since this chapter was built; not yet rebuilt"
    return "not built", ""


def _banner(kind: str, text: str) -> str:
    return f'<div class="hamviz-banner {kind}">{text}</div>'


def write_index(book: Book, elapsed: float, render: bool = True) -> dict:
    """Write book.json from what the output folder holds now and (``render``) render the book's pages: the
    index and every chapter page (:func:`hamviz.render.render_book`). Returns book.json's content. Raises
    :class:`hamviz.render.RenderError` when the pages cannot be rendered (book.json is written first)."""
    entries, pages, links = [], [], {}
    for n, s in enumerate(book.chapters, 1):
        st = chapter_state(book, s)
        done, failed = st["done"], st["failed"]
        status, note = _status(st)
        record = _read_json(book.out / "chapters" / s.stem / f"{s.stem}.json") if done else None
        number = int(s.stem[:2]) if s.stem[:2].isdigit() else n
        training = (record or {}).get("training") or {}
        entries.append({"stem": s.stem, "title": s.title, "status": status, "note": note,
                        "seconds": done.get("seconds") if done else None, "key": book.keys[s.stem],
                        "summary": (record or {}).get("summary", {}), "training": training,
                        "built": done.get("started") if done else None,
                        # the front page's findings, and the intervals of its key numbers
                        "verdicts": (record or {}).get("verdicts", {}),
                        "values": {k: v for k, v in ((record or {}).get("values") or {}).items()
                                   if k in ("summary_ci", "test_ci")}})
        href = failed_href = None
        if done and (book.out / "chapters" / s.stem / f"{s.stem}.ipynb").is_file():
            href = f"chapters/{s.stem}/{s.stem}.html"
            banner = ""
            if status == "failed":
                banner = _banner("failed", f'<p><b>A later run of this chapter failed</b>; this page is the '
                                           f'previous complete run. <a href="../../failed/{s.stem}/{s.stem}.html">'
                                           f'The failed run</a>.</p><pre>{html.escape(note[:1500])}</pre>')
            elif status in ("stale", "interrupted"):
                banner = _banner("stale", f"<p><b>{html.escape(note)}</b>; this page is the last complete run."
                                          f"</p>")
            pages.append(Page(f"chapters/{s.stem}/{s.stem}", book.out / "chapters" / s.stem / f"{s.stem}.ipynb",
                              number, s.title, record, banner, True, [
                                  ("run time", duration(done.get("seconds"))),
                                  ("training time of its models", duration(training.get("seconds"))
                                   if training.get("models") else ""),
                                  ("built", done.get("started")), ("profile", book.profile.get("profile"))]))
        if failed and status == "failed" and (book.out / "failed" / s.stem / f"{s.stem}.ipynb").is_file():
            failed_href = f"failed/{s.stem}/{s.stem}.html"
            partial = _read_json(book.out / "failed" / s.stem / f"{s.stem}.json")
            pages.append(Page(f"failed/{s.stem}/{s.stem}", book.out / "failed" / s.stem / f"{s.stem}.ipynb",
                              number, s.title, partial,
                              _banner("failed", f"<p><b>This run failed</b> after "
                                                f"{duration(failed.get('seconds'))} (started "
                                                f"{html.escape(str(failed.get('started')))}); the cells below ran "
                                                f"until the error.</p><pre>{html.escape(note[:3000])}</pre>"),
                              href is None, [("run time", duration(failed.get("seconds")))]))
        links[s.stem] = (href, failed_href)
    prov = provenance({k: v for k, v in book.profile.items() if k != "_source"}, book.fingerprint)
    prov["profile_file"] = book.profile.get("_source")
    params_yaml = yaml.safe_dump(prov.pop("params"), sort_keys=False)
    info = {"profile": book.profile.get("profile"), "description": book.profile.get("description", ""),
            "data_dir": book.profile.get("data_dir"), "chapters": entries, "provenance": prov,
            "build_seconds": round(elapsed, 1)}
    book.out.mkdir(parents=True, exist_ok=True)
    _write_json(book.out / "book.json", info)
    if render:
        with _RENDER_LOCK:  # one Sphinx at a time on one book
            render_book(book.out, info, pages, links, params_yaml)
    return info


def _bind_to_parent(parent: int) -> None:
    """In a chapter process (its own session, see :func:`_run_in_child`): die, with the notebook kernel and
    everything else it started, when the book that started it dies, however it dies (``kill -9`` included).
    Linux: the kernel's parent-death signal; elsewhere a watcher thread polls the parent."""
    import signal
    import threading

    def end_group(*_):
        os.killpg(0, signal.SIGKILL)  # this process group: the chapter process and its kernel

    signal.signal(signal.SIGTERM, end_group)
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        def watch():
            while os.getppid() == parent:
                time.sleep(1)
            end_group()
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the book died before the signal was armed
        end_group()


if __name__ == "__main__":  # child process of build(): run one chapter, print its result as JSON
    nb, prof, data, outdir, chapter_key = sys.argv[1:6]
    if len(sys.argv) > 6:
        _bind_to_parent(int(sys.argv[6]))
    res = run_chapter(Path(nb), Path(prof), data or None, Path(outdir), chapter_key)
    print(json.dumps(res))
