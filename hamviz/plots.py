"""Plotly figures shared by the chapters. Every function returns a ``go.Figure``; nothing is shown here.

Colours are fixed per class (:data:`CLASS_COLOURS`) so a class looks the same in every chapter.
"""
from __future__ import annotations

import base64
import io
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots
from sklearn.metrics import roc_auc_score, roc_curve

from .ensemble import check_binary, check_probability
from .metrics import field_name
from .registry import BINARY_CLASSES, CLASSES

CLASS_COLOURS = dict(zip(CLASSES, px.colors.qualitative.D3))
#: the width a figure is drawn at when it has to be (image grids: their height follows it): the book's text column
#: at 1400 px is about 780 px; the page's script shrinks a figure to a narrower column, keeping its aspect
COLUMN_PX = 760
SPLIT_COLOURS = {"train": "#4C78A8", "val": "#F58518", "test": "#54A24B"}


def png_data_uri(img: np.ndarray) -> str:
    """A uint8 image as a compact PNG data URI (for go.Image / layout images)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def class_counts_bar(counts: pd.DataFrame) -> go.Figure:
    """Images per class (log axis) with the share as text."""
    fig = go.Figure(go.Bar(
        x=list(counts.index), y=counts["images"],
        marker_color=[CLASS_COLOURS[c] for c in counts.index],
        text=[f"{n:,}<br>{s:.1%}" for n, s in zip(counts["images"], counts["share"])],
        textposition="outside", customdata=counts[["lesions"]].to_numpy(),
        hovertemplate="%{x}: %{y:,} images, %{customdata[0]:,} lesions<extra></extra>"))
    fig.update_layout(title="Images per class", yaxis_type="log", yaxis_title="images (log scale)",
                      xaxis_title="diagnosis", showlegend=False, height=420)
    return fig


def stacked_share(table: pd.DataFrame, title: str, xlabel: str = "dx") -> go.Figure:
    """Columns of ``table`` on the x axis, its rows stacked (values as given, e.g. shares)."""
    fig = go.Figure()
    for row in table.index:
        fig.add_bar(name=str(row), x=[str(c) for c in table.columns], y=table.loc[row])
    fig.update_layout(barmode="stack", title=title, xaxis_title=xlabel, height=420,
                      legend_title=table.index.name)
    return fig


#: HAM10000's metadata columns as axis titles
METADATA_TITLES = {"dx": "diagnosis (dx)", "dx_type": "how the diagnosis was confirmed (dx_type)",
                   "localization": "body site (localization)", "sex": "sex", "age": "age (years)"}


def heatmap(table: pd.DataFrame, title: str, fmt: str = ".0%", colorscale="Blues") -> go.Figure:
    """A table as a heatmap with its values as text; the axes titled by the table's index and column names
    (HAM10000's metadata columns in words, :data:`METADATA_TITLES`)."""
    fig = go.Figure(go.Heatmap(
        z=table.to_numpy(dtype=float), x=[str(c) for c in table.columns],
        y=[str(r) for r in table.index], colorscale=colorscale,
        text=[[format(v, fmt) for v in row] for row in table.to_numpy(dtype=float)],
        texttemplate="%{text}", hovertemplate="%{y} / %{x}: %{text}<extra></extra>"))
    height = max(300, 28 * len(table) + 120)
    ytitle = METADATA_TITLES.get(table.index.name, table.index.name)
    fig.update_layout(title=title, height=height,
                      xaxis_title=METADATA_TITLES.get(table.columns.name, table.columns.name),
                      # a y title longer than the plot is tall runs off it: wrapped to the plot's height
                      yaxis_title=_wrap(ytitle, max(12, (height - 180) // 7)) if ytitle else ytitle,
                      yaxis_autorange="reversed")
    return fig


def box_by_class(table: pd.DataFrame, column: str, title: str, ytitle: str | None = None,
                 points: bool | str = False) -> go.Figure:
    """Box plot of ``column`` per class (``table`` has a ``dx`` column)."""
    fig = go.Figure()
    for c in CLASSES:
        v = table.loc[table["dx"] == c, column].dropna()
        if len(v):
            fig.add_box(y=v, name=c, marker_color=CLASS_COLOURS[c], boxpoints=points,
                        boxmean=True)
    fig.update_layout(title=title, yaxis_title=ytitle or column, showlegend=False, height=420)
    return fig


def image_gallery(images_by_class: dict[str, list[np.ndarray]], captions: dict | None = None,
                  title: str = "Sample images per class") -> go.Figure:
    """A grid: one row per class, its images left to right (PNG-encoded, so the HTML stays small)."""
    rows = [c for c in images_by_class if len(images_by_class[c])]
    ncols = max(len(images_by_class[c]) for c in rows)
    fig = make_subplots(rows=len(rows), cols=ncols, horizontal_spacing=0.005,
                        vertical_spacing=0.01, row_titles=rows)
    for r, c in enumerate(rows, start=1):
        for k, img in enumerate(images_by_class[c], start=1):
            cap = (captions or {}).get(c, [None] * ncols)[k - 1]
            fig.add_trace(go.Image(source=png_data_uri(img), name=cap or c,
                                   hovertemplate=f"{cap or c}<extra></extra>"), row=r, col=k)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    h, w = np.asarray(next(iter(images_by_class[rows[0]]))).shape[:2]
    cell = min(160, (COLUMN_PX - 70) / ncols)  # the row titles (class names) take the right margin
    fig.update_layout(title=title, height=int(len(rows) * cell * h / w) + 80, width=int(ncols * cell) + 70,
                      margin=dict(l=10, r=60, t=50, b=10))
    return fig


def split_bars(summary: pd.DataFrame) -> go.Figure:
    """Images per class in each part of a split (``summary`` from hamviz.splits.split_summary)."""
    body = summary.drop(index="total", errors="ignore").drop(columns="total", errors="ignore")
    fig = go.Figure()
    for part in body.columns:
        share = body[part] / body.sum(axis=1)
        fig.add_bar(name=part, x=list(body.index), y=body[part], marker_color=SPLIT_COLOURS.get(part),
                    customdata=share, hovertemplate="%{x}: %{y:,} images (%{customdata:.1%})"
                                                    f"<extra>{part}</extra>")
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="images (log scale)",
                      title="Images per class in each split part", height=420)
    return fig


def scatter_by_class(table: pd.DataFrame, x: str, y: str, title: str, max_points: int = 4000,
                     seed: int = 0, **labels) -> go.Figure:
    """Scatter of two columns coloured by class (subsampled to ``max_points`` to keep HTML light)."""
    t = table.dropna(subset=[x, y])
    if len(t) > max_points:
        t = t.sample(max_points, random_state=seed)
    fig = px.scatter(t, x=x, y=y, color="dx", category_orders={"dx": list(CLASSES)},
                     color_discrete_map=CLASS_COLOURS, opacity=0.5, labels=labels, title=title,
                     render_mode="svg")
    fig.update_traces(marker_size=4)
    fig.update_layout(height=460)
    return fig


# --------------------------------------------------------------------------------------------- evaluation
def training_curves(history: dict[str, list[float]], title: str = "Training curves") -> go.Figure:
    """Keras ``History.history``: loss (left) and the accuracy-like metric (right: 'accuracy', 'acc' or the
    first other non-loss key), train solid, validation ('val_*') dashed, epochs from 1; a dotted line marks
    the epoch of the lowest val_loss."""
    if "loss" not in history:
        raise ValueError(f"history has no 'loss' (keys: {', '.join(history)})")
    skip = {"lr", "learning_rate", "best_epoch"}
    metric = next((k for k in ("accuracy", "acc") if k in history),
                  next((k for k in history if "loss" not in k and not k.startswith("val_")
                        and k not in skip), None))
    panels = ["loss"] + ([metric] if metric else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[field_name(p) for p in panels],
                        horizontal_spacing=0.1)
    for col, key in enumerate(panels, start=1):
        for part, k, dash in (("train", key, "solid"), ("val", f"val_{key}", "dash")):
            if k in history:
                v = list(history[k])
                fig.add_scatter(x=list(range(1, len(v) + 1)), y=v, name=part, legendgroup=part,
                                showlegend=col == 1, mode="lines+markers",
                                line=dict(color=SPLIT_COLOURS[part], dash=dash),
                                hovertemplate=f"epoch %{{x}}: {k} %{{y:.4f}}<extra></extra>", row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    if len(history.get("val_loss", [])):
        best = int(np.nanargmin(history["val_loss"])) + 1
        for col in range(1, len(panels) + 1):
            fig.add_vline(x=best, line_dash="dot", line_color="grey", row=1, col=col)
        title = f"{title} (best validation loss at epoch {best})"
    fig.update_layout(title=title, height=380)
    return fig


def curves_compared(histories: Mapping[str, Mapping[str, list[float]]], keys=("loss", "val_loss"),
                    title: str = "Training curves compared") -> go.Figure:
    """One panel per history key in ``keys`` (e.g. loss and val_loss), one line per run: ``histories`` maps a
    run's name (e.g. a strategy) to its Keras ``History.history``; epochs from 1. A key no run has is left out.

    Raises ValueError when ``histories`` is empty."""
    if not histories:
        raise ValueError("no runs to compare")
    keys = [k for k in keys if any(k in h for h in histories.values())]
    fig = make_subplots(rows=1, cols=max(len(keys), 1), subplot_titles=[field_name(k) for k in keys],
                        horizontal_spacing=0.1)
    palette = px.colors.qualitative.D3
    for col, key in enumerate(keys, start=1):
        for i, (name, h) in enumerate(histories.items()):
            if key in h:
                v = list(h[key])
                fig.add_scatter(x=list(range(1, len(v) + 1)), y=v, name=name, legendgroup=name, showlegend=col == 1,
                                mode="lines+markers", line=dict(color=palette[i % len(palette)]),
                                hovertemplate=f"{name}, epoch %{{x}}: {key} %{{y:.4f}}<extra></extra>",
                                row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(title=title, height=380)
    return fig


def ensemble_growth(table: pd.DataFrame,
                    metrics=("test_auc", "test_balanced_accuracy", "test_sensitivity", "test_specificity"),
                    title: str = "The ensemble as members are added") -> go.Figure:
    """One line per metric over the steps of :func:`hamviz.ensemble.incremental`'s table (columns step, added and
    the ``metrics``); the x axis names the member added at each step. A weak member shows as a dip at its step."""
    missing = [c for c in ("step", "added", *metrics) if c not in table.columns]
    if missing:
        raise ValueError(f"ensemble table lacks {missing} (has {list(table.columns)})")
    ticks = [f"{int(st)}: +{a}" for st, a in zip(table["step"], table["added"])]
    fig = go.Figure()
    for m in metrics:
        fig.add_scatter(x=ticks, y=table[m], name=field_name(m.removeprefix("test_")), mode="lines+markers",
                        hovertemplate=f"%{{x}}: {field_name(m)} %{{y:.3f}}<extra></extra>")
    fig.update_layout(title=title, xaxis_title="members (added in this order)", yaxis_title="test part",
                      yaxis_range=[0, 1.02], height=400)
    return fig


def confusion_heatmap(cm_counts: pd.DataFrame, title: str = "Confusion matrix",
                      normalized: pd.DataFrame | None = None) -> go.Figure:
    """Confusion matrix (rows true, top to bottom; columns predicted) coloured by the row-normalised share
    (computed from the counts if not given); each cell shows the count and the row percentage."""
    if normalized is None:
        normalized = cm_counts.div(cm_counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    fig = heatmap(normalized, title)
    counts, shares = cm_counts.to_numpy(dtype=float), normalized.to_numpy(dtype=float)
    fig.update_traces(zmin=0, zmax=1, colorbar_title="row share",
                      text=[[f"{c:,.0f}<br>{s:.0%}" for c, s in zip(cr, sr)] for cr, sr in zip(counts, shares)],
                      hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>")
    width = max(460, 55 * len(cm_counts.columns) + 200)
    fig.update_layout(title=_wrap(title, width // 10), xaxis_title="predicted", yaxis_title="true",
                      height=max(360, 45 * len(cm_counts) + 140) + 20 * _wrap(title, width // 10).count("<br>"),
                      width=width)
    return fig


def roc_curves(y_true, proba, classes=CLASSES, title: str = "ROC, one-vs-rest") -> go.Figure:
    """One-vs-rest ROC curve (sklearn ``roc_curve``) per class present in ``y_true``, AUC in the legend,
    the chance diagonal for reference, equal axes."""
    from .metrics import check_inputs
    y, p = check_inputs(y_true, proba, classes)
    fig = go.Figure()
    for k, name in enumerate(classes):
        pos = y == k
        if 0 < pos.sum() < len(y):
            fpr, tpr, _ = roc_curve(pos, p[:, k])
            fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUC {roc_auc_score(pos, p[:, k]):.2f})",
                            line_color=CLASS_COLOURS.get(name),
                            hovertemplate=f"{name}: FPR %{{x:.3f}}, TPR %{{y:.3f}}<extra></extra>")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", showlegend=False,
                    line=dict(color="grey", dash="dash"), hoverinfo="skip")
    return _square_roc(fig, title, "false positive rate", "true positive rate", 600)


def _square_roc(fig: go.Figure, title: str, xtitle: str, ytitle: str, width: int) -> go.Figure:
    """A ROC figure's layout: both axes exactly 0 to 1 on a square plot (the axes shrink their domain to keep it
    square, never stretch a range), the legend below it, one entry a line (a long legend beside the plot squeezed
    the axes to a sliver and stretched the sensitivity axis to -2..3), the title wrapped to the width."""
    legend_rows, title = sum(1 for t in fig.data if t.showlegend is not False), _wrap(title, width // 10)
    fig.update_layout(title=title, xaxis=dict(title=xtitle, range=[0, 1], constrain="domain"),
                      yaxis=dict(title=ytitle, range=[0, 1.01], scaleanchor="x", scaleratio=1, constrain="domain"),
                      legend=dict(orientation="v", x=0, xanchor="left", y=-0.12, yanchor="top"),  # one a line
                      height=80 + 20 * title.count("<br>") + (width - 80) + 70 + 20 * legend_rows, width=width,
                      margin=dict(l=60, r=20, t=80 + 20 * title.count("<br>"), b=70 + 20 * legend_rows))
    return fig


def reliability_diagram(table: pd.DataFrame, ece: float, title: str = "Reliability diagram") -> go.Figure:
    """Accuracy per confidence bin (a bar at the bin's mean confidence; ``table`` and ``ece`` from
    :func:`hamviz.metrics.calibration`) against the diagonal of perfect calibration; counts in the hover."""
    width = 0.8 * (table["bin_upper"] - table["bin_lower"])
    fig = go.Figure(go.Bar(x=table["confidence"], y=table["accuracy"], width=width, name="accuracy",
                           marker_color=SPLIT_COLOURS["train"], customdata=table[["count"]].to_numpy(),
                           hovertemplate="confidence %{x:.3f}: accuracy %{y:.3f}, %{customdata[0]:,} "
                                         "samples<extra></extra>"))
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                    line=dict(color="grey", dash="dash"), hoverinfo="skip")
    fig.update_layout(title=_wrap(f"{title} (ECE {ece:.3f}, i.e. {100 * ece:.1f} points)", 56),
                      xaxis_title="confidence (top-label probability)",
                      yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=460,
                      width=560, showlegend=False)
    return fig


def metric_bars(table: pd.DataFrame, metrics=("accuracy", "balanced_accuracy", "macro_f1"),
                title: str = "Metrics", ci: dict | None = None) -> go.Figure:
    """Grouped bars: one group per row of ``table`` (models, strategies, e.g. from
    :func:`hamviz.metrics.compare`), one bar per metric; optional error bars from ``ci[row][metric]`` =
    (low, high) or {"low": .., "high": ..} (so ``{name: result["ci"]}`` of evaluate() results works)."""
    rows = list(table.index)
    fig = go.Figure()
    for m in metrics:
        v = table[m].to_numpy(dtype=float)
        bar = dict(x=[str(r) for r in rows], y=v, name=field_name(m), text=[f"{x:.3f}" for x in v],
                   textposition="outside")
        if ci is not None:
            lh = [ci.get(r, {}).get(m) for r in rows]
            lh = [(b["low"], b["high"]) if isinstance(b, dict) else b or (np.nan, np.nan) for b in lh]
            low, high = (np.array([np.nan if x is None else x for x in col], dtype=float) for col in zip(*lh))
            bar["error_y"] = dict(type="data", symmetric=False, array=high - v, arrayminus=v - low)
        fig.add_bar(**bar)
    fig.update_layout(barmode="group", title=title, yaxis_title="value", height=420,
                      legend_title="metric")
    return fig


def image_grid(images, captions=None, ncols: int = 4, title: str = "") -> go.Figure:
    """Images in a grid, left to right, top to bottom, each with its caption as hover text and label."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    caps = list(captions) if captions is not None else [""] * n
    cell = (COLUMN_PX - 20) / ncols
    shown = [_wrap(c.split(": ", 1)[-1], max(10, int(cell / 6))) for c in caps]  # 10 px text: about 6 px a letter
    lines = max([s.count("<br>") + 1 for s in shown if s] or [0])
    h, w = np.asarray(images[0]).shape[:2] if n else (1, 1)
    height = int(nrows * (cell * h / w + 14 * lines + 8)) + 70
    fig = make_subplots(rows=nrows, cols=ncols, horizontal_spacing=0.01,
                        vertical_spacing=min(0.3, (14 * lines + 8) / height) if nrows > 1 else 0.0,
                        subplot_titles=shown)
    for k, (img, cap) in enumerate(zip(images, caps)):
        fig.add_trace(go.Image(source=png_data_uri(img), name=cap, hovertemplate=f"{cap}<extra></extra>"),
                      row=k // ncols + 1, col=k % ncols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=title, height=height, width=COLUMN_PX, margin=dict(l=10, r=10, t=50 + 14 * lines, b=10))
    return fig


METHOD_STYLE = {
    "JPEG": dict(color="#4C78A8", dash="solid", symbol="circle"),
    "JPEG payload": dict(color="#4C78A8", dash="dot", symbol="circle-open"),
    "K-means": dict(color="#F58518", dash="solid", symbol="square"),
    "autoencoder (float32 latent)": dict(color="#54A24B", dash="solid", symbol="diamond"),
    "autoencoder (8-bit latent)": dict(color="#54A24B", dash="dash", symbol="diamond-open"),
    "autoencoder (entropy-coded)": dict(color="#54A24B", dash="dot", symbol="x"),
}


def rate_figure(table: pd.DataFrame, metrics=("balanced_accuracy", "accuracy"), reference: dict | None = None,
                title: str = "What the classifier makes of compressed images",
                method_references: Mapping[str, dict] | None = None) -> go.Figure:
    """``metrics`` (one panel each) against bits per pixel (log axis), one line per method; the
    uncompressed model as a horizontal reference line (``reference``: metric -> value). ``method_references``:
    method -> {metric: value} for a method scored on its own subset of the images (K-means on fewer images): its
    own uncompressed line, dotted in the method's colour. ``table``: rows with method, setting, bpp, rate_kind."""
    fig = make_subplots(rows=1, cols=len(metrics), shared_xaxes=True, horizontal_spacing=0.08,
                        subplot_titles=[field_name(m) for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        for method, sub in table.groupby("method", sort=False):
            sub = sub.sort_values("bpp")
            st = METHOD_STYLE.get(method, {})
            fig.add_trace(go.Scatter(
                x=sub["bpp"], y=sub[metric], mode="lines+markers", name=method, legendgroup=method,
                showlegend=col == 1, line=dict(color=st.get("color"), dash=st.get("dash", "solid")),
                marker=dict(symbol=st.get("symbol", "circle"), size=8),
                text=sub["setting"], customdata=sub[["rate_kind"]].to_numpy(),
                hovertemplate=f"{method} %{{text}}<br>%{{x:.3f}} bpp (%{{customdata[0]}})<br>{field_name(metric)}: "
                              "%{y:.3f}<extra></extra>"), row=1, col=col)
        lines = ([(reference[metric], f"uncompressed {reference[metric]:.3f}", "dash", "#888")]
                 if reference is not None else [])
        lines += [(own[metric], f"uncompressed, {method} images {own[metric]:.3f}", "dot",
                   METHOD_STYLE.get(method, {}).get("color", "#888"))
                  for method, own in (method_references or {}).items()]
        # the highest line's label above it, the others' below theirs (at alternating ends): two close lines'
        # labels never meet between them
        for k, (value, text, dash, colour) in enumerate(sorted(lines, key=lambda line: -line[0])):
            where = "top right" if k == 0 else ("bottom left" if k % 2 else "bottom right")
            fig.add_hline(y=value, line_dash=dash, line_color=colour, row=1, col=col, annotation_text=text,
                          annotation_position=where)
    fig.update_xaxes(type="log", title_text="bits per pixel (log scale)")
    fig.update_layout(title=title, height=480, legend=dict(orientation="h", y=-0.25))
    return fig


# ------------------------------------------------------------------ benign vs malignant
def binary_roc(y, probs: Mapping[str, np.ndarray], title: str = "ROC: malignant vs benign") -> go.Figure:
    """One ROC curve (scikit-learn ``roc_curve``) per member or ensemble in ``probs`` ({name: p}), AUC in
    the legend, the chance diagonal, equal axes. ValueError if ``y`` lacks benign or malignant images."""
    y = check_binary(y)
    if not 0 < y.sum() < len(y):
        raise ValueError("a ROC curve needs both benign and malignant images in y")
    colours = px.colors.qualitative.D3
    fig = go.Figure()
    for k, (name, p) in enumerate(probs.items()):
        p = check_probability(p, len(y), f"probs[{name!r}]")
        fpr, tpr, _ = roc_curve(y, p)
        fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{name} (AUC {roc_auc_score(y, p):.3f})",
                        line_color=colours[k % len(colours)],
                        hovertemplate=f"{name}: FPR %{{x:.3f}}, TPR %{{y:.3f}}<extra></extra>")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", showlegend=False,
                    line=dict(color="grey", dash="dash"), hoverinfo="skip")
    return _square_roc(fig, title, "false positive rate (1 - specificity)", "true positive rate (sensitivity)", 640)


def confusion_2x2(report: Mapping, title: str | None = None) -> go.Figure:
    """The 2x2 confusion matrix of a :func:`binary_report` (rows true benign/malignant, columns
    predicted), coloured by row share, each cell with its count and row percentage."""
    cm = pd.DataFrame([[report["tn"], report["fp"]], [report["fn"], report["tp"]]],
                      index=pd.Index(list(BINARY_CLASSES), name="true"),
                      columns=pd.Index(list(BINARY_CLASSES), name="predicted"))
    title = title or f"Benign vs malignant at threshold {report['threshold']:.3g}"
    return confusion_heatmap(cm, title)


def effects_by_rate(table: pd.DataFrame, title: str = "Change in balanced accuracy against rate, every replicate",
                    ytitle: str = "change in balanced accuracy (points)", margin: float | None = 2.0) -> go.Figure:
    """Each coding's effect against its rate: ``table`` rows with "method", "setting", "bpp", "mean", "low",
    "high" and "per_seed" ({seed: effect}); one colour per method, the mean over replicates with its 95 % interval
    as an error bar, every replicate as a small open marker, a line at 0 (no effect) and one at ``-margin``."""
    fig = go.Figure()
    colours = px.colors.qualitative.D3
    for i, (method, rows) in enumerate(table.sort_values("bpp").groupby("method", sort=False)):
        c = colours[i % len(colours)]
        fig.add_trace(go.Scatter(
            x=rows["bpp"], y=rows["mean"], mode="lines+markers", name=f"{method}: mean over replicates", line_color=c,
            text=rows["setting"], error_y=dict(type="data", symmetric=False, array=rows["high"] - rows["mean"],
                                                arrayminus=rows["mean"] - rows["low"]),
            hovertemplate="%{text}: %{y:+.1f} points at %{x:.2f} bpp<extra></extra>"))
        xs = [b for b, ps in zip(rows["bpp"], rows["per_seed"]) for _ in ps]
        ys = [v for ps in rows["per_seed"] for v in ps.values()]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=f"{method}: each replicate", marker=dict(
            color=c, symbol="circle-open", size=6), hovertemplate="%{y:+.1f} points<extra></extra>"))
    fig.add_hline(y=0, line_dash="dash", line_color="grey", annotation_text="no effect",
                  annotation_position="top left")
    if margin:
        fig.add_hline(y=-margin, line_dash="dot", line_color="grey", annotation_text=f"-{margin:g} points",
                      annotation_position="bottom left")
    fig.update_layout(title=title, xaxis=dict(title="bits per pixel", type="log"), yaxis_title=ytitle,
                      legend=dict(orientation="h", y=-0.25), height=520)
    return fig


def _wrap(text: str, width: int = 48) -> str:
    import textwrap
    return "<br>".join(textwrap.wrap(str(text), width)) or str(text)


def verdicts_forest(verdicts: Mapping[str, Mapping], title: str = "Every verdict, every replicate") -> go.Figure:
    """One panel per verdict (a chapter's recorded ``verdicts``: key -> {"question", "per_seed" {seed: effect},
    "mean", "low", "high", "null", "status", "units", "level"}): each replicate's effect as an open marker, the
    mean over replicates with its pooled interval (:func:`hamviz.replicates.decide`) as a bar, filled when the
    verdict is "shown", and a dashed line at no effect. Panels keep their own scale (verdicts differ in units).
    Raises ValueError on an empty mapping."""
    items = list(verdicts.values())
    if not items:
        raise ValueError("verdicts_forest: no verdicts to draw")
    fig = make_subplots(rows=len(items), cols=1, vertical_spacing=min(0.08, 0.6 / len(items)))
    for i, v in enumerate(items, start=1):
        seeds = [(s, x) for s, x in v["per_seed"].items() if x is not None]
        shown = v.get("status") == "shown"
        colour = "#2c7fb8" if shown else "#7f7f7f"
        name = _wrap(v["question"], 95)
        fig.add_trace(go.Scatter(x=[x for _, x in seeds], y=[0.0] * len(seeds), mode="markers", showlegend=False,
                                 marker=dict(symbol="circle-open", size=9, color=colour),
                                 text=[f"seed {s}" for s, _ in seeds],
                                 hovertemplate="%{text}: %{x:.3g}<extra></extra>"), row=i, col=1)
        if v.get("mean") is not None:
            err = {} if v.get("low") is None else dict(
                error_x=dict(type="data", symmetric=False, array=[v["high"] - v["mean"]],
                             arrayminus=[v["mean"] - v["low"]], color=colour, thickness=2))
            fig.add_trace(go.Scatter(x=[v["mean"]], y=[0.35], mode="markers", showlegend=False, **err,
                                     marker=dict(symbol="diamond" if shown else "diamond-open", size=11,
                                                 color=colour),
                                     hovertemplate=f"mean %{{x:.3g}}: {v.get('status')}<extra></extra>"),
                          row=i, col=1)
        fig.add_vline(x=float(v.get("null", 0.0)), line_dash="dash", line_color="grey", row=i, col=1)
        fig.update_yaxes(visible=False, range=[-0.5, 0.8], row=i, col=1)
        fig.update_xaxes(title_text=v.get("units") or "", title_standoff=0, title_font_size=11, row=i, col=1)
        fig.add_annotation(text=f"<b>{v.get('status')}</b>: {name}", xref=f"x{i if i > 1 else ''} domain",
                           yref=f"y{i if i > 1 else ''} domain", x=0, y=1.0, xanchor="left", yanchor="bottom",
                           showarrow=False, align="left", font=dict(size=11))
    fig.update_layout(title=dict(text=_wrap(title, 90), y=1, yanchor="top", pad=dict(t=12)),
                      height=170 + 130 * len(items),
                      margin=dict(t=110, l=30, r=20), showlegend=False)
    return fig


def replicate_dots(table: pd.DataFrame, category: str, values: Sequence[str], replicate: str = "seed", *,
                   order=None, title: str = "", labels: Mapping[str, str] | None = None) -> go.Figure:
    """Every replicate as a dot and the mean over replicates as a bar, one panel per column of ``values``
    (e.g. validation and test balanced accuracy), one position per ``category`` value (a model, a strategy):
    ``table`` has one row per (``category``, ``replicate``). A figure of means alone hides how far training seeds
    move a recipe; this one shows each seed. ``order``: the categories in their order (default: as they come).
    Raises KeyError naming a missing column."""
    from plotly.subplots import make_subplots
    values = list(values)
    missing = [c for c in (category, replicate, *values) if c not in table.columns]
    if missing:
        raise KeyError(f"replicate_dots: the table has no column(s) {missing}")
    labels = dict(labels or {})
    order = [str(c) for c in (order if order is not None else pd.unique(table[category]))]
    names = [labels.get(v, field_name(v)) for v in values]
    fig = make_subplots(rows=1, cols=len(values), subplot_titles=names, shared_yaxes=False)
    t = table.assign(_c=table[category].astype(str))
    for i, v in enumerate(values, start=1):
        mean = t.groupby("_c")[v].mean().reindex(order)
        fig.add_bar(x=order, y=mean, marker_color="rgba(31,119,180,0.25)", name="mean over replicates",
                    showlegend=i == 1, legendgroup="mean", row=1, col=i,
                    hovertemplate="%{x}, mean: %{y:.3f}<extra></extra>")
        fig.add_trace(go.Scatter(x=t["_c"], y=t[v], mode="markers", name="each replicate", showlegend=i == 1,
                                 legendgroup="seed", marker=dict(color="#1f77b4", size=7),
                                 customdata=t[replicate],
                                 hovertemplate=f"%{{x}}, {replicate} %{{customdata}}: %{{y:.3f}}<extra></extra>"),
                      row=1, col=i)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, row=1, col=i)
    fig.update_layout(title=_wrap(title, 90), height=460, margin=dict(t=120),  # the legend above the panels,
                      legend=dict(orientation="h", yanchor="bottom", y=1.12, xanchor="right", x=1))  # clear of labels
    return fig


def replicate_lines(table: pd.DataFrame, x: str, y: str, color: str, replicate: str = "seed", *, order=None,
                    title: str = "", labels: Mapping[str, str] | None = None) -> go.Figure:
    """Every replicate as a thin line and the mean over replicates as a bold one, one colour per ``color``
    value: ``table`` has one row per (``color``, ``replicate``, ``x``) with the value ``y``; ``order``: the x
    values in their order (categorical axis). Raises KeyError naming a missing column."""
    missing = [c for c in (x, y, color, replicate) if c not in table.columns]
    if missing:
        raise KeyError(f"replicate_lines: the table has no column(s) {missing}")
    labels = dict(labels or {})
    order = list(order) if order is not None else list(pd.unique(table[x]))
    fig = go.Figure()
    colours = px.colors.qualitative.D3
    for i, (name, rows) in enumerate(table.groupby(color, sort=False)):
        c = colours[i % len(colours)]
        for seed, r in rows.groupby(replicate, sort=False):
            r = r.set_index(x).reindex(order)
            fig.add_trace(go.Scatter(x=[str(v) for v in order], y=r[y], mode="lines", line=dict(color=c, width=1),
                                     opacity=0.45, legendgroup=str(name), showlegend=False,
                                     hovertemplate=f"{name}, {replicate} {seed}: %{{y:.3f}}<extra></extra>"))
        mean = rows.groupby(x)[y].mean().reindex(order)
        fig.add_trace(go.Scatter(x=[str(v) for v in order], y=mean, mode="lines+markers", name=f"{name} (mean)",
                                 line=dict(color=c, width=3), legendgroup=str(name),
                                 hovertemplate=f"{name}, mean: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=_wrap(title, 90), xaxis=dict(title=labels.get(x, x), type="category"),
                      yaxis_title=labels.get(y, y), legend=dict(orientation="h", y=-0.25), height=480)
    return fig
