"""dl4nlp.choosing: the five eras as recipes. Contracts (what each recipe returns, errors), equivalences (the
lexicon's explanation is VADER's score; a bag of words' evidence is its log-odds; the prompt classifier is
`classify_by_likelihood`), and invariants (seeds give the same samples and models; the test sample of a seed
is the same for every recipe; the pretrained encoder is never changed)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from dl4nlp import choosing
from dl4nlp.choosing import (EncoderClassifier, LexiconClassifier, PromptClassifier, VocabClassifier,
                             bag_of_words_evidence, bag_of_words_recipe, balanced_sample, draw_test_sample,
                             finetune_recipe, leave_one_out, lexicon_recipe, measure_recipe, neural_recipe,
                             paired_difference, prompt_recipe, word_weights)
from dl4nlp.data.corpus import story_wordpiece_tokenizer
from dl4nlp.prompting import Verbalizer, classify_by_likelihood, few_shot_prompt

ADJECTIVES = {1: ["good", "great", "lovely", "clever"], 0: ["bad", "dull", "awful", "boring"]}


def toy_data(size: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Sentences whose label is decided by one adjective: a task every trained era can learn."""
    rng = np.random.default_rng(seed)
    sentences, labels = [], []
    for i in range(size):
        label = i % 2
        word = ADJECTIVES[label][int(rng.integers(4))]
        noun = ["film", "plot", "cast", "ending"][int(rng.integers(4))]
        sentences.append(f"the {noun} was {word} .")
        labels.append(label)
    return sentences, labels


# --- rule-based ----------------------------------------------------------------------------------------


def test_lexicon_scores_are_vaders_and_the_threshold_decides():
    analyzer = choosing.vader()
    sentences = ["the plot was great .", "a dull , tedious film .", "the film opened on a tuesday ."]
    scores = LexiconClassifier().scores(sentences)
    assert scores.tolist() == [analyzer.polarity_scores(s)["compound"] for s in sentences]
    assert scores[0] > 0 > scores[1] and scores[2] == 0
    assert LexiconClassifier().predict(sentences).tolist() == [1, 0, 0]  # no word of the lexicon: not positive
    assert LexiconClassifier(threshold=-0.5).predict(sentences).tolist() == [1, 1, 1]
    assert LexiconClassifier(threshold=0.99).predict(sentences).tolist() == [0, 0, 0]


@pytest.mark.parametrize("sentence", ["the plot was not good .", "the acting was great but the ending was awful .",
                                      "it is a very clever film .", "the film was never dull and the cast was lovely .",
                                      "we took the bus home ."])
def test_lexicon_explanation_adds_up_to_the_score(sentence):
    """The valences after the rules, summed and normalized (s / sqrt(s^2 + 15)), are VADER's compound score."""
    from vaderSentiment.vaderSentiment import normalize

    evidence = LexiconClassifier().explain(sentence)
    assert [e.word for e in evidence] == sentence.split()
    total = sum(e.valence for e in evidence)
    expected = choosing.vader().polarity_scores(sentence)["compound"]
    assert (round(normalize(total), 4) if total else 0.0) == pytest.approx(expected, abs=1e-4)
    lexicon = choosing.vader().lexicon
    assert all(e.lexicon == lexicon.get(e.word, 0.0) for e in evidence)


def test_lexicon_rules_negation_and_but():
    negated = {e.word: e for e in LexiconClassifier().explain("the plot was not good .")}
    assert negated["good"].lexicon > 0 > negated["good"].valence  # "not" turns good's score around
    assert negated["good"].valence == pytest.approx(negated["good"].lexicon * -0.74)
    contrast = {e.word: e for e in LexiconClassifier().explain("the cast was great but the plot was bad .")}
    assert contrast["great"].valence == pytest.approx(contrast["great"].lexicon * 0.5)
    assert contrast["bad"].valence == pytest.approx(contrast["bad"].lexicon * 1.5)


def test_lexicon_recipe_learns_nothing():
    sentences, labels = toy_data(20)
    first = lexicon_recipe()(sentences, labels, 0)
    second = lexicon_recipe()(sentences[:2], [1 - y for y in labels[:2]], 5)
    assert first == second == LexiconClassifier(0.0)
    with pytest.raises(ValueError, match="as many labels"):
        lexicon_recipe()(sentences, labels[:3], 0)


