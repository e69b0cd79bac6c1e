"""Training loops every chapter shares: one step, an epoch loop, and the losses they minimise.

The common themes of deep learning in one place: a model maps a batch to
scores (logits); a loss (cross-entropy) says how wrong they are; backpropagation
gives the gradient of the loss with respect to every parameter; an optimizer
(Adam) takes a step against it. The hyperparameters are the learning rate, the
number of epochs, the batch size (chosen by the loader) and the gradient-norm
clip. After every epoch the model is measured on held-out validation data, the
honest estimate of how it does on examples it has not seen.

The pieces, each a plain function:

- a loss function ``loss_fn(model, batch) -> loss`` (a scalar tensor) says what is
  learned: `classification_loss` (a sentence classifier, this chapter),
  `language_model_loss` (next-token prediction, GPT), `tagging_loss` (an output at every
  position, the attention chapter's sequence tasks); later chapters add theirs
  (masked-LM pre-training, finetuning) as functions of the same shape;
- `training_step` takes one optimizer step on one batch;
- `fit` runs the epochs: `training_step` over the loader, then an optional
  validation, with a tqdm bar;
- `train_classifier` is `fit` with `classification_loss` and accuracy, as the RNN
  chapter uses it.

A batch is a tuple of tensors whose first is tokens (B, T), as `dl4nlp.data.make_loader`
yields them: (tokens (B, T), lengths (B,), labels (B,)). A classifier is any
`nn.Module` called as ``model(tokens, lengths)`` that returns logits (B, C); a
language model is called as ``model(tokens)`` and returns logits (B, T, V).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from dl4nlp.runtime import get_device

Batch = tuple[Tensor, ...]  # tokens (B, T) first; for a classifier (tokens, lengths (B,), labels (B,))
LossFunction = Callable[[nn.Module, Batch], Tensor]  # loss_fn(model, batch) -> scalar loss
IGNORE_INDEX = -100  # a target that F.cross_entropy skips: padding


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


# --- losses: what a model learns -------------------------------------------------------


def classification_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Cross-entropy of a classifier's logits against the labels.

    Args: model(tokens (B, T), lengths (B,)) -> logits (B, C); batch (tokens, lengths, labels (B,)).
    Returns: the mean loss over the batch, a scalar tensor.
    """
    tokens, lengths, labels = batch
    logits = model(tokens, lengths)  # (B, C)
    return F.cross_entropy(logits, labels)


def language_model_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Next-token cross-entropy: the logits at step t predict the token at step t + 1.

    Targets are the tokens shifted left by one; a target at a padded step (t + 1 >= lengths[b])
    is IGNORE_INDEX, so padding counts neither in the loss nor in the mean.

    Args: model(tokens (B, T)) -> logits (B, T, V); batch (tokens (B, T), lengths (B,), ...).
    Returns: the mean loss over the real next tokens, a scalar tensor.
    Matches: F.cross_entropy(logits[:, :-1] over V, tokens[:, 1:], ignore_index) on the real tokens.
    """
    tokens, lengths = batch[0], batch[1]
    logits = model(tokens)  # (B, T, V)
    B, T, V = logits.shape
    real = torch.arange(T, device=tokens.device) < lengths.to(tokens.device)[:, None]  # (B, T)
    targets = tokens[:, 1:].masked_fill(~real[:, 1:], IGNORE_INDEX)  # (B, T - 1)
    return F.cross_entropy(logits[:, :-1].reshape(B * (T - 1), V), targets.reshape(B * (T - 1)),
                           ignore_index=IGNORE_INDEX)


def tagging_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Cross-entropy at every position: the logits at step t predict targets[:, t].

    Args: model(tokens (B, T), lengths (B,)) -> logits (B, T, V); batch (tokens, lengths,
      targets (B, T)) with IGNORE_INDEX at padded positions, as `dl4nlp.data.sequences` yields.
    Returns: the mean loss over the real positions, a scalar tensor.
    """
    tokens, lengths, targets = batch
    logits = model(tokens, lengths)  # (B, T, V)
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index=IGNORE_INDEX)


# --- one step, many epochs ----------------------------------------------------------------


