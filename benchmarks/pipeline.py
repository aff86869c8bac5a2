"""Training-batch throughput at 128x128: hamviz's cached tf.data pipeline vs reading JPEGs every epoch.

Measured side by side in one process, in alternating rounds (the figure is the median over rounds):

(a) cached   hamviz.cache.build_cache(ds, 128) once, then hamviz.pipeline.make_dataset(cache.images[rows],
             labels, batch_size=32, shuffle=True, augment=True, n_classes=7, repeat=True): N batches after a
             warm-up. Augmentation: rot90, flips, zoom 0.1, shift 0.1 (Keras layers inside tf.data).
(b) reference-style  what the reference works did with Keras' ImageDataGenerator.flow_from_dataframe
             (decode every JPEG every epoch). ImageDataGenerator is not in Keras 3; when ``tf_keras`` is
             importable it is used as is, otherwise an honest equivalent runs: per batch, PIL decode + resize
             (nearest, Keras load_img's default) + numpy augmentation (random 90-degree rotation, flips), in
             this Python process, single-threaded. It does less augmentation than (a) (no zoom/shift, which
             ImageDataGenerator does with scipy affine transforms), so two controls run beside (a): the cached
             pipeline with rot90 + flips only (the same work as (b)) and with no augmentation (the cache
             alone); they separate what the cache buys from what the augmentation layers cost.
(c) decode   the raw decode-and-resize rate (hamviz.cache.decode: PIL full decode + bilinear resize) on one
             thread and on os.cpu_count() threads: the ceiling of any pipeline without a cache.
(d) model    small_cnn at 128x128, train_on_batch on a fixed batch of 32: if (a) is faster than (d), the
             input pipeline is not the bottleneck.
(e) end to end, at every input size the profiles train at (32, 64, 128): small_cnn ``fit`` on the cached
             pipeline with the chapters' augmentation vs without, alternating in rounds. On a 2-core machine
             the augmentation shares the cores with the training step even when prefetch overlaps them, so
             their ratio is what augmentation costs training; the pipeline alone at that size is beside it.

The JPEG files are read once before timing, so every figure is from the OS page cache (not the disk).
"""
from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    from . import common
except ImportError:  # run as a script from benchmarks/
    import common

SIZE = 128
BATCH = 32
N_CLASSES = 7


FIT_SIZES = (32, 64, 128)


def _settings(quick: bool) -> dict:
    if quick:
        return {"n_images": 160, "batches": 8, "warmup": 4, "rounds": 2, "model_steps": 3,
                "fit_images": {32: 64, 64: 64, 128: 64}}
    # images per timed fit: about 5-10 s each on 2 cores
    return {"n_images": 2048, "batches": 64, "warmup": 8, "rounds": 3, "model_steps": 12,
            "fit_images": {32: 2048, 64: 1024, 128: 512}}


def _tf_keras_generator():
    """Keras 2's ImageDataGenerator if ``tf_keras`` is installed (never installed by this script)."""
    try:
        import tf_keras  # noqa: F401
        from tf_keras.preprocessing.image import ImageDataGenerator
        return ImageDataGenerator
    except Exception:  # noqa: BLE001 - ImportError, or a tf_keras that does not match TF
        return None


def reference_batches(paths, labels, rng, *, size=SIZE, batch=BATCH):
    """Batches like flow_from_dataframe + ImageDataGenerator(rotation by 90, flips): decode every JPEG
    every time, resize, augment with numpy; one thread, float32 images in [0, 255], one-hot labels."""
    from PIL import Image
    n = len(paths)
    eye = np.eye(N_CLASSES, dtype=np.float32)
    order = rng.permutation(n)
    pos = 0
    while True:
        if pos + batch > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch]
        pos += batch
        x = np.empty((len(idx), size, size, 3), dtype=np.float32)
        for j, i in enumerate(idx):
            with Image.open(paths[i]) as img:
                a = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.NEAREST),
                               dtype=np.float32)
            a = np.rot90(a, rng.integers(4))
            if rng.random() < 0.5:
                a = a[:, ::-1]
            if rng.random() < 0.5:
                a = a[::-1]
            x[j] = a
        yield x, eye[labels[idx]]


def tf_keras_batches(meta, seed):
    ImageDataGenerator = _tf_keras_generator()
    gen = ImageDataGenerator(rotation_range=90, horizontal_flip=True, vertical_flip=True)
    df = meta.assign(filename=meta["path"], cls=meta["dx"])[["filename", "cls"]]
    return gen.flow_from_dataframe(df, x_col="filename", y_col="cls", target_size=(SIZE, SIZE),
                                   batch_size=BATCH, class_mode="categorical", shuffle=True, seed=seed)


def _rate(it, n_batches: int) -> float:
    t = time.perf_counter()
    n = 0
    for _ in range(n_batches):
        x = next(it)[0]
        n += int(x.shape[0])
    return n / (time.perf_counter() - t)


def _fresh_iterator(dataset, warmup: int):
    """An iterator over ``dataset`` that has delivered ``warmup`` batches (shuffle buffer filled, the
    pipeline running); timing the batches after it measures the steady state, not a full prefetch buffer."""
    it = iter(dataset)
    for _ in range(warmup):
        next(it)
    return it


