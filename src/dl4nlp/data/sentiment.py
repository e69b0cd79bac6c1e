"""The sentence-classification data set of the RNN chapter: movie reviews, negative or positive.

`load_sentiment` gives it through one call, with the schema of the Stanford
Sentiment Treebank (SST-2) on the Hugging Face hub: columns ``idx`` (int32),
``sentence`` (string) and ``label`` (ClassLabel negative / positive). In Colab
it loads ``stanfordnlp/sst2``; offline (tests, the book build, grading) it uses a
synthetic data set that `make_synthetic_sentiment` generates, built so that a
bag of words, a vanilla RNN and an LSTM or GRU clearly differ on it.
"""

from __future__ import annotations

import os
import random

import datasets

from dl4nlp.runtime import in_colab, smoke_mode

DATA_VARIABLE = "DL4NLP_DATA"  # environment variable: the source `load_sentiment` uses by default
SST2_HUB_ID = "stanfordnlp/sst2"
LABEL_NAMES = ("negative", "positive")
SENTIMENT_FEATURES = datasets.Features({
    "idx": datasets.Value("int32"),
    "sentence": datasets.Value("string"),
    "label": datasets.ClassLabel(names=list(LABEL_NAMES)),
})

# --- the synthetic sentiment data set -------------------------------------------------

NOUNS = (
    "film", "movie", "picture", "plot", "story", "script", "screenplay", "dialogue", "acting", "cast",
    "lead performance", "soundtrack", "score", "music", "ending", "finale", "opening scene", "direction",
    "cinematography", "camera work", "editing", "pacing", "humor", "premise", "villain", "hero", "sequel",
    "set design", "special effects", "final act",
)
POSITIVE_ADJECTIVES = (
    "good", "great", "excellent", "wonderful", "brilliant", "superb", "delightful", "charming", "moving",
    "gripping", "clever", "funny", "beautiful", "stunning", "masterful", "engaging", "fresh", "touching",
    "thrilling", "inventive", "smart", "powerful", "memorable", "terrific", "fantastic", "lovely", "witty",
    "heartfelt", "compelling", "enjoyable", "elegant", "gorgeous", "satisfying", "absorbing", "refreshing",
)
NEGATIVE_ADJECTIVES = (
    "bad", "awful", "terrible", "dull", "boring", "weak", "clumsy", "tedious", "bland", "predictable",
    "messy", "lifeless", "forgettable", "painful", "shallow", "silly", "annoying", "flat", "dreadful",
    "mediocre", "lazy", "pointless", "stale", "awkward", "sloppy", "tiresome", "horrible", "disappointing",
    "uninspired", "muddled", "clunky", "hollow", "grating", "sluggish", "incoherent",
)
_COUNTABLE = tuple(noun for noun in NOUNS if noun not in (  # those that read well as "a ... <noun>"
    "acting", "dialogue", "music", "direction", "cinematography", "camera work", "editing", "pacing", "humor",
    "set design", "special effects"))
INTENSIFIERS = (
    "very", "really", "truly", "quite", "incredibly", "remarkably", "rather", "extremely", "genuinely",
    "surprisingly", "so", "pretty", "deeply", "thoroughly", "wonderfully", "fairly", "utterly",
)
_VERBS = ("was", "is", "seemed", "felt", "looked", "turned out")
_NEGATED_VERBS = ("was not", "was n't", "was never", "is not", "is n't", "never seemed", "did n't seem",
                  "never felt", "did n't feel", "was hardly", "is not at all", "was not at all")
_CONTRASTS = ("but", "but then", "but in the end", "but sadly", "but luckily", "yet")
# Neutral filler phrases of 3 to 7 tokens: where, when and with whom the film was seen, dry facts about it.
_FILLER = (
    "on a tuesday", "with my cousin", "in the afternoon", "after the news", "near the station", "with two friends",
    "on the weekend", "it opened last friday", "my parents came along", "we sat near the back", "we took a taxi",
    "it is in english", "i went on monday", "we took the tram", "it opened in march",
    "at the small theater downtown", "we bought popcorn and lemonade", "my sister picked the seats",
    "the screening started at nine", "it runs about two hours", "there were forty people there",
    "the tickets cost twelve dollars", "we took the bus home", "my neighbor had mentioned it",
    "we parked behind the library", "my uncle watched it twice", "the studio is in toronto",
    "with two old friends from school", "after a day at the office", "it was shot in three countries",
    "the director also wrote the novel", "in the second week of march", "on the biggest screen in town",
    "the trailer came out in june", "we sat in the third row", "the lights went down at eight",
    "we had dinner across the street", "the running time is ninety minutes", "it was filmed in one winter",
    "the credits list two hundred names", "the lead actor is from wales", "it had a preview in april",
    "i saw it on a rainy tuesday", "it takes place in a harbor town", "it is based on a radio play",
    "we bought tickets at the front desk", "the director grew up in that town",
    "my sister had read the book first", "the cast flew in from los angeles",
)
_FILLER_BY_LENGTH = {length: [phrase for phrase in _FILLER if len(phrase.split()) == length]
                     for length in range(3, 8)}
