"""The book's front page and the findings (HTML written into the Sphinx sources by :mod:`hamviz.book.render`).

The front page leads with the answers: every verdict the chapters recorded (``record["verdicts"]``, see
:meth:`hamviz.chapters.base.Chapter.verdict`) in one table that is also the book's headline figure -- a forest
plot: each question, its effect with its interval, how many replicates agree and the verdict ("shown" / "not
settled"), and beside it the effect drawn (every replicate, the mean with its interval, no effect). Then a
compact table of the chapters (status and times in one narrow column, key numbers in a wide one), the provenance
(the CPU model and its vector extensions included) and the profile's parameters, folded.

Numbers are shown to the precision their interval justifies (:func:`justified_digits`: two significant digits of
the interval's half-width), numbers without an interval to three significant digits.
"""
from __future__ import annotations

import html
import math

#: the units whose verdicts share one axis in the findings figure (the others get their own scale, marked)
SHARED_UNITS = "points"
#: the forest column's size in pixels
FOREST_W, FOREST_H = 150, 18
_STATUS_CLASS = {"ok": "ok", "failed": "failed", "interrupted": "failed", "stale": "stale", "running": "running",
                 "not built": "muted", "skipped": "stale"}


#: the hint above a table that is wider than the page (shown by the page's script only then)
SCROLL_HINT = ("<p class=\"hamviz-scroll-hint\" hidden>&#8644; This table is wider than the page: scroll it "
               "sideways (its first column stays in place).</p>")


def scrolling(table_html: str) -> str:
    """``table_html`` in a container that scrolls sideways when the table is wider than the page, with the hint
    the page's script shows then (and the first column frozen: CSS ``.hamviz-scroll.overflows``)."""
    return f'{SCROLL_HINT}<div class="hamviz-scroll" tabindex="0">{table_html}</div>'


# --------------------------------------------------------------------------------------------------- numbers

def duration(seconds) -> str:
    """Seconds as "42 s", "12.5 min" or "1.3 h" ("" for None)."""
    if seconds is None:
        return ""
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in xs)


