"""Pretrain and finetune: a pretrained encoder, a small task head on top, and a few epochs of
supervised training that update the head and (some of) the encoder.

    pooled   p = h_[CLS]  (pooling "cls")  or  the mean of h_t over real tokens ("mean")
             or BERT's pooler tanh(W_p h_[CLS] + b_p) ("pooler", Hugging Face's BertForSequenceClassification)
    head     logits = W dropout(p) + b                                   (`classification_head`)
    tokens   logits_t = W dropout(h_t) + b  at every position               (`TokenClassifier`)

The encoder is any BERT that returns ``.last_hidden_state`` (and ``.pooler_output``): the
course's `dl4nlp.bert.BertModel`, or a `transformers` encoder such as ``BertModel`` /
``AutoModel.from_pretrained(...)``. `freeze` chooses what is updated: the head only, the top k
layers as well, or everything. `optimizer_and_schedule` gives AdamW (no weight decay on biases
and LayerNorms) and a linear warmup and decay; `dl4nlp.training.fit` runs the epochs, with mixed
precision on a GPU, checkpoints to resume from and the best epoch kept. `finetune_step` is one
such step written out, and `finetune_classifier` the whole recipe with it; `classification_metrics`
measures accuracy, F1 and the confusion matrix.

Conventions are Hugging Face's: `attention_mask` (B, T) is 1 for a real token and 0 for padding;
token labels are -100 where no prediction is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.attention import Sublayer
from dl4nlp.shapes import check_shapes, optional, shapes

POOLINGS = ("cls", "mean", "pooler")
IGNORE_INDEX = -100  # a token label that counts in no loss (F.cross_entropy's default ignore_index)


def check_pooling(function: str, pooling: str, allowed: tuple[str, ...] = ("cls", "mean")) -> None:
    """ValueError unless `pooling` is one of `allowed`."""
    if pooling not in allowed:
        raise ValueError(f"{function}: pooling must be one of {', '.join(map(repr, allowed))}, got {pooling!r}")


@shapes(hidden_states="B T D", attention_mask=optional("B T"))
def classification_head(hidden_states: Tensor, attention_mask: Tensor | None, dropout: Sublayer,
                        classifier: Sublayer, pooling: str = "cls") -> Tensor:
    """A sentence classifier's head: one vector per sentence from the encoder's outputs, then a linear layer.

        p = h_0 (the [CLS] token, pooling "cls")   or   p = sum_t m_t h_t / sum_t m_t (pooling "mean")
        logits = classifier(dropout(p))

    Args: hidden_states h (B, T, D), the encoder's last_hidden_state; attention_mask m (B, T), 1 for a real
      token and 0 for padding, or None: no padding; dropout, e.g. nn.Dropout(0.1); classifier, D -> C (an
      nn.Linear); pooling, "cls" or "mean".
    Returns: logits (B, C).
    Matches: the head of transformers' BertForSequenceClassification applied to h_[CLS] instead of its pooler
      output (pooling "cls"); sentence-transformers' mean pooling (pooling "mean").
    """
    check_pooling("classification_head", pooling)
    if pooling == "cls":
        pooled = hidden_states[:, 0]  # (B, D): [CLS] is always the first token
    else:
        mask = (torch.ones(hidden_states.shape[:2], device=hidden_states.device) if attention_mask is None
                else attention_mask.to(hidden_states.dtype))  # (B, T)
        pooled = (hidden_states * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)  # (B, D)
    return classifier(dropout(pooled))  # (B, C)


@dataclass(frozen=True)
class ClassifierOutput:
    """What `SequenceClassifier` and `TokenClassifier` return: logits, (B, C) or (B, T, C); loss, the mean
    cross-entropy when labels were given, else None."""

    logits: Tensor
    loss: Tensor | None = None


def _hidden_size(encoder: nn.Module) -> int:
    config = getattr(encoder, "config", None)
    size = getattr(config, "hidden_size", None)
    if not isinstance(size, int):
        raise TypeError(f"the encoder should have a config with hidden_size (a dl4nlp.bert.BertModel or a transformers "
                        f"encoder), got {type(encoder).__name__}")
    return size


def _encode(encoder: nn.Module, input_ids: Tensor, attention_mask: Tensor | None,
            token_type_ids: Tensor | None) -> Any:
    """The encoder's output for ours and Hugging Face's alike (both take these three by name)."""
    return encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


class SequenceClassifier(nn.Module):
    """A pretrained encoder with a classification head: `classification_head` on its outputs.

    Parameters: encoder (the pretrained model, as given), dropout, classifier (nn.Linear(D, num_labels)).
    """

    def __init__(self, encoder: nn.Module, num_labels: int, pooling: str = "cls", dropout: float = 0.1) -> None:
        super().__init__()
        check_pooling("SequenceClassifier", pooling, POOLINGS)
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"SequenceClassifier: num_labels must be an integer of at least 2, got {num_labels!r}")
        self.encoder, self.pooling, self.num_labels = encoder, pooling, num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(_hidden_size(encoder), num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)  # BERT's initialisation
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None) -> ClassifierOutput:
        """Args: input_ids (B, T); attention_mask (B, T), 1 = real token, or None; token_type_ids (B, T) or None;
          labels (B,) in [0, num_labels), or None.
        Returns: `ClassifierOutput` with logits (B, num_labels) and, given labels, the mean cross-entropy.
        """
        encoded = _encode(self.encoder, input_ids, attention_mask, token_type_ids)
        if self.pooling == "pooler":
            logits = self.classifier(self.dropout(encoded.pooler_output))  # (B, C)
        else:
            logits = classification_head(encoded.last_hidden_state, attention_mask, self.dropout, self.classifier,
                                         self.pooling)  # (B, C)
        if labels is None:
            return ClassifierOutput(logits)
        check_shapes("SequenceClassifier", logits=(logits, "B C"), labels=(labels, "B"))
        return ClassifierOutput(logits, F.cross_entropy(logits, labels))


class TokenClassifier(nn.Module):
    """A pretrained encoder with a label for every token (named entities, parts of speech): a linear layer on
    each position's vector. Parameters: encoder, dropout, classifier (nn.Linear(D, num_labels))."""

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
            raise ValueError(f"TokenClassifier: num_labels must be an integer of at least 2, got {num_labels!r}")
        self.encoder, self.num_labels = encoder, num_labels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(_hidden_size(encoder), num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None) -> ClassifierOutput:
        """Args: as `SequenceClassifier.forward`, but labels (B, T), -100 where no label counts (padding, the
          special tokens, the pieces of a word after its first).
        Returns: `ClassifierOutput` with logits (B, T, num_labels) and, given labels, the mean cross-entropy over
          the labelled tokens.
        Matches: transformers' BertForTokenClassification.
        """
        encoded = _encode(self.encoder, input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(encoded.last_hidden_state))  # (B, T, C)
        if labels is None:
            return ClassifierOutput(logits)
        check_shapes("TokenClassifier", logits=(logits, "B T C"), labels=(labels, "B T"))
        return ClassifierOutput(logits, F.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                        ignore_index=IGNORE_INDEX))


