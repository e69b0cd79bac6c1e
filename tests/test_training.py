"""dl4nlp.training: one training step, the epoch loop, the losses, evaluation and parameter counting."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import close, random_lengths, unpad
from torch import Tensor, nn

from dl4nlp import training
from dl4nlp.data import build_vocab, make_loader, pad_batch
from dl4nlp.data.sentiment import make_synthetic_sentiment
from dl4nlp.rnn import ClassifierConfig, SequenceClassifier
from dl4nlp.training import (IGNORE_INDEX, EpochRecord, FitRecord, classification_loss, count_parameters, evaluate,
                             fit, language_model_loss, train_classifier, training_step)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and do not fight other processes for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    """A tiny synthetic set of short sentences (fast to unroll), its vocabulary and loaders."""
    dataset = make_synthetic_sentiment(240, 96, seed=1).filter(lambda example: len(example["sentence"].split()) <= 12)
    vocab = build_vocab(dataset["train"])
    train = make_loader(dataset["train"], vocab, 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    validation = make_loader(dataset["validation"], vocab, 64)
    return vocab, train, validation


def tiny_model(vocab_size: int, seed: int = 0) -> SequenceClassifier:
    torch.manual_seed(seed)  # the embedding and the head draw from the global generator
    config = ClassifierConfig(vocab_size=vocab_size, embedding_dim=8, hidden_size=8)
    return SequenceClassifier(config, generator=torch.Generator().manual_seed(seed))


def test_train_classifier_lowers_the_loss_and_records_every_epoch(tiny) -> None:
    vocab, train, validation = tiny
    model = tiny_model(len(vocab))
    records = train_classifier(model, train, validation, epochs=3, lr=1e-2, device=torch.device("cpu"),
                               progress=False)
    assert [record.epoch for record in records] == [1, 2, 3]
    assert all(isinstance(record, EpochRecord) for record in records)
    assert [field.name for field in dataclasses.fields(EpochRecord)] == [
        "epoch", "train_loss", "train_accuracy", "validation_accuracy", "seconds"]
    assert records[-1].train_loss < records[0].train_loss
    for record in records:
        assert 0 < record.train_loss < 2
        assert 0 <= record.train_accuracy <= 1 and 0 <= record.validation_accuracy <= 1
        assert record.seconds > 0
    assert records[-1].validation_accuracy == evaluate(model, validation)  # measured on the final weights
    assert model.training  # left ready to train on


def test_train_classifier_changes_every_parameter(tiny) -> None:
    vocab, train, validation = tiny
    model = tiny_model(len(vocab))
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    train_classifier(model, train, validation, epochs=1, device="cpu", progress=False)
    for name, parameter in model.named_parameters():
        if name == "embedding.weight":  # the <pad> row gets no gradient (padding_idx) and stays put
            assert torch.equal(parameter[0], before[name][0])
            assert not torch.equal(parameter[2:], before[name][2:])
        else:
            assert not torch.equal(parameter, before[name]), name


def test_train_classifier_is_reproducible(tiny) -> None:
    vocab, _, validation = tiny
    dataset = make_synthetic_sentiment(64, 0, seed=2)["train"]

    def run() -> list[float]:
        loader = make_loader(dataset, vocab, 16, shuffle=True, generator=torch.Generator().manual_seed(5))
        records = train_classifier(tiny_model(len(vocab)), loader, validation, epochs=2, device="cpu",
                                   progress=False)
        return [record.train_loss for record in records]

    assert run() == run()


def test_train_classifier_clips_the_gradient_norm(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    vocab, train, validation = tiny
    limits = []
    real_clip = nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        limits.append(max_norm)
        return real_clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", recording_clip)
    train_classifier(tiny_model(len(vocab)), train, validation, epochs=1, clip=0.25, device="cpu", progress=False)
    assert limits == [0.25] * len(train)
    limits.clear()
    train_classifier(tiny_model(len(vocab)), train, validation, epochs=1, clip=None, device="cpu", progress=False)
    assert limits == []


def test_train_classifier_progress_bar(tiny, capsys: pytest.CaptureFixture[str]) -> None:
    vocab, train, validation = tiny
    train_classifier(tiny_model(len(vocab)), train, validation, epochs=1, device="cpu", progress=False)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    train_classifier(tiny_model(len(vocab)), train, validation, epochs=1, device="cpu", progress=True)
    shown = capsys.readouterr()
    assert shown.out == "" and "epochs" in shown.err and "1/1" in shown.err


def test_train_classifier_edge_cases(tiny) -> None:
    vocab, train, validation = tiny
    assert train_classifier(tiny_model(len(vocab)), train, validation, epochs=0, device="cpu", progress=False) == []
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(tiny_model(len(vocab)), train, validation, epochs=-1, progress=False)
    with pytest.raises(ValueError, match="no examples"):
        train_classifier(tiny_model(len(vocab)), [], validation, epochs=1, device="cpu", progress=False)


def test_train_classifier_uses_the_default_device(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    vocab, train, validation = tiny
    asked = []

    def cpu() -> torch.device:
        asked.append(True)
        return torch.device("cpu")

    monkeypatch.setattr(training, "get_device", cpu)
    model = tiny_model(len(vocab))
    train_classifier(model, train, validation, epochs=1, progress=False)
    assert asked == [True]
    assert all(parameter.device.type == "cpu" for parameter in model.parameters())


# --- training_step ----------------------------------------------------------------------


def stale_gradients(model: nn.Module, seed: int) -> None:
    """Leave a gradient on every parameter, as an earlier backward pass (or a forgotten zero_grad) would."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        parameter.grad = torch.randn(parameter.shape, generator=generator) * 10


