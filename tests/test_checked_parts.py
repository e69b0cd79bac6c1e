"""Parts graded by their properties (`Part.check`): the bert assignment's `mask_tokens` and
`make_nsp_pairs`, and the generation assignment's `next_token`, whose draws are random, so that no
two right answers agree token by token.

A right answer must pass whatever it draws (the reference, Hugging Face's way of masking, a coin
per sentence pair, the global random state instead of the generator), every property the issue
names must fail when broken, with a message that says which, and no output can crash the check.
"""

from __future__ import annotations

import pytest
import torch

from dl4nlp import exercises
from dl4nlp.exercises import Case, Outcome, call, checked, judge
from dl4nlp.exercises import bert as bert_exercises

ASSIGNMENT = exercises.load("bert")
MASKING, PAIRS = ASSIGNMENT.part("mask_tokens"), ASSIGNMENT.part("make_nsp_pairs")


def verdict(part, function, seed="checks"):
    cases = part.cases(exercises.generator(seed, part.name))
    expected = [call(part.reference(), case) for case in cases]
    return judge(part, cases, expected, [call(function, case) for case in cases])


@pytest.mark.parametrize("part", [MASKING, PAIRS], ids=lambda part: part.name)
def test_the_reference_passes_its_checks_on_many_draws(part):
    for seed in range(40):
        result = verdict(part, part.reference(), f"seed {seed}")
        assert result.passed, (seed, result.message)


# --- other right answers -----------------------------------------------------------------------


def masking_as_huggingface(input_ids, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15,
                           generator=None):
    """DataCollatorForLanguageModeling.torch_mask_tokens, with bernoulli draws and the global random state."""
    labels = input_ids.clone()
    probability = torch.full(labels.shape, mlm_probability)
    if special_tokens_mask is not None:
        probability.masked_fill_(special_tokens_mask.bool(), 0.0)
    selected = torch.bernoulli(probability).bool()
    labels[~selected] = -100
    inputs = input_ids.clone()
    replaced = torch.bernoulli(torch.full(labels.shape, 0.8)).bool() & selected
    inputs[replaced] = mask_token_id
    randomized = torch.bernoulli(torch.full(labels.shape, 0.5)).bool() & selected & ~replaced
    inputs[randomized] = torch.randint(vocab_size, labels.shape)[randomized]
    return inputs, labels


def pairs_by_coin(documents, generator=None):
    """Each pair's fate by its own coin, a random b drawn from all other documents' sentences."""
    pairs = []
    for d, document in enumerate(documents):
        others = [s for e, other in enumerate(documents) if e != d or len(documents) == 1 for s in other]
        for a, successor in zip(document, document[1:]):
            if float(torch.rand(1, generator=generator)) < 0.5:
                pairs.append((a, successor, 0))
            else:
                pool = [s for s in others if s not in (a, successor)]
                pairs.append((a, pool[int(torch.randint(len(pool), (1,), generator=generator))], 1))
    return pairs


def test_other_right_answers_pass():
    torch.manual_seed(0)
    for seed in range(5):
        assert verdict(MASKING, masking_as_huggingface, f"hf {seed}").passed
        assert verdict(PAIRS, pairs_by_coin, f"coin {seed}").passed


# --- each property, broken ---------------------------------------------------------------------


def masking_case(p=0.15, specials=True):
    generator = torch.Generator().manual_seed(5)
    input_ids = torch.randint(5, 1000, (64, 128), generator=generator)
    special = torch.zeros(64, 128, dtype=torch.bool)
    if specials:
        input_ids[:, 0], special[:, 0] = 1, True
    return Case((input_ids, 3, 1000, special if specials else None, p, torch.Generator().manual_seed(6)), "test")


def reference_masking(case):
    return MASKING.reference()(*case.args)


