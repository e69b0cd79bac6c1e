"""dl4nlp.cnn: contracts, equivalence with torch.nn.functional and torch.nn, invariants."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import assert_seeded_initialisation, close, gradients, leaves
from torch import nn
from torch.nn import functional as F

from dl4nlp.cnn import (Conv1d, TextCNN, TextCNNConfig, avg_pool, avg_pool_over_time, conv1d, conv1d_windows,
                        feature_lengths, max_pool, max_pool_over_time)
from dl4nlp.training import train_classifier

GRAD_ATOL = 1e-4  # gradients run through more float32 operations than the outputs
CONVS = [conv1d, conv1d_windows]


def same_gradients(ours, our_inputs, theirs, their_inputs, seed: int) -> bool:
    """Both computations give the same gradient of one random weighted sum of their outputs
    with respect to each of their inputs (listed in the same order)."""
    return close(gradients(ours, our_inputs, seed), gradients(theirs, their_inputs, seed), atol=GRAD_ATOL)


def torch_time(function, x, *args, **kwargs):
    """Apply a torch function that reads (B, D, T) to x (B, T, D), and return (B, T_out, C)."""
    return function(x.transpose(1, 2), *args, **kwargs).transpose(1, 2)


@st.composite
def windows(draw, max_time: int = 9):
    """(batch, time, kernel_size, stride) with 1 <= K <= T."""
    time = draw(st.integers(1, max_time))
    return draw(st.integers(1, 4)), time, draw(st.integers(1, time)), draw(st.integers(1, 4))


# --- convolution ------------------------------------------------------------------------


@pytest.mark.parametrize("ours", CONVS, ids=lambda f: f.__name__)
@given(shape=windows(), width=st.integers(1, 5), filters=st.integers(1, 5), with_bias=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_conv1d_matches_torch(ours, shape, width, filters, with_bias, seed):
    batch, time, kernel_size, stride = shape
    torch.manual_seed(seed)
    x = torch.randn(batch, time, width, requires_grad=True)
    weight = torch.randn(filters, width, kernel_size, requires_grad=True)
    bias = torch.randn(filters, requires_grad=True) if with_bias else None
    their_inputs = [x, weight] + ([bias] if with_bias else [])
    our_inputs = leaves(*their_inputs)
    output = ours(*our_inputs, stride=stride) if with_bias else ours(*our_inputs, None, stride)
    expected = torch_time(F.conv1d, x, weight, bias, stride)
    assert output.shape == (batch, (time - kernel_size) // stride + 1, filters)
    assert close(output, expected)
    assert same_gradients(output, our_inputs, expected, their_inputs, seed)


@given(shape=windows(max_time=12), width=st.integers(1, 4), filters=st.integers(1, 4), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_conv1d_windows_equals_conv1d(shape, width, filters, seed):
    batch, time, kernel_size, stride = shape
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, time, width, generator=generator)
    weight = torch.randn(filters, width, kernel_size, generator=generator)
    bias = torch.randn(filters, generator=generator)
    assert close(conv1d_windows(x, weight, bias, stride), conv1d(x, weight, bias, stride))


@pytest.mark.parametrize("ours", CONVS, ids=lambda f: f.__name__)
def test_conv1d_worked_value(ours):
    # One filter that adds a word's only feature to twice the next one's: y_t = x_t + 2 x_{t+1} + 0.5.
    x = torch.tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]])  # (1, 5, 1)
    weight, bias = torch.tensor([[[1.0, 2.0]]]), torch.tensor([0.5])  # (1, 1, 2)
    assert ours(x, weight, bias)[0, :, 0].tolist() == [5.5, 8.5, 11.5, 14.5]
    assert ours(x, weight, bias, stride=2)[0, :, 0].tolist() == [5.5, 11.5]  # windows start at 0, 2
    assert ours(x, weight, bias, stride=3)[0, :, 0].tolist() == [5.5, 14.5]  # 0, 3: (5 - 2) // 3 + 1 = 2
    assert ours(x[:, :2], weight)[0, :, 0].tolist() == [5.0]  # K = T: one window


def test_conv1d_module_copies_torch():
    torch.manual_seed(0)
    reference = nn.Conv1d(4, 6, 3, stride=2)
    ours = Conv1d.from_torch(reference)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    x = torch.randn(3, 9, 4, requires_grad=True)
    (our_x,) = leaves(x)
    output, expected = ours(our_x), reference(x.transpose(1, 2)).transpose(1, 2)
    assert output.shape == (3, 4, 6) and close(output, expected)
    assert same_gradients(output, [our_x, ours.weight, ours.bias], expected, [x, reference.weight, reference.bias], 0)
    with pytest.raises(ValueError, match="padding"):
        Conv1d.from_torch(nn.Conv1d(4, 6, 3, padding=1))
    with pytest.raises(ValueError, match="dilation"):
        Conv1d.from_torch(nn.Conv1d(4, 6, 3, dilation=2))
    with pytest.raises(TypeError, match="expects a Conv1d"):
        Conv1d.from_torch(nn.Linear(4, 6))


# --- pooling ------------------------------------------------------------------------------


@pytest.mark.parametrize("ours, theirs", [(max_pool_over_time, F.max_pool1d), (avg_pool_over_time, F.avg_pool1d)],
                         ids=["max", "avg"])
@given(data=st.data(), channels=st.integers(1, 5), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_pool_over_time_matches_torch_on_each_sentence_alone(ours, theirs, data, channels, seed):
    batch, time = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 8))
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, time), min_size=batch, max_size=batch)))
    torch.manual_seed(seed)
    x = torch.randn(batch, time, channels)
    x = torch.where(torch.arange(time)[None, :, None] < lengths[:, None, None], x, 1e6)  # huge padding
    x.requires_grad_(True)
    (our_x,) = leaves(x)
    output = ours(our_x, lengths)
    assert output.shape == (batch, channels)
    expected = torch.cat([torch_time(theirs, x[b:b + 1, :length], int(length))[:, 0]
                          for b, length in enumerate(lengths)])  # (B, C), each sentence pooled alone
    assert close(output, expected)
    assert same_gradients(output, [our_x], expected, [x], seed)  # zero gradient at the padding
    assert close(ours(x), torch_time(theirs, x, time)[:, 0])  # without lengths: all T positions


@pytest.mark.parametrize("ours, theirs", [(max_pool, F.max_pool1d), (avg_pool, F.avg_pool1d)], ids=["max", "avg"])
@given(shape=windows(), channels=st.integers(1, 5), default_stride=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_windowed_pool_matches_torch(ours, theirs, shape, channels, default_stride, seed):
    batch, time, kernel_size, stride = shape
    torch.manual_seed(seed)
    x = torch.randn(batch, time, channels, requires_grad=True)
    (our_x,) = leaves(x)
    if default_stride:  # stride = K, as in torch
        output, expected = ours(our_x, kernel_size), torch_time(theirs, x, kernel_size)
    else:
        output, expected = ours(our_x, kernel_size, stride), torch_time(theirs, x, kernel_size, stride)
    assert close(output, expected)
    assert same_gradients(output, [our_x], expected, [x], seed)


def test_pool_over_time_worked_values():
    x = torch.tensor([[[1.0], [5.0], [3.0]], [[2.0], [4.0], [9.0]]])  # (2, 3, 1); 9.0 is padding
    lengths = torch.tensor([3, 2])
    assert max_pool_over_time(x, lengths).tolist() == [[5.0], [4.0]]
    assert avg_pool_over_time(x, lengths).tolist() == [[3.0], [3.0]]
    nan_padding = torch.tensor([[[2.0], [float("nan")]]])
    assert avg_pool_over_time(nan_padding, torch.tensor([1])).tolist() == [[2.0]]
    assert max_pool_over_time(-x).tolist() == [[-1.0], [-2.0]]  # negative features: the max is not 0


@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_feature_lengths_count_each_sentences_windows(data):
    kernel_size, stride = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    lengths = data.draw(st.lists(st.integers(kernel_size, 10), min_size=1, max_size=4))
    counts = feature_lengths(torch.tensor(lengths), kernel_size, stride)
    weight = torch.randn(1, 2, kernel_size)
    assert counts.tolist() == [conv1d(torch.randn(1, length, 2), weight, stride=stride).shape[1] for length in lengths]


# --- invariants ---------------------------------------------------------------------------


def test_a_phrase_moved_within_the_sentence_gives_the_same_max_pooled_vector():
    """A phrase surrounded on both sides by at least K - 1 copies of one filler word: wherever it
    stands, the windows' features are the same set, so max over time is the same vector."""
    torch.manual_seed(0)
    filler, phrase = torch.randn(1, 1, 4), torch.randn(1, 3, 4)  # (1, 1, D), (1, 3, D)
    weight, bias = torch.randn(6, 4, 2), torch.randn(6)  # K = 2

    def sentence(before: int) -> torch.Tensor:
        return torch.cat([filler.expand(1, before, 4), phrase, filler.expand(1, 9 - before, 4)], dim=1)  # (1, 12, D)

    pooled = [max_pool_over_time(conv1d(sentence(before), weight, bias)) for before in (1, 4, 8)]
    assert close(pooled[0], pooled[1]) and close(pooled[0], pooled[2])
    features = conv1d(sentence(1), weight, bias)
    assert not close(features, conv1d(sentence(8), weight, bias))  # the feature maps themselves moved

    model = TextCNN(TextCNNConfig(vocab_size=9, embedding_dim=5, kernel_sizes=(2, 3), num_filters=4)).eval()
    tokens = [torch.tensor([[1] * before + [5, 6, 7] + [1] * (8 - before)]) for before in (2, 4, 6)]
    logits = [model(sentence_tokens, torch.tensor([11])) for sentence_tokens in tokens]
    assert close(logits[0], logits[1]) and close(logits[0], logits[2])


