"""Exercises of the finetuning assignment: the classification head over [CLS], what `freeze` leaves
trainable, one finetuning step, the metrics, and the whole recipe measured by its accuracy.

`classification_head` is compared with the reference, outputs and gradients, on padded batches
(so that pooling the last token, or averaging over the padding, shows) with a dropout whose mask
is fixed when the case is drawn. `freeze` and `finetune_step` change their arguments instead of
returning a result, so the grader also compares what they leave behind (`Part.effects`): which
parameters are trainable; and after a step, the parameters, the trainable ones' gradients, the
learning rate and the scheduler's step count, besides the loss returned. A step's case is a small
BERT classifier in the middle of a run: the optimizer has taken a step or more (its moments are
not zero, so that clipping shows even through Adam), the learning rate is still warming up or
decaying (so that the scheduler's step shows), the lower layers are frozen with the gradients of an
earlier backward pass still on them, and every trainable parameter carries a stale gradient (so that
a step that does not forget them, or that clips the frozen ones along, shows). Dropout is off in
these models, so that two calls compute the same thing.

`finetune_classifier` trains a tiny BERT from scratch on a small embedded sarcasm set for a few
seconds and is graded by its validation accuracy (`Part.check`, with `THRESHOLD`): while it runs,
the notebook's `finetune_step` and `classification_metrics` are the grader's own (`Part.given`),
so that a bug there costs points only once.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import random
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.bert import BertConfig, BertModel
from dl4nlp.exercises import Assignment, Case, Part, describe, draw_lengths, normal
from dl4nlp.exercises.attention import FixedDropout
from dl4nlp.finetune import ClassifierOutput, SequenceClassifier, freeze, optimizer_and_schedule

# --- what the cases are built from ----------------------------------------------------------


class CaseClassifier(SequenceClassifier):
    """`SequenceClassifier`'s parameters, with a forward pass of the grader's own: the graded parts get models that
    never call the graded `classification_head` (switched off while grading; a student's bug there must not cost
    another part its points)."""

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None) -> ClassifierOutput:
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        pooled = encoded.pooler_output if self.pooling == "pooler" else encoded.last_hidden_state[:, 0]  # (B, D)
        logits = self.classifier(self.dropout(pooled))  # (B, C)
        return ClassifierOutput(logits, None if labels is None else F.cross_entropy(logits, labels))


class StaleGradients(CaseClassifier):
    """A `CaseClassifier` whose parameters' gradients survive copy.deepcopy and pickling (a Parameter's
    .grad survives neither): the stale gradients that a finetuning step must forget before its backward pass."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["stale_gradients"] = {name: parameter.grad.detach().clone()
                                    for name, parameter in self.named_parameters() if parameter.grad is not None}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        stale = state.pop("stale_gradients", {})
        super().__setstate__(state)
        for name, parameter in self.named_parameters():
            if name in stale:
                parameter.grad = stale[name].clone()


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(2 ** 62, (1,), generator=generator))


def tiny_config(generator: torch.Generator, V: int, D: int, H: int, L: int, P: int = 16) -> BertConfig:
    """A BERT of random tiny sizes without dropout (two calls compute the same)."""
    return BertConfig.tiny(vocab_size=V, hidden_size=D, num_attention_heads=H, num_hidden_layers=L,
                           intermediate_size=2 * D, max_position_embeddings=P, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)


def huggingface_encoder(config: BertConfig, generator: torch.Generator) -> nn.Module:
    """transformers' BertModel with the same sizes and random weights (its layers are encoder.encoder.layer)."""
    import transformers

    torch.manual_seed(_seed(generator))  # transformers initializes from the global random state
    return transformers.BertModel(transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0))


def random_batch(generator: torch.Generator, B: int, T: int, V: int, C: int) -> dict[str, Tensor]:
    """input_ids with [CLS] = 1 first and padding 0 after each row's length, attention_mask, labels."""
    lengths = draw_lengths(generator, B, T).clamp(min=2)
    attention_mask = (torch.arange(T) < lengths[:, None]).long()  # (B, T)
    input_ids = torch.randint(3, V, (B, T), generator=generator) * attention_mask
    input_ids[:, 0] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "labels": torch.randint(0, C, (B,), generator=generator)}