def training_step(model: nn.Module, batch: Batch, loss_fn: LossFunction, optimizer: torch.optim.Optimizer, *,
                  clip: float | None = 1.0, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                  scaler: torch.amp.GradScaler | None = None) -> float:
    """One optimizer step on one batch: forget old gradients, compute the loss, backpropagate,
    scale the gradients down so their joint norm is at most `clip`, step, and step the
    learning-rate schedule (once per batch, as warmup schedules count steps).

    Args: model; batch, on the model's device; loss_fn(model, batch) -> scalar loss; optimizer over
      the model's parameters; clip, the largest gradient norm (None: no clipping); scheduler, e.g.
      the one `dl4nlp.finetune.optimizer_and_schedule` returns, or None; scaler, a
      torch.amp.GradScaler for mixed precision on a GPU (the loss is then computed under autocast
      in float16), or None.
    Returns: the loss before the step, as a float.
    """
    optimizer.zero_grad()
    if scaler is None:
        loss = loss_fn(model, batch)
        loss.backward()
    else:
        with torch.autocast(batch[0].device.type, dtype=torch.float16):
            loss = loss_fn(model, batch)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # true gradients, for the clip
    if clip is not None:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)  # skipped if the float16 gradients overflowed
        scaler.update()
    if scheduler is not None:
        scheduler.step()
    return loss.item()


@dataclass
class FitRecord:
    """What one epoch of `fit` measured.

    train_loss: mean loss over the epoch's batches, each weighted by its size B (while the model changed);
    validation: what `validate` returned after the epoch (None without it);
    seconds: wall-clock time of the epoch, training and validation.
    """

    epoch: int
    train_loss: float
    validation: float | None
    seconds: float


