"""The one private Keras API kerasxai uses: re-running a Functional graph with nested models inlined.

If a Keras release renames or changes ``Functional._run_through_graph``, this
file fails first, with a message that says where to look.
"""

import keras
import numpy as np
from keras import layers

from kerasxai.probe import graph as _graph


def test_keras_still_has_run_through_graph():
    inp = keras.Input((4,))
    model = keras.Model(inp, layers.Dense(2)(inp))
    assert hasattr(model, "_run_through_graph") and hasattr(model, "_nodes_by_depth"), (
        "Keras changed Functional._run_through_graph; update kerasxai/probe/graph.py"
    )


def test_trace_inlines_nested_models_into_one_connected_graph():
    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, layers.Conv2D(2, 3, name="inner_conv")(inner_in), name="inner")
    seq = keras.Sequential([inner, layers.Flatten(name="flat")], name="mid")
    outer_in = keras.Input((8, 8, 1))
    outer = keras.Model(outer_in, layers.Dense(3, name="head")(seq(outer_in)))

    new_in = keras.Input((8, 8, 1))
    out, calls = _graph.trace(outer, new_in)
    names = [(c.qualified_name, c.is_model) for c in calls]
    assert names == [
        ("mid/inner/inner_conv", False),
        ("mid/inner", True),
        ("mid/flat", False),
        ("mid", True),
        ("head", False),
    ]
    conv = calls[0].output
    probe = keras.Model(new_in, [conv, out])  # connected: no "Graph disconnected"
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    a, y = probe(x)
    np.testing.assert_allclose(y, outer(x), rtol=1e-6)
    np.testing.assert_allclose(a, inner(x), rtol=1e-6)
