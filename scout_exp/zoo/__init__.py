"""Pretrained-weights zoo: catalogue, verified fetch and cache (``python -m scout_exp.zoo``)."""

from scout_exp.zoo.fetch import cache_root, fetch, weights_path
from scout_exp.zoo.registry import ZooEntry, get_entry, list_entries

__all__ = ["ZooEntry", "cache_root", "fetch", "get_entry", "list_entries", "weights_path"]
