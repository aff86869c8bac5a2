"""Live JupyterLab widgets: scrub the JPEG quality of an image, or switch to an autoencoder reconstruction or
a K-means palette, and see the image, its size, its fidelity and what the classifier makes of it.

Built from ipywidgets; the state after every change is in :attr:`CompressionExplorer.state`, which is what
the tests check. In the static book (no kernel) the widget's place holds a one-line note (:data:`STATIC_NOTE`,
its ``text/html`` and ``text/plain`` outputs) and the chapter shows :func:`static_jpeg_slider` after it.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .codecs import bits_per_pixel, jpeg_roundtrip, psnr, ssim
from .registry import CLASSES


def _png(img: np.ndarray, scale: int = 1) -> bytes:
    im = Image.fromarray(np.asarray(img, dtype=np.uint8))
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


#: What a page without a kernel shows in place of the live widget.
STATIC_NOTE = ("Live widget (JPEG quality, autoencoder and K-means explorer): it needs a running kernel; open this "
               "notebook in JupyterLab to use it. The figure below precomputes its JPEG-quality slider.")


class CompressionExplorer:
    """Original vs compressed image with bytes, bpp, PSNR, SSIM and class probabilities.

    image: uint8 (H, W, 3) at the classifier's input size; model: a Keras classifier (or None);
    alternatives: name -> (uint8 image, bits) for other codings of the same image, e.g.
    {"autoencoder 3x": (reconstruction, latent_bits), "K-means 16": (quantised, palette_bits)}.
    """

    def __init__(self, image, model=None, alternatives: dict | None = None, classes=CLASSES,
                 quality: int = 50, scale: int = 4, true_label: str | None = None, flips: bool = False):
        import ipywidgets as w
        self.flips = flips
        self.image = np.asarray(image, dtype=np.uint8)
        self.model = model
        self.classes = tuple(classes)
        self.alternatives = dict(alternatives or {})
        self.scale = scale
        self.slider = w.IntSlider(value=quality, min=1, max=95, step=1, description="JPEG quality",
                                  continuous_update=True, layout=w.Layout(width="420px"))
        self.mode = w.ToggleButtons(options=["JPEG", *self.alternatives], value="JPEG",
                                    description="coding")
        self.original_view = w.Image(value=_png(self.image, scale), format="png")
        self.compressed_view = w.Image(format="png")
        self.info = w.HTML()
        self.probs = w.HTML()
        title = f"true class: <b>{true_label}</b>" if true_label else ""
        self.widget = w.VBox([
            w.HBox([self.mode]), self.slider,
            w.HBox([w.VBox([w.HTML("original"), self.original_view]),
                    w.VBox([w.HTML("coded"), self.compressed_view]),
                    w.VBox([w.HTML(title), self.info, self.probs])]),
        ])
        self.state: dict = {}
        self.slider.observe(self._update, names="value")
        self.mode.observe(self._update, names="value")
        self._update()

    def _code(self):
        if self.mode.value == "JPEG":
            img, n_bytes = jpeg_roundtrip(self.image, int(self.slider.value))
            return img, 8 * n_bytes
        img, bits = self.alternatives[self.mode.value]
        return np.asarray(img, dtype=np.uint8), int(bits)

    def _update(self, change=None):
        self.slider.disabled = self.mode.value != "JPEG"
        coded, bits = self._code()
        h, w = coded.shape[:2]
        st = {"mode": self.mode.value, "quality": int(self.slider.value) if self.mode.value == "JPEG" else None,
              "bits": bits, "n_bytes": bits / 8, "bpp": bits_per_pixel(bits / 8, coded.shape),
              "psnr": psnr(self.image, coded), "ssim": ssim(self.image, coded), "image": coded}
        if self.model is not None:
            from .training import predict
            p = predict(self.model, coded[None], flips=self.flips)[0]
            st["probabilities"] = {c: float(v) for c, v in zip(self.classes, p)}
            st["predicted"] = self.classes[int(np.argmax(p))]
        self.state = st
        self.compressed_view.value = _png(coded, self.scale)
        self.info.value = (f"<table><tr><td>size</td><td><b>{st['n_bytes']:,.0f} bytes</b></td></tr>"
                           f"<tr><td>bits/pixel</td><td>{st['bpp']:.3f} (raw: 24)</td></tr>"
                           f"<tr><td>PSNR</td><td>{st['psnr']:.1f} dB</td></tr>"
                           f"<tr><td>SSIM</td><td>{st['ssim']:.3f}</td></tr></table>")
        if "probabilities" in st:
            rows = "".join(
                f"<tr><td>{c}</td><td><div style='background:#4C78A8;height:10px;width:{120 * v:.0f}px'>"
                f"</div></td><td>{v:.2f}</td></tr>" for c, v in st["probabilities"].items())
            self.probs.value = f"<b>classifier: {st['predicted']}</b><table>{rows}</table>"

    def _repr_mimebundle_(self, **kwargs):
        """The live widget for a front end with a kernel and the widget renderer (JupyterLab, Notebook, VS Code),
        and a one-line note, as HTML and as text, for everything else: a static page (nbconvert, the book) shows
        the note rather than the widget's Python repr (``VBox(children=(HBox(...``), which it used to print."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = STATIC_NOTE
        bundle["text/html"] = f'<p class="hamviz-widget-note"><em>{STATIC_NOTE}</em></p>'
        return bundle