def significant(v: float, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, with thousands separators and no exponent ("0.706", "1.79",
    "12,345")."""
    if v == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}"


def fmt(v) -> str:
    """A number or value as the book shows it (HTML-escaped): floats to 3 significant digits, integers with
    thousands separators, dicts as "k: v" lists, a missing value as "n/a"."""
    if isinstance(v, float):
        return significant(v) if math.isfinite(v) else "n/a"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{html.escape(str(k))}: {fmt(x)}" for k, x in v.items())
    if v is None:
        return "n/a"
    return html.escape(str(v))


def justified_digits(low, high, most: int = 4) -> int | None:
    """The decimals that an interval [``low``, ``high``] justifies: two significant digits of its half-width
    (half-width 790 -> 0 decimals, 7.3 -> 1, 0.045 -> 3), at most ``most``; None without a finite interval."""
    if not _finite(low, high) or high <= low:
        return None
    return int(min(most, max(0, 1 - math.floor(math.log10((high - low) / 2)))))


def _fixed(v: float, digits: int, signed: bool) -> str:
    """``v`` with ``digits`` decimals (and its sign, when ``signed``); a value that rounds to zero has no sign."""
    text = f"{v:{'+' if signed else ''},.{digits}f}"
    return text.lstrip("+-") if float(text.replace(",", "")) == 0 else text


def with_interval(value, low=None, high=None, signed: bool = False, units: str = "") -> str:
    """"0.706 [0.661, 0.751]": ``value`` and its interval at the precision the interval justifies
    (:func:`justified_digits`); without an interval the value alone (:func:`fmt`)."""
    d = justified_digits(low, high)
    if not _finite(value):
        return "n/a"
    if d is None:
        return fmt(value) if not signed else _fixed(value, 2, True)
    u = f" {html.escape(units)}" if units else ""
    return (f'{_fixed(value, d, signed)}{u} <span class="ci">[{_fixed(low, d, signed)}, '
            f'{_fixed(high, d, signed)}]</span>')


def interval(key: str, values: dict):
    """The (low, high) interval the record gives for summary number ``key``, or None: ``values["summary_ci"][key]``,
    or for ``test_<metric>`` the lesion-bootstrap ``values["test_ci"][<metric>]`` (both {"low", "high"})."""
    for source, name in (("summary_ci", key), ("test_ci", key[5:] if key.startswith("test_") else None)):
        ci = (values.get(source) or {}).get(name) if name else None
        if isinstance(ci, dict) and ci.get("low") is not None and ci.get("high") is not None:
            return ci["low"], ci["high"]
    return None


def is_answer(key: str) -> bool:
    """A summary entry that repeats a verdict's one-line text (``answer: <question>``): the findings show it."""
    return key.startswith("answer: ")


def key_numbers(summary: dict, values: dict) -> list[tuple[str, str, str]]:
    """The summary's key numbers as (record key, field name, HTML value with its interval at the precision it
    justifies), the verdicts' lines left out (:func:`is_answer`)."""
    from ..metrics import field_name
    out = []
    for k, v in (summary or {}).items():
        if is_answer(k):
            continue
        ci = interval(k, values or {}) if _finite(v) else None
        out.append((k, field_name(k), with_interval(v, *ci) if ci else fmt(v)))
    return out


# -------------------------------------------------------------------------------------------------- findings

def level_text(level) -> str:
    """"95 %", "97.5 %": an interval's level."""
    return f"{100 * level:.3g} %" if _finite(level) else "95 %"


def effect_html(v: dict, level: float | None = 0.95) -> str:
    """A verdict's effect: "+16.8 points [+1.1, +32.9]" (mean over replicates and its interval, at the precision
    the interval justifies), with the interval's level where it is not ``level`` (the one its table states) and
    its scope where it covers less than replicates x lesions."""
    if not _finite(v.get("mean")):
        return "no value"
    units = v.get("units") or ""
    if not _finite(v.get("low"), v.get("high")):
        return f"{v['mean']:+.{v.get('digits', 1)}f} {html.escape(units)} (no interval)"
    text = f'<span class="est">{with_interval(v["mean"], v["low"], v["high"], signed=True, units=units)}</span>'
    own = v.get("level")
    notes = [] if not _finite(own) or (level is not None and abs(own - level) < 1e-9) else [level_text(own)]
    if v.get("interval") not in (None, "replicates x lesions"):
        notes.append(f"over {html.escape(str(v['interval']))} only")
    return text + (f' <span class="muted">({", ".join(notes)})</span>' if notes else "")


def _nice(x: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k at or above ``x``."""
    if not x > 0:
        return 1.0
    e = 10 ** math.floor(math.log10(x))
    return next(m * e for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * e >= x * (1 - 1e-9))


def forest_scale(verdicts) -> float:
    """The half-range of a shared forest axis for ``verdicts``: wide enough for every replicate and mean, and for
    intervals up to three times that (wider intervals are cut at the edge, with an arrow)."""
    centre = [abs(x - (v.get("null") or 0.0)) for v in verdicts
              for x in [v.get("mean"), *(v.get("per_seed") or {}).values()] if _finite(x)]
    ends = [abs(x - (v.get("null") or 0.0)) for v in verdicts for x in (v.get("low"), v.get("high")) if _finite(x)]
    base = max(centre, default=0.0) * 1.1
    if not base > 0:
        base = max(ends, default=1.0) or 1.0
    return _nice(min(max(ends + [base]), 3 * base))


def forest_svg(v: dict, half: float) -> str:
    """One verdict drawn in a small SVG (:data:`FOREST_W` x :data:`FOREST_H` px) on the axis null +- ``half``:
    no effect (dashed line), every replicate (open circles), the mean (a diamond, filled when shown) with its
    interval (a bar, with an arrow where it runs past the axis)."""
    null = v.get("null") or 0.0
    pad = 6
    x = lambda t: pad + (FOREST_W - 2 * pad) * (min(max((t - null) / half, -1.0), 1.0) + 1) / 2  # noqa: E731
    mid = FOREST_H / 2
    shown = v.get("status") == "shown"
    colour = "#1a7f37" if shown else "#57606a"
    parts = [f'<line x1="{x(null):.1f}" y1="1" x2="{x(null):.1f}" y2="{FOREST_H - 1}" stroke="#999" '
             f'stroke-dasharray="2,2"/>']
    low, high, mean = v.get("low"), v.get("high"), v.get("mean")
    if _finite(low, high):
        parts.append(f'<line class="ci" x1="{x(low):.1f}" y1="{mid}" x2="{x(high):.1f}" y2="{mid}" '
                     f'stroke="{colour}" stroke-width="2"/>')
        for end, sign in ((low, -1), (high, 1)):
            if abs(end - null) > half:  # cut at the edge: an arrow says it goes on
                tip = x(end)
                parts.append(f'<path d="M{tip:.1f},{mid} l{-sign * 5},-4 v8 z" fill="{colour}"/>')
    for s in (v.get("per_seed") or {}).values():
        if _finite(s):
            parts.append(f'<circle cx="{x(s):.1f}" cy="{mid}" r="2.6" fill="none" stroke="{colour}" '
                         f'stroke-width="1"/>')
    if _finite(mean):
        m = x(mean)
        parts.append(f'<path class="mean" d="M{m:.1f},{mid - 5} l4,5 l-4,5 l-4,-5 z" stroke="{colour}" '
                     f'stroke-width="1.2" fill="{colour if shown else "#fff"}"/>')
    title = html.escape(f"{v.get('question', '')}: {strip_tags(effect_html(v))}")
    return (f'<svg class="hamviz-forest" width="{FOREST_W}" height="{FOREST_H}" viewBox="0 0 {FOREST_W} {FOREST_H}" '
            f'role="img" aria-label="{title}"><title>{title}</title>{"".join(parts)}</svg>')


def forest_axis(half: float, units: str = SHARED_UNITS) -> str:
    """The shared axis of the forest column: ticks at -half, -half/2, 0, half/2, half (an SVG for the header)."""
    pad, h = 6, 26
    ticks = []
    for f in (-1, -0.5, 0, 0.5, 1):
        t = pad + (FOREST_W - 2 * pad) * (f + 1) / 2
        label = "" if abs(f) == 0.5 else f"{f * half:+g}" if f else "0"  # half ticks unlabelled: no crowding
        anchor = "start" if f == -1 else "end" if f == 1 else "middle"
        ticks.append(f'<line x1="{t:.1f}" y1="{h - 6}" x2="{t:.1f}" y2="{h - 1}" stroke="#666"/>'
                     f'<text x="{t:.1f}" y="{h - 9}" font-size="10" text-anchor="{anchor}" fill="#444">{label}</text>')
    return (f'<svg class="hamviz-forest-axis" width="{FOREST_W}" height="{h}" viewBox="0 0 {FOREST_W} {h}" '
            f'role="img" aria-label="axis: {html.escape(units)}"><line x1="{pad}" y1="{h - 1}" x2="{FOREST_W - pad}" '
            f'y2="{h - 1}" stroke="#666"/>{"".join(ticks)}</svg>')


def strip_tags(text: str) -> str:
    import re
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def verdict_cell(v: dict) -> str:
    """"shown" or "not settled" (why: in its tooltip), with k of N."""
    status = str(v.get("status", ""))
    cls = "shown" if status == "shown" else "unsettled"
    why = html.escape(str(v.get("why") or ""), quote=True)
    return (f'<span class="verdict {cls}" title="{why}">{html.escape(status)}</span> <span class="kn">{v.get("k")} '
            f'of {v.get("n")}</span>')


def findings_table(groups, caption: str = "", headers: bool = True) -> str:
    """The findings as a forest-plot table: ``groups`` is a list of (chapter number, chapter title, href or None,
    verdicts {key: verdict dict}); one header row per chapter that has verdicts (``headers``), one row per verdict
    (numbered "N.k"). Verdicts in :data:`SHARED_UNITS` share one axis; any other is drawn on its own scale (marked). ""
    when no chapter recorded a verdict."""
    groups = [(n, t, h, list((vs or {}).values())) for n, t, h, vs in groups if vs]
    if not groups:
        return ""
    shared = [v for *_, vs in groups for v in vs if (v.get("units") or "") == SHARED_UNITS]
    half = forest_scale(shared) if shared else 1.0
    rows = []
    for number, title, href, verdicts in groups:
        name = f'<a href="{href}">{html.escape(title)}</a>' if href else html.escape(title)
        levels = [v.get("level") for v in verdicts if _finite(v.get("level"))]
        level = max(set(levels), key=levels.count) if levels else 0.95  # the chapter's (a family's corrected one)
        rows.append(f'<tr class="chapter"><th colspan="5">{f"{number}. {name} " if headers else ""}<span '
                    f'class="level">{level_text(level)} intervals'
                    f'{" (Bonferroni-corrected)" if level > 0.95 + 1e-9 else ""}</span></th></tr>')
        for k, v in enumerate(verdicts, 1):
            own = (v.get("units") or "") != SHARED_UNITS
            scale = forest_scale([v]) if own else half
            units = html.escape(v.get("units") or "")
            mark = (f'<span class="own" title="drawn on its own scale: {v.get("null") or 0:g} ± {scale:g} {units}">'
                    f'&#8225;</span>') if own else ""
            rows.append(f'<tr class="{"shown" if v.get("status") == "shown" else "unsettled"}">'
                        f'<td class="id">{number}.{k}</td><td class="question">{html.escape(str(v.get("question")))}'
                        f'</td><td class="effect">{effect_html(v, level)}</td><td class="forest">{mark}'
                        f'{forest_svg(v, scale)}</td><td class="decision">{verdict_cell(v)}</td></tr>')
    head = (f'<thead><tr><th>#</th><th>question</th><th>effect [interval]</th><th class="forest">'
            f'{forest_axis(half)}<span class="axis-units">{SHARED_UNITS}</span></th><th>verdict</th></tr></thead>')
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (f'<figure class="hamviz-findings">{cap}'
            + scrolling(f'<table class="hamviz-findings">{head}<tbody>{"".join(rows)}</tbody></table>') + "</figure>")


FOREST_NOTE = ("Diamond: the mean over replicates (filled: shown); bar: its interval (an arrow: it runs on); circles: "
               "each replicate; dashed: no effect; &#8225;: drawn on its own scale (other units). <b>Shown</b>: every "
               "replicate on the claimed side and the interval (seeds and test lesions) excludes no effect; else "
               "<b>not settled</b>.")


# ------------------------------------------------------------------------------------------------ front page

def chapter_number(stem: str, default: int = 0) -> int:
    return int(stem[:2]) if stem[:2].isdigit() else default


def findings_lead(chapters: list[dict]) -> str:
    """One paragraph over the findings: how many questions, in how many chapters, how many shown; which chapters
    have no complete run (so no answers here)."""
    verdicts = [v for c in chapters for v in (c.get("verdicts") or {}).values()]
    asked = sum(1 for c in chapters if c.get("verdicts"))
    shown = [v for v in verdicts if v.get("status") == "shown"]
    reps = sorted({v.get("n") for v in verdicts if v.get("n")})
    missing = [c["title"] for c in chapters if c.get("status") not in ("ok", "stale") and not c.get("verdicts")]
    text = (f"<b>{len(verdicts)} question{'s' * (len(verdicts) != 1)}</b> in {asked} chapter{'s' * (asked != 1)}, "
            f"each answered from {' or '.join(map(str, reps))} replicate{'s' * (reps != [1])}: "
            f'<span class="verdict shown">{len(shown)} shown</span>, '
            f'<span class="verdict unsettled">{len(verdicts) - len(shown)} not settled</span>.')
    if not verdicts:
        text = "No chapter of this build recorded a verdict."
    if reps and reps[0] < 2:
        text += " One replicate cannot show anything: set <code>replicates</code> to 3 or more."
    if missing:
        text += (" No answers from " + ", ".join(html.escape(m) for m in missing)
                 + " (no complete run: see the chapters below).")
    return f'<p class="hamviz-lead">{text}</p>'


def training_cell(train: dict) -> str:
    """What training the chapter's models took (every model it uses, trained now or loaded), and how many the
    last run trained (in its tooltip: what that took)."""
    if not train.get("models"):
        return ""
    now, models = train.get("trained_now", 0), train["models"]
    spent = f' ({duration(train["seconds_now"])})' if now and train.get("seconds_now") is not None else ""
    detail = (f"{models} models: all trained in this run" if now >= models else
              f"{models} models: all cached" if not now else
              f"{models} models: {now} trained in this run{spent}")
    return (f'<span class="t">training {duration(train.get("seconds"))}</span>'
            f'<span class="muted t">{detail}</span>')


def chapter_row(c: dict, links: dict) -> str:
    """One row of the chapters table: number, title (link; a failed run's link and its note), status and times in
    one narrow cell, key numbers in a wide one."""
    href, failed_href = links.get(c["stem"], (None, None))
    title = html.escape(c["title"])
    cell = f'<a href="{href}">{title}</a>' if href else title
    if failed_href:
        cell += f'<br><a class="muted" href="{failed_href}">failed run</a>'
        if href:
            cell += ' <span class="muted">(link above: previous complete run)</span>'
    if c.get("note"):
        cell += f'<br><span class="muted note">{html.escape((c.get("note") or "")[:600])}</span>'
    status = c["status"]
    run = "" if c.get("seconds") is None else f'<span class="run">run {duration(c["seconds"])}</span>'
    when = (f'<span class="status {_STATUS_CLASS.get(status, "")}">{html.escape(status)}</span>{run}'
            f'{training_cell(c.get("training") or {})}')
    kv = "".join(f'<li><b title="{html.escape(k)}">{html.escape(name)}</b>: {shown}</li>'
                 for k, name, shown in key_numbers(c.get("summary") or {}, c.get("values") or {}))
    return (f'<tr><td class="n">{html.escape(c["stem"][:2])}</td><td class="title">{cell}</td>'
            f'<td class="when">{when}</td><td class="keys"><ul class="kv">{kv}</ul></td></tr>')


def provenance_table(info: dict) -> str:
    """Who made these numbers, two facts a row: hamviz and its commit, the data and its fingerprint, the profile,
    the date, the CPU (model, cores, vector extensions: the same seed trains another model on another CPU type),
    Python and the platform, the libraries."""
    prov = info.get("provenance") or {}
    e = lambda v: html.escape(str(v))  # noqa: E731
    cpu = prov.get("cpu") or {}
    cpu_text = "not recorded (a book built before hamviz recorded it)"
    if cpu:
        cpu_text = (e(cpu.get("model")) + (f' <span class="muted">({e(cpu["id"])})</span>' if cpu.get("id") else "")
                    + f', {e(cpu.get("cores"))} cores; vector extensions: '
                    + (e(" ".join(cpu.get("vector_extensions") or [])) or "none found"))
    libs = ", ".join(f"{k} {v}" for k, v in (prov.get("libraries") or {}).items())
    pairs = [[("hamviz", f'{e(prov.get("hamviz"))}, commit <code>{e(prov.get("git_commit"))}</code>'),
              ("built", f'{e(prov.get("date"))}, in {duration(info.get("build_seconds")) or "?"}')],
             [("data", f'{e(info.get("data_dir"))}, fingerprint <code>{e(prov.get("data_fingerprint"))}</code>'),
              ("profile", f'{e(info.get("profile"))}: {e(prov.get("profile_file"))}')],
             [("CPU", cpu_text)],
             [("python", f'{e(prov.get("python"))}, {e(prov.get("platform"))}'), ("libraries", e(libs))]]
    span = ' colspan="3"'
    rows = "".join("<tr>" + "".join(f"<th>{k}</th><td{span if len(r) == 1 else ''}>{v}</td>" for k, v in r) + "</tr>"
                   for r in pairs)
    return f'<table class="hamviz-provenance"><tbody>{rows}</tbody></table>'


TIMES_NOTE = ("Run: the complete run the chapter's page shows. Training: what training every model it uses took, "
              "trained in that run or loaded from the cache (where another chapter may have trained it).")


def front_page(info: dict, links: dict, params_yaml: str = "") -> str:
    """The front page's body (MyST markdown: headings and HTML blocks without blank lines inside): the findings
    (:func:`findings_table`, the book's headline figure), the chapters, the provenance and the profile's
    parameters, folded. ``info``: book.json's content (each chapter's ``verdicts`` from its record);
    ``links``: stem -> (chapter href or None, failed-run href or None)."""
    chapters = info.get("chapters") or []
    groups = [(chapter_number(c["stem"], i), c["title"], links.get(c["stem"], (None, None))[0], c.get("verdicts"))
              for i, c in enumerate(chapters, 1)]
    figure = findings_table(groups, '<span class="caption-number">Figure 1</span>. Every question the chapters '
                                    'ask, and its answer. ' + FOREST_NOTE)
    rows = "".join(chapter_row(c, links) for c in chapters)
    prov = info.get("provenance") or {}
    yaml_text = html.escape(params_yaml.strip() or "(none)").replace("\n\n", "\n")
    return f"""<div class="hamviz-front"><p class="muted">HAM10000 analysis, profile \
<b>{html.escape(str(info.get('profile')))}</b>
({html.escape(str(info.get('description') or ''))}); built {html.escape(str(prov.get('date')))}.</p></div>

## Findings

{findings_lead(chapters)}

{figure}

## Chapters

<table class="hamviz-chapters"><thead><tr><th>#</th><th>chapter</th><th>status, times</th><th>key numbers</th>\
</tr></thead><tbody>{rows}</tbody></table>

<p class="muted">{TIMES_NOTE}</p>

## Provenance

{provenance_table(info)}

<details class="hamviz-params-all"><summary>\
The profile's parameters ({len(params_yaml.splitlines())} lines of YAML)</summary>

<pre class="hamviz-params-yaml">{yaml_text}</pre>

</details>"""
