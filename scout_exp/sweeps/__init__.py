"""Sweeps: collect multirun results into tables and plots, check W&B sweep files, Hydra sweep callbacks."""

from scout_exp.sweeps.collect import Results, collect

__all__ = ["Results", "collect"]
