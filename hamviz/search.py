"""A recorded random search over settings (the reference's search over small CNNs and optimisers, Bunu et al.):
every trial kept, failed ones with their error, sorted by a score.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import pandas as pd
from sklearn.model_selection import ParameterSampler

from .config import HamvizError

#: the default random-search space (every value list is sampled uniformly)
SEARCH_SPACE = {
    "conv_blocks": [1, 2, 3],
    "filters": [16, 32, 64],
    "kernel": [3, 5],
    "dense_layers": [1, 2],
    "dense_units": [64, 128, 256],
    "dropout": [0.2, 0.3, 0.5],
    "pooling": ["max", "avg"],
    "init": ["glorot_uniform", "he_normal"],
    "optimizer": ["adam", "nadam", "sgd", "rmsprop"],
    "learning_rate": [1e-3, 3e-4],
}


def random_search(train_fn: Callable[[dict], Mapping[str, float]], space: Mapping = SEARCH_SPACE,
                  n_trials: int = 8, seed: int = 0, sort_by: str | None = None) -> pd.DataFrame:
    """Random search: ``n_trials`` settings drawn by scikit-learn ``ParameterSampler(space, n_trials,
    random_state=seed)`` (same seed, same trials), each passed to ``train_fn(params) -> {score: value}``.

    Every trial is recorded, one row each: ``trial`` (draw order), one column per key of ``space``, the
    scores, ``seconds`` and ``error``. A trial whose ``train_fn`` raises a HamvizError (e.g. ModelError:
    input too small for the drawn blocks) or ValueError is recorded with ``error`` = "Type: message" and
    NaN scores, and the search goes on; other exceptions (bugs) propagate.

    The table is sorted by ``sort_by`` -- default the FIRST key of the first score dict returned, so put
    the score to maximise first -- descending, failed trials last, ties in draw order.
    """
    if int(n_trials) < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    draws = list(ParameterSampler(dict(space), n_iter=int(n_trials), random_state=seed))
    rows, score_keys = [], []
    for i, params in enumerate(draws):
        params = {k: params[k] for k in space}  # the space's key order
        t0 = time.perf_counter()
        error = None
        try:
            scores = train_fn(dict(params))
        except (HamvizError, ValueError) as exc:
            scores, error = {}, f"{type(exc).__name__}: {exc}"
        if not isinstance(scores, Mapping):
            raise TypeError(f"train_fn must return a dict of scores, got {type(scores).__name__}")
        for k in scores:
            if k not in score_keys:
                score_keys.append(k)
        clash = set(scores) & (set(space) | {"trial", "seconds", "error"})
        if clash:
            raise ValueError(f"train_fn returned score names that clash with columns: {sorted(clash)}")
        rows.append({"trial": i, **params, **{k: float(v) for k, v in scores.items()},
                     "seconds": time.perf_counter() - t0, "error": error})
    table = pd.DataFrame(rows, columns=["trial", *space, *score_keys, "seconds", "error"])
    key = sort_by or (score_keys[0] if score_keys else None)
    if key is not None:
        if key not in table.columns:
            raise ValueError(f"sort_by {key!r} is not a score; scores are {score_keys}")
        table = table.sort_values(key, ascending=False, na_position="last", kind="mergesort")
    table = table.reset_index(drop=True)
    table.attrs.update(sort_by=key, seed=seed, n_trials=int(n_trials))
    return table
