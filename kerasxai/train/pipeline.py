"""``tf.data`` pipelines of a run: images (decoded and resized as ``kerasxai.load_images`` does) or cached features.

Both kinds of training set take their order from one ``EpochOrder``: epoch
``e`` sees the permutation drawn from ``(seed, e)``. The image and feature
paths therefore feed the same images in the same order, and a resumed run
sees in epoch ``e`` what an uninterrupted one would have.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasxai.data.images import decode_image_bytes, resize_image


class EpochOrder(keras.callbacks.Callback):
    """The order (and flips, with ``augment``) of the ``n`` training items in each epoch.

    As a callback it learns the epoch number from ``fit``, before the epoch's
    data is drawn.

    Examples:
        >>> order = EpochOrder(5, seed=0)
        >>> [int(i) for i, _ in order()] == [int(i) for i, _ in order()]
        True
    """

    def __init__(self, n: int, seed: int, augment: bool = False):
        super().__init__()
        self.n, self.seed, self.augment, self.epoch = n, seed, augment, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def __call__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        flips = rng.random(self.n) < 0.5 if self.augment else np.zeros(self.n, bool)
        yield from zip(order.tolist(), flips.tolist())


def _items(order: EpochOrder | None, n: int) -> tf.data.Dataset:
    """``(index, flip)`` pairs: in ``order`` when given, else 0..n-1 without flips (validation, features)."""
    if order is None:
        return tf.data.Dataset.from_tensor_slices((tf.range(n, dtype=tf.int64), tf.zeros(n, tf.bool)))
    spec = (tf.TensorSpec((), tf.int64), tf.TensorSpec((), tf.bool))
    ds = tf.data.Dataset.from_generator(order, output_signature=spec)
    return ds.apply(tf.data.experimental.assert_cardinality(n))


def _drop_remainder(order, batch_size) -> bool:
    """Training batches are all full (when there are enough images): a last batch of 3 images would
    pull batch norm's moving statistics far off (the images left out differ each epoch)."""
    return order is not None and order.n >= batch_size


def image_dataset(paths, labels, size: int, preprocess, batch_size: int, order: EpochOrder | None = None):
    """Batches of ``(preprocess(resize_image(decode_image_bytes(file))), label)``.

    The pixels are those of ``kerasxai.load_images(paths, model)``'s ``x``, and of
    ``keras.utils.image_dataset_from_directory`` before preprocessing.
    """
    paths_t = tf.constant([str(p) for p in paths])
    labels_t = tf.constant(np.asarray(labels, np.int32))

    def load(index, flip):
        image = resize_image(decode_image_bytes(tf.io.read_file(paths_t[index])), (size, size))
        image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        if preprocess is not None:
            image = preprocess(image)
        return image, labels_t[index]

    ds = _items(order, len(paths)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=_drop_remainder(order, batch_size)).prefetch(tf.data.AUTOTUNE)


def feature_dataset(features: np.ndarray, labels, batch_size: int, order: EpochOrder | None = None):
    """Batches of ``(features[indices], labels[indices])`` read from an array or a ``.npy`` memmap."""
    labels = np.asarray(labels, np.int32)
    shape = features.shape[1:]

    def gather(indices):
        return np.asarray(features[np.sort(indices)][np.argsort(np.argsort(indices))], np.float32)

    def take(indices, _flips):
        x = tf.numpy_function(gather, [indices], tf.float32)
        x.set_shape((None, *shape))
        return x, tf.gather(labels, indices)

    ds = _items(order, len(labels)).batch(batch_size, drop_remainder=_drop_remainder(order, batch_size)).map(take)
    return ds.prefetch(tf.data.AUTOTUNE)
