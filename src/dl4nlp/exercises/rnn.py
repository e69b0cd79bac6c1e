"""Exercises of the RNN assignment: the cells, the time loop, a bidirectional layer, sequence
classification and gradients through time.

Every case draws its sizes' values from the generator: random weights and states (not
zeros, so that a cell that ignores its state fails), batch 1, and padded batches whose
padding holds random values (so that ignoring `lengths` fails). The layers, the classifier
and the gradient experiment get cells and encoders built on torch's own fused kernels, not
on `dl4nlp.rnn`, and while they run the notebook's `unroll` is the grader's own (`Part.given`):
a bug in a student's cell or time loop never costs points in another part, and the grader's
copy of the reference is out of the student's reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dl4nlp.exercises import Assignment, Case, Part, draw_lengths, normal
from dl4nlp.rnn import lengths_to_mask, reverse_padded

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# --- cells and encoders from torch's kernels, for the parts that take them -----------------


def torch_rnn_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
                   bias_hh: Tensor) -> Tensor:
    """torch's vanilla RNN step (tanh): h' (B, H)."""
    return torch.rnn_tanh_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh)


def torch_lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], weight_ih: Tensor, weight_hh: Tensor,
                    bias_ih: Tensor, bias_hh: Tensor) -> tuple[Tensor, Tensor]:
    """torch's LSTM step: (h', c'), each (B, H)."""
    h, c = torch.lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh)
    return h, c


def torch_gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor,
                   bias_hh: Tensor) -> Tensor:
    """torch's GRU step: h' (B, H)."""
    return torch.gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh)


TORCH_CELLS = {"rnn": torch_rnn_cell, "lstm": torch_lstm_cell, "gru": torch_gru_cell}


def unroll(cell, x, state, weights, lengths=None):
    """The grader's own copy of `dl4nlp.rnn.unroll`: what a student's layer calls as `unroll` while graded."""
    T = x.shape[1]
    mask = None if lengths is None else lengths_to_mask(lengths.to(x.device), T)  # (B, T)
    outputs = []
    for t, x_t in enumerate(x.unbind(1)):  # (B, D) each; x[:, t] would cost backward a (B, T, D) zero per step
        new_state = cell(x_t, state, *weights)
        if mask is None:
            state = new_state
        else:
            keep = mask[:, t, None]  # (B, 1)
            state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state)) \
                if isinstance(state, tuple) else torch.where(keep, new_state, state)
        h = state[0] if isinstance(state, tuple) else state  # (B, H)
        outputs.append(h if mask is None else h * keep)
    return torch.stack(outputs, dim=1), state  # (B, T, H)


