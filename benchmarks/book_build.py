"""Wall time of ``hamviz.book.build``: cold (fresh output folder, empty cache) and warm (nothing changed).

Cold: a fresh temporary output folder *and* HAMVIZ_CACHE pointed at an empty temporary folder, so every
image is decoded and every model trained (models already in ~/.cache/hamviz are not used, nor touched).
Warm: the same call again on the same folders: nothing changed, so every chapter must be reported up to
date and the build must take seconds (profile validation, the data check and the chapter keys).
Per chapter: the seconds from book.json's ``chapters`` (the chapter's own run time) and this run's
``this_run`` results (empty when a chapter was up to date).

--profile (default tiny): the profile to build; the cpu profile takes far too long for a 2-core machine.
--quick: only the eda chapter, on a temporary 30-images-per-class copy of the data (real files), to check
the script; its numbers are not results.
--keep DIR: move the built book (DIR/book) and the models the cold build trained (DIR/models) there
instead of deleting them, so a long cold build is not wasted: install DIR/models into ~/.cache/hamviz/models
and DIR/book is the book those models give.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a script from benchmarks/
    import common


def _small_copy(src: Path, dest: Path, per_class: int) -> Path:
    """A flat-layout copy of ``per_class`` real images (and masks) of every class (temporary; not the repo)."""
    import pandas as pd
    meta = pd.read_csv(src / "HAM10000_metadata.csv")
    rows = meta.groupby("dx", group_keys=False).head(per_class).reset_index(drop=True)
    (dest / "images").mkdir(parents=True)
    rows.to_csv(dest / "HAM10000_metadata.csv", index=False)
    masks = (src / "masks").is_dir()
    if masks:
        (dest / "masks").mkdir()
    for image_id in rows["image_id"]:
        shutil.copy(src / "images" / f"{image_id}.jpg", dest / "images")
        if masks:
            shutil.copy(src / "masks" / f"{image_id}_segmentation.png", dest / "masks")
    return dest


def _folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2 ** 20, 1)


def run(quick: bool = False, profile: str = "tiny", jobs: int | None = None,
        keep: Path | None = None, only: list[str] | None = None) -> dict:
    from hamviz.book import build
    only = ("eda",) if quick else (tuple(only) if only else None)
    logs: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="hamviz-bench-book-"))
    old_cache = os.environ.get("HAMVIZ_CACHE")
    try:
        cache = tmp / "cache"
        cache.mkdir()
        data = _small_copy(common.data_dir(), tmp / "data", 30) if quick else common.data_dir()
        out = tmp / "book"
        os.environ["HAMVIZ_CACHE"] = str(cache)  # the chapters run in child processes: they inherit it
        cache_empty = not any(cache.iterdir())
        res = {"settings": {"profile": profile, "jobs": jobs, "only": list(only) if only else None,
                            "data_dir": str(data), "quick_data_copy": quick,
                            "hamviz_cache": "empty temporary folder" if cache_empty else str(cache),
                            "hamviz_cache_empty_at_cold_start": cache_empty,
                            "output": "fresh temporary folder"}}
        runs = {}
        for phase in ("cold", "warm"):
            t = time.perf_counter()
            summary = build(profile, out, data_dir=data, jobs=jobs, only=only,
                            log=lambda m, p=phase: logs.append(f"{p}: {m}"))
            wall = time.perf_counter() - t
            runs[phase] = {
                "wall_s": round(wall, 2),
                "build_seconds": summary.get("build_seconds"),
                "chapters": [{"stem": c["stem"], "status": c["status"], "seconds": c["seconds"]}
                             for c in summary["chapters"]],
                "this_run": {stem: {k: r.get(k) for k in ("status", "seconds", "error")}
                             for stem, r in summary.get("this_run", {}).items()},
            }
            if phase == "cold":
                runs[phase]["cache_mb_after"] = _folder_mb(cache)
        res.update(runs)
        res["warm_rebuilt"] = sorted(runs["warm"]["this_run"])  # must be empty: nothing changed
        res["cold_over_warm"] = round(runs["cold"]["wall_s"] / runs["warm"]["wall_s"], 1)
        res["log"] = logs
        if keep is not None:
            keep = Path(keep)
            keep.mkdir(parents=True, exist_ok=True)
            for name, src in (("book", out), ("models", cache / "models")):
                if src.exists():
                    shutil.rmtree(keep / name, ignore_errors=True)
                    shutil.move(str(src), str(keep / name))
            res["kept"] = str(keep)
    finally:
        if old_cache is None:
            os.environ.pop("HAMVIZ_CACHE", None)
        else:
            os.environ["HAMVIZ_CACHE"] = old_cache
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def table(result: dict) -> str:
    cold, warm = result["cold"], result["warm"]
    warm_by = {c["stem"]: c for c in warm["chapters"]}
    rows = []
    for c in cold["chapters"]:
        this = cold["this_run"].get(c["stem"], {})
        w = warm_by.get(c["stem"], {})
        rerun = c["stem"] in warm["this_run"]
        rows.append((c["stem"], this.get("status") or c["status"], this.get("seconds"),
                     w.get("status"), "re-ran" if rerun else "up to date"))
    rows.append(("whole build (wall)", "", cold["wall_s"], warm["wall_s"], ""))
    s = result["settings"]
    notes = [f"profile {s['profile']}" + (f", only {s['only']}" if s["only"] else "")
             + (" on a temporary 30-per-class copy of the data (--quick)" if s["quick_data_copy"] else "")
             + f"; HAMVIZ_CACHE: {s['hamviz_cache']} (empty at the cold start: "
               f"{s['hamviz_cache_empty_at_cold_start']}); output: {s['output']}",
             f"cold / warm = {result['cold_over_warm']}x; cache after the cold build: {cold['cache_mb_after']} MB; "
             f"chapters re-run by the warm build: {result['warm_rebuilt'] or 'none'}"]
    return common.render(("chapter", "cold status", "cold s", "warm status", "warm"), rows,
                         title="book_build: hamviz.book.build cold and warm", notes=notes)
