"""``tf.data`` input pipelines over the decoded-image cache, with Keras augmentation layers.

The images come from :mod:`hamviz.cache` (uint8, already resized), so an epoch never decodes a JPEG.
Augmentation as Doctor lists it ("90 degree rotations, flips, zooms, and shifts"; the amounts are hamviz's): random
quarter turns, horizontal and vertical flips, zoom and shift, as Keras 3 preprocessing layers applied to whole
batches inside ``tf.data``. The other references differ: Zhang has no flips, Barros Everett no shifts, Bunu et al.
180-degree rotations and cropping.
"""
from __future__ import annotations

import numpy as np

#: The JSON schema of :func:`augmentation`'s options (every config and profile section that takes an augmentation).
AUGMENT_SCHEMA = {"rot90": {"type": "boolean"}, "flip": {"type": "boolean"},
                  "zoom": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                  "shift": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}}
#: Batches mapped at once without augmentation, and batches prefetched: fixed, because tf.data's autotuning is off
#: (:func:`pipeline_options`).
MAP_CALLS = 2
PREFETCH = 2


def _tf():
    from ._tf import import_tf  # imported lazily: importing TF costs seconds
    return import_tf()


def random_rot90_layer():
    """A Keras layer rotating each image of a batch by a random multiple of 90 degrees (square images)."""
    tf = _tf()
    import keras

    class RandomRot90(keras.layers.Layer):
        def __init__(self, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, x, training=True):
            if not training:
                return x
            if x.shape[1] is not None and x.shape[1] != x.shape[2]:
                raise ValueError(f"90-degree rotations need square images, got {x.shape[1]}x{x.shape[2]}")
            k = keras.random.randint((tf.shape(x)[0],), 0, 4, seed=self.seed_generator)
            out = x
            for i in (1, 2, 3):
                out = tf.where(tf.reshape(k == i, (-1, 1, 1, 1)), tf.image.rot90(x, i), out)
            return out

        def get_config(self):
            return {**super().get_config(), "seed": self.seed}

    return RandomRot90


def augmentation(*, rot90: bool = True, flip: bool = True, zoom: float = 0.1, shift: float = 0.1,
                 seed: int = 0):
    """A ``keras.Sequential`` of augmentation layers (identity when everything is off)."""
    _tf()
    import keras
    for name, v in (("zoom", zoom), ("shift", shift)):
        if not 0 <= v < 1:
            raise ValueError(f"augmentation {name} must be a fraction in [0, 1), not {v}")
    layers = []
    if rot90:
        layers.append(random_rot90_layer()(seed=seed))
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal_and_vertical", seed=seed + 1))
    if zoom:
        layers.append(keras.layers.RandomZoom((-zoom, zoom), fill_mode="reflect", seed=seed + 2))
    if shift:
        layers.append(keras.layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 3))
    return keras.Sequential(layers, name="augmentation")


def _check_images(images: np.ndarray, augment) -> None:
    """Images (N, H, W, 3), or feature vectors (N, C) without augmentation (e.g. cached backbone features)."""
    vectors = images.ndim == 2 and not augment
    if not vectors and (images.ndim != 4 or images.shape[-1] != 3):
        raise ValueError(f"images must be (N, H, W, 3) (or feature vectors (N, C) without augmentation), "
                         f"got shape {images.shape}")


