"""Exercises of the prompting assignment: templates, few-shot prompts, scoring label words with a causal language
model (several tokens per word), and contextual calibration.

`fill_template` and `few_shot_prompt` return strings, compared with the reference's exactly; their cases vary
the template (a space or a newline before [Z], text before [X]), the headers and the separator, and the
demonstrations (zero to four, labels in any order), so that a prompt that keeps the answer slot, writes the
query's label, or shows the demonstrations in another order differs.

`continuation_log_probs` and `label_word_scores` are compared with the reference on the same model: a tiny GPT
(`GPTConfig.tiny`) with random weights drawn from the case's generator, so that every position's distribution
differs and an off-by-one position, a missing sub-token or a summed prompt shows. Their tokenizer is the
grader's own (`CaseTokenizer`): GPT-2's convention that a word's leading space belongs to its first token
(" good" and "good" are different tokens), and a small vocabulary in which some label words are one token and
others several (" terrible" -> " ter", "rible"), so that reading only a word's first token, or leaving out the
space, gives other numbers. The model is deterministic (no dropout) and the scores need no gradients: the
reference computes them under torch.no_grad(), so only their values are compared (`exercises.mismatch`).

`calibrate` is compared with outputs and gradients; its cases have a content-free distribution far from uniform,
so that multiplying by it, dividing by the uniform or forgetting to renormalize differ.

While `few_shot_prompt` runs, the notebook's `fill_template` is the grader's copy of the reference (`Part.given`), and
while `label_word_scores` runs, its `continuation_log_probs` is: a bug in one part never costs another its points.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from dl4nlp.exercises import Assignment, Case, Part, normal
from dl4nlp.gpt import GPT, GPTConfig
from dl4nlp.prompting import ANSWER_SLOT, INPUT_SLOT, Verbalizer, causal_lm_logits, check_template, model_device

# --- the grader's copies of the functions that later parts call (`Part.given`) ---------------------------------


def fill_template(template: str, x: str, answer: str | None = None) -> str:
    """The grader's copy of `dl4nlp.prompting.fill_template`."""
    check_template("fill_template", template)
    filled = template.replace(INPUT_SLOT, x)
    return filled.replace(ANSWER_SLOT, answer) if answer is not None else filled[:filled.rindex(ANSWER_SLOT)].rstrip()


def continuation_log_probs(model: Any, prompt_ids: Sequence[int], continuations: Sequence[Sequence[int]]
                           ) -> torch.Tensor:
    """The grader's copy of `dl4nlp.prompting.continuation_log_probs`."""
    if not prompt_ids or not continuations or not all(continuations):
        raise ValueError("continuation_log_probs: the prompt and every continuation need at least one token")
    rows = [list(prompt_ids) + list(c) for c in continuations]
    T = max(map(len, rows))
    padded = torch.tensor([row + [row[-1]] * (T - len(row)) for row in rows], device=model_device(model))
    with torch.no_grad():
        log_probs = F.log_softmax(causal_lm_logits(model, padded).float(), dim=-1)  # (B, T, V)
    P = len(prompt_ids)
    scores = []
    for b, continuation in enumerate(continuations):
        positions = torch.arange(P - 1, P - 1 + len(continuation), device=padded.device)
        scores.append(log_probs[b, positions, torch.tensor(list(continuation), device=padded.device)].sum())
    return torch.stack(scores).cpu()  # (N,)


# --- the grader's tokenizer: GPT-2's leading spaces, words of one token and of several ------------------------

_WORDS = ("review", "sentiment", "it", "was", "the", "film", "movie", "a", "is", "overall", "in", "short", "i",
          "thought", "plot", "acting", "not", "label", "data", "answer", "good", "bad", "great", "positive",
          "negative", "yes", "no", "sarcastic", "funny", "dull", "lovely", "boring", "and", "but", "so", "very")
_PIECES = ("ter", "rible", "excel", "lent", "aw", "ful", "bril", "liant", "medi", "ocre", "amaz", "ing", "re",
           "view", "sar", "cas", "tic", "pos", "neg", "ative", "itive")


