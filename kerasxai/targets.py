"""What a method explains, beyond a class index: a segmentation's region, a detector's box.

``target=`` of every method takes ``None`` (each image's top class), a class index, one per
image, ``"label"``, a callable ``logits -> (N,) scores``, or one of these:

- :class:`Segmentation`: a class's logits summed over a region of a per-pixel output;
- :class:`Detection`: a detector's evidence for one box of one class, through ``decode``;
  :func:`retinanet_decode` makes the ``decode`` of keras-hub's RetinaNet.

:func:`regions` gives the masks or boxes a target resolves to (a figure draws them).

Examples:
    >>> Segmentation(1), Detection([0, 0, 8, 8], 2, decode=lambda outputs: outputs)
    (Segmentation(class_index=1, mask=None), Detection(box=[0.0, 0.0, 8.0, 8.0], class_index=2, iou=0.5))
"""

import numpy as np

from kerasxai.methods import engine
from kerasxai.probe import get_probe
from kerasxai.probe.regions import Detection, Segmentation, box_iou, is_structured
from kerasxai.probe.retinanet import retinanet_decode

__all__ = ["Detection", "Segmentation", "box_iou", "regions", "retinanet_decode"]


def regions(model, images, target, *, output=None, input=None, batch_size=engine.DEFAULT_BATCH_SIZE):
    """The region or box each image's target stands for, as every method resolves it.

    For a :class:`Segmentation` target, boolean masks ``(N, H, W)`` at the output's resolution
    (the pixels predicted as the class when ``mask=None``, decided on the images themselves);
    for a :class:`Detection` target, its boxes ``(N, 4)`` (y1, x1, y2, x2 in pixels). Pass them
    to :func:`kerasxai.plot_explanations` as ``outlines=`` to draw them on every panel.

    Examples:
        >>> import keras, numpy as np
        >>> unet = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1, activation="softmax")])
        >>> masks = regions(unet, np.random.rand(3, 8, 8, 3).astype("float32"), Segmentation(1))
        >>> masks.shape, masks.dtype
        ((3, 8, 8), dtype('bool'))
    """
    if not is_structured(target):
        raise ValueError(f"regions() resolves a Segmentation or Detection target. Received: {target!r}")
    probe = get_probe(model, (), output=output, input=input, target=target)
    data = engine.resolved_targets(probe, images, target, batch_size=batch_size)[0]
    return np.asarray(data) > 0.5 if isinstance(target, Segmentation) else np.asarray(data, np.float32)
