"""Cases for the RNN assignment: the cells, a bidirectional layer and sequence classification.

Every case draws its sizes' values from the generator: random weights and states (not
zeros, so that a cell that ignores its state fails), batch 1, and padded batches whose
padding holds random values (so that ignoring `lengths` fails). The layers and the
classifier get cells and encoders built on torch's own fused kernels, not on
`dl4nlp.rnn`: a bug in a student's cell never costs points in another part, and the
grader's copy of the reference is out of the student's reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dl4nlp.assessment import Assessment, Case, Part

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


def _normal(generator: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=generator) * scale


def _weights(generator: torch.Generator, gates: int, D: int, H: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    scale = 1 / math.sqrt(H)
    return (_normal(generator, gates * H, D, scale=scale), _normal(generator, gates * H, H, scale=scale),
            _normal(generator, gates * H, scale=scale), _normal(generator, gates * H, scale=scale))


def _state(generator: torch.Generator, kind: str, B: int, H: int) -> Tensor | tuple[Tensor, Tensor]:
    if kind == "lstm":
        return _normal(generator, B, H, scale=0.5), _normal(generator, B, H, scale=0.5)
    return _normal(generator, B, H, scale=0.5)


def _lengths(generator: torch.Generator, B: int, T: int) -> Tensor:
    """Lengths in 1..T with at least one full and, when B > 1, one shorter sequence."""
    lengths = torch.randint(1, T + 1, (B,), generator=generator)
    lengths[0] = T
    if B > 1:
        lengths[-1] = int(torch.randint(1, T, (1,), generator=generator))
    return lengths


def _cell_cases(kind: str) -> Callable[[torch.Generator], list[Case]]:
    def cases(generator: torch.Generator) -> list[Case]:
        drawn = []
        for B, D, H in ((1, 3, 4), (5, 4, 3), (3, 6, 8), (4, 2, 5)):
            x = _normal(generator, B, D)
            drawn.append(Case((x, _state(generator, kind, B, H), *_weights(generator, GATES[kind], D, H)),
                              f"batch {B}, D={D}, H={H}"))
        return drawn
    return cases


def bidirectional_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for kind, B, T, D, H, padded in (("lstm", 3, 5, 4, 3, True), ("gru", 1, 4, 3, 5, False),
                                     ("rnn", 4, 6, 2, 4, True), ("gru", 5, 3, 3, 2, True),
                                     ("lstm", 2, 4, 3, 4, False)):
        x = _normal(generator, B, T, D)
        lengths = _lengths(generator, B, T) if padded else None
        gates = GATES[kind]
        args = (TORCH_CELLS[kind], x, _state(generator, kind, B, H), _state(generator, kind, B, H),
                _weights(generator, gates, D, H), _weights(generator, gates, D, H), lengths)
        drawn.append(Case(args, f"{kind} cell, batch {B}, T={T}, D={D}, H={H}, "
                                + (f"lengths {lengths.tolist()}" if padded else "no padding")))
    return drawn


def classify_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    V, C = 20, 3
    for kind, B, T, D, H, layers, bidirectional in (("lstm", 3, 6, 5, 4, 1, True), ("gru", 1, 4, 3, 5, 2, False),
                                                     ("rnn", 4, 5, 4, 3, 2, True), ("gru", 2, 3, 4, 4, 1, True)):
        lengths = _lengths(generator, B, T)
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


ASSESSMENT = Assessment(
    assignment="rnn",
    module="dl4nlp.rnn",
    parts=(
        Part("rnn_cell", _cell_cases("rnn")),
        Part("lstm_cell", _cell_cases("lstm")),
        Part("gru_cell", _cell_cases("gru")),
        Part("bidirectional_layer", bidirectional_cases),
        Part("classify", classify_cases),
    ),
    points={"rnn_cell": 2, "lstm_cell": 3, "gru_cell": 3, "bidirectional_layer": 3, "classify": 2},
)
