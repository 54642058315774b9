"""Is the explanation right? Metrics, and every method scored where the answer is known.

- :mod:`~kerasxai.evaluation.metrics`: deletion/insertion, pointing games, average drop,
  randomisation checks;
- :mod:`~kerasxai.evaluation.evaluate`: ``kerasxai evaluate``, every method of the method
  table on generated images with known object masks;
- :mod:`~kerasxai.evaluation.synthetic`: those generated images and the small CNN they train.
"""
