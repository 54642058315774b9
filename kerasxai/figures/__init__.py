"""Pictures of explanations, made so that they cannot be misread.

- :mod:`~kerasxai.figures.overlay`: the one overlay (figures, folder runs and the report use it);
- :mod:`~kerasxai.figures.images`: method grids, layer views, feature maps for images;
- :mod:`~kerasxai.figures.nd`: signals (1-D models) and volumes (3-D models);
- :mod:`~kerasxai.figures.common`: what every figure shares (colour scales, titles, flat-map panels).
"""
