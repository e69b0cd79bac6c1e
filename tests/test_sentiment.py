"""dl4nlp.data.sentiment: the synthetic sentiment data set and loading SST-2-like data from files."""

from __future__ import annotations

import random
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest

from dl4nlp.data import build_vocab, tokenize
from dl4nlp.data import sentiment
from dl4nlp.data.sentiment import (INTENSIFIERS, NEGATIVE_ADJECTIVES, POSITIVE_ADJECTIVES, SENTIMENT_FEATURES,
                                   SYNTHETIC_KINDS, default_source, load_sentiment, make_synthetic_sentiment,
                                   synthetic_sentence)

NEGATORS = {"not", "n't", "never", "hardly", "nobody", "none"}
ADJECTIVES = set(POSITIVE_ADJECTIVES) | set(NEGATIVE_ADJECTIVES)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the Arrow cache that `datasets.load_dataset` writes inside the test's folder."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    return cache


@pytest.fixture(scope="module")
def synthetic() -> datasets.DatasetDict:
    return make_synthetic_sentiment()


# --- the synthetic data set -----------------------------------------------------------


def test_synthetic_schema_and_splits(synthetic: datasets.DatasetDict) -> None:
    assert set(synthetic) == {"train", "validation"}
    assert (len(synthetic["train"]), len(synthetic["validation"])) == (4000, 1000)
    for split in synthetic.values():
        assert split.features == SENTIMENT_FEATURES
        assert split.features["label"].names == ["negative", "positive"]
        assert split.features["idx"].dtype == "int32"
        assert split["idx"][:] == list(range(len(split)))


def test_synthetic_is_deterministic() -> None:
    first = make_synthetic_sentiment(300, 100, seed=7)
    again = make_synthetic_sentiment(300, 100, seed=7)
    other = make_synthetic_sentiment(300, 100, seed=8)
    for name in ("train", "validation"):
        assert first[name].to_dict() == again[name].to_dict()
        assert first[name]["sentence"][:] != other[name]["sentence"][:]
    assert first["validation"]["sentence"][:] != first["train"]["sentence"][:100]


def test_synthetic_is_fast() -> None:
    start = time.process_time()  # CPU time: other processes on the machine do not count
    make_synthetic_sentiment()
    assert time.process_time() - start < 1.5


@pytest.mark.parametrize("size", [0, 1, 7, 1000])
def test_synthetic_labels_are_balanced(size: int) -> None:
    labels = make_synthetic_sentiment(size, 0)["train"]["label"][:]
    assert len(labels) == size
    assert abs(labels.count(1) - labels.count(0)) <= 1


def positive(clause: str) -> bool:
    """The sentiment of one clause of a synthetic sentence: its one adjective, flipped by a negator."""
    words = clause.split()
    adjectives = [word for word in words if word in POSITIVE_ADJECTIVES or word in NEGATIVE_ADJECTIVES]
    assert len(adjectives) == 1, clause
    return (adjectives[0] in POSITIVE_ADJECTIVES) != bool(NEGATORS & set(words))


def parse(sentence: str) -> tuple[str, list[str], bool]:
    """Split a synthetic sentence as its template built it.

    Returns: the kind of template ("contrast", "long_range", "buried" or "plain", which
      includes negation); its clauses, the one that decides the label first.
    """
    assert sentence.endswith(" .")
    segments = sentence[:-2].split(" , ")
    if segments[0].startswith("although "):  # although other , main
        return "contrast", [segments[1], segments[0].removeprefix("although ")]
    if len(segments) == 2 and segments[1].startswith("even though "):  # main , even though other
        return "contrast", [segments[0], segments[1].removeprefix("even though ")]
    if len(segments) > 1:  # clause , filler or filler , clause , filler
        clauses = [segment for segment in segments if set(segment.split()) & ADJECTIVES]
        assert len(clauses) == 1, sentence
        return "long_range" if clauses[0] == segments[0] else "buried", clauses
    words = segments[0].split()
    for contrast in ("but", "yet"):  # other but main
        if contrast in words:
            cut = words.index(contrast)
            return "contrast", [" ".join(words[cut + 1:]), " ".join(words[:cut])]
    return "plain", segments[0].split(" and ")


def oracle(sentence: str) -> int:
    """The label the templates of `synthetic_sentence` give a sentence, worked out by hand."""
    _, clauses = parse(sentence)
    return int(positive(clauses[0]))


def test_every_synthetic_label_follows_the_templates(synthetic: datasets.DatasetDict) -> None:
    for split in synthetic.values():
        for sentence, label in zip(split["sentence"], split["label"]):
            assert oracle(sentence) == label, sentence