class CaseTokenizer:
    """A small deterministic tokenizer with GPT-2's conventions, for the grader's cases.

    Text is split as GPT-2 splits it (a word with the space before it, punctuation, runs of spaces and newlines);
    a piece in the vocabulary is one token, any other falls apart into the longest vocabulary pieces from the
    left. A leading space is part of a word's first token: "Ġgood" (" good") is not "good". Some words are one
    token (" good", " bad", " great"), others several (" terrible" -> " ter" "rible", " excellent" -> " excel"
    "lent"). No special tokens: encode(text, add_special_tokens=False) and encode(text) are the same.
    """

    def __init__(self) -> None:
        characters = [chr(c) for c in range(32, 127)] + ["\n"]
        tokens = [*characters, *(" " + c for c in characters if c not in " \n")]
        tokens += [w for word in _WORDS for w in (word, " " + word)]
        tokens += [p for piece in _PIECES for p in (piece, " " + piece)]
        self.vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
        self.tokens = list(self.vocab)
        self.longest = max(map(len, self.vocab))

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _piece(self, piece: str) -> list[int]:
        ids, start = [], 0
        while start < len(piece):
            for end in range(min(len(piece), start + self.longest), start, -1):
                if piece[start:end] in self.vocab:
                    ids.append(self.vocab[piece[start:end]])
                    start = end
                    break
            else:
                raise ValueError(f"CaseTokenizer: cannot encode {piece[start]!r}")
        return ids

    def encode(self, text: str, add_special_tokens: bool = False, **_: Any) -> list[int]:
        return [i for piece in re.findall(r" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+", text)
                for i in self._piece(piece)]

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = False, **_: Any) -> dict[str, Any]:
        if isinstance(text, str):
            return {"input_ids": self.encode(text)}
        return {"input_ids": [self.encode(t) for t in text]}

    def decode(self, ids: Sequence[int], **_: Any) -> str:
        return "".join(self.tokens[int(i)] for i in ids)

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.tokens[int(i)].replace(" ", "Ġ") for i in ids]

    def __repr__(self) -> str:
        return f"CaseTokenizer(vocab_size={len(self)}, GPT-2's leading spaces)"


@functools.lru_cache(maxsize=1)
def case_tokenizer() -> CaseTokenizer:
    """The grader's tokenizer, built once per process."""
    return CaseTokenizer()


def _model(generator: torch.Generator, vocab_size: int) -> GPT:
    """A tiny GPT with random weights from `generator`, scaled up so that its next-token distributions are peaked
    and differ from position to position (small initial weights would make them all nearly uniform)."""
    config = GPTConfig.tiny(vocab_size=vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    model = GPT(config, generator=torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,),
                                                                                  generator=generator))))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(normal(generator, *parameter.shape, scale=0.5))
    return model.eval()


# --- fill_template and few_shot_prompt -----------------------------------------------------------------------

TEMPLATES = ("Review: [X] Sentiment: [Z]", "[X] Overall, it was [Z]", 'Data: "[X]" Label: [Z]',
             "Q: Is this review positive?\n[X]\nA: [Z]", "[X] In short, the film is [Z] ", "[X]\n[Z]")
TEXTS = ("A gem of a film.", "The plot was dull and the acting worse.", "Not bad at all!",
         "I laughed, I cried; it was lovely.", "Boring.", "what a waste of two hours", "It is a brilliant movie.")
VERBALIZERS = (Verbalizer((("bad",), ("good",))), Verbalizer((("terrible", "awful"), ("great", "excellent"))),
               Verbalizer((("NOT SARCASTIC",), ("SARCASTIC",))), Verbalizer((("negative",), ("neutral",),
                                                                              ("positive",))))


def _pick(generator: torch.Generator, options: Sequence[Any]) -> Any:
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def template_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for number, template in enumerate(TEMPLATES):
        x = _pick(generator, TEXTS)
        answer = None if number % 2 else _pick(generator, ("good", "bad", "NOT SARCASTIC", "terrible"))
        drawn.append(Case((template, x, answer), f"template {template!r}, "
                          + ("no answer (the prompt)" if answer is None else f"answer {answer!r}")))
    for template in TEMPLATES[:3]:  # every template also without an answer
        drawn.append(Case((template, _pick(generator, TEXTS), None), f"template {template!r}, no answer (the prompt)"))
    drawn.append(Case(("[X] Overall, it was [Z]", _pick(generator, TEXTS), None), "template '[X] Overall, it was [Z]', "
                      "no answer (the prompt)"))
    return drawn


