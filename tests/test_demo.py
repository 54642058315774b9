"""The offline demo and its generated data."""

import numpy as np

from kerasxai import demo
from kerasxai.evaluation import synthetic


def test_shapes_masks_are_where_objects_are_drawn():
    images, labels, masks = synthetic.shapes_dataset(6, size=32, seed=3)
    background_max = 0.35
    for img, mask in zip(images, masks):
        assert mask.sum() > 20
        assert (img[mask].max(axis=-1) >= 0.6).all()  # object pixels carry the bright colour
        assert (img[~mask] <= background_max).all()  # the rest is background noise
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_peak_in_mask():
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 1] = maps[1, 3, 3] = 1
    masks = np.zeros((2, 4, 4), bool)
    masks[:, 1, 1] = True
    assert synthetic.peak_in_mask(maps, masks).tolist() == [True, False]


def test_demo_runs_and_writes_the_figure(tmp_path, monkeypatch):
    figures = []
    plot = demo.plot_explanations
    monkeypatch.setattr(demo, "plot_explanations", lambda *a, **k: figures.append(plot(*a, **k)) or figures[-1])
    result = demo.run(str(tmp_path), epochs=1, n_train=64, vit_epochs=1)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    from kerasxai.methods.explain import METHODS

    METHODS = [m for m in METHODS if METHODS[m].kind != "attention"]  # every method a CNN has
    assert list(result["peak_on_object"]) == METHODS
    assert (tmp_path / "demo_vit.png").stat().st_size > 10_000
    assert list(result["vit_peak_on_object"]) == ["gradcam", "layercam", "attention_rollout", "transformer_attribution"]
    # panels name the layer and the class explained, as every figure does
    fig, vit_fig = figures
    vit_titles = [ax.get_title() for ax in vit_fig.axes[:6]]
    assert vit_titles[1].startswith("CNN gradcam @ last_conv\nfor ")
    assert vit_titles[2].startswith("ViT gradcam @ block2_norm1\nfor ")
    assert vit_titles[4] == "ViT attention_rollout\nany class"
    assert len(vit_fig.axes[2].lines) == 2 * 7  # the 8 x 8 patch grid: 7 lines each way
    first_row = [ax.get_title() for ax in fig.axes[: 1 + len(METHODS)]]
    top = first_row[0].split(":")[0]  # "disc: 99.8%": the top class, which the maps explain
    index = synthetic.CLASS_NAMES.index(top)
    assert first_row[1] == f"gradcam @ last_conv\nfor {top} ({index})"
    assert first_row[1 + list(METHODS).index("saliency")] == f"saliency @ input\nfor {top} ({index})"
