"""What a chapter records beside its numbers: JSON-able values, and the provenance of every book (package and
library versions, data fingerprint, git commit, date, parameters)."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from .config import __version__


def jsonable(v):
    """``v`` with numpy scalars and arrays, paths and pandas objects turned into JSON types; NaN/inf -> None."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "to_dict"):  # pandas objects
        return jsonable(v.to_dict())
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
            "params": jsonable({k: v for k, v in (params or {}).items() if not k.startswith("_")})}
