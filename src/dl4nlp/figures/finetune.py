"""Figures of the finetuning chapter: the pretrain-and-finetune paradigm (pretrain once, add a task
head, finetune with some layers frozen), the sarcasm detector (a pretrained encoder, pooling, a
linear head), the data-efficiency curve (accuracy against the number of labelled examples, with
error bars over seeds) and a confusion matrix.

Each function returns a new `matplotlib.figure.Figure` with one axis; the chapter page draws them
in hidden cells, with the measured numbers, and gives the caption and alt text. The symbols match
`dl4nlp.finetune`: h_t the encoder's outputs, p the pooled vector, logits = W dropout(p) + b;
`freeze(model, k)` trains the head and the top k of the L layers. The numbers that the data
functions draw by default are placeholders for a preview: the page passes measured ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, frame, label

FROZEN, TRAINED = "norm", "gate"  # grey: frozen; green: updated by finetuning
PRETRAINED_COLOR, SCRATCH_COLOR = COLORS["input"][1], COLORS["hidden"][1]


def _stack(ax, x: float, num_layers: int, roles: Sequence[str], names: Sequence[str], *, bottom: float = 2.3,
           step: float = 0.62, width: float = 3.6) -> float:
    """The embeddings and num_layers layers of an encoder, bottom to top; returns the top edge."""
    for i, (role, name) in enumerate(zip(roles, names)):
        box(ax, (x, bottom + i * step), name, role=role, width=width, height=0.5, fontsize=FONT_SIZE - 3)
    return bottom + (num_layers) * step + 0.25


def paradigm_figure(num_layers: int = 6, trainable_layers: int | None = 2) -> Figure:
    """Pretrain and finetune in three steps. 1: an encoder (embeddings and L layers) is pretrained once on
    unlabelled text with its pretraining heads (masked LM, NSP). 2: those heads are dropped and a task head,
    a new linear layer, is added. 3: finetuning on labelled examples updates the head and the top
    `trainable_layers` layers (green); the rest stays frozen (grey), as `dl4nlp.finetune.freeze` does.

    Args: num_layers L, 2 to 12; trainable_layers, None (everything is trained) or 0 to L.
    """
    if not 2 <= num_layers <= 12:
        raise ValueError(f"paradigm_figure: draw between 2 and 12 layers, got {num_layers}")
    if trainable_layers is not None and not 0 <= trainable_layers <= num_layers:
        raise ValueError(f"paradigm_figure: trainable_layers must be None or between 0 and {num_layers}, got "
                         f"{trainable_layers}")
    step = min(0.62, 4.4 / num_layers)
    width = 25.0
    figure, ax = canvas(width, 10.4, inches_per_unit=9.8 / width)
    names = ["embeddings", *[f"layer {i}" for i in range(1, num_layers + 1)]]
    panels = [("1. pretrain (once, expensive)", "unlabelled text:\nbooks, Wikipedia"),
              ("2. add a task head", "(no data yet)"),
              ("3. finetune (cheap)", "labelled examples:\n“… so happy to get a\nparking ticket” → sarcastic")]
    if trainable_layers is None:
        finetuned = [TRAINED] * (num_layers + 1)
    else:
        finetuned = [FROZEN] * (num_layers + 1 - trainable_layers) + [TRAINED] * trainable_layers
    for p, (title, data) in enumerate(panels):
        left = 0.2 + p * 8.3
        x = left + 3.95
        frame(ax, (left, 0.15), 7.9, 10.0)
        label(ax, (x, 9.7), title, fontsize=FONT_SIZE - 1, color=INK)
        box(ax, (x, 0.95), data, role="plain", width=5.2, height=1.2 if p == 2 else 0.95, fontsize=FONT_SIZE - 3)
        roles = ["input"] * (num_layers + 1) if p < 2 else finetuned
        top = _stack(ax, x, num_layers, roles, names, step=step)
        arrow(ax, (x, 1.62 if p == 2 else 1.45), (x, 2.02), color=MUTED if p == 1 else INK)
        head_y = top + 1.3
        arrow(ax, (x, top), (x, head_y - 0.5))
        if p == 0:
            box(ax, (x, head_y), "pretraining heads:\nmasked LM, NSP", role="candidate", width=4.2, height=1.0,
                fontsize=FONT_SIZE - 3)
            label(ax, (x, head_y + 1.0), "loss: predict the hidden words", color=MUTED, fontsize=FONT_SIZE - 3)
        else:
            box(ax, (x, head_y), "task head (new):\nlinear D → 2", role=TRAINED if p == 2 else "output", width=4.2,
                height=1.0, fontsize=FONT_SIZE - 3)
            label(ax, (x, head_y + 1.0), "loss: cross-entropy on the labels" if p == 2 else
                  "pretraining heads dropped", color=MUTED, fontsize=FONT_SIZE - 3)
        if p < 2:
            arrow(ax, (left + 7.75, 5.0), (left + 8.45, 5.0), linewidth=2.2)
    frozen = finetuned.count(FROZEN)
    left = 0.2 + 2 * 8.3
    box(ax, (left + 1.0, 5.6), "", role=TRAINED, width=0.5, height=0.35)
    label(ax, (left + 1.0, 5.1), "trained", fontsize=FONT_SIZE - 4)
    box(ax, (left + 1.0, 4.2), "", role=FROZEN, width=0.5, height=0.35)
    label(ax, (left + 1.0, 3.5), f"frozen:\n{frozen} of {num_layers + 1}", fontsize=FONT_SIZE - 4)
    return figure


def sarcasm_classifier_figure(tokens: Sequence[str] = ("[CLS]", "tom", "was", "so", "happy", "to", "get", "a",
                                                       "parking", "ticket", ".", "[SEP]"),
                              pooling: str = "mean") -> Figure:
    """The sarcasm detector: the tokens of a sentence go through the pretrained encoder, its outputs h_t are
    pooled into one vector p (the mean over the real tokens, or h at [CLS]), and the task head turns p into
    two logits and P(sarcastic) (`dl4nlp.finetune.SequenceClassifier`).

    Args: tokens, 3 to 14 tokens starting with [CLS]; pooling, "mean" or "cls".
    """
    if not 3 <= len(tokens) <= 14:
        raise ValueError(f"sarcasm_classifier_figure: draw between 3 and 14 tokens, got {len(tokens)}")
    if pooling not in ("mean", "cls"):
        raise ValueError(f"sarcasm_classifier_figure: pooling must be 'mean' or 'cls', got {pooling!r}")
    T, step = len(tokens), 1.5
    width = T * step + 1.0
    figure, ax = canvas(width, 10.2, inches_per_unit=9.6 / max(width, 19.0))
    xs = [0.5 + step * (t + 0.5) for t in range(T)]
    encoder_y, pooled_y = 3.4, 6.1
    box(ax, (width / 2, encoder_y), "pretrained encoder: L Transformer layers (BERT / MiniLM)", role="input",
        width=width - 1.0, height=1.0, fontsize=FONT_SIZE - 1)
    pooled_x = width / 2
    for t, (x, token) in enumerate(zip(xs, tokens)):
        box(ax, (x, 1.3), token, role="plain", width=1.38, height=0.7, fontsize=FONT_SIZE - 3)
        arrow(ax, (x, 1.68), (x, encoder_y - 0.52))
        used = pooling == "mean" or t == 0
        box(ax, (x, 4.75), f"$h_{{{t}}}$", role="hidden" if used else "plain", width=1.0, height=0.6,
            fontsize=FONT_SIZE - 2)
        arrow(ax, (x, encoder_y + 0.52), (x, 4.43), color=INK if used else MUTED)
        if used:
            arrow(ax, (x, 5.07), (pooled_x + 0.08 * (x - pooled_x), pooled_y - 0.42), color=INK, linewidth=1.0)
    pool_text = ("p = mean of $h_t$ over the real tokens" if pooling == "mean" else "p = $h_0$, the output at [CLS]")
    box(ax, (pooled_x, pooled_y), pool_text, role="hidden", width=7.6, height=0.8, fontsize=FONT_SIZE - 2)
    arrow(ax, (pooled_x, pooled_y + 0.42), (pooled_x, 7.08))
    box(ax, (pooled_x, 7.5), "task head: logits = W dropout(p) + b   (D → 2)", role="output", width=9.4,
        height=0.8, fontsize=FONT_SIZE - 2)
    arrow(ax, (pooled_x, 7.92), (pooled_x, 8.58))
    box(ax, (pooled_x, 9.0), "softmax → P(sarcastic), P(not sarcastic)", role="output", width=8.2, height=0.8,
        fontsize=FONT_SIZE - 2)
    label(ax, (0.3, 0.45), "WordPiece tokens of the sentence", ha="left", color=MUTED, fontsize=FONT_SIZE - 3)
    return figure


def data_efficiency_figure(sizes: Sequence[int] = (16, 64, 256),
                           pretrained: Sequence[Sequence[float]] = ((0.6, 0.7, 0.65), (0.75, 0.72, 0.78),
                                                                   (0.8, 0.79, 0.82)),
                           scratch: Sequence[Sequence[float]] = ((0.5, 0.5, 0.52), (0.5, 0.55, 0.53),
                                                                 (0.62, 0.7, 0.66)),
                           chance: float = 0.5, metric: str = "accuracy") -> Figure:
    """A data-efficiency curve: the held-out `metric` against the number of labelled training examples, for
    the pretrained encoder finetuned and the same architecture trained from scratch. Each point is the mean
    over seeds, its error bar one standard deviation (numpy's std with ddof=1), its label the mean.

    Args: sizes, the numbers of training examples (increasing); pretrained, scratch: one sequence of values
      per size, one value per seed (at least one); chance, the score of guessing the majority class (dashed);
      metric, the name on the y axis. The defaults are placeholders: pass measured values.
    """
    if not sizes or len(pretrained) != len(sizes) or len(scratch) != len(sizes):
        raise ValueError(f"data_efficiency_figure: give one list of values per size for both models, got "
                         f"{len(sizes)} sizes, {len(pretrained)} and {len(scratch)} lists")
    if any(len(values) == 0 for values in [*pretrained, *scratch]):
        raise ValueError("data_efficiency_figure: every size needs at least one value")
    figure = Figure(figsize=(7.0, 4.6), dpi=100)
    ax = figure.add_subplot()
    for values, name, color, marker, dy in [(pretrained, "pretrained encoder, finetuned", PRETRAINED_COLOR, "o", 9),
                                            (scratch, "same architecture, from scratch", SCRATCH_COLOR, "s", -15)]:
        means = np.array([np.mean(v) for v in values])
        sds = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
        ax.errorbar(sizes, means, yerr=sds, color=color, marker=marker, capsize=4, linewidth=1.8, label=name)
        for size, mean in zip(sizes, means):
            ax.annotate(f"{mean:.2f}", (size, mean), textcoords="offset points", xytext=(8, dy), fontsize=9,
                        color=color)
    ax.axhline(chance, color=MUTED, linestyle="--", linewidth=1)
    ax.text(sizes[-1] * 1.45, chance - 0.005, f"guessing: {chance:.2f}", color=MUTED, fontsize=9, ha="right", va="top")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(size) for size in sizes])
    ax.minorticks_off()
    ax.set_xlim(sizes[0] / 1.5, sizes[-1] * 1.5)
    ax.set_ylim(min(chance - 0.05, ax.get_ylim()[0]), min(1.02, max(ax.get_ylim()[1], chance + 0.1) + 0.03))
    ax.set(xlabel="labelled training examples (log scale)", ylabel=f"held-out {metric}",
           title=f"data efficiency: mean ± sd over {min(len(v) for v in [*pretrained, *scratch])} seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, fontsize=9, frameon=False)
    figure.tight_layout()
    return figure


def confusion_matrix_figure(confusion: Sequence[Sequence[int]] = ((40, 10), (12, 38)),
                            labels: Sequence[str] = ("not sarcastic", "sarcastic")) -> Figure:
    """A confusion matrix: cell (i, j) counts the examples of true class i predicted as j (the layout of
    `dl4nlp.finetune.classification_metrics` and scikit-learn), shaded by its share of row i; for two classes
    the cells are named TN, FP, FN, TP with the second class as the positive one.

    Args: confusion (C, C), counts, 2 <= C <= 6; labels, the C class names.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or not 2 <= counts.shape[0] <= 6:
        raise ValueError(f"confusion_matrix_figure: confusion should be a square (C, C) table with 2 <= C <= 6, got "
                         f"shape {counts.shape}")
    if len(labels) != counts.shape[0]:
        raise ValueError(f"confusion_matrix_figure: {counts.shape[0]} classes but {len(labels)} labels")
    C = counts.shape[0]
    figure = Figure(figsize=(5.6, 4.6), dpi=100)
    ax = figure.add_subplot()
    rows = counts.sum(axis=1, keepdims=True).clip(min=1)
    shares = counts / rows
    names = {(0, 0): "TN", (0, 1): "FP", (1, 0): "FN", (1, 1): "TP"} if C == 2 else {}
    fill_right, fill_wrong = np.array([29, 78, 216]) / 255, np.array([185, 28, 28]) / 255
    for i in range(C):
        for j in range(C):
            base = fill_right if i == j else fill_wrong
            color = 1 - shares[i, j] * 0.75 * (1 - base)  # white for 0, a strong tint for the whole row
            ax.add_patch(Rectangle((j, C - 1 - i), 1, 1, facecolor=color, edgecolor="white", linewidth=2))
            text = f"{counts[i, j]}\n{shares[i, j]:.0%} of row"
            if (i, j) in names:
                text = f"{names[(i, j)]}\n" + text
            ax.text(j + 0.5, C - 1 - i + 0.5, text, ha="center", va="center", fontsize=10, color=INK)
    ax.set_xlim(0, C)
    ax.set_ylim(0, C)
    ax.set_aspect("equal")
    ax.set_xticks([j + 0.5 for j in range(C)], list(labels))
    ax.set_yticks([C - 1 - i + 0.5 for i in range(C)], list(labels), rotation=90, va="center")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{counts.sum()} examples, accuracy {accuracy:.1%}")
    figure.tight_layout()
    return figure
