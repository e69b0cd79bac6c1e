"""Recurrent neural networks: vanilla RNN, LSTM and GRU cells, stacked and
bidirectional layers, and a sequence classifier.

A recurrent layer makes its decision at step t from the input x_t *and* its
own output at step t-1. Everything here is batch first: x is (B, T, D),
hidden states are (B, H). The cells are pure functions on tensors; the
modules only hold parameters, named and laid out exactly as in
`torch.nn.RNN` / `LSTM` / `GRU` (gate order i, f, g, o for the LSTM and
r, z, n for the GRU), so weights copy over with `from_torch`.

Padding: pass `lengths` (B,) and every sequence is read only up to its own
length. The state stops changing at the last real token and outputs at padded
steps are zero, which is what `torch.nn.utils.rnn.pack_padded_sequence`
gives, so padding a batch never changes a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Union

import torch
from torch import Tensor, nn

from dl4nlp.shapes import Lengths, check_lengths, check_shapes, optional, shapes

State = Union[Tensor, tuple[Tensor, Tensor]]  # h (B, H), or (h, c) for the LSTM
CellWeights = tuple[Tensor, Tensor, Tensor, Tensor]  # weight_ih, weight_hh, bias_ih, bias_hh
Cell = Callable[..., State]  # cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh) -> state


# --- cells: one time step -------------------------------------------------------------


@shapes(weight_ih="H D", weight_hh="H H", bias_ih="H", bias_hh="H", x="B D", h="B H")
def rnn_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor, bias_hh: Tensor) -> Tensor:
    """One step of a vanilla (Elman) RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh).

    Args: x (B, D); h (B, H); weight_ih (H, D); weight_hh (H, H); bias_ih (H,); bias_hh (H,).
    Returns: h' (B, H).
    Matches: torch.nn.RNNCell(D, H) with the same weights.
    """
    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)  # (B, H)


@shapes(weight_ih="4H D", weight_hh="4H H", bias_ih="4H", bias_hh="4H", x="B D", state=("B H", "B H"))
def lstm_cell(x: Tensor, state: tuple[Tensor, Tensor], weight_ih: Tensor, weight_hh: Tensor,
              bias_ih: Tensor, bias_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM step: forget, add (input) and output gates around a cell state c.

        i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)    add gate: write the candidate?
        f = sigmoid(W_if x + b_if + W_hf h + b_hf)    forget gate: keep the old context?
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)       candidate information
        o = sigmoid(W_io x + b_io + W_ho h + b_ho)    output gate: show which context?
        c' = f * c + i * g
        h' = o * tanh(c')

    Args: x (B, D); state (h, c), each (B, H); weight_ih (4H, D); weight_hh (4H, H);
      bias_ih (4H,); bias_hh (4H,); the 4H rows are stacked in the order i, f, g, o.
    Returns: (h', c'), each (B, H).
    Matches: torch.nn.LSTMCell(D, H) with the same weights.
    """
    h, c = state
    gates = x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
    h = torch.sigmoid(o) * torch.tanh(c)  # (B, H)
    return h, c


@shapes(weight_ih="3H D", weight_hh="3H H", bias_ih="3H", bias_hh="3H", x="B D", h="B H")
def gru_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor,
             bias_ih: Tensor, bias_hh: Tensor) -> Tensor:
    """One GRU step: a reset gate r and an update gate z, no separate cell state.

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)        reset: which past matters now?
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)        update: keep old or take new?
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))     intermediate (candidate) state
        h' = (1 - z) * n + z * h

    Args: x (B, D); h (B, H); weight_ih (3H, D); weight_hh (3H, H); bias_ih (3H,);
      bias_hh (3H,); the 3H rows are stacked in the order r, z, n.
    Returns: h' (B, H).
    Matches: torch.nn.GRUCell(D, H) with the same weights (r multiplies W_hn h + b_hn).
    """
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)  # each (B, H)
    h_r, h_z, h_n = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)  # each (B, H)
    r = torch.sigmoid(x_r + h_r)  # (B, H)
    z = torch.sigmoid(x_z + h_z)  # (B, H)
    n = torch.tanh(x_n + r * h_n)  # (B, H)
    return (1 - z) * n + z * h  # (B, H)