# --- classification_head -----------------------------------------------------------------------


def _linear(D: int, C: int, generator: torch.Generator) -> nn.Linear:
    classifier = nn.Linear(D, C)
    with torch.no_grad():
        classifier.weight.copy_(normal(generator, C, D, scale=1 / math.sqrt(D)))
        classifier.bias.copy_(normal(generator, C, scale=0.5))
    return classifier


def head_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, D, C, pooling, padded in ((3, 5, 6, 2, "cls", True), (2, 6, 8, 3, "mean", True),
                                        (1, 4, 4, 4, "cls", False), (4, 6, 6, 2, "mean", True),
                                        (2, 3, 5, 5, "mean", False)):
        hidden_states = normal(generator, B, T, D)
        attention_mask = (torch.arange(T) < draw_lengths(generator, B, T)[:, None]).long() if padded else None
        drawn.append(Case((hidden_states, attention_mask, FixedDropout((D,), 0.2, generator),
                           _linear(D, C, generator), pooling),
                          f"hidden_states ({B}, {T}, {D}), {C} labels, pooling {pooling!r}, "
                          + ("attention_mask with padding" if padded else "attention_mask None")))
    return drawn


# --- freeze --------------------------------------------------------------------------------------


def freeze_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for L, trainable_layers, pooling, before, ours in ((3, 1, "cls", None, True), (4, 2, "pooler", None, True),
                                                       (2, 0, "cls", None, True), (3, None, "cls", 0, True),
                                                       (3, 3, "pooler", 1, True), (2, 1, "cls", None, False)):
        config = tiny_config(generator, 20, 8, 2, L)
        torch.manual_seed(_seed(generator))  # the head's initialization
        encoder = (BertModel(config, generator=torch.Generator().manual_seed(_seed(generator))) if ours
                   else huggingface_encoder(config, generator))
        model = CaseClassifier(encoder, 2, pooling, dropout=0.0)
        if before is not None:  # frozen earlier: freeze must also turn parameters back on
            freeze(model, before)
        drawn.append(Case((model, trainable_layers),
                          f"a SequenceClassifier on {'the course' if ours else 'transformers'}' BertModel with {L} "
                          f"layers, pooling {pooling!r}, trainable_layers={trainable_layers}"
                          + (f", after freeze(model, {before})" if before is not None else "")))
    return drawn


def trainable_names(args: tuple[Any, ...]) -> tuple[str, ...]:
    """What `freeze` leaves behind: the names of the model's parameters with requires_grad True."""
    return tuple(name for name, parameter in args[0].named_parameters() if parameter.requires_grad)


# --- finetune_step -------------------------------------------------------------------------------


def step_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for L, trainable_layers, steps, total_steps, warmup_ratio, C, lr in (
            (2, 1, 1, 8, 0.25, 2, 0.02), (2, None, 2, 6, 0.0, 3, 0.01), (3, 2, 3, 10, 0.5, 2, 0.03),
            (2, 0, 2, 5, 0.2, 4, 0.02)):
        V, D, B, T = 24, 8, 4, 6
        config = tiny_config(generator, V, D, 2, L)
        torch.manual_seed(_seed(generator))
        model = StaleGradients(BertModel(config, generator=torch.Generator().manual_seed(_seed(generator))), C,
                               dropout=0.0)
        model(**random_batch(generator, B, T, V, C)).loss.backward()  # gradients of an earlier pass, everywhere
        freeze(model, trainable_layers)  # the frozen parameters keep theirs
        optimizer, scheduler = optimizer_and_schedule(model, lr, total_steps, warmup_ratio, weight_decay=0.01)
        trainable = [p for p in model.parameters() if p.requires_grad]
        for _ in range(steps):  # a run under way: Adam's moments, a learning rate that changes every step
            optimizer.zero_grad()
            model(**random_batch(generator, B, T, V, C)).loss.backward()
            nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
        model(**random_batch(generator, B, T, V, C)).loss.backward()  # stale gradients on the trainable ones
        batch = random_batch(generator, B, T, V, C)
        probe = copy.deepcopy(model)  # the norm this batch's gradients will have
        for parameter in probe.parameters():
            parameter.grad = None
        probe(**batch).loss.backward()
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in probe.parameters() if p.grad is not None]))
        clip = float(f"{0.5 * float(norm):.3g}")  # half of it: clipping always changes the step
        drawn.append(Case((model, batch, optimizer, scheduler, clip),
                          f"a SequenceClassifier on a BertModel with {L} layers, trainable_layers={trainable_layers}, "
                          f"{C} labels, batch ({B}, {T}) with padding, after {steps} steps of {total_steps} "
                          f"(warmup_ratio {warmup_ratio}, lr {lr}), clip {clip}, stale gradients on every parameter"))
    return drawn


