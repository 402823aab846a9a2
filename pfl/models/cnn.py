"""Convolutional models for 28x28 grey-scale images (EMNIST, FEMNIST)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pfl.models.layers import KeyedDropout


class EmnistCNN(nn.Module):
    """TensorFlow Federated's EMNIST baseline CNN (Jiang et al. 2019, McMahan et al.).

    conv 3x3x32 relu -> conv 3x3x64 relu -> max-pool 2 -> dropout 0.25 ->
    flatten (9216) -> dense 128 relu -> dropout 0.5 -> dense num_classes.
    Glorot-normal weights, zero biases (Keras defaults of the TFF model).
    Inputs: [B, 28, 28] or [B, 1, 28, 28] floats.
    """

    def __init__(self, num_classes: int = 62, dropout1: float = 0.25, dropout2: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.drop1 = KeyedDropout(dropout1, salt=1)
        self.fc1 = nn.Linear(9216, 128)
        self.drop2 = KeyedDropout(dropout2, salt=2)
        self.head = nn.Linear(128, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, key: Tensor | None = None) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.max_pool2d(x, 2)
        x = self.drop1(x, key).flatten(1)
        x = self.drop2(torch.relu(self.fc1(x)), key)
        return self.head(x)


class SmallCNN(nn.Module):
    """A small CNN (conv 16, conv 32, dense 64) with dropout, for tests and quick runs.

    Works on [B, H, W] or [B, C, H, W] inputs of any size (adaptive pooling).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, dropout: float = 0.25):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.drop = KeyedDropout(dropout, salt=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: Tensor, key: Tensor | None = None) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x))
        x = nn.functional.adaptive_avg_pool2d(x, 4)
        x = self.drop(x.flatten(1), key)
        return self.head(torch.relu(self.fc1(x)))
