"""TensorFlow Federated's Shakespeare character model, written for torch.func.

embedding 8 -> LSTM 256 -> LSTM 256 -> dense to the vocabulary (logits at
every position; McMahan et al. 2017, Jiang et al. 2019).

Three paths compute the same layer (tests/models/test_lstm_paths.py):
- `fused=False`, the reference: the recurrence spelt out with plain ops, one
  autograd node per op and step;
- `fused=True` (default) on a CPU in float32 outside vmap: oneDNN's fused RNN
  kernels, which nn.LSTM runs, in an autograd.Function that keeps their fused
  backward under torch.func.grad (pfl.models.lstm_onednn; nn.LSTM itself falls
  back to a per-step differentiable backward there, and has no vmap rule);
- `fused=True` elsewhere (vmap, other devices and dtypes): a hand-written BPTT
  Function over plain ops (pfl.models.lstm_fused).
Second-order differentiation (grad of grad) always runs the reference ops.

Initialization follows Keras' defaults used by TFF's model: embedding
U(-0.05, 0.05), input kernels Glorot-uniform, recurrent kernels orthogonal,
biases zero except the forget gate's (1), dense layer Glorot-uniform.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pfl.models import lstm_onednn as onednn
from pfl.models.lstm_fused import nested_differentiation, recurrence


class LSTMLayer(nn.Module):
    """One LSTM layer over [B, T, in] -> [B, T, hidden]; gates in order i, f, g, o."""

    #: engine.backend=auto runs clients one by one on a CPU, as for nn.LSTM: with clients of
    #: very unequal size, vmap pays for the padded steps, and every client's weights differ, so a
    #: vmapped step is a batch of per-client matmuls anyway; sequential clients get oneDNN's kernels
    sequential_on_cpu = True

    def __init__(self, in_features: int, hidden: int, fused: bool = True):
        super().__init__()
        self.hidden = hidden
        self.fused = fused
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
        if self.fused and not nested_differentiation():  # time-major: one step's slices are contiguous
            xt = x.transpose(0, 1)
            if onednn.available(xt):
                return onednn.layer(xt, self.weight_ih, self.weight_hh, self.bias).transpose(0, 1)
            pre = xt @ self.weight_ih.T + self.bias
            return recurrence(pre, self.weight_hh).transpose(0, 1)
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
    from the last position with `last_only`, for LEAF's one-target rows). `fused=False`:
    the reference ops (slower; the same numbers to float rounding)."""

    def __init__(self, num_classes: int, vocab_size: int | None = None, embed_dim: int = 8, hidden: int = 256,
                 layers: int = 2, last_only: bool = False, fused: bool = True):
        super().__init__()
        if layers < 1 or hidden < 1 or embed_dim < 1:
            raise ValueError("CharLSTM: layers, hidden and embed_dim must be >= 1")
        vocab_size = vocab_size or num_classes
        self.last_only = last_only
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
        sizes = [embed_dim] + [hidden] * layers
        self.lstm = nn.ModuleList(LSTMLayer(a, b, fused) for a, b in zip(sizes[:-1], sizes[1:]))
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
