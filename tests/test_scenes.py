"""Two-object scenes, the small U-Net and grid detector, the decoder (against hand-computed boxes) and the NMS black box."""

import keras
import numpy as np
import pytest
from keras import ops

from kerasxai.evaluation import scenes
from kerasxai.evaluation.metrics import box_masks


@pytest.fixture(scope="module")
def data():
    return scenes.two_object_scenes(40, seed=3)


def _logit(p):
    return float(np.log(p / (1 - p)))


def test_each_scene_holds_one_disc_and_one_cross_whose_boxes_enclose_exactly_their_pixels(data):
    assert data.images.dtype == np.float32 and 0 <= data.images.min() and data.images.max() <= 1
    assert (np.sort(data.classes, axis=1) == [1, 2]).all()
    for i in range(len(data)):
        inside = box_masks(data.boxes[i], (32, 32))
        for k in range(2):
            pixels = data.labels[i] == data.classes[i, k]
            np.testing.assert_array_equal(pixels, data.masks[i, k])
            assert pixels.any() and not (pixels & ~inside[k]).any()  # the box encloses every pixel of the object
            rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
            assert [rows[0], cols[0], rows[-1] + 1, cols[-1] + 1] == data.boxes[i, k].tolist()  # and is tight
        assert not (inside[0] & inside[1]).any()  # the two boxes are apart
        centres = (data.boxes[i, :, :2] + data.boxes[i, :, 2:]) / 2 // scenes.STRIDE
        assert tuple(centres[0]) != tuple(centres[1])  # in different detector cells
    assert (data.labels[data.masks.sum(1) == 0] == 0).all()


def test_scenes_are_reproducible_from_their_seed(data):
    again = scenes.two_object_scenes(40, seed=3)
    np.testing.assert_array_equal(again.images, data.images)
    np.testing.assert_array_equal(again.boxes, data.boxes)
    assert not np.array_equal(scenes.two_object_scenes(40, seed=4).boxes, data.boxes)


def test_the_unet_gives_per_pixel_class_probabilities_and_the_detector_two_grid_outputs(data):
    unet = scenes.small_unet()
    probs = keras.ops.convert_to_numpy(unet(data.images[:2]))
    assert probs.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert unet.layers[-1].name == "mask"
    det = scenes.small_detector()
    out = det(data.images[:2])
    assert {k: tuple(v.shape) for k, v in out.items()} == {"box_deltas": (2, 4, 4, 4), "class_logits": (2, 4, 4, 3)}


def test_decode_turns_a_cells_deltas_into_the_pixel_box_computed_by_hand():
    deltas = np.zeros((2, 4, 4, 4), np.float32)
    logits = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    deltas[1, 2, 1] = [_logit(0.25), _logit(0.75), np.log(2.0), np.log(0.5)]  # image 1, row 2, column 1
    boxes, scores = scenes.detector_decode(32)({"box_deltas": deltas, "class_logits": logits})
    boxes, scores = ops.convert_to_numpy(boxes), ops.convert_to_numpy(scores)
    anchor = 0.32 * 32
    centre_y, centre_x = (2 + 0.25) * 8, (1 + 0.75) * 8
    height, width = anchor * 2, anchor / 2
    expected = [centre_y - height / 2, centre_x - width / 2, centre_y + height / 2, centre_x + width / 2]
    np.testing.assert_allclose(boxes[1, 2 * 4 + 1], expected, rtol=1e-5)
    np.testing.assert_allclose(boxes[0, 0], [4 - anchor / 2, 4 - anchor / 2, 4 + anchor / 2, 4 + anchor / 2], rtol=1e-5)
    np.testing.assert_array_equal(scores, logits.reshape(2, 16, 3))  # the class scores are the logits, row by row
    # another grid and anchor
    boxes = ops.convert_to_numpy(scenes.detector_decode(64, grid=2, anchor=10)(
        {"box_deltas": np.zeros((1, 2, 2, 4), np.float32), "class_logits": np.zeros((1, 2, 2, 3), np.float32)})[0])
    np.testing.assert_allclose(boxes[0, 3], [43, 43, 53, 53])


