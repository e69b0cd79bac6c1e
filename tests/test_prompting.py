"""dl4nlp.prompting: templates, few-shot prompts (the lecture's, exactly), label-word scoring by the chain rule on
our GPT and on Hugging Face's with the same weights, contextual calibration, evaluation and the template search."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from torch.nn import functional as F

from dl4nlp.data.corpus import story_wordpiece_tokenizer
from dl4nlp.gpt import GPT, GPTConfig
from dl4nlp.prompting import (LECTURE_TEMPLATE, Verbalizer, calibrate, candidate_templates, classify_by_likelihood,
                              content_free_prompts, continuation_log_probs, evaluate_prompting,
                              expected_calibration_error, few_shot_prompt, fill_template, generate_and_parse,
                              label_log_probs, label_word_scores, lecture_prompt, search_templates)

LECTURE = '''Here are two training instances:

Data: "Natalie was soooooo happy she had booked a 5 a.m. flight." Label: SARCASTIC

Data: "Natalie loved early morning flights because she could get to her destination before brunch!" Label: NOT SARCASTIC

Here is a test instance. Fill in the correct label:

Data: "Natalie was sooooooooooooo excited to wait in an early morning airport security line." Label:'''

TEXTS = ["the film was good", "the film was bad", "a great movie", "a terrible movie", "review : fine",
         "sentiment positive negative", "not sarcastic sarcastic", "it was wonderful indeed"]


@pytest.fixture(scope="module")
def tokenizer():
    return story_wordpiece_tokenizer(TEXTS)


@pytest.fixture(scope="module")
def models(tokenizer):
    """A random tiny GPT-2 of Hugging Face's and ours with the same weights."""
    torch.manual_seed(0)
    V = len(tokenizer)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_positions=128, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)).eval()
    return GPT.from_huggingface(theirs), theirs


def test_fill_template():
    template = "Review: [X] Sentiment: [Z]"
    assert fill_template(template, "A gem.", "good") == "Review: A gem. Sentiment: good"
    assert fill_template(template, "A gem.") == "Review: A gem. Sentiment:"
    assert fill_template(LECTURE_TEMPLATE, "hi") == 'Data: "hi" Label:'


@pytest.mark.parametrize("template, message", [
    ("Review: [X]", r"\[Z\].*once each"), ("[X] [X] [Z]", "once each"), ("[X] [Z] done", "must end the template"),
    ("[Z] [X] [Z]", "once each")])
def test_bad_templates_say_what_to_fix(template, message):
    with pytest.raises(ValueError, match=message):
        fill_template(template, "x")


def test_the_lectures_prompt_exactly():
    """The slide has a stray period after NOT SARCASTIC; the format is otherwise the lecture's, character for
    character."""
    assert lecture_prompt() == LECTURE


def test_few_shot_prompt_never_shows_the_querys_label():
    verbalizer = Verbalizer((("bad",), ("good",)))
    prompt = few_shot_prompt("[X] It was [Z]", [("fine film", 1), ("dull", 0)], "a mess", verbalizer)
    assert prompt == "fine film It was good\n\ndull It was bad\n\na mess It was"
    assert few_shot_prompt("[X] It was [Z]", [], "a mess", verbalizer) == "a mess It was"  # zero-shot
    with pytest.raises(ValueError, match="label 2 is not one of the verbalizer's labels 0 .. 1"):
        few_shot_prompt("[X] It was [Z]", [("x", 2)], "y", verbalizer)


def test_verbalizer_checks_and_words():
    verbalizer = Verbalizer.from_mapping({0: "bad", 1: ["good", "great"]})
    assert verbalizer.words == (("bad",), ("good", "great")) and verbalizer.word(1) == "good"
    with pytest.raises(ValueError, match="one label only"):
        Verbalizer((("good",), ("good",)))
    with pytest.raises(ValueError, match="at least two labels"):
        Verbalizer((("good",),))


def test_scores_are_the_chain_rule_over_every_token_of_the_word_and_none_of_the_prompt(models, tokenizer):
    ours, _ = models
    prompt = "the film was"
    word = "wonderful sarcastic"  # several tokens
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    word_ids = tokenizer.encode(" " + word, add_special_tokens=False)
    assert len(word_ids) >= 2
    ids = torch.tensor([prompt_ids + word_ids])
    with torch.no_grad():
        log_probs = F.log_softmax(ours(ids), dim=-1)[0]  # (T, V)
    expected = sum(log_probs[len(prompt_ids) - 1 + j, token] for j, token in enumerate(word_ids))
    score = label_word_scores(ours, tokenizer, [prompt], [word])
    assert score.shape == (1, 1) and math.isclose(float(score), float(expected), rel_tol=1e-5)
    first_only = float(log_probs[len(prompt_ids) - 1, word_ids[0]])
    assert not math.isclose(float(score), first_only, rel_tol=1e-3)  # the bug "first sub-token only" would differ


