"""Why TensorFlow's model steps are slower on one 2-core machine than on another: the same small-CNN training
step under the settings that could explain it (oneDNN on/off, the instruction set oneDNN may use, intra/inter-op
threads, batch size, bfloat16 mixed precision, XLA compilation), plus raw float32 matmul throughput in TensorFlow and
NumPy to separate the arithmetic from the framework.

Each setting runs in a fresh process (environment variables such as ``TF_ENABLE_ONEDNN_OPTS`` and
``ONEDNN_MAX_CPU_ISA`` are read when TensorFlow loads). In the child: build and compile the model at the given
size (Adam) -- ``small_cnn``, or the ``cpu`` profile's main model, the pretrained EfficientNet-Lite0 preset
(``$HAMVIZ_WEIGHTS``) with its last 60 layers trainable --, a few warm-up ``train_on_batch`` steps on a fixed
random batch, then timed steps until a minimum count and time are reached; images per second = batch x steps /
seconds (optionally under Keras' ``mixed_bfloat16`` policy, which the Intel Xeon's AMX units could run, or with
``jit_compile=True``); then the same for ``predict_on_batch`` (inference). The child also reports which instruction set
oneDNN detected (``ONEDNN_VERBOSE=1`` prints it once).

Run: ``.venv/bin/python benchmarks/cpu_gap.py [--quick] [--out FILE]``; prints a table and writes
``benchmarks/cpu_gap.json`` (or FILE).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, time
import numpy as np
intra, inter, size, batch, min_steps, min_s = (int(a) if a.isdigit() else float(a) for a in sys.argv[1:7])
model_name, policy, jit = sys.argv[7], sys.argv[8], sys.argv[9] == "1"
import tensorflow as tf
if intra: tf.config.threading.set_intra_op_parallelism_threads(intra)
if inter: tf.config.threading.set_inter_op_parallelism_threads(inter)
from hamviz.models import build_model, keras
if policy != "float32":
    keras.mixed_precision.set_global_policy(policy)
out = {}
try:  # whether TensorFlow's oneDNN graph rewrites are on in this process (TF decides from the CPU unless told)
    from tensorflow.python.util import _pywrap_util_port
    out["onednn_enabled"] = bool(_pywrap_util_port.IsMklEnabled())
except Exception:
    out["onednn_enabled"] = None
a = tf.random.uniform((1024, 1024)); b = tf.random.uniform((1024, 1024))
tf.linalg.matmul(a, b).numpy()
t = time.perf_counter(); n = 0
while n < 5 or time.perf_counter() - t < 1.0:
    tf.linalg.matmul(a, b).numpy(); n += 1
out["tf_matmul_gflops"] = 2 * 1024 ** 3 * n / (time.perf_counter() - t) / 1e9
x = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
x @ x
t = time.perf_counter(); n = 0
while n < 5 or time.perf_counter() - t < 1.0:
    x @ x; n += 1
out["numpy_matmul_gflops"] = 2 * 1024 ** 3 * n / (time.perf_counter() - t) / 1e9
keras.utils.set_random_seed(0)
if model_name == "small_cnn":
    m = build_model("small_cnn", (size, size, 3), 7)
else:  # the main model as the cpu profile fine-tunes it: pretrained preset, last 60 layers, simple head
    m = build_model(model_name, (size, size, 3), 7, weights="imagenet", trainable=60, head="simple", dropout=0.2)
m.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=jit)
xb = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype("float32")
yb = np.eye(7, dtype="float32")[np.arange(batch) % 7]
for _ in range(3):
    m.train_on_batch(xb, yb)
t = time.perf_counter(); n = 0
while n < min_steps or time.perf_counter() - t < min_s:
    m.train_on_batch(xb, yb); n += 1
out["images_per_s"] = batch * n / (time.perf_counter() - t)
out["steps"] = n
t = time.perf_counter(); n = 0
m.predict_on_batch(xb)
while n < min_steps or time.perf_counter() - t < min_s / 2:
    m.predict_on_batch(xb); n += 1
out["predict_images_per_s"] = batch * n / (time.perf_counter() - t)
print("RESULT " + json.dumps(out), flush=True)
"""

