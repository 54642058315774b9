"""Segmentation and detection targets, and D-RISE: against references computed by hand.

The segmenter is ``Conv2D(valid, tanh) -> Conv2D(K, 1, softmax)``: the summed logit of a class over a mask is
linear in the conv's activations, so every gradient has a closed form in NumPy. The detector's boxes are fixed
anchors (its regression is checked separately, with a tape, on TensorFlow), its class scores a 1x1 conv.
"""

import dataclasses
import os
import warnings

import keras
import numpy as np
import pytest
from keras import layers

import kerasxai
from kerasxai._warn import PerImageWarning
from kerasxai.methods.perturbation import drise_weight
from kerasxai.targets import Detection, Segmentation, box_iou
from tests import reference

X = np.random.default_rng(60).uniform(-1, 1, (5, 12, 12, 3)).astype("float32")


def _segmenter(seed=61, classes=3, activation="softmax"):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3))
    a = layers.Conv2D(4, 3, activation="tanh", name="c")(inp)
    return keras.Model(inp, layers.Conv2D(classes, 1, activation=activation, name="head")(a), name="segmenter")


@pytest.fixture(scope="module")
def segmenter():
    return _segmenter()


def _parts(model):
    conv, head = model.get_layer("c"), model.get_layer("head")
    acts = reference.activations(model.input, conv.output, X)  # (N, 10, 10, 4)
    w = keras.ops.convert_to_numpy(head.kernel)[0, 0].astype("float64")  # (4, K)
    b = keras.ops.convert_to_numpy(head.bias).astype("float64")
    return conv, acts, w, b


def _masks(n=5, size=10, seed=62):
    return np.random.default_rng(seed).random((n, size, size)) < 0.3


def test_segmentation_gradcam_layercam_and_saliency_are_the_closed_form_gradients_of_the_masked_logit_sum(segmenter):
    conv, acts, w, b = _parts(segmenter)
    masks, c = _masks(), 2
    grads = masks[..., None] * w[:, c]  # dS/dA: the head's class column where the mask is
    expected_gradcam = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts).sum(-1), 0)
    expected_layercam = np.maximum((np.maximum(grads, 0) * acts).sum(-1), 0)
    target = Segmentation(c, mask=masks)
    np.testing.assert_allclose(kerasxai.gradcam(segmenter, X, target=target, raw=True, batch_size=2),
                               expected_gradcam, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(kerasxai.layercam(segmenter, X, target=target, raw=True, batch_size=3),
                               expected_layercam, rtol=1e-4, atol=1e-6)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    bias = keras.ops.convert_to_numpy(conv.bias)
    expected_saliency = np.stack([np.abs(reference.conv_tanh_dense_input_gradient(X[i], kernel, bias, grads[i])).max(-1)
                                  for i in range(len(X))])
    np.testing.assert_allclose(kerasxai.saliency(segmenter, X, target=target, raw=True, batch_size=2),
                               expected_saliency, rtol=1e-4, atol=1e-6)
    assert expected_gradcam.max() > 0.01 and expected_saliency.max() > 0.01


def test_mask_none_is_the_predicted_region_decided_on_the_clean_images(segmenter):
    _, acts, w, b = _parts(segmenter)
    logits = acts @ w + b
    c = int(np.bincount(logits.argmax(-1).ravel()).argmax())  # a class predicted somewhere in every image
    predicted = logits.argmax(-1) == c
    assert predicted.reshape(5, -1).any(axis=1).all()
    for method in ("gradcam", "hirescam", "saliency"):
        given = getattr(kerasxai, method)(segmenter, X, target=Segmentation(c, mask=predicted), raw=True)
        np.testing.assert_allclose(getattr(kerasxai, method)(segmenter, X, target=Segmentation(c), raw=True, batch_size=2),
                                   given, rtol=1e-5, atol=1e-7, err_msg=method)
    # copies (noise, occlusion) keep the clean image's region: equal to the mask given explicitly
    kwargs = {"smoothgrad": {"n": 3, "noise": 0.5}, "occlusion": {"window": 4, "stride": 2}, "rise": {"n": 40, "cells": 3}}
    for method, options in kwargs.items():
        given = getattr(kerasxai, method)(segmenter, X, target=Segmentation(c, mask=predicted), raw=True, **options)
        np.testing.assert_allclose(getattr(kerasxai, method)(segmenter, X, target=Segmentation(c), raw=True, **options),
                                   given, rtol=1e-5, atol=1e-6, err_msg=method)


def test_occlusion_with_a_segmentation_target_is_the_numpy_loop(segmenter):
    _, _, w, b = _parts(segmenter)
    masks, c = _masks(seed=63), 1
    feats = keras.Model(segmenter.input, segmenter.get_layer("c").output)

    def score(z, m):
        logits = keras.ops.convert_to_numpy(feats(z)).astype("float64") @ w + b
        return (logits[..., c] * m).sum(axis=(1, 2))

    clean = score(X, masks)
    total, count = np.zeros((5, 12, 12)), np.zeros((12, 12))
    for i in range(0, 12, 3):
        for j in range(0, 12, 3):
            hidden = X.copy()
            hidden[:, i:i + 4, j:j + 4] = 0.0
            total[:, i:i + 4, j:j + 4] += (clean - score(hidden, masks))[:, None, None]
            count[i:i + 4, j:j + 4] += 1
    got = kerasxai.occlusion(segmenter, X, target=Segmentation(c, mask=masks), window=4, stride=3, raw=True,
                             batch_size=7)
    np.testing.assert_allclose(got, total / count, rtol=1e-4, atol=1e-5)


def test_per_image_masks_follow_their_images_across_batches_and_in_explain(segmenter):
    masks = _masks(seed=64)
    target = Segmentation(0, mask=masks)
    one_by_one = np.stack([kerasxai.gradcam(segmenter, X[i:i + 1], target=Segmentation(0, mask=masks[i]))[0]
                           for i in range(5)])
    np.testing.assert_allclose(kerasxai.gradcam(segmenter, X, target=target, batch_size=2), one_by_one, atol=1e-6)
    out = kerasxai.explain(segmenter, X, methods=("gradcam", "saliency", "occlusion", "scorecam"), target=target,
                           batch_size=2, options={"occlusion": {"window": 4, "stride": 4}, "scorecam": {"n": 3}})
    np.testing.assert_allclose(out["gradcam"], one_by_one, atol=1e-6)
    for name in ("saliency", "occlusion", "scorecam"):
        single = getattr(kerasxai, name)(segmenter, X, target=target, **({"window": 4, "stride": 4} if name == "occlusion"
                                                                          else {"n": 3} if name == "scorecam" else {}))
        np.testing.assert_allclose(out[name], single, atol=1e-5, err_msg=name)


def test_one_channel_sigmoid_segmenter_class_0_is_the_negated_logit():
    model = _segmenter(seed=65, classes=1, activation="sigmoid")
    _, acts, w, b = _parts(model)
    mask = _masks(seed=66)[0]
    for c, sign in ((1, 1.0), (0, -1.0)):
        grads = sign * mask[None, ..., None] * w[:, 0]
        expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts).sum(-1), 0)
        np.testing.assert_allclose(kerasxai.gradcam(model, X, target=Segmentation(c, mask=mask), raw=True),
                                   expected, rtol=1e-4, atol=1e-6)


