"""The book's chapters: one module per notebook, named exactly as the notebook and its profile section
(``01_eda.ipynb`` -> :mod:`hamviz.chapters.eda` -> ``chapters: eda:``). Every chapter starts with
:func:`start`; the modules hold the chapter's steps as functions so the notebook cells stay short.
"""
from .base import Chapter, start  # noqa: F401