SETTINGS = [
    # name, extra environment, intra, inter, size, batch[, model[, Keras dtype policy[, XLA]]]
    ("default (hamviz: oneDNN on unless TF_ENABLE_ONEDNN_OPTS is set)", {}, 0, 0, 64, 32),
    ("oneDNN on (TF_ENABLE_ONEDNN_OPTS=1)", {"TF_ENABLE_ONEDNN_OPTS": "1"}, 0, 0, 64, 32),
    ("oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)", {"TF_ENABLE_ONEDNN_OPTS": "0"}, 0, 0, 64, 32),
    ("oneDNN limited to AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, 0, 0, 64, 32),
    ("oneDNN limited to AVX-512 core", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, 0, 0, 64, 32),
    ("intra-op 1, inter-op 1", {}, 1, 1, 64, 32),
    ("intra-op 2, inter-op 1", {}, 2, 1, 64, 32),
    ("intra-op 2, inter-op 2", {}, 2, 2, 64, 32),
    ("batch 128", {}, 0, 0, 64, 128),
    ("batch 128, oneDNN on", {"TF_ENABLE_ONEDNN_OPTS": "1"}, 0, 0, 64, 128),
    ("128x128, batch 32", {}, 0, 0, 128, 32),
    ("128x128, batch 32, oneDNN on", {"TF_ENABLE_ONEDNN_OPTS": "1"}, 0, 0, 128, 32),
    # the cpu profile's main model: EfficientNet-Lite0 (depthwise convolutions) fine-tuned at 160x160
    ("EfficientNet-Lite0 160, batch 32", {}, 0, 0, 160, 32, "efficientnet_lite0"),
    ("EfficientNet-Lite0 160, batch 32, oneDNN on", {"TF_ENABLE_ONEDNN_OPTS": "1"}, 0, 0, 160, 32,
     "efficientnet_lite0"),
    ("EfficientNet-Lite0 160, batch 32, oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}, 0, 0, 160, 32,
     "efficientnet_lite0"),
    # at the profile's 192x192 (since 2026-12-03): float32, bfloat16 mixed precision, XLA
    ("EfficientNet-Lite0 192, batch 32", {}, 0, 0, 192, 32, "efficientnet_lite0"),
    ("EfficientNet-Lite0 192, batch 32, mixed_bfloat16", {}, 0, 0, 192, 32, "efficientnet_lite0", "mixed_bfloat16"),
    ("EfficientNet-Lite0 192, batch 32, XLA", {}, 0, 0, 192, 32, "efficientnet_lite0", "float32", True),
    ("small CNN 64, mixed_bfloat16", {}, 0, 0, 64, 32, "small_cnn", "mixed_bfloat16"),
    ("small CNN 64, XLA", {}, 0, 0, 64, 32, "small_cnn", "float32", True),
]


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpu).group(1)
        flags = set(re.search(r"flags\s*:\s*(.*)", cpu).group(1).split())
        info["avx512f_flag"] = "avx512f" in flags
        info["avx2_flag"] = "avx2" in flags
        info["cores"] = os.cpu_count()
    except (OSError, AttributeError):
        pass
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "TF_ENABLE_ONEDNN_OPTS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def run(name, env, intra, inter, size, batch, model="small_cnn", policy="float32", jit=False, *, quick) -> dict:
    steps, secs = (3, 2.0) if quick else (10, 8.0)
    full_env = {**os.environ, **env, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(intra), str(inter), str(size), str(batch), str(steps),
                           str(secs), model, policy, "1" if jit else "0"], env=full_env, text=True, capture_output=True,
                          timeout=900)
    text = proc.stdout + proc.stderr
    row = {"setting": name, "model": model, "size": size, "batch": batch, "policy": policy, "xla": jit}
    found = re.search(r"RESULT (\{.*\})", text)
    if found:
        row.update(json.loads(found.group(1)))
    else:
        row["error"] = text[-500:]
    isa = re.search(r"onednn_verbose,[^\n]*info,cpu,isa:([^\n]*)", text)
    row["onednn_isa"] = isa.group(1).strip() if isa else ("oneDNN not used" if "onednn_verbose" not in text else "?")
    row["avx512_notice"] = "only on platforms with AVX-512" in text
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).with_name("cpu_gap.json")))
    args = ap.parse_args(argv)
    info = machine()
    print(f"machine: {info.get('cpu')} ({info.get('cores')} cores), AVX-512 flag: {info.get('avx512f_flag')}")
    rows = []
    for setting in SETTINGS:
        t = time.time()
        row = run(*setting, quick=args.quick)
        rows.append(row)
        print(f"{row['setting']:<44} train {row.get('images_per_s', float('nan')):7.1f} img/s  "
              f"predict {row.get('predict_images_per_s', float('nan')):7.1f} img/s  "
              f"TF matmul {row.get('tf_matmul_gflops', float('nan')):6.1f} GFLOP/s  "
              f"NumPy matmul {row.get('numpy_matmul_gflops', float('nan')):6.1f} GFLOP/s  "
              f"oneDNN on: {row.get('onednn_enabled')}  ISA: {row['onednn_isa'][:40]}  ({time.time() - t:.0f} s)",
              flush=True)
    Path(args.out).write_text(json.dumps({"machine": info, "rows": rows,
                                          "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
