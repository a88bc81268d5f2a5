"""A unidirectional LSTM that does only the work its gradient needs: valid steps, no input gradient.

The "valid" path of `msakit.layers.encoders.lstm_path` for the unidirectional text encoder ("unilstm",
MMSA's TextSubNet). The same recurrence as `torch.nn.LSTM` (gates i, f, g, o; c' = f·c + i·g,
h' = o·tanh(c')), to float rounding, in values and in the gradients of all four weights
(tests/test_lstm_paths.py), computed as:

- the input projection W_ih·x + b for every valid token at once, one GEMM over the packed tokens
  (`pack_padded_sequence`: step-major, longest sample first), left to autograd: its backward is one
  GEMM for W_ih's gradient, and none for the input's unless the input requires one. oneDNN's fused
  LSTM backward (the other paths) always computes the input's gradient, a GEMM as large as W_ih's,
  which the text features (no parameters upstream) never use;
- the recurrence over the packed tokens in `_Recurrence`, a custom autograd function: step t runs
  only the samples still running (the packed batch sizes), so no padded step is computed, and its
  backward walks the steps in reverse with the closed-form LSTM cell derivatives, then forms W_hh's
  gradient as one GEMM over all steps.

About a third less arithmetic than oneDNN's fused LSTM on the same batches, but not less time on this
machine: in the eighth stop's interleaved pairs of the size-matched LF-DNN (batch 128, 384 → 128) the
epoch took 1.16x the "segments" path's CPU time, and LMF's (batch 64) 0.98x, its later epochs 1.02x
(docs/benchmarks.md, docs/bench/compare_mmsa_s8.json): the per-step Python loop of small GEMMs and
elementwise ops costs more than the work it saves. It stays opt-in; "segments" is the faster path here.

Letters: N valid tokens in the packed batch, T steps, B samples, D input width, H hidden width.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def valid_steps_lstm(lstm: nn.LSTM, x: Tensor, mask: Tensor) -> Tensor:
    """(B, L, D) batch-first inputs, (B, L) mask with valid steps first -> (B, L, H) outputs, 0 on padding.

    `lstm`: one layer, unidirectional, with biases, batch_first (what `SequenceEncoder` builds). A sample
    with no valid step runs its first step (packing needs one), which is then zeroed."""
    if lstm.num_layers != 1 or lstm.bidirectional or not lstm.bias or lstm.proj_size or not lstm.batch_first:
        raise ValueError("valid_steps_lstm takes a one-layer unidirectional batch-first nn.LSTM with biases")
    hidden = lstm.hidden_size
    # gates reordered i, f, o, g so that one sigmoid covers three of them: rows of W_ih, W_hh and the bias
    ranges = ((0, 2 * hidden), (3 * hidden, 4 * hidden), (2 * hidden, 3 * hidden))
    order = torch.cat([torch.arange(lo, hi) for lo, hi in ranges]).to(x.device)
    w_ih, w_hh, b_ih, b_hh = (getattr(lstm, f"{n}_l0") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    lengths = mask.sum(1).cpu()
    empty = bool((lengths == 0).any())
    lengths = lengths.clamp_min(1)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    gates_x = nn.functional.linear(packed.data, w_ih[order], (b_ih + b_hh)[order])  # (N, 4H)
    out = _Recurrence.apply(gates_x, w_hh[order], packed.batch_sizes.tolist())  # (N, H)
    h = pad_packed_sequence(packed._replace(data=out), batch_first=True, total_length=x.shape[1])[0]
    return h * mask.unsqueeze(-1).to(h.dtype) if empty else h


class _Recurrence(torch.autograd.Function):
    """h_t, c_t from the precomputed input gates of the packed tokens (gate order i, f, o, g) and W_hh."""

    @staticmethod
    def forward(ctx: Any, gates_x: Tensor, w_hh: Tensor, batch_sizes: list[int]) -> Tensor:
        tokens, hidden = gates_x.shape[0], w_hh.shape[1]
        sig = slice(0, 3 * hidden)  # i, f, o
        acts = torch.empty_like(gates_x)  # (N, 4H): the activated gates
        cell = gates_x.new_empty(tokens, hidden)  # (N, H): c_t
        tanh_cell = gates_x.new_empty(tokens, hidden)  # (N, H): tanh(c_t)
        out = gates_x.new_empty(tokens, hidden)  # (N, H): h_t
        w_t = w_hh.t()
        start, prev = 0, -1
        for n in batch_sizes:  # non-increasing: the first n rows of step t-1 are the samples still running
            now = slice(start, start + n)
            a = acts[now]
            if prev < 0:  # h_0 = c_0 = 0
                a.copy_(gates_x[now])
            else:
                torch.addmm(gates_x[now], out[prev : prev + n], w_t, out=a)
            a[:, sig].sigmoid_()
            a[:, 3 * hidden :].tanh_()
            c = cell[now]
            if prev < 0:
                torch.mul(a[:, :hidden], a[:, 3 * hidden :], out=c)
            else:
                torch.mul(a[:, hidden : 2 * hidden], cell[prev : prev + n], out=c)
                c.addcmul_(a[:, :hidden], a[:, 3 * hidden :])
            torch.tanh(c, out=tanh_cell[now])
            torch.mul(a[:, 2 * hidden : 3 * hidden], tanh_cell[now], out=out[now])
            prev, start = start, start + n
        ctx.save_for_backward(acts, cell, tanh_cell, out, w_hh)
        ctx.batch_sizes = batch_sizes
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        acts, cell, tanh_cell, out, w_hh = ctx.saved_tensors
        sizes: list[int] = ctx.batch_sizes
        hidden = w_hh.shape[1]
        starts = [0]
        for n in sizes[:-1]:
            starts.append(starts[-1] + n)
        # d(activated gate)/d(pre-activation), all steps at once: s(1-s) for i, f, o; 1-g² for g
        slope = acts * (1 - acts)
        slope[:, 3 * hidden :] = 1 - acts[:, 3 * hidden :].square()
        tanh_slope = 1 - tanh_cell.square()
        grad_out = grad_out.contiguous()
        grad_gates = torch.empty_like(acts)  # (N, 4H): the loss's gradient w.r.t. the pre-activation gates
        dh = acts.new_zeros(sizes[0], hidden)  # dL/dh_t through the recurrence, rows of the running samples
        dc = acts.new_zeros(sizes[0], hidden)
        for t in range(len(sizes) - 1, -1, -1):
            n, now = sizes[t], slice(starts[t], starts[t] + sizes[t])
            a, dh_t, dc_t, d = acts[now], dh[:n], dc[:n], grad_gates[now]
            dh_t += grad_out[now]
            dc_t.addcmul_(dh_t * a[:, 2 * hidden : 3 * hidden], tanh_slope[now])
            torch.mul(dc_t, a[:, 3 * hidden :], out=d[:, :hidden])  # i
            if t:
                torch.mul(dc_t, cell[starts[t - 1] : starts[t - 1] + n], out=d[:, hidden : 2 * hidden])  # f
            else:
                d[:, hidden : 2 * hidden].zero_()
            torch.mul(dh_t, tanh_cell[now], out=d[:, 2 * hidden : 3 * hidden])  # o
            torch.mul(dc_t, a[:, :hidden], out=d[:, 3 * hidden :])  # g
            d.mul_(slope[now])
            dc_t.mul_(a[:, hidden : 2 * hidden])  # dL/dc_{t-1}
            if t:
                torch.mm(d, w_hh, out=dh_t)  # dL/dh_{t-1}
        grad_w = None
        if ctx.needs_input_grad[1]:  # Σ_t dgates_t^T h_{t-1}: the tokens of steps 1.. against their h_{t-1}
            grad_w = torch.zeros_like(w_hh)
            if len(sizes) > 1:
                prev = torch.cat([torch.arange(starts[t - 1], starts[t - 1] + sizes[t]) for t in range(1, len(sizes))])
                grad_w = grad_gates[sizes[0] :].t() @ out.index_select(0, prev.to(out.device))
        return grad_gates, grad_w, None


__all__ = ["valid_steps_lstm"]
