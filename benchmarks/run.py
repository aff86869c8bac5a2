"""Run hamviz's benchmarks, print their tables and write the results as JSON.

    python benchmarks/run.py [name ...] [--quick] [--out benchmarks/results.json] [--profile tiny]

names: pipeline, training, jpeg_sweep, book_build, paper_estimate (default: all). --quick runs each with small N, to
check that the scripts work (its numbers are not results); without --out it writes benchmarks/results-quick.json
so a quick run never overwrites the full results. Results of benchmarks not run this time are kept in the
JSON file (each entry records its own machine description and date).

Benchmarks print and record numbers; they assert nothing about speed. Comparisons are measured side by side
in the same run (ratios), because these machines are noisy: compare ratios, not absolute figures, across runs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common  # noqa: E402

NAMES = ("pipeline", "training", "jpeg_sweep", "book_build", "paper_estimate")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="name",
                    help=f"benchmarks to run: {', '.join(NAMES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="small N: check the scripts, not results")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON file (default benchmarks/results.json; results-quick.json with --quick)")
    ap.add_argument("--profile", default=None,
                    help="book_build: the profile to build (default tiny); paper_estimate: the profile to estimate "
                         "(default paper)")
    ap.add_argument("--jobs", type=int, default=None, help="book_build: parallel chapters")
    ap.add_argument("--only", nargs="+", default=None,
                    help="book_build: these chapters (and what they depend on), e.g. --only classifier")
    ap.add_argument("--keep", type=Path, default=None,
                    help="book_build: move the built book and trained models to this folder instead of deleting them")
    args = ap.parse_args(argv)
    names = args.names or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(NAMES)}")
    out = args.out or REPO / "benchmarks" / ("results-quick.json" if args.quick else "results.json")
    try:
        saved = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        saved = {}
    saved.setdefault("benchmarks", {})
    options = {"profile": args.profile, "jobs": args.jobs, "keep": args.keep, "only": args.only}
    failed = []
    for name in names:
        mod = importlib.import_module(f"benchmarks.{name}")
        params = inspect.signature(mod.run).parameters
        kw = {k: v for k, v in options.items() if k in params and v is not None}
        print(f"== {name}{' (quick)' if args.quick else ''} ==", flush=True)
        entry = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 "quick": args.quick, "options": kw, "machine": common.machine()}
        t = time.perf_counter()
        try:
            result = mod.run(quick=args.quick, **kw)
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not lose the others
            traceback.print_exc()
            failed.append(name)
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            entry.update(status="ok", result=result)
            print(mod.table(result), flush=True)
        entry["wall_s"] = round(time.perf_counter() - t, 1)
        entry["versions"] = common.versions()
        entry["peak_rss_mb_runner"] = common.peak_rss_mb()
        print(f"({name}: {entry['wall_s']} s)\n", flush=True)
        saved["benchmarks"][name] = _jsonable(entry)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(saved, indent=1) + "\n")  # after each benchmark: nothing lost on a crash
    print(f"wrote {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
