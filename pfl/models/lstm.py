"""TensorFlow Federated's Shakespeare character model, written for torch.func.

embedding 8 -> LSTM 256 -> LSTM 256 -> dense to the vocabulary (logits at
every position; McMahan et al. 2017, Jiang et al. 2019).

The recurrence is spelt out with matmuls instead of nn.LSTM: the fused LSTM
kernels have no vmap batching rule (torch falls back to a per-client loop,
with a warning), and under torch.func.grad, which every engine uses, they
showed no clear speed-up on a CPU here. Plain ops vectorize over a cohort and give
the same numbers in a loop (tests/models/test_real.py).

Initialization follows Keras' defaults used by TFF's model: embedding
U(-0.05, 0.05), input kernels Glorot-uniform, recurrent kernels orthogonal,
biases zero except the forget gate's (1), dense layer Glorot-uniform.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LSTMLayer(nn.Module):
    """One LSTM layer over [B, T, in] -> [B, T, hidden]; gates in order i, f, g, o."""

    #: engine.backend=auto runs clients one by one on a CPU, as for nn.LSTM: with clients of
    #: very unequal size, vmap pays for the padded steps (a 5-client Shakespeare round of
    #: 17 client steps: 19-23 s vmapped, 4.6-5.7 s sequential, on 2 CPU cores)
    sequential_on_cpu = True

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden, in_features))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden, hidden))
        self.bias = nn.Parameter(torch.zeros(4 * hidden))
        nn.init.xavier_uniform_(self.weight_ih)
        for k in range(4):  # Keras: one orthogonal [hidden, 4*hidden] matrix; per gate block is as good
            nn.init.orthogonal_(self.weight_hh.data[k * hidden:(k + 1) * hidden])
        with torch.no_grad():
            self.bias[hidden:2 * hidden] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        batch, steps = x.shape[0], x.shape[1]
        pre = x @ self.weight_ih.T + self.bias  # input contributions of all steps at once
        h = x.new_zeros(batch, self.hidden)
        c = x.new_zeros(batch, self.hidden)
        w_hh = self.weight_hh.T
        out = []
        for t in range(steps):
            gates = pre[:, t] + h @ w_hh
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out, dim=1)


class CharLSTM(nn.Module):
    """Inputs [B, T] token ids; logits [B, T, num_classes] (or [B, num_classes]
    from the last position with `last_only`, for LEAF's one-target rows)."""

    def __init__(self, num_classes: int, vocab_size: int | None = None, embed_dim: int = 8, hidden: int = 256,
                 layers: int = 2, last_only: bool = False):
        super().__init__()
        if layers < 1 or hidden < 1 or embed_dim < 1:
            raise ValueError("CharLSTM: layers, hidden and embed_dim must be >= 1")
        vocab_size = vocab_size or num_classes
        self.last_only = last_only
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        sizes = [embed_dim] + [hidden] * layers
        self.lstm = nn.ModuleList(LSTMLayer(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(hidden, num_classes)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, key: Tensor | None = None) -> Tensor:
        h = self.embedding(x.long())
        for layer in self.lstm:
            h = layer(h)
        if self.last_only:
            h = h[:, -1]
        return self.head(h)
