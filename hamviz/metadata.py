"""The patients' metadata as model inputs: what age, sex and body site add to the image features.

:func:`metadata_matrix` one-hot encodes HAM10000's ``age`` (its 5-year values, each a category), ``sex`` and
``localization`` (body site), a missing value ("unknown", empty or absent) being a category of its own. The
classifier chapter concatenates it with the frozen backbone's pooled features and trains the same head on both
(:func:`hamviz.training.train_frozen_head` with ``extra``), against the head on image features alone: hamviz's
addition (none of the four reference works feeds the metadata to a model). The caveat that site and age are
associated with the diagnosis in HAM10000 is the chapter's to state, with the EDA's tables.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

#: metadata column -> the prefix of its one-hot columns
ATTRIBUTES = {"age": "age", "sex": "sex", "localization": "site"}
MISSING = "missing"


def _category(values: pd.Series, column: str) -> pd.Series:
    """A column's values as category names: ages as whole years ("45"), text stripped and lower-cased, missing
    values (NaN, "", "unknown") as :data:`MISSING`."""
    if column == "age":
        num = pd.to_numeric(values, errors="coerce")
        return num.map(lambda a: MISSING if pd.isna(a) else str(int(round(a))))
    text = values.astype("string").str.strip().str.lower().fillna(MISSING)
    return text.where(~text.isin(["", "unknown", "nan"]), MISSING).astype(object)


def metadata_matrix(meta: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """One-hot metadata of every row of ``meta`` (a HAM10000 metadata table with ``age``, ``sex`` and
    ``localization``): float32 (N, K), exactly one 1 per attribute and row, with its K column names
    ("age=45", "sex=male", "site=back", "sex=missing", ...). The categories are those of the rows given (no labels
    are read), sorted within each attribute, missing last. Raises ValueError naming absent columns."""
    absent = [c for c in ATTRIBUTES if c not in meta.columns]
    if absent:
        raise ValueError(f"the metadata has no {', '.join(absent)} column(s): a metadata head needs age, sex and "
                         f"localization (HAM10000's metadata CSV has them)")
    blocks, names = [], []
    for column, prefix in ATTRIBUTES.items():
        cats = _category(meta[column].reset_index(drop=True), column)
        order = sorted(set(cats) - {MISSING}, key=lambda c: (int(c),) if column == "age" else (0, c)) \
            + ([MISSING] if MISSING in set(cats) else [])
        index = {c: i for i, c in enumerate(order)}
        block = np.zeros((len(cats), len(order)), dtype=np.float32)
        block[np.arange(len(cats)), cats.map(index).to_numpy(dtype=np.int64)] = 1.0
        blocks.append(block)
        names += [f"{prefix}={c}" for c in order]
    return np.hstack(blocks), names


def matrix_digest(matrix: np.ndarray, names) -> str:
    """A short digest of an input matrix and its column names: part of the key of a model trained on it."""
    h = hashlib.sha256(np.ascontiguousarray(matrix, dtype=np.float32).tobytes())
    h.update("|".join(names).encode())
    return h.hexdigest()[:16]