def test_segmentation_errors_say_what_to_do(segmenter):
    classifier = keras.Sequential([keras.Input((12, 12, 3)), layers.Conv2D(2, 3), layers.GlobalAveragePooling2D(),
                                   layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="not per pixel.*target=<class index>"):
        kerasxai.gradcam(classifier, X, target=Segmentation(1))
    with pytest.raises(ValueError, match="spatial shape \\(12, 12\\).*output's resolution"):
        kerasxai.gradcam(segmenter, X, target=Segmentation(1, mask=np.ones((12, 12), bool)))
    with pytest.raises(ValueError, match="mask gives 3 masks but there are 5 images"):
        kerasxai.saliency(segmenter, X, target=Segmentation(1, mask=np.ones((3, 10, 10), bool)))
    with pytest.raises(ValueError, match="out of range.*0..2"):
        kerasxai.saliency(segmenter, X, target=Segmentation(3))
    with pytest.raises(ValueError, match="booleans"):
        Segmentation(1, mask=np.full((10, 10), 0.5))
    with pytest.raises(ValueError, match="class_index must be an int"):
        Segmentation(-1)
    with pytest.raises(ValueError, match="cam needs a class target"):
        kerasxai.cam(segmenter, X, target=Segmentation(1))
    with pytest.warns(PerImageWarning, match="selects no pixel for class 1 in image\\(s\\) \\[0, 1, 2, 3, 4\\]"):
        kerasxai.saliency(segmenter, X, target=Segmentation(1, mask=np.zeros((10, 10), bool)))


# --------------------------------------------------------------------------- detection

ANCHORS = np.array([[y, x, y + 6, x + 6] for y in range(0, 12, 3) for x in range(0, 12, 3)], "float32")  # (16, 4)


def _detector(seed=70, regression=False):
    """Features on a 4x4 grid; class logits per cell; boxes: the cell's anchor (+ a regression)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3))
    feat = layers.Conv2D(5, 3, strides=3, padding="same", activation="tanh", name="feat")(inp)
    outputs = {"cls": layers.Conv2D(3, 1, name="cls")(feat)}
    if regression:
        outputs["box"] = layers.Conv2D(4, 1, activation="tanh", name="box")(feat)
    return keras.Model(inp, outputs, name="detector")


def decode_anchors(out):
    n = keras.ops.shape(out["cls"])[0]
    boxes = keras.ops.broadcast_to(keras.ops.convert_to_tensor(ANCHORS)[None], (n, 16, 4))
    if "box" in out:
        boxes = boxes + 2.0 * keras.ops.reshape(out["box"], (n, 16, 4))
    return boxes, keras.ops.reshape(out["cls"], (n, 16, 3))


BOXES = np.array([[0, 0, 6, 6], [3, 3, 9, 9], [2, 5, 8, 12], [6, 6, 12, 12], [0, 4, 7, 10]], "float32")


def _matches(box, threshold):
    iou = reference_iou(box, ANCHORS)
    return iou, iou >= threshold


def reference_iou(box, boxes):
    y1, x1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    y2, x2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(y2 - y1, 0, None) * np.clip(x2 - x1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def test_box_iou_matches_numpy():
    got = keras.ops.convert_to_numpy(box_iou(BOXES, np.broadcast_to(ANCHORS, (5, 16, 4))))
    np.testing.assert_allclose(got, np.stack([reference_iou(b, ANCHORS) for b in BOXES]), rtol=1e-6)


def test_detection_gradcam_and_saliency_are_the_gradients_of_the_matched_boxes_scores():
    model = _detector()
    feat = model.get_layer("feat")
    acts = reference.activations(model.input, feat.output, X)  # (5, 4, 4, 5)
    w = keras.ops.convert_to_numpy(model.get_layer("cls").kernel)[0, 0].astype("float64")  # (5, 3)
    classes = np.array([0, 2, 1, 1, 0])
    grads = np.zeros_like(acts)
    for i, (box, c) in enumerate(zip(BOXES, classes)):
        _, keep = _matches(box, 0.3)
        grads[i] = keep.reshape(4, 4)[..., None] * w[:, c]  # score = sum over matches of IoU + class logit
        assert keep.any()
    target = Detection(BOXES, classes, decode_anchors, iou=0.3)
    expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts).sum(-1), 0)
    np.testing.assert_allclose(kerasxai.gradcam(model, X, target=target, raw=True, batch_size=2), expected,
                               rtol=1e-4, atol=1e-6)
    expected_layercam = np.maximum((np.maximum(grads, 0) * acts).sum(-1), 0)
    np.testing.assert_allclose(kerasxai.layercam(model, X, target=target, raw=True, batch_size=3), expected_layercam,
                               rtol=1e-4, atol=1e-6)
    # the scores themselves: IoU + logit summed over the matches
    logits = acts @ w + keras.ops.convert_to_numpy(model.get_layer("cls").bias)
    scores = [sum(_matches(b, 0.3)[0][k] + logits[i].reshape(16, 3)[k, c] for k in np.flatnonzero(_matches(b, 0.3)[1]))
              for i, (b, c) in enumerate(zip(BOXES, classes))]
    probe = kerasxai.get_probe(model, (), target=target)
    from kerasxai.methods import engine

    np.testing.assert_allclose(engine.predict(probe, X, target)["scores"], scores, rtol=1e-5)


def test_detection_with_box_regression_equals_a_tape_on_tensorflow():
    import tensorflow as tf  # on TensorFlow only (test_backends deselects it elsewhere: the same maps are compared)

    model = _detector(seed=71, regression=True)
    target = Detection(BOXES[1], 2, decode_anchors, iou=0.2)
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        boxes, scores = decode_anchors(model(x))
        iou = box_iou(np.broadcast_to(BOXES[1], (5, 4)), boxes)
        total = tf.reduce_sum(tf.where(iou >= 0.2, iou + scores[..., 2], 0.0))
    gradient = tape.gradient(total, x).numpy()
    np.testing.assert_allclose(kerasxai.saliency(model, X, target=target, raw=True), np.abs(gradient).max(-1),
                               rtol=1e-4, atol=1e-6)


def numpy_decode(out):
    """A decode written with NumPy: fails on the step's symbolic/traced tensors (or, on PyTorch, in the backward pass)."""
    boxes, scores = decode_anchors(out)
    return boxes, keras.ops.convert_to_tensor(np.asarray(scores))


def test_detection_errors_and_warnings():
    model = _detector()
    with pytest.raises(ValueError, match="Detection needs decode.*keras.ops"):
        Detection([0, 0, 6, 6], 1, None)
    with pytest.raises(ValueError, match="is empty: boxes are y1, x1, y2, x2"):
        Detection([6, 0, 0, 6], 1, decode_anchors)
    with pytest.raises(ValueError, match="shape \\(4,\\) for every image or \\(N, 4\\)"):
        Detection([0, 0, 6], 1, decode_anchors)
    with pytest.raises(ValueError, match="iou is the overlap"):
        Detection([0, 0, 6, 6], 1, decode_anchors, iou=0)
    with pytest.raises(ValueError, match="out of range: decode gives class scores for 3 classes"):
        kerasxai.gradcam(model, X, target=Detection([0, 0, 6, 6], 3, decode_anchors))
    with pytest.raises(ValueError, match="box gives 2 boxs? but there are 5 images|box gives 2"):
        kerasxai.gradcam(model, X, target=Detection(BOXES[:2], 1, decode_anchors))
    with pytest.raises(ValueError, match="write it with keras.ops"):
        kerasxai.gradcam(model, X, target=Detection([0, 0, 6, 6], 1, numpy_decode))
    with pytest.raises(ValueError, match="decode returned boxes of shape"):
        kerasxai.gradcam(model, X, target=Detection([0, 0, 6, 6], 1, lambda out: (out["cls"], out["cls"])))
    with pytest.raises(ValueError, match="cam needs a class target"):
        kerasxai.cam(model, X, target=Detection([0, 0, 6, 6], 1, decode_anchors))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kerasxai.saliency(model, X[:2], target=Detection([[0, 0, 6, 6], [100, 100, 110, 110]], 1, decode_anchors))
    assert any("no predicted box overlaps the box with IoU >= 0.5 in image(s) [1]" in str(w.message) for w in caught)


def test_the_model_is_unchanged_by_region_and_box_targets(segmenter):
    model = _detector(regression=True)
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.weights + segmenter.weights]
    outputs = keras.ops.convert_to_numpy(model(X)["cls"]).copy()
    kerasxai.explain(model, X, methods=("gradcam", "saliency", "rise"), target=Detection(BOXES, 1, decode_anchors, iou=0.2),
                     options={"rise": {"n": 32}})
    kerasxai.explain(segmenter, X, methods=("gradcam", "occlusion"), target=Segmentation(1))
    after = [keras.ops.convert_to_numpy(v) for v in model.weights + segmenter.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(X)["cls"]), outputs)
    assert set(model(X)) == {"cls", "box"}