def step_effects(args: tuple[Any, ...]) -> tuple[Tensor, Tensor, Tensor, int]:
    """What a step leaves behind: all parameters (flat), the trainable ones' gradients (flat, 0 for None), the
    learning rate of each parameter group, and the scheduler's step count."""
    model, _, optimizer, scheduler = args[:4]
    parameters = torch.cat([p.detach().flatten() for p in model.parameters()])
    gradients = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).detach().flatten()
                           for p in model.parameters() if p.requires_grad] or [torch.zeros(0)])
    rates = torch.tensor([float(group["lr"]) for group in optimizer.param_groups], dtype=torch.float64)
    return parameters, gradients, rates, int(scheduler.last_epoch)


# --- classification_metrics ----------------------------------------------------------------------


def _telling(predictions: Tensor, labels: Tensor, C: int) -> bool:
    """Whether a case tells the metrics' bugs apart: the classes' F1 all differ, their mean differs from the
    accuracy, and the confusion matrix is not symmetric."""
    confusion = torch.bincount(labels * C + predictions, minlength=C * C).view(C, C)
    f1 = 2 * confusion.diag() / (confusion.sum(0) + confusion.sum(1)).clamp(min=1)
    accuracy = confusion.diag().sum() / len(labels)
    return (len(set(f1.tolist())) == C and abs(float(f1.mean() - accuracy)) > 1e-3
            and not torch.equal(confusion, confusion.T))


def metrics_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for N, C, positive, never in ((24, 2, 1, None), (17, 2, 0, None), (30, 4, 1, None), (12, 3, 1, 2),
                                  (40, 2, 1, None), (9, 5, 1, 4)):
        while True:  # until the bugs show: the classes' F1 differ from each other and from the accuracy
            labels = torch.randint(0, C, (N,), generator=generator)
            right = torch.rand(N, generator=generator) < 0.6
            predictions = torch.where(right, labels, torch.randint(0, C, (N,), generator=generator))
            if never is not None:  # a class nobody predicts and nobody has: its F1 is 0
                labels = labels.masked_fill(labels == never, 0)
                predictions = predictions.masked_fill(predictions == never, 0)
            if _telling(predictions, labels, C):
                break
        drawn.append(Case((predictions, labels, C, positive),
                          f"{N} examples, {C} classes, positive={positive}"
                          + (f", class {never} neither predicted nor present" if never is not None else "")))
    return drawn


# --- finetune_classifier: the accuracy it reaches --------------------------------------------------

# A right answer reaches 0.95 to 1.0 (240 draws), the typical bug 0.48 to 0.53 (tests/test_finetune_assignment.py).
THRESHOLD = 0.85
CHANCE = 0.6  # at most this: no better than guessing from the feeling alone
MARGIN = 0.02  # below the reference's accuracy on a case where the reference falls short of THRESHOLD