def hand_written_step(model: nn.Module, batch, optimizer: torch.optim.Optimizer, clip: float | None) -> float:
    optimizer.zero_grad()
    tokens, lengths, labels = batch
    loss = F.cross_entropy(model(tokens, lengths), labels)
    loss.backward()
    if clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("optimizer_class", [torch.optim.SGD, torch.optim.Adam])
@pytest.mark.parametrize("clip", [0.05, None])
@pytest.mark.parametrize("stale", [False, True])
def test_training_step_is_the_hand_written_step(tiny, optimizer_class, clip, stale) -> None:
    vocab, train, _ = tiny
    batch = next(iter(train))
    ours, theirs = tiny_model(len(vocab)), tiny_model(len(vocab))
    if stale:  # a step that forgets optimizer.zero_grad() adds these to the new gradients
        stale_gradients(ours, seed=1)
        stale_gradients(theirs, seed=1)
    ours_optimizer = optimizer_class(ours.parameters(), lr=0.1)
    theirs_optimizer = optimizer_class(theirs.parameters(), lr=0.1)
    for _ in range(2):  # the second step also starts from the first step's gradients
        loss = training_step(ours, batch, classification_loss, ours_optimizer, clip=clip)
        assert loss == hand_written_step(theirs, batch, theirs_optimizer, clip)
    for (name, parameter), expected in zip(ours.named_parameters(), theirs.parameters()):
        assert close(parameter, expected, atol=1e-7), name
        assert close(parameter.grad, expected.grad, atol=1e-7), name


def total_norm(model: nn.Module) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])))


def test_training_step_clips_the_gradient_norm(tiny) -> None:
    vocab, train, _ = tiny
    batch = next(iter(train))

    def big_loss(model: nn.Module, batch) -> Tensor:  # large gradients, so that clipping has work to do
        return 1000 * classification_loss(model, batch)

    unclipped = tiny_model(len(vocab))
    training_step(unclipped, batch, big_loss, torch.optim.SGD(unclipped.parameters(), lr=0.0), clip=None)
    assert total_norm(unclipped) > 10
    clipped = tiny_model(len(vocab))
    training_step(clipped, batch, big_loss, torch.optim.SGD(clipped.parameters(), lr=0.0), clip=0.5)
    assert total_norm(clipped) == pytest.approx(0.5, rel=1e-4)  # bounded, and scaled rather than cut
    scale = 0.5 / total_norm(unclipped)
    for ours, full in zip(clipped.parameters(), unclipped.parameters()):
        assert close(ours.grad, full.grad * scale, atol=1e-6)  # same direction
    moved = tiny_model(len(vocab))
    before = [parameter.detach().clone() for parameter in moved.parameters()]
    training_step(moved, batch, big_loss, torch.optim.SGD(moved.parameters(), lr=1.0), clip=0.5)
    step = torch.cat([(after.detach() - old).flatten() for after, old in zip(moved.parameters(), before)])
    assert float(step.norm()) <= 0.5 + 1e-4  # plain SGD with lr 1 moves by the clipped gradient


# --- language_model_loss ----------------------------------------------------------------


