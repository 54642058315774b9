"""Inputs of every kind: fit-format datasets are read, bad inputs get one sentence naming what is wrong."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import kerasxai

RNG = np.random.default_rng(30)
IMAGES = RNG.uniform(-1, 1, (4, 8, 8, 3)).astype("float32")
META = RNG.uniform(-1, 1, (4, 3)).astype("float32")
LABELS = np.array([2, 0, 1, 2])


@pytest.fixture(scope="module")
def two_inputs():
    keras.utils.set_random_seed(31)
    image, meta = keras.Input((8, 8, 3), name="image"), keras.Input((3,), name="meta")
    x = layers.Concatenate()([layers.Flatten()(layers.Conv2D(2, 3, activation="tanh", name="conv")(image)),
                              layers.Dense(4, activation="tanh")(meta)])
    return keras.Model({"image": image, "meta": meta}, layers.Dense(3, activation="softmax")(x))


@pytest.fixture(scope="module")
def any_size():
    keras.utils.set_random_seed(32)
    inp = keras.Input((None, None, 3))
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(2, 3, activation="tanh", name="conv")(inp))
    return keras.Model(inp, layers.Dense(3)(x))


def test_fit_format_datasets_of_two_inputs_are_read_as_inputs_and_labels(two_inputs):
    expected = kerasxai.saliency(two_inputs, [IMAGES, META], raw=True)
    by_label = kerasxai.saliency(two_inputs, [IMAGES, META], target=LABELS.tolist(), raw=True)
    for inputs in ((IMAGES, META), {"image": IMAGES, "meta": META}, {"meta": META, "image": IMAGES}):
        for batched in (True, False):
            ds = tf.data.Dataset.from_tensor_slices((inputs, LABELS))
            ds = ds.batch(3) if batched else ds
            np.testing.assert_allclose(kerasxai.saliency(two_inputs, ds, raw=True, batch_size=3), expected, rtol=1e-6)
            np.testing.assert_allclose(kerasxai.saliency(two_inputs, ds, target="label", raw=True), by_label, rtol=1e-6)
    # (inputs..., labels) and sample weights as model.fit takes them
    with_weights = tf.data.Dataset.from_tensor_slices(((IMAGES, META), LABELS, np.ones(4))).batch(2)
    np.testing.assert_allclose(kerasxai.saliency(two_inputs, with_weights, target="label", raw=True), by_label, rtol=1e-6)
    flat = ((IMAGES[i : i + 2], META[i : i + 2], LABELS[i : i + 2]) for i in (0, 2))
    np.testing.assert_allclose(kerasxai.saliency(two_inputs, flat, target="label", raw=True), by_label, rtol=1e-6)


def test_a_path_is_refused_with_the_loader_to_use(any_size):
    for given in ("cat.jpg", ["cat.jpg", "dog.jpg"]):
        with pytest.raises(TypeError, match=r"not file paths.*kerasxai\.load_images\('cat\.jpg'|not file paths.*load_images\(\['cat"):
            kerasxai.saliency(any_size, given)


def test_a_list_of_images_of_different_sizes_names_them(any_size):
    images = [IMAGES[0], np.zeros((10, 10, 3), "float32"), IMAGES[1]]
    with pytest.raises(ValueError, match=r"^images is a list of 3 examples of different shapes \(\(8, 8, 3\) for image 0, "
                                         r"\(10, 10, 3\) for image\(s\) 1\).*resize them"):
        kerasxai.gradcam(any_size, images)


def test_batches_of_different_sizes_are_refused_before_their_pass(any_size):
    def batches():
        yield IMAGES[:2]
        yield np.zeros((2, 10, 10, 3), "float32")

    with pytest.raises(ValueError, match=r"^images 2\.\.3 have shape \(10, 10, 3\), but the call's first ones have "
                                         r"\(8, 8, 3\)"):
        kerasxai.saliency(any_size, batches())


def test_nan_in_a_tabular_input_names_that_input(two_inputs):
    meta = META.copy()
    meta[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^input 'meta' holds NaN or infinite values at image\(s\) 2:"):
        kerasxai.saliency(two_inputs, [IMAGES, meta])


def test_a_finite_float64_beyond_float32_is_said_to_overflow(two_inputs):
    images = IMAGES.astype("float64")
    images[1, 0, 0, 0] = 1e39
    meta = META.astype("float64")
    meta[3, 0] = -1e300
    with pytest.raises(ValueError, match=r"^input 'image' holds values beyond float32's range .* at image\(s\) 1: .*overflow"):
        kerasxai.saliency(two_inputs, [images, META])
    with pytest.raises(ValueError, match=r"^input 'meta' holds values beyond float32's range .* at image\(s\) 3:"):
        kerasxai.saliency(two_inputs, [IMAGES, meta])
    images[2, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite values at image\(s\) 2:"):  # a real infinity is said first
        kerasxai.saliency(two_inputs, [images, META])
