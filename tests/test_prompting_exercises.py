"""The prompting assignment's cases: the grader's tokenizer and model, and answers the reference does not
compute like (with autograd on, one continuation at a time) that are still right."""

from __future__ import annotations

import torch

from dl4nlp import exercises
from dl4nlp.exercises.prompting import case_tokenizer


def _judge(part_name: str, function, seed: str = "tests"):
    part = exercises.load("prompting").part(part_name)
    cases = part.cases(exercises.generator(seed, part_name))
    expected = [exercises.call(part.reference(), case) for case in cases]
    return exercises.judge(part, cases, expected, [exercises.call(function, case) for case in cases])


def test_the_case_tokenizer_has_leading_spaces_and_words_of_several_tokens():
    tokenizer = case_tokenizer()
    assert tokenizer is case_tokenizer()  # built once per process
    assert tokenizer.encode(" good") != tokenizer.encode("good") and len(tokenizer.encode(" good")) == 1
    assert len(tokenizer.encode(" terrible")) == 2 and len(tokenizer.encode(" NOT SARCASTIC")) > 2
    text = 'Review: "A gem!"\nSentiment: good'
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode(text) == tokenizer(text)["input_ids"] == tokenizer.encode(text, add_special_tokens=False)


def test_the_case_models_are_random_and_peaked():
    part = exercises.load("prompting").part("continuation_log_probs")
    first, second = part.cases(exercises.generator("a", part.name)), part.cases(exercises.generator("b", part.name))
    ids = torch.tensor([first[0].args[1]])
    with torch.no_grad():
        a, b = first[0].args[0](ids), second[0].args[0](ids)
    assert not torch.allclose(a, b)
    assert float(torch.softmax(a[0, -1], dim=-1).max()) > 5 / a.shape[-1]  # far from uniform


def test_scores_computed_with_autograd_and_one_at_a_time_are_right():
    """The reference scores under torch.no_grad(); an answer that does not is compared on its outputs only."""

    def one_at_a_time(model, prompt_ids, continuations):
        scores = []
        for continuation in continuations:
            ids = torch.tensor([list(prompt_ids) + list(continuation)])
            log_probs = torch.log_softmax(model(ids), dim=-1)[0]  # with autograd
            P = len(prompt_ids)
            scores.append(sum(log_probs[P - 1 + j, c] for j, c in enumerate(continuation)))
        return torch.stack(scores)

    assert _judge("continuation_log_probs", one_at_a_time).passed


def test_a_not_differentiable_reference_still_compares_outputs():
    def shifted(model, prompt_ids, continuations):
        from dl4nlp.prompting import continuation_log_probs

        return continuation_log_probs(model, prompt_ids, continuations) + 0.01

    verdict = _judge("continuation_log_probs", shifted)
    assert not verdict.passed and "max difference" in verdict.message


def test_few_shot_prompt_takes_its_options_by_keyword_too():
    from dl4nlp.prompting import Verbalizer, few_shot_prompt

    verbalizer = Verbalizer((("bad",), ("good",)))
    assert few_shot_prompt("[X] It was [Z]", [("Fine.", 1)], "Dull.", verbalizer, separator=" | ") \
        == few_shot_prompt("[X] It was [Z]", [("Fine.", 1)], "Dull.", verbalizer, "", "", " | ") \
        == "Fine. It was good | Dull. It was"


def test_the_grader_copies_agree_with_the_references():
    from dl4nlp import prompting
    from dl4nlp.exercises import prompting as grader

    for part_name, copy in (("few_shot_prompt", grader.fill_template),
                            ("label_word_scores", grader.continuation_log_probs)):
        given = exercises.load("prompting").part(part_name).given
        assert list(given.values()) == [copy] and copy is not getattr(prompting, copy.__name__)
    for case in exercises.load("prompting").part("fill_template").cases(exercises.generator("copies", "f")):
        assert grader.fill_template(*case.args) == prompting.fill_template(*case.args)
    for case in exercises.load("prompting").part("continuation_log_probs").cases(exercises.generator("copies", "c")):
        assert torch.equal(grader.continuation_log_probs(*case.args), prompting.continuation_log_probs(*case.args))