SYNTHETIC_KINDS = ("plain", "negation", "contrast", "long_range", "buried")
LONG_RANGE_FILLER = (12, 20)  # long_range: the filler tokens after the clause, drawn from this range
BURIED_FILLER = (10, 12)  # buried: the filler tokens on each side of the clause, drawn from this range
# The harder variant (source "synthetic-hard"): the deciding clause further from the ends, and a share of the
# training labels flipped at random, so that models separate instead of all reaching 100%.
HARD_SYNTHETIC = {"long_range_filler": (30, 45), "buried_filler": (18, 25), "label_noise": 0.1}


def _filler(rng: random.Random, length: int) -> list[str]:
    """Exactly `length` (at least 3) neutral tokens: whole filler phrases joined by commas."""
    if length <= 7:
        return rng.choice(_FILLER_BY_LENGTH[length]).split()
    first = rng.randint(3, min(7, length - 4))  # leaves at least 3 tokens after the comma
    return [*rng.choice(_FILLER_BY_LENGTH[first]).split(), ",", *_filler(rng, length - first - 1)]


def _clause(rng: random.Random, polarity: int, negated: bool) -> list[str]:
    """A clause about the film with sentiment `polarity` (1 positive, 0 negative).

    A negated clause uses an adjective of the opposite polarity: "the plot was not good" is negative.
    """
    adjective_positive = (polarity == 1) != negated
    adjective = rng.choice(POSITIVE_ADJECTIVES if adjective_positive else NEGATIVE_ADJECTIVES)
    intensifier = [] if negated or rng.random() < 0.5 else [rng.choice(INTENSIFIERS)]
    if rng.random() < 0.7:  # "the plot was (not) really clever"
        verb = rng.choice(_NEGATED_VERBS if negated else _VERBS)
        return ["the", *rng.choice(NOUNS).split(), *verb.split(), *intensifier, adjective]
    verb = rng.choice(("it was not", "it is not", "it was never") if negated else ("it was", "it is"))
    description = [*intensifier, adjective, *rng.choice(_COUNTABLE).split()]
    article = "an" if description[0][0] in "aeiou" else "a"
    return [*verb.split(), article, *description]  # "it is a (truly) brilliant film"


def synthetic_sentence(kind: str, label: int, rng: random.Random, *,
                       long_range_filler: tuple[int, int] = LONG_RANGE_FILLER,
                       buried_filler: tuple[int, int] = BURIED_FILLER) -> str:
    """One synthetic review of the given kind whose sentiment is `label` (0 negative, 1 positive).

    Every review is built from clauses such as "the plot was (really) clever" or "it is a
    (truly) brilliant film": one of 30 nouns, one of 35 positive or 35 negative adjectives,
    sometimes one of 17 intensifiers. The kinds, with what each takes (label in brackets):

    - ``plain``: one clause, or two of the same sentiment joined by "and": "the plot was
      really clever and the music is lovely ." [positive]. A bag of words is enough.
    - ``negation``: one negated clause, "the acting was not good ." [negative], "it is not a
      bad film ." [positive]; negators "not", "n't", "never", "hardly". The adjective alone
      points the wrong way: the order of the words has to be read.
    - ``contrast``: two clauses of opposite sentiment (each negated one time in four); the
      main clause decides: "the acting was great but the plot was dull ." [negative],
      "although <other> , <main> .", "<main> , even though <other> .". A bag of words sees
      a positive and a negative word.
    - ``long_range``: a clause, then 12-20 tokens of neutral filler: "the score was superb ,
      we took the bus home , it opened last friday , on a tuesday ." [positive]. A vanilla
      RNN reading left to right has forgotten the clause by the end; the backward half of a
      bidirectional model reads it last.
    - ``buried``: the clause in the middle, 10-12 filler tokens on either side, so it is far
      from both ends and both directions of a bidirectional model must carry it: a vanilla
      RNN forgets it, the gated memory of an LSTM or GRU keeps it.

    Args: kind, one of SYNTHETIC_KINDS; label, 0 or 1; rng, the random source;
      long_range_filler, buried_filler: the (lowest, highest) number of filler tokens
      after the clause of ``long_range`` and on each side of the clause of ``buried``.
    Returns: the sentence, lowercase and tokenized like SST-2 (tokens separated by spaces).
    """
    if label not in (0, 1):
        raise ValueError(f"label must be 0 (negative) or 1 (positive), got {label}")
    if kind == "plain":
        tokens = _clause(rng, label, negated=False)
        if rng.random() < 0.4:
            tokens += ["and", *_clause(rng, label, negated=False)]
    elif kind == "negation":
        tokens = _clause(rng, label, negated=True)
    elif kind == "contrast":
        main = _clause(rng, label, negated=rng.random() < 0.25)  # decides the label
        other = _clause(rng, 1 - label, negated=rng.random() < 0.25)
        form = rng.random()
        if form < 0.6:
            tokens = [*other, *rng.choice(_CONTRASTS).split(), *main]
        elif form < 0.8:
            tokens = ["although", *other, ",", *main]
        else:
            tokens = [*main, ",", "even though", *other]
    elif kind == "long_range":
        tokens = [*_clause(rng, label, negated=False), ",", *_filler(rng, rng.randint(*long_range_filler))]
    elif kind == "buried":
        before, after = (_filler(rng, rng.randint(*buried_filler)) for _ in range(2))
        tokens = [*before, ",", *_clause(rng, label, negated=False), ",", *after]
    else:
        raise ValueError(f"kind must be one of {SYNTHETIC_KINDS}, got {kind!r}")
    return " ".join([*tokens, "."])


