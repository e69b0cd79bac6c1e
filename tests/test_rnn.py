"""dl4nlp.rnn: contracts, equivalence with torch.nn, invariants."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import assert_seeded_initialisation, cell_weights, close, gradients, leaves, torch_padded
from torch import nn

from dl4nlp import rnn
from dl4nlp.rnn import (GRU, LSTM, RNN, ClassifierConfig, SequenceClassifier, bidirectional_layer, classify,
                        gradient_norms, gru_cell, lstm_cell, reverse_padded, rnn_cell, unroll)

CELLS = [(rnn_cell, nn.RNNCell, 1), (lstm_cell, nn.LSTMCell, 4), (gru_cell, nn.GRUCell, 3)]
LAYERS = [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)]
GRAD_ATOL = 1e-4  # gradients run through more float32 operations than the outputs


def same_gradients(ours, our_inputs, theirs, their_inputs, seed: int) -> bool:
    """Both computations give the same gradient of one random weighted sum of their outputs
    with respect to each of their inputs (tensors, states, weights: listed in the same order)."""
    return close(gradients(ours, our_inputs, seed), gradients(theirs, their_inputs, seed), atol=GRAD_ATOL)


sizes = st.integers(1, 6)


# --- cells ---------------------------------------------------------------------------


@pytest.mark.parametrize("ours, theirs, gates", CELLS, ids=["rnn", "lstm", "gru"])
@given(batch=sizes, input_size=sizes, hidden_size=sizes, seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_cell_matches_torch(ours, theirs, gates, batch, input_size, hidden_size, seed):
    torch.manual_seed(seed)
    reference = theirs(input_size, hidden_size)
    x = torch.randn(batch, input_size, requires_grad=True)
    h = torch.randn(batch, hidden_size, requires_grad=True)
    c = torch.randn(batch, hidden_size, requires_grad=True)
    inputs = [x, h, c] if ours is lstm_cell else [x, h]
    their_inputs = [*inputs, *cell_weights(reference)]
    our_inputs = leaves(*their_inputs)  # the same values, as separate leaves
    if ours is lstm_cell:
        output = ours(our_inputs[0], (our_inputs[1], our_inputs[2]), *our_inputs[3:])
        expected = reference(x, (h, c))
    else:
        output = ours(our_inputs[0], our_inputs[1], *our_inputs[2:])
        expected = reference(x, h)
    assert close(output, expected)
    assert same_gradients(output, our_inputs, expected, their_inputs, seed)


def test_rnn_cell_worked_value():
    # h' = tanh(0.5 * 1 + 0.5 * 0 + 1.0 * 0.2) = tanh(0.7)
    h = rnn_cell(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.2]]), torch.tensor([[0.5, 0.5]]),
                 torch.tensor([[1.0]]), torch.zeros(1), torch.zeros(1))
    assert h.item() == pytest.approx(0.604368, abs=1e-6)


def test_lstm_gates_in_torch_order():
    # Only the forget gate's bias is large: c' = sigmoid(big) * c ~ c, add gate shut (bias -big).
    hidden = 2
    big = 20.0
    bias = torch.cat([torch.full((hidden,), -big), torch.full((hidden,), big),
                      torch.zeros(hidden), torch.full((hidden,), big)])  # i, f, g, o
    c = torch.tensor([[0.3, -0.7]])
    h, c_new = lstm_cell(torch.zeros(1, 3), (torch.zeros(1, hidden), c), torch.zeros(4 * hidden, 3),
                         torch.zeros(4 * hidden, hidden), bias, torch.zeros(4 * hidden))
    assert torch.allclose(c_new, c, atol=1e-6)
    assert torch.allclose(h, torch.tanh(c), atol=1e-6)


def test_gru_update_gate_keeps_state():
    # z = 1 (large bias on the update rows r, z, n -> middle block) keeps h unchanged.
    hidden = 3
    bias = torch.cat([torch.zeros(hidden), torch.full((hidden,), 30.0), torch.zeros(hidden)])
    h = torch.tensor([[0.1, -0.2, 0.3]])
    h_new = gru_cell(torch.randn(1, 2), h, torch.randn(3 * hidden, 2), torch.randn(3 * hidden, hidden),
                     bias, torch.zeros(3 * hidden))
    assert torch.allclose(h_new, h, atol=1e-6)


@pytest.mark.parametrize("ours, theirs, gates", CELLS, ids=["rnn", "lstm", "gru"])
def test_cell_rejects_wrong_shapes_with_a_clear_message(ours, theirs, gates):
    reference = theirs(4, 5)
    x, h = torch.randn(2, 4), torch.randn(2, 6)  # h has the wrong hidden size
    state = (h, torch.randn(2, 6)) if ours is lstm_cell else h
    h_name = r"state\[0\]" if ours is lstm_cell else "h"  # the LSTM's state is a tuple (h, c)
    with pytest.raises(ValueError, match=rf"{ours.__name__}: {h_name} should have shape \(B, H\) = \(2, 5\).*\(2, 6\)"):
        ours(x, state, *cell_weights(reference))
    with pytest.raises(ValueError, match=r"x should have shape \(B, D\) = \(B, 4\).*3 dimensions"):
        ours(x[None], state, *cell_weights(reference))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ours(x.tolist(), state, *cell_weights(reference))


def assert_unchanged(tensors, copies) -> None:
    for index, (tensor, (values, version)) in enumerate(zip(tensors, copies)):
        assert torch.equal(tensor, values), f"input {index} was changed"
        assert tensor._version == version, f"input {index} was written in place"


def snapshot(tensors):
    return [(tensor.clone(), tensor._version) for tensor in tensors]


PAIRS = [(rnn_cell, nn.RNNCell), (lstm_cell, nn.LSTMCell), (gru_cell, nn.GRUCell)]


@pytest.mark.parametrize("function, cell, theirs", [
    *[pytest.param(cell.__name__, cell, theirs, id=cell.__name__) for cell, theirs in PAIRS],
    *[pytest.param(layer, cell, theirs, id=f"{layer}-{cell.__name__}")
      for layer in ("unroll", "bidirectional_layer") for cell, theirs in PAIRS],
])
def test_functions_never_modify_their_inputs(function, cell, theirs):
    torch.manual_seed(0)
    weights = [tensor.detach().clone() for tensor in cell_weights(theirs(3, 4))]
    weights_backward = [tensor.detach().clone() for tensor in cell_weights(theirs(3, 4))]
    h, c = torch.randn(2, 4), torch.randn(2, 4)
    state = (h, c) if cell is lstm_cell else h
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
    tensors = [x, h, c, lengths, *weights, *weights_backward]
    copies = snapshot(tensors)
    if function == cell.__name__:
        cell(x[:, 0], state, *weights)
    elif function == "unroll":
        unroll(cell, x, state, tuple(weights), lengths)
        unroll(cell, x, state, tuple(weights))
    else:
        bidirectional_layer(cell, x, state, state, tuple(weights), tuple(weights_backward), lengths)
        bidirectional_layer(cell, x, state, state, tuple(weights), tuple(weights_backward))
    assert_unchanged(tensors, copies)


# --- layers ----------------------------------------------------------------------------


@pytest.mark.parametrize("ours, theirs", LAYERS, ids=["rnn", "lstm", "gru"])
@given(batch=sizes, time=sizes, input_size=sizes, hidden_size=sizes, num_layers=st.integers(1, 3),
       bidirectional=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_layer_matches_torch(ours, theirs, batch, time, input_size, hidden_size, num_layers, bidirectional, seed):
    torch.manual_seed(seed)
    reference = theirs(input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                       batch_first=True)
    model = ours.from_torch(reference)
    x = torch.randn(batch, time, input_size, requires_grad=True)
    assert close(model(x), reference(x))
    directions = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * directions, batch, hidden_size, requires_grad=True)
    c0 = torch.randn_like(h0, requires_grad=True)
    their_inputs = [x, h0, c0] if ours is LSTM else [x, h0]
    our_inputs = leaves(*their_inputs)
    our_state = tuple(our_inputs[1:]) if ours is LSTM else our_inputs[1]
    output = model(our_inputs[0], our_state)
    expected = reference(x, tuple(their_inputs[1:]) if ours is LSTM else h0)
    assert close(output, expected)
    names = [name for name, _ in reference.named_parameters()]
    assert same_gradients(output, [*our_inputs, *(model.get_parameter(name) for name in names)],
                          expected, [*their_inputs, *(reference.get_parameter(name) for name in names)], seed)


@pytest.mark.parametrize("ours, theirs", LAYERS, ids=["rnn", "lstm", "gru"])
@given(data=st.data(), num_layers=st.integers(1, 2), bidirectional=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_padded_batch_matches_packed_torch(ours, theirs, data, num_layers, bidirectional, seed):
    torch.manual_seed(seed)
    batch, time = data.draw(sizes), data.draw(sizes)
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)))
    reference = theirs(3, 4, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    model = ours.from_torch(reference)
    x = torch.randn(batch, time, 3, requires_grad=True)
    (our_x,) = leaves(x)
    output, expected = model(our_x, lengths=lengths), torch_padded(reference, x, lengths)
    assert close(output, expected)
    names = [name for name, _ in reference.named_parameters()]
    assert same_gradients(output, [our_x, *(model.get_parameter(name) for name in names)],
                          expected, [x, *(reference.get_parameter(name) for name in names)], seed)


@pytest.mark.parametrize("layer", [RNN, LSTM, GRU])
def test_padding_changes_nothing(layer):
    torch.manual_seed(0)
    model = layer(3, 5, num_layers=2, bidirectional=True)
    x = torch.randn(1, 4, 3)
    alone_output, alone_state = model(x)
    padded = torch.cat([x, torch.randn(1, 3, 3)], dim=1)  # garbage after the real tokens
    output, state = model(padded, lengths=torch.tensor([4]))
    assert close(output[:, :4], alone_output)
    assert torch.equal(output[:, 4:], torch.zeros_like(output[:, 4:]))
    assert close(state, alone_state)


@pytest.mark.parametrize("cell, theirs", [(rnn_cell, nn.RNNCell), (gru_cell, nn.GRUCell), (lstm_cell, nn.LSTMCell)])
def test_bidirectional_is_forward_plus_flipped_pass(cell, theirs):
    torch.manual_seed(1)
    forward, backward = theirs(3, 4), theirs(3, 4)
    x = torch.randn(2, 5, 3)
    zeros = torch.zeros(2, 4)
    state = (zeros, zeros) if cell is lstm_cell else zeros
    output, final_forward, final_backward = bidirectional_layer(
        cell, x, state, state, cell_weights(forward), cell_weights(backward))
    forward_output, forward_final = unroll(cell, x, state, cell_weights(forward))
    flipped_output, flipped_final = unroll(cell, x.flip(1), state, cell_weights(backward))
    assert close(output, torch.cat([forward_output, flipped_output.flip(1)], dim=-1))
    assert close(final_forward, forward_final) and close(final_backward, flipped_final)


def _nodes_reading(output: torch.Tensor, leaf: torch.Tensor) -> list[str]:
    """The autograd nodes of output's graph that pass a gradient straight to the leaf tensor."""
    found, seen, stack = [], set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None and getattr(child, "variable", None) is leaf:
                found.append(node.name())
            stack.append(child)
    return found


