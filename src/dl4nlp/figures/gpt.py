"""Figures of the chapter on generative Transformers (`dl4nlp.gpt`): the autoregressive loop, the causal mask
(with and without a key/value cache), GPT-2's decoder stack, what the cache saves, and the four decoding methods
on one next-token distribution.

Each function returns a new `matplotlib.figure.Figure`; the chapter page draws them in hidden cells and gives the
caption and alt text. Figure functions are named `<thing>_figure`, never like a function of `dl4nlp.gpt`
(`causal_mask_figure()` draws what `dl4nlp.gpt.decoder_mask` returns). The symbols follow `dl4nlp.gpt`: tokens
x_1 ... x_T, p(x_{t+1} | x_{<=t}), D the width, L blocks, E_word the word embeddings, tied to the LM head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, frame, label, operator, path

FAINT = "#cbd5e1"  # what may not be read, or what was dropped


def _x(t: int) -> str:
    return rf"$x_{{{t}}}$"


def autoregressive_loop_figure(prompt: Sequence[str] = ("the", "man", "went"),
                               generated: Sequence[str] = ("to", "the", "store")) -> Figure:
    """Generation, one token per step: the model reads every token so far, gives the distribution of the next
    one, a token is chosen from it and appended, and the longer sequence is the next step's input.

    Args: prompt, 1 to 5 tokens; generated, 1 to 4 tokens chosen one after the other.
    """
    if not 1 <= len(prompt) <= 5 or not 1 <= len(generated) <= 4:
        raise ValueError(f"autoregressive_loop_figure: draw 1 to 5 prompt tokens and 1 to 4 generated ones, got "
                         f"{len(prompt)} and {len(generated)}")
    steps, columns = len(generated), len(prompt) + len(generated) - 1
    step_x, row_height = 1.25, 1.55
    gpt_x = 1.6 + columns * step_x + 1.0
    width = gpt_x + 5.6
    height = steps * row_height + 1.3
    figure, ax = canvas(width, height, inches_per_unit=9.6 / width)
    label(ax, (1.6 + columns * step_x / 2, height - 0.45), "input: every token so far", color=MUTED,
          fontsize=FONT_SIZE - 2)
    label(ax, (gpt_x + 3.6, height - 0.45), r"chosen $x_{t+1}$", color=MUTED, fontsize=FONT_SIZE - 2)
    for step in range(steps):
        y = height - 1.2 - step * row_height
        label(ax, (0.55, y), f"step {step + 1}", color=MUTED, fontsize=FONT_SIZE - 2)
        tokens = list(prompt) + list(generated[:step])
        for t, token in enumerate(tokens):
            role = "input" if t < len(prompt) else "output"
            box(ax, (1.6 + t * step_x, y), token, role=role, width=1.1, height=0.62, fontsize=FONT_SIZE - 2)
        arrow(ax, (1.6 + (len(tokens) - 1) * step_x + 0.6, y), (gpt_x - 0.75, y), color=MUTED, linewidth=1.2)
        box(ax, (gpt_x, y), "GPT", role="hidden", width=1.4, height=0.75, fontsize=FONT_SIZE - 1, bold=True)
        arrow(ax, (gpt_x + 0.7, y), (gpt_x + 1.5, y), color=INK, linewidth=1.2)
        label(ax, (gpt_x + 2.0, y + 0.05), r"$p(\cdot \mid x_{\leq t})$", fontsize=FONT_SIZE - 3)
        box(ax, (gpt_x + 3.9, y), generated[step], role="output", width=1.1, height=0.62, fontsize=FONT_SIZE - 2)
        if step + 1 < steps:  # the chosen token is appended: it is the last input of the next step
            target = (1.6 + len(tokens) * step_x, y - row_height + 0.33)
            path(ax, [(gpt_x + 3.9, y - 0.33), (gpt_x + 3.9, y - 0.75), (target[0], y - 0.75), target],
                 color=COLORS["output"][1], linewidth=1.2)
            label(ax, (gpt_x + 1.2, y - 0.95), "append", color=COLORS["output"][1], fontsize=FONT_SIZE - 3)
    return figure


def causal_mask_figure(words: Sequence[str] = ("the", "man", "went", "to", "the", "store"),
                       past_length: int = 5) -> Figure:
    """The causal mask, as `dl4nlp.gpt.decoder_mask` returns it. Left: a whole sequence, query i (a row) may
    attend to key j (a column) iff j <= i, a lower triangle with its diagonal. Right: with a key/value cache,
    one new token attends to the `past_length` cached keys and to itself: a row of decoder_mask(1, past_length).

    Each cell is a patch with the gid ``cell-<whole|cached>-<i>-<j>-<allowed|blocked>`` (numbered from 0), so tests
    can read the mask off the drawing.

    Args: words, 2 to 8 tokens; past_length, 1 to len(words) - 1 tokens before the new one.
    """
    T = len(words)
    if not 2 <= T <= 8:
        raise ValueError(f"causal_mask_figure: draw between 2 and 8 words, got {T}")
    if not 1 <= past_length <= T - 1:
        raise ValueError(f"causal_mask_figure: past_length must be between 1 and {T - 1}, got {past_length}")
    cell, left = 0.8, 2.3
    right_left = left + T * cell + 2.6
    width = right_left + (past_length + 1) * cell + 0.5
    height = T * cell + 3.0
    figure, ax = canvas(width, height, inches_per_unit=9.6 / width)
    top = height - 1.6

    def grid(x0: float, rows: list[int], keys: int, kind: str, mask: torch.Tensor) -> None:
        for r, i in enumerate(rows):
            for j in range(keys):
                allowed = bool(mask[r, j])
                fill = (COLORS["key"][0] if kind == "cached" and j < keys - 1 else COLORS["input"][0]) \
                    if allowed else "#ffffff"
                patch = Rectangle((x0 + j * cell, top - (r + 1) * cell), cell, cell, facecolor=fill,
                                  edgecolor=FAINT if not allowed else COLORS["input"][1], linewidth=1.0, zorder=2)
                patch.set_gid(f"cell-{kind}-{i}-{j}-{'allowed' if allowed else 'blocked'}")
                ax.add_patch(patch)
                if not allowed:
                    label(ax, (x0 + (j + 0.5) * cell, top - (r + 0.5) * cell), "·", color=FAINT,
                          fontsize=FONT_SIZE - 2)

    whole = torch.ones(T, T, dtype=torch.bool).tril()  # decoder_mask(T): j <= i
    grid(left, list(range(T)), T, "whole", whole)
    for t, word in enumerate(words):
        label(ax, (left + (t + 0.5) * cell, top + 0.3), word, rotation=60, ha="left", va="bottom",
              fontsize=FONT_SIZE - 3, color=INK)
        label(ax, (left - 0.15, top - (t + 0.5) * cell), word, ha="right", fontsize=FONT_SIZE - 3)
    label(ax, (left + T * cell / 2, 0.35), "whole sequence: query i sees key j iff j ≤ i", fontsize=FONT_SIZE - 2,
          color=MUTED)
    label(ax, (0.2, top - T * cell / 2), "query i", rotation=90, fontsize=FONT_SIZE - 2, color=MUTED)
    label(ax, (left + T * cell + 0.45, top + 0.9), "key j", fontsize=FONT_SIZE - 2, color=MUTED)

    cached = torch.ones(1, past_length + 1, dtype=torch.bool)  # decoder_mask(1, past_length)
    grid(right_left, [past_length], past_length + 1, "cached", cached)
    for j in range(past_length + 1):
        label(ax, (right_left + (j + 0.5) * cell, top + 0.3), words[j], rotation=60, ha="left", va="bottom",
              fontsize=FONT_SIZE - 3)
    label(ax, (right_left - 0.15, top - 0.5 * cell), words[past_length], ha="right", fontsize=FONT_SIZE - 3)
    label(ax, (right_left + past_length * cell / 2, top - cell - 0.45), f"cached keys ({past_length})",
          color=COLORS["key"][1], fontsize=FONT_SIZE - 3)
    label(ax, (right_left + (past_length + 0.5) * cell, top - cell - 1.0), "new", color=COLORS["input"][1],
          fontsize=FONT_SIZE - 3)
    label(ax, (right_left + (past_length + 1) * cell / 2, top - cell - 1.8),
          "with a cache: one new query,\nevery earlier key", fontsize=FONT_SIZE - 2, color=MUTED, va="top")
    return figure


def decoder_stack_figure(layers: int = 12) -> Figure:
    """GPT-2's decoder: token and position embeddings, L pre-norm blocks whose self-attention is causal, a
    final LayerNorm and the LM head tied to the word embeddings, which scores every token of the vocabulary as
    the next one.

    Args: layers, the number of blocks L written at the stack (GPT-2 small: 12).
    """
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"decoder_stack_figure: layers must be a positive integer, got {layers!r}")
    width, height = 12.0, 14.0
    figure, ax = canvas(width, height, inches_per_unit=0.5)
    x = 5.2
    rows = {"tokens": 0.6, "embed": 1.8, "ln1": 3.4, "attn": 4.6, "add1": 5.75, "ln2": 6.7, "ff": 7.9,
            "add2": 9.05, "lnf": 10.3, "head": 11.45, "softmax": 12.6}
    for t, token in enumerate(["x_1", "x_2", "...", "x_t"]):
        text = f"${token}$" if token != "..." else "…"
        box(ax, (x - 2.25 + 1.5 * t, rows["tokens"]), text, role="input", width=1.1, height=0.6,
            fontsize=FONT_SIZE - 2)
    box(ax, (x, rows["embed"]), "E_word[x_t] + E_pos[t]", role="input", width=6.4, height=0.75,
        fontsize=FONT_SIZE - 2)
    label(ax, (x + 3.5, rows["embed"]), "word + position\nembeddings", ha="left", fontsize=FONT_SIZE - 3, color=MUTED)
    frame(ax, (x - 3.6, 2.75), 7.2, 6.95)
    label(ax, (x + 3.75, 6.2), f"× L\n(L = {layers})", ha="left", fontsize=FONT_SIZE, color=INK)
    box(ax, (x, rows["ln1"]), "LayerNorm", role="norm", width=3.2, height=0.65, fontsize=FONT_SIZE - 2)
    box(ax, (x, rows["attn"]), "causal self-attention\n(masked: j ≤ i)", role="output", width=4.4, height=0.95,
        fontsize=FONT_SIZE - 2)
    operator(ax, (x, rows["add1"]), "+", radius=0.25)
    box(ax, (x, rows["ln2"]), "LayerNorm", role="norm", width=3.2, height=0.65, fontsize=FONT_SIZE - 2)
    box(ax, (x, rows["ff"]), "feedforward (GELU)", role="hidden", width=4.4, height=0.8, fontsize=FONT_SIZE - 2)
    operator(ax, (x, rows["add2"]), "+", radius=0.25)
    box(ax, (x, rows["lnf"]), "final LayerNorm", role="norm", width=3.6, height=0.65, fontsize=FONT_SIZE - 2)
    box(ax, (x, rows["head"]), "LM head: h E_word^T (tied)", role="plain", width=5.2, height=0.7,
        fontsize=FONT_SIZE - 2)
    box(ax, (x, rows["softmax"]), "softmax", role="plain", width=2.4, height=0.6, fontsize=FONT_SIZE - 2)
    label(ax, (x, 13.5), r"$p(x_{t+1} \mid x_{\leq t})$ over V tokens", fontsize=FONT_SIZE - 1)
    for t in range(4):
        arrow(ax, (x - 2.25 + 1.5 * t, rows["tokens"] + 0.3), (x - 2.25 + 1.5 * t, rows["embed"] - 0.38),
              color=MUTED, linewidth=1.0)
    chain = [("embed", 0.38, "ln1", 0.33), ("ln1", 0.33, "attn", 0.48), ("attn", 0.48, "add1", 0.25),
             ("add1", 0.25, "ln2", 0.33), ("ln2", 0.33, "ff", 0.4), ("ff", 0.4, "add2", 0.25),
             ("add2", 0.25, "lnf", 0.33), ("lnf", 0.33, "head", 0.35), ("head", 0.35, "softmax", 0.3),
             ("softmax", 0.3, None, 13.2)]
    for start, start_half, end, end_half in chain:
        end_y = end_half if end is None else rows[end] - end_half
        arrow(ax, (x, rows[start] + start_half), (x, end_y), color=INK, linewidth=1.3)
    for start, end in (("embed", "add1"), ("add1", "add2")):  # the residual stream around each sublayer
        bottom = rows[start] + (0.6 if start == "embed" else 0.45)
        path(ax, [(x, bottom), (x - 3.0, bottom), (x - 3.0, rows[end]), (x - 0.25, rows[end])], color=MUTED,
             linewidth=1.2)
    label(ax, (x - 3.15, 4.6), "residual", rotation=90, ha="right", fontsize=FONT_SIZE - 3, color=MUTED)
    label(ax, (x - 3.15, 7.6), "residual", rotation=90, ha="right", fontsize=FONT_SIZE - 3, color=MUTED)
    label(ax, (x + 2.7, rows["head"]), "same matrix\nas E_word", ha="left", fontsize=FONT_SIZE - 3, color=MUTED)
    return figure


def kv_cache_figure(prompt_length: int = 2, new_tokens: int = 5) -> Figure:
    """What each generation step computes, without and with the key/value cache. Without: step s runs the
    model on all tokens so far, so their keys and values are computed again and again. With: the prompt's keys
    and values are computed once, and each step computes only the newest token's, appending them to the cache.

    Args: prompt_length, 1 to 4 tokens; new_tokens, 2 to 6 generation steps.
    """
    if not 1 <= prompt_length <= 4 or not 2 <= new_tokens <= 6:
        raise ValueError(f"kv_cache_figure: draw 1 to 4 prompt tokens and 2 to 6 steps, got {prompt_length} and "
                         f"{new_tokens}")
    columns = prompt_length + new_tokens - 1  # the longest input, at the last step
    cell, gap = 0.75, 2.2
    panel = columns * cell
    left = 1.7
    width = left + 2 * panel + gap + 0.4
    height = new_tokens * cell + 2.7
    figure, ax = canvas(width, height, inches_per_unit=9.6 / width)
    top = height - 1.4
    totals = []
    for index, (title, cache) in enumerate([("without the cache", False), ("with the cache", True)]):
        x0 = left + index * (panel + gap)
        label(ax, (x0 + panel / 2, height - 0.5), title, fontsize=FONT_SIZE - 1, color=INK)
        computed = 0
        for step in range(new_tokens):
            length = prompt_length + step  # tokens read at this step
            y = top - (step + 1) * cell
            if index == 0:
                label(ax, (left - 0.2, y + cell / 2), f"step {step + 1}", ha="right", fontsize=FONT_SIZE - 3,
                      color=MUTED)
            for t in range(length):
                fresh = not cache or step == 0 or t == length - 1
                role = "hidden" if fresh else "key"
                fill, edge = COLORS[role]
                ax.add_patch(Rectangle((x0 + t * cell, y), cell, cell, facecolor=fill if fresh else "#f8fafc",
                                       edgecolor=edge if fresh else FAINT, linewidth=1.0, zorder=2))
                if not fresh:
                    label(ax, (x0 + (t + 0.5) * cell, y + cell / 2), "·", color=COLORS["key"][1],
                          fontsize=FONT_SIZE - 2)
                computed += fresh
        totals.append(computed)
        label(ax, (x0 + panel / 2, 0.45), f"keys and values computed: {computed}", fontsize=FONT_SIZE - 2,
              color=COLORS["hidden"][1])
    label(ax, (left + 2 * panel + gap - 0.1, top + 0.3), "orange: computed · grey: read from the cache",
          ha="right", va="bottom", fontsize=FONT_SIZE - 4, color=MUTED)
    return figure


def decoding_methods_figure(words: Sequence[str] = ("store", "park", "shop", "bank", "river", "moon", "sky", "idea"),
                            logits: Sequence[float] = (2.2, 1.7, 1.3, 0.9, 0.2, -0.4, -0.8, -1.4),
                            temperature: float = 2.0, top_k: int = 3, top_p: float = 0.8) -> Figure:
    """One next-token distribution under the four decoding methods, each computed with `dl4nlp.gpt`'s
    `next_token_probabilities`: greedy takes the most likely token; temperature divides the logits (here > 1:
    flatter); top-k keeps the k most likely tokens; top-p the fewest whose mass reaches p. The kept tokens are
    coloured, the dropped ones grey; each panel is renormalized over the kept ones.

    Args: words, 3 to 10 candidate tokens; logits, their scores; temperature > 0; top_k >= 1; top_p in (0, 1].
    """
    from dl4nlp.gpt import next_token_probabilities

    if not 3 <= len(words) <= 10 or len(words) != len(logits):
        raise ValueError(f"decoding_methods_figure: give 3 to 10 words and one logit each, got {len(words)} words "
                         f"and {len(logits)} logits")
    scores = torch.tensor([list(logits)], dtype=torch.float32)  # (1, V)
    model = next_token_probabilities(scores)[0]  # (V,)
    greedy = torch.zeros_like(model)
    greedy[model.argmax()] = 1.0
    panels = [("greedy: the argmax", greedy),
              (f"temperature = {temperature:g}", next_token_probabilities(scores, temperature)[0]),
              (f"top-k, k = {top_k}", next_token_probabilities(scores, top_k=top_k)[0]),
              (f"top-p, p = {top_p:g}", next_token_probabilities(scores, top_p=top_p)[0])]
    V = len(words)
    bar, panel_width, bar_height = 0.55, 0.55 * V + 1.0, 4.0
    width = 4 * panel_width + 0.4
    height = bar_height + 3.2
    figure, ax = canvas(width, height, inches_per_unit=9.8 / width)
    base = 1.9
    for index, (title, probabilities) in enumerate(panels):
        x0 = 0.5 + index * panel_width
        label(ax, (x0 + V * bar / 2, height - 0.45), title, fontsize=FONT_SIZE - 2)
        ax.plot([x0 - 0.1, x0 + V * bar + 0.1], [base, base], color=MUTED, linewidth=0.8)
        for v, (word, probability, original) in enumerate(zip(words, probabilities.tolist(), model.tolist())):
            kept = probability > 0
            ax.add_patch(Rectangle((x0 + v * bar + 0.06, base), bar - 0.12, original * bar_height, facecolor="none",
                                   edgecolor=FAINT, linewidth=0.8, linestyle=(0, (2, 2)), zorder=2))
            color = COLORS["output"][1] if index == 0 else COLORS["input"][1]
            ax.add_patch(Rectangle((x0 + v * bar + 0.06, base), bar - 0.12, probability * bar_height,
                                   facecolor=color if kept else FAINT, edgecolor="none", zorder=3))
            label(ax, (x0 + (v + 0.5) * bar, base - 0.12), word, rotation=90, va="top", fontsize=FONT_SIZE - 4,
                  color=INK if kept else FAINT)
        kept_count = int((probabilities > 0).sum())
        label(ax, (x0 + V * bar / 2, height - 1.0), f"{kept_count} of {V} kept", fontsize=FONT_SIZE - 4, color=MUTED)
    label(ax, (width / 2, 0.2), "dashed: the model's own distribution (temperature 1)", fontsize=FONT_SIZE - 4,
          color=MUTED)
    return figure