def static_jpeg_slider(image, qualities, model=None, classes=CLASSES, title: str = "JPEG quality",
                       flips: bool = False):
    """A plotly figure with a slider over ``qualities``: the re-encoded image, its bytes, bpp, PSNR and the
    classifier's probabilities at each step (``flips``: averaged over the image and its mirror images, as the
    model's test numbers). Works in static HTML (no kernel)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .plots import png_data_uri
    from .training import predict
    image = np.asarray(image, dtype=np.uint8)
    qualities = sorted(qualities, reverse=True)
    coded = [jpeg_roundtrip(image, q) for q in qualities]
    probs = predict(model, np.stack([c[0] for c in coded]), flips=flips) if model is not None else None
    fig = make_subplots(rows=1, cols=3, column_widths=[0.3, 0.3, 0.4],
                        subplot_titles=("original", "JPEG", "class probabilities"))
    fig.add_trace(go.Image(source=png_data_uri(image)), row=1, col=1)
    fig.add_trace(go.Image(source=png_data_uri(coded[0][0])), row=1, col=2)
    fig.add_trace(go.Bar(x=list(classes), y=probs[0] if probs is not None else [0] * len(classes),
                         marker_color="#4C78A8"), row=1, col=3)
    steps = []
    for i, (q, (img, n)) in enumerate(zip(qualities, coded)):
        label = (f"quality {q}: {n:,} bytes, {bits_per_pixel(n, img.shape):.2f} bpp, "
                 f"PSNR {psnr(image, img):.1f} dB"
                 + (f", predicted {classes[int(np.argmax(probs[i]))]}" if probs is not None else ""))
        steps.append({"label": str(q), "method": "update",
                      "args": [{"source": [png_data_uri(img), None],
                                "y": [None, list(map(float, probs[i])) if probs is not None else None]},
                               {"title.text": f"{title}: {label}"}, [1, 2]]})
    first = steps[0]["args"][1]["title.text"]
    fig.update_layout(title=first, height=420, showlegend=False,
                      sliders=[{"active": 0, "steps": steps, "currentvalue": {"prefix": "quality "},
                                "pad": {"t": 40}}])
    fig.update_xaxes(visible=False, row=1, col=1)
    fig.update_yaxes(visible=False, row=1, col=1)
    fig.update_xaxes(visible=False, row=1, col=2)
    fig.update_yaxes(visible=False, row=1, col=2)
    fig.update_yaxes(range=[0, 1], row=1, col=3)
    return fig
