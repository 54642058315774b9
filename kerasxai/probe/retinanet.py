"""A ``decode`` for keras-hub's RetinaNet: its raw outputs as boxes in pixels and class logits.

:func:`retinanet_decode` gives the ``decode`` a detection target needs for
``keras_hub.models.RetinaNetObjectDetector``. The model's forward pass (``model(images)``)
returns a dict of two tensors, one row per anchor (``A`` anchors in all, over every pyramid
level, in the order of the model's ``anchor_generator``):

- ``"bbox_regression"``: ``(N, A, 4)``, box deltas encoded as ``center_xywh`` relative to each
  anchor (``dx, dy`` scaled by the anchor's width and height, ``dw, dh`` in log space; no variance);
- ``"cls_logits"``: ``(N, A, K)``, one sigmoid logit per class.

keras-hub's own ``decode_predictions`` turns the deltas into boxes
(``keras.utils.bounding_boxes.decode_deltas_to_boxes``) and then runs non-maximum suppression;
the ``decode`` here does the first step only, with ``keras.ops`` (it runs inside a compiled step
on TensorFlow, JAX and PyTorch), and returns the boxes as ``y1, x1, y2, x2`` in input pixels
whatever the model's ``bounding_box_format``. The anchors depend on the image size only, so they
are computed once, when :func:`retinanet_decode` is called.

keras-hub is not a dependency of kerasxai: it is imported when :func:`retinanet_decode` is called.
This module imports keras and NumPy only.
"""

import keras
import numpy as np
from keras import ops

BOXES = "bbox_regression"
CLASSES = "cls_logits"


def _import_keras_hub():
    try:
        import keras_hub
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "retinanet_decode needs keras-hub, which kerasxai does not install: pip install keras-hub"
        ) from error
    return keras_hub


def _image_size(model, image_shape):
    if image_shape is not None:
        size = tuple(image_shape)[:2]
    else:
        shape = model.input_shape
        if isinstance(shape, list):
            shape = shape[0]
        size = tuple(shape[1:3])
    if len(size) != 2 or any(s is None for s in size):
        raise ValueError(
            f"The model takes images of any size (input shape {model.input_shape}): give the size the "
            "anchors are for, retinanet_decode(model, image_shape=(height, width))."
        )
    return int(size[0]), int(size[1])


def _anchors(generator, height, width):
    """The anchors of every level, concatenated as keras-hub does, as NumPy ``(A, 4)`` cx, cy, w, h."""
    levels = generator(np.zeros((1, height, width, 3), "float32"))
    anchors = ops.concatenate(list(levels.values()), axis=0)
    xyxy = keras.utils.bounding_boxes.convert_format(
        anchors, source=generator.bounding_box_format, target="xyxy", height=height, width=width
    )
    x1, y1, x2, y2 = np.split(ops.convert_to_numpy(xyxy).astype("float32"), 4, axis=-1)
    w, h = x2 - x1, y2 - y1
    return np.concatenate([x1 + w / 2.0, y1 + h / 2.0, w, h], axis=-1)


def retinanet_decode(model, image_shape=None):
    """The ``decode`` of a keras-hub RetinaNet: raw outputs to ``(boxes, class_logits)``.

    Args:
        model: a ``keras_hub.models.RetinaNetObjectDetector`` (any model with its
            ``anchor_generator`` and outputs ``"bbox_regression"`` and ``"cls_logits"``).
        image_shape: ``(height, width)`` (or ``(height, width, channels)``) of the images the model
            is called on, in pixels. Needed only when the model's input size is not fixed.

    Returns:
        ``decode(outputs)``: takes the model's outputs as ``model(images)`` returns them (the dict,
        or the two tensors as a list in the model's ``output_names`` order) and returns
        ``(boxes, class_logits)``: boxes ``(N, A, 4)`` float32 as ``y1, x1, y2, x2`` in input pixels,
        the same boxes as keras-hub's ``decode_predictions`` before non-maximum suppression, and the
        ``"cls_logits"`` ``(N, A, K)`` unchanged. ``keras.ops`` only; the anchors are a constant.

    Raises:
        ImportError: keras-hub is not installed.
        ValueError: the image size is unknown, or the outputs do not have one row per anchor.

    Examples:
        A tiny RetinaNet with random weights, from its constructors (nothing is downloaded):

        >>> import keras_hub, numpy as np
        >>> from kerasxai.probe.retinanet import retinanet_decode
        >>> encoder = keras_hub.models.ResNetBackbone(
        ...     input_conv_filters=[64], input_conv_kernel_sizes=[3],
        ...     stackwise_num_filters=[64, 16, 16, 16], stackwise_num_blocks=[1, 1, 1, 1],
        ...     stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block", image_shape=(64, 64, 3))
        >>> backbone = keras_hub.models.RetinaNetBackbone(
        ...     image_encoder=encoder, min_level=3, max_level=5, use_p5=False, image_shape=(64, 64, 3))
        >>> model = keras_hub.models.RetinaNetObjectDetector(
        ...     backbone=backbone, num_classes=3, pre_logits_num_conv_layers=1)
        >>> decode = retinanet_decode(model)
        >>> outputs = model(np.zeros((2, 64, 64, 3), "float32"))
        >>> sorted(outputs)
        ['bbox_regression', 'cls_logits']
        >>> boxes, logits = decode(outputs)
        >>> tuple(boxes.shape), tuple(logits.shape)
        ((2, 756, 4), (2, 756, 3))
    """
    _import_keras_hub()
    generator = getattr(model, "anchor_generator", None)
    if generator is None:
        raise TypeError(
            f"retinanet_decode takes a keras_hub.models.RetinaNetObjectDetector; {type(model).__name__} "
            "has no anchor_generator."
        )
    height, width = _image_size(model, image_shape)
    anchors = _anchors(generator, height, width)
    n_anchors = anchors.shape[0]
    centers, sizes = anchors[:, :2], anchors[:, 2:]
    names = list(getattr(model, "output_names", None) or [BOXES, CLASSES])

    def decode(outputs):
        if isinstance(outputs, dict):
            deltas, logits = outputs[BOXES], outputs[CLASSES]
        else:
            by_name = dict(zip(names, outputs))
            deltas, logits = by_name[BOXES], by_name[CLASSES]
        if deltas.shape[-2] is not None and deltas.shape[-2] != n_anchors:
            raise ValueError(
                f"The outputs have {deltas.shape[-2]} boxes per image but the anchors for {height}x{width} "
                f"images are {n_anchors}: give the images' size, retinanet_decode(model, image_shape=...)."
            )
        deltas = ops.cast(deltas, "float32")
        # center_xywh deltas, as keras.utils.bounding_boxes.decode_deltas_to_boxes reads them.
        # (the anchors enter through keras.ops, never as NumPy operands: torch tensors refuse those)
        center = ops.add(ops.multiply(deltas[..., :2], sizes), centers)  # cx, cy
        size = ops.multiply(ops.exp(deltas[..., 2:]), sizes)  # w, h
        lo, hi = center - size / 2.0, center + size / 2.0  # x1, y1 and x2, y2
        boxes = ops.concatenate([lo[..., 1:2], lo[..., 0:1], hi[..., 1:2], hi[..., 0:1]], axis=-1)
        return boxes, logits

    return decode
