"""Exercises of the reproducibility assignment: a training run that the same seed repeats exactly, splits
without leaks, and a result reported with its spread over seeds.

Every graded function is deterministic given its seed, so its outputs are compared with the reference's on
the grader's seeds (drawn at grading time): an answer that draws from torch's global generator, or from one
generator where the docstring asks for several, gives other numbers, and the feedback names the typical bug
it matches. `find_leaks` and `clean_split` get sentences with hidden copies: exact ones, and copies that
differ only in case or whitespace.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader

from dl4nlp.exercises import Assignment, Case, Part, normal


def _seed(generator: torch.Generator) -> int:
    """A seed for a case, drawn from the grading generator."""
    return int(torch.randint(2 ** 31, (1,), generator=generator))


# --- epoch_orders --------------------------------------------------------------------------------


def orders_cases(generator: torch.Generator) -> list[Case]:
    return [Case((n, epochs, _seed(generator)), f"n={n}, {epochs} epochs")
            for n, epochs in ((7, 3), (20, 2), (1, 2), (50, 1), (12, 4))]


def epoch_orders(n, epochs, seed):
    """The course's `epoch_orders`, bound in the notebook while `train_run` is graded (`Part.given`), so that a
    bug in Part 1 never costs Part 2 its points."""
    loader = DataLoader(range(n), batch_size=n, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return torch.stack([next(iter(loader)) for _ in range(epochs)])


# --- train_run -----------------------------------------------------------------------------------


def train_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for N, D, epochs, batch_size, lr, dropout in ((40, 6, 3, 8, 0.5, 0.2), (25, 4, 2, 10, 0.3, 0.5),
                                                  (16, 3, 2, 16, 1.0, 0.0), (30, 8, 2, 7, 0.2, 0.1)):
        features = normal(generator, N, D)
        labels = (features @ normal(generator, D) > 0).long()  # (N,): a linear rule the model can learn
        drawn.append(Case((features, labels, _seed(generator), epochs, batch_size, lr, dropout),
                          f"{N} examples of {D} features, {epochs} epochs, batches of {batch_size}, lr {lr}, "
                          f"dropout {dropout}"))
    return drawn


# --- find_leaks and clean_split -------------------------------------------------------------------

WORDS = ("the", "film", "plot", "acting", "was", "is", "not", "very", "great", "dull", "good", "bad", "a",
         "long", "boring", "moving", "story", "ending", "cast", "quite", "truly", "funny", "slow", "wonderful")


def _sentences(generator: torch.Generator, count: int) -> list[str]:
    """`count` distinct made-up sentences (distinct also after lowercasing and collapsing whitespace)."""
    sentences: list[str] = []
    while len(sentences) < count:
        words = [WORDS[int(i)] for i in torch.randint(len(WORDS), (int(torch.randint(3, 8, (1,),
                                                                                       generator=generator)),),
                                                       generator=generator)]
        sentence = " ".join(words).capitalize() + " ."
        if sentence.lower() not in {s.lower() for s in sentences}:
            sentences.append(sentence)
    return sentences


def _variant(sentence: str, kind: int) -> str:
    """A copy of a sentence: exact (0), in other case (1), with other whitespace (2), both (3)."""
    if kind in (1, 3):
        sentence = sentence.upper() if len(sentence) % 2 else sentence.lower()
    if kind in (2, 3):
        sentence = "  " + sentence.replace(" ", "   ", 1) + "\t"
    return sentence


def _pick(generator: torch.Generator, items: list[str]) -> str:
    return items[int(torch.randint(len(items), (1,), generator=generator))]


def leak_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for train_size, test_size, leaks, repeated in ((20, 10, 4, True), (12, 8, 1, False), (30, 12, 6, True),
                                                   (6, 5, 5, False)):
        fresh = _sentences(generator, train_size + test_size)
        train, test = fresh[:train_size], fresh[train_size:]
        for k in range(leaks):  # test sentences replaced by copies of training ones, one of each kind
            position = int(torch.randint(len(test), (1,), generator=generator))
            test[position] = _variant(_pick(generator, train), k % 4)
        if repeated:  # one leaked sentence twice in the test split
            test.append(_variant(_pick(generator, train), 3))
            test.insert(0, _variant(test[-1], 0))
        drawn.append(Case((train, test), f"{len(train)} training and {len(test)} test sentences"))
    return drawn


def split_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for size, copies, test_fraction in ((20, 6, 0.25), (30, 10, 0.2), (12, 4, 0.5), (8, 0, 0.25), (40, 15, 0.3)):
        sentences = _sentences(generator, size)
        for k in range(copies):  # copies of earlier sentences, some differing in case or whitespace
            position = int(torch.randint(len(sentences) + 1, (1,), generator=generator))
            sentences.insert(position, _variant(_pick(generator, sentences), k % 4))
        drawn.append(Case((sentences, test_fraction, _seed(generator)),
                          f"{len(sentences)} sentences, test_fraction {test_fraction}"))
    return drawn


# --- mean_and_std ---------------------------------------------------------------------------------


def statistics_cases(generator: torch.Generator) -> list[Case]:
    return [Case((0.8 + normal(generator, S, scale=0.05),), f"{S} values") for S in (2, 3, 5, 10)]


# --- typical bugs: known-wrong variants the feedback names -----------------------------------------
# Each is self-contained (torch, F and DataLoader only), so that the tests can hand one in as an answer.


def orders_global_seed(n, epochs, seed):
    torch.manual_seed(seed)
    loader = DataLoader(range(n), batch_size=n, shuffle=True)
    return torch.stack([next(iter(loader)) for _ in range(epochs)])


def orders_new_generator_every_epoch(n, epochs, seed):
    return torch.stack([next(iter(DataLoader(range(n), batch_size=n, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))))
                        for _ in range(epochs)])


def train_global_seed(features, labels, seed, epochs=3, batch_size=8, lr=0.5, dropout=0.2):
    torch.manual_seed(seed)
    N, D = features.shape
    weight = (torch.randn(2, D) * 0.1).requires_grad_()
    bias = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr)
    loader = DataLoader(range(N), batch_size=N, shuffle=True)
    losses = []
    for _ in range(epochs):
        order, total = next(iter(loader)), 0.0
        for start in range(0, N, batch_size):
            batch = order[start:start + batch_size]
            keep = torch.rand(len(batch), D) >= dropout
            loss = F.cross_entropy((features[batch] * keep / (1 - dropout)) @ weight.T + bias, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / N)
    return torch.tensor(losses), weight.detach(), bias.detach()


def train_one_generator(features, labels, seed, epochs=3, batch_size=8, lr=0.5, dropout=0.2):
    generator = torch.Generator().manual_seed(seed)
    N, D = features.shape
    weight = (torch.randn(2, D, generator=generator) * 0.1).requires_grad_()
    bias = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr)
    loader = DataLoader(range(N), batch_size=N, shuffle=True, generator=generator)
    losses = []
    for _ in range(epochs):
        order, total = next(iter(loader)), 0.0
        for start in range(0, N, batch_size):
            batch = order[start:start + batch_size]
            keep = torch.rand(len(batch), D, generator=generator) >= dropout
            loss = F.cross_entropy((features[batch] * keep / (1 - dropout)) @ weight.T + bias, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / N)
    return torch.tensor(losses), weight.detach(), bias.detach()


def train_same_order_every_epoch(features, labels, seed, epochs=3, batch_size=8, lr=0.5, dropout=0.2):
    N, D = features.shape
    weight = (torch.randn(2, D, generator=torch.Generator().manual_seed(seed)) * 0.1).requires_grad_()
    bias = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([weight, bias], lr=lr)
    masks = torch.Generator().manual_seed(seed + 2)
    loader = DataLoader(range(N), batch_size=N, shuffle=True, generator=torch.Generator().manual_seed(seed + 1))
    order = next(iter(loader))
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, N, batch_size):
            batch = order[start:start + batch_size]
            keep = torch.rand(len(batch), D, generator=masks) >= dropout
            loss = F.cross_entropy((features[batch] * keep / (1 - dropout)) @ weight.T + bias, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / N)
    return torch.tensor(losses), weight.detach(), bias.detach()


def leaks_exact(train, test):
    seen = set(train)
    return tuple(i for i, sentence in enumerate(test) if sentence in seen)


def leaks_lowercased_only(train, test):
    seen = {sentence.lower() for sentence in train}
    return tuple(i for i, sentence in enumerate(test) if sentence.lower() in seen)


def leaks_listed_once(train, test):
    seen = {" ".join(sentence.lower().split()) for sentence in train}
    found, listed = [], set()
    for i, sentence in enumerate(test):
        key = " ".join(sentence.lower().split())
        if key in seen and key not in listed:
            found.append(i)
            listed.add(key)
    return tuple(found)


def leaks_train_indices(train, test):
    seen = {" ".join(sentence.lower().split()) for sentence in test}
    return tuple(i for i, sentence in enumerate(train) if " ".join(sentence.lower().split()) in seen)


def split_sentence_by_sentence(sentences, test_fraction, seed):
    N = len(sentences)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    in_test = torch.zeros(N, dtype=torch.bool)
    in_test[order[:round(test_fraction * N)]] = True
    return torch.nonzero(~in_test).flatten(), torch.nonzero(in_test).flatten()


def split_exact_copies_only(sentences, test_fraction, seed):
    group = {sentence: g for g, sentence in enumerate(dict.fromkeys(sentences))}
    groups = list(group)
    wanted, taken, chosen = round(test_fraction * len(sentences)), 0, set()
    for g in torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist():
        if taken >= wanted:
            break
        chosen.add(g)
        taken += sum(sentence == groups[g] for sentence in sentences)
    in_test = torch.tensor([group[sentence] in chosen for sentence in sentences], dtype=torch.bool)
    return torch.nonzero(~in_test).flatten(), torch.nonzero(in_test).flatten()


def std_population(values):
    mean = values.sum() / values.shape[0]
    return mean, (((values - mean) ** 2).sum() / values.shape[0]).sqrt()


def std_standard_error(values):
    S = values.shape[0]
    mean = values.sum() / S
    return mean, (((values - mean) ** 2).sum() / (S - 1)).sqrt() / math.sqrt(S)


# Library calls that would do a part's work in one line, or make a run repeatable through global state only.
_GLOBAL_SEEDING = ("transformers.set_seed", "lightning.seed_everything", "lightning.pytorch.seed_everything",
                   "pytorch_lightning.seed_everything", "dl4nlp.reproducibility.set_seed")
_SPLITTERS = ("sklearn.model_selection", "datasets.Dataset.train_test_split", "torch.utils.data.random_split")
_STATISTICS = ("statistics", "numpy.std", "numpy.var", "numpy.mean", "torch.std", "torch.std_mean", "torch.var",
               "torch.var_mean", "torch.Tensor.std", "torch.Tensor.var", "dl4nlp.reproducibility.seed_statistics")
_GLOBAL_BUG = ("seeding the global generator (torch.manual_seed) but shuffling with an unseeded DataLoader: the "
               "loader then takes its seed from the global generator, so any draw before it changes the order")

ASSIGNMENT = Assignment(
    name="reproducibility",
    parts=(
        Part("epoch_orders", "dl4nlp.reproducibility", 2, orders_cases, forbidden=_GLOBAL_SEEDING,
             bugs={_GLOBAL_BUG: orders_global_seed,
                   "a new generator every epoch: every epoch visits the examples in the same order":
                       orders_new_generator_every_epoch}),
        Part("train_run", "dl4nlp.reproducibility", 3, train_cases, forbidden=_GLOBAL_SEEDING, atol=1e-5, rtol=1e-5,
             gradients=False, given={"epoch_orders": epoch_orders},
             bugs={_GLOBAL_BUG + " (and weights and dropout from the global generator too)": train_global_seed,
                   "one generator shared by the weights, the batch order and the dropout masks: a draw for one "
                   "moves the others": train_one_generator,
                   "the batch order is drawn once: every epoch visits the examples in the same order":
                       train_same_order_every_epoch}),
        Part("find_leaks", "dl4nlp.reproducibility", 2, leak_cases, forbidden=("dl4nlp.reproducibility.split_overlap",),
             bugs={"normalization missing in leak detection: sentences that differ only in case or whitespace are "
                   "the same sentence": leaks_exact,
                   "lowercased but whitespace not collapsed: extra or missing spaces still hide a copy":
                       leaks_lowercased_only,
                   "each leaked sentence listed once: a test sentence that occurs twice is listed twice":
                       leaks_listed_once,
                   "indices into the training split instead of into the test split": leaks_train_indices}),
        Part("clean_split", "dl4nlp.reproducibility", 2, split_cases,
             forbidden=(*_SPLITTERS, "dl4nlp.reproducibility.split_overlap"),
             bugs={"split sentence by sentence: copies of a sentence land on both sides (a leak)":
                       split_sentence_by_sentence,
                   "copies grouped by their exact text only: copies that differ in case or whitespace leak":
                       split_exact_copies_only}),
        Part("mean_and_std", "dl4nlp.reproducibility", 1, statistics_cases, forbidden=_STATISTICS, gradients=False,
             bugs={"population standard deviation (divides by S instead of S - 1)": std_population,
                   "the standard error of the mean (std / sqrt(S)) instead of the standard deviation":
                       std_standard_error}),
    ),
)