# --------------------------------------------------------------------------- D-RISE


def _bright_detector(images):
    """A black box: one detection per image, of class 0 with probability the mean brightness of the top-left quarter."""
    out = []
    for image in images:
        p = float(np.clip(image[:6, :6].mean(), 0, 1))
        out.append((np.array([[0, 0, 6, 6], [6, 6, 12, 12]]), np.array([[p, 1 - p], [0.5, 0.5]])))
    return out


def test_drise_weight_is_iou_times_cosine_times_objectness():
    boxes = np.array([[0, 0, 6, 6], [0, 0, 3, 6], [6, 6, 12, 12]])
    probs = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    objectness = np.array([0.5, 1.0, 1.0])
    # image-by-image products: (1 x 0.6 x 0.5, 0.5 x 1 x 1, 0 x ...): the best is 0.5
    assert drise_weight(np.array([0, 0, 6, 6]), 0, (boxes, probs, objectness)) == pytest.approx(0.5)
    assert drise_weight(np.array([0, 0, 6, 6]), 1, (boxes, probs, objectness)) == pytest.approx(0.8 * 0.5)


def test_drise_equals_its_definition_and_is_reproducible_and_stable_across_seeds():
    from kerasxai.methods.perturbation import rise_masks

    image = np.random.default_rng(72).uniform(0.2, 1, (12, 12, 3)).astype("float32")
    masks = rise_masks((12, 12), 0, 50, cells=3, p=0.5, seed=4)
    weights = [drise_weight(np.array([0, 0, 6, 6]), 0, (np.array([[0, 0, 6, 6], [6, 6, 12, 12]]),
                                                           *[np.array(v) for v in _bright_detector([image * m[..., None]])[0][1:]],
                                                           np.ones(2)))
               for m in masks]
    expected = np.tensordot(np.array(weights), masks, 1) / 50
    got = kerasxai.drise(_bright_detector, image, box=[0, 0, 6, 6], class_index=0, n=50, cells=3, seed=4, raw=True,
                         batch_size=7)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    a = kerasxai.drise(_bright_detector, image, [0, 0, 6, 6], 0)
    np.testing.assert_array_equal(a, kerasxai.drise(_bright_detector, image, [0, 0, 6, 6], 0, batch_size=64))
    b = kerasxai.drise(_bright_detector, image, [0, 0, 6, 6], 0, seed=1)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert a[:6, :6].mean() > a[6:, 6:].mean() + 0.2  # the evidence is where the detector looks


