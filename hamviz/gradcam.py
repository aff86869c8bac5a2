"""What a classifier looks at: activation maps and Grad-CAM for any hamviz classifier.

Every hamviz model is one flat functional graph taking float images in [0, 255] (uint8 works too) with its
preprocessing inside, so any layer can be addressed by name or index and read with a sub-model
``keras.Model(model.input, [...])``; nothing here preprocesses. Other Keras classifiers work too: Sequential
models, models loaded from a .keras file (whose layers keep one call per build; the call the output depends on is
the one used, so Grad-CAM is the same before and after a save/load round trip), and a backbone nested as a layer
(its own layers addressed as ``"outer/inner"``).

- :func:`conv_layers`, :func:`default_layers`, :func:`resolve_layer`: which layers have feature maps.
- :func:`activations`, :func:`activation_figure`: feature maps of one image.
- :func:`grad_cam`, :func:`predict_with_cam`, :func:`default_cam_layer`: Grad-CAM (Selvaraju et al., 2017).
- :func:`overlay`, :func:`cam_gallery`: heat maps over the images.
- :func:`cam_shift_batch`: how far Grad-CAM maps moved between two models or inputs.
"""
from __future__ import annotations

import difflib
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import tensorflow as tf  # noqa: E402  (after .models, which imports it quietly)
from plotly.subplots import make_subplots

from .config import HamvizError
from .models import ImagenetPreprocess, ScaleOffset, keras, last_conv_layer

__all__ = ["ExplainError", "conv_layers", "default_layers", "resolve_layer", "default_cam_layer",
           "activations", "activation_figure", "grad_cam", "predict_with_cam",
           "overlay", "colormap_lut", "cam_shift_batch", "cam_gallery"]


class ExplainError(HamvizError, ValueError):
    """A layer, image or class index the explanation cannot use (also a ValueError)."""


# ------------------------------------------------------------------------------------------------- layers
def _in(model):
    """The model's (single) input tensor; ``model.inputs`` also answers for a Sequential model built with
    ``keras.Input``, whose ``model.input`` raises "never been called"."""
    return model.inputs[0]


def _out(model):
    """The model's (single) output tensor (``model.outputs``: also for a Sequential model)."""
    return model.outputs[0]


def _is_preprocessing(layer) -> bool:
    return (isinstance(layer, (keras.layers.InputLayer, ImagenetPreprocess, ScaleOffset))
            or ".preprocessing." in type(layer).__module__)


