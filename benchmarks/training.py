"""Training speed and peak memory per model and input size the profiles use.

Each (model, size) runs in a fresh Python process (``sys.executable -c``), so its peak RSS is its own and not
the high-water mark of an earlier model. Peak RSS is the child's VmHWM from /proc/self/status (Linux), with
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` recorded beside it (and used where /proc is missing): on Linux
ru_maxrss is carried across exec, so a child of a large runner process would report the runner's peak.
In the child: import TensorFlow and hamviz (RSS recorded), build and compile the model (Adam), then
``train_on_batch`` on a fixed random uint8 batch of 32 (cast to float32, as the pipelines feed it): a few
warm-up steps (graph tracing), then timed steps until both a minimum count and a minimum time are reached.

Models: small_cnn at 32 and 64 (cpu / tiny classifier), the hypervector chapter's hd_cnn (dim 500) at 32,
the compression chapter's autoencoder 3x at 64 (filters 32, 64); without --quick also small_cnn at 128 and
mobilenetv2, resnet50, inceptionv3, densenet201 (weights=None, every layer trainable) at 128 (the paper
profile's size; inceptionv3 needs at least 75).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

try:
    from . import common
except ImportError:  # run as a script from benchmarks/
    import common

BATCH = 32

QUICK_CASES = [
    ("small_cnn", 32), ("small_cnn", 64), ("hd_cnn", 32), ("autoencoder_3x", 64),
]
FULL_CASES = QUICK_CASES + [
    ("small_cnn", 128), ("mobilenetv2", 128), ("resnet50", 128), ("inceptionv3", 128), ("densenet201", 128),
]


def _settings(quick: bool) -> dict:
    if quick:
        return {"warmup": 1, "min_steps": 3, "min_seconds": 1.0, "timeout_s": 300}
    return {"warmup": 3, "min_steps": 10, "min_seconds": 10.0, "timeout_s": 1800}


def _proc_status_mb(key: str) -> float | None:
    """VmRSS (now) or VmHWM (peak) of this process from /proc (Linux), in MB."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _vm_rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """This process's peak RSS. On Linux ``ru_maxrss`` survives ``exec``: a child started by a big parent
    reports the parent's high-water mark if it never exceeds it (seen: every model at the runner's 1,280 MB).
    VmHWM belongs to the process's own address space (reset by exec), so it is used where it exists."""
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else common.peak_rss_mb()


def child(spec_json: str) -> None:
    """Runs in the fresh process: measure one model, print one JSON line."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    spec = json.loads(spec_json)
    name, size, batch = spec["model"], spec["size"], spec.get("batch", BATCH)
    t0 = time.perf_counter()
    import numpy as np

    from hamviz.hypervector import hd_cnn
    from hamviz.models import autoencoder, build_model, keras
    res = {"model": name, "size": size, "import_s": round(time.perf_counter() - t0, 2),
           "rss_after_import_mb": _vm_rss_mb(), "peak_rss_after_import_mb": _peak_rss_mb()}
    shape = (size, size, 3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, *shape), dtype=np.uint8).astype(np.float32)
    t = time.perf_counter()
    if name == "hd_cnn":
        model = hd_cnn(shape, dim=500)
        y = np.where(rng.random((batch, 500)) < 0.5, -1.0, 1.0).astype(np.float32)
        loss = "mse"
    elif name.startswith("autoencoder_"):
        ratio = float(name.split("_")[1].rstrip("x"))
        model = autoencoder(shape, ratio=ratio, filters=(32, 64))
        y, loss = x, "mse"
    else:
        name, _, head = name.partition(":")  # "vgg19:own_top": the backbone with its own fully connected top
        kw = {} if name == "small_cnn" else {"weights": None, "trainable": "all", **({"head": head} if head else {})}
        model = build_model(name, shape, 7, **kw)
        y = np.eye(7, dtype=np.float32)[np.arange(batch) % 7]
        loss = "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    res["build_s"] = round(time.perf_counter() - t, 2)
    res["params"] = int(model.count_params())
    t = time.perf_counter()
    model.train_on_batch(x, y)
    res["first_step_s"] = round(time.perf_counter() - t, 2)
    for _ in range(spec["warmup"] - 1):
        model.train_on_batch(x, y)
    steps, t = 0, time.perf_counter()
    while steps < spec["min_steps"] or time.perf_counter() - t < spec["min_seconds"]:
        model.train_on_batch(x, y)
        steps += 1
    elapsed = time.perf_counter() - t
    res.update(steps=steps, ms_per_step=round(1000 * elapsed / steps, 1),
               images_per_s=round(steps * BATCH / elapsed, 1), peak_rss_mb=_peak_rss_mb(),
               ru_maxrss_mb=common.peak_rss_mb(), rss_end_mb=_vm_rss_mb())
    print(json.dumps(res), flush=True)


def _run_child(name: str, size: int, s: dict) -> dict:
    spec = json.dumps({"model": name, "size": size, **s})
    code = (f"import sys; sys.path.insert(0, {str(common.REPO)!r}); "
            f"from benchmarks.training import child; child({spec!r})")
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=s["timeout_s"], cwd=common.REPO)
    except subprocess.TimeoutExpired:
        return {"model": name, "size": size, "error": f"timed out after {s['timeout_s']} s"}
    wall = round(time.perf_counter() - t, 1)
    lines = proc.stdout.strip().splitlines()
    try:
        res = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"model": name, "size": size, "error": f"exit {proc.returncode}: {proc.stderr[-1500:]}",
                "process_wall_s": wall}
    res["process_wall_s"] = wall
    return res


def run(quick: bool = False) -> dict:
    s = _settings(quick)
    cases = QUICK_CASES if quick else FULL_CASES
    results = []
    for name, size in cases:
        r = _run_child(name, size, s)
        results.append(r)
        print(f"  {name}@{size}: " + (r.get("error") or f"{r['images_per_s']} images/s, "
                                      f"peak RSS {r['peak_rss_mb']} MB"), flush=True)
    base = next((r for r in results if r["model"] == "small_cnn" and r["size"] == 64 and "error" not in r),
                None)
    if base:  # relative to the cpu profile's main model, measured in the same run
        for r in results:
            if "error" not in r:
                r["speed_vs_small_cnn_64"] = round(r["images_per_s"] / base["images_per_s"], 3)
    return {"settings": {**s, "batch_size": BATCH, "optimizer": "adam",
                         "isolation": "one fresh subprocess per model (sys.executable -c)"},
            "models": results}


def table(result: dict) -> str:
    rows = []
    for r in result["models"]:
        if "error" in r:
            rows.append((r["model"], r["size"], None, None, None, None, None, None, r["error"][:80]))
            continue
        rows.append((r["model"], r["size"], r["params"], r["images_per_s"], r["ms_per_step"],
                     r.get("speed_vs_small_cnn_64"), r["rss_after_import_mb"], r["peak_rss_mb"],
                     f"{r['steps']} steps; build {r['build_s']} s; 1st step {r['first_step_s']} s"))
    s = result["settings"]
    notes = [f"train_on_batch, batch {s['batch_size']}, Adam; {s['warmup']} warm-up step(s), then at least "
             f"{s['min_steps']} steps and {s['min_seconds']} s; {s['isolation']}",
             "RSS after import = TensorFlow + hamviz loaded, before the model; peak = the child's VmHWM"]
    return common.render(("model", "size", "params", "images/s", "ms/step", "x small_cnn@64",
                          "RSS after import MB", "peak RSS MB", "note"), rows,
                         title="training: train_on_batch speed and peak memory", notes=notes)
