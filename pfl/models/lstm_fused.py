"""The LSTM recurrence as one autograd Function with a hand-written backward (BPTT).

`recurrence(pre, w_hh)` maps the input contributions of all steps, time-major pre [T, B, 4H]
(x @ W_ih^T + b, gates in order i, f, g, o), to the hidden states [T, B, H]:

    gates_t = pre_t + h_{t-1} @ W_hh^T
    i, f, o = sigmoid(.), g = tanh(.);  c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)

with h_{-1} = c_{-1} = 0: the same arithmetic, in the same order, as the plain-ops
layer (`pfl.models.lstm.LSTMLayer` with fused=False, the reference).

Used under torch.func.vmap and where oneDNN does not apply (pfl.models.lstm_onednn covers CPU
float32 outside vmap). Why: autograd records ~12 small ops per step and layer (and runs ~20 in the backward),
each paying dispatch and, under torch.func, transform overhead, while one step's matmul
at batch 20 is only ~10 MFLOP. Here the forward runs 8 ops per step into preallocated
outputs (no torch.stack of a list), and the backward 6 per step; every derivative that
does not depend on the step order is computed for all steps at once, and the weight
gradient is one [4H x B*T] x [B*T x H] matmul after the loop instead of one per step.

Under torch.func.vmap (clients of a cohort) the Function uses torch's generated vmap
rule: its forward and backward are plain ops, so a chunk's step is one batched matmul
([C, B, H] x [C, H, 4H] when every client has its own weights, one [C*B, H] x [H, 4H]
when they share them) instead of one per client. Buffers are allocated with *_like of a
batched input so that in-place writes stay legal under vmap.

First-order only: the backward is not itself differentiable. Under nested torch.func
differentiation (second-order MAML, Hessian-vector products; `nested_differentiation`)
the layer therefore runs the reference ops instead; plain autograd with create_graph=True
raises.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pfl.execution import under_vmap


# under torch.func.vmap ops with out= have no batching rule: the batched forms run there
_batched = under_vmap


def _forward_into(pre: Tensor, w: Tensor, acts: Tensor, cs: Tensor, tcs: Tensor, hs: Tensor) -> None:
    """The forward of plain (unbatched) tensors, time-major, every result written in place (out=):
    8 ops per step, no allocation."""
    hidden = hs.shape[-1]
    for t in range(pre.shape[0]):
        a, c, tc, h = acts[t], cs[t], tcs[t], hs[t]
        if t == 0:
            a.copy_(pre[0])
        else:
            torch.addmm(pre[t], hs[t - 1], w, out=a)
        torch.tanh(a[:, 2 * hidden:3 * hidden], out=a[:, 2 * hidden:3 * hidden])
        a[:, :2 * hidden].sigmoid_()
        a[:, 3 * hidden:].sigmoid_()
        i, f, g, o = a.chunk(4, dim=-1)
        if t == 0:
            torch.mul(i, g, out=c)
        else:
            torch.mul(f, cs[t - 1], out=c).addcmul_(i, g)
        torch.tanh(c, out=tc)
        torch.mul(o, tc, out=h)


def _forward_batched(pre: Tensor, w: Tensor, acts: Tensor, cs: Tensor, tcs: Tensor, hs: Tensor) -> None:
    """The same arithmetic with ops that have vmap batching rules (no out=): under vmap."""
    hidden = hs.shape[-1]
    for t in range(pre.shape[0]):
        gates = pre[0] if t == 0 else pre[t] + hs[t - 1] @ w
        a = acts[t]
        a.copy_(torch.sigmoid(gates))
        a[:, 2 * hidden:3 * hidden] = torch.tanh(gates[:, 2 * hidden:3 * hidden])
        i, f, g, o = a.chunk(4, dim=-1)
        cs[t] = i * g if t == 0 else f * cs[t - 1] + i * g
        tcs[t] = torch.tanh(cs[t])
        hs[t] = o * tcs[t]


def _backward_into(d_hs: Tensor, w_hh: Tensor, by_dc: Tensor, by_dh: Tensor, dc_by_dh: Tensor, f: Tensor,
                   d_pre: Tensor) -> None:
    """Backpropagation through time into d_pre (time-major); plain tensors use out= ops (6 per step)."""
    steps, batch, hidden = d_hs.shape
    plain = not _batched()
    dh = dc = None
    for t in range(steps - 1, -1, -1):
        dh_t = d_hs[t] if dh is None else d_hs[t] + dh
        dc = dh_t * dc_by_dh[t] if dc is None else (dc.addcmul_(dh_t, dc_by_dh[t]) if plain else dc + dh_t * dc_by_dh[t])
        d = d_pre[t]
        if plain:
            torch.mul(by_dc[t].view(batch, 3, hidden), dc.unsqueeze(1), out=d[:, :3 * hidden].view(batch, 3, hidden))
            torch.mul(by_dh[t], dh_t, out=d[:, 3 * hidden:])
            dc.mul_(f[t])
        else:
            d[:, :3 * hidden] = by_dc[t] * dc.repeat(1, 3)
            d[:, 3 * hidden:] = by_dh[t] * dh_t
            dc = dc * f[t]
        if t:
            dh = d @ w_hh


class _Recurrence(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(pre: Tensor, w_hh: Tensor):
        hidden = pre.shape[-1] // 4
        acts = torch.empty_like(pre)  # i, f, g, o after their nonlinearities
        cs = torch.empty_like(pre[..., :hidden])
        tcs, hs = torch.empty_like(cs), torch.empty_like(cs)
        (_forward_batched if _batched() else _forward_into)(pre, w_hh.T, acts, cs, tcs, hs)
        return hs, acts, cs, tcs

    @staticmethod
    def setup_context(ctx, inputs, output):
        hs, acts, cs, tcs = output
        ctx.save_for_backward(inputs[1], hs, acts, cs, tcs)
        ctx.mark_non_differentiable(acts, cs, tcs)

    @staticmethod
    def backward(ctx, d_hs: Tensor, _d_acts, _d_cs, _d_tcs):
        if torch.is_grad_enabled() and torch._C._functorch.get_interpreter_stack() is None:
            raise RuntimeError("the fused LSTM recurrence is first-order only: plain autograd with create_graph=True "
                               "needs pfl.models.lstm.LSTMLayer(fused=False)")
        with torch.no_grad():  # first order (nested torch.func differentiation never reaches here: see `nested`)
            return _Recurrence._backward(ctx, d_hs)

    @staticmethod
    def _backward(ctx, d_hs: Tensor):
        w_hh, hs, acts, cs, tc = ctx.saved_tensors
        hidden = hs.shape[-1]
        i, f, g, o = acts.chunk(4, dim=-1)
        c_prev = torch.cat([torch.zeros_like(cs[:1]), cs[:-1]])
        # d gates / d (dc) for i, f, g and d gates / d (dh) for o, every step at once
        by_dc = torch.cat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=-1)
        by_dh = tc * o * (1 - o)
        dc_by_dh = o * (1 - tc * tc)
        d_pre = torch.empty_like(acts)
        _backward_into(d_hs, w_hh, by_dc, by_dh, dc_by_dh, f.contiguous(), d_pre)
        h_prev = torch.cat([torch.zeros_like(hs[:1]), hs[:-1]])
        d_w = d_pre.reshape(-1, 4 * hidden).T @ h_prev.reshape(-1, hidden)
        return d_pre, d_w


def nested_differentiation() -> bool:
    """True under two or more torch.func differentiation transforms (grad of grad, jvp of grad:
    second-order MAML, Hessian-vector products): there the layer runs the reference ops, whose
    derivatives autograd differentiates again."""
    stack = torch._C._functorch.get_interpreter_stack() or []
    kinds = (torch._C._functorch.TransformType.Grad, torch._C._functorch.TransformType.Jvp)
    return sum(i.key() in kinds for i in stack) >= 2


def recurrence(pre: Tensor, w_hh: Tensor) -> Tensor:
    """Hidden states [T, B, H] of an LSTM layer from pre [T, B, 4H] (time-major) and W_hh [4H, H]."""
    return _Recurrence.apply(pre, w_hh)[0]