def test_drise_errors():
    image = np.ones((12, 12, 3), "float32")
    with pytest.raises(ValueError, match="n must be an int of at least 1"):
        kerasxai.drise(_bright_detector, image, [0, 0, 6, 6], 0, n=0)
    with pytest.raises(ValueError, match="fn must be a function"):
        kerasxai.drise("model", image, [0, 0, 6, 6], 0)
    with pytest.raises(ValueError, match="out of range: fn gives class vectors of 2 classes"):
        kerasxai.drise(_bright_detector, image, [0, 0, 6, 6], 5, n=4)
    with pytest.raises(ValueError, match="fn returned detections for 1 images, given 4"):
        kerasxai.drise(lambda b: _bright_detector(b[:1]), image, [0, 0, 6, 6], 0, n=4)
    with pytest.raises(ValueError, match="NaN"):
        kerasxai.drise(_bright_detector, np.full((12, 12, 3), np.nan), [0, 0, 6, 6], 0, n=4)
    with pytest.warns(RuntimeWarning, match="no masked copy of image\\(s\\) \\[0\\]"):
        kerasxai.drise(_bright_detector, image, [20, 20, 22, 22], 0, n=4)


# --------------------------------------------------------------------------- regions and figures


def test_regions_are_the_masks_and_boxes_the_methods_explain(segmenter):
    from kerasxai.targets import regions

    _, acts, w, b = _parts(segmenter)
    predicted = (acts @ w + b).argmax(-1) == 1
    np.testing.assert_array_equal(regions(segmenter, X, Segmentation(1), batch_size=2), predicted)
    given = _masks(seed=67)
    np.testing.assert_array_equal(regions(segmenter, X, Segmentation(0, mask=given)), given)
    np.testing.assert_array_equal(regions(_detector(), X, Detection(BOXES, 1, decode_anchors, iou=0.1)), BOXES)
    with pytest.raises(ValueError, match="resolves a Segmentation or Detection target"):
        regions(segmenter, X, 1)


