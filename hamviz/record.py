"""What a chapter records beside its numbers: JSON-able values, and the provenance of every book (package and
library versions, data fingerprint, git commit, date, parameters)."""
from __future__ import annotations

import datetime as _dt
import os
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


#: the vector extensions that decide which kernels TensorFlow runs (the same seed trains a different model on
#: another CPU type): x86 from SSE4.2 to AMX, Arm's NEON (asimd) and SVE
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                "asimd", "sve", "sve2")


def cpu() -> dict:
    """The CPU the numbers were computed on: its model name (and family, model, stepping numbers), the vector
    extensions of :data:`VECTOR_FLAGS` it has and its core count (from /proc/cpuinfo on Linux; the platform's processor
    string elsewhere)."""
    model, flags, ids = None, [], {}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "hardware", "cpu model"):
            model = value.strip()
        elif key in ("cpu family", "model", "stepping") and key not in ids:
            ids[key] = value.strip()
        elif not flags and key in ("flags", "features"):
            have = set(value.split())
            flags = [f for f in VECTOR_FLAGS if f in have]
    out = {"model": model or platform.processor() or platform.machine() or "unknown",
           "vector_extensions": flags, "cores": os.cpu_count()}
    if ids:  # one model name ("AMD EPYC") covers several generations: family and model tell them apart
        out["id"] = ", ".join(f"{k} {v}" for k, v in ids.items())
    return out


def provenance(params: dict | None = None, fingerprint: str | None = None) -> dict:
    """Who made these numbers: package and library versions, data fingerprint, commit, date, the CPU
    (:func:`cpu`)."""
    versions = {}
    for mod in ("numpy", "pandas", "sklearn", "tensorflow", "keras", "plotly", "PIL"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    return {"hamviz": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu(), "libraries": versions, "data_fingerprint": fingerprint, "git_commit": git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "params": jsonable({k: v for k, v in (params or {}).items() if not k.startswith("_")})}
