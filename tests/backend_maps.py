"""Maps of every method for saved models, on whatever backend KERAS_BACKEND names.

    KERAS_BACKEND=jax python tests/backend_maps.py MODELS_DIR IMAGES.npz OUT.npz

Used by tests/test_backends.py: the same weights, loaded under each backend, must give
the same maps. Runs the public functions exactly as a user would.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasxai.evaluation.synthetic  # noqa: E402,F401  (registers the small ViT's layers for loading)

MODELS = ("functional_gap", "nested_sigmoid", "sequential", "signal_1d")
# The long tail of graphs: each model with the calls that explain it at a given call, input or head.
GRAPH_CASES = {
    "shared_twice": [("gradcam", {"target": 1}), ("gradcam", {"target": 1, "layer": ("shared", 0)}),
                     ("gradcam", {"target": 1, "layer": ("shared", 1)}), ("layercam", {"layer": ("shared", 1)}),
                     ("hirescam", {"target": 2, "layer": ("shared", 0)})],
    "reused_branches": [("gradcam", {"target": 2, "layer": ("shared", 0)}),
                        ("gradcam", {"target": 2, "layer": ("shared", 1)}), ("eigencam", {"layer": ("shared", 1)})],
    "two_inputs": [("gradcam", {"target": 0, "input": "b"}), ("gradcam", {"target": 0, "input": "a"}),
                   ("saliency", {"target": 0, "input": "b"}), ("integrated_gradients", {"input": "b", "steps": 8})],
    "siamese": [("gradcam", {"target": 1, "input": "right"}), ("gradcam", {"target": 1, "input": "left"})],
    "two_heads": [("cam", {"target": 2, "output": "cls"}), ("cam", {"target": 1, "output": "aux"}),
                  ("gradcam", {"target": 1, "output": "aux"})],
    "channels_first": [("gradcam", {"target": 1}), ("layercam", {"target": 1}), ("saliency", {"target": 1}),
                       ("gradcam_plus_plus", {"target": 0, "layer": "c1"})],
}
ANCHORS = np.array([[y, x, y + 6, x + 6] for y in range(0, 12, 3) for x in range(0, 12, 3)], "float32")
REGION = np.zeros((12, 12), bool)
REGION[3:8, 2:9] = True


def decode_detector(out):
    """The test detector's boxes: each 4x4-grid cell's anchor moved by its regression; its class logits."""
    n = keras.ops.shape(out["cls"])[0]
    boxes = keras.ops.add(keras.ops.convert_to_tensor(ANCHORS)[None], 2.0 * keras.ops.reshape(out["box"], (n, 16, 4)))
    return boxes, keras.ops.reshape(out["cls"], (n, 16, 3))


def _beyond_classification():
    from kerasxai.targets import Detection, Segmentation

    box = Detection([[0, 0, 6, 6], [3, 3, 9, 9], [6, 3, 12, 9]], [0, 2, 1], decode_detector, iou=0.2)
    return {
        "segmenter": [("gradcam", {"target": Segmentation(1)}), ("layercam", {"target": Segmentation(2, mask=REGION)}),
                      ("saliency", {"target": Segmentation(1)}), ("occlusion", {"target": Segmentation(1), "window": 4,
                                                                                   "stride": 4}),
                      ("rise", {"target": Segmentation(2, mask=REGION), "n": 32, "cells": 3}),
                      ("integrated_gradients", {"target": Segmentation(1), "steps": 8})],
        "detector": [("gradcam", {"target": box}), ("saliency", {"target": box}), ("hirescam", {"target": box}),
                     ("layercam", {"target": box})],  # (a path method crosses the IoU threshold: not compared)
    }


@keras.saving.register_keras_serializable(package="kerasxai_tests")
class Block(keras.layers.Layer):
    """A transformer block whose own call() runs its norm, attention and MLP (as keras-hub's ViT's do)."""

    def __init__(self, dim=16, heads=2, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads = dim, heads
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.attn = keras.layers.MultiHeadAttention(heads, dim // heads, name="attn")
        self.mlp = keras.layers.Dense(dim, activation="gelu", name="mlp")

    def build(self, shape):
        self.norm.build(shape)
        self.attn.build(shape, shape)
        self.mlp.build(shape)

    def call(self, x):
        h = self.norm(x)
        x = x + self.attn(h, h)
        return x + self.mlp(x)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads}


def _transformers():
    return {
        "vit": [("gradcam", {"target": 1}), ("hirescam", {"target": 2}), ("attention_rollout", {}),
                ("attention_rollout", {"discard_ratio": 0.2, "head_fusion": "max"}),
                ("transformer_attribution", {"target": 0})],
        "vit_blocks": [("gradcam", {"target": 1}), ("layercam", {"target": 2}), ("attention_rollout", {}),
                       ("transformer_attribution", {"target": 1})],
    }


OPTIONS = {"rise": {"n": 64, "cells": 3, "seed": 2}, "occlusion": {"window": 6, "stride": 3}, "scorecam": {"n": 4}, "smoothgrad": {"n": 4, "seed": 3}, "integrated_gradients": {"steps": 8}}


def methods_for(name, model):
    from kerasxai.methods import table

    skip = {"cam"} if name in ("sequential", "nested_sigmoid", "signal_1d") else set()
    return [m for m in table.methods_for(model) if m not in skip]


def compute(models_dir, images):
    """``{f"{model}/{method}": maps}`` for every model and method."""
    import kerasxai
    from kerasxai.methods import engine

    out = {}
    for name in MODELS:
        model = keras.models.load_model(os.path.join(models_dir, f"{name}.keras"))
        x = images[name]
        for method in methods_for(name, model):
            out[f"{name}/{method}"] = getattr(kerasxai, method)(model, x, **OPTIONS.get(method, {}))
        out[f"{name}/logits"] = engine.predict(kerasxai.get_probe(model, ()), x)["logits"]
    for name, cases in {**GRAPH_CASES, **_beyond_classification(), **_transformers()}.items():
        model = keras.models.load_model(os.path.join(models_dir, f"{name}.keras"))
        x = graph_inputs(model, images, name)
        for i, (method, kwargs) in enumerate(cases):
            out[f"{name}/{i}:{method}"] = getattr(kerasxai, method)(model, x, **kwargs)
    return out


def graph_inputs(model, images, name):
    """The model's inputs from ``images``: ``name`` for one input, ``name.<input>`` for each of several."""
    if len(model.inputs) == 1:
        return images[name]
    return [images[f"{name}.{t.name}"] for t in model.inputs]


if __name__ == "__main__":
    models_dir, images_path, out_path = sys.argv[1:4]
    with np.load(images_path) as data:
        images = dict(data)
    np.savez(out_path, **compute(models_dir, images))
