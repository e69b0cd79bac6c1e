"""Which model should you use? The lecture's five eras of NLP as recipes with one interface, measured alike.

    era                     recipe                                        labelled examples   what can be read
    rule-based              `lexicon_recipe`: VADER's lexicon and rules   none                every word's score, every rule
    statistical             `bag_of_words_recipe`: naive Bayes, LR         hundreds or more   one weight per word
    neural end-to-end       `neural_recipe`: the RNN or CNN classifier    thousands           inputs and outputs
    pretrain and finetune   `finetune_recipe`: a pretrained encoder + head hundreds           inputs and outputs
    pretrain and prompt     `prompt_recipe`: a causal LM, template, words  none, or k examples label-word probabilities

A recipe is a function ``recipe(sentences, labels, seed) -> classifier``: it learns from the labelled
sentences it is given (the lexicon and a zero-shot prompt ignore them) and returns a classifier, an object
whose ``predict(sentences)`` gives one label per sentence (0 negative, 1 positive). The recipes reuse the
course's code: `dl4nlp.training.fit` with the chapters' models, `dl4nlp.finetune` and `dl4nlp.prompting`.

`measure_recipe` runs a recipe with several seeds. Seed s draws a balanced training sample of the asked size
and a test sample that depends on s alone, so every recipe is scored on the same test sentences for the same
seed, and a method with nothing to train still has a spread over seeds: that of its test sample.
`paired_difference` says whether two methods differ by more than that noise.

Interpretability: `LexiconClassifier.explain` gives every word's score before and after VADER's rules (their
normalized sum is the sentence's score); `bag_of_words_evidence` splits a bag-of-words model's log-odds exactly
into a bias and one weight per token; `leave_one_out` probes any classifier from outside, one word removed at a
time, which is all a neural model allows.
"""

from __future__ import annotations

import copy
import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import datasets
import numpy as np
import torch
from torch import Tensor, nn

from dl4nlp.data import Vocab, build_vocab, make_loader, pad_batch, tokenize
from dl4nlp.finetune import (SequenceClassifier, batch_loss, encode_dataset, freeze, optimizer_and_schedule, predict,
                             trim_padding)
from dl4nlp.prompting import Verbalizer, classify_by_likelihood, few_shot_prompt
from dl4nlp.reproducibility import seed_statistics
from dl4nlp.training import classification_loss, evaluate, fit


class Classifier(Protocol):
    """What a recipe returns: ``predict(sentences)`` -> labels (N,), integers 0 .. C-1."""

    def predict(self, sentences: Sequence[str]) -> np.ndarray: ...


Recipe = Callable[[Sequence[str], Sequence[int], int], Classifier]  # (sentences, labels, seed) -> classifier


def _check_data(function: str, sentences: Sequence[str], labels: Sequence[int]) -> None:
    if isinstance(sentences, str) or len(sentences) != len(labels):
        raise ValueError(f"{function}: give a list of sentences and as many labels (got {len(sentences)} sentences "
                         f"and {len(labels)} labels)")


# --- rule-based: a sentiment lexicon with rules (VADER) ------------------------------------------------