class TorchEncoder(nn.Module):
    """Recurrent layers on torch.nn.RNN/LSTM/GRU with the interface of `dl4nlp.rnn.Recurrent`.

    forward(x (B, T, D), state=None, lengths=None) -> (output (B, T, directions * H), final
    state as torch.nn returns it); padded steps give zero outputs and leave the state alone.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.kind, self.input_size, self.hidden_size = kind, input_size, hidden_size
        self.num_layers, self.bidirectional = num_layers, bidirectional
        torch_class = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.layers = torch_class(input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        with torch.no_grad():
            for parameter in self.layers.parameters():
                parameter.uniform_(-0.6, 0.6, generator=generator)

    def forward(self, x: Tensor, state: Tensor | tuple[Tensor, Tensor] | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        B, T, _ = x.shape
        if lengths is None:
            return self.layers(x, state)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, final = self.layers(packed, state)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=T)  # (B, T, directions * H)
        return output, final


# --- drawing -----------------------------------------------------------------------------


def _weights(generator: torch.Generator, gates: int, D: int, H: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    scale = 1 / math.sqrt(H)
    return (normal(generator, gates * H, D, scale=scale), normal(generator, gates * H, H, scale=scale),
            normal(generator, gates * H, scale=scale), normal(generator, gates * H, scale=scale))


def _state(generator: torch.Generator, kind: str, B: int, H: int) -> Tensor | tuple[Tensor, Tensor]:
    if kind == "lstm":
        return normal(generator, B, H, scale=0.5), normal(generator, B, H, scale=0.5)
    return normal(generator, B, H, scale=0.5)


def _cell_cases(kind: str) -> Callable[[torch.Generator], list[Case]]:
    def cases(generator: torch.Generator) -> list[Case]:
        drawn = []
        for B, D, H in ((1, 3, 4), (5, 4, 3), (3, 6, 8), (4, 2, 5)):
            x = normal(generator, B, D)
            drawn.append(Case((x, _state(generator, kind, B, H), *_weights(generator, GATES[kind], D, H)),
                              f"batch {B}, D={D}, H={H}"))
        return drawn
    return cases


def bidirectional_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for kind, B, T, D, H, padded in (("lstm", 3, 5, 4, 3, True), ("gru", 1, 4, 3, 5, False),
                                     ("rnn", 4, 6, 2, 4, True), ("gru", 5, 3, 3, 2, True),
                                     ("lstm", 2, 4, 3, 4, False)):
        x = normal(generator, B, T, D)
        lengths = draw_lengths(generator, B, T) if padded else None
        gates = GATES[kind]
        args = (TORCH_CELLS[kind], x, _state(generator, kind, B, H), _state(generator, kind, B, H),
                _weights(generator, gates, D, H), _weights(generator, gates, D, H), lengths)
        drawn.append(Case(args, f"{kind} cell, batch {B}, T={T}, D={D}, H={H}, "
                                + (f"lengths {lengths.tolist()}" if padded else "no padding")))
    return drawn


def unroll_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for kind, B, T, D, H, padded in (("lstm", 3, 5, 4, 3, True), ("gru", 1, 4, 3, 5, False),
                                     ("rnn", 4, 6, 2, 4, True), ("gru", 5, 3, 3, 2, True),
                                     ("lstm", 2, 4, 3, 4, False), ("rnn", 3, 3, 2, 3, True)):
        x = normal(generator, B, T, D)  # padded steps hold random values too
        lengths = draw_lengths(generator, B, T) if padded else None
        args = (TORCH_CELLS[kind], x, _state(generator, kind, B, H), _weights(generator, GATES[kind], D, H), lengths)
        drawn.append(Case(args, f"{kind} cell, batch {B}, T={T}, D={D}, H={H}, "
                                + (f"lengths {lengths.tolist()}" if padded else "no padding")))
    return drawn


def gradient_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for kind, B, T, D, H in (("rnn", 3, 6, 4, 5), ("lstm", 1, 5, 3, 4), ("gru", 4, 4, 2, 3), ("lstm", 2, 7, 3, 2)):
        x = normal(generator, B, T, D)
        args = (TORCH_CELLS[kind], x, _state(generator, kind, B, H), _weights(generator, GATES[kind], D, H))
        drawn.append(Case(args, f"{kind} cell, batch {B}, T={T}, D={D}, H={H}"))
    return drawn


def classify_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    V, C = 20, 3
    for kind, B, T, D, H, layers, bidirectional in (("lstm", 3, 6, 5, 4, 1, True), ("gru", 1, 4, 3, 5, 2, False),
                                                     ("rnn", 4, 5, 4, 3, 2, True), ("gru", 2, 3, 4, 4, 1, True)):
        lengths = draw_lengths(generator, B, T)
        tokens = torch.randint(1, V, (B, T), generator=generator)
        tokens[torch.arange(T) >= lengths[:, None]] = 0  # <pad>
        embedding = nn.Embedding(V, D, padding_idx=0)
        head = nn.Linear((2 if bidirectional else 1) * H, C)
        with torch.no_grad():
            embedding.weight.normal_(generator=generator)
            embedding.weight[0] = 0
            head.weight.uniform_(-0.5, 0.5, generator=generator)
            head.bias.uniform_(-0.5, 0.5, generator=generator)
        encoder = TorchEncoder(kind, D, H, layers, bidirectional, generator)
        drawn.append(Case((tokens, lengths, embedding, encoder, head),
                          f"{'bidirectional ' if bidirectional else ''}{kind}, {layers} layer(s), batch {B}, "
                          f"T={T}, lengths {lengths.tolist()}"))
    return drawn


# --- typical bugs: known-wrong variants the feedback names -----------------------------------
# Each is self-contained (torch, and the notebook's ungraded helpers unroll and reverse_padded),
# so that the tests can hand one in as a student's answer.


def rnn_without_bias_hh(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T)


def rnn_ignoring_state(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    return torch.tanh(x @ weight_ih.T + bias_ih + bias_hh)


def rnn_weights_not_transposed(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh + bias_hh)


def lstm_gate_order_ifog(x, state, weight_ih, weight_hh, bias_ih, bias_hh):
    h, c = state
    i, f, o, g = (x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_ignoring_state(x, state, weight_ih, weight_hh, bias_ih, bias_hh):
    i, f, g, o = (x @ weight_ih.T + bias_ih + bias_hh).chunk(4, dim=1)
    c = torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_output_from_old_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh):
    h, c = state
    i, f, g, o = (x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
    new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), new_c


def gru_reset_before_weight(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    h_r, h_z, _ = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)
    W_hn, b_hn = weight_hh.chunk(3)[2], bias_hh.chunk(3)[2]
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + (r * h) @ W_hn.T + b_hn)
    return (1 - z) * n + z * h


def gru_update_gate_swapped(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    h_r, h_z, h_n = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return z * n + (1 - z) * h


def gru_ignoring_state(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    h_r, h_z, h_n = bias_hh.chunk(3)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    return (1 - z) * torch.tanh(x_n + r * h_n)


def unroll_ignoring_lengths(cell, x, state, weights, lengths=None):
    outputs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, *weights)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outputs, dim=1), state


def unroll_padded_outputs_not_zero(cell, x, state, weights, lengths=None):
    steps = torch.arange(x.shape[1])
    outputs = []
    for t in range(x.shape[1]):
        new_state = cell(x[:, t], state, *weights)
        keep = (steps[t] < lengths)[:, None] if lengths is not None else torch.ones(x.shape[0], 1, dtype=torch.bool)
        state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state)) \
            if isinstance(state, tuple) else torch.where(keep, new_state, state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(outputs, dim=1), state


def unroll_state_updated_at_padding(cell, x, state, weights, lengths=None):
    steps = torch.arange(x.shape[1])
    outputs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, *weights)
        keep = (steps[t] < lengths)[:, None] if lengths is not None else torch.ones(x.shape[0], 1, dtype=torch.bool)
        outputs.append((state[0] if isinstance(state, tuple) else state) * keep)
    return torch.stack(outputs, dim=1), state


def unroll_time_first(cell, x, state, weights, lengths=None):
    steps = torch.arange(x.shape[1])
    outputs = []
    for t in range(x.shape[1]):
        new_state = cell(x[:, t], state, *weights)
        keep = (steps[t] < lengths)[:, None] if lengths is not None else torch.ones(x.shape[0], 1, dtype=torch.bool)
        state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state)) \
            if isinstance(state, tuple) else torch.where(keep, new_state, state)
        outputs.append((state[0] if isinstance(state, tuple) else state) * keep)
    return torch.stack(outputs, dim=0), state


def bidirectional_flip_ignoring_lengths(cell, x, state_forward, state_backward, weights_forward, weights_backward,
                                        lengths=None):
    forward, final_forward = unroll(cell, x, state_forward, weights_forward, lengths)
    backward, final_backward = unroll(cell, x.flip(1), state_backward, weights_backward, lengths)
    return torch.cat([forward, backward.flip(1)], dim=-1), final_forward, final_backward


def bidirectional_backward_not_reversed_back(cell, x, state_forward, state_backward, weights_forward,
                                             weights_backward, lengths=None):
    forward, final_forward = unroll(cell, x, state_forward, weights_forward, lengths)
    backward, final_backward = unroll(cell, reverse_padded(x, lengths), state_backward, weights_backward,
                                          lengths)
    return torch.cat([forward, backward], dim=-1), final_forward, final_backward


def bidirectional_ignoring_backward_state(cell, x, state_forward, state_backward, weights_forward,
                                          weights_backward, lengths=None):
    zeros = tuple(torch.zeros_like(s) for s in state_backward) if isinstance(state_backward, tuple) \
        else torch.zeros_like(state_backward)
    forward, final_forward = unroll(cell, x, state_forward, weights_forward, lengths)
    backward, final_backward = unroll(cell, reverse_padded(x, lengths), zeros, weights_backward, lengths)
    return torch.cat([forward, reverse_padded(backward, lengths)], dim=-1), final_forward, final_backward


def classify_last_step(tokens, lengths, embedding, encoder, head):
    output, _ = encoder(embedding(tokens), lengths=lengths)
    return head(output[:, -1])


def classify_first_layer(tokens, lengths, embedding, encoder, head):
    _, final = encoder(embedding(tokens), lengths=lengths)
    h_n = final[0] if isinstance(final, tuple) else final
    directions = 2 if encoder.bidirectional else 1
    return head(torch.cat(list(h_n[:directions]), dim=-1))


def gradient_norms_by_distance(cell, x, state, weights):
    x = x.detach().requires_grad_(True)
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, *weights)
    h_T = state[0] if isinstance(state, tuple) else state
    (gradient,) = torch.autograd.grad(h_T.sum(), x)
    return gradient.norm(dim=-1).flip(1)


def gradient_norms_of_every_output(cell, x, state, weights):
    x = x.detach().requires_grad_(True)
    total = 0
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, *weights)
        total = total + (state[0] if isinstance(state, tuple) else state).sum()
    (gradient,) = torch.autograd.grad(total, x)
    return gradient.norm(dim=-1)


def gradient_norms_squared(cell, x, state, weights):
    x = x.detach().requires_grad_(True)
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, *weights)
    h_T = state[0] if isinstance(state, tuple) else state
    (gradient,) = torch.autograd.grad(h_T.sum(), x)
    return (gradient ** 2).sum(dim=-1)


# Library calls that would do a part's work in one line (the grader also refuses torch's private ops).
_PRIVATE = ("torch._VF", "torch._C", "torch.ops")
_SEQUENCE_OPS = ("torch.nn.RNN", "torch.nn.LSTM", "torch.nn.GRU", "torch.rnn_tanh", "torch.rnn_relu", "torch.lstm",
                 "torch.gru")
_PACKING = ("torch.nn.utils.rnn",)  # pack_padded_sequence and friends do the masking

ASSIGNMENT = Assignment(
    name="rnn",
    parts=(
        Part("rnn_cell", "dl4nlp.rnn", 2, _cell_cases("rnn"),
             forbidden=("torch.rnn_tanh_cell", "torch.rnn_relu_cell", "torch.nn.RNNCell", *_SEQUENCE_OPS, *_PRIVATE),
             bugs={"bias_hh left out": rnn_without_bias_hh,
                   "the state h is ignored (the cell reads only x)": rnn_ignoring_state,
                   "weight_hh not transposed (h @ weight_hh instead of h @ weight_hh.T)": rnn_weights_not_transposed}),
        Part("lstm_cell", "dl4nlp.rnn", 3, _cell_cases("lstm"),
             forbidden=("torch.lstm_cell", "torch.nn.LSTMCell", *_SEQUENCE_OPS, *_PRIVATE),
             bugs={"gate order i, f, o, g instead of PyTorch's i, f, g, o": lstm_gate_order_ifog,
                   "the state (h, c) is ignored": lstm_ignoring_state,
                   "h' computed from the old cell state c instead of the new c'": lstm_output_from_old_cell}),
        Part("gru_cell", "dl4nlp.rnn", 3, _cell_cases("gru"),
             forbidden=("torch.gru_cell", "torch.nn.GRUCell", *_SEQUENCE_OPS, *_PRIVATE),
             bugs={"reset gate applied to h before W_hn (Cho et al.'s and d2l's form; PyTorch applies it to "
                   "W_hn h + b_hn)": gru_reset_before_weight,
                   "update gate swapped: z * n + (1 - z) * h": gru_update_gate_swapped,
                   "the state h is ignored": gru_ignoring_state}),
        Part("unroll", "dl4nlp.rnn", 4, unroll_cases,
             forbidden=(*_SEQUENCE_OPS, *_PACKING, *_PRIVATE),
             bugs={"lengths ignored: the state is updated and the outputs kept at padded steps":
                       unroll_ignoring_lengths,
                   "outputs at padded steps are not zero (they repeat the carried state)":
                       unroll_padded_outputs_not_zero,
                   "the state is updated at padded steps, so the final state is the one at step T, not after "
                   "the last real token": unroll_state_updated_at_padding,
                   "outputs stacked time first, (T, B, H), instead of batch first (B, T, H)": unroll_time_first}),
        Part("bidirectional_layer", "dl4nlp.rnn", 3, bidirectional_cases, given={"unroll": unroll},
             forbidden=(*_SEQUENCE_OPS, *_PRIVATE),
             bugs={"the backward pass reads x.flip(1), so padded sequences start on padding "
                   "(use reverse_padded(x, lengths))": bidirectional_flip_ignoring_lengths,
                   "the backward outputs are not reversed back to line up with the tokens":
                       bidirectional_backward_not_reversed_back,
                   "state_backward is ignored (the backward pass starts from zeros)":
                       bidirectional_ignoring_backward_state}),
        Part("classify", "dl4nlp.rnn", 2, classify_cases, forbidden=_PRIVATE,
             bugs={"the output at the last time step (padding, for short sentences) instead of the final states":
                   classify_last_step,
                   "the final states of the first layer instead of the last": classify_first_layer}),
        Part("gradient_norms", "dl4nlp.rnn", 2, gradient_cases, given={"unroll": unroll}, gradients=False,
             atol=1e-5, rtol=1e-5, forbidden=(*_SEQUENCE_OPS, *_PRIVATE),
             bugs={"the norms are ordered by distance back (reversed in time) instead of by position t":
                       gradient_norms_by_distance,
                   "the gradient of the sum of the outputs at every step instead of the final state h_T":
                       gradient_norms_of_every_output,
                   "squared norms (the sum of squares without the square root)": gradient_norms_squared}),
    ),
)
