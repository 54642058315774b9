"""Reading images for a model: files, preprocessing, ImageNet class names, top classes."""