# --- layers: a cell over time ---------------------------------------------------------


def lengths_to_mask(lengths: Tensor, time: int) -> Tensor:
    """Boolean mask (B, T), True at real tokens: step t < lengths[b]."""
    return torch.arange(time, device=lengths.device) < lengths[:, None]  # (B, T)


def reverse_padded(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """Reverse each sequence in time within its own length; padding stays where it is.

    Args: x (B, T, ...); lengths (B,) or None (all sequences have length T).
    Returns: (B, T, ...), e.g. [a, b, c, pad] with length 3 -> [c, b, a, pad].
    """
    if lengths is None:
        return x.flip(1)
    B, T = x.shape[:2]
    lengths = lengths.to(x.device)
    steps = torch.arange(T, device=x.device).expand(B, T)  # (B, T)
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (B, T)
    index = index.view(B, T, *[1] * (x.dim() - 2)).expand_as(x)  # (B, T, ...)
    return x.gather(1, index)


@shapes(x="B T D", lengths=optional(Lengths()))
def unroll(cell: Cell, x: Tensor, state: State, weights: CellWeights,
           lengths: Tensor | None = None) -> tuple[Tensor, State]:
    """Run one cell left to right over a batch of sequences.

    Args: cell, e.g. `lstm_cell`; x (B, T, D); state h (B, H) or (h, c); weights for the cell;
      lengths (B,) or None. At steps t >= lengths[b] the state of sequence b is carried
      over unchanged and its output is zero.
    Returns: outputs (B, T, H), the hidden state at every step; the final state, as `state`
      (after each sequence's last real token).
    Matches: torch.nn.RNN/LSTM/GRU(batch_first=True) fed pack_padded_sequence(x, lengths).
    """
    B, T, _ = x.shape
    mask = None if lengths is None else lengths_to_mask(lengths.to(x.device), T)  # (B, T)
    outputs = []
    # x.unbind(1): the T steps (B, D) at once. Indexing x[:, t] in the loop gives the same forward pass, but
    # then backward builds a zero (B, T, D) gradient for every step, T times the work of one.
    for t, x_t in enumerate(x.unbind(1)):
        new_state = cell(x_t, state, *weights)
        if mask is None:
            state = new_state
        else:
            keep = mask[:, t, None]  # (B, 1): True where step t is a real token
            if isinstance(state, tuple):
                state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state))
            else:
                state = torch.where(keep, new_state, state)
        h = state[0] if isinstance(state, tuple) else state  # (B, H)
        outputs.append(h if mask is None else h * keep)  # zero at padded steps
    return torch.stack(outputs, dim=1), state  # (B, T, H)


@shapes(x="B T D", lengths=optional(Lengths()))
def bidirectional_layer(cell: Cell, x: Tensor, state_forward: State, state_backward: State,
                        weights_forward: CellWeights, weights_backward: CellWeights,
                        lengths: Tensor | None = None) -> tuple[Tensor, State, State]:
    """A bidirectional layer: one pass from beginning to end, one from end to beginning.

    The backward pass reads each sequence reversed within its length, and its
    outputs are reversed back so that output[:, t] holds both directions' view of
    token t: [h_forward_t ; h_backward_t].

    Args: cell, e.g. `gru_cell`; x (B, T, D); state_forward and state_backward, each h (B, H)
      or (h, c); weights_forward, weights_backward: each (weight_ih, weight_hh, bias_ih, bias_hh);
      lengths (B,) or None.
    Returns: output (B, T, 2H); final forward state (after the last real token);
      final backward state (after reading back to the first token).
    Matches: one layer of torch.nn.RNN/LSTM/GRU(bidirectional=True, batch_first=True).
    """
    output_forward, final_forward = unroll(cell, x, state_forward, weights_forward, lengths)  # (B, T, H)
    reversed_x = reverse_padded(x, lengths)  # (B, T, D)
    output_backward, final_backward = unroll(cell, reversed_x, state_backward, weights_backward, lengths)
    output = torch.cat([output_forward, reverse_padded(output_backward, lengths)], dim=-1)  # (B, T, 2H)
    return output, final_forward, final_backward


