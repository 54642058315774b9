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

MODELS = ("functional_gap", "nested_sigmoid", "sequential", "signal_1d")
OPTIONS = {"scorecam": {"n": 4}, "smoothgrad": {"n": 4, "seed": 3}, "integrated_gradients": {"steps": 8}}


def methods_for(name):
    from kerasxai.methods.explain import METHODS

    skip = {"cam"} if name in ("sequential", "nested_sigmoid", "signal_1d") else set()
    return [m for m in METHODS if m not in skip]


def compute(models_dir, images):
    """``{f"{model}/{method}": maps}`` for every model and method."""
    import kerasxai
    from kerasxai.methods import engine

    out = {}
    for name in MODELS:
        model = keras.models.load_model(os.path.join(models_dir, f"{name}.keras"))
        x = images[name]
        for method in methods_for(name):
            out[f"{name}/{method}"] = getattr(kerasxai, method)(model, x, **OPTIONS.get(method, {}))
        out[f"{name}/logits"] = engine.predict(kerasxai.get_probe(model, ()), x)["logits"]
    return out


if __name__ == "__main__":
    models_dir, images_path, out_path = sys.argv[1:4]
    with np.load(images_path) as data:
        images = dict(data)
    np.savez(out_path, **compute(models_dir, images))