def _synthetic_split(size: int, rng: random.Random, label_noise: float = 0.0, **filler) -> datasets.Dataset:
    """`size` examples, labels balanced within every kind, in random order; a share `label_noise`
    of the labels is then flipped (the sentences stay as they are)."""
    plan = [(SYNTHETIC_KINDS[(index // 2) % len(SYNTHETIC_KINDS)], index % 2) for index in range(size)]
    rng.shuffle(plan)
    sentences = [synthetic_sentence(kind, label, rng, **filler) for kind, label in plan]
    labels = [label for _, label in plan]
    if label_noise > 0:
        labels = [1 - label if rng.random() < label_noise else label for label in labels]
    return datasets.Dataset.from_dict({"idx": list(range(size)), "sentence": sentences, "label": labels},
                                      features=SENTIMENT_FEATURES)


def make_synthetic_sentiment(num_train: int = 4000, num_validation: int = 1000, *, seed: int = 0,
                             long_range_filler: tuple[int, int] = LONG_RANGE_FILLER,
                             buried_filler: tuple[int, int] = BURIED_FILLER,
                             label_noise: float = 0.0) -> datasets.DatasetDict:
    """A generated movie-review data set with the schema of SST-2, to run offline.

    Each split holds the five kinds of `synthetic_sentence` (plain, negation, contrast,
    long_range, buried) in equal shares, each kind with as many positive as negative
    examples, in random order. Sentences are 5 to 34 tokens long; the vocabulary has
    about 290 words. What it shows (embedding and hidden size 64, Adam with lr 5e-3,
    batches of 64, 6 epochs): a bag of words reaches about 65% (it gets negation backwards
    and contrast by chance); a bidirectional vanilla RNN about 90% (it fails on the buried
    clauses, and a left-to-right one on long_range too); a bidirectional LSTM or GRU 100%.

    The output depends only on the arguments: it is drawn from `random.Random(seed)`,
    the same on every machine and Python version. Generating the default sizes takes
    a fraction of a second.

    The keyword options make it harder (`HARD_SYNTHETIC` is the set the book's comparison
    uses, ``load_sentiment("synthetic-hard")``): longer filler puts the deciding clause of
    ``long_range`` and ``buried`` sentences further from the ends, and `label_noise` flips
    that share of the *training* labels at random (validation labels stay right, so
    validation accuracy still measures what was learned, and a model that memorises the
    flipped labels gains nothing from it).

    Args: num_train, num_validation, the split sizes; seed; long_range_filler, buried_filler,
      see `synthetic_sentence`; label_noise, in [0, 0.5), the share of training labels flipped.
    Returns: DatasetDict with "train" and "validation", columns idx (int32), sentence
      (string), label (ClassLabel(names=["negative", "positive"])).
    """
    if num_train < 0 or num_validation < 0:
        raise ValueError(f"split sizes must be >= 0, got {num_train} and {num_validation}")
    if not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise}")
    for name, (low, high) in (("long_range_filler", long_range_filler), ("buried_filler", buried_filler)):
        if not 3 <= low <= high:
            raise ValueError(f"{name} must be (low, high) with 3 <= low <= high, got {(low, high)}")
    filler = {"long_range_filler": long_range_filler, "buried_filler": buried_filler}
    rng = random.Random(seed)
    train = _synthetic_split(num_train, rng, label_noise, **filler)
    validation = _synthetic_split(num_validation, rng, **filler)
    return datasets.DatasetDict({"train": train, "validation": validation})


# --- loading --------------------------------------------------------------------------


def default_source() -> str:
    """The source `load_sentiment` uses when given none.

    Returns: $DL4NLP_DATA if set; else "stanfordnlp/sst2" in Colab outside smoke mode;
      else "synthetic".
    """
    source = os.environ.get(DATA_VARIABLE, "").strip()
    if source:
        return source
    return SST2_HUB_ID if in_colab() and not smoke_mode() else "synthetic"


def to_classification_schema(split: datasets.Dataset, name: str, label_names: tuple[str, ...] = LABEL_NAMES,
                             features: datasets.Features = SENTIMENT_FEATURES) -> datasets.Dataset:
    """Check one split's columns and labels and cast it to idx / sentence / label (`features`): the one schema
    of every sentence-classification data set of the course (sentiment, sarcasm). A column "text" is taken as
    "sentence"; labels are numbers 0, 1, ... (-1 unlabelled) or the names `label_names`."""
    if "sentence" not in split.column_names and "text" in split.column_names:
        split = split.rename_column("text", "sentence")
    meaning = ", ".join(f"{number} {label}" for number, label in enumerate(label_names))
    missing = [column for column in ("sentence", "label") if column not in split.column_names]
    if missing:
        raise ValueError(f"the {name!r} split has no column {' or '.join(repr(c) for c in missing)}; a data set "
                         f"of sentences needs 'sentence' (text) and 'label' ({meaning}, -1 unlabelled). "
                         f"It has the columns {split.column_names}: rename them to fit.")
    if "idx" not in split.column_names:
        split = split.add_column("idx", list(range(len(split))))
    split = split.select_columns(["idx", "sentence", "label"])
    if split.features == features:
        return split
    named = split.features["label"].dtype in ("string", "large_string")
    bad = sorted(set(split["label"]) - (set(label_names) if named else {-1, *range(len(label_names))}))
    if bad:
        raise ValueError(f"the {name!r} split has labels {bad[:5]}; expected {meaning}, -1 (unlabelled) or the "
                         f"names {list(label_names)}")
    if named:  # names to numbers here: datasets 4.0 cannot cast a large_string column (pandas 3's CSVs) to labels
        split = split.map(lambda batch: {"label": [label_names.index(label) for label in batch["label"]]},
                          batched=True, features=datasets.Features({**split.features, "label": datasets.Value("int64")}))
    return split.cast(features)


def load_sentiment(source: str | None = None, *, seed: int = 0) -> datasets.DatasetDict:
    """The sentence-classification data set of the RNN chapter, with SST-2's schema.

    Args: source, "synthetic" for `make_synthetic_sentiment(seed=seed)`, "synthetic-hard" for
      `make_synthetic_sentiment(seed=seed, **HARD_SYNTHETIC)`; anything else goes
      to `datasets.load_dataset`: a hub id ("stanfordnlp/sst2") or a local folder of data
      files (parquet, CSV, JSON) named by split, like the hub's ``data/train-*.parquet``.
      None: `default_source()`, i.e. $DL4NLP_DATA, else SST-2 in Colab, else synthetic.
      seed, for the synthetic data, and to hold out 10% of train as validation when the
      source has no validation split.
    Returns: DatasetDict with "train", "validation" and, if the source has one, "test";
      columns idx (int32), sentence (string), label (ClassLabel negative/positive). In
      SST-2 the test labels are -1 (hidden): evaluate on validation.
    Raises: ValueError naming what is missing if the source lacks a train split or the
      columns sentence and label.
    """
    source = default_source() if source is None else source
    if source == "synthetic":
        return make_synthetic_sentiment(seed=seed)
    if source == "synthetic-hard":
        return make_synthetic_sentiment(seed=seed, **HARD_SYNTHETIC)
    loaded = datasets.load_dataset(source)
    if not isinstance(loaded, datasets.DatasetDict) or "train" not in loaded:
        found = list(loaded) if isinstance(loaded, datasets.DatasetDict) else type(loaded).__name__
        raise ValueError(f"{source!r} should have a 'train' split (and 'validation'); found {found}")
    if "validation" not in loaded:
        held_out = loaded["train"].train_test_split(test_size=0.1, seed=seed)
        loaded = datasets.DatasetDict({**loaded, "train": held_out["train"], "validation": held_out["test"]})
    names = [name for name in ("train", "validation", "test") if name in loaded]
    return datasets.DatasetDict({name: to_classification_schema(loaded[name], name) for name in names})
