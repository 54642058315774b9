"""Is the explanation right? Metrics, and every method scored where the answer is known.

- :mod:`~kerasxai.evaluation.metrics`: deletion/insertion, pointing games, average drop,
  randomisation checks;
- :mod:`~kerasxai.evaluation.evaluate`: ``kerasxai evaluate``, every method of the method
  table on generated images with known object masks;
- :mod:`~kerasxai.evaluation.synthetic`: those generated images and the small CNN they train;
- :mod:`~kerasxai.evaluation.scenes`: generated two-object scenes, a small U-Net and a small
  single-shot detector trained on them (segmentation and detection targets, D-RISE).
"""