def test_batched_scores_equal_one_at_a_time(models, tokenizer):
    ours, _ = models
    prompt_ids = tokenizer.encode("a great movie", add_special_tokens=False)
    continuations = [tokenizer.encode(" " + w, add_special_tokens=False) for w in ("good", "wonderful indeed", "bad")]
    together = continuation_log_probs(ours, prompt_ids, continuations)
    alone = torch.cat([continuation_log_probs(ours, prompt_ids, [c]) for c in continuations])
    assert torch.allclose(together, alone, atol=1e-5)


def test_ours_and_huggingfaces_give_the_same_label_probabilities(models, tokenizer):
    ours, theirs = models
    verbalizer = Verbalizer((("bad", "terrible"), ("good", "wonderful indeed")))
    prompts = [fill_template("review : [X] sentiment [Z]", text) for text in TEXTS[:4]]
    a = label_log_probs(ours, tokenizer, prompts, verbalizer)
    b = label_log_probs(theirs, tokenizer, prompts, verbalizer)
    assert a.shape == (4, 2) and torch.allclose(a, b, atol=1e-4)
    words = label_word_scores(ours, tokenizer, prompts, ["bad", "terrible"])
    assert torch.allclose(a[:, 0], torch.logsumexp(words, dim=1), atol=1e-5)  # a label: the sum of its words


def test_calibration_divides_by_the_content_free_prior():
    p = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    prior = torch.tensor([0.75, 0.25])
    q = calibrate(p, prior)
    expected = torch.tensor([[0.9 / 0.75, 0.1 / 0.25], [0.6 / 0.75, 0.4 / 0.25]])
    assert torch.allclose(q, expected / expected.sum(1, keepdim=True))
    assert q[1].argmax() == 1  # the label the model favoured anyway no longer wins a close call
    assert torch.allclose(calibrate(prior[None], prior), torch.tensor([[0.5, 0.5]]))  # content-free -> uniform
    with pytest.raises(ValueError, match=r"\(N, C\) and content_free \(C,\)"):
        calibrate(p, torch.tensor([0.5, 0.3, 0.2]))


def test_classify_by_likelihood_with_calibration_uses_the_content_free_prompts(models, tokenizer):
    ours, _ = models
    verbalizer = Verbalizer((("bad",), ("good",)))
    build = lambda x: few_shot_prompt("[X] it was [Z]", [("a great movie", 1)], x, verbalizer)  # noqa: E731
    prompts = [build(text) for text in TEXTS[:4]]
    plain = classify_by_likelihood(ours, tokenizer, prompts, verbalizer)
    calibrated = classify_by_likelihood(ours, tokenizer, prompts, verbalizer,
                                        content_free_prompts=content_free_prompts(build))
    assert plain.content_free is None and calibrated.content_free.shape == (2,)
    assert torch.allclose(calibrated.probabilities, calibrate(plain.probabilities, calibrated.content_free))
    assert torch.allclose(plain.probabilities.sum(1), torch.ones(4))


def test_evaluate_and_search_templates(models, tokenizer):
    ours, _ = models
    verbalizer = Verbalizer((("bad",), ("good",)))
    texts, labels = ["the film was good", "the film was bad", "a great movie", "a terrible movie"], [1, 0, 1, 0]
    result = evaluate_prompting(ours, tokenizer, texts, labels, "[X] it was [Z]", verbalizer)
    assert result.accuracy == float((result.predictions == torch.tensor(labels)).float().mean())
    templates = candidate_templates(["", "review :"], ["it was", "sentiment"])
    assert templates == ["[X] it was [Z]", "[X] sentiment [Z]", "review : [X] it was [Z]", "review : [X] sentiment [Z]"]
    ranked = search_templates(ours, tokenizer, templates, texts, labels, verbalizer)
    assert sorted(t for t, _ in ranked) == sorted(templates)
    assert [a for _, a in ranked] == sorted((a for _, a in ranked), reverse=True)
    with pytest.raises(ValueError, match="as many labels as texts"):
        evaluate_prompting(ours, tokenizer, texts, [1], "[X] it was [Z]", verbalizer)


def test_generate_and_parse_reads_the_longest_label_word(models, tokenizer, monkeypatch):
    ours, _ = models
    verbalizer = Verbalizer((("not sarcastic",), ("sarcastic",)))
    import dl4nlp.gpt

    def fake_generate(model, ids, new):  # the model "writes" the given words
        return torch.cat([ids, torch.tensor([tokenizer.encode(" " + fake_generate.text, add_special_tokens=False)])],
                         dim=1)

    monkeypatch.setattr(dl4nlp.gpt, "generate", fake_generate)
    for text, label in (("not sarcastic .", 0), ("sarcastic", 1), ("wonderful", None)):
        fake_generate.text = text
        assert generate_and_parse(ours, tokenizer, "review : fine", verbalizer) == label


def test_expected_calibration_error_sees_confident_mistakes():
    labels = torch.tensor([0, 1, 0, 1])
    right = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    wrong = right.flip(1)
    assert expected_calibration_error(right, labels) == pytest.approx(0.1)
    assert expected_calibration_error(wrong, labels) == pytest.approx(0.9)
