"""dl4nlp.training: the shared training loop, evaluation and parameter counting."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

from dl4nlp import training
from dl4nlp.data import build_vocab, make_loader
from dl4nlp.data.sentiment import make_synthetic_sentiment
from dl4nlp.rnn import ClassifierConfig, SequenceClassifier
from dl4nlp.training import EpochRecord, count_parameters, evaluate, train_classifier


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