@shapes(x="B T D")
def gradient_norms(cell: Cell, x: Tensor, state: State, weights: CellWeights) -> Tensor:
    """Backpropagation through time: how strongly the final hidden state depends on each input.

    Runs the cell over all T steps and differentiates the sum of the final hidden state's
    entries with respect to every input vector:

        norms[b, t] = || d(sum_j h_T[b, j]) / d x[b, t] ||

    Read from the end, norms[:, T - 1 - k] is the gradient that reaches k steps back. For a
    vanilla RNN it is a product of k Jacobians and usually shrinks geometrically with k (it
    vanishes, or, with large recurrent weights, explodes); an LSTM whose forget gate is open
    passes it through its additive cell state almost unchanged.

    Args: cell, e.g. `rnn_cell`; x (B, T, D); state h (B, H) or (h, c); weights for the cell.
    Returns: norms (B, T), each >= 0.
    Matches: x.grad.norm(dim=-1) after output[:, -1].sum().backward() through
      torch.nn.RNN/LSTM/GRU(batch_first=True) with the same weights.
    """
    x = x.detach().requires_grad_(True)  # a leaf of its own: the gradient is taken with respect to it
    _, final = unroll(cell, x, state, weights)
    h_T = final[0] if isinstance(final, tuple) else final  # (B, H)
    (gradient,) = torch.autograd.grad(h_T.sum(), x)  # (B, T, D)
    return gradient.norm(dim=-1)  # (B, T)


# --- modules: parameters named as in torch.nn -----------------------------------------