# --- what is trained -----------------------------------------------------------------------------


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The Transformer layers of an encoder, bottom to top: ``encoder.encoder.layers`` of the course's BertModel,
    ``encoder.encoder.layer`` of Hugging Face's BERT-like encoders."""
    stack = getattr(encoder, "encoder", None)
    for name in ("layers", "layer"):
        layers = getattr(stack, name, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise TypeError(f"encoder_layers: no list of layers in {type(encoder).__name__} (expected encoder.encoder.layers "
                    f"or encoder.encoder.layer, as in BERT)")


@dataclass(frozen=True)
class Trainable:
    """How many parameters `freeze` left trainable, of how many."""

    trainable: int
    total: int

    def __str__(self) -> str:
        return f"{self.trainable:,} of {self.total:,} parameters trainable ({self.trainable / self.total:.2%})"


def freeze(model: nn.Module, trainable_layers: int | None = 0) -> Trainable:
    """Choose what finetuning updates: the head always; of the encoder, the top `trainable_layers` layers.

        trainable_layers 0: the head only (a frozen feature extractor)
        trainable_layers k: the head and the top k of the encoder's L layers (the embeddings stay frozen)
        trainable_layers None: everything, the embeddings included (full finetuning)

    Frozen parameters get requires_grad False, so they get no gradient and autograd skips their computation
    below the lowest trainable layer; give the optimizer only the trainable ones (`optimizer_and_schedule`).
    The encoder's pooler is trained with the top layer (k >= 1) when the head reads it (pooling "pooler").

    Args: model, a `SequenceClassifier` or `TokenClassifier` (an `.encoder` with `encoder_layers`, and a head);
      trainable_layers, None or an integer from 0 to L.
    Returns: `Trainable`, the numbers of trainable and of all parameters.
    """
    layers = encoder_layers(model.encoder)
    if trainable_layers is not None and (isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int)
                                         or not 0 <= trainable_layers <= len(layers)):
        raise ValueError(f"freeze: trainable_layers must be None or an integer from 0 to {len(layers)} (the "
                         f"encoder's layers), got {trainable_layers!r}")
    for parameter in model.parameters():
        parameter.requires_grad_(trainable_layers is None)
    if trainable_layers is not None:
        top = list(layers)[len(layers) - trainable_layers:] if trainable_layers else []
        pooler = getattr(model.encoder, "pooler", None)
        encoder = set(map(id, model.encoder.parameters()))
        trained = [p for module in top for p in module.parameters()]
        trained += [p for p in model.parameters() if id(p) not in encoder]  # the head
        if trainable_layers and isinstance(pooler, nn.Module) and getattr(model, "pooling", None) == "pooler":
            trained += list(pooler.parameters())
        for parameter in trained:
            parameter.requires_grad_(True)
    return Trainable(sum(p.numel() for p in model.parameters() if p.requires_grad),
                     sum(p.numel() for p in model.parameters()))


