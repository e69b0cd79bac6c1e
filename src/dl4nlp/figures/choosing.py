"""Figures of the page "Which model should you use?": the lecture's five eras of NLP with what each gains and
gives up, the learning curve of a neural model (training against validation accuracy as the labelled data
grow, with a bag-of-words baseline), and what two interpretable models say about one sentence.

Each function returns a new `matplotlib.figure.Figure` with one axis; the page draws them in hidden cells with
the measured numbers and gives the caption and the alt text. The numbers the data figures draw by default
are placeholders for a preview: the page passes measured ones (`dl4nlp.choosing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, label

# (era, this course's example, labelled data it needs, what you can read, the role that colours it)
ERAS = (
    ("rule-based", "a sentiment lexicon\n(VADER)", "none", "every rule and\nevery word's score", "plain"),
    ("statistical", "bag of words: naive\nBayes, logistic regr.", "supervised", "a weight for\nevery feature", "input"),
    ("neural\nend-to-end", "RNN (GRU), CNN\nfrom random weights", "supervised,\nmore of it", "inputs and\noutputs only",
     "hidden"),
    ("pretrain and\nfinetune", "MiniLM (BERT)\n+ a task head", "a modest\nlabelled set", "general knowledge;\ntask data only",
     "gate"),
    ("pretrain and\nprompt", "a GPT, a template,\nlabel words", "none, or k\nexamples", "not how or why\nit decides",
     "candidate"),
)


def eras_figure() -> Figure:
    """The lecture's five modeling eras of NLP, left (oldest) to right: for each, an example from this course,
    the labelled data it needs and what can be read from it. Along the bottom, the trade the lecture names: with
    each era, more performance and generality, less control and interpretability."""
    width = 17.0
    figure, ax = canvas(width, 9.4, inches_per_unit=9.6 / width)
    column = width / len(ERAS)
    rows = (("example", 6.0), ("labelled data", 4.2), ("you can read", 2.4))
    for k, (era, example, data, readable, role) in enumerate(ERAS):
        x = column * (k + 0.5)
        box(ax, (x, 8.1), era, role=role, width=column - 0.35, height=1.3, fontsize=FONT_SIZE, bold=True)
        for (name, y), text in zip(rows, (example, data, readable)):
            box(ax, (x, y), text, role=role, width=column - 0.35, height=1.45, fontsize=FONT_SIZE - 3,
                linewidth=1.0)
            if k == 0:
                label(ax, (0.12, y + 0.95), name, color=MUTED, fontsize=FONT_SIZE - 4, ha="left", style="italic")
    arrow(ax, (0.4, 0.95), (width - 0.4, 0.95), color=COLORS["output"][1], linewidth=2.2)
    label(ax, (width / 2, 1.35), "performance and ability to generalize", color=COLORS["output"][1],
          fontsize=FONT_SIZE - 1)
    arrow(ax, (width - 0.4, 0.35), (0.4, 0.35), color=COLORS["input"][1], linewidth=2.2)
    label(ax, (width / 2, -0.05), "control and interpretability", color=COLORS["input"][1], fontsize=FONT_SIZE - 1)
    ax.set_ylim(-0.4, 9.4)
    return figure


def _mean_sd(values: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    means = np.array([np.mean(v) for v in values])
    sds = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
    return means, sds


def learning_curve_figure(sizes: Sequence[int] = (50, 200, 800, 2000),
                          train: Sequence[Sequence[float]] = ((1.0, 1.0, 1.0), (1.0, 1.0, 0.99), (1.0, 0.98, 0.99),
                                                              (0.99, 1.0, 0.99)),
                          validation: Sequence[Sequence[float]] = ((0.5, 0.52, 0.51), (0.55, 0.5, 0.53),
                                                                   (0.7, 0.64, 0.6), (0.98, 0.99, 0.97)),
                          baselines: Mapping[str, Sequence[Sequence[float]]] | None = None,
                          model: str = "GRU", chance: float = 0.5) -> Figure:
    """A learning curve: a neural model's accuracy on its own training sentences and on held-out ones, against
    the number of labelled training examples (log scale), mean ± sd over seeds. Where the training accuracy is
    high and the validation accuracy low, the model has memorized its few examples: it overfits. The gap is
    shaded; `baselines` (e.g. naive Bayes) add their validation accuracy as dotted lines.

    Args: sizes (increasing); train, validation: one sequence of values per size, one value per seed;
      baselines, {name: values per size} or None; model, its name in the legend; chance, the dashed line.
    """
    baselines = dict(baselines or {})
    if not sizes or any(len(values) != len(sizes) for values in [train, validation, *baselines.values()]):
        raise ValueError(f"learning_curve_figure: give one list of values per size ({len(sizes)} sizes) for the "
                         f"training and validation accuracy and every baseline")
    figure = Figure(figsize=(7.4, 4.6), dpi=100)
    ax = figure.add_subplot()
    train_mean, train_sd = _mean_sd(train)
    validation_mean, validation_sd = _mean_sd(validation)
    ax.fill_between(sizes, validation_mean, train_mean, color=COLORS["output"][0], alpha=0.8,
                    label="the gap: overfitting")
    ax.errorbar(sizes, train_mean, yerr=train_sd, color=COLORS["hidden"][1], marker="s", linestyle="--", capsize=4,
                linewidth=1.6, label=f"{model}: training accuracy")
    ax.errorbar(sizes, validation_mean, yerr=validation_sd, color=COLORS["hidden"][1], marker="o", capsize=4,
                linewidth=2.0, label=f"{model}: validation accuracy")
    for size, mean in zip(sizes, validation_mean):
        ax.annotate(f"{mean:.2f}", (size, mean), textcoords="offset points", xytext=(7, -13), fontsize=9,
                    color=COLORS["hidden"][1])
    colors = [COLORS["input"][1], COLORS["gate"][1], COLORS["candidate"][1]]
    for (name, values), color in zip(baselines.items(), colors):
        means, sds = _mean_sd(values)
        ax.errorbar(sizes, means, yerr=sds, color=color, marker="^", linestyle=":", capsize=3, linewidth=1.6,
                    label=f"{name}: validation accuracy")
        for size, mean in zip(sizes, means):
            ax.annotate(f"{mean:.2f}", (size, mean), textcoords="offset points", xytext=(7, 5), fontsize=8,
                        color=color)
    ax.axhline(chance, color=MUTED, linestyle="--", linewidth=1)
    ax.text(sizes[-1] * 1.35, chance - 0.012, f"guessing: {chance:.2f}", color=MUTED, fontsize=9, va="top", ha="right")
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), [f"{size:,}" for size in sizes])
    ax.minorticks_off()
    ax.set_xlim(sizes[0] / 1.4, sizes[-1] * 1.4)
    ax.set_ylim(min(chance - 0.06, ax.get_ylim()[0]), 1.04)
    seeds = min(len(v) for v in [*train, *validation])
    ax.set(xlabel="labelled training examples (log scale)", ylabel="accuracy",
           title=f"learning curve: mean ± sd over {seeds} seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2, fontsize=8, frameon=False)
    figure.tight_layout()
    return figure


def word_evidence_figure(words: Sequence[str] = ("the", "acting", "was", "not", "good", "."),
                         lexicon: Sequence[float] = (0.0, 0.0, 0.0, 0.0, -1.4, 0.0),
                         weights: Sequence[float] = (0.02, 0.1, -0.05, -0.3, 1.2, 0.0),
                         names: tuple[str, str] = ("VADER, after its rules", "logistic regression")) -> Figure:
    """What two interpretable models say about one sentence, word by word: the lexicon's score of each word after
    its rules (negation, boosters, "but"), and the bag-of-words model's weight of each token (its log-odds
    towards positive). Bars to the right push towards positive, to the left towards negative. A neural model
    has no such numbers to draw.

    Args: words, the tokens in order; lexicon, weights: one number per token; names of the two models.
    """
    if not words or len(lexicon) != len(words) or len(weights) != len(words):
        raise ValueError(f"word_evidence_figure: give one lexicon score and one weight per word ({len(words)} words, "
                         f"{len(lexicon)} scores, {len(weights)} weights)")
    height = min(6.8, 1.6 + 0.42 * len(words))
    figure = Figure(figsize=(7.2, height), dpi=100)
    ax = figure.add_subplot()
    positions = np.arange(len(words))[::-1]  # the first word at the top
    ax.barh(positions + 0.2, lexicon, height=0.38, color=COLORS["plain"][1], label=f"{names[0]} (valence)")
    ax.barh(positions - 0.2, weights, height=0.38, color=COLORS["input"][1], label=f"{names[1]} (weight, log-odds)")
    ax.axvline(0, color=INK, linewidth=0.8)
    ax.set_yticks(positions, [f"“{word}”" for word in words])
    limit = max(0.5, float(np.max(np.abs([*lexicon, *weights]))) * 1.15)
    ax.set_xlim(-limit, limit)
    ax.text(limit * 0.97, positions[0] + 0.55, "→ positive", ha="right", fontsize=9, color=MUTED)
    ax.text(-limit * 0.97, positions[0] + 0.55, "negative ←", ha="left", fontsize=9, color=MUTED)
    ax.set_ylim(-0.7, len(words) - 0.1)
    ax.set(xlabel="evidence for positive, word by word", title="what an interpretable model can show")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, fontsize=8, frameon=False)
    figure.tight_layout()
    return figure
