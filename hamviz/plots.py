"""Plotly figures shared by the chapters. Every function returns a ``go.Figure``; nothing is shown here.

Colours are fixed per class (:data:`CLASS_COLOURS`) so a class looks the same in every chapter.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from PIL import Image

from .data import CLASSES

CLASS_COLOURS = dict(zip(CLASSES, px.colors.qualitative.D3))
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


def heatmap(table: pd.DataFrame, title: str, fmt: str = ".0%", colorscale="Blues") -> go.Figure:
    fig = go.Figure(go.Heatmap(
        z=table.to_numpy(dtype=float), x=[str(c) for c in table.columns],
        y=[str(r) for r in table.index], colorscale=colorscale,
        text=[[format(v, fmt) for v in row] for row in table.to_numpy(dtype=float)],
        texttemplate="%{text}", hovertemplate="%{y} / %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=title, height=max(300, 28 * len(table) + 120),
                      xaxis_title=table.columns.name, yaxis_title=table.index.name,
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
    cell = 900 / ncols
    fig.update_layout(title=title, height=int(len(rows) * cell * h / w) + 80, width=980,
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
