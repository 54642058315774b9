"""The version of kerasxai (read by setup.cfg and recorded in every run folder)."""

__version__ = "0.1.0"
