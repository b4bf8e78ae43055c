"""The tasks behind the entry points: ``train`` (train.py) and ``explain`` (explain.py), and the recogniser loader."""
