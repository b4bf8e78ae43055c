"""Train a face classifier (and its confidence head): ``python train.py model=resnet50 head=hardness``."""

from scout_exp.cli import main
from scout_exp.tasks.train import train

if __name__ == "__main__":
    main("train", train)