def sarcasm_sets(seed: int, num_train: int = 320, num_validation: int = 200, situations: int = 10
                 ) -> tuple[torch.utils.data.TensorDataset, torch.utils.data.TensorDataset, int]:
    """Sentences of the synthetic sarcasm set (`dl4nlp.data.sarcasm`) about `situations` bad and as many good
    situations, the same in both sets (the graded run checks the recipe, not what pretraining knows), as word
    ids: [CLS] = 1, [SEP] = 2, padding 0.
    Returns: train and validation (input_ids, attention_mask, labels), and the vocabulary size."""
    from dl4nlp.data.sarcasm import BAD, GOOD, synthetic_sarcasm_sentence

    rng = random.Random(seed)
    bad, good = tuple(rng.sample(BAD, situations)), tuple(rng.sample(GOOD, situations))
    labels = [i % 2 for i in range(num_train + num_validation)]
    rng.shuffle(labels)
    sentences = [synthetic_sarcasm_sentence(label, rng, bad, good).split() for label in labels]
    vocabulary = {word: index for index, word in enumerate(sorted({w for s in sentences for w in s}), start=3)}
    T = 2 + max(map(len, sentences))
    input_ids = torch.zeros(len(sentences), T, dtype=torch.long)
    for row, words in enumerate(sentences):
        input_ids[row, :len(words) + 2] = torch.tensor([1, *(vocabulary[w] for w in words), 2])
    attention_mask = (input_ids != 0).long()
    label_tensor = torch.tensor(labels)
    split = [slice(0, num_train), slice(num_train, None)]
    train, validation = (torch.utils.data.TensorDataset(input_ids[s], attention_mask[s], label_tensor[s])
                         for s in split)
    return train, validation, len(vocabulary) + 3


def classifier_case(seed: int, head_seed: int, encoder_seed: int) -> Case:
    """A case of `finetune_classifier`: the sets of `sarcasm_sets(seed)`, and a 1-layer BertModel from scratch whose
    weights come from encoder_seed and whose classifier's from head_seed (torch's global generator)."""
    train, validation, V = sarcasm_sets(seed)
    config = BertConfig.tiny(vocab_size=V, hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                             intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)  # no dropout: the same run in every process
    torch.manual_seed(head_seed)
    model = CaseClassifier(BertModel(config, generator=torch.Generator().manual_seed(encoder_seed)), 2, dropout=0.0)
    return Case((model, train, validation, 4, 3e-3, 16, 0.1, seed % 7),
                f"a 1-layer BertModel (D=32, no dropout) from scratch, {len(train)} training and {len(validation)} "
                f"validation sentences of the synthetic sarcasm set (seed {seed}), 4 epochs, lr 3e-3, batch size 16")


def classifier_cases(generator: torch.Generator) -> list[Case]:
    seed = int(torch.randint(1000, (1,), generator=generator))
    head_seed = _seed(generator)
    return [classifier_case(seed, head_seed, _seed(generator))]


class _ByContent:
    """A case of `finetune_classifier` that hashes and compares by what it holds (its model's weights, its data,
    its settings), so that copies of one case share one entry of `_reference_accuracy`'s memory."""

    def __init__(self, case: Case) -> None:
        self.case = case
        model, train, validation, *settings = case.args
        digest = hashlib.sha256(repr(settings).encode())
        for tensor in (*model.state_dict().values(), *train.tensors, *validation.tensors):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.key = digest.hexdigest()

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByContent) and other.key == self.key


@functools.lru_cache(maxsize=4)
def _reference_accuracy(case: _ByContent) -> float:
    """The validation accuracy that the reference `finetune_classifier` reaches on a case. About a second: run
    only when an answer falls short of THRESHOLD, and remembered for the typical bugs that diagnosing it runs next."""
    from dl4nlp.exercises import call
    from dl4nlp.finetune import finetune_classifier

    outcome = call(finetune_classifier, case.case)
    if outcome.error is not None:
        raise RuntimeError(f"the reference finetune_classifier failed on a case: {outcome.error}")
    return float(outcome.output[0])