def few_shot_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    settings = ((0, "", "", "\n\n"), (2, "", "", "\n\n"), (3, "Classify each review.", "", "\n"),
                (4, "Here are two training instances:", "Here is a test instance. Fill in the correct label:", "\n\n"),
                (1, "", "Now this one:", " | "), (3, "", "", "\n"))
    for k, header, query_header, separator in settings:
        template = _pick(generator, TEMPLATES)
        verbalizer = _pick(generator, VERBALIZERS)
        texts = [TEXTS[int(i)] for i in torch.randperm(len(TEXTS), generator=generator)[:k + 1]]
        labels = torch.randint(verbalizer.num_labels, (k,), generator=generator).tolist()
        if k >= 2:
            labels[0], labels[-1] = 0, 1  # the order of the demonstrations shows
        examples = [(text, label) for text, label in zip(texts[:k], labels)]
        drawn.append(Case((template, examples, texts[k], verbalizer, header, query_header, separator),
                          f"{k} demonstration{'s' if k != 1 else ''}, template {template!r}, "
                          f"label words {verbalizer.words}, header {header!r}, query_header {query_header!r}, "
                          f"separator {separator!r}"))
    return drawn


# --- continuation_log_probs and label_word_scores ------------------------------------------------------------


def continuation_cases(generator: torch.Generator) -> list[Case]:
    tokenizer = case_tokenizer()
    drawn = []
    for P, lengths in ((5, (1, 2, 3)), (1, (2, 1)), (8, (3, 3, 1, 2)), (3, (4,))):
        model = _model(generator, len(tokenizer))
        prompt_ids = torch.randint(len(tokenizer), (P,), generator=generator).tolist()
        continuations = [torch.randint(len(tokenizer), (m,), generator=generator).tolist() for m in lengths]
        drawn.append(Case((model, prompt_ids, continuations),
                          f"a tiny random GPT, a prompt of {P} token{'s' if P > 1 else ''}, continuations of "
                          f"{', '.join(map(str, lengths))} tokens"))
    return drawn


WORD_SETS = (("bad", "good"), ("terrible", "great", "excellent", "awful"), ("no", "yes"),
             ("NOT SARCASTIC", "SARCASTIC"), ("negative", "positive", "brilliant"))
PROMPTS = ("Review: A gem of a film. Sentiment:", "The plot was dull. Overall, it was",
           'Data: "Not bad at all!" Label:', "Boring.\nA:", "I thought it was lovely. In short, the film is")


def word_cases(generator: torch.Generator) -> list[Case]:
    tokenizer = case_tokenizer()
    drawn = []
    for count, words in zip((2, 1, 3, 2), (WORD_SETS[1], WORD_SETS[0], WORD_SETS[4], WORD_SETS[3])):
        model = _model(generator, len(tokenizer))
        prompts = [PROMPTS[int(i)] for i in torch.randperm(len(PROMPTS), generator=generator)[:count]]
        drawn.append(Case((model, tokenizer, prompts, list(words)),
                          f"a tiny random GPT, {count} prompt{'s' if count > 1 else ''}, label words {list(words)} "
                          f"(tokens: {[len(tokenizer.encode(' ' + w)) for w in words]})"))
    return drawn


# --- calibrate -----------------------------------------------------------------------------------------------


def calibration_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for N, C in ((4, 2), (3, 3), (1, 2), (6, 4)):
        probabilities = torch.softmax(normal(generator, N, C, scale=1.5), dim=1)
        prior = torch.softmax(normal(generator, C, scale=1.5), dim=0)
        prior[0] += 0.3  # far from uniform
        prior = prior / prior.sum()
        drawn.append(Case((probabilities, prior), f"{N} example{'s' if N > 1 else ''}, {C} labels, content-free "
                          f"probabilities {[round(p, 2) for p in prior.tolist()]}"))
    return drawn


# --- typical bugs: known-wrong variants the feedback names -----------------------------------------------------
# Each is self-contained (torch and F only, and the notebook's own earlier functions, which the grader binds to
# the reference while a part runs), so that the tests can hand one in as a student's answer.


def fill_keeps_slot(template, x, answer=None):
    filled = template.replace("[X]", x)
    if answer is not None:
        return filled.replace("[Z]", answer)
    return filled[:filled.rindex("[Z]") + len("[Z]")]