def test_figures_outline_the_box_and_the_region_on_every_panel(segmenter):
    images = ((X[:2] + 1) * 127.5).astype("uint8")
    maps = {"gradcam": np.random.default_rng(0).random((2, 12, 12)), "saliency": np.random.default_rng(1).random((2, 12, 12))}
    fig = kerasxai.plot_explanations(images, maps, targets=Detection(BOXES[:2], [0, 2], decode_anchors))
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert "box of class 0" in titles[1] and "box of class 2" in titles[4]
    boxes = [ax for ax in fig.axes[:6] if ax.lines]
    assert len(boxes) == 6  # the input and both maps of both rows
    xs, ys = boxes[3].lines[-1].get_data()  # row 2's box [3, 3, 9, 9], in pixel centres
    np.testing.assert_allclose([xs.min(), xs.max(), ys.min(), ys.max()], [2.5, 8.5, 2.5, 8.5])
    region = np.zeros((12, 12), bool)
    region[2:6, 3:9] = True
    fig = kerasxai.plot_explanations(images, maps, targets=Segmentation(1, mask=region))
    assert all(ax.collections for ax in fig.axes[:6]) and "class 1 given region" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="outlines must be boolean masks"):
        kerasxai.plot_explanations(images, maps, outlines=np.zeros((2, 3, 4, 5)))


# --------------------------------------------------------------------------- a segmenter's folder run