class Recurrent(nn.Module):
    """Stacked, optionally bidirectional recurrent layers, batch first.

    Parameters are named and shaped as in torch.nn: weight_ih_l{k}, weight_hh_l{k},
    bias_ih_l{k}, bias_hh_l{k} and the same with the suffix _reverse for the backward
    direction. Subclasses set the cell and its number of gates.
    """

    gates: ClassVar[int]
    torch_class: ClassVar[type[nn.RNNBase]]

    @staticmethod
    def reference_cell(*args: Tensor) -> State:  # replaced in each subclass
        raise NotImplementedError

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, *, cell: Cell | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if min(input_size, hidden_size, num_layers) < 1:
            raise ValueError("input_size, hidden_size and num_layers must be positive integers")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bidirectional = num_layers, bidirectional
        self.cell: Cell = cell or type(self).reference_cell  # a student's cell can be swapped in
        bound = 1 / math.sqrt(hidden_size)  # torch.nn's initialisation
        directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in self._suffixes():
                shapes = {"weight_ih": (self.gates * hidden_size, layer_input),
                          "weight_hh": (self.gates * hidden_size, hidden_size),
                          "bias_ih": (self.gates * hidden_size,), "bias_hh": (self.gates * hidden_size,)}
                for kind, shape in shapes.items():
                    parameter = nn.Parameter(torch.empty(shape))
                    nn.init.uniform_(parameter, -bound, bound, generator=generator)
                    self.register_parameter(f"{kind}_l{layer}{suffix}", parameter)

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def weights(self, layer: int, suffix: str = "") -> CellWeights:
        """The cell weights of one layer and direction ("" forward, "_reverse" backward)."""
        return tuple(getattr(self, f"{kind}_l{layer}{suffix}")
                     for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _zero_state(self, batch: int, like: Tensor) -> State:
        size = (self.num_layers * len(self._suffixes()), batch, self.hidden_size)
        return like.new_zeros(size)  # (L * directions, B, H)

    def forward(self, x: Tensor, state: State | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """Args: x (B, T, D); state h_0 (L * directions, B, H) — (h_0, c_0) for the LSTM — or None
          for zeros; lengths (B,) or None.
        Returns: output (B, T, directions * H) of the last layer; the final state h_n
          (L * directions, B, H), or (h_n, c_n) for the LSTM, as torch.nn returns them.
        """
        name = type(self).__name__
        check_shapes(name, x=(x, "B T D"))
        B, T, D = x.shape
        if D != self.input_size:
            raise ValueError(f"{name}: x should have shape (B, T, D) with D = input_size = {self.input_size}, "
                             f"but it has shape {tuple(x.shape)}")
        check_lengths(name, lengths, B, T)
        if state is None:
            state = self._initial_state(B, x)
        self._check_state(state, B)
        finals: list[State] = []
        layer_input = x  # (B, T, D)
        for layer in range(self.num_layers):
            if self.bidirectional:
                layer_input, final_forward, final_backward = bidirectional_layer(
                    self.cell, layer_input, self._select(state, 2 * layer), self._select(state, 2 * layer + 1),
                    self.weights(layer), self.weights(layer, "_reverse"), lengths)  # (B, T, 2H)
                finals += [final_forward, final_backward]
            else:
                layer_input, final = unroll(self.cell, layer_input, self._select(state, layer),
                                            self.weights(layer), lengths)  # (B, T, H)
                finals.append(final)
        return layer_input, self._stack(finals)

    # Vanilla RNN and GRU carry h alone; LSTM overrides these four for (h, c).
    def _initial_state(self, batch: int, like: Tensor) -> State:
        return self._zero_state(batch, like)

    def _check_state(self, state: State, batch: int) -> None:
        expected = (self.num_layers * len(self._suffixes()), batch, self.hidden_size)
        if not isinstance(state, Tensor) or tuple(state.shape) != expected:
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"{type(self).__name__}: state h_0 should have shape (L * directions, B, H) = "
                             f"{expected}, got {got}")

    @staticmethod
    def _select(state: State, index: int) -> State:
        return state[index]  # (B, H)

    @staticmethod
    def _stack(finals: list[State]) -> State:
        return torch.stack(finals)  # (L * directions, B, H)

    @classmethod
    def from_torch(cls, module: nn.RNNBase) -> Recurrent:
        """A copy of a torch.nn.RNN/LSTM/GRU(batch_first=True) with the same weights."""
        if type(module) is not cls.torch_class:
            raise TypeError(f"{cls.__name__}.from_torch expects a {cls.torch_class.__name__}, "
                            f"got {type(module).__name__}")
        unsupported = {"batch_first=False": not module.batch_first, "bias=False": not module.bias,
                       "dropout": module.dropout > 0, "proj_size": getattr(module, "proj_size", 0) > 0,
                       "nonlinearity='relu'": getattr(module, "nonlinearity", "tanh") != "tanh"}
        if any(unsupported.values()):
            raise ValueError(f"{cls.__name__}.from_torch does not support "
                             f"{', '.join(k for k, v in unsupported.items() if v)}")
        ours = cls(module.input_size, module.hidden_size, module.num_layers, module.bidirectional)
        ours.load_state_dict(module.state_dict(), strict=True)  # same names; checks every shape
        first = next(module.parameters())
        return ours.to(device=first.device, dtype=first.dtype)


class RNN(Recurrent):
    """Vanilla RNN layers (tanh); matches torch.nn.RNN(batch_first=True)."""

    gates = 1
    torch_class = nn.RNN
    reference_cell = staticmethod(rnn_cell)


class GRU(Recurrent):
    """GRU layers; matches torch.nn.GRU(batch_first=True)."""

    gates = 3
    torch_class = nn.GRU
    reference_cell = staticmethod(gru_cell)


class LSTM(Recurrent):
    """LSTM layers; matches torch.nn.LSTM(batch_first=True), state (h, c)."""

    gates = 4
    torch_class = nn.LSTM
    reference_cell = staticmethod(lstm_cell)

    def _initial_state(self, batch: int, like: Tensor) -> State:
        return self._zero_state(batch, like), self._zero_state(batch, like)

    def _check_state(self, state: State, batch: int) -> None:
        if not (isinstance(state, tuple) and len(state) == 2):
            raise ValueError("LSTM: state should be a tuple (h_0, c_0), each (L * directions, B, H)")
        for part in state:
            super()._check_state(part, batch)

    @staticmethod
    def _select(state: State, index: int) -> State:
        return state[0][index], state[1][index]  # (B, H) each

    @staticmethod
    def _stack(finals: list[State]) -> State:
        return torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals])