def _is_4d(layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # a layer never called, or used several times
        return False


def conv_layers(model, nested: bool = False) -> list[str]:
    """Names of the layers whose output is 4-D (N, H, W, C), in graph order, without the input and the
    preprocessing layers (ImagenetPreprocess, ScaleOffset, Keras Rescaling/Normalization...). ``nested=True``:
    a nested model among them (a Keras-Hub backbone, whose output is its last feature map) is replaced by its
    own such layers, named ``"outer/inner"`` (e.g. ``"backbone/stack6_block1_project_bn"``), for
    :func:`activations`."""
    out = []
    for layer in model.layers:
        if not _is_4d(layer) or _is_preprocessing(layer):
            continue
        if nested and isinstance(layer, keras.Model):
            out += [f"{layer.name}/{n}" for n in conv_layers(layer)  # its padding layers' borders are not image
                    if not isinstance(layer.get_layer(n), keras.layers.ZeroPadding2D)]
        else:
            out.append(layer.name)
    return out


def default_layers(model, n: int = 5) -> list[str]:
    """``n`` layers of :func:`conv_layers` (nested models' layers included, as ``"outer/inner"``) spread evenly
    from the first to the last (both included), in graph order; fewer when the model has fewer than ``n`` such
    layers."""
    names = conv_layers(model, nested=True)
    if not names:
        raise ExplainError(f"model {model.name} has no layer with a 4-D (N, H, W, C) output")
    if n < 1:
        raise ExplainError(f"n must be at least 1, not {n}")
    if n == 1:
        return [names[-1]]
    idx = np.unique(np.round(np.linspace(0, len(names) - 1, min(n, len(names)))).astype(int))
    return [names[i] for i in idx]


def resolve_layer(model, layer) -> str:
    """The name of ``layer``: a layer name, or an integer index into ``model.layers`` (negative counts from
    the end). Raises ExplainError (a ValueError) for an unknown name (naming the closest ones), an index out
    of range, or a layer without a 4-D (N, H, W, C) output."""
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        n = len(model.layers)
        if not -n <= layer < n:
            raise ExplainError(f"layer index {layer} out of range: model {model.name} has {n} layers "
                               f"(0..{n - 1}, or -{n}..-1)")
        obj = model.layers[int(layer)]
    elif isinstance(layer, str) and "/" in layer:
        outer, inner = layer.split("/", 1)
        nested = model.get_layer(outer) if outer in [l.name for l in model.layers] else None
        if not isinstance(nested, keras.Model):
            raise ExplainError(f"{layer!r}: model {model.name} has no nested model {outer!r}; "
                               f"conv_layers(model, nested=True) lists the layers with feature maps.")
        return f"{outer}/{resolve_layer(nested, inner)}"
    elif isinstance(layer, str):
        names = [l.name for l in model.layers]
        if layer not in names:
            close = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ExplainError(f"model {model.name} has no layer {layer!r}.{hint} "
                               f"conv_layers(model) lists the layers with feature maps.")
        obj = model.get_layer(layer)
    else:
        raise ExplainError(f"layer must be a name or an integer index, not {type(layer).__name__}")
    if not _is_4d(obj):
        shape = getattr(getattr(obj, "output", None), "shape", None)
        raise ExplainError(f"layer {obj.name!r} ({type(obj).__name__}, output shape {shape}) has no 4-D "
                           f"(N, H, W, C) output, so it has no feature maps; choose one of conv_layers(model), "
                           f"e.g. {last_conv_layer(model)!r}.")
    return obj.name


def default_cam_layer(model) -> str:
    """The Grad-CAM target: the last layer whose output is 4-D *and* spatially larger than 1x1.

    :func:`hamviz.models.last_conv_layer` alone would pick a 1x1 map on small inputs (MobileNetV2 at 32x32
    ends in a 1x1x1280 block), whose upsampled Grad-CAM is a constant: no localisation at all. When every
    4-D layer is 1x1 this falls back to ``last_conv_layer(model)``. Zero-padding layers are passed over:
    their border is not image (MobileNetV2 at 32x32 would otherwise give ``block_13_pad``, 2x2 padded to
    3x3, instead of ``block_13_expand_relu``, 2x2).
    """
    for name in reversed(conv_layers(model)):
        if isinstance(model.get_layer(name), keras.layers.ZeroPadding2D):
            continue
        h, w = model.get_layer(name).output.shape[1:3]
        if h is None or w is None or h * w > 1:
            return name
    return last_conv_layer(model)


# ------------------------------------------------------------------------------------------------- images
def _as_batch(model, images) -> np.ndarray:
    """Images as a float32 (N, H, W, C) batch matching the model's input (one (H, W, C) image allowed)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    want = tuple(_in(model).shape[1:])
    if x.ndim != 4 or any(w is not None and w != g for w, g in zip(want, x.shape[1:])):
        raise ExplainError(f"model {model.name} takes images of shape {want} (uint8 or float in [0, 255]); "
                           f"got an array of shape {np.shape(images)}. Load the images at the model's size.")
    return x


def activations(model, image, layers=None) -> dict[str, np.ndarray]:
    """Feature maps of one image (H, W, 3), uint8 or float in [0, 255]: {layer name: (h, w, c) float32},
    in the order given. ``layers``: names or indices (default :func:`default_layers`). One sub-model computes
    all of them in a single forward pass (inference mode: Dropout off, BatchNorm with its moving stats)."""
    x = _as_batch(model, image)
    if len(x) != 1:
        raise ExplainError(f"activations() takes one image, not a batch of {len(x)}")
    if layers is None:
        layers = default_layers(model)
    elif isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    names = list(dict.fromkeys(resolve_layer(model, l) for l in layers))
    x = tf.convert_to_tensor(x, tf.float32)
    found = {}
    top = [n for n in names if "/" not in n]
    if top:
        out = keras.Model(_in(model), [layer_output(model, n) for n in top])(x, training=False)
        found.update(zip(top, out if isinstance(out, (list, tuple)) else [out]))
    for outer in dict.fromkeys(n.split("/", 1)[0] for n in names if "/" in n):
        inner = [n for n in names if n.startswith(outer + "/")]
        nested = model.get_layer(outer)
        feed = keras.Model(_in(model), _layer_input(model, outer))(x, training=False)
        sub = keras.Model(_in(nested), [layer_output(nested, n.split("/", 1)[1]) for n in inner])
        out = sub(feed, training=False)
        found.update(zip(inner, out if isinstance(out, (list, tuple)) else [out]))
    return {n: np.asarray(found[n])[0] for n in names}


def _channel_order(maps: np.ndarray, max_channels: int, order: str) -> np.ndarray:
    if order == "first":
        return np.arange(min(max_channels, maps.shape[-1]))
    if order == "strongest":
        return np.argsort(-maps.reshape(-1, maps.shape[-1]).mean(axis=0), kind="stable")[:max_channels]
    raise ExplainError(f"order must be 'first' or 'strongest', not {order!r}")


def _tile(maps, max_channels, order, pad):
    """Float tile grid in [0, 255] with NaN in the padding, the channels shown, and the grid's columns."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ExplainError(f"feature maps must be (H, W, C), not {maps.shape}")
    if max_channels < 1:
        raise ExplainError(f"max_channels must be at least 1, not {max_channels}")
    chans = _channel_order(maps, max_channels, order)
    h, w, _ = maps.shape
    ncols = math.ceil(math.sqrt(len(chans)))
    nrows = math.ceil(len(chans) / ncols)
    grid = np.full((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad), np.nan, np.float32)
    for k, c in enumerate(chans):
        m = maps[..., c]
        lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
        tile = (m - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(m)
        r, q = divmod(k, ncols)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = tile
    return grid, chans, ncols


def activation_figure(acts: dict, max_channels: int = 16, title: str = "Activation maps",
                      order: str = "first", ncols: int | None = None,
                      colorscale: str = "Viridis") -> go.Figure:
    """One heat-map panel per layer of ``acts`` (from :func:`activations`), each the tiled
    tiled grid of its first (or strongest, see ``order``) ``max_channels`` channels; the panel
    title gives the layer name, its map shape h x w x c and how many channels are shown. Panels go
    ``ncols`` per row (default: up to 3)."""
    if not acts:
        raise ExplainError("no activation maps to show (acts is empty)")
    names = list(acts)
    ncols = ncols or min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    tiles, titles = [], []
    for name in names:
        a = np.asarray(acts[name])
        a = a[0] if a.ndim == 4 and a.shape[0] == 1 else a
        grid, chans, _ = _tile(a, max_channels, order, pad=1)
        tiles.append(grid)
        shown = f"{len(chans)} of {a.shape[-1]} channels" + (", strongest" if order == "strongest" else "")
        titles.append(f"{name}<br>{a.shape[0]}x{a.shape[1]}x{a.shape[2]} ({shown})")
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.08 if nrows > 1 else 0.0)
    for k, (name, grid) in enumerate(zip(names, tiles)):
        r, c = divmod(k, ncols)
        fig.add_trace(go.Heatmap(z=grid, colorscale=colorscale, zmin=0, zmax=255, showscale=False,
                                 hoverongaps=False, name=name,
                                 hovertemplate=f"{name}<br>x %{{x}}, y %{{y}}: %{{z:.0f}}<extra></extra>"),
                      row=r + 1, col=c + 1)
        axis = "" if k == 0 else str(k + 1)
        fig.update_layout({f"yaxis{axis}": dict(autorange="reversed", scaleanchor=f"x{axis}", visible=False),
                           f"xaxis{axis}": dict(visible=False, constrain="domain")})
    fig.update_annotations(font_size=10)
    from .plots import COLUMN_PX  # the book's text column: wider figures were cut at its edge
    fig.update_layout(title=title, height=int(nrows * COLUMN_PX / ncols) + 80, width=COLUMN_PX,
                      margin=dict(l=10, r=10, t=90, b=10), plot_bgcolor="white")
    return fig


# ------------------------------------------------------------------------------------------------ Grad-CAM
def _graph_nodes(model) -> dict[int, list]:
    """{id(layer): [its nodes]} for the calls that ``model``'s own graph makes, found by walking back from the
    output. A layer can hold calls from other graphs: a Sequential model loaded from a .keras file (or built
    twice) calls each layer once per build, every call connected to the input, so ``layer.output`` (the first
    call) computes the same values as the model but is not what its output depends on (its gradient is None)."""
    found, seen, stack = {}, set(), list(model.outputs)
    while stack:
        hist = getattr(stack.pop(), "_keras_history", None)
        if hist is None or hist.operation is None:
            continue
        node = hist.operation._inbound_nodes[hist.node_index]
        if id(node) not in seen:
            seen.add(id(node))
            found.setdefault(id(hist.operation), []).append(node)
            stack += list(node.input_tensors)
    return found


def _graph_node(model, name: str):
    """The one node (call) of layer ``name`` in ``model``'s graph, or None (not on the way to the output, or
    called several times there)."""
    nodes = _graph_nodes(model).get(id(model.get_layer(name)), [])
    return nodes[0] if len(nodes) == 1 else None


def _score_head(model, score: str):
    """(tensor to put in the sub-model, function of it -> class scores) for ``score`` 'logit' or 'proba'."""
    hist = getattr(_out(model), "_keras_history", None)
    hist = hist if hist is not None and hist.operation is not None else None
    last = hist.operation if hist is not None else model.layers[-1]
    last_in = hist.operation._inbound_nodes[hist.node_index].input_tensors[0] if hist is not None else None
    if score == "logit" and last_in is not None:
        act = getattr(last, "activation", None)
        soft = {keras.activations.softmax, keras.activations.sigmoid}
        if isinstance(last, keras.layers.Softmax) or (isinstance(last, keras.layers.Activation)
                                                     and act in soft):
            return last_in, lambda t: t
        if isinstance(last, keras.layers.Dense) and act in soft:
            def linear(t, layer=last):
                z = tf.matmul(t, tf.convert_to_tensor(layer.kernel))
                return z + tf.convert_to_tensor(layer.bias) if layer.use_bias else z
            return last_in, linear
        return _out(model), lambda t: t  # already a linear output (or one we cannot undo): use it
    if score in ("logit", "proba"):
        return _out(model), lambda t: t
    raise ExplainError(f"score must be 'logit' or 'proba', not {score!r}")


def layer_output(model, name: str):
    """The output tensor of layer ``name`` in ``model``'s own graph: the call of it that the model's output
    depends on (:func:`_graph_nodes`), else (a layer off that path) the first of its calls that the input
    computes. A nested model (a Keras-Hub backbone, a wrapped application) answers ``output`` with the output
    of its inner graph, so its call in ``model`` is found among its nodes instead."""
    node = _graph_node(model, name)
    if node is not None:
        return node.output_tensors[0]
    layer = model.get_layer(name)
    candidates = [layer.output] if not isinstance(layer, keras.Model) else []
    for node in getattr(layer, "_inbound_nodes", []):
        candidates += list(node.output_tensors)
    return _connected(model, name, candidates)


def _layer_input(model, name: str):
    """The tensor that feeds layer ``name`` in ``model``'s own graph (for a nested model: its input there)."""
    node = _graph_node(model, name)
    if node is not None:
        return node.input_tensors[0]
    nodes = getattr(model.get_layer(name), "_inbound_nodes", [])
    return _connected(model, name, [t for node in nodes for t in node.input_tensors])


def _connected(model, name: str, candidates):
    """The first of ``candidates`` (tensors around layer ``name``) that ``model``'s input computes."""
    for t in candidates:
        try:
            keras.Model(_in(model), t)
            return t
        except ValueError:
            continue
    raise ExplainError(f"layer {name!r} of {model.name} is not connected to the model's input")


def _class_indices(class_index, proba: np.ndarray) -> np.ndarray:
    n, k = proba.shape
    if class_index is None:
        return proba.argmax(axis=1)
    idx = np.asarray(class_index)
    if idx.ndim == 0:
        idx = np.full(n, int(idx))
    if idx.shape != (n,) or not np.issubdtype(idx.dtype, np.integer):
        raise ExplainError(f"class_index must be None, an int, or {n} ints (one per image); "
                           f"got {np.shape(class_index)} of {idx.dtype}")
    if idx.min() < 0 or idx.max() >= k:
        raise ExplainError(f"class_index must lie in 0..{k - 1} (the model has {k} classes); "
                           f"got {idx.min()}..{idx.max()}")
    return idx.astype(int)


def predict_with_cam(model, images, class_index=None, layer=None, batch_size: int = 64,
                     score: str = "logit") -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (N, H, W) in [0, 1] and the model's probabilities (N, n_classes), in one pass.

    images: (N, H, W, 3) (or one (H, W, 3)), uint8 or float in [0, 255], at the model's input size.
    class_index: None = each image's predicted class; an int = that class for all; N ints (e.g. the true
      labels) = one class per image.
    layer: name or index of a 4-D layer, or ``"outer/inner"`` for a layer inside a nested model (see
      :func:`conv_layers`); default :func:`default_cam_layer` (the last 4-D layer larger than 1x1). Works the
      same on a model loaded from a .keras file (Sequential included); raises ExplainError, naming the layers
      to pass, when the class score does not depend on the layer (never silently all-zero maps).
    score: ``"logit"`` (default, as in Selvaraju et al.) differentiates the class score before the softmax
      (for a softmax Dense / Activation / Softmax output layer; any other output layer is used as it is), so
      confident predictions do not vanish in a saturated softmax; ``"proba"`` differentiates the probability.

    Per image: weights w_c = mean over (h, w) of d score / d A_c; cam = ReLU(sum_c w_c A_c), resized
    bilinearly to the input size and divided by its maximum (a map that is all zero stays zero).
    """
    x = _as_batch(model, images)
    name = default_cam_layer(model) if layer is None else resolve_layer(model, layer)
    forward = _cam_forward(model, name, score)
    size = tuple(int(s) for s in x.shape[1:3])
    n = len(x)
    if n == 0:
        return np.zeros((0, *size), np.float32), np.zeros((0, int(_out(model).shape[-1])), np.float32)
    # class_index checked up front when it does not depend on predictions
    fixed = None if class_index is None else _class_indices(
        class_index, np.zeros((n, int(_out(model).shape[-1])), np.float32))
    cams, probas = [], []
    for start in range(0, n, batch_size):
        xb = tf.convert_to_tensor(np.asarray(x[start:start + batch_size], dtype=np.float32))
        with tf.GradientTape() as tape:
            feat, scores, proba = forward(xb)
            cls = (tf.argmax(proba, axis=-1, output_type=tf.int32) if fixed is None
                   else tf.constant(fixed[start:start + batch_size], tf.int32))
            target = tf.gather(scores, cls, axis=1, batch_dims=1)
        grads = tape.gradient(target, feat)
        if grads is None:  # never silently all-zero maps: the score must depend on the layer
            raise ExplainError(_unused_layer_message(model, name))
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feat, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, size, method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.where(peak > 0, cam / tf.where(peak > 0, peak, 1.0), tf.zeros_like(cam))
        cams.append(np.clip(cam.numpy(), 0.0, 1.0))
        probas.append(np.asarray(proba))
    return np.concatenate(cams).astype(np.float32), np.concatenate(probas).astype(np.float32)


def _unused_layer_message(model, name: str, calls: int = 0) -> str:
    others = [n for n in conv_layers(model) if n != name and _graph_node(model, n) is not None]
    hint = f"pass layer= one of {others}" if others else "pass layer= one of conv_layers(model)"
    why = (f"is called {calls} times in its graph, so its Grad-CAM is ambiguous" if calls > 1 else
           "does not lead to the class score (its gradient is None), so its Grad-CAM would be all zero")
    return f"layer {name!r} of model {model.name} {why}; {hint}."


def _cam_feature(model, name: str):
    """The output of the one call of layer ``name`` that ``model``'s output depends on (ExplainError if none
    or several)."""
    nodes = _graph_nodes(model).get(id(model.get_layer(name)), [])
    if len(nodes) != 1:
        raise ExplainError(_unused_layer_message(model, name, len(nodes)))
    return nodes[0].output_tensors[0]


def _cam_forward(model, name: str, score: str):
    """A function: image batch -> (feature maps of layer ``name``, class scores, probabilities), all in one
    differentiable pass through ``model``'s own graph. ``name`` may be ``"outer/inner"``: a layer inside a
    nested model, run as (model up to the nested one) -> (nested model) -> (model after it)."""
    head_in, to_scores = _score_head(model, score)
    if "/" not in name:
        sub = keras.Model(_in(model), [_cam_feature(model, name), head_in, _out(model)])

        def forward(xb):
            feat, h, proba = sub(xb, training=False)
            return feat, to_scores(h), proba
        return forward
    outer, inner = name.split("/", 1)
    nested, mid = model.get_layer(outer), _cam_feature(model, outer)
    feat = _cam_feature(nested, inner)
    try:
        before = keras.Model(_in(model), _layer_input(model, outer))
        inside = keras.Model(_in(nested), [feat, _out(nested)])
        after = keras.Model(mid, [head_in, _out(model)])
    except (ValueError, TypeError) as e:
        raise ExplainError(f"cannot run Grad-CAM at {name!r}: model {model.name} does not pass through its "
                           f"nested model {outer!r} in one straight line ({e}); pass layer={outer!r} or one "
                           f"of conv_layers(model).") from e

    def forward(xb):
        feat, mid = inside(before(xb, training=False), training=False)
        h, proba = after(mid, training=False)
        return feat, to_scores(h), proba
    return forward


def grad_cam(model, images, class_index=None, layer=None, batch_size: int = 64,
             score: str = "logit") -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1]; see :func:`predict_with_cam` (which also returns the
    probabilities) for the arguments."""
    return predict_with_cam(model, images, class_index, layer, batch_size, score)[0]