@pytest.mark.parametrize("kind", SYNTHETIC_KINDS)
@pytest.mark.parametrize("label", [0, 1])
def test_synthetic_sentence_kinds(kind: str, label: int) -> None:
    rng = random.Random(kind + str(label))
    for _ in range(50):
        sentence = synthetic_sentence(kind, label, rng)
        words = set(sentence.split())
        assert oracle(sentence) == label
        if kind == "negation":
            adjective = next(word for word in sentence.split() if word in POSITIVE_ADJECTIVES + NEGATIVE_ADJECTIVES)
            assert NEGATORS & words
            assert (adjective in NEGATIVE_ADJECTIVES) == (label == 1)  # "not bad" is positive
        parsed_kind, clauses = parse(sentence)
        assert parsed_kind == ("plain" if kind == "negation" else kind), sentence
        if kind == "contrast":  # the clauses disagree; the main one decides
            assert positive(clauses[0]) != positive(clauses[1])
        if kind == "plain":
            assert len({positive(clause) for clause in clauses}) == 1
        if kind in ("long_range", "buried"):  # neutral filler after the clause, for buried also before it
            before, after = f" {sentence}".split(f" {clauses[0]} ")
            assert not set(f"{before} {after}".split()) & (ADJECTIVES | NEGATORS | set(INTENSIFIERS))
            filler = len(after.split()) - 2  # minus "," and "."
            if kind == "long_range":
                assert before == "" and sentiment.LONG_RANGE_FILLER[0] <= filler <= sentiment.LONG_RANGE_FILLER[1]
            else:
                low, high = sentiment.BURIED_FILLER
                assert low <= len(before.split()) - 1 <= high and low <= filler <= high


def test_synthetic_sentence_errors() -> None:
    with pytest.raises(ValueError, match="kind"):
        synthetic_sentence("sarcasm", 1, random.Random(0))
    with pytest.raises(ValueError, match="label"):
        synthetic_sentence("plain", 2, random.Random(0))


def test_synthetic_has_every_phenomenon_and_varied_lengths(synthetic: datasets.DatasetDict) -> None:
    sentences = synthetic["train"]["sentence"][:]
    labels = synthetic["train"]["label"][:]
    token_lists = [tokenize(sentence) for sentence in sentences]
    lengths = [len(tokens) for tokens in token_lists]
    assert min(lengths) <= 6 and max(lengths) >= 30
    assert len(set(lengths)) >= 20
    negated = [label for tokens, label in zip(token_lists, labels) if NEGATORS & set(tokens)]
    contrast = [label for tokens, label in zip(token_lists, labels) if {"but", "although", "yet"} & set(tokens)]
    long = [label for length, label in zip(lengths, labels) if length >= 20]
    for group in (negated, contrast, long):
        assert len(group) >= 400 and 0.4 < sum(group) / len(group) < 0.6
    assert "n't" in set().union(*token_lists)
    assert len(build_vocab(synthetic["train"])) >= 250


# --- load_sentiment -------------------------------------------------------------------


def sst2_frame(sentences: list[str], labels: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"idx": pd.Series(range(len(sentences)), dtype="int32"), "sentence": sentences,
                         "label": pd.Series(labels, dtype="int64")})


@pytest.fixture
def parquet_source(tmp_path: Path) -> Path:
    """A folder laid out like the hub repository stanfordnlp/sst2: data/<split>-00000-of-00001.parquet."""
    folder = tmp_path / "sst2"
    (folder / "data").mkdir(parents=True)
    sst2_frame(["a gorgeous , witty film .", "it 's dull .", "moving .", "a mess ."], [1, 0, 1, 0]).to_parquet(
        folder / "data" / "train-00000-of-00001.parquet")
    sst2_frame(["it does n't work .", "lovely ."], [0, 1]).to_parquet(
        folder / "data" / "validation-00000-of-00001.parquet")
    sst2_frame(["unknown label ."], [-1]).to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    return folder


def test_load_sentiment_from_parquet_files(parquet_source: Path, hf_cache: Path) -> None:
    loaded = load_sentiment(str(parquet_source))
    assert set(loaded) == {"train", "validation", "test"}
    for split in loaded.values():
        assert split.features == SENTIMENT_FEATURES
    assert loaded["train"]["sentence"][:] == ["a gorgeous , witty film .", "it 's dull .", "moving .", "a mess ."]
    assert loaded["train"]["label"][:] == [1, 0, 1, 0]
    assert loaded["validation"]["label"][:] == [0, 1]
    assert loaded["test"]["label"][:] == [-1]
    assert hf_cache.exists()  # the real datasets.load_dataset path ran, caching under the test's folder


