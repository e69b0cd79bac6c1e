"""Exercises of the BERT assignment: the embeddings with segments, the two pre-training tasks'
data (masking for MLM, sentence pairs for NSP), the MLM loss, and one BERT layer.

`bert_embeddings`, `mlm_loss` and `bert_layer` are compared with the reference, outputs and
gradients. Their cases give pairs of segments and rows of different lengths, a LayerNorm
with weights far from 1 and 0, and a dropout with a mask fixed when the case is drawn, so
that leaving out a term, normalizing in the wrong place or dropping at the wrong place shows.

`mask_tokens` and `make_nsp_pairs` draw at random, and no two right answers draw alike:
their outputs are checked for the properties every right output has (`Part.check`). For
`mask_tokens`: labels -100 exactly where a token was not selected and the original id where
it was; special tokens never selected; unselected inputs untouched; and, over thousands of
tokens per case, the selection rate and the 80/10/10 split of the selected tokens within
five standard deviations of what they should be (each of the twelve rates falls outside with a
chance of 6e-7: a right answer fails about one grading in 100,000). For `make_nsp_pairs`: one pair per sentence that has a successor, in document
order; label 0 pairs with the true successor; label 1 pairs with a sentence of another
document that is neither `a` nor its successor; and about half of the pairs random (within
five standard deviations of a fair coin per pair, which allows drawing each pair's fate
independently, as Hugging Face does, as well as exactly half).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.bert import IGNORE_INDEX
from dl4nlp.exercises import Assignment, Case, Part, describe, draw_lengths, normal
from dl4nlp.exercises.attention import Feedforward, FixedDropout

# --- what the cases are built from ----------------------------------------------------------


class PaddedSelfAttention(nn.Module):
    """torch.nn.MultiheadAttention(batch_first=True) with random weights, called as `bert_layer` calls its
    attention: attention(query, key, value, key_padding_mask) -> (output (B, T, D), weights), True = padding."""

    def __init__(self, D: int, H: int, generator: torch.Generator) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(D, H, batch_first=True)
        with torch.no_grad():
            for parameter in self.attention.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / math.sqrt(D))

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return self.attention(query, key, value, key_padding_mask=key_padding_mask, need_weights=False)


def _layer_norm(D: int, generator: torch.Generator) -> nn.LayerNorm:
    norm = nn.LayerNorm(D, eps=1e-12)
    with torch.no_grad():
        norm.weight.copy_(1 + normal(generator, D, scale=0.3))
        norm.bias.copy_(normal(generator, D, scale=0.3))
    return norm


def _seed(generator: torch.Generator) -> torch.Generator:
    """A new generator seeded from `generator`: what a case passes to a function that draws."""
    return torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))


# --- bert_embeddings ---------------------------------------------------------------------------


def _segments(generator: torch.Generator, B: int, T: int) -> Tensor:
    """(B, T) segment ids of sentence pairs: 0 for [CLS] A [SEP], 1 for B [SEP], where A ends at random."""
    ends = torch.randint(1, T, (B,), generator=generator)  # the first position of segment 1
    return (torch.arange(T) >= ends[:, None]).long()  # (B, T)


def embeddings_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, V, P, D, pairs in ((2, 5, 11, 8, 6, True), (3, 4, 9, 6, 4, False), (1, 7, 13, 7, 8, True),
                                 (4, 3, 7, 5, 6, True)):
        input_ids = torch.randint(0, V, (B, T), generator=generator)
        token_type_ids = _segments(generator, B, T) if pairs else None
        word, position, segment = normal(generator, V, D), normal(generator, P, D), normal(generator, 2, D)
        drawn.append(Case((input_ids, token_type_ids, word, position, segment, _layer_norm(D, generator),
                           FixedDropout((D,), 0.2, generator)),
                          f"batch {B}, T={T}, vocabulary {V}, {P} positions, D={D}, "
                          + ("sentence pairs (segments 0 and 1)" if pairs else "token_type_ids None")))
    return drawn


# --- mask_tokens -------------------------------------------------------------------------------

CLS, SEP, PAD, MASK = 1, 2, 0, 3  # special ids of the cases; ordinary words are 5 and above


def mask_cases(generator: torch.Generator) -> list[Case]:
    """Thousands of tokens per case (rates measured on them), and two small cases at mlm_probability 1 and 0."""
    drawn = []
    for B, T, V, p, specials in ((64, 128, 1000, 0.15, "bool"), (48, 96, 600, 0.3, "int"),
                                 (32, 160, 30522, 0.15, None), (3, 6, 50, 1.0, "bool"), (2, 5, 50, 0.0, "bool")):
        input_ids = torch.randint(5, V, (B, T), generator=generator)
        special = torch.zeros(B, T, dtype=torch.bool)
        if specials is not None:  # [CLS] A [SEP] B [SEP] [PAD] ...
            lengths = draw_lengths(generator, B, T).clamp(min=min(4, T))
            for row, length in enumerate(lengths.tolist()):
                middle = int(torch.randint(1, length - 2, (1,), generator=generator)) if length > 3 else 1
                input_ids[row, 0], input_ids[row, middle], input_ids[row, length - 1] = CLS, SEP, SEP
                input_ids[row, length:] = PAD
                special[row, [0, middle, length - 1]] = True
                special[row, length:] = True
        mask = None if specials is None else special if specials == "bool" else special.long()
        drawn.append(Case((input_ids, MASK, V, mask, p, _seed(generator)),
                          f"batch {B} x {T} tokens, vocabulary {V}, [MASK] = {MASK}, mlm_probability {p}, "
                          + ("no special_tokens_mask" if specials is None else
                             f"special_tokens_mask ({'bool' if specials == 'bool' else 'int 0/1'}) at [CLS], "
                             "[SEP] and padding")))
    return drawn


def _outside(rate: float, expected: float, n: int, slack: float = 5.0) -> bool:
    """Whether a measured rate over n draws is further than `slack` standard deviations from `expected`."""
    return abs(rate - expected) > slack * math.sqrt(expected * (1 - expected) / n) + 0.5 / n


def check_masking(case: Case, output: Any) -> str | None:
    """What is wrong with an output of `mask_tokens`, from the properties every right output has."""
    input_ids, mask_token_id, vocab_size, special_tokens_mask, p, _ = case.args
    if not (isinstance(output, tuple) and len(output) == 2 and all(isinstance(t, Tensor) for t in output)):
        return f"returned {describe(output)}, expected (inputs, labels): two tensors"
    inputs, labels = output
    for name, tensor in (("inputs", inputs), ("labels", labels)):
        if tuple(tensor.shape) != tuple(input_ids.shape):
            return f"{name} has shape {tuple(tensor.shape)}, expected {tuple(input_ids.shape)}, that of input_ids"
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            return f"{name} has dtype {tensor.dtype}, expected token ids (torch.long)"
    special = (torch.zeros_like(input_ids, dtype=torch.bool) if special_tokens_mask is None
               else special_tokens_mask.bool())
    selected = labels != IGNORE_INDEX  # (B, T)
    if bool((selected & (labels != input_ids)).any()):
        return ("a label is not the original id of its token: at a selected token the label is input_ids' id "
                "(what the model must predict), not the id it was replaced by")
    eligible = ~special
    n, chosen = int(eligible.sum()), int((selected & eligible).sum())
    if n > 1 and p < 1 and chosen == n:
        return ("every token has a label: labels must be -100 at the tokens that were not selected (no loss "
                "there)")
    if n and _outside(chosen / n, p, n):
        return (f"{100 * chosen / n:.1f}% of the tokens that may be selected were selected (have a label), "
                f"expected mlm_probability = {100 * p:g}%")
    if bool((selected & special).any()):
        return ("a special token ([CLS], [SEP] or [PAD]: special_tokens_mask is True there) was selected: "
                "special tokens are never selected")
    if bool(((inputs != input_ids) & ~selected).any()):
        return ("the input of a token that was not selected changed (its label is -100): only the selected "
                "tokens are replaced")
    if bool(((inputs < 0) | (inputs >= vocab_size)).any()):
        return "inputs hold an id outside the vocabulary [0, vocab_size)"
    m = int(selected.sum())
    if m >= 200:  # enough selected tokens to measure the split
        masked = int((selected & (inputs == mask_token_id)).sum())
        kept = int((selected & (inputs == input_ids)).sum())
        others = m - masked - kept
        expected = (0.8 + 0.1 / vocab_size, 0.1 * (1 - 2 / vocab_size), 0.1 + 0.1 / vocab_size)
        if any(_outside(count / m, rate, m) for count, rate in zip((masked, others, kept), expected)):
            return (f"of the selected tokens, {100 * masked / m:.1f}% became [MASK], {100 * others / m:.1f}% a "
                    f"random token and {100 * kept / m:.1f}% stayed as they were: expected 80%, 10% and 10%")
    return None


# --- mlm_loss ----------------------------------------------------------------------------------


def loss_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, V, rate, empty_row in ((2, 6, 10, 0.3, False), (3, 5, 7, 0.5, True), (1, 8, 20, 0.15, False),
                                     (4, 4, 5, 0.6, True)):
        logits = normal(generator, B, T, V, scale=2.0)
        labels = torch.randint(0, V, (B, T), generator=generator)
        selected = torch.rand(B, T, generator=generator) < rate
        selected[0, 0] = True  # at least one selected token
        if empty_row:
            selected[-1] = False  # a sentence without a selected token
        drawn.append(Case((logits, labels.masked_fill(~selected, IGNORE_INDEX)),
                          f"batch {B}, T={T}, vocabulary {V}, {int(selected.sum())} selected tokens"
                          + (", the last row without any" if empty_row else "")))
    return drawn


# --- make_nsp_pairs ----------------------------------------------------------------------------

WORDS = ("the", "a", "cat", "dog", "film", "park", "rain", "sun", "book", "road", "sat", "ran", "read", "saw",
         "was", "long", "old", "new", "red", "quiet", "then", "later", "it", "we", "they", "near", "over")


def _documents(generator: torch.Generator, sizes: Sequence[int], repeat: bool = False) -> list[list[str]]:
    """Documents of distinct made-up sentences; with `repeat`, one sentence also occurs in the next document."""
    seen: set[str] = set()
    documents = []
    for size in sizes:
        document = []
        while len(document) < size:
            count = int(torch.randint(3, 7, (1,), generator=generator))
            words = [WORDS[int(i)] for i in torch.randint(len(WORDS), (count,), generator=generator)]
            sentence = " ".join(words).capitalize() + "."
            if sentence not in seen:
                seen.add(sentence)
                document.append(sentence)
        documents.append(document)
    if repeat and len(documents) > 1:
        documents[1][-1] = documents[0][0]  # the same sentence in two documents
    return documents


def nsp_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for sizes, repeat in (((5, 3, 8, 4, 6, 7), False), ((5,), False), ((4, 6, 5), True),
                          ((2, 3, 4, 2, 3, 4, 2, 3, 4, 3), False), ((2, 2), False), ((12, 12), False),
                          (tuple(3 + k % 6 for k in range(40)), False)):  # 180 pairs: the share of random ones
        documents = _documents(generator, sizes, repeat)
        drawn.append(Case((documents, _seed(generator)),
                          f"{len(sizes)} document{'s' if len(sizes) > 1 else ''} of "
                          + (f"{', '.join(map(str, sizes))} sentences" if len(sizes) <= 10 else
                             f"{min(sizes)} to {max(sizes)} sentences, {sum(sizes) - len(sizes)} pairs")
                          + (", one sentence in two documents" if repeat else "")))
    return drawn


def _label(value: Any) -> int | None:
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value.reshape(()))
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return int(value)
    return None


def check_pairs(case: Case, output: Any) -> str | None:
    """What is wrong with an output of `make_nsp_pairs`, from the properties every right output has."""
    documents = case.args[0]
    starts = [(d, i) for d, document in enumerate(documents) for i in range(len(document) - 1)]
    if not isinstance(output, tuple):
        return f"returned {describe(output)}, expected a list of (a, b, next_sentence_label)"
    if len(output) != len(starts):
        return (f"returned {len(output)} pairs, expected {len(starts)}: one per sentence that has a successor in "
                "its document")
    labels = []
    for k, (pair, (d, i)) in enumerate(zip(output, starts), start=1):
        if not (isinstance(pair, tuple) and len(pair) == 3):
            return f"pair {k} is {describe(pair)}, expected (a, b, next_sentence_label)"
        label = _label(pair[2])
        if label is None:
            return f"pair {k}: next_sentence_label should be 0 (b follows a) or 1 (b is random), got {pair[2]!r}"
        if pair[0] != documents[d][i]:
            return (f"pair {k}: a is not sentence {i + 1} of document {d + 1}: the pairs come in document order, "
                    "one for every sentence that has a successor")
        labels.append(label)
    for k, (pair, label, (d, i)) in enumerate(zip(output, labels, starts), start=1):
        if label == 0 and pair[1] != documents[d][i + 1]:
            return (f"pair {k} is labelled 0 but b is not the sentence after a: 0 means b follows a (IsNext) and 1 "
                    "that b is random (NotNext), Hugging Face's next_sentence_label")
    for k, (pair, label, (d, i)) in enumerate(zip(output, labels, starts), start=1):
        if label == 1 and pair[1] == documents[d][i + 1]:
            return f"pair {k} is labelled 1 (b is random) but its b is a's true successor"
    elsewhere = [{s for e, other in enumerate(documents) if e != d for s in other} for d in range(len(documents))]
    for k, (pair, label, (d, i)) in enumerate(zip(output, labels, starts), start=1):
        if label == 1 and len(documents) > 1 and pair[1] not in elsewhere[d]:
            return (f"pair {k}: its random b is not a sentence of another document (a random b comes from "
                    "another document, so that it cannot follow a by chance)")
        if label == 1 and pair[1] == documents[d][i]:
            return f"pair {k}: its random b is a itself"
    randoms = sum(labels)
    n = len(starts)
    if abs(randoms - n / 2) > 5 * math.sqrt(n) / 2 + 1:  # 5 standard deviations of a fair coin per pair
        return f"{randoms} of the {n} pairs are random (label 1), expected about half"
    return None


# --- bert_layer --------------------------------------------------------------------------------


def layer_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, D, H, D_ff, padded in ((2, 5, 8, 2, 16, True), (3, 4, 6, 3, 12, False), (1, 6, 4, 1, 8, False),
                                     (4, 6, 12, 4, 24, True)):
        x = normal(generator, B, T, D)
        attention_mask = None
        if padded:  # Hugging Face's convention: 1 = real token, 0 = padding
            attention_mask = (torch.arange(T) < draw_lengths(generator, B, T)[:, None]).long()  # (B, T)
        drawn.append(Case((x, attention_mask, PaddedSelfAttention(D, H, generator),
                           Feedforward(D, D_ff, "gelu", generator), _layer_norm(D, generator),
                           _layer_norm(D, generator), FixedDropout((D,), 0.2, generator)),
                          f"x ({B}, {T}, {D}), {H} heads, feedforward of width {D_ff}, "
                          + ("attention_mask with padding" if padded else "attention_mask None")))
    return drawn


# --- typical bugs: known-wrong variants the feedback names -----------------------------------
# Each is self-contained (torch and F only), so that the tests can hand one in as a student's answer.


def embeddings_without_segments(input_ids, token_type_ids, word_embeddings, position_embeddings,
                                token_type_embeddings, layer_norm, dropout):
    T = input_ids.shape[1]
    return dropout(layer_norm(word_embeddings[input_ids] + position_embeddings[:T]))


def embeddings_without_positions(input_ids, token_type_ids, word_embeddings, position_embeddings,
                                 token_type_embeddings, layer_norm, dropout):
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    return dropout(layer_norm(word_embeddings[input_ids] + token_type_embeddings[token_type_ids]))


def embeddings_without_layer_norm(input_ids, token_type_ids, word_embeddings, position_embeddings,
                                  token_type_embeddings, layer_norm, dropout):
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    T = input_ids.shape[1]
    return dropout(word_embeddings[input_ids] + position_embeddings[:T] + token_type_embeddings[token_type_ids])


def embeddings_dropout_before_norm(input_ids, token_type_ids, word_embeddings, position_embeddings,
                                   token_type_embeddings, layer_norm, dropout):
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    T = input_ids.shape[1]
    return layer_norm(dropout(word_embeddings[input_ids] + position_embeddings[:T]
                              + token_type_embeddings[token_type_ids]))


def mask_all_selected(input_ids, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15,
                      generator=None):
    selected = torch.rand(input_ids.shape, generator=generator) < mlm_probability
    if special_tokens_mask is not None:
        selected &= ~special_tokens_mask.bool()
    return input_ids.masked_fill(selected, mask_token_id), input_ids.masked_fill(~selected, -100)


def mask_special_tokens_too(input_ids, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15,
                            generator=None):
    selected = torch.rand(input_ids.shape, generator=generator) < mlm_probability
    choice = torch.rand(input_ids.shape, generator=generator)
    words = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = input_ids.masked_fill(selected & (choice < 0.8), mask_token_id)
    inputs = torch.where(selected & (choice >= 0.8) & (choice < 0.9), words, inputs)
    return inputs, input_ids.masked_fill(~selected, -100)


def mask_labels_everywhere(input_ids, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15,
                           generator=None):
    selected = torch.rand(input_ids.shape, generator=generator) < mlm_probability
    if special_tokens_mask is not None:
        selected &= ~special_tokens_mask.bool()
    choice = torch.rand(input_ids.shape, generator=generator)
    words = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = input_ids.masked_fill(selected & (choice < 0.8), mask_token_id)
    inputs = torch.where(selected & (choice >= 0.8) & (choice < 0.9), words, inputs)
    return inputs, input_ids.clone()


def mask_every_token_replaced(input_ids, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15,
                              generator=None):
    selected = torch.rand(input_ids.shape, generator=generator) < mlm_probability
    if special_tokens_mask is not None:
        selected &= ~special_tokens_mask.bool()
    choice = torch.rand(input_ids.shape, generator=generator)
    words = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = input_ids.masked_fill(choice < 0.8, mask_token_id)
    inputs = torch.where((choice >= 0.8) & (choice < 0.9), words, inputs)
    return inputs, input_ids.masked_fill(~selected, -100)


def mask_probability_fixed(input_ids, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15,
                           generator=None):
    selected = torch.rand(input_ids.shape, generator=generator) < 0.15
    if special_tokens_mask is not None:
        selected &= ~special_tokens_mask.bool()
    choice = torch.rand(input_ids.shape, generator=generator)
    words = torch.randint(vocab_size, input_ids.shape, generator=generator)
    inputs = input_ids.masked_fill(selected & (choice < 0.8), mask_token_id)
    inputs = torch.where(selected & (choice >= 0.8) & (choice < 0.9), words, inputs)
    return inputs, input_ids.masked_fill(~selected, -100)


def loss_over_every_position(mlm_logits, labels):
    log_probs = torch.log_softmax(mlm_logits, dim=-1)
    selected = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return -(picked * selected).sum() / labels.numel()


def loss_summed(mlm_logits, labels):
    log_probs = torch.log_softmax(mlm_logits, dim=-1)
    selected = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return -(picked * selected).sum()


def loss_softmax_over_positions(mlm_logits, labels):
    log_probs = torch.log_softmax(mlm_logits, dim=1)
    selected = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return -(picked * selected).sum() / selected.sum()


def loss_without_log(mlm_logits, labels):
    probs = torch.softmax(mlm_logits, dim=-1)
    selected = labels != -100
    picked = probs.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return -(picked * selected).sum() / selected.sum()


def pairs_labels_flipped(documents, generator=None):
    starts = [(d, i) for d, document in enumerate(documents) for i in range(len(document) - 1)]
    chosen = set(torch.randperm(len(starts), generator=generator)[:len(starts) // 2].tolist())
    pairs = []
    for k, (d, i) in enumerate(starts):
        a, successor = documents[d][i], documents[d][i + 1]
        if k in chosen:
            pool = [s for e, other in enumerate(documents) if e != d or len(documents) == 1 for s in other
                    if s not in (a, successor)]
            pairs.append((a, pool[int(torch.randint(len(pool), (1,), generator=generator))], 0))
        else:
            pairs.append((a, successor, 1))
    return pairs


def pairs_random_from_anywhere(documents, generator=None):
    starts = [(d, i) for d, document in enumerate(documents) for i in range(len(document) - 1)]
    chosen = set(torch.randperm(len(starts), generator=generator)[:len(starts) // 2].tolist())
    every = [s for document in documents for s in document]
    pairs = []
    for k, (d, i) in enumerate(starts):
        if k in chosen:
            pairs.append((documents[d][i], every[int(torch.randint(len(every), (1,), generator=generator))], 1))
        else:
            pairs.append((documents[d][i], documents[d][i + 1], 0))
    return pairs


def pairs_never_random(documents, generator=None):
    return [(document[i], document[i + 1], 0) for document in documents for i in range(len(document) - 1)]


def layer_norm_before_residual(x, attention_mask, attention, feedforward, norm1, norm2, dropout):
    key_padding_mask = None if attention_mask is None else attention_mask == 0
    a = x + norm1(dropout(attention(x, x, x, key_padding_mask)[0]))
    return a + norm2(dropout(feedforward(a)))


def layer_pre_norm(x, attention_mask, attention, feedforward, norm1, norm2, dropout):
    key_padding_mask = None if attention_mask is None else attention_mask == 0
    h = norm1(x)
    a = x + dropout(attention(h, h, h, key_padding_mask)[0])
    return a + dropout(feedforward(norm2(a)))


def layer_mask_inverted(x, attention_mask, attention, feedforward, norm1, norm2, dropout):
    key_padding_mask = None if attention_mask is None else attention_mask.bool()
    a = norm1(x + dropout(attention(x, x, x, key_padding_mask)[0]))
    return norm2(a + dropout(feedforward(a)))


def layer_mask_ignored(x, attention_mask, attention, feedforward, norm1, norm2, dropout):
    a = norm1(x + dropout(attention(x, x, x, None)[0]))
    return norm2(a + dropout(feedforward(a)))


# Library calls that would do a part's work in one line (the grader also refuses torch's private ops).
_PRIVATE = ("torch._VF", "torch._C", "torch.ops")
_TRANSFORMERS = ("transformers",)  # its BERT classes, BertLayer, DataCollatorForLanguageModeling, ...
_LOSSES = ("torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss", "torch.nn.CrossEntropyLoss",
           "torch.nn.NLLLoss")
_BLOCKS = ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder", "torch.nn.Transformer",
           "torch._transformer_encoder_layer_fwd", "dl4nlp.transformer.post_norm_block",
           "dl4nlp.transformer.TransformerEncoderLayer", "dl4nlp.transformer.TransformerEncoder")
_EMBEDDINGS = ("torch.nn.functional.embedding", "torch.nn.Embedding", "dl4nlp.bert.BertEmbeddings",
               "dl4nlp.bert.BertModel")

ASSIGNMENT = Assignment(
    name="bert",
    parts=(
        Part("bert_embeddings", "dl4nlp.bert", 2, embeddings_cases,
             forbidden=(*_EMBEDDINGS, *_TRANSFORMERS, *_PRIVATE),
             bugs={"segment embeddings missing: E_seg[s_t] is not added, so the two sentences of a pair look alike":
                       embeddings_without_segments,
                   "position embeddings missing: E_pos[t] is not added": embeddings_without_positions,
                   "the LayerNorm is left out": embeddings_without_layer_norm,
                   "dropout before the LayerNorm instead of after it": embeddings_dropout_before_norm}),
        Part("mask_tokens", "dl4nlp.bert", 3, mask_cases, forbidden=(*_TRANSFORMERS, *_PRIVATE),
             check=check_masking,
             bugs={"[MASK] replaces 100% of the selected tokens (80% [MASK], 10% a random token, 10% unchanged)":
                       mask_all_selected,
                   "special tokens are masked: special_tokens_mask is ignored": mask_special_tokens_too,
                   "labels are set on unselected tokens (they must be -100 there)": mask_labels_everywhere,
                   "the 80/10/10 replacement is applied to every token, not only to the selected ones":
                       mask_every_token_replaced,
                   "mlm_probability is ignored: 15% are selected whatever it is": mask_probability_fixed}),
        Part("mlm_loss", "dl4nlp.bert", 2, loss_cases, forbidden=(*_LOSSES, *_TRANSFORMERS, *_PRIVATE),
             bugs={"the mean is taken over every position, unselected ones included (divide by the number of "
                   "selected tokens)": loss_over_every_position,
                   "the sum over the selected tokens, not their mean": loss_summed,
                   "the softmax runs over the positions (dim 1) instead of over the vocabulary (dim -1)":
                       loss_softmax_over_positions,
                   "probabilities instead of log-probabilities: take the log of the softmax": loss_without_log}),
        Part("make_nsp_pairs", "dl4nlp.bert", 2, nsp_cases, forbidden=(*_TRANSFORMERS, *_PRIVATE),
             check=check_pairs,
             bugs={"labels flipped: next_sentence_label is 0 when b follows a (IsNext) and 1 when b is random":
                       pairs_labels_flipped,
                   "the random b is drawn from every sentence, a's own document included (it can even be a "
                   "itself or its successor)": pairs_random_from_anywhere,
                   "no pair is random: every b is a's successor": pairs_never_random}),
        Part("bert_layer", "dl4nlp.bert", 3, layer_cases, forbidden=(*_BLOCKS, *_TRANSFORMERS, *_PRIVATE),
             bugs={"LayerNorm before the residual: x + norm(sublayer(x)) instead of norm(x + sublayer(x))":
                       layer_norm_before_residual,
                   "pre-norm instead of BERT's post-norm: each sublayer reads norm(x)": layer_pre_norm,
                   "attention_mask used as the padding mask as it is: 1 marks a real token, so key_padding_mask "
                   "is attention_mask == 0": layer_mask_inverted,
                   "attention_mask ignored: padded keys get attention": layer_mask_ignored}),
    ),
)
