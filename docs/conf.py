"""Sphinx configuration of hamviz's documentation (`make docs` -> docs/_build/html/index.html).

Built offline: MyST Markdown pages, no intersphinx, no remote assets. The parameter reference
(_generated/parameters.md) is written here, at every build, from the profile schema in hamviz.params, so it
cannot drift from what `hamviz validate` checks.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from hamviz import params as hamviz_params  # noqa: E402  (after the repository root is on the path)

project = "hamviz"
author = "hamviz contributors"
copyright = "hamviz contributors; HAM10000 data: CC BY-NC-SA 4.0"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_heading_anchors = 3

if importlib.util.find_spec("sphinx_book_theme") is not None:
    html_theme = "sphinx_book_theme"
    html_theme_options = {"show_toc_level": 2}
else:
    html_theme = "alabaster"
html_title = "hamviz documentation"


# --- the parameter reference, generated from hamviz.params.SCHEMA and CHAPTER_SCHEMAS ---------------------------

def _value(v) -> str:
    """A value as a profile writes it (YAML's true/false/null; lists and mappings in flow style)."""
    return json.dumps(v)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _type(schema: dict) -> str:
    """The type or allowed values of a schema node."""
    if "enum" in schema:
        return "one of " + ", ".join(f"`{_value(v)}`" if not isinstance(v, str) else f"`{v}`"
                                     for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    words = []
    for t in types:
        if t == "array" and isinstance(schema.get("items"), dict) and "properties" not in schema["items"]:
            item = schema["items"]
            bounds = _bounds(item)
            words.append(f"array of {_type(item)}" + (f" ({bounds})" if bounds else ""))
        elif t == "array" and isinstance(schema.get("items"), dict):
            words.append("array of mappings (keys below)")
        elif t == "object" and "propertyNames" in schema:
            words.append(f"mapping from {_type(schema['propertyNames'])} to a mapping")
        elif t == "object" and "properties" in schema:
            words.append("mapping (keys below)")
        else:
            words.append(t)
    return " or ".join(words) if words else "any"


def _bounds(schema: dict) -> str:
    parts = []
    for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if key in schema:
            parts.append(f"{sign} {_value(schema[key])}")
    for key, word in (("minItems", "at least"), ("maxItems", "at most")):
        if key in schema:
            parts.append(f"{word} {schema[key]} entr{'y' if schema[key] == 1 else 'ies'}")
    if "minLength" in schema:
        parts.append(f"at least {schema['minLength']} character{'' if schema['minLength'] == 1 else 's'}")
    if schema.get("uniqueItems"):
        parts.append("no repeats")
    parts += [b for b in map(_bounds, schema.get("anyOf", ())) if b]
    return ", ".join(parts)


def _rows(properties: dict, prefix: str = "", defaults: dict | None = None, required=()) -> list[str]:
    """One table row per key, and rows for the keys of nested mappings (``split.grouped``, ``grid.models``,
    ``transfer_members[].model``)."""
    rows = []
    for key, schema in properties.items():
        name = prefix + key
        if "default" in schema:
            default = f"`{_value(schema['default'])}`"
        elif defaults and key in defaults:
            default = f"`{_value(defaults[key])}`"
        elif key in required:
            default = "required"
        else:
            default = ""
        rows.append(f"| `{name}` | {_cell(_type(schema))} | {_cell(_bounds(schema))} | {_cell(default)} | "
                    f"{_cell(schema.get('description', ''))} |")
        if "properties" in schema and name != "chapters":
            rows += _rows(schema["properties"], name + ".", None, schema.get("required", ()))
        items = schema.get("items")
        if isinstance(items, dict) and "properties" in items:
            rows += _rows(items["properties"], name + "[].", None, items.get("required", ()))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and "properties" in extra:
            rows += _rows(extra["properties"], name + ".<model>.", None, extra.get("required", ()))
    return rows


def _table(properties: dict, defaults: dict | None = None, required=()) -> str:
    head = ["| key | type / allowed values | bounds | default | description |", "|---|---|---|---|---|"]
    return "\n".join(head + _rows(properties, "", defaults, required)) + "\n"


def parameters_page() -> str:
    schema, chapters = hamviz_params.SCHEMA, hamviz_params.CHAPTER_SCHEMAS
    defaults = getattr(hamviz_params, "DEFAULTS", {})
    out = ["# Profile parameters", "",
           "Generated from the profile schema (`hamviz.params.SCHEMA` and `hamviz.params.CHAPTER_SCHEMAS`) when "
           "the documentation is built. A profile is YAML: the settings of the first table at its top level, "
           "one section per chapter under `chapters:` (tables below). Every profile is validated against this "
           "schema before any notebook runs: an unknown key, a wrong type or a value outside its bounds is an "
           "error naming the file, the key and the fix. A key of a nested mapping is written `parent.key`; "
           "`list[].key` is a key of each entry of a list. An empty default is unset (`null` where allowed). "
           "See [Profiles](../profiles.md) for the shipped profiles.", "",
           "## Top level", "", _table(schema["properties"], defaults, schema.get("required", ()))]
    for name, section in chapters.items():
        out += [f"## `chapters.{name}`", "",
                f"The section `chapters: {name}:` of a profile (the chapter notebook `NN_{name}.ipynb`).", "",
                _table(section["properties"], None, section.get("required", ()))]
    return "\n".join(out)


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return  # unchanged: Sphinx need not read the page again
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --- the book-build measurements, generated from benchmarks/book_build*.json ---------------------------------------

def _book_build_runs(path: Path) -> list[dict]:
    """Every book build a benchmarks JSON holds: date, machine, options, cold wall time and chapter seconds. Three
    layouts are written there: ``{"benchmarks": {"book_build": entry}}`` (benchmarks/run.py), ``{"book_build":
    entry}`` (older runs) and ``{"machine", "provenance", "chapters"}`` (a partial build read from its book)."""
    data = json.loads(path.read_text())
    entry = (data.get("benchmarks") or {}).get("book_build") or data.get("book_build")
    if entry is None and "chapters" in data:
        entry = {"date": (data.get("provenance") or {}).get("date"), "machine": data.get("machine") or {},
                 "result": {"cold": {"chapters": data["chapters"]}}}
    if entry is None:
        return []
    result = entry.get("result") or {}
    cold = result.get("cold") or ({"wall_s": result.get("build_seconds"), "chapters": result["chapters"]}
                                  if "chapters" in result else {})  # a build by hand: its book.json's numbers
    machine = entry.get("machine") or {}
    flags = machine.get("cpu_vector_flags") or []
    cache = (result.get("settings") or {}).get("hamviz_cache")
    note = " ".join(n for n in (data.get("note"), result.get("note"), cache) if isinstance(n, str))
    return [{"file": path.name, "date": str(entry.get("date") or "")[:10], "note": note,
             "machine": f"{machine.get('cpu_model', '?')}, {machine.get('cpu_count', '?')} cores, "
                        + ("AVX-512" if any(f.startswith("avx512") for f in flags) else "AVX2 only" if flags else "?"),
             "profile": (entry.get("options") or {}).get("profile", "") if isinstance(entry.get("options"), dict)
             else "", "wall_s": cold.get("wall_s"),
             "chapters": {c["stem"]: c.get("seconds") for c in cold.get("chapters") or [] if isinstance(c, dict)}}]


def benchmarks_page() -> str:
    runs = [r for f in sorted((DOCS.parent / "benchmarks").glob("book_build*.json")) for r in _book_build_runs(f)]
    stems = sorted({s for r in runs for s in r["chapters"]})

    def minutes(x):
        return f"{x / 60:.1f}" if isinstance(x, (int, float)) else ""

    head = ["| file | date | machine | profile | wall (min) | " + " | ".join(stems) + " |",
            "|---" * (5 + len(stems)) + "|"]
    rows = [f"| `{r['file']}` | {r['date']} | {r['machine']} | {r['profile']} | {minutes(r['wall_s'])} | "
            + " | ".join(minutes(r["chapters"].get(s)) for s in stems) + " |" for r in runs]
    notes = [f"- `{r['file']}`: {_cell(r['note'])}" for r in runs if r["note"]]
    return "\n".join(["# Benchmarks: book builds", "",
                      "Generated from `benchmarks/book_build*.json` when the documentation is built: every measured "
                      "build of a whole book (`benchmarks/run.py book_build`), its machine and the minutes of each "
                      "chapter (a chapter's own run time; with `jobs: 2` two chapters share the two cores, so they "
                      "add up to more than the wall time). Every build is cold (an empty cache) unless "
                      "its note says otherwise; an empty cell was not measured. What each script measures: "
                      "`benchmarks/README.md`.", "", *head, *rows, "", "Notes kept with the measurements:", "",
                      *notes, ""])


_write_if_changed(DOCS / "_generated" / "parameters.md", parameters_page())
_write_if_changed(DOCS / "_generated" / "benchmarks.md", benchmarks_page())