class Bigram(nn.Module):
    """A position-wise language model: logits at step t depend on the token at step t only."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab_size, vocab_size, generator=generator))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.table[tokens]  # (B, T, V)


def test_language_model_loss_is_cross_entropy_on_the_next_real_token() -> None:
    model = Bigram(7)
    tokens, lengths = pad_batch([[1, 2, 3, 4, 5], [6, 2], [3], [4, 4, 1]], pad_id=0)  # (4, 5)
    loss = language_model_loss(model, (tokens, lengths))
    logits = model(tokens)
    # by hand, one sequence at a time: predict tokens 1..n-1 from steps 0..n-2
    inputs = torch.cat([logits[b, :len(sequence) - 1] for b, sequence in enumerate(unpad(tokens, lengths))])
    targets = torch.cat([torch.tensor(sequence[1:], dtype=torch.long) for sequence in unpad(tokens, lengths)])
    assert len(targets) == 4 + 1 + 0 + 2
    assert torch.allclose(loss, F.cross_entropy(inputs, targets), atol=1e-6)
    shifted = tokens[:, 1:].masked_fill(torch.arange(1, 5) >= lengths[:, None], IGNORE_INDEX)  # (4, 4)
    assert torch.allclose(loss, F.cross_entropy(logits[:, :-1].transpose(1, 2), shifted, ignore_index=IGNORE_INDEX))


def test_language_model_loss_ignores_padding() -> None:
    model = Bigram(9, seed=3)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 9, (5, 6), generator=generator)
    lengths = random_lengths(5, 6, generator)
    loss = language_model_loss(model, (tokens, lengths))
    garbage = tokens.masked_fill(torch.arange(6) >= lengths[:, None], 8)  # other tokens after each end
    assert torch.equal(language_model_loss(model, (garbage, lengths)), loss)
    full = language_model_loss(model, (tokens, torch.full((5,), 6)))
    assert not torch.allclose(full, loss)  # without lengths the padded steps would count
    (gradient,) = torch.autograd.grad(loss, model.table)
    pad_only = sorted(set(tokens[torch.arange(6) >= lengths[:, None] - 1].tolist())  # steps that predict padding
                      - set(tokens[torch.arange(6) < lengths[:, None] - 1].tolist()))
    for token in pad_only:
        assert torch.equal(gradient[token], torch.zeros(9))


# --- fit --------------------------------------------------------------------------------


def test_fit_trains_a_language_model_with_any_optimizer_and_validation() -> None:
    torch.manual_seed(0)
    sequence = [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]
    batches = [pad_batch([sequence, sequence[:5]]) for _ in range(4)]
    model = Bigram(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    validated = []

    def validate(model: nn.Module) -> float:
        validated.append(model.training)
        return language_model_loss(model, batches[0]).item()

    records = fit(model, batches, language_model_loss, epochs=3, optimizer=optimizer, validate=validate,
                  device="cpu", progress=False)
    assert [type(record) for record in records] == [FitRecord] * 3 and [r.epoch for r in records] == [1, 2, 3]
    assert validated == [True] * 3 and records[-1].validation == language_model_loss(model, batches[0]).item()
    assert records[-1].train_loss < records[0].train_loss < math.log(8) + 1
    assert all(record.seconds > 0 for record in records)
    assert fit(model, batches, language_model_loss, epochs=1, device="cpu", progress=False)[0].validation is None


def test_fit_stops_on_a_loss_that_is_not_a_number() -> None:
    def broken(model: nn.Module, batch) -> Tensor:
        return model.table.sum() * float("nan")

    with pytest.raises(FloatingPointError, match=r"lr=0.5"):
        fit(Bigram(3), [pad_batch([[1, 2]])], broken, epochs=1, lr=0.5, device="cpu", progress=False)


# --- evaluate -------------------------------------------------------------------------


class FirstTokenParity(nn.Module):
    """Predicts class 1 when the first token id is odd; remembers whether gradients were on."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.grad_enabled: list[bool] = []

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        self.grad_enabled.append(torch.is_grad_enabled() or self.training)
        odd = (tokens[:, 0] % 2).float()  # (B,)
        return self.scale * torch.stack([1 - odd, odd], dim=-1)  # (B, 2)


def test_evaluate_matches_a_hand_count() -> None:
    batches = [
        (torch.tensor([[1, 4], [2, 0], [3, 3]]), torch.tensor([2, 1, 2]), torch.tensor([1, 0, 0])),  # 2 right
        (torch.tensor([[5], [8]]), torch.tensor([1, 1]), torch.tensor([0, 0])),  # 1 right
    ]
    model = FirstTokenParity()
    model.train()
    assert evaluate(model, batches) == pytest.approx(3 / 5)
    assert model.grad_enabled == [False, False]  # eval mode, no gradients
    assert model.training  # the mode it was in is restored
    assert evaluate(model.eval(), batches[1:]) == pytest.approx(1 / 2)
    assert not model.training


def test_evaluate_is_an_accuracy(tiny) -> None:
    vocab, _, validation = tiny
    accuracy = evaluate(tiny_model(len(vocab)), validation)
    assert 0 <= accuracy <= 1
    labels = torch.cat([labels for _, _, labels in validation])
    assert accuracy * len(labels) == pytest.approx(round(accuracy * len(labels)))  # a count over the examples
    with pytest.raises(ValueError, match="no examples"):
        evaluate(FirstTokenParity(), [])


# --- count_parameters -----------------------------------------------------------------


def test_count_parameters_by_hand() -> None:
    assert count_parameters(nn.Linear(3, 4)) == 3 * 4 + 4
    assert count_parameters(nn.Linear(3, 4, bias=False)) == 12
    frozen = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    frozen[0].requires_grad_(False)
    assert count_parameters(frozen) == 4 * 2 + 2
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight  # one (10, 4) matrix used twice counts once
    assert count_parameters(tied) == 40


def test_count_parameters_of_a_sequence_classifier() -> None:
    V, D, H, C = 50, 6, 5, 2
    model = SequenceClassifier(ClassifierConfig(vocab_size=V, embedding_dim=D, hidden_size=H, cell="lstm"))
    lstm_direction = 4 * H * D + 4 * H * H + 2 * 4 * H
    assert count_parameters(model) == V * D + 2 * lstm_direction + (2 * H * C + C)
    reference = nn.LSTM(D, H, bidirectional=True, batch_first=True)
    assert count_parameters(model.encoder) == count_parameters(reference)
