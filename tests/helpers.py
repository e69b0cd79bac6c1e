"""Helpers shared by the tests: comparing results, padded batches, gradients.

A plain module, imported as ``from helpers import close, ...``: pytest puts the
tests/ folder on sys.path (rootdir-relative "prepend" import mode), so no package
and no conftest import are needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

ATOL = 1e-5



def close(ours, theirs, atol: float = ATOL) -> bool:
    """Same structure, same shapes, values within `atol`: tensors, or tuples of them (nested)."""
    if isinstance(ours, tuple) or isinstance(theirs, tuple):
        return (isinstance(ours, tuple) and isinstance(theirs, tuple) and len(ours) == len(theirs)
                and all(close(a, b, atol) for a, b in zip(ours, theirs)))
    return ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=atol)


def flatten(value) -> list[Tensor]:
    """The tensors of a tensor or a nested tuple of them, in order."""
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in flatten(item)]
    return [value]


def cell_weights(cell: nn.RNNCellBase) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of a torch.nn cell, in the order our cells take them."""
    return cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh


# --- padding ------------------------------------------------------------------------------


def random_lengths(batch: int, time: int, generator: torch.Generator | None = None) -> Tensor:
    """Lengths (B,) between 1 and T, the first one T (so the batch is as long as its longest sequence)."""
    lengths = torch.randint(1, time + 1, (batch,), generator=generator)  # (B,)
    lengths[0] = time
    return lengths


def unpad(tokens: Tensor, lengths: Tensor) -> list[list[int]]:
    """The sequences of a padded batch: row b up to lengths[b]."""
    return [row[:int(length)].tolist() for row, length in zip(tokens, lengths)]


def is_padded(tokens: Tensor, lengths: Tensor, sequences: Sequence[Sequence[int]], pad_id: int = 0) -> bool:
    """True if tokens (B, T) holds each sequence from the start, then pad_id; lengths (B,) their lengths;
    and T is the longest length."""
    return (tokens.shape == (len(sequences), max(map(len, sequences))) and lengths.shape == (len(sequences),)
            and lengths.tolist() == [len(sequence) for sequence in sequences]
            and unpad(tokens, lengths) == [list(sequence) for sequence in sequences]
            and all((row[int(length):] == pad_id).all() for row, length in zip(tokens, lengths)))


def torch_padded(module: nn.RNNBase, x: Tensor, lengths: Tensor):
    """torch.nn's own answer for a padded batch: pack, run, unpack (output (B, T, ...), final state)."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    output, state = module(packed)
    output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
    return output, state


# --- gradients ----------------------------------------------------------------------------


def gradients(outputs, inputs: Sequence[Tensor], seed: int = 0) -> tuple[Tensor, ...]:
    """d(sum of outputs * fixed random weights) / d(inputs): every output element counts, each differently.

    The same `seed` gives the same weights, so calling this on our outputs and on torch.nn's
    compares the full vector-Jacobian products. An input the outputs do not depend on gets zeros.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = flatten(outputs)
    total = sum((tensor * torch.randn(tensor.shape, generator=generator)).sum() for tensor in tensors)
    grads = torch.autograd.grad(total, list(inputs), allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads))


def leaves(*tensors: Tensor) -> list[Tensor]:
    """Detached copies that require gradients: the inputs to differentiate with respect to."""
    return [tensor.detach().clone().requires_grad_() for tensor in tensors]


def assert_seeded_initialisation(build) -> nn.Module:
    """`build(generator)` makes a model: the same seed gives the same parameters, another seed others.
    Returns the first model, for checks of its own (such as the padding row)."""
    first, second, third = (build(torch.Generator().manual_seed(seed)) for seed in (5, 5, 6))
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), third.parameters()))
    return first