# ------------------------------------------------------------------------------------------------- display
def _jet(x: np.ndarray) -> np.ndarray:
    """The classic (MATLAB) jet colormap: dark blue - blue - cyan - yellow - red - dark red."""
    return np.stack([np.clip(1.5 - np.abs(4 * x - s), 0, 1) for s in (3, 2, 1)], axis=-1)


def colormap_lut(colormap: str = "jet", n: int = 256) -> np.ndarray:
    """(n, 3) uint8 lookup table: ``"jet"`` (hand-written), or any plotly colorscale name
    (e.g. "Viridis", "Inferno", "Hot"; a "_r" suffix reverses it)."""
    x = np.linspace(0.0, 1.0, n)
    if colormap.lower() == "jet":
        return np.round(_jet(x) * 255).astype(np.uint8)
    import plotly.colors as pc
    try:
        scale = pc.get_colorscale(colormap)
    except Exception as e:
        raise ExplainError(f"unknown colormap {colormap!r}: 'jet' or a plotly colorscale name "
                           f"such as 'Viridis', 'Inferno', 'Hot'") from e
    cols = pc.sample_colorscale(scale, list(x), colortype="tuple")
    cols = [pc.unlabel_rgb(c) if isinstance(c, str) else c for c in cols]
    arr = np.asarray(cols, dtype=float)
    if arr.max() <= 1.0:  # tuples in [0, 1]
        arr = arr * 255
    return np.round(np.clip(arr, 0, 255)).astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """The Grad-CAM map ``cam`` (h, w) in [0, 1] as a colour heat map blended over ``image`` (H, W, 3):
    (1 - alpha) * image + alpha * colormap(cam), uint8 (H, W, 3). A map of another size is resized
    bilinearly to the image; a grey (H, W) image is repeated to 3 channels."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ExplainError(f"overlay() takes an (H, W, 3) image, not {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ExplainError(f"alpha must lie in [0, 1], not {alpha}")
    c = np.asarray(cam, dtype=np.float32)
    if c.ndim == 3 and c.shape[-1] == 1:
        c = c[..., 0]
    if c.ndim != 2:
        raise ExplainError(f"overlay() takes one (H, W) map, not {c.shape}")
    if c.shape != img.shape[:2]:
        c = tf.image.resize(c[None, ..., None], img.shape[:2], method="bilinear").numpy()[0, ..., 0]
    c = np.clip(np.nan_to_num(c), 0.0, 1.0)
    heat = colormap_lut(colormap)[np.round(c * 255).astype(int)].astype(np.float32)
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * heat
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def cam_gallery(images, cams, captions=None, ncols: int = 4, title: str = "Grad-CAM",
                alpha: float = 0.4, colormap: str = "jet") -> go.Figure:
    """Grad-CAM overlays (:func:`overlay`) in a grid via :func:`hamviz.plots.image_grid`, each with its
    caption (hover text and label)."""
    from .plots import image_grid
    if len(images) != len(cams):
        raise ExplainError(f"{len(images)} images but {len(cams)} Grad-CAM maps")
    if captions is not None and len(captions) != len(images):
        raise ExplainError(f"{len(images)} images but {len(captions)} captions")
    over = [overlay(im, cm, alpha=alpha, colormap=colormap) for im, cm in zip(images, cams)]
    return image_grid(over, captions, ncols=ncols, title=title)


# ------------------------------------------------------------------------------------------ map comparison
def cam_shift_batch(cams_a, cams_b, top: float = 0.2) -> pd.DataFrame:
    """How far each Grad-CAM map moved from ``cams_a`` to ``cams_b`` (both (N, H, W), same shape), one row
    per image:

    - ``correlation``: Pearson correlation of the two maps' pixels (NaN if a map is constant);
    - ``iou``: intersection over union of their top-``top`` regions; a map's region is its pixels at or above
      its ceil(top*H*W)-th largest value (ties included) and above 0 (NaN if both regions are empty, i.e.
      both maps all zero);
    - ``com_distance``: distance in pixels between their centres of mass (the map values as mass; NaN if a
      map is all zero), and ``com_dy``, ``com_dx``: the shift b - a in rows and columns.
    """
    a = np.asarray(cams_a, dtype=np.float64)
    b = np.asarray(cams_b, dtype=np.float64)
    if a.ndim == 2 and b.ndim == 2:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 3:
        raise ExplainError(f"the two sets of maps must both be (N, H, W) of the same shape; "
                           f"got {np.shape(cams_a)} and {np.shape(cams_b)}")
    if not 0.0 < top <= 1.0:
        raise ExplainError(f"top must be a fraction in (0, 1], not {top}")
    n, h, w = a.shape
    fa, fb = a.reshape(n, -1), b.reshape(n, -1)
    da, db = fa - fa.mean(axis=1, keepdims=True), fb - fb.mean(axis=1, keepdims=True)
    den = np.sqrt((da ** 2).sum(axis=1) * (db ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(den > 0, (da * db).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)
    k = max(1, math.ceil(top * h * w))

    def region(f):
        kth = np.partition(f, f.shape[1] - k, axis=1)[:, f.shape[1] - k][:, None]
        return (f >= kth) & (f > 0)

    ra, rb = region(fa), region(fb)
    inter, union = (ra & rb).sum(axis=1), (ra | rb).sum(axis=1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    yy, xx = np.mgrid[0:h, 0:w]

    def com(m):
        mass = m.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            cy = np.where(mass > 0, (m * yy).sum(axis=(1, 2)) / mass, np.nan)
            cx = np.where(mass > 0, (m * xx).sum(axis=(1, 2)) / mass, np.nan)
        return cy, cx

    (ya, xa), (yb, xb) = com(np.clip(a, 0, None)), com(np.clip(b, 0, None))
    dy, dx = yb - ya, xb - xa
    return pd.DataFrame({"correlation": corr, "iou": iou, "com_distance": np.hypot(dy, dx),
                         "com_dy": dy, "com_dx": dx})