def check_classifier(case: Case, output: Any) -> str | None:
    """What is wrong with an output of `finetune_classifier`: Metrics(accuracy, f1, confusion) of the validation
    set, with an accuracy of at least THRESHOLD, or, on a case where the reference itself falls short of it, of
    at least the reference's accuracy less MARGIN."""
    validation = case.args[2]
    N = len(validation)
    if not (isinstance(output, tuple) and len(output) == 3):
        return f"returned {describe(output)}, expected Metrics(accuracy, f1, confusion) (classification_metrics)"
    accuracy, _, confusion = output
    if isinstance(accuracy, Tensor) and accuracy.numel() == 1:
        accuracy = float(accuracy.reshape(()))
    if not isinstance(accuracy, (float, int)) or not isinstance(confusion, Tensor) or confusion.shape != (2, 2):
        return "expected Metrics(accuracy, f1, confusion) with a float accuracy and a (2, 2) confusion matrix"
    counted = int(confusion.sum())
    if counted > N:
        return (f"the confusion matrix counts more examples ({counted}) than the validation set has ({N}): measure "
                "the validation set, not the training set")
    if counted < N:
        return (f"the confusion matrix counts only {counted} of the {N} validation examples: collect the "
                "predictions of every validation batch")
    if abs(float(confusion.diag().sum()) / N - accuracy) > 1e-6:
        return "the accuracy does not agree with the confusion matrix"
    if accuracy >= THRESHOLD:
        return None
    # A right answer reaches THRESHOLD on nearly every case; on the rare one where a run stalls (the reference
    # got 73.5% on one draw of a CI run, as if it read the feeling alone), the bar is what the reference
    # reaches there, less MARGIN: no right answer loses its points to the draw.
    bar = min(THRESHOLD, _reference_accuracy(_ByContent(case)) - MARGIN)
    if accuracy >= bar:
        return None
    if accuracy <= CHANCE:
        return (f"validation accuracy {accuracy:.1%}, no better than guessing: did training change the model (one "
                "finetune_step per batch, with a schedule over all the steps of all the epochs, so that the learning "
                "rate stays above 0 until the end)?")
    return (f"validation accuracy {accuracy:.1%} is below {bar:.1%}, which a right answer reaches on this case: are "
            "all the epochs trained, with a schedule over all their steps?")


# --- the grader's own helpers, bound while finetune_classifier runs (Part.given) ---------------------


def given_finetune_step(model, batch, optimizer, scheduler, clip=1.0):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    optimizer.step()
    scheduler.step()
    return loss.item()


def given_classification_metrics(predictions, labels, num_labels=2, positive=1):
    from dl4nlp.finetune import Metrics

    confusion = torch.bincount(labels.long().cpu() * num_labels + predictions.long().cpu(),
                               minlength=num_labels ** 2).view(num_labels, num_labels)
    true_positives = confusion.diag().double()
    denominator = confusion.sum(dim=0).double() + confusion.sum(dim=1).double()
    f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), 0.0)
    return Metrics(float(true_positives.sum() / len(labels)), float(f1[positive] if num_labels == 2 else f1.mean()),
                   confusion)


finetune_step, classification_metrics = given_finetune_step, given_classification_metrics  # as in a notebook


# --- typical bugs: known-wrong variants the feedback names -----------------------------------
# Each is self-contained (torch, nn and F only), so that the tests can hand one in as a student's answer.