def test_padding_changes_nothing_in_textcnn():
    """Each sentence gets the same logits alone as in a padded batch, whatever the padding holds,
    also when it is shorter than the longest kernel."""
    torch.manual_seed(1)
    model = TextCNN(TextCNNConfig(vocab_size=20, embedding_dim=6, kernel_sizes=(2, 3, 5), num_filters=4)).eval()
    sentences = [[3, 4, 5, 6, 7, 8, 9], [10, 11, 12], [13], [14, 15, 16, 17, 18]]
    lengths = torch.tensor([len(sentence) for sentence in sentences])
    tokens = torch.randint(1, 20, (len(sentences), 7))  # garbage, not padding_idx, past each sentence
    for row, sentence in enumerate(sentences):
        tokens[row, :len(sentence)] = torch.tensor(sentence)
    batch = model(tokens, lengths)
    alone = torch.cat([model(torch.tensor([sentence]), torch.tensor([len(sentence)])) for sentence in sentences])
    assert batch.shape == (4, 2) and close(batch, alone)
    tokens[1, 3:] = 0  # padding_idx: as good as garbage
    assert close(model(tokens, lengths), alone)


def assert_unchanged(tensors, copies) -> None:
    for index, (tensor, (values, version)) in enumerate(zip(tensors, copies)):
        assert torch.equal(tensor, values), f"input {index} was changed"
        assert tensor._version == version, f"input {index} was written in place"