def test_a_folder_run_of_a_segmenter_explains_each_images_predicted_region_and_outlines_it(tmp_path, segmenter):
    import json

    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    pixels = ((X + 1) * 127.5).round().astype("uint8")
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"im{i}.png")
    preprocess = lambda p: p / 127.5 - 1.0  # noqa: E731
    x = preprocess(pixels.astype("float32"))
    _, acts, w, b = _parts(segmenter)
    logits = reference.activations(segmenter.input, segmenter.get_layer("c").output, x) @ w + b
    c = int(np.bincount(logits.argmax(-1).ravel()).argmax())
    run = tmp_path / "run"
    kerasxai.explain_folder(segmenter, str(folder), str(run), methods=("gradcam", "occlusion"), target=Segmentation(c),
                            preprocess=preprocess, overlays=True, class_names=["a", "b", "c"], batch_size=2)
    meta = json.loads((run / "run.json").read_text())
    assert meta["target"] == {"segmentation": c, "mask": "predicted"}
    rows = {r["id"]: r for r in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    expected = kerasxai.gradcam(segmenter, x, target=Segmentation(c))
    for i in range(5):
        row = rows[f"im{i}"]
        shares = {t["class"]: t["probability"] for t in row["top_k"]}
        assert shares[c] == pytest.approx((logits[i].argmax(-1) == c).mean(), abs=1e-6)
        assert row["target"] == c and row["target_name"] == f"{'abc'[c]} (predicted region)"
        with np.load(run / row["maps"]) as saved:
            np.testing.assert_allclose(saved["gradcam"], expected[i], atol=2e-3)  # stored as float16
        panel = np.asarray(Image.open(run / row["overlays"]["gradcam"]))
        white = (panel[:12] == 255).all(-1)  # the outline: white pixels on the region's border
        stretched = (logits[i].argmax(-1) == c)[np.arange(12)[:, None] * 10 // 12, np.arange(12)[None] * 10 // 12]
        assert white.any() and not white[~stretched].any()  # the 10x10 output's region, stretched onto the photo
    page = kerasxai.write_report(str(run))
    assert "predicted region (outlined)" in open(page).read()
    with pytest.raises(ValueError, match="a Detection box belongs to its image"):
        kerasxai.explain_folder(_detector(), str(folder), str(tmp_path / "det"), target=Detection([0, 0, 6, 6], 1,
                                                                                                  decode_anchors))
    with pytest.raises(ValueError, match="not per pixel"):
        classifier = keras.Sequential([keras.Input((12, 12, 3)), layers.Conv2D(2, 3), layers.GlobalAveragePooling2D(),
                                       layers.Dense(3, activation="softmax")])
        kerasxai.explain_folder(classifier, str(folder), str(tmp_path / "cls"), target=Segmentation(1))
    assert not (tmp_path / "det").exists() and not (tmp_path / "cls").exists()


def test_a_folder_run_names_the_files_whose_region_holds_nothing_to_explain(tmp_path, segmenter):
    """Each batch's warning would name images by their place in that batch ([1], then [0]): the run names
    the files once at its end, with the cause, and does not report them again as unexplained flat maps."""
    import json

    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    pixels = ((X[:3] + 1) * 127.5).round().astype("uint8")
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"im{i}.png")
    for i in (3, 4):  # a uniform image: one class everywhere, the others nowhere
        Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(folder / f"im{i}.png")
    preprocess = lambda p: p / 127.5 - 1.0  # noqa: E731
    uniform = segmenter.predict(preprocess(np.full((1, 12, 12, 3), 128.0, np.float32)), verbose=0).argmax(-1)
    assert len(np.unique(uniform)) == 1
    c = (int(uniform.flat[0]) + 1) % 3
    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kerasxai.explain_folder(segmenter, str(folder), str(run), methods=("gradcam",), target=Segmentation(c),
                                preprocess=preprocess, batch_size=2, progress=False)
    messages = [str(w.message) for w in caught]
    named = [m for m in messages if "no pixel is predicted as" in m]
    assert len(named) == 1 and f"class {c} in 2 of 5 images: im3, im4. There is nothing to explain" in named[0], messages
    assert all(w.filename == __file__ for w in caught if "no pixel is predicted as" in str(w.message))
    assert not any("image(s) [" in m or "map is flat" in m for m in messages), messages
    rows = {r["id"]: r for r in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    assert [rows[f"im{i}"]["methods"]["gradcam"]["flat"] for i in range(5)] == [False, False, False, True, True]
    assert [rows[f"im{i}"]["nothing"] for i in range(5)] == [False, False, False, True, True]
    from kerasxai.folder import report

    cards = {c["id"]: c for c in report.report_data(str(run))["cards"]}
    assert [cards[f"im{i}"]["nothing"] for i in range(5)] == [False, False, False, True, True]
    assert "nothing to explain" in report._asset("report.js")  # the page's badge for them

    # resumed with two more files (one of them uniform): the summary counts the whole run, not its resumed part
    Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(folder / "im5.png")
    Image.fromarray(pixels[0]).save(folder / "im6.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kerasxai.explain_folder(segmenter, str(folder), str(run), methods=("gradcam",), target=Segmentation(c),
                                preprocess=preprocess, batch_size=2, progress=False, resume=True)
    named = [str(w.message) for w in caught if "no pixel is predicted as" in str(w.message)]
    assert len(named) == 1 and f"class {c} in 3 of 7 images: im3, im4, im5. There is" in named[0], named

    # rows written before runs recorded "nothing" (im0, im4): resuming redoes them, not the others, so an
    # empty region is never reported as an unexplained flat map
    lines = (run / "predictions.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        if row["id"] in ("im0", "im4"):
            del row["nothing"]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for p in (run / "maps").iterdir():  # an old time on every map: a rewritten one gets a new one, however coarse the clock
        os.utime(p, ns=(0, 0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kerasxai.explain_folder(segmenter, str(folder), str(run), methods=("gradcam",), target=Segmentation(c),
                                preprocess=preprocess, batch_size=2, progress=False, resume=True)
    messages = [str(w.message) for w in caught]
    assert not any("map is flat" in m for m in messages), messages
    assert any(f"class {c} in 3 of 7 images: im3, im4, im5. There is" in m for m in messages), messages
    rows = {r["id"]: r for r in map(json.loads, (run / "predictions.jsonl").read_text().splitlines())}
    assert len(rows) == 7 and [rows[f"im{i}"]["nothing"] for i in range(7)] == [False] * 3 + [True] * 3 + [False]
    changed = sorted(p.name for p in (run / "maps").iterdir() if p.stat().st_mtime_ns != 0)
    assert changed == ["im0.npz", "im4.npz"]


def test_the_command_explains_a_segmenters_folder(tmp_path, segmenter):
    import json
    import subprocess
    import sys

    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(((X[:2] + 1) * 127.5).astype("uint8")):
        Image.fromarray(image).save(folder / f"im{i}.png")
    segmenter.save(tmp_path / "unet.keras")
    command = [sys.executable, "-m", "kerasxai", "explain", str(folder), "--model", str(tmp_path / "unet.keras"),
               "--methods", "gradcam", "--out", str(tmp_path / "run")]
    done = subprocess.run(command + ["--target", "region:1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["target"] == {"segmentation": 1, "mask": "predicted"}
    bad = subprocess.run(command[:-1] + [str(tmp_path / "bad"), "--target", "region:x"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "--target region:C takes a class index C" in bad.stderr


# --------------------------------------------------------------------------- the adversarial round's cases


def test_a_channels_first_segmenter_reads_its_class_axis_from_the_graph():
    keras.utils.set_random_seed(68)
    inp = keras.Input((3, 12, 12))
    a = layers.Conv2D(4, 3, padding="same", activation="tanh", data_format="channels_first", name="c")(inp)
    head = layers.Conv2D(3, 1, data_format="channels_first", name="head")
    model = keras.Model(inp, layers.Softmax(axis=1)(head(a)))
    x = np.transpose(X, (0, 3, 1, 2))
    acts = keras.ops.convert_to_numpy(reference.runnable(keras.Model(model.input, a))(x)).astype("float64")
    acts = np.transpose(acts, (0, 2, 3, 1))  # (N, H, W, 4)
    w = keras.ops.convert_to_numpy(head.kernel)[0, 0].astype("float64")
    b = keras.ops.convert_to_numpy(head.bias).astype("float64")
    predicted = (acts @ w + b).argmax(-1) == 1
    np.testing.assert_array_equal(kerasxai.targets.regions(model, x, Segmentation(1)), predicted)
    grads = predicted[..., None] * w[:, 1]
    expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts).sum(-1), 0)
    np.testing.assert_allclose(kerasxai.gradcam(model, x, target=Segmentation(1), raw=True), expected, rtol=1e-4, atol=1e-6)


def test_outputs_that_are_not_per_pixel_maps_and_a_heads_own_layer_are_refused(segmenter):
    inp = keras.Input((12, 12, 3))
    conv = layers.Conv2D(3, 1, activation="softmax")(layers.Conv2D(4, 3, padding="same")(inp))
    flat = keras.Model(inp, layers.Reshape((144, 3))(conv))
    squeezed = keras.Model(inp, layers.Reshape((12, 12))(layers.Conv2D(1, 1, activation="sigmoid")(inp)))
    for model in (flat, squeezed):
        with pytest.raises(ValueError, match="cannot be read as a map"):
            kerasxai.gradcam(model, X, target=Segmentation(1))
    with pytest.raises(ValueError, match="Layer 'head' makes output .* Explain a layer before it"):
        kerasxai.gradcam(segmenter, X, target=Segmentation(1), layer="head")
    with pytest.raises(ValueError, match="not a list of them"):
        kerasxai.gradcam(segmenter, X[:2], target=[Segmentation(1), Segmentation(2)])
    with pytest.raises(ValueError, match="trailing axis of size 1"):
        kerasxai.gradcam(segmenter, X, target=Segmentation(1, mask=np.ones((10, 10, 1), bool)))


def test_a_one_channel_head_without_activation_is_read_as_class_1_where_positive():
    model = _segmenter(seed=69, classes=1, activation=None)
    _, acts, w, b = _parts(model)
    logit = (acts @ w + b)[..., 0]
    for c, region, sign in ((1, logit > 0, 1.0), (0, logit <= 0, -1.0)):
        np.testing.assert_array_equal(kerasxai.targets.regions(model, X, Segmentation(c)), region)
        grads = sign * region[..., None] * w[:, 0]
        expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * acts).sum(-1), 0)
        np.testing.assert_allclose(kerasxai.gradcam(model, X, target=Segmentation(c), raw=True), expected,
                                   rtol=1e-4, atol=1e-6)


def test_a_softmax_hidden_in_a_lambda_is_found_per_pixel_and_said(segmenter):
    inp = keras.Input((12, 12, 3))
    a = segmenter.get_layer("c")(inp)
    logits = layers.Conv2D(3, 1, name="head")(a)
    hidden = keras.Model(inp, layers.Lambda(lambda t: keras.ops.softmax(t, axis=-1))(logits))
    hidden.get_layer("head").set_weights(segmenter.get_layer("head").get_weights())
    with pytest.warns(UserWarning, match="taken as softmax probabilities"):
        got = kerasxai.targets.regions(hidden, X, Segmentation(2))
    np.testing.assert_array_equal(got, kerasxai.targets.regions(segmenter, X, Segmentation(2)))


def test_images_with_nothing_to_explain_get_flat_maps_from_every_method(segmenter):
    empty = np.zeros((5, 10, 10), bool)
    empty[:2, 3:6, 3:6] = True  # images 2..4 select nothing
    target = Segmentation(1, mask=empty)
    for method, options in (("scorecam", {"n": 4}), ("eigencam", {}), ("gradcam", {}), ("rise", {"n": 16})):
        with pytest.warns(PerImageWarning, match=r"image\(s\) \[2, 3, 4\]: there is nothing to explain"):
            maps = getattr(kerasxai, method)(segmenter, X, target=target, **options)
        assert not maps[2:].any() and maps[:2].max() == 1.0, method


def test_decode_errors_name_what_it_received_and_non_finite_boxes_are_refused():
    model = _detector(regression=True)

    def keyed(out):
        return out["boxes"], out["cls"]

    with pytest.raises(ValueError, match=r"KeyError.*It received a dict \{.*'cls': \(\w+, 4, 4, 3\)"):
        kerasxai.saliency(model, X, target=Detection([0, 0, 6, 6], 1, keyed))

    def exploding(out):
        boxes, scores = decode_anchors(out)
        return boxes / keras.ops.where(keras.ops.arange(16)[None, :, None] == 3, 0.0, 1.0), scores

    with pytest.raises(ValueError, match=r"decode gave NaN or infinite boxes .* image\(s\) \[0, 1, 2, 3, 4\]"):
        kerasxai.saliency(model, X, target=Detection([0, 0, 6, 6], 1, exploding))


def test_drise_refuses_what_it_cannot_read():
    image = np.ones((12, 12, 3), "float32")
    with pytest.raises(ValueError, match="fn returned a dict"):
        kerasxai.drise(lambda b: {"boxes": [], "scores": []}, image, [0, 0, 6, 6], 0, n=4)
    with pytest.raises(ValueError, match="give \\(M, K\\) probabilities per detection"):
        kerasxai.drise(lambda b: [(np.array([[0, 0, 6, 6]]), np.array([0.9]))] * len(b), image, [0, 0, 6, 6], 0, n=4)
    with pytest.raises(ValueError, match="with its channel axis"):
        kerasxai.drise(_bright_detector, np.ones((3, 12, 12)), [0, 0, 6, 6], 0, n=4)


def test_outlines_must_have_the_maps_aspect():
    maps = {"gradcam": np.random.default_rng(2).random((2, 16, 16))}
    with pytest.raises(ValueError, match="does not have the maps' aspect"):
        kerasxai.plot_explanations(np.zeros((2, 16, 16, 3), np.uint8), maps, outlines=np.ones((2, 8, 16), bool))
    kerasxai.plot_explanations(np.zeros((2, 16, 16, 3), np.uint8), maps, outlines=np.ones((2, 8, 8), bool))  # half size


def test_a_quantized_per_pixel_head_is_explained_on_its_probabilities_and_says_so():
    keras.utils.set_random_seed(73)
    inp = keras.Input((12, 12, 3))
    model = keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(layers.Conv2D(4, 3, padding="same")(inp)))
    model.quantize("int8")
    mask = _masks(5, 12, seed=74)

    def score(z):
        return (keras.ops.convert_to_numpy(model(z))[..., 1].astype("float64") * mask).sum(axis=(1, 2))

    clean, total, count = score(X), np.zeros((5, 12, 12)), np.zeros((12, 12))
    for i in range(0, 12, 6):
        for j in range(0, 12, 6):
            hidden = X.copy()
            hidden[:, i:i + 6, j:j + 6] = 0.0
            total[:, i:i + 6, j:j + 6] += (clean - score(hidden))[:, None, None]
            count[i:i + 6, j:j + 6] += 1
    with pytest.warns(UserWarning, match="ends in a softmax whose logits cannot be reached"):
        got = kerasxai.occlusion(model, X, target=Segmentation(1, mask=mask), window=6, stride=6, raw=True)
    np.testing.assert_allclose(got, total / count, rtol=1e-4, atol=1e-6)


def test_a_new_decode_lambda_per_call_keeps_a_bounded_number_of_steps():
    # a detector's decode is held by its compiled steps: a probe keeps the steps of its last few decodes only
    model = _detector()
    expected = kerasxai.saliency(model, X[:2], target=Detection(BOXES[0], 1, decode_anchors, iou=0.1), raw=True)
    probe = kerasxai.get_probe(model, (), target=Detection(BOXES[0], 1, decode_anchors))
    for _ in range(11):
        got = kerasxai.saliency(model, X[:2], target=Detection(BOXES[0], 1, lambda out: decode_anchors(out), iou=0.1),
                                raw=True)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert len(probe._structured_steps) == 8
    # the least recently used kind goes: a decode used between new ones keeps its steps
    for _ in range(9):
        kerasxai.saliency(model, X[:2], target=Detection(BOXES[0], 1, decode_anchors, iou=0.1), raw=True)
        kerasxai.saliency(model, X[:2], target=Detection(BOXES[0], 1, lambda out: decode_anchors(out), iou=0.1), raw=True)
    assert any(key[1] is decode_anchors for key in probe._structured_steps)

    @dataclasses.dataclass
    class Decode:  # eq=True: no hash; compiled for each call, never refused
        scale: float = 1.0

        def __call__(self, out):
            return decode_anchors(out)

    got = kerasxai.saliency(model, X[:2], target=Detection(BOXES[0], 1, Decode(), iou=0.1), raw=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