def optimizer_and_schedule(model: nn.Module, lr: float, total_steps: int, warmup_ratio: float = 0.1,
                           weight_decay: float = 0.01) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters, and a learning rate that warms up linearly from 0 to `lr` over the
    first warmup_ratio * total_steps steps, then decays linearly to 0 at total_steps (BERT's recipe).

    Weight decay (decoupled from the gradient, AdamW's point) applies to the weight matrices only: biases and
    LayerNorm weights are left alone, as in BERT. Step the scheduler after every optimizer step.

    Args: model, after `freeze`; lr, the peak learning rate (2e-5 to 5e-5 for BERT-base); total_steps, the
      number of optimizer steps (epochs * batches per epoch); warmup_ratio in [0, 1); weight_decay.
    Returns: (optimizer, scheduler).
    Matches: torch.optim.AdamW with transformers.get_linear_schedule_with_warmup.
    """
    from transformers import get_linear_schedule_with_warmup

    if total_steps < 1 or not 0 <= warmup_ratio < 1:
        raise ValueError(f"optimizer_and_schedule: total_steps must be >= 1 and warmup_ratio in [0, 1), got "
                         f"{total_steps} and {warmup_ratio}")
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 else decay).append(parameter)  # biases and norms are vectors
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def finetune_step(model: nn.Module, batch: Mapping[str, Tensor], optimizer: torch.optim.Optimizer,
                  scheduler: torch.optim.lr_scheduler.LRScheduler, clip: float = 1.0) -> float:
    """One step of finetuning on one batch, in BERT's order:

        forget the old gradients; loss = model(**batch).loss; backpropagate; scale the gradients so that the
        norm of all trainable ones together is at most clip; optimizer step; scheduler step (every batch)

    Args: model, returns an output with .loss when the batch has labels (a `SequenceClassifier`); batch, a
      dict of tensors on the model's device (input_ids, attention_mask, labels, ...), passed by name;
      optimizer over the trainable parameters; scheduler, stepped once per optimizer step; clip > 0.
    Returns: the loss before the step, a float.
    Matches: one iteration of `dl4nlp.training.fit` with this scheduler, and of transformers' Trainer.
    """
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    optimizer.step()
    scheduler.step()  # per step: the warmup counts steps, not epochs
    return loss.item()


def batch_loss(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    """The loss of a classifier on a batch (input_ids, attention_mask, labels): `fit`'s loss function for
    `SequenceClassifier` and `TokenClassifier`, with loaders from `dl4nlp.finetune.encode_dataset`."""
    input_ids, attention_mask, labels = batch
    return model(input_ids, attention_mask, labels=labels).loss


def finetune_classifier(model: nn.Module, train: torch.utils.data.TensorDataset,
                        validation: torch.utils.data.TensorDataset, epochs: int = 3, lr: float = 5e-5,
                        batch_size: int = 32, warmup_ratio: float = 0.1, seed: int = 0) -> Metrics:
    """Finetune a classifier with `finetune_step`, then measure it on the validation set: the whole recipe.

        optimizer, scheduler = optimizer_and_schedule(model, lr, epochs * batches per epoch, warmup_ratio)
        every epoch: the training examples shuffled (by `seed`) into batches; one `finetune_step` per batch
        then: the model in eval mode, predictions = argmax of the logits for every validation example

    Args: model, a `SequenceClassifier` (after `freeze`), on any device; train and validation, TensorDatasets of
      (input_ids, attention_mask, labels) as `encode_dataset` makes them; epochs; lr, the peak learning rate;
      batch_size; warmup_ratio; seed, the order of the training batches.
    Returns: `classification_metrics` of the validation predictions (F1 of class 1 for two classes).
    """
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer, scheduler = optimizer_and_schedule(model, lr, epochs * len(loader), warmup_ratio)
    model.train()
    for _ in range(epochs):
        for input_ids, attention_mask, labels in loader:
            batch = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device),
                     "labels": labels.to(device)}
            finetune_step(model, batch, optimizer, scheduler)
    model.eval()
    predictions = []
    with torch.no_grad():
        for input_ids, attention_mask, _ in torch.utils.data.DataLoader(validation, batch_size=256):
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            predictions.append(logits.argmax(-1).cpu())  # (B,)
    model.train()
    return classification_metrics(torch.cat(predictions), validation.tensors[2].cpu(), model.num_labels)


# --- measuring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """accuracy; f1 of the positive class (binary) or the mean F1 over classes (macro, more than two);
    confusion (C, C): row = true class, column = predicted class."""

    accuracy: float
    f1: float
    confusion: Tensor


@shapes(predictions="N", labels="N")
def classification_metrics(predictions: Tensor, labels: Tensor, num_labels: int = 2, positive: int = 1) -> Metrics:
    """Accuracy, F1 and the confusion matrix of predicted against true labels.

        confusion[i, j] = number of examples of class i predicted as j
        precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 precision recall / (precision + recall)

    With two classes F1 is that of the `positive` class (the rare or interesting one: "sarcastic"); with more,
    the mean of every class's F1 (macro). A class never predicted and never present has F1 0.

    Args: predictions (N,) and labels (N,), class ids in [0, num_labels); num_labels C; positive, the class
      whose F1 a binary task reports.
    Returns: `Metrics`.
    Matches: sklearn.metrics.accuracy_score, f1_score(average="binary", pos_label=positive, zero_division=0) or
      f1_score(average="macro", zero_division=0), and confusion_matrix(labels=range(C)).
    """
    if predictions.numel() == 0:
        raise ValueError("classification_metrics: no examples")
    for name, values in (("predictions", predictions), ("labels", labels)):
        if values.is_floating_point() or bool(((values < 0) | (values >= num_labels)).any()):
            raise ValueError(f"classification_metrics: {name} should be class ids in [0, {num_labels}); pass "
                             f"logits.argmax(-1), not the logits")
    confusion = torch.bincount(labels.long().cpu() * num_labels + predictions.long().cpu(),
                               minlength=num_labels ** 2).view(num_labels, num_labels)  # (C, C)
    true_positives = confusion.diag().double()  # (C,)
    predicted, actual = confusion.sum(dim=0).double(), confusion.sum(dim=1).double()  # (C,), (C,)
    denominator = predicted + actual  # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + actual)
    f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), 0.0)  # (C,)
    accuracy = float(true_positives.sum() / len(labels))
    return Metrics(accuracy, float(f1[positive] if num_labels == 2 else f1.mean()), confusion)


def predict(model: nn.Module, loader: Iterable[tuple[Tensor, ...]], device: torch.device | None = None
            ) -> tuple[Tensor, Tensor]:
    """(predictions (N,), labels (N,)) of a classifier over a loader of (input_ids, attention_mask, labels), in
    eval mode without gradients; the model's mode is restored."""
    device = next(model.parameters()).device if device is None else device
    was_training = model.training
    model.eval()
    predictions, labels = [], []
    with torch.no_grad():
        for input_ids, attention_mask, gold in loader:
            logits = model(input_ids.to(device), attention_mask.to(device)).logits
            predictions.append(logits.argmax(-1).cpu())
            labels.append(gold.cpu())
    model.train(was_training)
    return torch.cat(predictions), torch.cat(labels)


def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, ...]], num_labels: int = 2,
             positive: int = 1) -> Metrics:
    """`classification_metrics` of a classifier's predictions over a loader of (input_ids, attention_mask,
    labels)."""
    predictions, labels = predict(model, loader)
    return classification_metrics(predictions, labels, num_labels, positive)


def encode_dataset(tokenizer: Any, sentences: Iterable[str], labels: Iterable[int], max_length: int = 128
                   ) -> torch.utils.data.TensorDataset:
    """(input_ids, attention_mask, labels) for a classifier: sentences tokenized with [CLS] ... [SEP], padded
    to the longest (at most max_length tokens). sentences and labels: lists, or columns of a datasets.Dataset."""
    sentences, labels = list(sentences), list(labels)
    if len(sentences) != len(labels) or not sentences:
        raise ValueError(f"encode_dataset: give as many labels as sentences, at least one (got {len(sentences)} "
                         f"sentences and {len(labels)} labels)")
    encoded = tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return torch.utils.data.TensorDataset(encoded["input_ids"], encoded["attention_mask"], torch.tensor(labels))


def trim_padding(batch: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """Collate (input_ids, attention_mask, label) examples and cut the padding columns no sentence of the batch
    needs: a batch of short sentences is not computed at the length of the longest in the data set."""
    input_ids, attention_mask, labels = torch.utils.data.default_collate(batch)  # (B, T), (B, T), (B,)
    length = int(attention_mask.sum(dim=1).max())
    return input_ids[:, :length], attention_mask[:, :length], labels