@functools.cache
def vader() -> Any:
    """VADER's analyzer (Hutto and Gilbert 2014): a lexicon of about 7,500 words and emoticons, each scored by
    people from -4 (most negative) to +4, and rules for negation, boosters ("very"), "but", capitals and "!".
    From the PyPI package vaderSentiment, which ships the lexicon: nothing is downloaded."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as error:  # pragma: no cover - the package is a dependency of dl4nlp
        raise ImportError("the rule-based classifier needs the package vaderSentiment: pip install vaderSentiment") \
            from error
    return SentimentIntensityAnalyzer()


@dataclass(frozen=True)
class WordEvidence:
    """One word of a sentence as VADER reads it: its score in the lexicon (0 if it is not there) and its score
    after the rules (a negation before it multiplies by -0.74, a booster adds 0.293, "but" halves what comes
    before it and multiplies what follows by 1.5)."""

    word: str
    lexicon: float
    valence: float


@dataclass(frozen=True)
class LexiconClassifier:
    """Rule-based sentiment: positive when VADER's compound score is above `threshold`.

        compound = s / sqrt(s^2 + 15),   s = the sum of the words' valences after the rules   (in [-1, 1])

    A sentence with no word of the lexicon scores 0 and, with threshold 0, is called negative.
    """

    threshold: float = 0.0

    def scores(self, sentences: Sequence[str]) -> np.ndarray:
        """VADER's compound score of each sentence, (N,) in [-1, 1]."""
        analyzer = vader()
        return np.array([analyzer.polarity_scores(sentence)["compound"] for sentence in sentences], dtype=float)

    def predict(self, sentences: Sequence[str]) -> np.ndarray:
        return (self.scores(sentences) > self.threshold).astype(np.int64)

    def explain(self, sentence: str) -> list[WordEvidence]:
        """Every word of `sentence` with its lexicon score and its score after the rules: VADER's own steps
        (`polarity_scores` without its emoji and punctuation-emphasis steps), so for a sentence without emoji,
        "!" or "?" the normalized sum of the valences is its compound score."""
        from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentiText

        analyzer = vader()
        text = SentiText(sentence)
        words = text.words_and_emoticons
        valences: list[float] = []
        for i, word in enumerate(words):
            lower = word.lower()
            if lower in BOOSTER_DICT or (lower == "kind" and i + 1 < len(words) and words[i + 1].lower() == "of"):
                valences.append(0.0)  # a modifier, not a sentiment of its own
                continue
            valences = analyzer.sentiment_valence(0, text, word, i, valences)
        valences = analyzer._but_check(words, valences)
        return [WordEvidence(word, float(analyzer.lexicon.get(word.lower(), 0.0)), float(valence))
                for word, valence in zip(words, valences)]


def lexicon_recipe(threshold: float = 0.0) -> Recipe:
    """The rule-based era: a `LexiconClassifier`; the training data are not used (nothing is learned)."""

    def recipe(sentences: Sequence[str], labels: Sequence[int], seed: int) -> LexiconClassifier:
        _check_data("lexicon_recipe", sentences, labels)
        return LexiconClassifier(threshold)

    return recipe


# --- statistical: a bag of words and a linear classifier (scikit-learn) -----------------------------------


def bag_of_words_recipe(estimator: Any) -> Recipe:
    """The statistical era: count every word of a sentence (`dl4nlp.data.tokenize`, the tokens of SST-2), then a
    scikit-learn classifier on the counts, e.g. MultinomialNB() (naive Bayes) or LogisticRegression().

    Args: estimator, an unfitted scikit-learn classifier; each call fits a fresh clone (with random_state=seed
      where it has one).
    Returns: a recipe whose classifier is the fitted scikit-learn Pipeline (CountVectorizer, the estimator).
    """
    from sklearn.base import clone
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.pipeline import make_pipeline

    def recipe(sentences: Sequence[str], labels: Sequence[int], seed: int) -> Any:
        _check_data("bag_of_words_recipe", sentences, labels)
        model = clone(estimator)
        if "random_state" in model.get_params():
            model.set_params(random_state=seed)
        counts = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
        return make_pipeline(counts, model).fit(list(sentences), np.asarray(labels))

    return recipe


def word_weights(pipeline: Any) -> dict[str, float]:
    """How far each word moves a fitted bag-of-words pipeline towards class 1 (positive), in log-odds per
    occurrence: logistic regression's coefficient, or naive Bayes's log P(w | positive) - log P(w | negative).

    Args: pipeline, from `bag_of_words_recipe` with LogisticRegression or MultinomialNB, two classes.
    Returns: {word: weight}, every word of the training vocabulary.
    """
    counts, model = pipeline.steps[0][1], pipeline.steps[-1][1]
    if hasattr(model, "feature_log_prob_"):  # naive Bayes: one log-probability table per class
        weights = model.feature_log_prob_[1] - model.feature_log_prob_[0]
    elif hasattr(model, "coef_") and model.coef_.shape[0] == 1:
        weights = model.coef_[0]
    else:
        raise TypeError(f"word_weights: expected a fitted two-class LogisticRegression or MultinomialNB, got "
                        f"{type(model).__name__}")
    return dict(zip(counts.get_feature_names_out().tolist(), weights.tolist()))


