"""The training loop: mini-batch Adam on the logits loss, early stopping on validation loss,
keeping the best weights. Deterministic for a given seed on CPU."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model_artifact.network import TabularMLP
from training.settings import TrainingConfig


@dataclass(frozen=True)
class FitResult:
    model: TabularMLP
    best_epoch: int
    train_losses: list[float]
    validation_losses: list[float]


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_validation: np.ndarray,
    y_validation: np.ndarray,
    config: TrainingConfig,
) -> FitResult:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = TabularMLP(x_train.shape[1], config.hidden, config.dropout)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32))
    xv, yv = torch.from_numpy(x_validation), torch.from_numpy(y_validation.astype(np.float32))
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    train_losses: list[float] = []
    validation_losses: list[float] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model.logits(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        train_losses.append(total / len(xt))
        model.eval()
        with torch.no_grad():
            validation_loss = loss_fn(model.logits(xv), yv).item()
        validation_losses.append(validation_loss)
        if validation_loss < best_loss:
            best_loss, best_epoch, best_state = (
                validation_loss,
                epoch,
                copy.deepcopy(model.state_dict()),
            )
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, best_epoch, train_losses, validation_losses)