@pytest.mark.parametrize("where", ["dl4nlp.rnn", "the grader's copy"])
@pytest.mark.parametrize("lengths", [None, torch.tensor([7, 3])], ids=["full", "padded"])
def test_unroll_backward_builds_the_inputs_gradient_once(where, lengths):
    """Slicing x[:, t] at each step would make backward build a zero (B, T, D) gradient T times (T nodes)."""
    from dl4nlp.exercises import rnn as grader

    torch.manual_seed(0)
    function = unroll if where == "dl4nlp.rnn" else grader.unroll
    x = torch.randn(2, 7, 3, requires_grad=True)
    outputs, _ = function(lstm_cell, x, (torch.zeros(2, 4), torch.zeros(2, 4)), cell_weights(nn.LSTMCell(3, 4)),
                          lengths)
    assert _nodes_reading(outputs, x) == ["UnbindBackward0"]


@pytest.mark.parametrize("ours, theirs", LAYERS, ids=["rnn", "lstm", "gru"])
@given(batch=sizes, time=sizes, input_size=sizes, hidden_size=sizes, seed=st.integers(0, 2**16))
@settings(max_examples=10, deadline=None)
def test_gradient_norms_match_torch(ours, theirs, batch, time, input_size, hidden_size, seed):
    """The norms of d(sum h_T) / d x_t equal x.grad's after backpropagating through torch.nn's layer."""
    torch.manual_seed(seed)
    reference = theirs(input_size, hidden_size, batch_first=True)
    x = torch.randn(batch, time, input_size, requires_grad=True)
    h = torch.randn(batch, hidden_size)
    state = (h, torch.randn(batch, hidden_size)) if ours is LSTM else h
    output, _ = reference(x, tuple(s[None] for s in state) if ours is LSTM else state[None])
    output[:, -1].sum().backward()
    weights = tuple(reference.get_parameter(f"{kind}_l0") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    norms = gradient_norms(ours.reference_cell, x.detach(), state, weights)
    assert norms.shape == (batch, time) and not norms.requires_grad
    assert close(norms, x.grad.norm(dim=-1))


def test_gradient_norms_worked_value_and_inputs_left_alone():
    """A linear cell h' = a h + x: d h_T / d x_t = a^(T-1-t), so the norms are powers of a."""
    def linear_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
        return h @ weight_hh.T + x @ weight_ih.T

    weights = (torch.ones(1, 1), torch.full((1, 1), 0.5), torch.zeros(1), torch.zeros(1))
    x = torch.randn(2, 4, 1)
    norms = gradient_norms(linear_cell, x, torch.zeros(2, 1), weights)
    assert norms.tolist() == [[0.125, 0.25, 0.5, 1.0]] * 2
    assert x.grad is None and not x.requires_grad and weights[1].grad is None
    with pytest.raises(ValueError, match=r"gradient_norms: x should have shape \(B, T, D\)"):
        gradient_norms(linear_cell, x[0], torch.zeros(2, 1), weights)


def test_gradients_vanish_faster_in_a_vanilla_rnn_than_in_an_lstm_with_its_forget_gate_open():
    torch.manual_seed(0)
    x = torch.randn(8, 40, 4)
    rnn_norms = gradient_norms(rnn_cell, x, torch.zeros(8, 16), cell_weights(nn.RNNCell(4, 16)))
    lstm = nn.LSTMCell(4, 16)
    with torch.no_grad():
        lstm.bias_ih[16:32] += 3.0  # forget gate open
    zeros = torch.zeros(8, 16)
    lstm_norms = gradient_norms(lstm_cell, x, (zeros, zeros), cell_weights(lstm))
    assert rnn_norms[:, 0].mean() < 1e-3 * rnn_norms[:, -1].mean()  # 39 steps back: vanished
    assert lstm_norms[:, 0].mean() > 100 * rnn_norms[:, 0].mean()


def test_reverse_padded_keeps_padding_in_place():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])[..., None]
    reversed_x = reverse_padded(x, torch.tensor([3, 2]))
    assert reversed_x[..., 0].tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]
    assert torch.equal(reverse_padded(reversed_x, torch.tensor([3, 2])), x)  # an involution