def test_load_sentiment_from_csv_adds_idx(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    pd.DataFrame({"sentence": ["Great!", "Awful.", "Fine film"], "label": [1, 0, 1]}).to_csv(
        folder / "train.csv", index=False)
    pd.DataFrame({"sentence": ["Not bad.", "Bad."], "label": [1, 0]}).to_csv(folder / "validation.csv", index=False)
    loaded = load_sentiment(str(folder))
    assert set(loaded) == {"train", "validation"}
    assert loaded["train"].features == loaded["validation"].features == SENTIMENT_FEATURES
    assert loaded["train"]["idx"][:] == [0, 1, 2]
    assert loaded["train"]["sentence"][:] == ["Great!", "Awful.", "Fine film"]
    assert loaded["validation"]["label"][:] == [1, 0]


def test_load_sentiment_converts_label_names(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "named-labels"
    folder.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"sentence": ["Not bad.", "Bad."], "label": ["positive", "negative"]}).to_csv(
            folder / f"{split}.csv", index=False)
    loaded = load_sentiment(str(folder))
    assert loaded["validation"].features == SENTIMENT_FEATURES
    assert loaded["validation"]["label"][:] == [1, 0]


def test_label_names_in_a_large_string_column_convert(tmp_path: Path, hf_cache: Path) -> None:
    """pandas 3 gives CSV text columns as large_string, which datasets 4.0 (Colab's) cannot cast to labels."""
    import datasets
    import pyarrow as pa

    from dl4nlp.data.sentiment import to_classification_schema

    table = pa.table({"sentence": pa.array(["Not bad.", "Bad.", "Fine."], pa.large_string()),
                      "label": pa.array(["positive", "negative", "positive"], pa.large_string())})
    split = to_classification_schema(datasets.Dataset(table), "train")
    assert split.features == SENTIMENT_FEATURES and split["label"][:] == [1, 0, 1]


def test_load_sentiment_holds_out_validation_when_the_source_has_none(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "only-train"
    folder.mkdir()
    sentences = [f"sentence number {i} ." for i in range(40)]
    pd.DataFrame({"sentence": sentences, "label": [i % 2 for i in range(40)]}).to_csv(
        folder / "train.csv", index=False)
    loaded = load_sentiment(str(folder), seed=3)
    assert (len(loaded["train"]), len(loaded["validation"])) == (36, 4)
    assert set(loaded["train"]["sentence"][:]) | set(loaded["validation"]["sentence"][:]) == set(sentences)
    assert load_sentiment(str(folder), seed=3)["validation"]["sentence"][:] == loaded["validation"]["sentence"][:]


def test_load_sentiment_names_missing_columns(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "imdb-like"
    folder.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"review": ["good", "bad"], "label": [1, 0]}).to_csv(folder / f"{split}.csv", index=False)
    with pytest.raises(ValueError, match=r"'train' split has no column 'sentence'.*\['review', 'label'\]"):
        load_sentiment(str(folder))


def test_load_sentiment_needs_a_train_split(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "no-train"
    folder.mkdir()
    pd.DataFrame({"sentence": ["good"], "label": [1]}).to_csv(folder / "validation.csv", index=False)
    with pytest.raises(ValueError, match=r"'train' split.*\['validation'\]"):
        load_sentiment(str(folder))


def test_load_sentiment_rejects_labels_that_are_not_binary(tmp_path: Path, hf_cache: Path) -> None:
    folder = tmp_path / "three-classes"
    folder.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"sentence": ["a", "b", "c"], "label": [0, 1, 2]}).to_csv(folder / f"{split}.csv", index=False)
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        load_sentiment(str(folder))


def test_load_sentiment_synthetic_and_seed() -> None:
    assert load_sentiment("synthetic")["train"].to_dict() == make_synthetic_sentiment()["train"].to_dict()
    assert load_sentiment("synthetic", seed=1)["train"]["sentence"][:5] != \
        make_synthetic_sentiment()["train"]["sentence"][:5]


def test_environment_variable_chooses_the_source(parquet_source: Path, hf_cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sentiment.DATA_VARIABLE, str(parquet_source))
    assert default_source() == str(parquet_source)
    assert load_sentiment()["validation"]["sentence"][:] == ["it does n't work .", "lovely ."]
    monkeypatch.setenv(sentiment.DATA_VARIABLE, "synthetic")
    assert len(load_sentiment()["train"]) == 4000


