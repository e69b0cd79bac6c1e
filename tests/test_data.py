"""dl4nlp.data: tokenization, vocabulary, padding and loaders of padded batches."""

from __future__ import annotations

import random
import string

import datasets
import pytest
import torch
from helpers import is_padded, unpad
from hypothesis import given, settings
from hypothesis import strategies as st

import dl4nlp.data
from dl4nlp.data import Vocab, build_vocab, make_loader, pad_batch, tokenize
from dl4nlp.data.sentiment import make_synthetic_sentiment


@pytest.fixture(scope="module")
def synthetic() -> datasets.DatasetDict:
    return make_synthetic_sentiment()


# --- tokenize -------------------------------------------------------------------------


@pytest.mark.parametrize("text, tokens", [
    ("The film wasn't good.", ["the", "film", "was", "n't", "good", "."]),
    ("I didn't like it", ["i", "did", "n't", "like", "it"]),
    ("can't, won't", ["ca", "n't", ",", "wo", "n't"]),
    ("It's a well-made film!", ["it", "'s", "a", "well-made", "film", "!"]),
    ("they're here, we'll see; I'd go", ["they", "'re", "here", ",", "we", "'ll", "see", ";", "i", "'d", "go"]),
    ("Wait... what?!", ["wait", "...", "what", "?", "!"]),
    ("does n't", ["does", "n't"]),  # SST-2's own tokenization is kept
    ("it 's a charming journey . ", ["it", "'s", "a", "charming", "journey", "."]),
    ("don\u2019t", ["do", "n't"]),  # curly apostrophe
    ("'quoted' (2 hours)", ["'", "quoted", "'", "(", "2", "hours", ")"]),
    ("", []),
])
def test_tokenize_examples(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


TEXT = st.text(alphabet=string.ascii_letters + string.digits + " \t\n'.,!?;:-()\"", max_size=80)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_tokenize_keeps_every_character_but_whitespace(text: str) -> None:
    tokens = tokenize(text)
    assert "".join(tokens) == "".join(text.lower().split())
    assert all(token and not any(c.isspace() for c in token) and token == token.lower() for token in tokens)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_tokenize_is_idempotent_on_its_own_output(text: str) -> None:
    tokens = tokenize(text)
    assert tokenize(" ".join(tokens)) == tokens


# --- Vocab ----------------------------------------------------------------------------


def test_vocab_order_specials_and_round_trip() -> None:
    vocab = Vocab.build([["b", "a", "c", "a"], ["c", "d", "a"]])
    # a: 3, c: 2, then b and d (1 each) alphabetically
    assert vocab.itos == ["<pad>", "<unk>", "a", "c", "b", "d"]
    assert (vocab.pad_id, vocab.unk_id) == (0, 1)
    assert vocab.stoi["<pad>"] == 0 and vocab.stoi["<unk>"] == 1
    assert len(vocab) == 6
    assert "a" in vocab and "z" not in vocab
    assert vocab.encode(["d", "a", "c"]) == [5, 2, 3]
    assert vocab.decode(vocab.encode(["d", "a", "c"])) == ["d", "a", "c"]
    assert vocab.decode(torch.tensor([2, 0])) == ["a", "<pad>"]


def test_vocab_unknown_tokens_get_unk() -> None:
    vocab = Vocab.build([["good", "film"]])
    assert vocab.encode(["good", "bad", "film", "awful"]) == [vocab.stoi["good"], 1, vocab.stoi["film"], 1]
    assert vocab.decode([1]) == ["<unk>"]


def test_vocab_min_freq_and_max_size() -> None:
    token_lists = [["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    assert Vocab.build(token_lists, min_freq=2).itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert Vocab.build(token_lists, min_freq=4).itos == ["<pad>", "<unk>", "a"]
    assert Vocab.build(token_lists, max_size=4).itos == ["<pad>", "<unk>", "a", "b"]
    assert len(Vocab.build(token_lists, max_size=2)) == 2
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(token_lists, min_freq=0)
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(token_lists, max_size=1)


def test_vocab_does_not_duplicate_specials_in_the_data() -> None:
    vocab = Vocab.build([["<pad>", "<unk>", "x", "<unk>"]])
    assert vocab.itos == ["<pad>", "<unk>", "x"]


def test_vocab_constructor_checks_specials_and_repeats() -> None:
    with pytest.raises(ValueError, match="specials"):
        Vocab(["a", "<pad>", "<unk>"])
    with pytest.raises(ValueError, match="twice"):
        Vocab(["<pad>", "<unk>", "a", "a"])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefgh"), max_size=6), max_size=8), st.randoms())
def test_vocab_is_deterministic_whatever_the_input_order(token_lists: list[list[str]], rng: random.Random) -> None:
    shuffled = [list(tokens) for tokens in token_lists]
    rng.shuffle(shuffled)
    for tokens in shuffled:
        rng.shuffle(tokens)
    assert Vocab.build(shuffled).itos == Vocab.build(token_lists).itos
    vocab = Vocab.build(token_lists)
    counts = [sum(tokens.count(token) for tokens in token_lists) for token in vocab.itos[2:]]
    assert counts == sorted(counts, reverse=True)
    for tokens in token_lists:
        assert vocab.decode(vocab.encode(tokens)) == tokens


def test_build_vocab_tokenizes_the_sentence_column() -> None:
    dataset = datasets.Dataset.from_dict({"sentence": ["The film wasn't good.", "Good film!"], "label": [0, 1]})
    vocab = build_vocab(dataset)
    assert vocab.itos[:4] == ["<pad>", "<unk>", "film", "good"]
    assert {"n't", "was", "the", ".", "!"} <= set(vocab.itos)
    assert "The" not in vocab


# --- pad_batch ------------------------------------------------------------------------


def test_pad_batch_values() -> None:
    tokens, lengths = pad_batch([[5, 6, 7], [8], [9, 10]])
    assert tokens.dtype == torch.long and lengths.dtype == torch.long
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert lengths.tolist() == [3, 1, 2]
    tokens, _ = pad_batch([[5], [6, 7]], pad_id=3)
    assert tokens.tolist() == [[5, 3], [6, 7]]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=9), min_size=1, max_size=6),
       st.integers(0, 3))
