"""What every chapter notebook does first, in one call: :func:`start`.

It loads and validates the parameter profile, seeds the random generators, makes plotly figures render
in static, offline HTML, loads the data set (checking it before any expensive work), and opens the
chapter's *record*: a small JSON file of the numbers the chapter measured, which the book's index and
the tests read (never scraped from HTML).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .params import chapter_params, load_profile

RECORD_ENV = "HAMVIZ_RECORD_DIR"


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "to_dict"):  # pandas objects
        return _jsonable(v.to_dict())
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def git_commit(path: Path | None = None) -> str | None:
    """The repository's commit (with '+dirty' when files changed), or None outside git."""
    cwd = str(path or Path(__file__).resolve().parents[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, text=True,
                                capture_output=True, timeout=10).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               text=True, capture_output=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(params: dict | None = None, fingerprint: str | None = None) -> dict:
    """Who made these numbers: package and library versions, data fingerprint, commit, date."""
    versions = {}
    for mod in ("numpy", "pandas", "sklearn", "tensorflow", "keras", "plotly", "PIL"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    return {"hamviz": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "libraries": versions, "data_fingerprint": fingerprint, "git_commit": git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "params": _jsonable({k: v for k, v in (params or {}).items() if not k.startswith("_")})}


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and (if imported) TensorFlow/Keras."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras
        keras.utils.set_random_seed(seed)


def offline_plotly() -> None:
    """Embed plotly.js in the notebook output once, so figures render in HTML opened offline,
    and keep the JupyterLab mimetype for live use."""
    import plotly.io as pio
    pio.renderers.default = "notebook+plotly_mimetype"


@dataclass
class Chapter:
    """A running chapter: its parameters, data, and record."""

    name: str
    params: dict
    record_path: Path
    record: dict = field(default_factory=dict)
    data: object = None
    profile: dict = field(default_factory=dict)  # the whole validated profile (other chapters' sections)

    def log(self, summary: bool = False, **values) -> None:
        """Record measured values (and write the record file at once). ``summary=True`` also puts
        them in the book's index table."""
        values = _jsonable(values)
        self.record.setdefault("values", {}).update(values)
        if summary:
            self.record.setdefault("summary", {}).update(values)
        self.save()

    def save(self) -> None:
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=1, sort_keys=False))
        tmp.replace(self.record_path)

    def finish(self) -> None:
        """Mark the record complete (the book checks for it)."""
        self.record["complete"] = True
        self.save()

    def params_table(self):
        import pandas as pd
        rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else v)
                for k, v in self.params.items() if not k.startswith("_")]
        return pd.DataFrame(rows, columns=["parameter", "value"]).set_index("parameter")

    def cache(self, size=None, **kw):
        """The decoded-image cache of this chapter's data at ``size`` (default: image_size)."""
        from .cache import build_cache
        return build_cache(self.data, size or self.params["image_size"], mode=self.params["resize"],
                           on_corrupt=self.params["on_corrupt"], **kw)

    def split(self, grouped: bool | None = None):
        from .splits import get_split
        sp = self.params["split"]
        return get_split(self.data, sp["fractions"], self.params["seed"],
                         sp["grouped"] if grouped is None else grouped)


def start(chapter: str, profile: str = "cpu", params: dict | None = None, data_dir=None,
          record_path=None, load_data: bool = True) -> Chapter:
    """Set up a chapter notebook. ``params`` overrides profile keys (same nesting as the YAML);
    ``data_dir`` overrides the profile's (which defaults to $HAMVIZ_DATA)."""
    from .data import load_ham10000
    overrides = dict(params or {})
    if data_dir:
        overrides["data_dir"] = str(data_dir)
    full = load_profile(profile, overrides)
    flat = chapter_params(full, chapter)
    set_seeds(flat["seed"])
    offline_plotly()
    if record_path is None:
        rec_dir = Path(os.environ.get(RECORD_ENV, "records"))
        record_path = rec_dir / f"{chapter}.json"
    ch = Chapter(chapter, flat, Path(record_path), profile=full)
    if load_data:
        ch.data = load_ham10000(flat["data_dir"], masks=flat["masks"], on_missing=flat["on_missing"])
    ch.record = {"chapter": chapter, "profile": flat["profile"], "complete": False,
                 "provenance": provenance(flat, ch.data.fingerprint if ch.data is not None else None),
                 "summary": {}, "values": {}}
    ch.save()
    return ch