def head_last_token(hidden_states, attention_mask, dropout, classifier, pooling="cls"):
    if pooling == "cls":
        pooled = hidden_states[:, -1]
    else:
        mask = (torch.ones(hidden_states.shape[:2]) if attention_mask is None else attention_mask.float())
        pooled = (hidden_states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return classifier(dropout(pooled))


def head_mean_over_padding(hidden_states, attention_mask, dropout, classifier, pooling="cls"):
    pooled = hidden_states[:, 0] if pooling == "cls" else hidden_states.mean(dim=1)
    return classifier(dropout(pooled))


def head_without_dropout(hidden_states, attention_mask, dropout, classifier, pooling="cls"):
    if pooling == "cls":
        pooled = hidden_states[:, 0]
    else:
        mask = (torch.ones(hidden_states.shape[:2]) if attention_mask is None else attention_mask.float())
        pooled = (hidden_states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return classifier(pooled)


def head_mean_whatever_pooling(hidden_states, attention_mask, dropout, classifier, pooling="cls"):
    mask = (torch.ones(hidden_states.shape[:2]) if attention_mask is None else attention_mask.float())
    return classifier(dropout((hidden_states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)))


def freeze_only_switching_on(model, trainable_layers=0):
    stack = model.encoder.encoder
    layers = list(stack.layers if hasattr(stack, "layers") else stack.layer)
    if trainable_layers is None:
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        for layer in layers[len(layers) - trainable_layers:] if trainable_layers else []:
            for p in layer.parameters():
                p.requires_grad_(True)
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


def freeze_embeddings_left_trainable(model, trainable_layers=0):
    stack = model.encoder.encoder
    layers = list(stack.layers if hasattr(stack, "layers") else stack.layer)
    for p in model.parameters():
        p.requires_grad_(True)
    if trainable_layers is not None:
        for layer in layers[:len(layers) - trainable_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
        if getattr(model, "pooling", None) != "pooler" or not trainable_layers:
            pooler = getattr(model.encoder, "pooler", None)
            for p in pooler.parameters() if isinstance(pooler, nn.Module) else []:
                p.requires_grad_(False)
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


def freeze_bottom_layers_trained(model, trainable_layers=0):
    stack = model.encoder.encoder
    layers = list(stack.layers if hasattr(stack, "layers") else stack.layer)
    for p in model.parameters():
        p.requires_grad_(trainable_layers is None)
    if trainable_layers is not None:
        for layer in layers[:trainable_layers]:
            for p in layer.parameters():
                p.requires_grad_(True)
        for p in list(model.dropout.parameters()) + list(model.classifier.parameters()):
            p.requires_grad_(True)
        pooler = getattr(model.encoder, "pooler", None)
        if trainable_layers and getattr(model, "pooling", None) == "pooler" and isinstance(pooler, nn.Module):
            for p in pooler.parameters():
                p.requires_grad_(True)
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


def freeze_head_too(model, trainable_layers=0):
    stack = model.encoder.encoder
    layers = list(stack.layers if hasattr(stack, "layers") else stack.layer)
    for p in model.parameters():
        p.requires_grad_(trainable_layers is None)
    if trainable_layers:
        for layer in layers[len(layers) - trainable_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        pooler = getattr(model.encoder, "pooler", None)
        if getattr(model, "pooling", None) == "pooler" and isinstance(pooler, nn.Module):
            for p in pooler.parameters():
                p.requires_grad_(True)
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


def step_without_zero_grad(model, batch, optimizer, scheduler, clip=1.0):
    loss = model(**batch).loss
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    optimizer.step()
    scheduler.step()
    return loss.item()


def step_scheduler_not_stepped(model, batch, optimizer, scheduler, clip=1.0):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    optimizer.step()
    return loss.item()


def step_clipping_frozen_too(model, batch, optimizer, scheduler, clip=1.0):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    scheduler.step()
    return loss.item()


def step_clip_after_step(model, batch, optimizer, scheduler, clip=1.0):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    scheduler.step()
    return loss.item()


def step_without_clipping(model, batch, optimizer, scheduler, clip=1.0):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def step_scheduler_before_optimizer(model, batch, optimizer, scheduler, clip=1.0):
    optimizer.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip)
    scheduler.step()
    optimizer.step()
    return loss.item()


def metrics_positive_ignored(predictions, labels, num_labels=2, positive=1):
    from dl4nlp.finetune import Metrics

    confusion = torch.bincount(labels.long() * num_labels + predictions.long(),
                               minlength=num_labels ** 2).view(num_labels, num_labels)
    true_positives = confusion.diag().double()
    denominator = confusion.sum(0).double() + confusion.sum(1).double()
    f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), 0.0)
    return Metrics(float(confusion.diag().sum() / len(labels)), float(f1[1] if num_labels == 2 else f1.mean()),
                   confusion)


def metrics_macro_for_two_classes(predictions, labels, num_labels=2, positive=1):
    from dl4nlp.finetune import Metrics

    confusion = torch.bincount(labels.long() * num_labels + predictions.long(),
                               minlength=num_labels ** 2).view(num_labels, num_labels)
    true_positives = confusion.diag().double()
    denominator = confusion.sum(0).double() + confusion.sum(1).double()
    f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), 0.0)
    return Metrics(float(confusion.diag().sum() / len(labels)), float(f1.mean()), confusion)


def metrics_micro_for_many_classes(predictions, labels, num_labels=2, positive=1):
    from dl4nlp.finetune import Metrics

    confusion = torch.bincount(labels.long() * num_labels + predictions.long(),
                               minlength=num_labels ** 2).view(num_labels, num_labels)
    true_positives = confusion.diag().double()
    denominator = confusion.sum(0).double() + confusion.sum(1).double()
    f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), 0.0)
    accuracy = float(confusion.diag().sum() / len(labels))
    return Metrics(accuracy, float(f1[positive]) if num_labels == 2 else accuracy, confusion)


