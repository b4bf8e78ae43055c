"""SCOUT explanations: ``python explain.py attribution=gradcampp images=[a.jpg,b.jpg]``."""

from scout_exp.cli import main

if __name__ == "__main__":
    main("explain", "scout_exp.tasks.explain.explain")
