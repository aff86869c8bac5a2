"""The book's chapters and their keys: which notebooks are chapters (:func:`discover`), what each declares
(:func:`check_notebook`), which ones a build runs (:func:`select`), each chapter's key -- what its results depend
on (:func:`chapter_keys`) -- and what the output folder holds for it (:func:`chapter_state`)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..config import HamvizError, ParamsError, notebooks_dir
from ..files import write_atomic
from ..params import CHAPTER_SCHEMAS, chapter_params, wanted_weights
from ..record import jsonable as _jsonable

NOTEBOOKS = notebooks_dir()
#: Parameters every chapter notebook declares in its ``parameters`` cell (the book sets them).
NOTEBOOK_PARAMETERS = ("profile", "params", "data_dir", "record_path")
#: Keys that do not change a chapter's results (left out of its key).
NEUTRAL_KEYS = ("jobs", "description", "data_dir", "profile", "_source")


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


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(_jsonable(obj), indent=1))


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def pid_alive(pid) -> bool:
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
    from ..weights import identity
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
    pkg = source_hash(Path(__file__).parents[1].rglob("*.py"))  # all of hamviz
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


def _started(result: dict) -> float:
    try:
        return _dt.datetime.fromisoformat(result["started"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def chapter_state(book: Book, spec: ChapterSpec) -> dict:
    """What the output folder holds for a chapter: done with the current key, stale, failed, or none."""
    done = read_json(book.out / "chapters" / spec.stem / "done.json")
    failed = read_json(book.out / "failed" / spec.stem / "failure.json")
    running = read_json(book.out / ".work" / f"{spec.stem}.running.json")
    state = {"done": done, "failed": failed}
    if running and not pid_alive(running.get("pid")):
        if done and done.get("key") == book.keys[spec.stem] and _started(done) >= running.get("started", 0) - 1:
            # the chapter published after the book that started it died: done, and the marker is stale
            (book.out / ".work" / f"{spec.stem}.running.json").unlink(missing_ok=True)
        else:
            state["interrupted"] = running
    elif running:
        state["running"] = running
    state["current"] = bool(done and done.get("key") == book.keys[spec.stem])
    return state