def fill_keeps_space(template, x, answer=None):
    filled = template.replace("[X]", x)
    if answer is not None:
        return filled.replace("[Z]", answer)
    return filled[:filled.rindex("[Z]")]


def fill_ignores_answer(template, x, answer=None):
    filled = template.replace("[X]", x)
    return filled[:filled.rindex("[Z]")].rstrip()


def few_shot_label_leaks(template, examples, query, verbalizer, header="", query_header="", separator="\n\n"):
    parts = [header] if header else []
    for text, label in examples:
        parts.append(fill_template(template, text, verbalizer.word(label)))
    if query_header:
        parts.append(query_header)
    label = examples[-1][1] if examples else 0
    parts.append(fill_template(template, query, verbalizer.word(label)))
    return separator.join(parts)


def few_shot_reversed(template, examples, query, verbalizer, header="", query_header="", separator="\n\n"):
    parts = [header] if header else []
    for text, label in reversed(list(examples)):
        parts.append(fill_template(template, text, verbalizer.word(label)))
    if query_header:
        parts.append(query_header)
    parts.append(fill_template(template, query))
    return separator.join(parts)


def few_shot_label_numbers(template, examples, query, verbalizer, header="", query_header="",
                           separator="\n\n"):
    parts = [header] if header else []
    for text, label in examples:
        parts.append(fill_template(template, text, str(label)))
    if query_header:
        parts.append(query_header)
    parts.append(fill_template(template, query))
    return separator.join(parts)


def few_shot_headers_ignored(template, examples, query, verbalizer, header="", query_header="",
                             separator="\n\n"):
    parts = [fill_template(template, text, verbalizer.word(label)) for text, label in examples]
    parts.append(fill_template(template, query))
    return separator.join(parts)


def continuation_first_token_only(model, prompt_ids, continuations):
    scores = []
    for continuation in continuations:
        ids = torch.tensor([list(prompt_ids) + list(continuation)])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids), dim=-1)[0]
        P = len(prompt_ids)
        scores.append(log_probs[P - 1, continuation[0]])
    return torch.stack(scores)


def continuation_prompt_included(model, prompt_ids, continuations):
    scores = []
    for continuation in continuations:
        ids = torch.tensor([list(prompt_ids) + list(continuation)])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids), dim=-1)[0]
        tokens = list(prompt_ids) + list(continuation)
        scores.append(sum(log_probs[t - 1, tokens[t]] for t in range(1, len(tokens))))
    return torch.stack(scores)


def continuation_off_by_one(model, prompt_ids, continuations):
    scores = []
    for continuation in continuations:
        ids = torch.tensor([list(prompt_ids) + list(continuation)])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids), dim=-1)[0]
        P = len(prompt_ids)
        scores.append(sum(log_probs[P + j, c] for j, c in enumerate(continuation)))
    return torch.stack(scores)


def continuation_mean(model, prompt_ids, continuations):
    scores = []
    for continuation in continuations:
        ids = torch.tensor([list(prompt_ids) + list(continuation)])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids), dim=-1)[0]
        P = len(prompt_ids)
        scores.append(sum(log_probs[P - 1 + j, c] for j, c in enumerate(continuation)) / len(continuation))
    return torch.stack(scores)


def continuation_logits(model, prompt_ids, continuations):
    scores = []
    for continuation in continuations:
        ids = torch.tensor([list(prompt_ids) + list(continuation)])
        with torch.no_grad():
            logits = model(ids)[0]
        P = len(prompt_ids)
        scores.append(sum(logits[P - 1 + j, c] for j, c in enumerate(continuation)))
    return torch.stack(scores)


def words_without_space(model, tokenizer, prompts, words):
    word_ids = [tokenizer.encode(word, add_special_tokens=False) for word in words]
    return torch.stack([continuation_log_probs(model, tokenizer.encode(prompt, add_special_tokens=False), word_ids)
                        for prompt in prompts])


def words_first_token_only(model, tokenizer, prompts, words):
    word_ids = [tokenizer.encode(" " + word, add_special_tokens=False)[:1] for word in words]
    return torch.stack([continuation_log_probs(model, tokenizer.encode(prompt, add_special_tokens=False), word_ids)
                        for prompt in prompts])


