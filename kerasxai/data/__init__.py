"""Images in, classes out: the one decode/resize stack, ImageNet's class names, top-k predictions.

- :mod:`~kerasxai.data.images`: decoding (``tf.io.decode_image``), the one resize
  (``image_dataset_from_directory``'s), per-family ``preprocess_input``, ``load_images``,
  a folder run's model pixels and display photo;
- :mod:`~kerasxai.data.imagenet`: the 1000 class names, shipped (no download);
- :mod:`~kerasxai.data.predictions`: ``top_k`` and top-k rows from logits already computed.
"""
