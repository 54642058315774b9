"""Explaining a folder (or data set) of images into a run folder, and its report."""
