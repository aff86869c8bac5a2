"""The book's summary and pages from what its output folder holds now (:func:`write_index`): ``book.json`` (every
chapter's status, times, key numbers, verdicts and the provenance) and the rendered pages (:mod:`.render`)."""
from __future__ import annotations

import html
import threading

import yaml

from ..record import provenance
from .frontpage import duration
from .render import Page, render_book
from .spec import Book, chapter_state, read_json, write_json

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
    index and every chapter page (:func:`hamviz.book.render.render_book`). Returns book.json's content. Raises
    :class:`hamviz.book.pages.RenderError` when the pages cannot be rendered (book.json is written first)."""
    entries, pages, links = [], [], {}
    for n, s in enumerate(book.chapters, 1):
        st = chapter_state(book, s)
        done, failed = st["done"], st["failed"]
        status, note = _status(st)
        record = read_json(book.out / "chapters" / s.stem / f"{s.stem}.json") if done else None
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
            partial = read_json(book.out / "failed" / s.stem / f"{s.stem}.json")
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
    write_json(book.out / "book.json", info)
    if render:
        with _RENDER_LOCK:  # one Sphinx at a time on one book
            render_book(book.out, info, pages, links, params_yaml)
    return info