@pytest.mark.parametrize(("break_it", "message"), [
    (lambda ids, inputs, labels: (inputs, torch.where(labels != -100, inputs, labels)),
     "a label is not the original id of its token"),
    (lambda ids, inputs, labels: (torch.where(labels == -100, torch.full_like(ids, 7), inputs), labels),
     "the input of a token that was not selected changed"),
    (lambda ids, inputs, labels: (inputs, labels.masked_fill(torch.arange(128) >= 64, -100)),
     "of the tokens that may be selected were selected"),
    (lambda ids, inputs, labels: (torch.where(labels != -100, ids, inputs), labels),
     "of the selected tokens, 0.0% became [MASK]"),
    (lambda ids, inputs, labels: (inputs.float(), labels), "inputs has dtype torch.float32, expected token ids"),
    (lambda ids, inputs, labels: (inputs, labels[:, :-1]), "labels has shape (64, 127), expected (64, 128)"),
    (lambda ids, inputs, labels: (inputs.masked_fill(labels != -100, 5000), labels),
     "inputs hold an id outside the vocabulary"),
    (lambda ids, inputs, labels: inputs, "returned a tensor of shape (64, 128), expected (inputs, labels)"),
])
def test_each_masking_property_is_checked_and_named(break_it, message):
    case = masking_case()
    inputs, labels = reference_masking(case)
    assert checked(MASKING, case, (inputs, labels)) is None
    problem = checked(MASKING, case, break_it(case.args[0], inputs, labels))
    assert problem is not None and message in problem, problem


def test_special_tokens_and_every_label_are_named():
    case = masking_case()
    inputs, labels = reference_masking(case)
    labels[:, 0] = case.args[0][:, 0]  # [CLS] selected
    assert "a special token ([CLS], [SEP] or [PAD]" in checked(MASKING, case, (inputs, labels))
    assert "every token has a label" in checked(MASKING, case, (inputs, case.args[0].clone()))


DOCUMENTS = [[f"d{d} s{i}." for i in range(6)] for d in range(10)]


def reference_pairs():
    return [tuple(pair) for pair in PAIRS.reference()(DOCUMENTS, torch.Generator().manual_seed(0))]


def first_random(pairs):
    return next(k for k, (_, _, label) in enumerate(pairs) if label == 1)


def first_adjacent(pairs):
    return next(k for k, (_, _, label) in enumerate(pairs) if label == 0)


def successor(a):
    d, i = (int(word[1:].rstrip(".")) for word in a.split())  # "d3 s2." -> 3, 2
    return DOCUMENTS[d][i + 1]


@pytest.mark.parametrize(("break_it", "message"), [
    (lambda pairs: pairs[:-1], "returned 49 pairs, expected 50"),
    (lambda pairs: pairs[1:] + pairs[:1], "pair 1: a is not sentence 1 of document 1"),
    (lambda pairs: [(a, b, 1 - label) for a, b, label in pairs], "is labelled 0 but b is not the sentence after a"),
    (lambda pairs: [(a, b, 1) if k == first_adjacent(pairs) else (a, b, label) for k, (a, b, label) in enumerate(pairs)],
     "is labelled 1 (b is random) but its b is a's true successor"),
    (lambda pairs: [(a, "d0 s5." if k == first_random(pairs) else b, label) for k, (a, b, label) in enumerate(pairs)],
     "its random b is not a sentence of another document"),
    (lambda pairs: [(a, successor(a), 0) for a, _, _ in pairs], "0 of the 50 pairs are random"),
    (lambda pairs: [(a, b, "yes") for a, b, _ in pairs], "next_sentence_label should be 0 (b follows a) or 1"),
    (lambda pairs: [(a, b) for a, b, _ in pairs], "pair 1 is a tuple of 2 values, expected (a, b, next_sentence"),
    (lambda pairs: None, "returned None, expected a list of (a, b, next_sentence_label)"),
])
def test_each_pair_property_is_checked_and_named(break_it, message):
    case = Case((DOCUMENTS, torch.Generator().manual_seed(0)), "test")
    pairs = reference_pairs()
    assert checked(PAIRS, case, tuple(pairs)) is None
    problem = checked(PAIRS, case, exercises.plain(break_it(pairs)) if break_it(pairs) is not None else None)
    assert problem is not None and message in problem, problem