def metrics_confusion_transposed(predictions, labels, num_labels=2, positive=1):
    from dl4nlp.finetune import Metrics

    confusion = torch.bincount(labels.long() * num_labels + predictions.long(),
                               minlength=num_labels ** 2).view(num_labels, num_labels)
    true_positives = confusion.diag().double()
    denominator = confusion.sum(0).double() + confusion.sum(1).double()
    f1 = torch.where(denominator > 0, 2 * true_positives / denominator.clamp(min=1), 0.0)
    return Metrics(float(confusion.diag().sum() / len(labels)), float(f1[positive] if num_labels == 2 else f1.mean()),
                   confusion.T)


def classifier_on_training_set(model, train, validation, epochs=3, lr=5e-5, batch_size=32, warmup_ratio=0.1, seed=0):
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer, scheduler = optimizer_and_schedule(model, lr, epochs * len(loader), warmup_ratio)
    model.train()
    for _ in range(epochs):
        for input_ids, attention_mask, labels in loader:
            finetune_step(model, {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels},
                          optimizer, scheduler)
    model.eval()
    with torch.no_grad():
        predictions = model(input_ids=train.tensors[0], attention_mask=train.tensors[1]).logits.argmax(-1)
    return classification_metrics(predictions, train.tensors[2], model.num_labels)


def classifier_schedule_of_one_epoch(model, train, validation, epochs=3, lr=5e-5, batch_size=32, warmup_ratio=0.1,
                                     seed=0):
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer, scheduler = optimizer_and_schedule(model, lr, len(loader), warmup_ratio)
    model.train()
    for _ in range(epochs):
        for input_ids, attention_mask, labels in loader:
            finetune_step(model, {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels},
                          optimizer, scheduler)
    model.eval()
    with torch.no_grad():
        predictions = model(input_ids=validation.tensors[0], attention_mask=validation.tensors[1]).logits.argmax(-1)
    return classification_metrics(predictions, validation.tensors[2], model.num_labels)


def classifier_last_batch_only(model, train, validation, epochs=3, lr=5e-5, batch_size=32, warmup_ratio=0.1,
                               seed=0):
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    optimizer, scheduler = optimizer_and_schedule(model, lr, epochs * len(loader), warmup_ratio)
    model.train()
    for _ in range(epochs):
        for input_ids, attention_mask, labels in loader:
            finetune_step(model, {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels},
                          optimizer, scheduler)
    model.eval()
    with torch.no_grad():
        for input_ids, attention_mask, labels in torch.utils.data.DataLoader(validation, batch_size=64):
            predictions = model(input_ids=input_ids, attention_mask=attention_mask).logits.argmax(-1)
    return classification_metrics(predictions, labels, model.num_labels)


# Library calls that would do a part's work in one line (the grader also refuses torch's private ops).
_PRIVATE = ("torch._VF", "torch._C", "torch.ops")
# An optimizer's step runs torch.ops.profiler's record_function: the parts that step one do not forbid torch.ops.
_STEPPING = ("torch._VF", "torch._C")
_HEADS = ("transformers.BertForSequenceClassification", "transformers.AutoModelForSequenceClassification",
          "transformers.AutoModelForTokenClassification", "transformers.Trainer",
          "dl4nlp.finetune.SequenceClassifier", "dl4nlp.finetune.TokenClassifier")
_TRAINERS = ("transformers.Trainer", "transformers.BertForSequenceClassification",
             "transformers.AutoModelForSequenceClassification", "dl4nlp.training.fit",
             "dl4nlp.training.training_step", "dl4nlp.training.train_classifier")
_METRICS = ("sklearn.metrics", "dl4nlp.finetune.evaluate", "dl4nlp.finetune.predict")