@pytest.mark.parametrize("call", [
    lambda x, w, b, lengths: conv1d(x, w, b, 2),
    lambda x, w, b, lengths: conv1d_windows(x, w, b, 2),
    lambda x, w, b, lengths: max_pool_over_time(x, lengths),
    lambda x, w, b, lengths: avg_pool_over_time(x, lengths),
    lambda x, w, b, lengths: max_pool(x, 2, 1),
    lambda x, w, b, lengths: avg_pool(x, 3),
    lambda x, w, b, lengths: feature_lengths(lengths, 2, 2),
], ids=["conv1d", "conv1d_windows", "max_pool_over_time", "avg_pool_over_time", "max_pool", "avg_pool",
        "feature_lengths"])
def test_functions_never_modify_their_inputs(call):
    torch.manual_seed(0)
    x, weight, bias, lengths = torch.randn(2, 6, 3), torch.randn(4, 3, 2), torch.randn(4), torch.tensor([6, 3])
    tensors = [x, weight, bias, lengths]
    copies = [(tensor.clone(), tensor._version) for tensor in tensors]
    call(x, weight, bias, lengths)
    assert_unchanged(tensors, copies)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ours", CONVS, ids=lambda f: f.__name__)
def test_conv1d_errors_name_the_argument_and_shapes(ours):
    name = ours.__name__
    x, weight = torch.randn(2, 5, 3), torch.randn(4, 3, 2)
    with pytest.raises(ValueError, match=rf"{name}: the kernel is longer than the sentence: K=6 words but T=5"):
        ours(x, torch.randn(4, 3, 6))
    with pytest.raises(ValueError, match=rf"{name}: x should have shape \(B, T, D\) .* \(5, 3\) \(has 2 dimensions"):
        ours(x[0], weight)
    with pytest.raises(ValueError, match=rf"{name}: weight should have shape \(C, D, K\) = \(4, 3, K\), "
                                         r"but it has shape \(4, 7, 2\)"):
        ours(x, torch.randn(4, 7, 2))  # widths: x has D = 3, the filters expect 7
    with pytest.raises(ValueError, match=rf"{name}: bias should have shape \(C\) = \(4\)"):
        ours(x, weight, torch.randn(5))
    for stride in (0, -1, 1.5):
        with pytest.raises(ValueError, match=rf"{name}: stride must be a positive integer, got {stride}"):
            ours(x, weight, stride=stride)
    with pytest.raises(TypeError, match="torch.Tensor"):
        ours(x.tolist(), weight)


