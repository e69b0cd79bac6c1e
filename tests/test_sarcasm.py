"""dl4nlp.data.sarcasm: the finetuning chapter's synthetic sarcasm set, and loading TweetEval-like data."""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd
import pytest

from dl4nlp.data import sarcasm
from dl4nlp.data.sarcasm import (BAD, GOOD, HAPPY, SARCASM_FEATURES, UNHAPPY, default_sarcasm_source, load_sarcasm,
                                 make_synthetic_sarcasm, synthetic_sarcasm_sentence)


@pytest.fixture(scope="module")
def synthetic() -> datasets.DatasetDict:
    return make_synthetic_sarcasm()


def parse(sentence: str) -> tuple[str, str]:
    """The feeling and the situation a synthetic sentence is made of."""
    feeling = next(f for f in sorted(HAPPY + UNHAPPY, key=len, reverse=True) if f" {f} " in f" {sentence} ")
    situation = next(s for s in BAD + GOOD if f" {s} " in f" {sentence} ")
    return feeling, situation


def test_schema_sizes_and_balance(synthetic: datasets.DatasetDict) -> None:
    assert {name: len(split) for name, split in synthetic.items()} == {"train": 2000, "validation": 500, "test": 500}
    for split in synthetic.values():
        assert split.features == SARCASM_FEATURES
        assert split["idx"][:] == list(range(len(split)))
        assert sum(split["label"]) == len(split) // 2


def test_every_label_follows_the_rule(synthetic: datasets.DatasetDict) -> None:
    """Sarcastic exactly when a happy feeling meets a bad situation."""
    for split in synthetic.values():
        for sentence, label in zip(split["sentence"], split["label"]):
            feeling, situation = parse(sentence)
            assert label == int(feeling in HAPPY and situation in BAD), sentence


def test_validation_and_test_situations_are_never_seen_in_training(synthetic: datasets.DatasetDict) -> None:
    situations = {name: {parse(sentence)[1] for sentence in split["sentence"]} for name, split in synthetic.items()}
    assert len(situations["train"]) == 48  # 24 bad and 24 good
    assert not situations["train"] & situations["validation"]
    assert not situations["train"] & situations["test"]
    assert not situations["validation"] & situations["test"]


def test_words_alone_do_not_give_the_label(synthetic: datasets.DatasetDict) -> None:
    """Neither the feeling nor the situation decides: a happy sentence is sarcastic about half the time."""
    happy = [label for sentence, label in zip(synthetic["train"]["sentence"], synthetic["train"]["label"])
             if parse(sentence)[0] in HAPPY]
    assert 0.55 < sum(happy) / len(happy) < 0.8  # 1/2 of all are sarcastic, 1/4 are happy and sincere
    bad = [label for sentence, label in zip(synthetic["train"]["sentence"], synthetic["train"]["label"])
           if parse(sentence)[1] in BAD]
    assert 0.55 < sum(bad) / len(bad) < 0.8


def test_deterministic_and_seeded() -> None:
    small = make_synthetic_sarcasm(50, 10, 10)["train"].to_dict()
    assert small == make_synthetic_sarcasm(50, 10, 10)["train"].to_dict()
    assert make_synthetic_sarcasm(50, 10, 10, seed=1)["train"]["sentence"] != \
        make_synthetic_sarcasm(50, 10, 10)["train"]["sentence"]
    assert load_sarcasm("synthetic")["test"].to_dict() == make_synthetic_sarcasm()["test"].to_dict()


def test_errors_say_what_to_fix() -> None:
    import random

    with pytest.raises(ValueError, match="label must be 0 .* or 1"):
        synthetic_sarcasm_sentence(2, random.Random(0))
    with pytest.raises(ValueError, match="split sizes must be >= 0"):
        make_synthetic_sarcasm(-1)


def test_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sarcasm.SARCASM_VARIABLE, raising=False)
    monkeypatch.setenv("DL4NLP_SMOKE", "0")
    monkeypatch.setattr(sarcasm, "in_colab", lambda: False)
    assert default_sarcasm_source() == "synthetic"
    monkeypatch.setattr(sarcasm, "in_colab", lambda: True)
    assert default_sarcasm_source() == "cardiffnlp/tweet_eval:irony"
    monkeypatch.setenv("DL4NLP_SMOKE", "1")
    assert default_sarcasm_source() == "synthetic"
    monkeypatch.setenv(sarcasm.SARCASM_VARIABLE, "some/folder")
    assert default_sarcasm_source() == "some/folder"


def test_hub_id_and_config_go_to_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Colab does, with load_dataset replaced (no network in tests): TweetEval's columns are text and label."""
    asked = []

    def fake_load_dataset(path: str, config: str | None) -> datasets.DatasetDict:
        asked.append((path, config))
        return datasets.DatasetDict({name: datasets.Dataset.from_dict({"text": ["great, another monday"],
                                                                       "label": [1]})
                                     for name in ("train", "validation", "test")})

    monkeypatch.setattr(sarcasm.datasets, "load_dataset", fake_load_dataset)
    loaded = load_sarcasm("cardiffnlp/tweet_eval:irony")
    assert asked == [("cardiffnlp/tweet_eval", "irony")]
    assert set(loaded) == {"train", "validation", "test"}
    assert loaded["test"].features == SARCASM_FEATURES
    assert loaded["test"]["sentence"][:] == ["great, another monday"]


def test_local_files_without_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "irony"
    folder.mkdir()
    pd.DataFrame({"text": [f"tweet {i}" for i in range(20)], "label": [i % 2 for i in range(20)]}).to_csv(
        folder / "train.csv", index=False)
    loaded = load_sarcasm(str(folder))
    assert (len(loaded["train"]), len(loaded["validation"])) == (18, 2)
    assert loaded["validation"].features == SARCASM_FEATURES


def test_bad_labels_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "three"
    folder.mkdir()
    for split in ("train", "validation"):
        pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 2]}).to_csv(folder / f"{split}.csv", index=False)
    with pytest.raises(ValueError, match=r"labels \[2\]; expected 0 not sarcastic, 1 sarcastic"):
        load_sarcasm(str(folder))