ASSIGNMENT = Assignment(
    name="finetune",
    parts=(
        Part("classification_head", "dl4nlp.finetune", 2, head_cases, forbidden=(*_HEADS, *_PRIVATE),
             bugs={"the last token is pooled instead of [CLS] (the first token; the last one is often padding)":
                       head_last_token,
                   "the mean runs over the padding too: weight each position by attention_mask": head_mean_over_padding,
                   "dropout is left out: the pooled vector goes straight to the classifier": head_without_dropout,
                   "mean pooling whatever pooling says ('cls' reads the first token only)":
                       head_mean_whatever_pooling}),
        Part("freeze", "dl4nlp.finetune", 2, freeze_cases, forbidden=_PRIVATE, effects=trainable_names,
             gradients=False,
             grading="The grader calls your function on its own models (the course's BertModel and transformers' "
                     "BertModel, some of them frozen before) and compares what it returns, and the names of the "
                     "parameters it leaves trainable, with the reference implementation's.",
             bugs={"frozen parameters keep requires_grad True: only the trainable ones are switched on, so the "
                   "frozen layers still get gradients (and an optimizer over the trainable ones misses nothing)":
                       freeze_only_switching_on,
                   "the embeddings are left trainable: with trainable_layers k only the head and the top k layers "
                   "train": freeze_embeddings_left_trainable,
                   "the bottom layers are trained instead of the top ones": freeze_bottom_layers_trained,
                   "the head is frozen too: the classifier is always trained": freeze_head_too}),
        Part("finetune_step", "dl4nlp.finetune", 3, step_cases, forbidden=(*_TRAINERS, *_STEPPING),
             effects=step_effects, gradients=False,
             grading="The grader calls your function on its own cases, small BERT classifiers in the middle of a "
                     "run (stale gradients on every parameter, some layers frozen, the learning rate warming up or "
                     "decaying), and compares the loss it returns and what the step leaves behind (every parameter, "
                     "the trainable parameters' gradients, the learning rate, the scheduler's step count) with the "
                     "reference implementation's.",
             bugs={"zero_grad is missing: the old gradients are added to the new ones": step_without_zero_grad,
                   "the scheduler is not stepped in the step (stepped per epoch instead of per step): the "
                   "learning rate does not move": step_scheduler_not_stepped,
                   "the norm is clipped over all the model's gradients, the frozen layers' stale ones included: "
                   "clip the trainable parameters only": step_clipping_frozen_too,
                   "the gradients are clipped after the optimizer step, which has already used them":
                       step_clip_after_step,
                   "the gradients are not clipped": step_without_clipping,
                   "the scheduler is stepped before the optimizer: the step uses the next step's learning rate":
                       step_scheduler_before_optimizer}),
        Part("classification_metrics", "dl4nlp.finetune", 2, metrics_cases, forbidden=(*_METRICS, *_PRIVATE),
             bugs={"F1 of the wrong class: `positive` is ignored (class 1 always)": metrics_positive_ignored,
                   "macro F1 with two classes: report the positive class's F1 (binary)":
                       metrics_macro_for_two_classes,
                   "micro F1 (which equals the accuracy) with more than two classes instead of macro F1":
                       metrics_micro_for_many_classes,
                   "the confusion matrix is transposed: rows are the true classes, columns the predictions":
                       metrics_confusion_transposed}),
        Part("finetune_classifier", "dl4nlp.finetune", 3, classifier_cases, forbidden=(*_TRAINERS, *_METRICS, *_STEPPING),
             check=check_classifier,
             grading=f"The grader calls your function on its own case: a small BERT from scratch and a few hundred "
                     f"sentences of the synthetic sarcasm set, trained for a few seconds. Your function passes if "
                     f"it returns the metrics of the validation set with an accuracy of at least {THRESHOLD:.0%} "
                     f"(the reference reaches 95% to 100%; guessing from the feeling alone, 75%; on the rare case "
                     f"where a run stalls and the reference itself falls short of {THRESHOLD:.0%}, the bar is what "
                     f"the reference reaches there, less {MARGIN * 100:.0f} points). While it runs, your "
                     f"finetune_step and classification_metrics are replaced by the grader's own: a bug in those "
                     f"costs points only in their parts.",
             given={"finetune_step": given_finetune_step, "classification_metrics": given_classification_metrics},
             bugs={"the model is measured on the training set instead of the validation set":
                       classifier_on_training_set,
                   "only the last validation batch is measured: the predictions are overwritten batch by batch "
                   "instead of collected": classifier_last_batch_only,
                   "the schedule is sized for one epoch (total_steps = batches per epoch): the learning rate is 0 "
                   "after the first epoch": classifier_schedule_of_one_epoch}),
    ),
)