def test_pad_batch_shapes_and_padding(sequences: list[list[int]], pad_id: int) -> None:
    tokens, lengths = pad_batch(sequences, pad_id=pad_id)
    assert tokens.dtype == lengths.dtype == torch.long
    assert is_padded(tokens, lengths, sequences, pad_id)


def test_pad_batch_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        pad_batch([])
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pad_batch([[1, 2], [], [3]])


# --- make_loader ----------------------------------------------------------------------


def test_make_loader_batches(synthetic: datasets.DatasetDict) -> None:
    split = synthetic["validation"].select(range(70))
    vocab = build_vocab(synthetic["train"])
    batches = list(make_loader(split, vocab, batch_size=32))
    assert [len(labels) for _, _, labels in batches] == [32, 32, 6]
    row = 0
    for tokens, lengths, labels in batches:
        B = len(labels)
        assert tokens.dtype == lengths.dtype == labels.dtype == torch.long
        expected = [vocab.encode(tokenize(sentence)) for sentence in split["sentence"][row:row + B]]
        assert is_padded(tokens, lengths, expected, vocab.pad_id)
        assert labels.tolist() == split["label"][row:row + B]
        row += B
    assert row == 70


def test_make_loader_shuffles_reproducibly(synthetic: datasets.DatasetDict) -> None:
    split = synthetic["validation"].select(range(40))
    vocab = build_vocab(synthetic["train"])

    def order(seed: int) -> list[list[int]]:
        loader = make_loader(split, vocab, 8, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return [sequence for tokens, lengths, _ in loader for sequence in unpad(tokens, lengths)]

    plain = [vocab.encode(tokenize(sentence)) for sentence in split["sentence"]]
    assert order(0) == order(0)
    assert order(0) != order(1) and order(0) != plain
    assert sorted(order(0)) == sorted(plain)


def test_make_loader_errors(synthetic: datasets.DatasetDict) -> None:
    vocab = Vocab.build([["fine"]])
    with pytest.raises(ValueError, match="no label"):
        make_loader(datasets.Dataset.from_dict({"sentence": ["fine ."], "label": [-1]}), vocab, 4)
    with pytest.raises(ValueError, match="missing \\['sentence'\\]"):
        make_loader(datasets.Dataset.from_dict({"text": ["fine ."], "label": [1]}), vocab, 4)
    with pytest.raises(ValueError, match="no tokens"):
        make_loader(datasets.Dataset.from_dict({"sentence": ["  "], "label": [1]}), vocab, 4)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(synthetic["validation"], vocab, 0)


@settings(deadline=None, max_examples=20)
@given(st.lists(st.text(alphabet="ab c", min_size=1).filter(str.strip), min_size=1, max_size=12),
       st.integers(1, 5))
def test_make_loader_covers_every_example_once(sentences: list[str], batch_size: int) -> None:
    dataset = datasets.Dataset.from_dict({"sentence": sentences, "label": [i % 2 for i in range(len(sentences))]})
    vocab = build_vocab(dataset)
    batches = list(make_loader(dataset, vocab, batch_size))
    assert sum(len(labels) for _, _, labels in batches) == len(sentences)
    assert torch.cat([lengths for _, lengths, _ in batches]).tolist() == [len(tokenize(s)) for s in sentences]


def test_make_loader_tokenizes_once_up_front(synthetic: datasets.DatasetDict,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    split = synthetic["validation"].select(range(20))
    vocab = build_vocab(synthetic["train"])
    calls = []
    monkeypatch.setattr(dl4nlp.data, "tokenize", lambda text: calls.append(text) or tokenize(text))
    loader = make_loader(split, vocab, 8, shuffle=True)
    assert len(calls) == 20
    for _ in range(2):
        assert sum(len(labels) for _, _, labels in loader) == 20
    assert len(calls) == 20  # iterating epochs does not tokenize again


def test_data_sets_live_in_their_own_modules() -> None:
    """Adding a data set adds a module under dl4nlp.data; the shared text-to-batch code does not name them."""
    import dl4nlp.data.sentiment  # noqa: F401 - imported, and still not re-exported

    shared = {name for name in vars(dl4nlp.data) if not name.startswith("_")}
    assert not {"load_sentiment", "make_synthetic_sentiment", "SENTIMENT_FEATURES"} & shared


# --- dl4nlp.data.corpus: the stories the BERT chapter pre-trains on -----------------------


def test_story_corpus_is_deterministic_and_shaped():
    from dl4nlp.data.corpus import SENTENCES_PER_STORY, make_story_corpus

    first = make_story_corpus(30, torch.Generator().manual_seed(0))
    assert first == make_story_corpus(30, torch.Generator().manual_seed(0))
    assert first != make_story_corpus(30, torch.Generator().manual_seed(1))
    assert len(first) == 30 and all(len(story) == SENTENCES_PER_STORY for story in first)
    assert all(sentence == sentence.lower() and sentence.endswith(" .") for story in first for sentence in story)
    assert make_story_corpus(0) == []
    with pytest.raises(ValueError, match="num_documents"):
        make_story_corpus(-1)


def test_story_sentences_follow_their_script_and_keep_their_details():
    """Sentence order is learnable (each story is its script's sentences in order) and words are predictable
    (the person's name returns in the story, with the pronoun that goes with it)."""
    from dl4nlp.data.corpus import PEOPLE, SCRIPTS, make_story_corpus

    pronoun_of = dict(PEOPLE)
    for story in make_story_corpus(60, torch.Generator().manual_seed(3)):
        fixed_words = [[word for word in template.split() if not word.startswith("{")]
                       for template in next(t for t in SCRIPTS.values() if _fits(story[0], t[0]))]
        for sentence, words in zip(story, fixed_words):
            assert all(word in sentence.split() for word in words), (sentence, words)
        names = [word for sentence in story for word in sentence.split() if word in pronoun_of]
        assert names and len(set(names)) == 1, story
        pronouns = {word for sentence in story for word in sentence.split() if word in ("he", "she")}
        assert pronouns <= {pronoun_of[names[0]]}, story


def _fits(sentence: str, template: str) -> bool:
    """Whether a sentence has the fixed words of a template at the same places."""
    import re

    pattern = re.escape(template)
    pattern = re.sub(r"\\\{\w+\\\}", r"[a-z ]+", pattern)
    return re.fullmatch(pattern, sentence) is not None


def test_review_corpus_is_deterministic_and_ends_every_review_with_a_verdict_of_its_label():
    """Every review is a plain generated sentence followed by one phrase and a verdict word of the document's
    one style; the verdict word agrees with the review's sentiment (read off its adjective); the prior holds."""
    import re

    from dl4nlp.data.corpus import REVIEW_VERDICTS, make_review_corpus
    from dl4nlp.data.sentiment import NEGATIVE_ADJECTIVES, POSITIVE_ADJECTIVES

    corpus = make_review_corpus(300, seed=0)
    assert corpus == make_review_corpus(300, seed=0) and corpus != make_review_corpus(300, seed=1)
    assert make_review_corpus(0, seed=0) == []
    positive_reviews = total = 0
    for document in corpus:
        styles = [name for name, (phrases, _) in REVIEW_VERDICTS.items() if any(f" {p} " in document for p in phrases)]
        assert len(styles) == 1, document
        phrases, words = REVIEW_VERDICTS[styles[0]]
        verdict = "|".join(re.escape(p) for p in phrases)
        answers = {word: label for label, options in words.items() for word, _ in options}
        reviews = re.findall(rf"(.+?) (?:{verdict}) ({'|'.join(answers)}) \.(?: |$)", document)
        assert 1 <= len(reviews) <= 3 and all(r.endswith(" .") and r.count(".") == 1 for r, _ in reviews), document
        for review, answer in reviews:
            tokens = set(review.split())
            label = 1 if tokens & set(POSITIVE_ADJECTIVES) else 0
            assert bool(tokens & set(NEGATIVE_ADJECTIVES)) != bool(label), review  # plain: one polarity
            assert answers[answer] == label, (review, answer)
            positive_reviews += label
            total += 1
    assert 0.5 < positive_reviews / total < 0.7  # positive_share 0.6
    assert all("review :" not in document and "positive" not in document for document in corpus)
    with pytest.raises(ValueError, match="documents"):
        make_review_corpus(-1, seed=0)
    with pytest.raises(ValueError, match="positive_share"):
        make_review_corpus(3, seed=0, positive_share=1.5)


def test_story_wordpiece_tokenizer_follows_berts_conventions():
    from dl4nlp.bert import encode_pairs, make_nsp_pairs
    from dl4nlp.data.corpus import SPECIAL_TOKENS, make_story_corpus, story_wordpiece_tokenizer

    stories = make_story_corpus(40, torch.Generator().manual_seed(0))
    texts = [sentence for story in stories for sentence in story]
    tokenizer = story_wordpiece_tokenizer(texts)
    assert tokenizer.get_vocab() == story_wordpiece_tokenizer(texts).get_vocab()  # the same on every run
    assert tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == SPECIAL_TOKENS
    assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == (0, 2, 3)
    assert tokenizer.tokenize(texts[0]) == texts[0].split()  # every word of the corpus is one token
    assert "violin" in tokenizer.vocab and "violins" not in tokenizer.vocab
    assert tokenizer.tokenize("The VIOLINS") == ["the", "violin", "##s"]  # the longest piece first, then "##"
    encoded = tokenizer("a b", "c")
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == ["[CLS]", "a", "b", "[SEP]", "c", "[SEP]"]
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    batch = encode_pairs(tokenizer, make_nsp_pairs(stories, torch.Generator().manual_seed(0)))
    assert int(batch["input_ids"].max()) < len(tokenizer)
    small = story_wordpiece_tokenizer(texts, vocab_size=len(tokenizer) - 5)
    assert len(small) == len(tokenizer) - 5
    rarest = [word for word in tokenizer.vocab if word not in small.vocab]
    assert rarest and all(len(small.tokenize(word)) == len(word) for word in rarest)  # split into characters
    with pytest.raises(ValueError, match="vocab_size"):
        story_wordpiece_tokenizer(texts, vocab_size=10)
    with pytest.raises(ValueError, match="texts"):
        story_wordpiece_tokenizer("one string")