def test_default_source_is_sst2_only_in_colab_outside_smoke_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sentiment.DATA_VARIABLE, raising=False)
    monkeypatch.setenv("DL4NLP_SMOKE", "0")
    monkeypatch.setattr(sentiment, "in_colab", lambda: False)
    assert default_source() == "synthetic"
    monkeypatch.setattr(sentiment, "in_colab", lambda: True)
    assert default_source() == "stanfordnlp/sst2"
    monkeypatch.setenv("DL4NLP_SMOKE", "1")
    assert default_source() == "synthetic"


def test_hub_ids_go_to_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Colab does, with load_dataset replaced: no network in tests."""
    asked = []
    hub_like = datasets.DatasetDict({
        name: datasets.Dataset.from_dict({"idx": [0], "sentence": ["fine ."], "label": [label]},
                                         features=SENTIMENT_FEATURES)
        for name, label in (("train", 1), ("validation", 0), ("test", -1))})

    def fake_load_dataset(path: str) -> datasets.DatasetDict:
        asked.append(path)
        return hub_like

    monkeypatch.setattr(sentiment.datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(sentiment, "in_colab", lambda: True)
    monkeypatch.delenv(sentiment.DATA_VARIABLE, raising=False)
    monkeypatch.setenv("DL4NLP_SMOKE", "0")
    loaded = load_sentiment()
    assert asked == ["stanfordnlp/sst2"]
    assert set(loaded) == {"train", "validation", "test"}
    assert loaded["test"]["label"][:] == [-1]


# --- the harder variant -----------------------------------------------------------------


@pytest.fixture(scope="module")
def hard() -> datasets.DatasetDict:
    return load_sentiment("synthetic-hard")


def test_hard_variant_keeps_the_schema_and_is_deterministic(hard: datasets.DatasetDict) -> None:
    assert (len(hard["train"]), len(hard["validation"])) == (4000, 1000)
    for split in hard.values():
        assert split.features == SENTIMENT_FEATURES
    again = make_synthetic_sentiment(seed=0, **sentiment.HARD_SYNTHETIC)
    assert again["train"].to_dict() == hard["train"].to_dict()
    assert make_synthetic_sentiment(seed=1, **sentiment.HARD_SYNTHETIC)["train"]["sentence"][:5] != \
        hard["train"]["sentence"][:5]


def test_hard_variant_flips_a_share_of_the_training_labels_only(hard: datasets.DatasetDict) -> None:
    train_wrong = sum(oracle(s) != label for s, label in zip(hard["train"]["sentence"], hard["train"]["label"]))
    share = sentiment.HARD_SYNTHETIC["label_noise"]
    assert abs(train_wrong / len(hard["train"]) - share) < 0.02
    assert all(oracle(s) == label for s, label in zip(hard["validation"]["sentence"], hard["validation"]["label"]))
    labels = hard["train"]["label"][:]
    assert 0.45 < sum(labels) / len(labels) < 0.55


def test_hard_variant_puts_the_clause_further_from_the_ends(hard: datasets.DatasetDict) -> None:
    (long_low, long_high), (buried_low, buried_high) = (sentiment.HARD_SYNTHETIC["long_range_filler"],
                                                        sentiment.HARD_SYNTHETIC["buried_filler"])
    assert long_low > sentiment.LONG_RANGE_FILLER[1] and buried_low > sentiment.BURIED_FILLER[1]
    seen = set()
    for sentence in hard["validation"]["sentence"]:
        kind, clauses = parse(sentence)
        if kind not in ("long_range", "buried"):
            continue
        before, after = f" {sentence}".split(f" {clauses[0]} ")
        filler = len(after.split()) - 2
        low, high = (long_low, long_high) if kind == "long_range" else (buried_low, buried_high)
        assert low <= filler <= high, sentence
        if kind == "buried":
            assert low <= len(before.split()) - 1 <= high, sentence
        seen.add(kind)
    assert seen == {"long_range", "buried"}


def test_synthetic_options_are_checked() -> None:
    with pytest.raises(ValueError, match="label_noise"):
        make_synthetic_sentiment(10, 10, label_noise=0.5)
    with pytest.raises(ValueError, match="long_range_filler"):
        make_synthetic_sentiment(10, 10, long_range_filler=(2, 5))
    with pytest.raises(ValueError, match="buried_filler"):
        make_synthetic_sentiment(10, 10, buried_filler=(9, 8))
    assert make_synthetic_sentiment(50, 20, label_noise=0.0)["train"].to_dict() == \
        make_synthetic_sentiment(50, 20)["train"].to_dict()  # the defaults are the original data set
