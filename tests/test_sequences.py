"""dl4nlp.data.sequences: the toy tasks of the attention chapter, and the per-position loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dl4nlp.data.sequences import sequence_loader, sequence_task, token_accuracy
from dl4nlp.training import IGNORE_INDEX, tagging_loss


def test_reverse_targets_read_each_sequence_backwards_and_ignore_padding():
    tokens, lengths, targets = sequence_task("reverse", 50, 7, 12, min_length=2,
                                             generator=torch.Generator().manual_seed(0)).tensors
    assert tokens.shape == targets.shape == (50, 7) and lengths.min() >= 2 and lengths.max() <= 7
    for n in range(50):
        L = int(lengths[n])
        assert tokens[n, :L].min() >= 2 and tokens[n, :L].max() <= 11 and (tokens[n, L:] == 0).all()
        assert targets[n, :L].tolist() == tokens[n, :L].flip(0).tolist()
        assert (targets[n, L:] == IGNORE_INDEX).all()


def test_copy_targets_are_the_tokens_and_data_are_reproducible():
    first = sequence_task("copy", 20, 5, 6, generator=torch.Generator().manual_seed(1)).tensors
    again = sequence_task("copy", 20, 5, 6, generator=torch.Generator().manual_seed(1)).tensors
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    tokens, lengths, targets = first
    assert (lengths == 5).all() and torch.equal(targets, tokens)


@pytest.mark.parametrize(("kwargs", "problem"), [
    (dict(task="sort"), "task must be one of"), (dict(vocab_size=2), "vocab_size must be at least 3"),
    (dict(min_length=9), "min_length <= max_length")])
def test_errors(kwargs, problem):
    arguments = dict(task="reverse", num_examples=3, max_length=4, vocab_size=5) | kwargs
    task = arguments.pop("task")
    with pytest.raises(ValueError, match=problem):
        sequence_task(task, **arguments, generator=torch.Generator())


def test_tagging_loss_and_accuracy_count_real_positions_only():
    dataset = sequence_task("reverse", 8, 6, 10, min_length=1, generator=torch.Generator().manual_seed(2))
    tokens, lengths, targets = next(iter(sequence_loader(dataset, batch_size=8)))

    class Oracle(nn.Module):  # right everywhere: a large logit at the target (any value at padding)
        def forward(self, tokens, lengths):
            return 20 * F.one_hot(targets.clamp(min=0), 10).float()

    assert tagging_loss(Oracle(), (tokens, lengths, targets)) < 1e-6
    assert token_accuracy(Oracle()(tokens, lengths), targets) == (int(lengths.sum()), int(lengths.sum()))
    uniform = nn.Module()
    uniform.forward = lambda tokens, lengths: torch.zeros(*tokens.shape, 10)
    assert torch.isclose(tagging_loss(uniform, (tokens, lengths, targets)), torch.log(torch.tensor(10.0)))
