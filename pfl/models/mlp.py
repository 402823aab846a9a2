"""Dense models for feature-vector data (the default Synthetic data set)."""

from __future__ import annotations

from torch import Tensor, nn

from pfl.models.layers import KeyedDropout, MaskedBatchNorm


class MLP(nn.Module):
    """Logistic regression when `hidden` is empty, else an MLP with ReLU.

    `forward(x, key, mask)`: key drives dropout (None at evaluation); with `batch_norm`, each hidden
    layer is followed by batch normalization (`bn.<i>`) over the batch's real examples (`mask`).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: list[int] | tuple = (), dropout: float = 0.0,
                 batch_norm: bool = False):
        super().__init__()
        sizes = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.bn = nn.ModuleList(MaskedBatchNorm(b) for b in hidden) if batch_norm else None
        self.drop = nn.ModuleList(KeyedDropout(dropout, salt=i) for i in range(len(hidden)))
        self.head = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: Tensor, key: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        x = x.flatten(-1 - (x.dim() - 2), -1) if x.dim() > 2 else x
        for i, (layer, drop) in enumerate(zip(self.hidden, self.drop)):
            x = layer(x)
            x = self.bn[i](x, mask) if self.bn is not None else x
            x = drop(x.relu(), key)
        return self.head(x)
