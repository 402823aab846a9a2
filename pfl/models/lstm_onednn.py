"""One LSTM layer through oneDNN's fused RNN kernels (what nn.LSTM runs on a CPU), usable under torch.func.grad.

nn.LSTM's CPU forward and backward are `aten.mkldnn_rnn_layer` and `aten.mkldnn_rnn_layer_backward`:
one kernel per layer and direction for the whole sequence. Under torch.func.grad, though, autograd
runs with create_graph=True and picks the op's *differentiable* backward (plain per-step ops), so
nn.LSTM loses its speed exactly where pfl trains. `layer` wraps the two kernels in an
autograd.Function whose backward is the fused kernel (first order; second-order differentiation runs
the reference ops, see pfl.models.lstm_fused.nested_differentiation).

Used only where the kernel applies: a CPU tensor of float32 outside torch.func.vmap and autocast
(`available`); elsewhere the layer runs pfl.models.lstm_fused. FLOPs: FlopCounterMode has no formula
for these kernels; the ones registered here count the same matmuls as the plain-op recurrence (the
input projection, T - 1 recurrent steps, and in the backward both input-projection gradients, T - 1
recurrent steps and the recurrent-weight gradient), so `flops_per_round` does not depend on the path.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

_LSTM_MODE = 2  # cuDNN/oneDNN RNN mode numbering: RNN_RELU 0, RNN_TANH 1, LSTM 2, GRU 3
_FWD, _BWD = torch.ops.aten.mkldnn_rnn_layer.default, torch.ops.aten.mkldnn_rnn_layer_backward.default


def available(x: Tensor) -> bool:
    """The kernel applies: float32 on a CPU with oneDNN, outside vmap and CPU autocast."""
    from pfl.models.lstm_fused import _batched

    return (x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not torch.is_autocast_enabled("cpu") and not _batched())


def _args(hidden: int) -> tuple:
    # reverse, batch_sizes, mode, hidden_size, num_layers, has_biases, bidirectional, batch_first, train
    return False, [], _LSTM_MODE, hidden, 1, True, False, False, True


class _Layer(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor):
        batch, hidden = x.shape[1], w_hh.shape[1]
        zeros = x.new_zeros(batch, hidden)
        rev, sizes, mode, h, layers, has_b, bi, bf, train = _args(hidden)
        with torch.enable_grad():  # the kernel keeps its workspace (for the backward) only in grad mode
            out, hy, cy, workspace = _FWD(x.detach(), w_ih.detach(), w_hh.detach(), bias.detach(),
                                          torch.zeros_like(bias), zeros, zeros, rev, sizes, mode, h, layers, has_b, bi,
                                          bf, train)
        # torch.func drops integer outputs of a Function: the workspace's bytes travel as float32 (padded)
        pad = -workspace.numel() % 4
        if pad:
            workspace = torch.cat([workspace, workspace.new_zeros(pad)])
        return out, hy, cy, workspace.view(torch.float32), torch.tensor(pad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        out, hy, cy, workspace, pad = output
        ctx.save_for_backward(*inputs, out, hy, cy, workspace)
        ctx.pad = int(pad)
        ctx.set_materialize_grads(False)  # no zero gradients for hy, cy and the workspace

    @staticmethod
    def backward(ctx, d_out: Tensor, _d_hy, _d_cy, _d_ws, _d_pad):
        x, w_ih, w_hh, bias, out, hy, cy, workspace = ctx.saved_tensors
        workspace = workspace.view(torch.uint8)
        workspace = workspace[:workspace.numel() - ctx.pad]
        hidden = w_hh.shape[1]
        zeros = x.new_zeros(x.shape[1], hidden)
        rev, sizes, mode, h, layers, has_b, bi, bf, train = _args(hidden)
        with torch.no_grad():
            grads = _BWD(x, w_ih, w_hh, bias, torch.zeros_like(bias), zeros, zeros, out, hy, cy, d_out.contiguous(),
                         None, None, rev, mode, h, layers, has_b, train, bi, sizes, bf, workspace)
        return grads[0], grads[1], grads[2], grads[3]


def layer(x: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor) -> Tensor:
    """Hidden states [T, B, H] from time-major x [T, B, in] (gates i, f, g, o; zero initial state)."""
    if torch._C._functorch.get_interpreter_stack() is None and not (
            torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_ih, w_hh, bias))):
        return _inference(x.contiguous(), w_ih, w_hh, bias)  # no gradient wanted: no workspace kept
    return _Layer.apply(x.contiguous(), w_ih, w_hh, bias)[0]


def _inference(x: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor) -> Tensor:
    hidden = w_hh.shape[1]
    zeros = x.new_zeros(x.shape[1], hidden)
    rev, sizes, mode, h, layers, has_b, bi, bf, _ = _args(hidden)
    with torch.no_grad():
        return _FWD(x, w_ih, w_hh, bias, torch.zeros_like(bias), zeros, zeros, rev, sizes, mode, h, layers, has_b,
                    bi, bf, False)[0]


def _matmul_flops(steps: int, batch: int, inp: int, hidden: int) -> tuple[int, int]:
    gates = 4 * hidden
    projection = 2 * steps * batch * inp * gates
    recurrent = 2 * (steps - 1) * batch * hidden * gates
    return projection + recurrent, 2 * projection + recurrent + 2 * steps * batch * hidden * gates


@register_flop_formula(torch.ops.aten.mkldnn_rnn_layer)
def _forward_flops(x_shape, w_ih_shape, *args, out_shape=None, **kwargs) -> int:
    return _matmul_flops(x_shape[0], x_shape[1], x_shape[2], w_ih_shape[0] // 4)[0]


@register_flop_formula(torch.ops.aten.mkldnn_rnn_layer_backward)
def _backward_flops(x_shape, w_ih_shape, *args, out_shape=None, **kwargs) -> int:
    return _matmul_flops(x_shape[0], x_shape[1], x_shape[2], w_ih_shape[0] // 4)[1]
