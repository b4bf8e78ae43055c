"""Lightning training throughput against a plain PyTorch loop on the same model and data."""

from __future__ import annotations

import copy
import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from scout_exp.training.callbacks import TrainThroughput
from scout_exp.training.module import ClassifierModule


def main(batch: int = 32, steps: int = 24, size: int = 112) -> dict[str, Any]:
    """Samples/s of each loop (same init, data, optimiser, precision), and their ratio."""
    torch.manual_seed(0)
    data = _prerendered(batch * steps, size)
    module = ClassifierModule(
        "resnet18", num_classes=20, scheduler="none", optimizer=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)
    )
    plain = _plain_loop(copy.deepcopy(module.model), data, batch)
    lightning = _lightning_loop(module, data, batch)
    return {
        "bench": "train",
        "model": "resnet18",
        "image_size": size,
        "batch_size": batch,
        "steps": steps,
        "plain_samples_per_s": round(plain, 2),
        "lightning_samples_per_s": round(lightning, 2),
        "ratio": round(lightning / plain, 3),
    }


def _prerendered(n: int, size: int) -> TensorDataset:
    """FaceParts samples rendered once, so both loops read identical tensors."""
    from scout_exp.data.datamodules import FacePartsDataModule
    from scout_exp.data.transforms import InputSpec

    dm = FacePartsDataModule(
        num_identities=20, images_per_identity=-(-n // 20), image_size=max(size, 96), input_spec=InputSpec(size=size)
    )
    dm.setup()
    dataset = dm.dataset
    if dataset is None:
        raise RuntimeError("FacePartsDataModule.setup() built no dataset")
    xs, ys = zip(*(dataset[i] for i in range(n)))
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


def _plain_loop(model: torch.nn.Module, data: TensorDataset, batch: int) -> float:
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for _epoch in range(2):  # the first epoch is a warm-up, as Lightning's first is below
        start = time.perf_counter()
        samples = 0
        for x, y in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            samples += x.shape[0]
        elapsed = time.perf_counter() - start
    return samples / elapsed


def _lightning_loop(module: ClassifierModule, data: TensorDataset, batch: int) -> float:
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    for _ in range(2):  # the first fit is a warm-up, as the plain loop's first epoch is
        meter = TrainThroughput()
        pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            precision="bf16-mixed",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[meter],
        ).fit(module, loader)
    return meter.samples_per_s
