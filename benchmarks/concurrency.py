"""Two trainings sharing the cores, as the book's ``jobs: 2`` runs chapters: tf.data autotuning on vs off.

Each training runs in a fresh Python process: ``small_cnn`` at 64x64 (the explain chapter's binary members),
``keras.Model.fit`` for 2 epochs of 2,000 images (batch 32) on :func:`hamviz.pipeline.make_dataset` with the
chapters' augmentation (quarter turns, flips, zoom and shift 0.1), validated on 2,000 images, on fixed random uint8
images (the pipeline's cost does not depend on what the pixels show). Settings:

- ``hamviz``: the pipeline as hamviz builds it (:func:`hamviz.pipeline.pipeline_options`: autotuning off, prefetch 2);
- ``autotune``: the same dataset with tf.data's default, autotuning on (``options.autotune.enabled = True`` applied
  on top; the child checks that the dataset's options say so).

For each setting: one training alone, then two started together (a pair); the figure is each process's ``fit``
seconds and the pair's wall seconds. Rounds alternate the settings; the table reports the median over rounds.
``slowdown`` = a paired training's fit time over the same setting's alone time (2.0: the two cores are shared
perfectly, more: something beside the arithmetic competes).

Run: ``.venv/bin/python benchmarks/concurrency.py [--rounds N] [--out FILE]``; prints a table and writes
``benchmarks/concurrency.json`` (or FILE).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a script from benchmarks/
    import common

CHILD = r"""
import json, sys, time
import numpy as np
setting, seed = sys.argv[1], int(sys.argv[2])
import tensorflow as tf
from hamviz.models import build_model, keras
from hamviz.pipeline import make_dataset
rng = np.random.default_rng(seed)
x = rng.integers(0, 256, (4000, 64, 64, 3), dtype=np.uint8)
y = rng.integers(0, 2, 4000)
aug = {"rot90": True, "flip": True, "zoom": 0.1, "shift": 0.1}
train = make_dataset(x[:2000], y[:2000], batch_size=32, shuffle=True, augment=aug, n_classes=2, seed=seed,
                     repeat=True)
val = make_dataset(x[2000:], y[2000:], batch_size=128, n_classes=2)
if setting == "autotune":
    on = tf.data.Options(); on.autotune.enabled = True
    train, val = train.with_options(on), val.with_options(on)
autotuned = bool(train.options().autotune.enabled)
keras.utils.set_random_seed(seed)
m = build_model("small_cnn", (64, 64, 3), 2)
m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
t = time.perf_counter()
m.fit(train, validation_data=val, epochs=2, steps_per_epoch=63, verbose=0)
print("RESULT " + json.dumps({"fit_s": time.perf_counter() - t, "autotune": autotuned}), flush=True)
"""

SETTINGS = ("hamviz", "autotune")


def _start(setting: str, seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, setting, str(seed)], cwd=common.REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=1800)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"benchmark child failed:\n{out[-2000:]}")


def measure(setting: str, seed: int) -> dict:
    """One training alone, then two at once: their fit seconds and the pair's wall seconds."""
    alone = _result(_start(setting, seed))
    t = time.perf_counter()
    procs = [_start(setting, seed + 1), _start(setting, seed + 2)]
    pair = [_result(p) for p in procs]
    wall = time.perf_counter() - t
    if not all(r["autotune"] == (setting == "autotune") for r in [alone, *pair]):
        raise RuntimeError(f"setting {setting!r}: the datasets' autotune option is not what the setting asks")
    return {"alone_fit_s": alone["fit_s"], "pair_fit_s": [r["fit_s"] for r in pair], "pair_wall_s": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).with_name("concurrency.json")))
    args = ap.parse_args(argv)
    info = common.machine()
    print(f"machine: {info['cpu_model']} ({info['cpu_count']} cores), vector flags: {info['cpu_vector_flags']}")
    rounds = []
    for r in range(args.rounds):
        for setting in SETTINGS:
            row = {"round": r, "setting": setting, **measure(setting, 100 * r + 10)}
            rounds.append(row)
            print(f"round {r} {setting:<9} alone {row['alone_fit_s']:6.1f} s  pair "
                  f"{', '.join(f'{s:.1f}' for s in row['pair_fit_s'])} s (wall {row['pair_wall_s']:.1f} s)",
                  flush=True)
    summary = {}
    for setting in SETTINGS:
        rows = [r for r in rounds if r["setting"] == setting]
        alone = statistics.median(r["alone_fit_s"] for r in rows)
        pair = statistics.median(s for r in rows for s in r["pair_fit_s"])
        summary[setting] = {"alone_fit_s": alone, "pair_fit_s": pair, "slowdown": pair / alone,
                            "pair_wall_s": statistics.median(r["pair_wall_s"] for r in rows)}
    print(f"{'setting':<10}{'alone fit s':>13}{'paired fit s':>14}{'slowdown':>10}{'pair wall s':>13}")
    for setting, s in summary.items():
        print(f"{setting:<10}{s['alone_fit_s']:13.1f}{s['pair_fit_s']:14.1f}{s['slowdown']:10.2f}"
              f"{s['pair_wall_s']:13.1f}")
    Path(args.out).write_text(json.dumps({"machine": info, "date": time.strftime("%Y-%m-%d %H:%M"),
                                          "rounds": rounds, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
