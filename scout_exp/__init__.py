"""scout-exp: configuration-driven experiments for explainable face recognition."""

__version__ = "0.1.0"
