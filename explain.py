"""SCOUT explanations: ``python explain.py attribution=gradcampp images=[a.jpg,b.jpg]``."""

from scout_exp.cli import main
from scout_exp.tasks.explain import explain

if __name__ == "__main__":
    main("explain", explain)
