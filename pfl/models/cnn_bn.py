"""SmallCNN with batch normalization: the model FedBN (Li et al. 2021) needs.

conv 16 -> BN -> relu -> max-pool 2 -> conv 32 -> BN -> relu -> adaptive avg-pool 4 -> dropout ->
dense 64 relu -> `head` (dense num_classes): pfl.models.cnn.SmallCNN with a BN layer after each
convolution (the layers `bn1`, `bn2`; FedBN keeps them on the clients). The BN layers normalize
with the statistics of the real examples of the batch (pfl.models.layers.MaskedBatchNorm); the
model takes the batch's `mask` for that (pfl.task passes it to models whose forward accepts it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pfl.models.layers import KeyedDropout, MaskedBatchNorm


class SmallBNCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, dropout: float = 0.25):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1)
        self.bn1 = MaskedBatchNorm(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = MaskedBatchNorm(32)
        self.drop = KeyedDropout(dropout, salt=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: Tensor, key: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x), mask)), 2)
        x = torch.relu(self.bn2(self.conv2(x), mask))
        x = nn.functional.adaptive_avg_pool2d(x, 4)
        x = self.drop(x.flatten(1), key)
        return self.head(torch.relu(self.fc1(x)))