def test_a_random_b_equal_to_a_is_named_in_a_single_document():
    documents = [["a.", "b.", "c.", "d.", "e."]]
    case = Case((documents, None), "one document")
    assert "its random b is a itself" in checked(PAIRS, case, (("a.", "a.", 1), ("b.", "c.", 0), ("c.", "d.", 0),
                                                               ("d.", "e.", 0)))


@pytest.mark.parametrize("junk", [None, 3, "text", (1, 2), (torch.ones(2), torch.ones(2), torch.ones(2)),
                                  (torch.ones(2, 3, dtype=torch.long),), ((1, 2, 3),) * 50])
def test_no_output_crashes_a_check(junk):
    for part, case in ((MASKING, masking_case()), (PAIRS, Case((DOCUMENTS, None), "test"))):
        problem = checked(part, case, junk)
        assert isinstance(problem, str) and problem


def test_a_check_that_cannot_read_an_output_says_so():
    def fragile(case, output):
        raise KeyError("boom")

    part = exercises.Part("f", "dl4nlp.bert", 1, lambda g: [], check=fragile)
    assert "its output could not be checked (KeyError" in checked(part, Case((), ""), (1,))


def test_a_case_generator_is_copied_for_every_call():
    """The reference and the answer draw the same numbers from a case's generator (the self-check runs both)."""
    case = masking_case()
    first, second = call(MASKING.reference(), case), call(MASKING.reference(), case)
    assert all(torch.equal(a, b) for a, b in zip(first.output, second.output))


def test_an_answer_is_named_after_the_bug_that_shows_all_its_problems():
    case = masking_case(p=0.3)
    cases = [case]
    right = [call(MASKING.reference(), case)]
    fixed = call(bert_exercises.mask_probability_fixed, case)
    result = judge(MASKING, cases, right, [fixed])
    assert not result.passed and result.bug == "mlm_probability is ignored: 15% are selected whatever it is"
    both = Outcome(output=(fixed.output[0], case.args[0].clone()))  # labels everywhere too: no single bug shows both
    mixed = judge(MASKING, [case, masking_case()], right * 2, [both, call(bert_exercises.mask_all_selected, case)])
    assert not mixed.passed and mixed.bug == ""


# --- the generation assignment's next_token: draws checked by their rates --------------------------

NEXT_TOKEN = exercises.load("generation").part("next_token")


def test_the_reference_next_token_passes_its_checks_on_many_draws():
    for seed in range(20):
        result = verdict(NEXT_TOKEN, NEXT_TOKEN.reference(), f"seed {seed}")
        assert result.passed, (seed, result.message)


