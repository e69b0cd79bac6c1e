"""The training loop every chapter shares: end-to-end training of a classifier.

The common themes of deep learning in one place: a model maps a batch to
scores (logits); a loss (cross-entropy) says how wrong they are; backpropagation
gives the gradient of the loss with respect to every parameter; an optimizer
(Adam) takes a step against it. The hyperparameters are the learning rate, the
number of epochs, the batch size (chosen by the loader) and the gradient-norm
clip. After every epoch the model is measured on held-out validation data, the
honest estimate of how it does on sentences it has not seen.

A model here is any `nn.Module` called as ``model(tokens, lengths)`` with
tokens (B, T) and lengths (B,) that returns logits (B, C); a loader yields
(tokens (B, T), lengths (B,), labels (B,)), as `dl4nlp.data.make_loader` does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from dl4nlp.runtime import get_device

Batch = tuple[Tensor, Tensor, Tensor]  # tokens (B, T), lengths (B,), labels (B,)


@dataclass
class EpochRecord:
    """What one epoch of `train_classifier` measured.

    train_loss: mean cross-entropy over the epoch's training examples (while the model changed);
    train_accuracy: the fraction of them classified correctly, over the same pass;
    validation_accuracy: `evaluate` on the validation loader after the epoch;
    seconds: wall-clock time of the epoch, training and validation.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    validation_accuracy: float
    seconds: float


def _model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (cpu for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def evaluate(model: nn.Module, loader: Iterable[Batch], device: torch.device | None = None) -> float:
    """Accuracy of a classifier: the fraction of examples whose highest logit is the label.

    Runs in eval mode (no dropout) without gradients, then puts the model back in the
    mode it was in.

    Args: model(tokens (B, T), lengths (B,)) -> logits (B, C); loader of (tokens, lengths,
      labels); device for the batches, by default the device the model's parameters are on.
    Returns: accuracy in [0, 1].
    """
    device = _model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for tokens, lengths, labels in loader:
            logits = model(tokens.to(device), lengths.to(device))  # (B, C)
            correct += int((logits.argmax(dim=-1) == labels.to(device)).sum())
            total += len(labels)
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the loader yielded no examples")
    return correct / total


def train_classifier(model: nn.Module, train_loader: Iterable[Batch], validation_loader: Iterable[Batch], *,
                     epochs: int, lr: float = 1e-3, device: torch.device | None = None,
                     clip: float | None = 1.0, progress: bool = True) -> list[EpochRecord]:
    """Train a classifier end to end with Adam on the cross-entropy loss.

    Each step: logits = model(tokens, lengths); loss = cross_entropy(logits, labels);
    backpropagate; scale the gradients down so their joint norm is at most `clip`;
    take an Adam step. The model is moved to `device` and trained in place.

    Args: model(tokens (B, T), lengths (B,)) -> logits (B, C); train_loader and
      validation_loader yield (tokens (B, T), lengths (B,), labels (B,)); epochs, passes
      over train_loader; lr, Adam's learning rate; device, by default
      `dl4nlp.runtime.get_device()`; clip, the largest gradient norm (None: no clipping);
      progress, show a tqdm bar over epochs.
    Returns: one EpochRecord per epoch.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    device = get_device() if device is None else torch.device(device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    records: list[EpochRecord] = []
    bar = tqdm(range(1, epochs + 1), desc="epochs", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        loss_sum, correct, total = 0.0, 0, 0
        for tokens, lengths, labels in train_loader:
            tokens, lengths, labels = tokens.to(device), lengths.to(device), labels.to(device)
            logits = model(tokens, lengths)  # (B, C)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(dim=-1) == labels).sum())
            total += len(labels)
        if total == 0:
            raise ValueError("train_classifier: the training loader yielded no examples")
        validation_accuracy = evaluate(model, validation_loader, device)
        record = EpochRecord(epoch, loss_sum / total, correct / total, validation_accuracy,
                             time.perf_counter() - start)
        if not math.isfinite(record.train_loss):
            raise FloatingPointError(f"the training loss became {record.train_loss} in epoch {epoch}; "
                                     f"try a smaller learning rate (lr={lr})")
        records.append(record)
        bar.set_postfix(loss=f"{record.train_loss:.3f}", train=f"{record.train_accuracy:.3f}",
                        validation=f"{validation_accuracy:.3f}")
    return records


def count_parameters(model: nn.Module) -> int:
    """The number of trainable numbers in a model (parameters with requires_grad, shared ones once)."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