# --- statistical ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["naive Bayes", "logistic regression"])
def test_bag_of_words_evidence_is_the_models_log_odds(name):
    """bias + the sum of the tokens' weights = log P(positive | x) - log P(negative | x), exactly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB

    estimator = MultinomialNB() if name == "naive Bayes" else LogisticRegression()
    sentences, labels = toy_data(60)
    pipeline = bag_of_words_recipe(estimator)(sentences, labels, 0)
    assert (pipeline.predict(sentences) == np.array(labels)).mean() == 1.0
    probe = ["the plot was good and the film was dull .", "a never seen word , good good ."]
    log_probabilities = pipeline.predict_log_proba(probe)  # (N, 2)
    for sentence, (negative, positive) in zip(probe, log_probabilities):
        bias, evidence = bag_of_words_evidence(pipeline, sentence)
        assert bias + sum(weight for _, weight in evidence) == pytest.approx(positive - negative, abs=1e-9)
        assert [token for token, _ in evidence] == sentence.split()
    weights = word_weights(pipeline)
    assert min(weights[w] for w in ADJECTIVES[1]) > 0 > max(weights[w] for w in ADJECTIVES[0])
    assert dict(bag_of_words_evidence(pipeline, "never seen")[1]) == {"never": 0.0, "seen": 0.0}
    assert estimator.__dict__.get("coef_") is None and not hasattr(estimator, "feature_log_prob_")  # a clone was fit


def test_word_weights_refuses_other_models():
    from sklearn.tree import DecisionTreeClassifier

    pipeline = bag_of_words_recipe(DecisionTreeClassifier())(*toy_data(20), 0)
    with pytest.raises(TypeError, match="LogisticRegression or MultinomialNB"):
        word_weights(pipeline)


# --- neural end to end --------------------------------------------------------------------------------------


def small_gru(vocab_size: int, generator: torch.Generator) -> torch.nn.Module:
    from dl4nlp import rnn

    config = rnn.ClassifierConfig(vocab_size, embedding_dim=8, hidden_size=8, cell="gru", bidirectional=False)
    return rnn.SequenceClassifier(config, generator=generator)


def small_cnn(vocab_size: int, generator: torch.Generator) -> torch.nn.Module:
    from dl4nlp import cnn

    return cnn.TextCNN(cnn.TextCNNConfig.small(vocab_size), generator=generator)


@pytest.mark.parametrize("build", [small_gru, small_cnn], ids=["gru", "cnn"])
def test_neural_recipe_learns_and_repeats_with_its_seed(build):
    sentences, labels = toy_data(64)
    recipe = neural_recipe(build, epochs=6, lr=3e-2, batch_size=16, validation=toy_data(20, seed=1), device="cpu")
    first, again, other = recipe(sentences, labels, 0), recipe(sentences, labels, 0), recipe(sentences, labels, 1)
    assert isinstance(first, VocabClassifier)
    test_sentences, test_labels = toy_data(40, seed=2)
    assert (first.predict(test_sentences) == np.array(test_labels)).mean() >= 0.9
    np.testing.assert_array_equal(first.probabilities(test_sentences), again.probabilities(test_sentences))
    assert not np.array_equal(first.probabilities(test_sentences), other.probabilities(test_sentences))
    assert [h.epoch for h in first.history] == list(range(1, 7))
    assert all(0 <= h.train <= 1 and 0 <= h.validation <= 1 for h in first.history)
    assert first.history[-1].train == (first.predict(sentences) == np.array(labels)).mean()
    assert neural_recipe(build, epochs=1, lr=1e-2, device="cpu")(sentences, labels, 0).history == ()
    probabilities = first.probabilities(["an unknown unknown word", "the plot was good ."])
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1)
    with pytest.raises(ValueError, match="epochs"):
        neural_recipe(build, epochs=0, lr=1e-2)


# --- pretrain and finetune -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_encoder():
    from dl4nlp.bert import BertConfig, BertModel

    sentences, _ = toy_data(8)
    tokenizer = story_wordpiece_tokenizer(sentences + ["never seen word , and"])
    config = BertConfig.tiny(vocab_size=len(tokenizer), hidden_size=16, num_attention_heads=2, intermediate_size=32,
                             max_position_embeddings=64)
    torch.manual_seed(0)
    return BertModel(config).eval(), tokenizer


def test_finetune_recipe_copies_the_encoder_and_trains_what_freeze_allows(tiny_encoder):
    encoder, tokenizer = tiny_encoder
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    sentences, labels = toy_data(32)
    recipe = finetune_recipe(encoder, tokenizer, trainable_layers=1, epochs=2, lr=1e-3, batch_size=8)
    classifier = recipe(sentences, labels, 0)
    assert isinstance(classifier, EncoderClassifier)
    assert all(torch.equal(before[name], value) for name, value in encoder.state_dict().items())  # never changed
    trained = classifier.model.encoder.state_dict()
    assert torch.equal(trained["embeddings.word_embeddings.weight"], before["embeddings.word_embeddings.weight"])
    assert not torch.equal(trained["encoder.layers.1.norm2.weight"], before["encoder.layers.1.norm2.weight"])
    again = recipe(sentences, labels, 0)
    probe = ["the plot was good .", "a never seen word , and the cast was dull .", "the film was awful ."]
    np.testing.assert_allclose(classifier.probabilities(probe), again.probabilities(probe), atol=1e-6)


def test_encoder_classifier_batches_by_length_and_keeps_the_order(tiny_encoder):
    """Sorting by length and trimming the padding change nothing: the same probabilities as one sentence at a
    time, in the order given."""
    from dl4nlp.finetune import SequenceClassifier

    encoder, tokenizer = tiny_encoder
    torch.manual_seed(1)
    classifier = EncoderClassifier(SequenceClassifier(encoder, 2, pooling="mean").eval(), tokenizer)
    probe = ["a never seen word , and the cast was dull , and the plot was good .", "good .", "the film was awful ."]
    together = classifier.probabilities(probe, batch_size=2)
    alone = np.concatenate([classifier.probabilities([sentence]) for sentence in probe])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert classifier.predict(probe).tolist() == together.argmax(1).tolist()


# --- pretrain and prompt -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm():
    from dl4nlp.gpt import GPT, GPTConfig

    sentences, _ = toy_data(8)
    tokenizer = story_wordpiece_tokenizer(sentences + ["overall , it was never seen word"])
    model = GPT(GPTConfig.tiny(vocab_size=len(tokenizer)), generator=torch.Generator().manual_seed(0)).eval()
    return model, tokenizer


def test_prompt_recipe_draws_balanced_short_demonstrations(tiny_lm):
    model, tokenizer = tiny_lm
    verbalizer = Verbalizer((("bad",), ("good",)))
    sentences, labels = toy_data(30)
    sentences[0] = "the plot was good and the film was good and the cast was lovely ."  # too long to be drawn
    recipe = prompt_recipe(model, tokenizer, "[X] overall , it was [Z]", verbalizer, shots=4, separator=" . ",
                           demonstration_words=6)
    classifier = recipe(sentences, labels, 3)
    assert isinstance(classifier, PromptClassifier) and len(classifier.demonstrations) == 4
    assert sorted(label for _, label in classifier.demonstrations) == [0, 0, 1, 1]
    assert all((x, y) in zip(sentences, labels) and len(x.split()) <= 6 for x, y in classifier.demonstrations)
    assert recipe(sentences, labels, 3) == classifier and recipe(sentences, labels, 4) != classifier
    zero = prompt_recipe(model, tokenizer, "[X] overall , it was [Z]", verbalizer)(sentences, labels, 0)
    assert zero.demonstrations == ()
    with pytest.raises(ValueError, match="demonstrations asked for"):
        prompt_recipe(model, tokenizer, "[X] overall , it was [Z]", verbalizer, shots=40)(sentences, labels, 0)
    with pytest.raises(ValueError, match="shots"):
        prompt_recipe(model, tokenizer, "[X] overall , it was [Z]", verbalizer, shots=-1)


def test_prompt_classifier_is_classify_by_likelihood_on_its_prompts(tiny_lm):
    model, tokenizer = tiny_lm
    verbalizer = Verbalizer((("bad",), ("good",)))
    demonstrations = (("the plot was good .", 1), ("the cast was dull .", 0))
    classifier = PromptClassifier(model, tokenizer, "[X] overall , it was [Z]", verbalizer, demonstrations, " . ")
    probe = ["the film was lovely .", "the ending was awful ."]
    prompts = [few_shot_prompt("[X] overall , it was [Z]", demonstrations, x, verbalizer, separator=" . ")
               for x in probe]
    assert classifier.prompts(probe) == prompts
    expected = classify_by_likelihood(model, tokenizer, prompts, verbalizer)
    np.testing.assert_allclose(classifier.probabilities(probe), expected.probabilities.numpy(), atol=1e-6)
    assert classifier.predict(probe).tolist() == expected.predictions.tolist()


# --- measuring ---------------------------------------------------------------------------------------------


def test_balanced_sample_is_balanced_nested_and_seeded():
    labels = [0] * 30 + [1] * 10
    sample = balanced_sample(labels, 16, seed=0)
    assert len(set(sample)) == 16 and sorted(labels[i] for i in sample) == [0] * 8 + [1] * 8
    assert balanced_sample(labels, 16, seed=0) == sample != balanced_sample(labels, 16, seed=1)
    assert set(balanced_sample(labels, 6, seed=0)) <= set(sample)  # nested: a smaller sample is part of a larger
    assert sorted(labels[i] for i in balanced_sample(labels, 5, seed=2)) == [0, 0, 0, 1, 1]
    assert balanced_sample(labels, 0, seed=0) == []
    with pytest.raises(ValueError, match="of label 1"):
        balanced_sample(labels, 24, seed=0)


def test_measure_recipe_scores_every_recipe_on_the_seeds_test_sample():
    train, test = toy_data(40), toy_data(30, seed=5)
    seen = []

    def constant(sentences, labels, seed):
        seen.append((len(sentences), sorted(labels)))
        return LexiconClassifier(threshold=2.0)  # never positive

    runs = measure_recipe(constant, train, test, train_size=10, test_size=12, seeds=[0, 1, 2])
    assert [run.seed for run in runs] == [0, 1, 2] and seen == [(10, [0] * 5 + [1] * 5)] * 3
    for run in runs:
        assert run.test_indices == tuple(draw_test_sample(30, 12, run.seed)) and run.train_size == 10
        assert run.accuracy == np.mean([test[1][i] == 0 for i in run.test_indices]) and run.seconds >= 0
        assert run.predictions.tolist() == [0] * 12
    other = measure_recipe(lexicon_recipe(), train, test, train_size=0, test_size=12, seeds=[0, 1, 2])
    assert [run.test_indices for run in other] == [run.test_indices for run in runs]  # same seed, same test
    assert len({run.test_indices for run in runs}) == 3
    with pytest.raises(ValueError, match="test_size"):
        measure_recipe(constant, train, test, train_size=10, test_size=31, seeds=[0])


def test_paired_difference():
    a, b = [0.9, 0.8, 0.85], [0.7, 0.7, 0.6]
    result = paired_difference(a, b)
    differences = [0.2, 0.1, 0.25]
    assert result.difference == pytest.approx(statistics.fmean(differences))
    assert result.standard_error == pytest.approx(statistics.stdev(differences) / math.sqrt(3))
    assert result.clear
    assert not paired_difference([0.9, 0.5, 0.7], [0.6, 0.8, 0.7]).clear
    assert paired_difference([0.6, 0.7], [0.5, 0.6]).clear  # the same gain with every seed
    assert not paired_difference([0.6, 0.7], [0.6, 0.7]).clear
    with pytest.raises(ValueError, match="one value per seed"):
        paired_difference([0.5], [0.4])


def test_leave_one_out_on_a_known_model():
    def probabilities(sentences):  # P(positive) = the share of the tokens that are "good"
        shares = [s.split().count("good") / max(1, len(s.split())) for s in sentences]
        return np.array([[1 - p, p] for p in shares])

    result = leave_one_out(probabilities, "good film good")
    assert [token for token, _ in result] == ["good", "film", "good"]
    assert [round(change, 6) for _, change in result] == [round(2 / 3 - 1 / 2, 6), round(2 / 3 - 1, 6),
                                                          round(2 / 3 - 1 / 2, 6)]