def _decode_rate(paths, threads: int) -> float:
    from hamviz.cache import decode
    t = time.perf_counter()
    if threads == 1:
        for p in paths:
            decode(p, SIZE)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(lambda p: decode(p, SIZE), paths, chunksize=16):
                pass
    return len(paths) / (time.perf_counter() - t)


def end_to_end(sub, ids, labels, s: dict, cache_root: str) -> dict:
    """(e) small_cnn ``fit`` images/s with and without augmentation, and the augmented pipeline alone, per size."""
    from hamviz.cache import build_cache
    from hamviz.models import keras, small_cnn
    from hamviz.pipeline import make_dataset
    out = {}
    for size in FIT_SIZES:
        cache = build_cache(sub, size, cache_root=cache_root, masks=False)
        images = np.asarray(cache.images)[cache.rows(ids)]
        data = {k: make_dataset(images, labels, batch_size=BATCH, shuffle=True, augment=aug, n_classes=N_CLASSES,
                                repeat=True) for k, aug in (("aug", True), ("no_aug", None))}
        steps = max(2, s["fit_images"][size] // BATCH)
        model = small_cnn((size, size, 3), N_CLASSES)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
        for d in data.values():  # compile the train function and fill both pipelines
            model.fit(d, steps_per_epoch=2, epochs=1, verbose=0)
        rounds = []
        for _ in range(s["rounds"]):
            r = {}
            for k, d in data.items():
                t = time.perf_counter()
                model.fit(d, steps_per_epoch=steps, epochs=1, verbose=0)
                r[f"fit_{k}"] = steps * BATCH / (time.perf_counter() - t)
            r["pipeline_aug"] = _rate(_fresh_iterator(data["aug"], s["warmup"]), s["batches"])
            r["fit_aug_over_fit_no_aug"] = r["fit_aug"] / r["fit_no_aug"]
            rounds.append(r)
        med = {k: round(common.median([r[k] for r in rounds]), 2) for k in rounds[0]}
        med["pipeline_over_fit_no_aug"] = round(med["pipeline_aug"] / med["fit_no_aug"], 2)
        med["steps"] = steps
        out[str(size)] = med
    return out


def run(quick: bool = False) -> dict:
    common.quiet_tf()
    s = _settings(quick)
    from hamviz import load_ham10000
    from hamviz.cache import build_cache
    from hamviz.pipeline import augmentation, make_dataset

    ds = load_ham10000(common.data_dir(), masks=False)
    rng = np.random.default_rng(0)
    ids = ds.meta["image_id"].to_numpy()[np.sort(rng.choice(len(ds), s["n_images"], replace=False))]
    sub = ds.subset(ids)
    paths = sub.meta["path"].tolist()
    labels = sub.labels
    for p in paths:  # page cache: every variant below reads from memory, not the disk
        with open(p, "rb") as f:
            f.read()
    src_shape = None
    from PIL import Image
    with Image.open(paths[0]) as img:
        src_shape = list(img.size)

    threads = os.cpu_count() or 1
    out = {"settings": {**s, "size": SIZE, "batch_size": BATCH, "source_image_wxh": src_shape,
                        "decode_threads": threads}}
    tmp = tempfile.TemporaryDirectory(prefix="hamviz-bench-pipeline-")
    try:
        t = time.perf_counter()
        cache = build_cache(sub, SIZE, cache_root=tmp.name, masks=False)  # an empty temporary cache
        out["cache_build_s"] = round(time.perf_counter() - t, 3)
        out["cache_build_images_per_s"] = round(len(sub) / out["cache_build_s"], 1)
        rows = cache.rows(ids)
        images = np.asarray(cache.images)[rows]
        # (a) as the chapters use it, and two controls: the augmentation (b) does, and none at all
        variants = {"cached": True, "cached_rot90_flip": augmentation(zoom=0, shift=0),
                    "cached_no_aug": None}
        cached = {k: make_dataset(images, labels, batch_size=BATCH, shuffle=True, augment=aug,
                                  n_classes=N_CLASSES, repeat=True) for k, aug in variants.items()}
        t = time.perf_counter()
        for d in cached.values():
            _fresh_iterator(d, s["warmup"])
        out["cached_first_warmup_s"] = round(time.perf_counter() - t, 2)

        IDG = _tf_keras_generator()
        if IDG is not None:
            ref_it = tf_keras_batches(sub.meta, 0)
            out["reference_impl"] = "tf_keras ImageDataGenerator.flow_from_dataframe"
        else:
            ref_it = reference_batches(paths, labels, np.random.default_rng(1))
            out["reference_impl"] = ("tf_keras not importable: PIL decode + resize (nearest) + numpy rot90/"
                                     "flips per batch, single-threaded, same process")
        for _ in range(s["warmup"]):
            next(ref_it)

        # (d) the model step
        from hamviz.models import keras, small_cnn
        model = small_cnn((SIZE, SIZE, 3), N_CLASSES)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
        xb = np.asarray(cache.images[:BATCH], dtype=np.float32)
        if len(xb) < BATCH:
            xb = np.resize(xb, (BATCH, SIZE, SIZE, 3))
        yb = np.eye(N_CLASSES, dtype=np.float32)[np.arange(BATCH) % N_CLASSES]
        for _ in range(3):
            model.train_on_batch(xb, yb)

        rounds = []
        for r in range(s["rounds"]):
            # a fresh iterator per round: batches prefetched while the other variants ran must not count
            a = {k: _rate(_fresh_iterator(d, s["warmup"]), s["batches"]) for k, d in cached.items()}
            b = _rate(ref_it, s["batches"])
            c1 = _decode_rate(paths, 1)
            cn = _decode_rate(paths, threads)
            t = time.perf_counter()
            for _ in range(s["model_steps"]):
                model.train_on_batch(xb, yb)
            d = s["model_steps"] * BATCH / (time.perf_counter() - t)
            rounds.append({**a, "reference_style": b, "decode_1": c1, f"decode_{threads}": cn,
                           "model_step": d, "cached_over_reference": a["cached"] / b,
                           "cached_rot90_flip_over_reference": a["cached_rot90_flip"] / b})
        out["rounds"] = [{k: round(v, 2) for k, v in r.items()} for r in rounds]
        med = {k: round(common.median([r[k] for r in rounds]), 2) for k in rounds[0]}
        out["images_per_s"] = {k: v for k, v in med.items() if "_over_" not in k}
        out["ratios"] = {
            "cached_over_reference": med["cached_over_reference"],  # median of per-round ratios
            "cached_rot90_flip_over_reference": med["cached_rot90_flip_over_reference"],
            "augmentation_cost": round(med["cached_no_aug"] / med["cached"], 2),
            "cached_over_model_step": round(med["cached"] / med["model_step"], 2),
            "reference_over_model_step": round(med["reference_style"] / med["model_step"], 2),
            f"decode_{threads}_over_decode_1": round(med[f"decode_{threads}"] / med["decode_1"], 2),
        }
        out["bottleneck"] = {
            "cached": "model" if med["cached"] > med["model_step"] else "input pipeline",
            "reference_style": "model" if med["reference_style"] > med["model_step"] else "input pipeline",
        }
        del images, cached
        out["end_to_end"] = end_to_end(sub, ids, labels, s, tmp.name)
    finally:
        tmp.cleanup()
    return out


def table(result: dict) -> str:
    r = result["images_per_s"]
    threads = result["settings"]["decode_threads"]
    rows = [
        ("(a) cached tf.data + augmentation (hamviz)", r["cached"], "rot90, flips, zoom, shift; TF threads"),
        ("    control: cached, rot90 + flips only", r["cached_rot90_flip"], "the augmentation (b) does"),
        ("    control: cached, no augmentation", r["cached_no_aug"], "the cache alone"),
        ("(b) reference-style: decode JPEGs every batch", r["reference_style"], result["reference_impl"]),
        ("(c) decode+resize, 1 thread", r["decode_1"], "hamviz.cache.decode (PIL)"),
        (f"(c) decode+resize, {threads} threads", r[f"decode_{threads}"], "ceiling without a cache"),
        ("(d) small_cnn train_on_batch @128", r["model_step"], "fixed batch of 32"),
    ]
    ratios = result["ratios"]
    s = result["settings"]
    notes = [
        f"cached / reference-style = {ratios['cached_over_reference']}x (median of per-round ratios, "
        f"{s['rounds']} rounds of {s['batches']} batches of {s['batch_size']}); with the same augmentation "
        f"as (b): {ratios['cached_rot90_flip_over_reference']}x; the augmentation layers cost "
        f"{ratios['augmentation_cost']}x (no augmentation / full)",
        f"cached / model step = {ratios['cached_over_model_step']}x -> bottleneck: "
        f"{result['bottleneck']['cached']}; reference-style / model step = "
        f"{ratios['reference_over_model_step']}x -> bottleneck: {result['bottleneck']['reference_style']}",
        f"one-off cache build: {result['cache_build_s']} s for {s['n_images']} images "
        f"({result['cache_build_images_per_s']} images/s); source images {s['source_image_wxh']} (w x h)",
    ]
    text = common.render(("pipeline @128x128", "images/s", "note"), rows,
                         title="pipeline: training-batch throughput", notes=notes)
    e2e = result.get("end_to_end")
    if not e2e:
        return text
    rows = [(f"{size}x{size}", e["fit_no_aug"], e["fit_aug"], e["fit_aug_over_fit_no_aug"], e["pipeline_aug"],
             e["pipeline_over_fit_no_aug"]) for size, e in e2e.items()]
    return text + "\n\n" + common.render(
        ("size", "fit, no aug", "fit, aug", "aug / no aug", "pipeline alone (aug)", "pipeline / fit"), rows,
        title="(e) small_cnn fit images/s on the cached pipeline, with and without the chapters' augmentation",
        notes=[f"median of {s['rounds']} alternating rounds; aug / no aug below 1 is what augmentation costs "
               "training on these cores; pipeline / fit above 1: the pipeline alone outruns training"])
