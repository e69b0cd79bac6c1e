"""The finetuning chapter's sarcasm data set: sentences labelled sarcastic or not.

`load_sarcasm` gives it through one call, with the schema of every classification set of the
course (`dl4nlp.data.sentiment`): columns ``idx`` (int32), ``sentence`` (string) and ``label``
(ClassLabel "not sarcastic" / "sarcastic"). In Colab it loads the irony task of TweetEval
(``cardiffnlp/tweet_eval``, config ``irony``: 2,862 / 955 / 784 tweets, irony 1); offline (tests,
the book build, grading) a synthetic set that `make_synthetic_sarcasm` generates.

The synthetic sentences follow the lecture's example, "Natalie was soooooo happy she had booked
a 5 a.m. flight": a person, a feeling and a situation. A sentence is sarcastic when a happy
feeling meets a bad situation; "delighted to get a free upgrade" and "annoyed that the train was
cancelled" are sincere. Whether a situation is bad is world knowledge: the situations of the test
split (and of validation) never occur in training, so a model trained from scratch has to guess
their polarity from their words, while a pretrained encoder has read about delayed flights and
parking tickets before. That is the paradigm's claim, made measurable.
"""

from __future__ import annotations

import os
import random

import datasets

from dl4nlp.data.sentiment import to_classification_schema
from dl4nlp.runtime import in_colab, smoke_mode

SARCASM_HUB_ID, SARCASM_HUB_CONFIG = "cardiffnlp/tweet_eval", "irony"
SARCASM_VARIABLE = "DL4NLP_SARCASM_DATA"  # environment variable: the source `load_sarcasm` uses by default
SARCASM_LABELS = ("not sarcastic", "sarcastic")
SARCASM_FEATURES = datasets.Features({
    "idx": datasets.Value("int32"),
    "sentence": datasets.Value("string"),
    "label": datasets.ClassLabel(names=list(SARCASM_LABELS)),
})

NAMES = ("natalie", "tom", "priya", "marco", "lena", "sam", "aisha", "jonas", "mia", "carlos", "yuki", "omar")
HAPPY = ("happy", "thrilled", "delighted", "excited", "glad", "pleased", "overjoyed", "so happy")
UNHAPPY = ("annoyed", "upset", "sad", "furious", "disappointed", "miserable", "fed up", "frustrated")
INTENSIFIERS = ("", "", "so", "really", "soooo", "sooooooo", "very", "just")
BAD = (  # situations nobody enjoys
    "to have booked a 5 a.m. flight", "to wait in an airport security line for two hours",
    "that the flight was delayed again", "to be stuck in traffic all morning", "that it rained all vacation",
    "to work through the whole weekend", "that the printer jammed again", "to get a parking ticket",
    "that the train was cancelled", "to lose the house keys", "that the wifi went down during the exam",
    "to spend the holiday filling in tax forms", "to be woken at four by the neighbours' drill",
    "that the laptop crashed before saving", "to sit next to a crying baby for ten hours",
    "that the heating broke in january", "to step in a puddle on the way to the interview",
    "that the restaurant lost the reservation", "to be put on hold for an hour", "that the bus drove past",
    "to find a parking fine on the windshield", "that the package arrived broken", "to miss the last train home",
    "that the coffee machine was out of order", "to get a flat tire on the highway", "that the hotel was overbooked",
    "to clean up after the flood in the basement", "that the phone screen cracked", "to redo the whole report",
    "that the concert was sold out", "to queue at the post office all afternoon", "that the fridge stopped working",
    "to catch a cold on the first day of vacation", "that the ice cream melted in the car",
    "to be stuck in an elevator", "that the dentist appointment ran late", "to pay twice for the same ticket",
    "that the umbrella broke in the storm", "to wait three weeks for a refund", "that the meeting ran overtime",
)
GOOD = (  # situations anyone enjoys
    "to get a free upgrade to first class", "that the flight landed early", "to win tickets to the concert",
    "that the sun came out for the picnic", "to have the whole weekend off", "to find twenty dollars in an old coat",
    "that the old friends came to visit", "to get a raise", "that the exam went well", "to sleep in on sunday",
    "that the team won the final", "to receive flowers on the birthday", "that the package arrived a day early",
    "to finish the marathon", "that the cake turned out perfect", "to see the northern lights",
    "that the doctor had good news", "to get the job offer", "that the rain stopped before the wedding",
    "to find a seat on the crowded train", "that the trip to italy was booked", "to adopt a puppy",
    "that the garden is full of tomatoes", "to hear the favourite song on the radio", "that the bakery had fresh bread",
    "to get a letter from an old friend", "that the new bike was delivered", "to pass the driving test",
    "that the holiday photos came out beautifully", "to spend the afternoon at the beach",
    "that the soup was delicious",
    "to be invited to the party", "that the repair was free", "to meet the favourite author",
    "that the kids loved the present", "to get front row seats", "that the museum was free on sunday",
    "to swim in the warm lake", "that the refund arrived", "to watch the sunset from the hill",
)