def test_layer_errors_name_the_expected_shape():
    model = LSTM(3, 4)
    with pytest.raises(ValueError, match=r"D = input_size = 3"):
        model(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"x should have shape \(B, T, D\)"):
        model(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"between 1 and T=5"):
        model(torch.randn(2, 5, 3), lengths=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"\(h_0, c_0\)"):
        model(torch.randn(2, 5, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"\(1, 2, 4\)"):
        GRU(3, 4)(torch.randn(2, 5, 3), torch.zeros(1, 3, 4))


def test_from_torch_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="batch_first=False"):
        LSTM.from_torch(nn.LSTM(3, 4))
    with pytest.raises(TypeError, match="expects a GRU"):
        GRU.from_torch(nn.LSTM(3, 4, batch_first=True))
    with pytest.raises(ValueError, match="relu"):
        RNN.from_torch(nn.RNN(3, 4, nonlinearity="relu", batch_first=True))


def test_parameters_are_named_as_in_torch():
    ours = LSTM(3, 4, num_layers=2, bidirectional=True)
    theirs = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


def test_layers_train_end_to_end():
    torch.manual_seed(0)
    model = GRU(2, 8)
    x = torch.randn(16, 6, 2)
    target = x[:, 0, :1]  # remember the first input across the sequence
    head = nn.Linear(8, 1)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=0.05)
    losses = []
    for _ in range(60):
        _, h_n = model(x)
        loss = nn.functional.mse_loss(head(h_n[-1]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


# --- sequence classification -----------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_classifier_pools_last_layer_final_states(cell, bidirectional):
    torch.manual_seed(2)
    config = ClassifierConfig(vocab_size=11, embedding_dim=5, hidden_size=4, cell=cell, num_layers=2,
                              bidirectional=bidirectional)
    model = SequenceClassifier(config)
    reference = rnn.RECURRENT[cell].torch_class(5, 4, num_layers=2, bidirectional=bidirectional, batch_first=True)
    reference.load_state_dict(model.encoder.state_dict())
    tokens, lengths = torch.randint(1, 11, (3, 6)), torch.tensor([6, 2, 4])
    _, state = torch_padded(reference, model.embedding(tokens), lengths)
    h_n = state[0] if cell == "lstm" else state
    pooled = torch.cat([h_n[-2], h_n[-1]], dim=-1) if bidirectional else h_n[-1]
    logits, expected = model(tokens, lengths), model.head(pooled)
    assert close(logits, expected)
    shared = [model.embedding.weight, model.head.weight, model.head.bias]
    names = [name for name, _ in reference.named_parameters()]
    assert same_gradients(logits, [*shared, *(model.encoder.get_parameter(name) for name in names)],
                          expected, [*shared, *(reference.get_parameter(name) for name in names)], seed=2)


def test_classifier_ignores_padding_tokens():
    torch.manual_seed(3)
    model = SequenceClassifier(ClassifierConfig(vocab_size=9, embedding_dim=4, hidden_size=3))
    short = model(torch.tensor([[3, 4, 5]]), torch.tensor([3]))
    padded = model(torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]]), torch.tensor([3, 5]))
    assert close(padded[:1], short)


