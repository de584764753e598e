"""The tabular network: an MLP whose size is configuration, so a larger variant can load a GPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TabularMLP(nn.Module):
    """Feature matrix (n, width) float32 -> probability of default (n,)."""

    def __init__(self, width: int, hidden: Sequence[int] = (64,), dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = width
        for size in hidden:
            layers += [nn.Linear(previous, size), nn.ReLU(), nn.Dropout(dropout)]
            previous = size
        layers.append(nn.Linear(previous, 1))
        self.body = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores; training uses these with a logits loss for numerical stability."""
        logits: torch.Tensor = self.body(x).squeeze(-1)
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
