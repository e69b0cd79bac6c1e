"""Data for the course: from text to a batch a model can read.

The path from text to a batch::

    "The film wasn't good."  --tokenize-->  ["the", "film", "was", "n't", "good", "."]
                             --Vocab.encode-->  [5, 17, 9, 31, 22, 4]
    several sequences        --pad_batch-->  tokens (B, T) padded with <pad> = 0, lengths (B,)

`make_loader` does all of it for a data set with ``sentence`` and ``label``
columns and yields (tokens (B, T), lengths (B,), labels (B,)).

The data sets live one per module, each with its loader and its offline
stand-in: `dl4nlp.data.sentiment` (`load_sentiment`, SST-2) for the RNN
chapter, ... Adding a data set adds a module; it does not change this one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import partial

import datasets
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

# --- tokenization ---------------------------------------------------------------------

_TOKEN = re.compile(r"""
      \w+(?=n't\b)              # the word before a negative contraction: "did" in "didn't"
    | n't\b                     # the contraction itself: "n't"
    | '(?:s|re|ve|ll|d|m)\b     # other clitics: "'s", "'re", "'ve", "'ll", "'d", "'m"
    | \w+(?:-\w+)*              # words, numbers and hyphenated words: "well-made"
    | \.\.\.                    # an ellipsis stays one token
    | [^\w\s]                   # any other punctuation mark, one character each
""", re.VERBOSE)


def tokenize(text: str) -> list[str]:
    """Split text into lowercase words and punctuation marks, the way SST-2 is tokenized.

    Contractions split as in the Penn Treebank, which SST follows: "didn't" ->
    ["did", "n't"], "can't" -> ["ca", "n't"], "it's" -> ["it", "'s"]. Text that is
    already tokenized like SST-2 ("does n't", "it 's") gives the same tokens.
    Hyphenated words stay whole ("well-made"); "..." is one token; every other
    punctuation mark is its own token. Curly apostrophes count as straight ones.

    Args: text, any string.
    Returns: the tokens, e.g. tokenize("The film wasn't good!") ==
      ["the", "film", "was", "n't", "good", "!"].
    """
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


# --- vocabulary -----------------------------------------------------------------------

PAD, UNK = "<pad>", "<unk>"


class Vocab:
    """A mapping between tokens and integer ids; id 0 is <pad>, id 1 is <unk>.

    Attributes: itos, the token of each id (a list); stoi, the id of each token
      (a dict); pad_id = 0; unk_id = 1.
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, itos: Sequence[str]) -> None:
        """Args: itos, the tokens in id order, starting with "<pad>", "<unk>"; no repeats."""
        if list(itos[:2]) != [PAD, UNK]:
            raise ValueError(f"a Vocab starts with the specials {[PAD, UNK]}, got {list(itos[:2])}")
        if len(set(itos)) != len(itos):
            raise ValueError("a Vocab cannot hold the same token twice")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {token: index for index, token in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_freq: int = 1,
              max_size: int | None = None) -> Vocab:
        """Count the tokens and keep the frequent ones.

        Order is deterministic: the specials, then by frequency (most frequent first),
        ties broken alphabetically.

        Args: token_lists, e.g. [tokenize(s) for s in sentences]; min_freq, keep tokens seen
          at least this often; max_size, the largest len(vocab), specials included (None: no limit).
        Returns: the Vocab.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size counts the two specials {PAD} and {UNK}, so it must be >= 2, got {max_size}")
        counts = Counter(token for tokens in token_lists for token in tokens)
        kept = sorted((token for token, count in counts.items() if count >= min_freq and token not in (PAD, UNK)),
                      key=lambda token: (-counts[token], token))
        if max_size is not None:
            kept = kept[:max_size - 2]
        return cls([PAD, UNK, *kept])

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """The id of each token; a token not in the vocabulary gets unk_id."""
        return [self.stoi.get(token, self.unk_id) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The token of each id (ints or 0-dimensional tensors)."""
        return [self.itos[int(index)] for index in ids]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.itos[:8]}{' ...' if len(self) > 8 else ''})"


def build_vocab(dataset: datasets.Dataset, min_freq: int = 1, max_size: int | None = None) -> Vocab:
    """A Vocab of the tokenized ``sentence`` column of a data set (build it on train only).

    Args: dataset with a ``sentence`` column; min_freq and max_size as in `Vocab.build`.
    Returns: the Vocab.
    """
    return Vocab.build((tokenize(sentence) for sentence in dataset["sentence"]), min_freq, max_size)


# --- batching -------------------------------------------------------------------------


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Stack sequences of different lengths into one tensor, padding at the end.

    Args: sequences, B lists of token ids, each at least one id long; pad_id, the id
      written after each sequence's end.
    Returns: tokens (B, T) long, with T the longest length and tokens[b, t] == pad_id for
      t >= lengths[b]; lengths (B,) long.
    """
    if len(sequences) == 0:
        raise ValueError("pad_batch: the batch is empty; give it at least one sequence")
    for index, sequence in enumerate(sequences):
        if len(sequence) == 0:
            raise ValueError(f"pad_batch: sequence {index} is empty; every sequence needs at least one token "
                             f"(a recurrent model has no state to read from an empty one)")
    tensors = [torch.as_tensor(sequence, dtype=torch.long) for sequence in sequences]
    lengths = torch.tensor([len(tensor) for tensor in tensors], dtype=torch.long)  # (B,)
    tokens = pad_sequence(tensors, batch_first=True, padding_value=pad_id)  # (B, T)
    return tokens, lengths


def _collate(examples: list[tuple[list[int], int]], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Collate (ids, label) pairs into tokens (B, T), lengths (B,), labels (B,)."""
    tokens, lengths = pad_batch([ids for ids, _ in examples], pad_id)
    labels = torch.tensor([label for _, label in examples], dtype=torch.long)  # (B,)
    return tokens, lengths, labels


def make_loader(dataset: datasets.Dataset, vocab: Vocab, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader of padded batches (tokens (B, T), lengths (B,), labels (B,)).

    Every sentence is tokenized and encoded once, here, not in every epoch.

    Args: dataset with ``sentence`` and ``label`` columns; vocab to encode with; batch_size;
      shuffle, a new order every epoch; generator for that order (None: torch's global one).
    Returns: the DataLoader; iterating it yields (tokens, lengths, labels), all long tensors.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    missing = {"sentence", "label"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"make_loader needs the columns 'sentence' and 'label'; missing {sorted(missing)}, "
                         f"found {dataset.column_names}")
    examples = []
    for index, (sentence, label) in enumerate(zip(dataset["sentence"], dataset["label"])):
        if label < 0:
            raise ValueError(f"example {index} has no label ({label}); SST-2's test split is unlabelled, "
                             f"use its validation split to evaluate")
        ids = vocab.encode(tokenize(sentence))
        if not ids:
            raise ValueError(f"example {index} has no tokens: {sentence!r}")
        examples.append((ids, int(label)))
    return DataLoader(examples, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=partial(_collate, pad_id=vocab.pad_id))