def _by_index(images, rows) -> tuple[np.ndarray, np.ndarray]:
    """(each image of ``images[rows]`` once, int64 positions into it giving ``images[rows]`` in order)."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or (len(rows) and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError(f"rows must be a 1-d array of integer indices, got {rows.dtype} {rows.shape}")
    uniq, inv = np.unique(rows, return_inverse=True)
    return np.asarray(images[uniq]), inv.astype(np.int64)


def make_dataset(images, labels=None, *, batch_size: int = 32, shuffle: bool = False,
                 augment=None, n_classes: int | None = None, seed: int = 0,
                 repeat: bool = False, scale: bool = False, sample_weight=None, targets=None, pack=None,
                 rows=None):
    """A batched, prefetched ``tf.data.Dataset`` of (image, label) from in-memory uint8 images.

    Every training input of hamviz goes through here, so that augmentation is applied one way everywhere
    (in order: see below) and a seed gives the same batches and augmentations every run.

    images: uint8 array (N, H, W, 3), e.g. ``cache.images[rows]``, or float feature vectors (N, C) (no
      augmentation); labels: ints (N,) or None.
    augment: None / False, True (the default :func:`augmentation`), a dict of :func:`augmentation` options,
      or a Keras layer / Sequential.
    n_classes: one-hot encode the labels (for categorical cross-entropy).
    targets: instead of labels, any per-image array (N, ...) passed on as float32 (e.g. hypervector keys).
    scale: divide by 255 to float32 in [0, 1]; otherwise images stay float32 in [0, 255]
      (Keras application models bring their own preprocessing).
    pack: a function of the augmented batch ``(x, *labels_or_targets, *sample_weight)`` returning the
      element to yield, for models whose targets depend on the augmented image (an autoencoder's target is
      its input).
    rows: int indices (M,) into ``images``, repeats allowed (an oversampled training part): the dataset yields
      ``images[rows]`` (labels, targets and sample weights then have M entries), gathered batch by batch inside
      tf.data, so that the repeated images are never materialised (S3 at 224x224 would be about 5 GB). The
      batches are the same as from ``images[rows]``.
    """
    tf = _tf()
    base = None
    if rows is not None:  # the dataset holds indices; prep() gathers each batch from the images held once
        base, images = _by_index(images, rows)
        _check_images(base, augment)
        base = tf.convert_to_tensor(base)
    images = np.asarray(images)
    if base is None:
        _check_images(images, augment)
    if labels is not None and targets is not None:
        raise ValueError("give labels or targets, not both")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if targets is not None and len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    tensors = [images]
    if labels is not None:
        y = np.asarray(labels, dtype=np.int64)
        tensors.append(np.eye(n_classes, dtype=np.float32)[y] if n_classes else y)
    if targets is not None:
        tensors.append(np.asarray(targets, dtype=np.float32))
    if sample_weight is not None:
        tensors.append(np.asarray(sample_weight, dtype=np.float32))
    ds = tf.data.Dataset.from_tensor_slices(tuple(tensors) if len(tensors) > 1 else tensors[0])
    if shuffle:
        ds = ds.shuffle(min(len(images), 20000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)
    if augment is True:
        augment = augmentation(seed=seed)
    elif isinstance(augment, dict):
        augment = augmentation(seed=seed, **augment) if augment else None
    factor = 1 / 255.0 if scale else 1.0

    def prep(x, *rest):
        if base is not None:
            x = tf.gather(base, x)
        x = tf.cast(x, tf.float32)
        if augment:
            x = augment(x, training=True)
        x = x * factor
        if pack is not None:
            return pack(x, *rest)
        return (x, *rest) if rest else x

    # Keras' random layers draw from a shared, stateful generator: mapped in parallel, which batch gets which
    # draw depends on thread timing and training is not reproducible. Augmentation therefore maps in order
    # (prefetch still overlaps it with the training step); without it, batches map in parallel.
    ds = ds.map(prep, num_parallel_calls=None if augment else MAP_CALLS)
    return ds.prefetch(PREFETCH).with_options(pipeline_options())


def pipeline_options():
    """The ``tf.data.Options`` of every hamviz pipeline: autotuning off (the batches are the same either way).
    Measured on the 2-core AMD EPYC (family 25, AVX-512), ``benchmarks/concurrency.py``: a small CNN's ``fit`` (64 px,
    2 epochs of 2,000 images, augmented) took 22 s alone and 40 s beside a second one with autotuning off, against
    26-42 s alone and 45-84 s in a pair with it on (its background tuning competes for the cores). The cold ``cpu``
    book did not get faster from it: its classifier chapter took 48.1 min and its hypervector chapter 24.0, as
    before (the main model's 128 px steps and the small CNNs' arithmetic dominate there)."""
    tf = _tf()
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def flip_variants(images) -> list:
    """The images (N, H, W, C) and their horizontal and vertical mirror images: the test-time augmentation that
    :func:`hamviz.training.predict` and :func:`hamviz.features.backbone_features` average over."""
    images = np.asarray(images)
    return [images, images[:, :, ::-1], images[:, ::-1]]
