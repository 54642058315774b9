"""What a method explains, beyond a class index: a segmentation's region, a detector's box.

``target=`` of every method takes ``None`` (each image's top class), a class index, one per
image, ``"label"``, a callable ``logits -> (N,) scores``, or one of these:

- :class:`Segmentation`: a class's logits summed over a region of a per-pixel output;
- :class:`Detection`: a detector's evidence for one box of one class, through ``decode``;
  :func:`retinanet_decode` makes the ``decode`` of keras-hub's RetinaNet.

Examples:
    >>> import keras, numpy as np
    >>> import kerasxai
    >>> from kerasxai.targets import Segmentation
    >>> unet = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, padding="same"),
    ...                          keras.layers.Conv2D(3, 1, activation="softmax")])
    >>> kerasxai.saliency(unet, np.random.rand(1, 16, 16, 3).astype("float32"), target=Segmentation(1)).shape
    (1, 16, 16)
"""

from kerasxai.probe.regions import Detection, Segmentation, box_iou
from kerasxai.probe.retinanet import retinanet_decode

__all__ = ["Detection", "Segmentation", "box_iou", "retinanet_decode"]
