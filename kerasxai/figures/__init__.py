"""Figures of explanations: images, signals, volumes, and the pieces they share."""
