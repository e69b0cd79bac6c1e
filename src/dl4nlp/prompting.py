"""Pretrain and prompt: classify text with a pretrained causal language model and no training at all.

    template      'Review: [X] Sentiment: [Z]'            [X] the input, [Z] the answer slot    (`fill_template`)
    verbalizer    {negative: ["bad"], positive: ["good"]}  label words: the answer space -> labels   (`Verbalizer`)
    few-shot      k filled demonstrations, then the query with [Z] left open                 (`few_shot_prompt`)
    scoring       log p(word | prompt) = sum over the word's tokens of log p(token | prompt, tokens before)
                                                                                          (`label_word_scores`)
    label         argmax over labels of the log of the summed probabilities of its words   (`classify_by_likelihood`)
    calibration   q(y | x) ∝ p(y | x) / p(y | content-free input)  (Zhao et al. 2021)     (`calibrate`)

A causal LM continues text, so the answer slot [Z] ends the template: the prompt is the filled template up
to [Z], and each label word is scored as its continuation. A label word of several tokens is scored by the
chain rule, every token given the prompt and the tokens before it. The alternative, generating text and
parsing it (`generate_and_parse`), needs a model that follows the format; scoring works with any LM,
ours (`dl4nlp.gpt.GPT`) or a `transformers` one.

Prompts are sensitive: to the template, to the choice and order of the demonstrations, and to the label
words' prior probabilities, which contextual calibration divides out: the model's label probabilities for a
content-free input ("N/A") in the same prompt estimate how much it favours each label before it reads
anything.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

INPUT_SLOT, ANSWER_SLOT = "[X]", "[Z]"
LECTURE_TEMPLATE = 'Data: "[X]" Label: [Z]'
LECTURE_HEADER = "Here are two training instances:"
LECTURE_QUERY_HEADER = "Here is a test instance. Fill in the correct label:"
LECTURE_EXAMPLES = (("Natalie was soooooo happy she had booked a 5 a.m. flight.", 1),
                    ("Natalie loved early morning flights because she could get to her destination before brunch!", 0))
LECTURE_QUERY = "Natalie was sooooooooooooo excited to wait in an early morning airport security line."
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")  # Zhao et al. 2021


# --- templates and verbalizers ------------------------------------------------------------------------


def check_template(function: str, template: str) -> None:
    """ValueError unless `template` holds [X] once and [Z] once, with [Z] last (a causal LM continues text)."""
    if not isinstance(template, str):
        raise TypeError(f"{function}: the template should be a string with {INPUT_SLOT} and {ANSWER_SLOT}, got "
                        f"{type(template).__name__}")
    counts = {slot: template.count(slot) for slot in (INPUT_SLOT, ANSWER_SLOT)}
    if counts != {INPUT_SLOT: 1, ANSWER_SLOT: 1}:
        raise ValueError(f"{function}: a template holds {INPUT_SLOT} (where the input goes) and {ANSWER_SLOT} (where "
                         f"the answer goes) once each; {template!r} has {counts}")
    if not template.rstrip().endswith(ANSWER_SLOT):
        raise ValueError(f"{function}: {ANSWER_SLOT} must end the template, since a causal language model predicts "
                         f"what comes after the prompt; got {template!r}")
    if template.index(ANSWER_SLOT) < template.index(INPUT_SLOT):
        raise ValueError(f"{function}: {INPUT_SLOT} must come before {ANSWER_SLOT}; got {template!r}")


def fill_template(template: str, x: str, answer: str | None = None) -> str:
    """Put the input into a template; with an answer, fill the answer slot too (a demonstration), without one cut
    the template at the answer slot (the prompt a language model continues).

        fill_template('Review: [X] Sentiment: [Z]', 'A gem.', 'good')  ->  'Review: A gem. Sentiment: good'
        fill_template('Review: [X] Sentiment: [Z]', 'A gem.')          ->  'Review: A gem. Sentiment:'

    Args: template, with [X] once and [Z] once at its end; x, the input text; answer, a label word, or None.
    Returns: the filled text; without an answer, everything before [Z] with trailing spaces removed (the label
      word is then scored as " word": a language model's words start with their space).
    Matches: OpenPrompt's ManualTemplate.wrap_one_example with a causal LM's mask at the end.
    """
    check_template("fill_template", template)
    filled = template.replace(INPUT_SLOT, x)
    return filled.replace(ANSWER_SLOT, answer) if answer is not None else filled[:filled.rindex(ANSWER_SLOT)].rstrip()


@dataclass(frozen=True)
class Verbalizer:
    """The answer space and its map to labels: words[label] are the label words of `label` (0, 1, ...), e.g.
    ``Verbalizer((("bad", "terrible"), ("good", "great")))`` for negative / positive. A label's first word is the
    one written into demonstrations."""

    words: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        words = tuple((label,) if isinstance(label, str) else tuple(label) for label in self.words)
        object.__setattr__(self, "words", words)
        flat = [word for label in words for word in label]
        if len(words) < 2 or not all(words) or not all(isinstance(w, str) and w.strip() for w in flat):
            raise ValueError(f"Verbalizer: give at least two labels, each with at least one non-empty word; got "
                             f"{self.words!r}")
        if len(set(flat)) != len(flat):
            raise ValueError(f"Verbalizer: a word may stand for one label only; got {self.words!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, str | Sequence[str]]) -> Verbalizer:
        """From {label: word or words} with labels 0 .. C-1."""
        if sorted(mapping) != list(range(len(mapping))):
            raise ValueError(f"Verbalizer.from_mapping: labels should be 0 .. C-1, got {sorted(mapping)}")
        return cls(tuple(mapping[label] for label in range(len(mapping))))

    @property
    def num_labels(self) -> int:
        return len(self.words)

    def word(self, label: int) -> str:
        """The word written for `label` in a demonstration (its first)."""
        return self.words[label][0]


def few_shot_prompt(template: str, examples: Sequence[tuple[str, int]], query: str, verbalizer: Verbalizer,
                    header: str = "", query_header: str = "", separator: str = "\n\n") -> str:
    """A prompt with k demonstrations: each example's input and label word filled into the template, then the
    query with its answer slot open (k = 0: zero-shot).

        [header]  template(x_1, word(y_1))  ...  template(x_k, word(y_k))  [query_header]  template(query)

    Args: template, with [X] and [Z]; examples, (text, label) pairs, in the order they are shown; query, the
      input to classify (its label is not known here, and must never appear); verbalizer, label -> word;
      header, query_header, instructions before the demonstrations and before the query ("" for none);
      separator between the parts.
    Returns: the prompt, ending where the query's label word would go.
    Matches: GPT-3's few-shot prompts (Brown et al. 2020); with the lecture's template and headers, the
      lecture's sarcasm prompt (`lecture_prompt`).
    """
    parts = [header] if header else []
    for text, label in examples:
        if not 0 <= label < verbalizer.num_labels:
            raise ValueError(f"few_shot_prompt: example label {label!r} is not one of the verbalizer's labels "
                             f"0 .. {verbalizer.num_labels - 1}")
        parts.append(fill_template(template, text, verbalizer.word(label)))
    if query_header:
        parts.append(query_header)
    parts.append(fill_template(template, query))
    return separator.join(parts)


def lecture_prompt(query: str = LECTURE_QUERY, examples: Sequence[tuple[str, int]] = LECTURE_EXAMPLES) -> str:
    """The lecture's sarcasm prompt: two training instances, then the test instance to fill in."""
    verbalizer = Verbalizer((("NOT SARCASTIC",), ("SARCASTIC",)))
    return few_shot_prompt(LECTURE_TEMPLATE, examples, query, verbalizer, header=LECTURE_HEADER,
                           query_header=LECTURE_QUERY_HEADER)


# --- scoring label words with a causal LM -------------------------------------------------------------


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def causal_lm_logits(model: Any, input_ids: Tensor) -> Tensor:
    """The logits (B, T, V) of a causal LM for input_ids (B, T): our GPT returns them as a tensor, a transformers
    model as an output with .logits. The logits at position t score the token at t + 1."""
    output = model(input_ids)
    return output if isinstance(output, Tensor) else output.logits


def model_device(model: Any) -> torch.device:
    """The device of a model's parameters (where its inputs must go)."""
    return next(model.parameters()).device


_logits, _device = causal_lm_logits, model_device


def continuation_log_probs(model: Any, prompt_ids: Sequence[int], continuations: Sequence[Sequence[int]]
                           ) -> Tensor:
    """log p(continuation | prompt) for each continuation, by the chain rule, in one batch:

        log p(c_1 ... c_m | prompt) = sum_j log p(c_j | prompt, c_1 ... c_(j-1))

    Args: model, a causal LM (ids (B, T) -> logits (B, T, V)); prompt_ids, at least one token; continuations,
      token id lists, each at least one token.
    Returns: (len(continuations),) float tensor.
    """
    if not prompt_ids or not continuations or not all(continuations):
        raise ValueError("continuation_log_probs: the prompt and every continuation need at least one token")
    rows = [list(prompt_ids) + list(c) for c in continuations]
    T = max(map(len, rows))
    padded = torch.tensor([row + [row[-1]] * (T - len(row)) for row in rows], device=model_device(model))  # (B, T)
    with torch.no_grad():
        logits = causal_lm_logits(model, padded).float()  # (B, T, V); the right padding is never read
        log_probs = F.log_softmax(logits, dim=-1)  # (B, T, V)
    P = len(prompt_ids)
    scores = []
    for b, continuation in enumerate(continuations):
        positions = torch.arange(P - 1, P - 1 + len(continuation), device=padded.device)  # predict c_j from t-1
        targets = torch.tensor(list(continuation), device=padded.device)
        scores.append(log_probs[b, positions, targets].sum())
    return torch.stack(scores).cpu()  # (N,)


def label_word_scores(model: Any, tokenizer: Any, prompts: Sequence[str], words: Sequence[str]) -> Tensor:
    """log p(word | prompt) for every prompt and word: every token of a word counts (chain rule), and none of
    the prompt's.

    Args: model, a causal LM; tokenizer, its tokenizer (encode(text, add_special_tokens=False)); prompts, N
      prompts ending where the word goes; words, W label words, each scored as the continuation " word".
    Returns: (N, W) log-probabilities.
    """
    word_ids = [tokenizer.encode(" " + word, add_special_tokens=False) for word in words]  # " good": its space
    return torch.stack([continuation_log_probs(model, tokenizer.encode(prompt, add_special_tokens=False), word_ids)
                        for prompt in prompts])  # (N, W)


def label_log_probs(model: Any, tokenizer: Any, prompts: Sequence[str], verbalizer: Verbalizer) -> Tensor:
    """log p(label | prompt) before normalization: log of the summed probabilities of the label's words, (N, C)."""
    flat = [word for label in verbalizer.words for word in label]
    scores = label_word_scores(model, tokenizer, prompts, flat)  # (N, W)
    columns, start = [], 0
    for label in verbalizer.words:
        columns.append(torch.logsumexp(scores[:, start:start + len(label)], dim=1))
        start += len(label)
    return torch.stack(columns, dim=1)  # (N, C)


def calibrate(label_probabilities: Tensor, content_free: Tensor) -> Tensor:
    """Contextual calibration: divide each label's probability by the probability the model gives it for a
    content-free input in the same prompt, then renormalize.

        q(y | x) = (p(y | x) / p_cf(y)) / sum_y' (p(y' | x) / p_cf(y'))

    Args: label_probabilities (N, C), each row normalized over the labels; content_free (C,), the same for a
      content-free input (the mean over several, e.g. "N/A", "" and "[MASK]"), normalized.
    Returns: (N, C), rows summing to 1. A model that favoured a label regardless of the input no longer does.
    Matches: Zhao et al. 2021, "Calibrate before use", with W = diag(p_cf)^-1 and b = 0.
    """
    if label_probabilities.dim() != 2 or content_free.shape != label_probabilities.shape[1:]:
        raise ValueError(f"calibrate: label_probabilities should be (N, C) and content_free (C,), got "
                         f"{tuple(label_probabilities.shape)} and {tuple(content_free.shape)}")
    if not bool((content_free > 0).all()):
        raise ValueError("calibrate: content_free probabilities must be positive (normalize the label scores of "
                         "the content-free input with a softmax)")
    weighted = label_probabilities / content_free  # (N, C)
    return weighted / weighted.sum(dim=1, keepdim=True)  # (N, C)


@dataclass(frozen=True)
class PromptPredictions:
    """What `classify_by_likelihood` returns: probabilities (N, C) over the labels (calibrated if asked), the
    predicted labels (N,), and the content-free probabilities (C,) used, or None."""

    probabilities: Tensor
    predictions: Tensor
    content_free: Tensor | None


def classify_by_likelihood(model: Any, tokenizer: Any, prompts: Sequence[str], verbalizer: Verbalizer, *,
                           content_free_prompts: Sequence[str] | None = None) -> PromptPredictions:
    """Zero- or few-shot classification: each prompt's label is the one whose words the model finds most likely
    to come next.

    Args: model, a causal LM, ours or a transformers one; tokenizer; prompts, from `fill_template` or
      `few_shot_prompt`; verbalizer; content_free_prompts, the same prompts built around content-free inputs
      (`content_free_prompts`), to calibrate with (None: no calibration).
    Returns: `PromptPredictions`.
    """
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        probabilities = torch.softmax(label_log_probs(model, tokenizer, prompts, verbalizer), dim=1)  # (N, C)
        content_free = None
        if content_free_prompts:
            content_free = torch.softmax(label_log_probs(model, tokenizer, content_free_prompts, verbalizer),
                                         dim=1).mean(dim=0)  # (C,)
            probabilities = calibrate(probabilities, content_free)
    finally:
        model.train(was_training)
    return PromptPredictions(probabilities, probabilities.argmax(dim=1), content_free)


def content_free_prompts(build: Callable[[str], str], inputs: Sequence[str] = CONTENT_FREE_INPUTS) -> list[str]:
    """The prompts for contextual calibration: `build(x)` (e.g. ``lambda x: few_shot_prompt(t, shots, x, v)``) for
    each content-free input."""
    return [build(x) for x in inputs]


# --- evaluation, sensitivity and a template search ---------------------------------------------------------


@dataclass(frozen=True)
class PromptEvaluation:
    accuracy: float
    predictions: Tensor
    probabilities: Tensor


def evaluate_prompting(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int], template: str,
                       verbalizer: Verbalizer, shots: Sequence[tuple[str, int]] = (), *, calibrated: bool = False,
                       **prompt_options: str) -> PromptEvaluation:
    """Accuracy of prompting on a labelled set: every text with the same demonstrations (`shots`, none for
    zero-shot), read by likelihood, calibrated with the content-free inputs if asked."""
    if len(texts) != len(labels) or not texts:
        raise ValueError(f"evaluate_prompting: give as many labels as texts, at least one; got {len(texts)} and "
                         f"{len(labels)}")

    def build(x: str) -> str:
        return few_shot_prompt(template, shots, x, verbalizer, **prompt_options)

    result = classify_by_likelihood(model, tokenizer, [build(x) for x in texts], verbalizer,
                                    content_free_prompts=content_free_prompts(build) if calibrated else None)
    accuracy = float((result.predictions == torch.tensor(list(labels))).float().mean())
    return PromptEvaluation(accuracy, result.predictions, result.probabilities)