def words_transposed(model, tokenizer, prompts, words):
    word_ids = [tokenizer.encode(" " + word, add_special_tokens=False) for word in words]
    return torch.stack([continuation_log_probs(model, tokenizer.encode(prompt, add_special_tokens=False), word_ids)
                        for prompt in prompts]).T


def calibrate_multiplies(label_probabilities, content_free):
    weighted = label_probabilities * content_free
    return weighted / weighted.sum(dim=1, keepdim=True)


def calibrate_uniform(label_probabilities, content_free):
    weighted = label_probabilities / (torch.ones_like(content_free) / content_free.shape[0])
    return weighted / weighted.sum(dim=1, keepdim=True)


def calibrate_not_renormalized(label_probabilities, content_free):
    return label_probabilities / content_free


def calibrate_over_examples(label_probabilities, content_free):
    weighted = label_probabilities / content_free
    return weighted / weighted.sum(dim=0, keepdim=True)


# Library calls that would do a part's work in one line (the grader also refuses torch's private ops).
_PRIVATE = ("torch._VF", "torch._C", "torch.ops")
_OPENPROMPT = ("openprompt",)  # its ManualTemplate, ManualVerbalizer, PromptForClassification, ...
_PIPELINES = ("transformers.pipeline", "transformers.pipelines")  # "zero-shot-classification", "text-generation"
_GENERATION = ("transformers.GenerationMixin", "transformers.generation")  # compute_transition_scores, ...

ASSIGNMENT = Assignment(
    name="prompting",
    parts=(
        Part("fill_template", "dl4nlp.prompting", 1, template_cases, forbidden=(*_OPENPROMPT, *_PRIVATE),
             bugs={"the prompt is cut after [Z] instead of before it: the answer slot stays in the prompt":
                       fill_keeps_slot,
                   "the space before [Z] is kept at the end of the prompt (the label word brings its own "
                   "space)": fill_keeps_space,
                   "the answer is ignored: a demonstration needs its label word in the slot":
                       fill_ignores_answer}),
        Part("few_shot_prompt", "dl4nlp.prompting", 2, few_shot_cases, forbidden=(*_OPENPROMPT, *_PRIVATE),
             given={"fill_template": fill_template},
             bugs={"the label leaks into the query: the query's answer slot must stay open":
                       few_shot_label_leaks,
                   "the demonstrations are in the wrong order (reversed)": few_shot_reversed,
                   "the demonstrations show the label's number instead of its word (verbalizer.word(label))":
                       few_shot_label_numbers,
                   "header and query_header are ignored": few_shot_headers_ignored}),
        Part("continuation_log_probs", "dl4nlp.prompting", 3, continuation_cases,
             forbidden=(*_PIPELINES, *_GENERATION, *_PRIVATE), rtol=1e-6,  # scores down to about -120
             bugs={"only the first sub-token of a continuation is scored (a word of several tokens needs the "
                   "chain rule: sum over all its tokens)": continuation_first_token_only,
                   "the log-probabilities of the prompt's tokens are summed as well: only the continuation's "
                   "count": continuation_prompt_included,
                   "off by one: the log-probability of token t is read at position t instead of t - 1 (the "
                   "logits at t predict token t + 1)": continuation_off_by_one,
                   "the mean over the continuation's tokens instead of their sum": continuation_mean,
                   "raw logits are summed: take log_softmax over the vocabulary first": continuation_logits}),
        Part("label_word_scores", "dl4nlp.prompting", 2, word_cases,
             forbidden=(*_PIPELINES, *_GENERATION, *_PRIVATE), rtol=1e-6,
             given={"continuation_log_probs": continuation_log_probs},
             bugs={"no leading space on the label word: encode ' ' + word, the way the word follows the prompt":
                       words_without_space,
                   "only the first sub-token of a label word is scored": words_first_token_only,
                   "the result is transposed: one row per prompt, one column per word": words_transposed}),
        Part("calibrate", "dl4nlp.prompting", 2, calibration_cases, forbidden=_PRIVATE,
             bugs={"multiplies by the content-free probabilities instead of dividing by them":
                       calibrate_multiplies,
                   "divides by the uniform distribution instead of the content-free probabilities (nothing "
                   "changes)": calibrate_uniform,
                   "the quotients are not renormalized: each row must sum to 1": calibrate_not_renormalized,
                   "renormalized over the examples (dim 0) instead of over the labels (dim 1)":
                       calibrate_over_examples}),
    ),
)
