"""Train a face classifier (and its confidence head): ``python train.py model=resnet50 head=hardness``."""

from scout_exp.cli import main

if __name__ == "__main__":
    main("train", "scout_exp.tasks.train.train")
