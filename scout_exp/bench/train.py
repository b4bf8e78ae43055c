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

BATCH = 32
STEPS = 24
SIZE = 112


def main() -> dict[str, Any]:
    """Samples/s of each loop (same init, data, optimiser, precision), and their ratio."""
    torch.manual_seed(0)
    data = _prerendered(BATCH * STEPS)
    module = ClassifierModule("resnet18", num_classes=20, scheduler="none",
                              optimizer=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9))
    plain = _plain_loop(copy.deepcopy(module.model), data)
    lightning = _lightning_loop(module, data)
    return {
        "bench": "train",
        "model": "resnet18",
        "image_size": SIZE,
        "batch_size": BATCH,
        "steps": STEPS,
        "plain_samples_per_s": round(plain, 2),
        "lightning_samples_per_s": round(lightning, 2),
        "ratio": round(lightning / plain, 3),
    }


def _prerendered(n: int) -> TensorDataset:
    """FaceParts samples rendered once, so both loops read identical tensors."""
    from scout_exp.data.datamodules import FacePartsDataModule

    dm = FacePartsDataModule(num_identities=20, images_per_identity=max(1, n // 20), image_size=SIZE)
    dm.setup()
    xs, ys = zip(*(dm.dataset[i] for i in range(n)))
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


def _plain_loop(model: torch.nn.Module, data: TensorDataset) -> float:
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for epoch in range(2):  # the first epoch is a warm-up, as Lightning's first is below
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


def _lightning_loop(module: ClassifierModule, data: TensorDataset) -> float:
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True)
    for _ in range(2):  # the first fit is a warm-up, as the plain loop's first epoch is
        meter = TrainThroughput()
        pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, precision="bf16-mixed", logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   callbacks=[meter]).fit(module, loader)
    return meter.samples_per_s
