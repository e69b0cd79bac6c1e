"""Toy sequence-to-sequence tasks of the attention chapter: reverse (or copy) a sequence of symbols.

Each example is a sequence of T random symbols 2 .. V - 1 (0 is padding, 1 is unused, as
`<unk>` in a vocabulary) and its target at every position: the same sequence reversed
(``"reverse"``: position t must output the symbol at L - 1 - t) or unchanged (``"copy"``).
Reversing needs, at every position, a token from far away in the sequence, at a distance that
varies with t: a recurrent network must carry it through up to L steps, while self-attention
reaches it in one step, if it knows positions. Lengths vary, so batches are padded; targets
at padded positions are `dl4nlp.training.IGNORE_INDEX`.

Generated, not downloaded: the same data offline and in Colab, drawn from a seeded generator.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from dl4nlp.training import IGNORE_INDEX

TASKS = ("reverse", "copy")
PAD_ID = 0
FIRST_SYMBOL = 2  # ids 0 (padding) and 1 are not symbols


def sequence_task(task: str, num_examples: int, max_length: int, vocab_size: int, *,
                  min_length: int | None = None, generator: torch.Generator) -> TensorDataset:
    """Random symbol sequences and their targets, padded to `max_length`.

    Args: task, "reverse" or "copy"; num_examples N; max_length T; vocab_size V (symbols
      2 .. V - 1, so V >= 3); min_length, the shortest sequence (default T: all of length T);
      generator, for the symbols and the lengths.
    Returns: a TensorDataset of (tokens (N, T) long, lengths (N,) long, targets (N, T) long):
      targets[n, t] is the symbol position t must output, IGNORE_INDEX at padding.
    """
    if task not in TASKS:
        raise ValueError(f"sequence_task: task must be one of {TASKS}, got {task!r}")
    min_length = max_length if min_length is None else min_length
    if not 1 <= min_length <= max_length:
        raise ValueError(f"sequence_task: need 1 <= min_length <= max_length, got {min_length} and {max_length}")
    if vocab_size < FIRST_SYMBOL + 1:
        raise ValueError(f"sequence_task: vocab_size must be at least {FIRST_SYMBOL + 1} (ids 0 and 1 are "
                         f"reserved), got {vocab_size}")
    tokens = torch.randint(FIRST_SYMBOL, vocab_size, (num_examples, max_length), generator=generator)  # (N, T)
    lengths = torch.randint(min_length, max_length + 1, (num_examples,), generator=generator)  # (N,)
    real = torch.arange(max_length) < lengths[:, None]  # (N, T)
    tokens = tokens.masked_fill(~real, PAD_ID)  # (N, T)
    if task == "copy":
        targets = tokens.clone()  # (N, T)
    else:
        source = (lengths[:, None] - 1 - torch.arange(max_length)).clamp(min=0)  # (N, T): position L - 1 - t
        targets = tokens.gather(1, source)  # (N, T)
    targets = targets.masked_fill(~real, IGNORE_INDEX)  # (N, T)
    return TensorDataset(tokens, lengths, targets)


def sequence_loader(dataset: TensorDataset, batch_size: int, *, shuffle: bool = False,
                    generator: torch.Generator | None = None) -> DataLoader:
    """Batches (tokens (B, T), lengths (B,), targets (B, T)) of a `sequence_task`."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def token_accuracy(logits: Tensor, targets: Tensor) -> tuple[int, int]:
    """(correct, counted): how many real positions have their target as the highest logit.

    Args: logits (B, T, V); targets (B, T) with IGNORE_INDEX at padding.
    """
    real = targets != IGNORE_INDEX  # (B, T)
    correct = (logits.argmax(dim=-1) == targets) & real  # (B, T)
    return int(correct.sum()), int(real.sum())
