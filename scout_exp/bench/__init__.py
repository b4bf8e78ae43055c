"""Benchmarks: ``python -m scout_exp.bench NAME`` prints one JSON object as its last line."""
