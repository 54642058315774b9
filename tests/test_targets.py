"""Target specs -> class indices and scores."""

import numpy as np
import pytest
import tensorflow as tf

from kerasxai.targets import class_indices, class_scores


def test_class_indices_shorthands():
    assert class_indices(None, 3, 10).tolist() == [-1, -1, -1]
    assert class_indices(7, 2, 10).tolist() == [7, 7]
    assert class_indices(np.int64(2), 1, 3).tolist() == [2]
    assert class_indices([0, 9], 2, 10).tolist() == [0, 9]
    assert class_indices(1, 2, 1).tolist() == [1, 1]  # sigmoid: 0 and 1 are valid


@pytest.mark.parametrize(
    "target, n_classes, message",
    [(10, 10, "0..9"), (-1, 10, "out of range"), (2, 1, "sigmoid"), ([1, 2, 3], 10, "3 classes but there are 2"), ("cat", 10, "must be None"), (True, 10, "must be None")],
)
def test_class_indices_errors(target, n_classes, message):
    with pytest.raises(ValueError, match=message):
        class_indices(target, 2, n_classes)


def test_class_scores_softmax_and_sigmoid():
    logits = tf.constant([[1.0, 5.0, -2.0], [3.0, 0.0, 4.0]])
    scores, used = class_scores(logits, tf.constant([-1, 0]))
    assert used.numpy().tolist() == [1, 0] and scores.numpy().tolist() == [5.0, 3.0]
    z = tf.constant([[2.0], [-3.0], [0.5]])
    scores, used = class_scores(z, tf.constant([-1, -1, 0]))
    assert used.numpy().tolist() == [1, 0, 0]
    assert scores.numpy().tolist() == [2.0, 3.0, -0.5]  # class 0 scores -logit