RECURRENT: dict[str, type[Recurrent]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


# --- sequence classification with a bidirectional RNN ---------------------------------


@dataclass(frozen=True)
class ClassifierConfig:
    """Sizes of a `SequenceClassifier`; `cell` is "rnn", "lstm" or "gru"."""

    vocab_size: int
    num_classes: int = 2
    embedding_dim: int = 64
    hidden_size: int = 64
    cell: str = "lstm"
    num_layers: int = 1
    bidirectional: bool = True
    pad_id: int = 0


@shapes(tokens="B T", lengths=Lengths())
def classify(tokens: Tensor, lengths: Tensor, embedding: nn.Embedding, encoder: Recurrent,
             head: nn.Linear) -> Tensor:
    """Sequence classification: embed, encode, pool the final states, project to class scores.

    The pooled vector joins the last layer's final forward state (at each sequence's
    last real token) and, if bidirectional, its final backward state (after reading
    back to the first token): [h_n forward ; h_n backward].

    Args: tokens (B, T) token ids, padded; lengths (B,) real lengths; embedding V -> D;
      encoder, a Recurrent over D; head, a Linear from directions * H to C classes.
    Returns: logits (B, C).
    """
    x = embedding(tokens)  # (B, T, D)
    _, final = encoder(x, lengths=lengths)  # h_n (L * directions, B, H), or (h_n, c_n)
    h_n = final[0] if isinstance(final, tuple) else final  # (L * directions, B, H)
    directions = 2 if encoder.bidirectional else 1
    pooled = torch.cat(list(h_n[-directions:]), dim=-1)  # (B, directions * H)
    return head(pooled)  # (B, C)


class SequenceClassifier(nn.Module):
    """Embedding -> (bidirectional) recurrent layers -> pooled final states -> linear."""

    def __init__(self, config: ClassifierConfig, *, cell: Cell | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if config.cell not in RECURRENT:
            raise ValueError(f"ClassifierConfig.cell must be one of {sorted(RECURRENT)}, got {config.cell!r}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_id)
        self.encoder = RECURRENT[config.cell](config.embedding_dim, config.hidden_size, config.num_layers,
                                              config.bidirectional, cell=cell, generator=generator)
        directions = 2 if config.bidirectional else 1
        self.head = nn.Linear(directions * config.hidden_size, config.num_classes)
        with torch.no_grad():  # torch.nn's default initialisation, drawn from `generator`
            nn.init.normal_(self.embedding.weight, generator=generator)
            self.embedding.weight[config.pad_id] = 0
            bound = 1 / math.sqrt(directions * config.hidden_size)
            nn.init.uniform_(self.head.weight, -bound, bound, generator=generator)
            nn.init.uniform_(self.head.bias, -bound, bound, generator=generator)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Args: tokens (B, T); lengths (B,). Returns: logits (B, C)."""
        return classify(tokens, lengths, self.embedding, self.encoder, self.head)
