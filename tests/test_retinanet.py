"""kerasxai.probe.retinanet: the decoded boxes are keras-hub's own, before non-maximum suppression.

A tiny RetinaNet with random weights, built from its constructors (no preset is downloaded).
keras-hub is in the test extra (``pip install -e ".[test]"``).
"""

import keras
import numpy as np
import pytest

import keras_hub

from kerasxai.probe.retinanet import retinanet_decode


def _tiny_retinanet(image_shape, bounding_box_format, max_level, num_classes=3):
    keras.utils.set_random_seed(7)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16, 16], stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block", image_shape=image_shape,
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=max_level, use_p5=max_level > 5, image_shape=image_shape
    )
    return keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=num_classes, bounding_box_format=bounding_box_format,
        pre_logits_num_conv_layers=1,
    )


class _PassThrough(keras.layers.Layer):
    """A prediction decoder that keeps every box: keras-hub's decoding with no NMS."""

    def __init__(self, bounding_box_format, **kwargs):
        super().__init__(**kwargs)
        self.bounding_box_format = bounding_box_format

    def call(self, box_prediction, class_prediction, images=None, image_shape=None):
        return {"boxes": box_prediction, "scores": class_prediction}


def _keras_hub_boxes(model, outputs, images):
    """keras-hub's ``decode_predictions`` without its NMS, as y1, x1, y2, x2 pixels."""
    model._prediction_decoder = _PassThrough(model.bounding_box_format)
    height, width = images.shape[1:3]
    boxes = model.decode_predictions(outputs, images)["boxes"]
    boxes = keras.utils.bounding_boxes.convert_format(
        boxes, source=model.bounding_box_format, target="yxyx", height=height, width=width
    )
    return keras.ops.convert_to_numpy(boxes)


@pytest.mark.parametrize(
    "image_shape, fixed, bounding_box_format, max_level",
    [((64, 64, 3), True, "yxyx", 5), ((64, 96, 3), False, "xyxy", 7)],
    ids=["64x64-yxyx-P3-P5", "64x96-any-size-xyxy-P3-P7"],
)
def test_boxes_match_keras_hub_decoding(image_shape, fixed, bounding_box_format, max_level):
    model = _tiny_retinanet(image_shape if fixed else (None, None, 3), bounding_box_format, max_level)
    images = np.random.default_rng(0).uniform(0, 1, (2, *image_shape)).astype("float32")
    decode = retinanet_decode(model) if fixed else retinanet_decode(model, image_shape=image_shape)
    outputs = model(images)
    n_anchors = outputs["bbox_regression"].shape[1]

    # the model's own outputs, and larger deltas than random heads give
    rng = np.random.default_rng(1)
    wide = {"bbox_regression": rng.uniform(-1, 1, (2, n_anchors, 4)).astype("float32"),
            "cls_logits": rng.normal(size=(2, n_anchors, 3)).astype("float32")}
    for raw in (outputs, wide):
        boxes, scores = decode(raw)
        assert tuple(boxes.shape) == (2, n_anchors, 4) and tuple(scores.shape) == (2, n_anchors, 3)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(boxes), _keras_hub_boxes(model, raw, images),
                                   atol=1e-4, rtol=1e-5)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(scores), keras.ops.convert_to_numpy(raw["cls_logits"]))

    # the outputs as a list, in the model's output order, and inside a compiled (XLA) step
    import tensorflow as tf

    as_list = [wide[name] for name in model.output_names]
    compiled = tf.function(decode, jit_compile=True)
    eager_boxes = keras.ops.convert_to_numpy(decode(wide)[0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(decode(as_list)[0]), eager_boxes)
    np.testing.assert_allclose(compiled(wide)[0].numpy(), eager_boxes, atol=1e-4, rtol=1e-5)


def test_wrong_image_size_and_unknown_size_are_explained():
    model = _tiny_retinanet((None, None, 3), "yxyx", 5)
    with pytest.raises(ValueError, match="image_shape"):
        retinanet_decode(model)
    decode = retinanet_decode(model, image_shape=(32, 32))
    with pytest.raises(ValueError, match="anchors"):
        decode(model(np.zeros((1, 64, 64, 3), "float32")))
    with pytest.raises(TypeError, match="anchor_generator"):
        retinanet_decode(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)]))


def test_a_retinanet_box_is_explained_at_the_backbones_last_feature_map():
    import kerasxai
    from kerasxai.targets import Detection

    model = _tiny_retinanet((64, 64, 3), "yxyx", 5)
    decode = retinanet_decode(model)
    x = np.random.default_rng(8).uniform(0, 1, (2, 64, 64, 3)).astype("float32")
    boxes, logits = (keras.ops.convert_to_numpy(t) for t in decode(model(x)))
    best = logits[0].max(-1).argmax()  # the most confident anchor of image 0: its box and class
    target = Detection(boxes[0, best], int(logits[0, best].argmax()), decode)
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.weights]
    layer = kerasxai.get_probe(model, target=target).layer_names[0]
    assert layer.endswith("stack3_block0_out")  # the backbone's last feature map, not a per-anchor reshape
    maps = kerasxai.explain(model, x[0], methods=("gradcam", "saliency", "layercam"), target=target)
    for name, m in maps.items():
        assert m.shape == (64, 64) and np.isfinite(m).all() and m.max() == 1.0, name
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(b)) for a, b in zip(before, model.weights))
