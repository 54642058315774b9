"""The documentation site builds from docs/ and the docstrings, with no broken link or reference."""

import html
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_site_builds_strictly_with_every_page_the_api_and_the_notebooks(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", os.path.join(ROOT, "mkdocs.yml"),
                             "-d", str(site)], capture_output=True, text=True, env={**os.environ,
                             "NO_MKDOCS_2_WARNING": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # every page of the navigation was written, the notebooks among them
    with open(os.path.join(ROOT, "mkdocs.yml")) as fh:
        nav = yaml.load(fh, Loader=yaml.BaseLoader)["nav"]

    def pages(item):
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for value in item.values():
                yield from pages(value)
        else:
            for value in item:
                yield from pages(value)

    sources = list(pages(nav))
    assert sum(p.endswith(".ipynb") for p in sources) == len(os.listdir(os.path.join(ROOT, "notebooks")))
    for source in sources:
        stem = re.sub(r"\.(md|ipynb)$", "", source)
        built = site / ("index.html" if stem == "index" else os.path.join(stem, "index.html"))
        assert built.is_file(), f"{source} was not built"
    # the API reference is the docstrings: gradcam's first line and its example are on its page
    api = html.unescape(re.sub(r"<[^>]+>", "", (site / "api" / "methods" / "index.html").read_text()))
    assert "Grad-CAM heatmaps of model for images." in api
    assert ">>> gradcam(model, np.random.rand(2, 64, 64, 3).astype(\"float32\")).shape" in api
    notebook = (site / "notebooks" / "03_cam_family_and_layers" / "index.html").read_text()
    assert "The CAM family across architectures and depths" in notebook