def test_the_training_targets_decode_back_to_the_true_boxes(data):
    boxes, classes = scenes._detector_targets(data, 4, scenes._anchor(32))
    found = boxes[..., 4] == 1
    assert found.sum() == 2 * len(data) and (classes[found] > 0).all() and (classes[~found] == 0).all()
    deltas = boxes[..., :4].copy()
    deltas[..., :2] = np.log(np.clip(deltas[..., :2], 1e-6, 1) / np.clip(1 - deltas[..., :2], 1e-6, 1))
    decoded, _ = scenes.detector_decode(32)({"box_deltas": deltas, "class_logits": np.eye(3, dtype=np.float32)[classes]})
    decoded = ops.convert_to_numpy(decoded)[found.reshape(len(data), 16)].reshape(len(data), 2, 4)
    centres = (data.boxes[..., :2] + data.boxes[..., 2:]) / 2
    order = np.argsort(centres[..., 0] // 8 * 4 + centres[..., 1] // 8, axis=1)  # the cells' row-major order
    np.testing.assert_allclose(decoded, np.take_along_axis(data.boxes, order[..., None], axis=1), atol=1e-3)


class _FixedDetector:
    """Stands in for a detector model: ``predict_on_batch`` returns the same outputs for every image."""

    def __init__(self, deltas, logits):
        self.deltas, self.logits = deltas, logits

    def predict_on_batch(self, images):
        n = len(images)
        return {"box_deltas": np.repeat(self.deltas[None], n, 0), "class_logits": np.repeat(self.logits[None], n, 0)}


def test_nms_keeps_the_best_of_overlapping_boxes_and_drops_those_below_the_threshold():
    deltas = np.zeros((4, 4, 4), np.float32)
    logits = np.zeros((4, 4, 3), np.float32)
    logits[..., 0] = 5.0  # background everywhere ...
    deltas[1, 1, :2] = [_logit(0.9), _logit(0.9)]  # ... except cells (1, 1) and (1, 2): boxes 2 pixels apart
    deltas[1, 2, :2] = [_logit(0.9), _logit(0.15)]
    logits[1, 1] = [0, 3, 0]  # a disc, p = 0.91
    logits[1, 2] = [0, 0, 2]  # a cross, p = 0.78: overlaps the disc's box (IoU 0.67), suppressed
    logits[3, 3] = [0, 2.5, 0]  # a disc far away, p = 0.86: kept
    fn = scenes.nms_detector(_FixedDetector(deltas, logits), scenes.detector_decode(32), score_threshold=0.5, iou=0.5)
    found = fn(np.zeros((3, 32, 32, 3), np.float32))
    assert isinstance(found, list) and len(found) == 3
    boxes, probs = found[0]
    assert boxes.shape == (2, 4) and probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert probs.argmax(1).tolist() == [1, 1] and probs[0, 1] > probs[1, 1]
    np.testing.assert_allclose(boxes[1], [24 + 4 - 5.12, 24 + 4 - 5.12, 32, 32], rtol=1e-5)  # clipped to the image
    # a looser IoU keeps the cross too; a threshold above every probability keeps nothing
    loose = scenes.nms_detector(_FixedDetector(deltas, logits), scenes.detector_decode(32), iou=0.9)
    assert len(loose(np.zeros((1, 32, 32, 3)))[0][0]) == 3
    strict = scenes.nms_detector(_FixedDetector(deltas, logits), scenes.detector_decode(32), score_threshold=0.95)
    assert strict(np.zeros((1, 32, 32, 3)))[0][0].shape == (0, 4)


def test_the_nms_black_box_of_a_keras_detector_returns_a_list_per_image(data):
    fn = scenes.nms_detector(scenes.small_detector(), scenes.detector_decode(32), score_threshold=0.0, batch_size=3)
    found = fn(data.images[:5])
    assert len(found) == 5
    for boxes, probs in found:
        assert boxes.shape[1] == 4 and probs.shape == (len(boxes), 3) and 1 <= len(boxes) <= 16
        assert boxes.min() >= 0 and boxes.max() <= 32


def test_scores_of_a_perfect_segmenter_and_detector_are_one(data):
    class Oracle:
        def predict(self, images, batch_size=None, verbose=0):
            return np.eye(3, dtype=np.float32)[data.labels[: len(images)]]

    assert scenes.segmentation_scores(Oracle(), data) == {"pixel_accuracy": 1.0, "iou": {"disc": 1.0, "cross": 1.0}}

    boxes, classes = scenes._detector_targets(data, 4, scenes._anchor(32))
    deltas = boxes[..., :4].copy()
    deltas[..., :2] = np.log(np.clip(deltas[..., :2], 1e-6, 1) / np.clip(1 - deltas[..., :2], 1e-6, 1))

    class Perfect:
        def predict_on_batch(self, images):
            n = len(images)
            return {"box_deltas": deltas[:n], "class_logits": 10 * np.eye(3, dtype=np.float32)[classes[:n]]}

    got = scenes.detection_scores(Perfect(), scenes.detector_decode(32), data, batch_size=len(data))
    assert got["hit_rate"] == 1.0 and got["mean_iou"] == pytest.approx(1.0, abs=1e-3)


def test_box_iou_by_hand():
    from kerasxai.probe.regions import box_iou_numpy

    assert box_iou_numpy([0, 0, 4, 4], [2, 2, 6, 6])[0] == pytest.approx(4 / 28)
    np.testing.assert_allclose(box_iou_numpy(np.array([0, 0, 2, 2]), np.array([[0, 0, 2, 2], [5, 5, 6, 6]])), [1, 0])


def test_training_runs_briefly_and_gives_the_models_and_decoder():
    small = scenes.two_object_scenes(32, seed=5)
    unet = scenes.train_unet(small, epochs=1)
    assert set(scenes.segmentation_scores(unet, small)) == {"pixel_accuracy", "iou"}
    det, decode = scenes.train_detector(small, epochs=1)
    boxes, scores = decode(det(small.images[:2]))
    assert tuple(boxes.shape) == (2, 16, 4) and tuple(scores.shape) == (2, 16, 3)