def bag_of_words_evidence(pipeline: Any, sentence: str) -> tuple[float, list[tuple[str, float]]]:
    """A bag-of-words model's decision on one sentence, split exactly into its parts:

        log P(positive | x) - log P(negative | x) = bias + sum over the tokens t of x of weight(t)

    with `word_weights` (a token the model never saw weighs 0); bias is logistic regression's intercept or naive
    Bayes's log prior ratio.

    Returns: (bias, [(token, weight), ...] in the order of the sentence).
    """
    model = pipeline.steps[-1][1]
    weights = word_weights(pipeline)
    bias = float(model.class_log_prior_[1] - model.class_log_prior_[0]) if hasattr(model, "class_log_prior_") \
        else float(model.intercept_[0])
    return bias, [(token, weights.get(token, 0.0)) for token in tokenize(sentence)]


# --- neural end to end: the RNN and CNN chapters' classifiers, trained from random weights -------------


@dataclass(frozen=True)
class EpochAccuracy:
    """After one epoch: the accuracy on the training sample and on the validation sentences."""

    epoch: int
    train: float
    validation: float


@dataclass(frozen=True)
class VocabClassifier:
    """A sentence classifier over a word vocabulary: model(tokens (B, T), lengths (B,)) -> logits (B, C), as the
    RNN and CNN chapters' classifiers; `history` holds the accuracies after every epoch when the recipe was
    given validation data."""

    model: nn.Module
    vocab: Vocab
    history: tuple[EpochAccuracy, ...] = ()

    def probabilities(self, sentences: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Softmax of the logits, (N, C), in eval mode without gradients."""
        device = next(self.model.parameters()).device
        self.model.eval()
        rows = []
        with torch.no_grad():
            for start in range(0, len(sentences), batch_size):
                ids = [self.vocab.encode(tokenize(s)) or [self.vocab.unk_id] for s in sentences[start:start + batch_size]]
                tokens, lengths = pad_batch(ids, self.vocab.pad_id)  # (B, T), (B,)
                rows.append(torch.softmax(self.model(tokens.to(device), lengths.to(device)), dim=-1).cpu())
        return torch.cat(rows).numpy()

    def predict(self, sentences: Sequence[str]) -> np.ndarray:
        return self.probabilities(sentences).argmax(axis=1)


def _sentence_dataset(sentences: Sequence[str], labels: Sequence[int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"sentence": list(sentences), "label": [int(label) for label in labels]})


def neural_recipe(build: Callable[[int, torch.Generator], nn.Module], *, epochs: int, lr: float,
                  batch_size: int = 32, validation: tuple[Sequence[str], Sequence[int]] | None = None,
                  device: torch.device | str | None = None) -> Recipe:
    """The neural end-to-end era: a vocabulary of the training sentences, a classifier from random weights, and
    `dl4nlp.training.fit` with `classification_loss` (Adam, gradient norm clipped at 1).

    Args: build(vocab_size, generator) -> a classifier such as `dl4nlp.rnn.SequenceClassifier` or
      `dl4nlp.cnn.TextCNN`, its weights drawn from the generator; epochs; lr, Adam's learning rate; batch_size;
      validation, (sentences, labels) to measure after every epoch, with the training sample (the classifier's
      `history`), or None; device, by default `dl4nlp.runtime.get_device()`.
    Returns: a recipe whose classifier is a `VocabClassifier`. The seed draws the weights, the batch order and
      dropout.
    """
    if epochs < 1:
        raise ValueError(f"neural_recipe: epochs must be >= 1, got {epochs}")

    def recipe(sentences: Sequence[str], labels: Sequence[int], seed: int) -> VocabClassifier:
        _check_data("neural_recipe", sentences, labels)
        train = _sentence_dataset(sentences, labels)
        vocab = build_vocab(train)
        model = build(len(vocab), torch.Generator().manual_seed(seed))
        loader = make_loader(train, vocab, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
        history: list[EpochAccuracy] = []
        validate = None
        if validation is not None:
            train_loader = make_loader(train, vocab, 256)
            validation_loader = make_loader(_sentence_dataset(*validation), vocab, 256)

            def validate(model: nn.Module) -> float:
                accuracy = evaluate(model, validation_loader)
                history.append(EpochAccuracy(len(history) + 1, evaluate(model, train_loader), accuracy))
                return accuracy

        fit(model, loader, classification_loss, epochs=epochs, lr=lr, validate=validate, device=device,
            progress=False, seed=seed)
        return VocabClassifier(model.eval(), vocab, tuple(history))

    return recipe


# --- pretrain and finetune: a pretrained encoder with a task head (dl4nlp.finetune) ----------------------


@dataclass(frozen=True)
class EncoderClassifier:
    """A finetuned `dl4nlp.finetune.SequenceClassifier` with its tokenizer."""

    model: nn.Module
    tokenizer: Any
    max_length: int = 128

    def probabilities(self, sentences: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Softmax of the logits, (N, C), in eval mode without gradients; sentences are batched by length."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        data = encode_dataset(self.tokenizer, [sentences[i] for i in order], [0] * len(order), self.max_length)
        device = next(self.model.parameters()).device
        self.model.eval()
        rows = []
        with torch.no_grad():
            for input_ids, attention_mask, _ in torch.utils.data.DataLoader(data, batch_size=batch_size,
                                                                            collate_fn=trim_padding):
                logits = self.model(input_ids.to(device), attention_mask.to(device)).logits  # (B, C)
                rows.append(torch.softmax(logits, dim=-1).cpu())
        probabilities = torch.cat(rows).numpy()
        result = np.empty_like(probabilities)
        result[order] = probabilities  # back to the order of `sentences`
        return result

    def predict(self, sentences: Sequence[str]) -> np.ndarray:
        return self.probabilities(sentences).argmax(axis=1)


def finetune_recipe(encoder: nn.Module, tokenizer: Any, *, trainable_layers: int | None, epochs: int, lr: float,
                    batch_size: int = 16, warmup_ratio: float = 0.1, pooling: str = "mean",
                    max_length: int = 64) -> Recipe:
    """The pretrain-and-finetune era: a copy of the pretrained `encoder` with a new head
    (`dl4nlp.finetune.SequenceClassifier`), `freeze` to choose what is trained, AdamW with warmup and linear
    decay (`optimizer_and_schedule`), and `dl4nlp.training.fit` with `batch_loss`, as the finetuning chapter
    trains it.

    Args: encoder, e.g. `dl4nlp.bert.BertModel.from_huggingface(...)` (copied, never changed); tokenizer, its
      tokenizer; trainable_layers, see `freeze` (0: the head only; k: the top k layers too; None: all); epochs;
      lr, the peak learning rate; batch_size; warmup_ratio; pooling, "cls" or "mean"; max_length in tokens.
    Returns: a recipe whose classifier is an `EncoderClassifier`. The seed draws the head's weights (from
      torch's global generator, which the head uses), the batch order and dropout.
    """
    if epochs < 1:
        raise ValueError(f"finetune_recipe: epochs must be >= 1, got {epochs}")

    def recipe(sentences: Sequence[str], labels: Sequence[int], seed: int) -> EncoderClassifier:
        _check_data("finetune_recipe", sentences, labels)
        torch.manual_seed(seed)
        device = next(encoder.parameters()).device
        model = SequenceClassifier(copy.deepcopy(encoder), num_labels=2, pooling=pooling).to(device)
        freeze(model, trainable_layers)
        data = encode_dataset(tokenizer, sentences, labels, max_length)
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=trim_padding,
                                             generator=torch.Generator().manual_seed(seed))
        optimizer, scheduler = optimizer_and_schedule(model, lr, epochs * len(loader), warmup_ratio)
        fit(model, loader, batch_loss, epochs=epochs, optimizer=optimizer, scheduler=scheduler, device=device,
            progress=False, seed=seed)
        return EncoderClassifier(model.eval(), tokenizer, max_length)

    return recipe


# --- pretrain and prompt: a causal language model, a template and a verbalizer (dl4nlp.prompting) --------


@dataclass(frozen=True)
class PromptClassifier:
    """Zero- or few-shot classification by label-word likelihood (`dl4nlp.prompting.classify_by_likelihood`):
    each sentence goes into `template` after the demonstrations; the label whose words the model finds most
    likely next wins."""

    model: Any
    tokenizer: Any
    template: str
    verbalizer: Verbalizer
    demonstrations: tuple[tuple[str, int], ...] = ()
    separator: str = "\n\n"

    def prompts(self, sentences: Sequence[str]) -> list[str]:
        return [few_shot_prompt(self.template, self.demonstrations, sentence, self.verbalizer,
                                separator=self.separator) for sentence in sentences]

    def probabilities(self, sentences: Sequence[str]) -> np.ndarray:
        """The label probabilities, (N, C), normalized over the labels."""
        return classify_by_likelihood(self.model, self.tokenizer, self.prompts(sentences),
                                      self.verbalizer).probabilities.numpy()

    def predict(self, sentences: Sequence[str]) -> np.ndarray:
        return self.probabilities(sentences).argmax(axis=1)


def prompt_recipe(model: Any, tokenizer: Any, template: str, verbalizer: Verbalizer, *, shots: int = 0,
                  separator: str = "\n\n", demonstration_words: int | None = None) -> Recipe:
    """The pretrain-and-prompt era: no training. With shots = k > 0, k demonstrations are drawn from the labelled
    sentences (as balanced as k allows, in a random order), which is all the labelled data the method uses.

    Args: model and tokenizer, a causal LM (`dl4nlp.gpt.GPT` or a transformers one); template, with [X] and [Z]
      last; verbalizer; shots, k >= 0; separator, between the demonstrations and the query;
      demonstration_words, draw demonstrations only among sentences of at most this many words (a small
      model's context is short), or None.
    Returns: a recipe whose classifier is a `PromptClassifier`.
    """
    if shots < 0:
        raise ValueError(f"prompt_recipe: shots must be >= 0, got {shots}")

    def recipe(sentences: Sequence[str], labels: Sequence[int], seed: int) -> PromptClassifier:
        _check_data("prompt_recipe", sentences, labels)
        rng = random.Random(f"demonstrations {seed}")
        allowed = [i for i, sentence in enumerate(sentences)
                   if demonstration_words is None or len(sentence.split()) <= demonstration_words]
        by_label = {label: rng.sample([i for i in allowed if labels[i] == label],
                                      sum(1 for i in allowed if labels[i] == label))
                    for label in range(verbalizer.num_labels)}
        chosen = []
        for k in range(shots):  # labels in turn: 0, 1, 0, 1, ...
            label, rank = k % verbalizer.num_labels, k // verbalizer.num_labels
            if rank >= len(by_label[label]):
                raise ValueError(f"prompt_recipe: {shots} demonstrations asked for, but only {len(by_label[label])} "
                                 f"allowed sentences have the label {label}")
            chosen.append(by_label[label][rank])
        rng.shuffle(chosen)
        demonstrations = tuple((sentences[i], int(labels[i])) for i in chosen)
        return PromptClassifier(model, tokenizer, template, verbalizer, demonstrations, separator)

    return recipe


# --- measuring: seeds, samples, differences ---------------------------------------------------------------


def balanced_sample(labels: Sequence[int], size: int, seed: int) -> list[int]:
    """`size` indices of `labels` drawn at random without replacement, as many of each label as possible (the
    first labels get one more when `size` does not divide). For one seed the samples are nested: the first 100
    of a sample of 400 are the sample of 100.

    Raises: ValueError if a label has too few examples.
    """
    classes = sorted(set(int(label) for label in labels))
    if size < 0 or (size and not classes):
        raise ValueError(f"balanced_sample: size must be between 0 and {len(labels)}, got {size}")
    rng = random.Random(f"train {seed}")
    pools = {label: rng.sample([i for i, y in enumerate(labels) if int(y) == label],
                               sum(1 for y in labels if int(y) == label)) for label in classes}
    wanted = {label: size // len(classes) + (k < size % len(classes)) for k, label in enumerate(classes)} \
        if classes else {}
    short = [label for label in classes if wanted[label] > len(pools[label])]
    if short:
        raise ValueError(f"balanced_sample: {size} examples need {wanted[short[0]]} of label {short[0]}, "
                         f"but there are {len(pools[short[0]])}")
    chosen = [index for label in classes for index in pools[label][:wanted[label]]]
    rng.shuffle(chosen)
    return chosen


def draw_test_sample(size: int, test_size: int, seed: int) -> list[int]:
    """`test_size` of the indices 0 .. size-1, drawn by `seed` alone: every recipe measured with the same seed is
    scored on the same test sentences."""
    if not 0 < test_size <= size:
        raise ValueError(f"draw_test_sample: test_size must be between 1 and {size}, got {test_size}")
    return random.Random(f"test {seed}").sample(range(size), test_size)


@dataclass(frozen=True)
class Run:
    """One seed of `measure_recipe`: the labelled examples used, the test accuracy, the training time (the
    recipe's call, in seconds), the classifier, and the test sentences (indices) with its predictions."""

    seed: int
    train_size: int
    accuracy: float
    seconds: float
    classifier: Classifier
    test_indices: tuple[int, ...]
    predictions: np.ndarray


def measure_recipe(recipe: Recipe, train: tuple[Sequence[str], Sequence[int]],
                   test: tuple[Sequence[str], Sequence[int]], *, train_size: int, test_size: int,
                   seeds: Sequence[int]) -> list[Run]:
    """Train with every seed on its own balanced sample of `train_size` labelled sentences (`balanced_sample`),
    time the training, and score the classifier on the seed's test sample (`draw_test_sample`).

    Args: recipe; train and test, (sentences, labels); train_size, the labelled examples to use (0: none);
      test_size; seeds.
    Returns: one `Run` per seed.
    """
    (train_sentences, train_labels), (test_sentences, test_labels) = train, test
    _check_data("measure_recipe", train_sentences, train_labels)
    _check_data("measure_recipe", test_sentences, test_labels)
    runs = []
    for seed in seeds:
        chosen = balanced_sample(train_labels, train_size, seed)
        start = time.perf_counter()
        classifier = recipe([train_sentences[i] for i in chosen], [int(train_labels[i]) for i in chosen], seed)
        seconds = time.perf_counter() - start
        scored = draw_test_sample(len(test_sentences), test_size, seed)
        predictions = np.asarray(classifier.predict([test_sentences[i] for i in scored]))
        accuracy = float((predictions == np.array([int(test_labels[i]) for i in scored])).mean())
        runs.append(Run(seed, train_size, accuracy, seconds, classifier, tuple(scored), predictions))
    return runs


@dataclass(frozen=True)
class Difference:
    """`paired_difference`'s result: the mean of the per-seed differences a - b, its standard error, and whether
    it is clear: larger than twice the standard error (or nonzero when every seed gives the same difference)."""

    difference: float
    standard_error: float
    clear: bool


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """How much a exceeds b, paired by seed (both measured on the same test sample per seed).

        d_s = a_s - b_s,   difference = mean(d),   standard error = sd(d) / sqrt(n)   (sd with ddof 1)

    Args: a, b, one value per seed, in the same order of seeds, at least two.
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired_difference: give one value per seed for both, at least two (got {len(a)} and "
                         f"{len(b)})")
    spread = seed_statistics(float(x) - float(y) for x, y in zip(a, b))  # the differences d_s
    mean, error = spread.mean, spread.standard_error
    return Difference(mean, error, abs(mean) > 2 * error if error > 0 else abs(mean) > 1e-12)


def leave_one_out(probabilities: Callable[[Sequence[str]], np.ndarray], sentence: str) -> list[tuple[str, float]]:
    """Probe a classifier from outside: for every token of `sentence` (`dl4nlp.data.tokenize`), how much
    P(positive) drops when that token alone is removed (positive: the word pushed towards positive).

    Args: probabilities(sentences) -> (N, 2), e.g. a `VocabClassifier`'s or `EncoderClassifier`'s.
    Returns: [(token, P(positive | sentence) - P(positive | sentence without it)), ...] in the sentence's order.
    """
    tokens = tokenize(sentence)
    variants = [" ".join(tokens)] + [" ".join(tokens[:i] + tokens[i + 1:]) for i in range(len(tokens))]
    positive = np.asarray(probabilities(variants))[:, 1]  # (1 + number of tokens,)
    return [(token, float(positive[0] - positive[i + 1])) for i, token in enumerate(tokens)]