def fit(model: nn.Module, train_loader: Iterable[Batch], loss_fn: LossFunction, *, epochs: int,
        optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3,
        validate: Callable[[nn.Module], float] | None = None, clip: float | None = 1.0,
        device: torch.device | str | None = None, progress: bool = True,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, mixed_precision: bool = False,
        checkpoint: str | Path | None = None, keep_best: bool = False, seed: int | None = None) -> list[FitRecord]:
    """Train a model for some epochs: `training_step` on every batch, then `validate`.

    The model is moved to `device` and trained in place, in train mode; every batch is
    moved to `device` too.

    Args: model; train_loader yields batches, tuples of tensors; loss_fn(model, batch) -> loss,
      e.g. `classification_loss`; epochs, passes over train_loader; optimizer over the model's
      parameters, by default Adam with learning rate `lr`; validate(model) -> a number measured
      after every epoch, higher is better (e.g. accuracy on held-out data), or None; clip, the largest
      gradient norm (None: no clipping); device, by default `dl4nlp.runtime.get_device()`; progress,
      show a tqdm bar over epochs;
      scheduler, stepped after every optimizer step (e.g. linear warmup and decay), or None;
      mixed_precision, compute the loss in float16 with a gradient scaler on a CUDA device (ignored on
      the CPU);
      checkpoint, a file: after every epoch the whole training state (model, optimizer, scheduler,
      scaler, records, best weights, random state and the loader's shuffling) is written to it, and a run
      that finds it resumes
      after its last epoch, so a Colab session that disconnects loses at most one epoch;
      keep_best, with `validate`: load the weights of the epoch with the highest validation at the end;
      seed, seeds torch's global random numbers (dropout) before training, or None.
    Returns: one FitRecord per epoch (those of a resumed run included).
    Raises: ValueError if epochs < 0, the loader is empty, or the checkpoint belongs to another model;
      FloatingPointError if the loss stops being a finite number.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if seed is not None:
        torch.manual_seed(seed)
    device = get_device() if device is None else torch.device(device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr) if optimizer is None else optimizer
    scaler = torch.amp.GradScaler("cuda") if mixed_precision and device.type == "cuda" else None
    records: list[FitRecord] = []
    best: tuple[float, dict[str, Tensor]] | None = None  # (validation, weights on the CPU)
    if checkpoint is not None and Path(checkpoint).is_file():
        records, best = _resume(Path(checkpoint), model, optimizer, scheduler, scaler, train_loader)
    bar = tqdm(range(len(records) + 1, epochs + 1), desc="epochs", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        loss_sum, total = 0.0, 0
        for batch in train_loader:
            batch = tuple(tensor.to(device) for tensor in batch)
            loss = training_step(model, batch, loss_fn, optimizer, clip=clip, scheduler=scheduler, scaler=scaler)
            loss_sum += loss * len(batch[0])
            total += len(batch[0])
        if total == 0:
            raise ValueError("fit: the training loader yielded no examples")
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"the training loss became {loss_sum / total} in epoch {epoch}; try a smaller "
                                     f"learning rate (lr={optimizer.param_groups[0]['lr']})")
        validation = validate(model) if validate is not None else None
        if keep_best and validation is not None and (best is None or validation > best[0]):
            best = (validation, {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()})
        records.append(FitRecord(epoch, loss_sum / total, validation, time.perf_counter() - start))
        if checkpoint is not None:
            _save_checkpoint(Path(checkpoint), model, optimizer, scheduler, scaler, records, best, train_loader)
        bar.set_postfix(loss=f"{loss_sum / total:.3f}",
                        **({} if validation is None else {"validation": f"{validation:.3f}"}))
    if keep_best and best is not None:
        model.load_state_dict(best[1])
    return records


def _loader_generator(loader: Any) -> torch.Generator | None:
    """The generator a DataLoader shuffles with (its order of examples in the next epoch), if it has one."""
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                     scaler: Any, records: list[FitRecord], best: tuple[float, dict[str, Tensor]] | None,
                     loader: Any) -> None:
    """The training state, written to a new file that then replaces `path` (a crash never leaves half a file)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": None if scheduler is None else scheduler.state_dict(),
             "scaler": None if scaler is None else scaler.state_dict(),
             "records": [asdict(record) for record in records], "best": best,
             "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
             "loader_rng": None if _loader_generator(loader) is None else _loader_generator(loader).get_state()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            scaler: Any, loader: Any) -> tuple[list[FitRecord], tuple[float, dict[str, Tensor]] | None]:
    """Load a checkpoint of `fit` into the model, optimizer, scheduler and scaler; its records and best weights."""
    state = torch.load(path, map_location="cpu", weights_only=False)  # a file this process's fit wrote
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(f"fit: the checkpoint {path} belongs to another model or optimizer ({error}); delete it "
                         f"or pass another checkpoint path to train afresh") from None
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if state.get("loader_rng") is not None and _loader_generator(loader) is not None:
        _loader_generator(loader).set_state(state["loader_rng"])  # the next epoch's order, as if never stopped
    print(f"fit: resumed from {path} after epoch {len(state['records'])}")
    return [FitRecord(**record) for record in state["records"]], state["best"]


def train_classifier(model: nn.Module, train_loader: Iterable[Batch], validation_loader: Iterable[Batch], *,
                     epochs: int, lr: float = 1e-3, device: torch.device | None = None,
                     clip: float | None = 1.0, progress: bool = True) -> list[EpochRecord]:
    """Train a classifier end to end with Adam on the cross-entropy loss: `fit` with
    `classification_loss`, validated by accuracy.

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
    device = get_device() if device is None else torch.device(device)
    counts: list[list[int]] = [[0, 0]]  # per epoch: [classified correctly, seen] in its training pass

    def loss_counting_correct(model: nn.Module, batch: Batch) -> Tensor:
        """`classification_loss`, also counting the right answers of the pass (for train_accuracy)."""
        tokens, lengths, labels = batch
        logits = model(tokens, lengths)  # (B, C)
        counts[-1][0] += int((logits.argmax(dim=-1) == labels).sum())
        counts[-1][1] += len(labels)
        return F.cross_entropy(logits, labels)

    def validate(model: nn.Module) -> float:
        counts.append([0, 0])  # the next epoch counts afresh
        return evaluate(model, validation_loader, device)

    fitted = fit(model, train_loader, loss_counting_correct, epochs=epochs, lr=lr, validate=validate, clip=clip,
                 device=device, progress=progress)
    return [EpochRecord(record.epoch, record.train_loss, right / seen, record.validation, record.seconds)
            for record, (right, seen) in zip(fitted, counts)]


def count_parameters(model: nn.Module) -> int:
    """The number of trainable numbers in a model (parameters with requires_grad, shared ones once)."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