def next_token_by_inverse_cdf(logits, do_sample=False, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Another right answer: a uniform number per row against the cumulative probabilities, the global random
    state, the filters written out in the sorted order."""
    if not do_sample:
        return logits.argmax(dim=-1)
    scores, order = torch.sort(logits / temperature, dim=-1, descending=True)
    probabilities = torch.softmax(scores, dim=-1)
    keep = torch.ones_like(probabilities, dtype=torch.bool)
    if top_k is not None:
        keep &= scores >= scores[:, min(top_k, scores.shape[1]) - 1:min(top_k, scores.shape[1])]
        probabilities = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    if top_p is not None:
        keep &= torch.cumsum(probabilities, dim=-1) - probabilities < top_p
        keep[:, 0] = True
    probabilities = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
    uniform = torch.rand(logits.shape[0], 1)
    ranks = (torch.cumsum(probabilities, dim=-1) < uniform).sum(dim=-1).clamp(max=logits.shape[1] - 1)
    return order.gather(1, ranks[:, None])[:, 0]


def test_another_right_next_token_passes():
    torch.manual_seed(0)
    for seed in range(4):
        result = verdict(NEXT_TOKEN, next_token_by_inverse_cdf, f"cdf {seed}")
        assert result.passed, result.message


def sampled_case(top_k=None, top_p=None, temperature=1.0):
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 0.0], [0.0, 0.3, 2.5, 1.0, -2.0]]).repeat(3000, 1)
    return Case((logits, True, temperature, top_k, top_p, torch.Generator().manual_seed(7)), "test")


def reference_tokens(case):
    return NEXT_TOKEN.reference()(*case.args)


@pytest.mark.parametrize(("change", "message"), [
    (lambda tokens: tokens.float(), "returned dtype torch.float32, expected token ids"),
    (lambda tokens: tokens[:-1], "returned shape (5999,), expected (6000,)"),
    (lambda tokens: tokens.masked_fill(torch.arange(6000) == 3, 5), "an id outside the vocabulary"),
    (lambda tokens: torch.where(torch.arange(6000) % 2 == 0, torch.zeros_like(tokens), tokens),
     "sampling with top_k: the token ranked 1 was drawn"),
    (lambda tokens: tokens.masked_fill(torch.arange(6000) == 4, 3), "sampling with top_k: a drawn token lies outside"),
    (lambda tokens: (tokens,), "returned a tuple of 1 values, expected token ids"),
])
def test_each_next_token_property_is_checked_and_named(change, message):
    case = sampled_case(top_k=3)
    tokens = reference_tokens(case)
    assert checked(NEXT_TOKEN, case, tokens) is None
    problem = checked(NEXT_TOKEN, case, exercises.plain(change(tokens)))
    assert problem is not None and message in problem, problem


def test_greedy_next_token_must_be_the_argmax():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    case = Case((logits, False, 2.0, 2, 0.5, None), "greedy")
    assert checked(NEXT_TOKEN, case, logits.argmax(-1)) is None
    assert "greedy decoding takes the argmax" in checked(NEXT_TOKEN, case, logits.argmin(-1))


@pytest.mark.parametrize("junk", [None, 3, "text", (1, 2), torch.ones(6000), torch.ones(2, 3, dtype=torch.long)])
def test_no_output_crashes_the_next_token_check(junk):
    problem = checked(NEXT_TOKEN, sampled_case(top_p=0.8), junk)
    assert isinstance(problem, str) and problem


def test_the_graders_gpt_is_the_course_gpt_and_its_greedy_tokens_do_not_depend_on_the_cache():
    """generate's cases: the grader's model computes GPT's logits in eval mode (with and without a cache), its
    fixed dropout changes them in training mode, and the reference's greedy tokens agree with and without the
    cache on every case (the cache must not change what is generated)."""
    from dl4nlp.gpt import GPT

    part = exercises.load("generation").part("generate")
    cases = part.cases(exercises.generator("checks", part.name))
    model = cases[0].args[0]
    course = GPT(model.config)
    course.load_state_dict(model.state_dict(), strict=False)
    ids = torch.randint(model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    model.eval(), course.eval()
    with torch.no_grad():
        assert torch.allclose(model(ids), course(ids), atol=1e-5)
        past = model(ids[:, :4], use_cache=True).past_key_values
        assert torch.allclose(model(ids[:, 4:], past_key_values=past).logits, course(ids)[:, 4:], atol=1e-5)
        model.train()
        assert not torch.allclose(model(ids), course(ids), atol=1e-2)
    outputs = {}
    for case in cases:
        key = (id(case.args[0]), case.args[2], case.args[3])
        outputs.setdefault(key, []).append(part.reference()(*exercises._prepare(case.args)))
    assert all(torch.equal(first, other) for first, *others in outputs.values() for other in others)
    assert len(cases) == sum(len(group) for group in outputs.values()) and len(outputs) >= 4
