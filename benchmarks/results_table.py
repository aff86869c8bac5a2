"""README's Results from a built book: every chapter's answers (each verdict with its interval, its replicates and
k of N) and its headline estimates with their intervals, as Markdown, read from the chapters' records.

    python benchmarks/results_table.py BOOK_DIR [--out FILE]

BOOK_DIR is a book folder (``hamviz book --out BOOK_DIR``; ``book.json`` and ``chapters/<stem>/<stem>.json``).
Nothing is computed here: the numbers are the records', so README cannot drift from the book it names. Each
chapter's run time and training time come from ``book.json``. Raises SystemExit naming the folder when it holds
no built book.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def _estimates(record: dict) -> list[str]:
    """The record's headline estimates that carry an interval (``summary_ci``), one table row each."""
    values, cis = record.get("values", {}), record.get("values", {}).get("summary_ci") or {}
    rows = []
    for name, ci in cis.items():
        value = record.get("summary", {}).get(name, values.get(name))
        if isinstance(value, (int, float)) and ci:
            label = (name.replace("_", " ").replace("macro f1", "macro-F1").replace("macro auc", "macro AUC")
                     .replace(" mean over replicates", " (mean over replicates)"))
            rows.append(f"| {label} | {_num(value)} [{_num(ci.get('low'))}, {_num(ci.get('high'))}] | | |")
    return rows


def _verdicts(record: dict) -> list[str]:
    rows = []
    for v in (record.get("verdicts") or {}).values():
        d = int(v.get("digits", 1))
        seeds = ", ".join("n/a" if x is None else f"{float(x):+.{d}f}" for x in v["per_seed"].values())
        effect = v["text"].split(";")[0].split(", replicates")[0]
        status = f"**{v['status']}**" if v["status"] == "shown" else v["status"]
        rows.append(f"| {v['question']} | {effect} | {seeds} | {status} (holds in {v['k']} of {v['n']}) |")
    return rows


def table(book: Path) -> str:
    """The Results Markdown of the book in ``book``."""
    meta_path = book / "book.json"
    if not meta_path.is_file():
        raise SystemExit(f"{book} holds no built book (no book.json): build one with `hamviz book --out {book}`")
    meta = json.loads(meta_path.read_text())
    out = []
    for c in meta["chapters"]:
        path = book / "chapters" / c["stem"] / f"{c['stem']}.json"
        if not path.is_file():
            out.append(f"**{c['stem']}**: {c.get('status')} (no record)\n")
            continue
        record = json.loads(path.read_text())
        train = record.get("training") or {}
        head = (f"**{c['stem']}** ({c.get('status')}, {c.get('seconds', 0) / 60:.1f} min, of which "
                f"{train.get('seconds_now', 0) / 60:.1f} min training {train.get('trained_now', 0)} of "
                f"{train.get('models', 0)} models; the others were loaded)")
        rows = _verdicts(record) + _estimates(record)
        if not rows:
            out.append(head + ": no verdicts.\n")
            continue
        out += [head, "", "| question | effect [interval] | each replicate | verdict |", "|---|---|---|---|", *rows, ""]
    prov = meta.get("provenance") or {}
    out.append(f"Provenance: hamviz {prov.get('hamviz')}, commit {prov.get('git_commit')}, data fingerprint "
               f"{prov.get('data_fingerprint')}, profile {meta.get('profile')}, built {prov.get('date')}.")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("book", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    text = table(args.book)
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
