"""Building the parallel JPEG test sets: qualities (95, 50, 20, 10, 5, 3, 1) on the test part at 64x64.

The test part is the cpu profile's: the grouped 70/20/10 split with seed 42 (1,001 images; ``--quick``: its
first 200). Its images are decoded at 64x64 into an empty temporary cache first (not timed here; see the
pipeline benchmark for decoding rates), so nothing under $HAMVIZ_CACHE is read or written.

1. ``hamviz.codecs.jpeg_batch`` per quality with jobs=1 and jobs=os.cpu_count(), alternating, in rounds:
   images/s of each and the speed-up (median of the per-round ratios).
2. ``hamviz.cache.jpeg_test_sets`` cold (an empty temporary cache_root: encodes every quality and writes
   the arrays) and warm (the same call again: reads and, by default, verifies the checksums; also timed with
   verify=False, which only memory-maps the arrays).
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

try:
    from . import common
except ImportError:  # run as a script from benchmarks/
    import common

QUALITIES = (95, 50, 20, 10, 5, 3, 1)
SIZE = 64
SEED = 42  # the cpu profile's seed: its split's test part


def _settings(quick: bool) -> dict:
    return {"n_images": 200 if quick else None, "rounds": 1 if quick else 3}


def run(quick: bool = False) -> dict:
    s = _settings(quick)
    from hamviz import load_ham10000
    from hamviz.cache import build_cache, jpeg_test_sets
    from hamviz.codecs import jpeg_batch
    from hamviz.splits import make_split

    ds = load_ham10000(common.data_dir(), masks=False)
    split = make_split(ds.meta, (0.7, 0.2, 0.1), seed=SEED)
    test_ids = ds.meta["image_id"][(split.reindex(ds.meta["image_id"]) == "test").to_numpy()].tolist()
    n_test = len(test_ids)
    if s["n_images"]:
        test_ids = test_ids[: s["n_images"]]
    threads = os.cpu_count() or 1
    out = {"settings": {**s, "qualities": list(QUALITIES), "size": SIZE, "split_seed": SEED,
                        "test_part_images": n_test, "images": len(test_ids), "threads": threads}}
    with tempfile.TemporaryDirectory(prefix="hamviz-bench-jpeg-") as tmp:
        sub = ds.subset(test_ids)
        cache = build_cache(sub, SIZE, cache_root=os.path.join(tmp, "images"), masks=False)
        rows = cache.rows(test_ids)
        images = np.ascontiguousarray(cache.images[rows])
        n = len(images)
        jpeg_batch(images[:16], 50, jobs=threads)  # warm-up (thread pool, libjpeg)

        per_q = {q: {"serial": [], "parallel": []} for q in QUALITIES}
        totals = {"serial": [], "parallel": []}
        for r in range(s["rounds"]):
            tot = {"serial": 0.0, "parallel": 0.0}
            order = (("serial", 1), ("parallel", threads)) if r % 2 == 0 else \
                (("parallel", threads), ("serial", 1))
            for q in QUALITIES:
                for kind, jobs in order:
                    t = time.perf_counter()
                    jpeg_batch(images, q, jobs=jobs)
                    dt = time.perf_counter() - t
                    per_q[q][kind].append(dt)
                    tot[kind] += dt
            for k in tot:
                totals[k].append(tot[k])
        out["per_quality"] = []
        for q in QUALITIES:
            ser, par = per_q[q]["serial"], per_q[q]["parallel"]
            out["per_quality"].append({
                "quality": q,
                "serial_images_per_s": round(n / common.median(ser), 1),
                "parallel_images_per_s": round(n / common.median(par), 1),
                "speedup": round(common.median([a / b for a, b in zip(ser, par)]), 2),
            })
        out["all_qualities"] = {
            "serial_s": round(common.median(totals["serial"]), 3),
            "parallel_s": round(common.median(totals["parallel"]), 3),
            "speedup": round(common.median([a / b for a, b in zip(totals["serial"], totals["parallel"])]), 2),
            "encodes": n * len(QUALITIES),
        }

        root = os.path.join(tmp, "sets")  # empty: the first call is cold
        t = time.perf_counter()
        cold = jpeg_test_sets(cache, rows, QUALITIES, cache_root=root)
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        warm = jpeg_test_sets(cache, rows, QUALITIES, cache_root=root)
        warm_s = time.perf_counter() - t
        t = time.perf_counter()
        warm_nv = jpeg_test_sets(cache, rows, QUALITIES, cache_root=root, verify=False)
        warm_nv_s = time.perf_counter() - t
        assert cold.built and not warm.built and not warm_nv.built
        nbytes = sum(a.nbytes for a in warm.images.values())
        out["jpeg_test_sets"] = {
            "cold_s": round(cold_s, 3), "warm_s": round(warm_s, 4), "warm_no_verify_s": round(warm_nv_s, 4),
            "cold_over_warm": round(cold_s / warm_s, 1), "stored_mb": round(nbytes / 2 ** 20, 1),
            "bpp": {q: round(v, 3) for q, v in cold.bpp.items()},
        }
    return out


def table(result: dict) -> str:
    s = result["settings"]
    rows = [(r["quality"], r["serial_images_per_s"], r["parallel_images_per_s"], r["speedup"])
            for r in result["per_quality"]]
    a = result["all_qualities"]
    rows.append(("all 7", round(a["encodes"] / a["serial_s"], 1), round(a["encodes"] / a["parallel_s"], 1),
                 a["speedup"]))
    j = result["jpeg_test_sets"]
    notes = [
        f"{s['images']} images of the test part ({s['test_part_images']} with split seed {s['split_seed']}) at "
        f"{s['size']}x{s['size']}; images/s = encode + decode round trips; median of {s['rounds']} round(s), "
        f"jobs=1 and jobs={s['threads']} alternating",
        f"all qualities: {a['serial_s']} s on 1 thread, {a['parallel_s']} s on {s['threads']}",
        f"jpeg_test_sets: cold {j['cold_s']} s (empty temporary cache_root), warm {j['warm_s']} s "
        f"(checksums verified), {j['warm_no_verify_s']} s with verify=False; {j['stored_mb']} MB stored",
    ]
    return common.render(("quality", "jobs=1 images/s", f"jobs={s['threads']} images/s", "speed-up"), rows,
                         title="jpeg_sweep: parallel JPEG test sets", notes=notes)
