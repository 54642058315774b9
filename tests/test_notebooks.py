"""The notebooks run top to bottom, offline (KERASXAI_OFFLINE=1), as CI runs them."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_have_badges_and_cleared_outputs():
    assert [p.name for p in NOTEBOOKS] == [
        "01_vgg16_saliency_gradcam.ipynb",
        "02_cats_vs_dogs_finetune.ipynb",
        "03_cam_family_and_layers.ipynb",
        "04_what_the_network_learned.ipynb",
        "05_segmenters_and_detectors.ipynb",
        "06_vision_transformers.ipynb",
    ]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        assert "colab-badge" in book.cells[0].source
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in book.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_offline(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KERASXAI_OFFLINE", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # figures were drawn