def synthetic_sarcasm_sentence(label: int, rng: random.Random, bad: tuple[str, ...] = BAD,
                               good: tuple[str, ...] = GOOD) -> str:
    """One sentence whose label is `label`: 1 = sarcastic (a happy feeling about a bad situation), 0 = sincere
    (a happy feeling about a good situation, or an unhappy one about a bad situation, half each).

    Args: label, 0 or 1; rng, the random source; bad, good, the situations to draw from.
    Returns: e.g. "natalie was soooo happy to have booked a 5 a.m. flight ." [sarcastic].
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (not sarcastic) or 1 (sarcastic), got {label}")
    if label == 1:
        feeling, situation = rng.choice(HAPPY), rng.choice(bad)
    elif rng.random() < 0.5:
        feeling, situation = rng.choice(HAPPY), rng.choice(good)
    else:
        feeling, situation = rng.choice(UNHAPPY), rng.choice(bad)
    intensifier = rng.choice(INTENSIFIERS)
    words = [rng.choice(NAMES), "was", *intensifier.split(), *feeling.split(), *situation.split()]
    if label == 1 and rng.random() < 0.3:
        words += [".", rng.choice(("just great", "wonderful", "lucky me", "what a day"))]
    return " ".join([*words, "."])


def make_synthetic_sarcasm(num_train: int = 2000, num_validation: int = 500, num_test: int = 500, *,
                           seed: int = 0) -> datasets.DatasetDict:
    """A generated sarcasm data set with the course's classification schema, to run offline.

    The 40 bad and 40 good situations are shuffled (by `seed`) and split 24 / 8 / 8 between train,
    validation and test, so that validation and test sentences are about situations never seen in
    training. Labels are balanced in every split. The output depends only on the arguments
    (`random.Random(seed)`), the same on every machine.

    Returns: DatasetDict with "train", "validation" and "test", columns idx (int32), sentence (string),
      label (ClassLabel(names=["not sarcastic", "sarcastic"])).
    """
    if min(num_train, num_validation, num_test) < 0:
        raise ValueError(f"split sizes must be >= 0, got {num_train}, {num_validation} and {num_test}")
    rng = random.Random(seed)
    bad, good = list(BAD), list(GOOD)
    rng.shuffle(bad)
    rng.shuffle(good)
    splits = {}
    for index, (name, size) in enumerate((("train", num_train), ("validation", num_validation), ("test", num_test))):
        low, high = (0, 24) if index == 0 else (24, 32) if index == 1 else (32, 40)
        labels = [i % 2 for i in range(size)]
        rng.shuffle(labels)
        sentences = [synthetic_sarcasm_sentence(label, rng, tuple(bad[low:high]), tuple(good[low:high]))
                     for label in labels]
        splits[name] = datasets.Dataset.from_dict({"idx": list(range(size)), "sentence": sentences, "label": labels},
                                                  features=SARCASM_FEATURES)
    return datasets.DatasetDict(splits)


def default_sarcasm_source() -> str:
    """$DL4NLP_SARCASM_DATA if set; else TweetEval's irony task in Colab outside smoke mode; else "synthetic"."""
    source = os.environ.get(SARCASM_VARIABLE, "").strip()
    if source:
        return source
    return f"{SARCASM_HUB_ID}:{SARCASM_HUB_CONFIG}" if in_colab() and not smoke_mode() else "synthetic"


def load_sarcasm(source: str | None = None, *, seed: int = 0) -> datasets.DatasetDict:
    """The sarcasm data set, with the course's classification schema.

    Args: source, "synthetic" for `make_synthetic_sarcasm(seed=seed)`; "hub_id:config" or a hub id or local
      folder for `datasets.load_dataset` (a column "text" or "sentence", and "label" 0/1); None:
      `default_sarcasm_source()`.
    Returns: DatasetDict with "train", "validation" and, if the source has one, "test"; columns idx (int32),
      sentence (string), label (ClassLabel not sarcastic / sarcastic).
    Raises: ValueError naming what is missing if a split lacks a text or label column.
    """
    source = default_sarcasm_source() if source is None else source
    if source == "synthetic":
        return make_synthetic_sarcasm(seed=seed)
    name, _, config = source.partition(":")
    loaded = datasets.load_dataset(name, config or None)
    if not isinstance(loaded, datasets.DatasetDict) or "train" not in loaded:
        found = list(loaded) if isinstance(loaded, datasets.DatasetDict) else type(loaded).__name__
        raise ValueError(f"{source!r} should have a 'train' split (and 'validation'); found {found}")
    if "validation" not in loaded:
        held_out = loaded["train"].train_test_split(test_size=0.1, seed=seed)
        loaded = datasets.DatasetDict({**loaded, "train": held_out["train"], "validation": held_out["test"]})
    return datasets.DatasetDict({split: to_classification_schema(loaded[split], split, SARCASM_LABELS,
                                                                 SARCASM_FEATURES)
                                 for split in ("train", "validation", "test") if split in loaded})