def test_pooling_and_lengths_errors():
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"max_pool_over_time: every length must be between 1 and T=5, got \[6, 2\]"):
        max_pool_over_time(x, torch.tensor([6, 2]))
    with pytest.raises(ValueError, match=r"avg_pool_over_time: lengths should have shape \(B\) = \(2\)"):
        avg_pool_over_time(x, torch.tensor([5, 2, 1]))
    with pytest.raises(ValueError, match=r"avg_pool_over_time: every length must be between 1 and T=5, got \[0, 2\]"):
        avg_pool_over_time(x, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"max_pool: x should have shape \(B, T, C\)"):
        max_pool(x[0], 2)
    with pytest.raises(ValueError, match=r"avg_pool: the kernel is longer than the sentence: K=7 words but T=5"):
        avg_pool(x, 7)
    with pytest.raises(ValueError, match=r"max_pool: stride must be a positive integer, got 0"):
        max_pool(x, 2, 0)
    with pytest.raises(ValueError, match=r"feature_lengths: every sentence must be at least as long as the kernel "
                                         r"\(K=3\), got lengths \[4, 2\]"):
        feature_lengths(torch.tensor([4, 2]), 3)
    with pytest.raises(ValueError, match=r"feature_lengths: stride must be a positive integer, got 0"):
        feature_lengths(torch.tensor([4, 2]), 3, 0)


def test_textcnn_errors():
    model = TextCNN(TextCNNConfig.small(vocab_size=10))
    with pytest.raises(ValueError, match=r"classify: tokens should have shape \(B, T\)"):
        model(torch.tensor([1, 2, 3]), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"between 1 and T=3"):
        model(torch.tensor([[1, 2, 3]]), torch.tensor([4]))
    with pytest.raises(ValueError, match="kernel_sizes"):
        TextCNN(TextCNNConfig(vocab_size=10, kernel_sizes=()))
    with pytest.raises(ValueError, match=r"Conv1d: x should have shape \(B, T, D\) = \(2, 5, 16\), "
                                         r"but it has shape \(2, 5, 7\)"):
        model.convs[0](torch.randn(2, 5, 7))


# --- TextCNN --------------------------------------------------------------------------------


def test_textcnn_matches_a_model_built_from_torch_modules():
    torch.manual_seed(2)
    embedding, head = nn.Embedding(13, 5, padding_idx=0), nn.Linear(3 * 4, 3)
    convs = [nn.Conv1d(5, 4, size) for size in (2, 3, 4)]
    model = TextCNN.from_torch(embedding, convs, head).eval()
    assert model.config == TextCNNConfig(13, 3, 5, (2, 3, 4), 4, 0.5, 0)
    tokens = torch.randint(1, 13, (3, 6))
    x = embedding(tokens).transpose(1, 2)  # (B, D, T)
    expected = head(torch.cat([torch.relu(conv(x)).amax(dim=-1) for conv in convs], dim=-1))  # (B, 3)
    logits = model(tokens, torch.tensor([6, 6, 6]))
    assert close(logits, expected)
    ours = [model.embedding.weight, *(p for conv in model.convs for p in (conv.weight, conv.bias)),
            model.head.weight, model.head.bias]
    theirs = [embedding.weight, *(p for conv in convs for p in (conv.weight, conv.bias)), head.weight, head.bias]
    assert same_gradients(logits, ours, expected, theirs, seed=2)
    assert [name for name, _ in model.named_parameters()] == [
        "embedding.weight", *(f"convs.{i}.{kind}" for i in range(3) for kind in ("weight", "bias")),
        "head.weight", "head.bias"]
    with pytest.raises(ValueError, match="stride 1 and the same out_channels"):
        TextCNN.from_torch(embedding, [nn.Conv1d(5, 4, 2), nn.Conv1d(5, 3, 3)], head)


def test_textcnn_trains_with_train_classifier():
    """The same call as the RNN classifier: the loss falls on a tiny task (does word 3 occur?)."""
    torch.manual_seed(3)
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(4, 12, (32, 8), generator=generator)
    labels = torch.arange(32) % 2
    tokens[labels == 1, torch.randint(0, 5, (16,), generator=generator)] = 3
    lengths = torch.randint(5, 9, (32,), generator=generator)
    batches = [(tokens[i:i + 8], lengths[i:i + 8], labels[i:i + 8]) for i in range(0, 32, 8)]
    model = TextCNN(TextCNNConfig.small(vocab_size=12), generator=torch.Generator().manual_seed(0))
    records = train_classifier(model, batches, batches, epochs=6, lr=1e-2, device=torch.device("cpu"),
                               progress=False)
    assert records[-1].train_loss < 0.5 * records[0].train_loss
    assert records[-1].validation_accuracy == 1.0


def test_textcnn_takes_a_students_conv():
    calls = []

    def counting_conv(*args):
        calls.append(1)
        return conv1d_windows(*args)

    model = TextCNN(TextCNNConfig.small(vocab_size=5), conv=counting_conv)
    model(torch.tensor([[1, 2, 3, 4]]), torch.tensor([4]))
    assert len(calls) == 2  # one per kernel size


def test_generator_makes_initialisation_reproducible():
    config = TextCNNConfig.small(vocab_size=7)
    first = assert_seeded_initialisation(lambda generator: TextCNN(config, generator=generator))
    assert torch.equal(first.embedding.weight[0], torch.zeros(16))  # the padding row
