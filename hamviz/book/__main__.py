"""The chapter process the book starts (:func:`hamviz.book.scheduler.run_in_child`): run one chapter, print its
result as JSON."""
import json
import sys
from pathlib import Path

from .child import bind_to_parent, run_chapter

if __name__ == "__main__":
    nb, prof, data, outdir, chapter_key = sys.argv[1:6]
    if len(sys.argv) > 6:
        bind_to_parent(int(sys.argv[6]))
    res = run_chapter(Path(nb), Path(prof), data or None, Path(outdir), chapter_key)
    print(json.dumps(res))
