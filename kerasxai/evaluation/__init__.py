"""Evaluating explanations: metrics and synthetic data with known answers."""