def test_classifier_takes_a_students_cell():
    calls = []

    def counting_cell(*args):
        calls.append(1)
        return gru_cell(*args)

    model = SequenceClassifier(ClassifierConfig(vocab_size=5, embedding_dim=2, hidden_size=2, cell="gru"),
                               cell=counting_cell)
    model(torch.tensor([[1, 2, 3]]), torch.tensor([3]))
    assert len(calls) == 6  # 3 steps, 2 directions


def test_classifier_config_errors():
    with pytest.raises(ValueError, match="must be one of"):
        SequenceClassifier(ClassifierConfig(vocab_size=5, cell="transformer"))
    model = SequenceClassifier(ClassifierConfig(vocab_size=5))
    with pytest.raises(ValueError, match=r"tokens should have shape \(B, T\)"):
        classify(torch.tensor([1, 2]), torch.tensor([2]), model.embedding, model.encoder, model.head)


def test_generator_makes_initialisation_reproducible():
    config = ClassifierConfig(vocab_size=7)
    first = assert_seeded_initialisation(lambda generator: SequenceClassifier(config, generator=generator))
    assert torch.equal(first.embedding.weight[0], torch.zeros(64))  # the padding row


# --- gradients through time -------------------------------------------------------------


def test_gradient_vanishes_or_explodes_with_the_recurrent_weight():
    """A linear-regime vanilla RNN (tiny inputs): the gradient k steps back scales like w_hh ** k."""
    T = 12
    x = torch.full((1, T, 1), 1e-4)
    for w_hh, direction in ((0.5, "vanishes"), (1.5, "explodes")):
        weights = (torch.ones(1, 1), torch.full((1, 1), w_hh), torch.zeros(1), torch.zeros(1))
        norms = rnn.gradient_norms(rnn.rnn_cell, x, torch.zeros(1, 1), weights)[0]  # (T,)
        ratios = norms[:-1] / norms[1:]  # one step further back, over one step nearer the end
        assert torch.allclose(ratios, torch.full_like(ratios, w_hh), rtol=1e-3), (direction, ratios)
    weights = (torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.zeros(1))
    norms = rnn.gradient_norms(rnn.rnn_cell, x, torch.zeros(1, 1), weights)[0]  # (T,)
    assert norms[-1] > 0 and torch.all(norms[:-1] == 0)  # no recurrence: only the last input matters
