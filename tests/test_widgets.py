"""hamviz.widgets: the live explorer reacts to its controls; the static slider has one step per quality."""
import numpy as np
import pytest
from PIL import Image

from hamviz.models import small_cnn
from hamviz.widgets import CompressionExplorer, static_jpeg_slider


@pytest.fixture(scope="module")
def image(data_dir):
    return np.asarray(Image.open(data_dir / "images" / "ISIC_0024306.jpg").convert("RGB").resize((32, 32)))


@pytest.fixture(scope="module")
def model():
    return small_cnn((32, 32, 3), 7)


def test_slider_changes_image_size_and_probabilities(image, model):
    alt = {"autoencoder 3x": (np.full_like(image, 120), 4096), "K-means 16": (image // 16 * 16, 4160)}
    ex = CompressionExplorer(image, model, alt, quality=90, true_label="nv")
    high = dict(ex.state)
    png_high = ex.compressed_view.value
    assert high["mode"] == "JPEG" and high["quality"] == 90 and set(high["probabilities"]) == {
        "akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    ex.slider.value = 2
    low = ex.state
    assert low["quality"] == 2 and low["n_bytes"] < high["n_bytes"] and low["psnr"] < high["psnr"]
    assert ex.compressed_view.value != png_high
    assert not np.array_equal(low["image"], high["image"])
    assert not np.allclose(list(low["probabilities"].values()), list(high["probabilities"].values()), atol=1e-7)
    assert f"{low['n_bytes']:,.0f} bytes" in ex.info.value


def test_switching_to_a_reconstruction(image, model):
    rec = np.full_like(image, 120)
    ex = CompressionExplorer(image, model, {"autoencoder 3x": (rec, 4096)})
    ex.mode.value = "autoencoder 3x"
    assert ex.slider.disabled and ex.state["bits"] == 4096 and ex.state["quality"] is None
    np.testing.assert_array_equal(ex.state["image"], rec)
    assert ex.state["bpp"] == 4096 / (32 * 32)
    ex.mode.value = "JPEG"
    assert not ex.slider.disabled and ex.state["quality"] == 50


def test_without_a_model(image):
    ex = CompressionExplorer(image)
    assert "probabilities" not in ex.state and ex.state["n_bytes"] > 0


def test_static_slider(image, model):
    fig = static_jpeg_slider(image, [95, 50, 10, 1], model)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["95", "50", "10", "1"]
    sources = [s.args[0]["source"][0] for s in steps]
    assert len(set(sources)) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(len(s.args[0]["y"][1]) == 7 for s in steps)


def _static_page(outputs, tmp_path) -> str:
    """The HTML the book makes of a notebook whose one code cell has ``outputs`` (as hamviz.book.render.render_book)."""
    import nbformat

    from hamviz.book.pages import Page
    from hamviz.book.render import render_book
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Widgets"),
                                         nbformat.v4.new_code_cell("explorer", outputs=outputs)])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                            "version_minor": 0}}
    out = tmp_path / "book"
    (out / "chapters" / "01_w").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / "chapters" / "01_w" / "01_w.ipynb")
    render_book(out, {"profile": "tiny", "provenance": {}, "chapters": []},
                [Page("chapters/01_w/01_w", out / "chapters" / "01_w" / "01_w.ipynb", 1, "Widgets")], {})
    return (out / "chapters" / "01_w" / "01_w.html").read_text()


def test_static_page_shows_a_note_not_the_widget_repr(image, tmp_path):
    """A static page has no kernel: it used to print the explorer's Python repr (VBox(children=(HBox(...). The
    explorer gives the live widget to JupyterLab and a one-line note to everything else; any other widget a
    chapter might display gets the book's note."""
    import ipywidgets
    import nbformat
    from IPython.core.formatters import DisplayFormatter

    from hamviz.book.pages import WIDGET_NOTE
    from hamviz.widgets import STATIC_NOTE
    data, _ = DisplayFormatter().format(CompressionExplorer(image))
    assert "application/vnd.jupyter.widget-view+json" in data  # JupyterLab still gets the live widget
    assert data["text/plain"] == STATIC_NOTE and STATIC_NOTE in data["text/html"]
    page = _static_page([nbformat.v4.new_output("display_data", data=data)], tmp_path / "explorer")
    assert STATIC_NOTE in page and "VBox(" not in page and "HBox(" not in page
    slider, _ = DisplayFormatter().format(ipywidgets.IntSlider(3))
    assert slider["text/plain"].startswith("IntSlider(")
    page = _static_page([nbformat.v4.new_output("display_data", data=slider)], tmp_path / "slider")
    assert 'class="admonition note hamviz-widget"' in WIDGET_NOTE and "IntSlider(" not in page
    assert 'class="admonition note hamviz-widget"' in page  # the book's note