def candidate_templates(prefixes: Iterable[str], connectors: Iterable[str]) -> list[str]:
    """Templates from every prefix and connector: ``f"{prefix} [X] {connector} [Z]"`` (a prefix may be "")."""
    return [" ".join(part for part in (prefix, INPUT_SLOT, connector, ANSWER_SLOT) if part)
            for prefix, connector in itertools.product(prefixes, connectors)]


def search_templates(model: Any, tokenizer: Any, templates: Sequence[str], texts: Sequence[str],
                     labels: Sequence[int], verbalizer: Verbalizer, shots: Sequence[tuple[str, int]] = ()
                     ) -> list[tuple[str, float]]:
    """A small automatic template search: score every candidate on a labelled development set and rank them.
    Choose on development data and report on other data: the best of many templates is optimistic.

    Returns: (template, development accuracy), best first (ties in the order given).
    """
    scored = [(template, evaluate_prompting(model, tokenizer, texts, labels, template, verbalizer, shots).accuracy)
              for template in templates]
    return sorted(scored, key=lambda pair: -pair[1])


def generate_and_parse(model: Any, tokenizer: Any, prompt: str, verbalizer: Verbalizer, max_new_tokens: int = 5
                       ) -> int | None:
    """The other way to read an answer: generate greedily after the prompt and return the label whose word the
    text starts with (the longest match wins: "NOT SARCASTIC" before "SARCASTIC"), or None if it starts with no
    label word: the model did not follow the format."""
    from dl4nlp.gpt import generate

    ids = torch.tensor([_encode(tokenizer, prompt)], device=_device(model))
    if hasattr(model, "config") and hasattr(model.config, "n_positions") and not hasattr(model, "generation_config"):
        new = generate(model, ids, max_new_tokens)[0, ids.shape[1]:]
    else:
        new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=0)[0, ids.shape[1]:]
    text = " ".join(tokenizer.decode(new.tolist()).split()).lower()
    matches = [(len(word), label) for label, words in enumerate(verbalizer.words) for word in words
               if re.match(re.escape(" ".join(word.lower().split())) + r"\b", text)]
    return max(matches)[1] if matches else None


def expected_calibration_error(probabilities: Tensor, labels: Tensor, bins: int = 10) -> float:
    """How far confidence is from accuracy: the mean over confidence bins of |accuracy - mean confidence|,
    weighted by the bins' sizes. A model that is confidently wrong has a large one.

    Args: probabilities (N, C); labels (N,); bins.
    Returns: a number in [0, 1].
    """
    confidence, predictions = probabilities.max(dim=1)  # (N,), (N,)
    correct = (predictions == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += float(inside.float().mean()) * abs(float(correct[inside].mean() - confidence[inside].mean()))
    return error

