"""Figures of the attention chapter: how information flows in an RNN and in self-attention,
the three steps of self-attention for one query, multi-head attention, and the
Transformer block with its norms placed after (post-norm) or before (pre-norm) each sublayer.

Each function returns a new `matplotlib.figure.Figure`; the chapter page draws them in
hidden cells and gives the caption and alt text. The symbols match `dl4nlp.attention`
and `dl4nlp.transformer`: q_i = W^Q x_i, k_j = W^K x_j, v_j = W^V x_j, score_ij = q_i . k_j,
alpha_ij = softmax over j, y_i = sum_j alpha_ij v_j. Figure functions are named
`<thing>_figure`, apart from the graded functions (`multi_head_figure()` draws what
`dl4nlp.attention.multi_head_attention` computes).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, dot, frame, label, operator, path

FORWARD_EDGE = COLORS["hidden"][1]
QUERY, KEY, VALUE = COLORS["query"][1], COLORS["key"][1], COLORS["value"][1]
FAINT = "#cbd5e1"  # the connections that are not the highlighted one


def _x(t: int | str) -> str:
    return rf"$\mathbf{{x}}_{{{t}}}$"


def _y(t: int | str) -> str:
    return rf"$\mathbf{{y}}_{{{t}}}$"


def _check_words(function: str, words: Sequence[str], position: int) -> None:
    if not 2 <= len(words) <= 8:
        raise ValueError(f"{function}: draw between 2 and 8 words, got {len(words)}")
    if not 1 <= position <= len(words):
        raise ValueError(f"{function}: position must be between 1 and {len(words)} (the words are numbered "
                         f"from 1, as in the equations), got {position}")


def attention_flow_figure(words: Sequence[str] = ("the", "film", "was", "not", "bad"), position: int = 3) -> Figure:
    """Where the output at one position gets its information from, in three layers side by side:
    an RNN (a chain of T steps, one after the other), bidirectional self-attention (every
    output reads every input, in one step) and causal self-attention (output i reads inputs
    j <= i only).

    Each connection x_j -> y_i of the two attention panels is a patch with the gid
    ``attend-<bidirectional|causal>-<i>-<j>`` (numbered from 1), so tests can read the mask
    off the drawing; the connections into y_`position` are drawn dark, the others faint.
    """
    _check_words("attention_flow_figure", words, position)
    T = len(words)
    spacing, panel = 1.2, 1.2 * T + 1.3
    figure, ax = canvas(3 * panel + 0.2, 7.0, inches_per_unit=9.8 / (3 * panel + 0.2))
    y_word, y_input, y_middle, y_output = 0.45, 1.35, 3.5, 5.6
    titles = ("RNN: T steps, one after the other", "bidirectional self-attention:\none step, every word",
              "causal self-attention:\none step, no word ahead")
    for index, title in enumerate(titles):
        left = 0.2 + index * panel
        columns = [left + 0.9 + spacing * t for t in range(T)]
        label(ax, ((columns[0] + columns[-1]) / 2, 6.55), title, fontsize=FONT_SIZE - 2, va="center")
        for t, (x, word) in enumerate(zip(columns, words), start=1):
            box(ax, (x, y_input), _x(t), role="input", width=0.85, height=0.6, fontsize=FONT_SIZE - 2)
            label(ax, (x, y_word), f"“{word}”", color=MUTED, style="italic", fontsize=FONT_SIZE - 3)
            role = "hidden" if index == 0 else "output"
            box(ax, (x, y_output), _y(t) if index else rf"$\mathbf{{h}}_{{{t}}}$", role=role, width=0.85,
                height=0.6, fontsize=FONT_SIZE - 2, linewidth=2.6 if t == position else 1.6)
        if index == 0:  # the RNN: cells in a chain, each waits for the one before
            for t, x in enumerate(columns, start=1):
                box(ax, (x, y_middle), "", role="hidden", width=0.85, height=0.7)
                label(ax, (x, y_middle), str(t), fontsize=FONT_SIZE - 3, color=FORWARD_EDGE)
                arrow(ax, (x, y_input + 0.3), (x, y_middle - 0.35), color=COLORS["input"][1])
                arrow(ax, (x, y_middle + 0.35), (x, y_output - 0.3), color=FORWARD_EDGE)
            for left_x, right_x in zip(columns[:-1], columns[1:]):
                arrow(ax, (left_x + 0.425, y_middle), (right_x - 0.425, y_middle), color=FORWARD_EDGE)
            label(ax, (columns[0] - 0.55, y_middle - 0.75), "step", fontsize=FONT_SIZE - 4, color=FORWARD_EDGE,
                  ha="left")
            continue
        kind = "bidirectional" if index == 1 else "causal"
        for i, x_out in enumerate(columns, start=1):
            for j, x_in in enumerate(columns, start=1):
                if kind == "causal" and j > i:
                    continue
                highlighted = i == position
                connection = arrow(ax, (x_in, y_input + 0.3), (x_out, y_output - 0.3),
                                   color=INK if highlighted else FAINT, linewidth=1.8 if highlighted else 0.9,
                                   head=highlighted, zorder=2 if highlighted else 1)
                connection.set_gid(f"attend-{kind}-{i}-{j}")
    return figure


def attention_steps_figure(words: Sequence[str] = ("the", "film", "was", "not", "bad"), query: int = 3) -> Figure:
    """The three steps of self-attention for the query word `query` (numbered from 1):
    1. keys k_j and values v_j of every word, and the query q_i of word i;
    2. scores q_i . k_j and their softmax over j, the attention weights alpha_ij;
    3. the output y_i, the sum of the values weighted by alpha_ij.
    """
    _check_words("attention_steps_figure", words, query)
    T = len(words)
    spacing = 2.6 if T <= 5 else 13.0 / T
    columns = [3.6 + spacing * j for j in range(T)]
    figure, ax = canvas(columns[-1] + 4.6, 11.4, inches_per_unit=9.6 / (columns[-1] + 4.6))
    y_word, y_input, y_kv, y_score, y_softmax, y_times, y_sum, y_output = 0.5, 1.35, 3.0, 4.6, 6.1, 7.6, 9.0, 10.55
    offset = min(0.55, spacing / 4)
    right = columns[-1] + 1.3
    # the inputs, and the query word's copy on the left, where its query is computed
    for j, (x, word) in enumerate(zip(columns, words), start=1):
        box(ax, (x, y_input), _x(j), role="input", width=0.95, height=0.65, linewidth=2.6 if j == query else 1.6)
        label(ax, (x, y_word), f"“{word}”", color=MUTED, style="italic", fontsize=FONT_SIZE - 1)
        dot(ax, (x, 2.1), color=COLORS["input"][1])
        arrow(ax, (x, y_input + 0.325), (x, 2.1), color=COLORS["input"][1], head=False)
        path(ax, [(x, 2.1), (x - offset, 2.1), (x - offset, y_kv - 0.3)], color=COLORS["input"][1])
        path(ax, [(x, 2.1), (x + offset, 2.1), (x + offset, y_kv - 0.3)], color=COLORS["input"][1])
        box(ax, (x - offset, y_kv), rf"$\mathbf{{k}}_{{{j}}}$", role="key", width=0.8, height=0.6,
            fontsize=FONT_SIZE - 1)
        box(ax, (x + offset, y_kv), rf"$\mathbf{{v}}_{{{j}}}$", role="value", width=0.8, height=0.6,
            fontsize=FONT_SIZE - 1)
    label(ax, (columns[-1] - offset - 0.2, 2.55), r"$\mathbf{W}^K$", color=KEY, ha="right", fontsize=FONT_SIZE - 1)
    label(ax, (columns[-1] + offset + 0.2, 2.55), r"$\mathbf{W}^V$", color=VALUE, ha="left", fontsize=FONT_SIZE - 1)
    q_x = 1.2
    box(ax, (q_x, y_input), _x(query), role="input", width=0.95, height=0.65, linewidth=2.6)
    label(ax, (q_x, y_word), f"query: “{words[query - 1]}”", color=MUTED, style="italic", fontsize=FONT_SIZE - 1)
    arrow(ax, (q_x, y_input + 0.325), (q_x, y_kv - 0.3), color=COLORS["input"][1])
    label(ax, (q_x + 0.12, 2.2), r"$\mathbf{W}^Q$", color=QUERY, ha="left", fontsize=FONT_SIZE - 1)
    box(ax, (q_x, y_kv), rf"$\mathbf{{q}}_{{{query}}}$", role="query", width=0.8, height=0.6, fontsize=FONT_SIZE - 1)
    # step 2: the query against every key, then the softmax over j
    path(ax, [(q_x, y_kv + 0.3), (q_x, y_score), (columns[-1] - offset, y_score)], color=QUERY, head=False,
         linewidth=2.0)
    for j, x in enumerate(columns, start=1):
        arrow(ax, (x - offset, y_kv + 0.3), (x - offset, y_score - 0.26), color=KEY)
        operator(ax, (x - offset, y_score), "·", radius=0.26)
        arrow(ax, (x - offset, y_score + 0.26), (x - offset, y_softmax - 0.35))
        # values pass behind the softmax box, up to their weight
        arrow(ax, (x + offset, y_kv + 0.3), (x + offset, y_times - 0.26), color=VALUE, zorder=1)
        path(ax, [(x - offset, y_softmax + 0.35), (x - offset, y_times), (x + offset - 0.26, y_times)],
             color=COLORS["gate"][1])
        operator(ax, (x + offset, y_times), "×", radius=0.26)
        # to the rim of the sum, along the line towards its centre
        dx, dy = columns[T // 2] - (x + offset), y_sum - (y_times + 0.26)
        shorten = 0.3 / (dx * dx + dy * dy) ** 0.5
        arrow(ax, (x + offset, y_times + 0.26), (columns[T // 2] - dx * shorten, y_sum - dy * shorten), color=INK,
              linewidth=1.3)
    label(ax, (columns[0] - offset - 0.32, y_score + 0.45), rf"score$_{{{query}1}}$", ha="right",
          fontsize=FONT_SIZE - 2)
    label(ax, (columns[0] - offset - 0.12, y_times + 0.35), rf"$\alpha_{{{query}1}}$", ha="right",
          color=COLORS["gate"][1], fontsize=FONT_SIZE - 1)
    softmax_left, softmax_right = columns[0] - offset - 0.55, columns[-1] + offset + 0.55
    box(ax, ((softmax_left + softmax_right) / 2, y_softmax), "softmax over j: "
        rf"$\alpha_{{{query}j}} = \exp(\mathrm{{score}}_{{{query}j}}) \,/\, \sum_{{j'}} "
        rf"\exp(\mathrm{{score}}_{{{query}j'}})$", role="gate", width=softmax_right - softmax_left, height=0.7,
        fontsize=FONT_SIZE - 1)
    # step 3: the weighted sum
    operator(ax, (columns[T // 2], y_sum), "Σ", radius=0.3)
    arrow(ax, (columns[T // 2], y_sum + 0.3), (columns[T // 2], y_output - 0.33))
    box(ax, (columns[T // 2], y_output), _y(query), role="output", width=0.95, height=0.65)
    label(ax, (columns[T // 2] + 0.7, y_output),
          rf"$= \sum_j \alpha_{{{query}j}}\, \mathbf{{v}}_j$", ha="left", fontsize=FONT_SIZE)
    for y, text in ((y_kv, "1. project"), (y_score, "2. compare"), (y_softmax, "   normalise"),
                    (y_sum, "3. weighted sum")):
        label(ax, (right + 0.1, y), text, ha="left", color=MUTED, fontsize=FONT_SIZE - 1, style="italic")
    return figure


def multi_head_figure(num_heads: int = 3) -> Figure:
    """Multi-head attention: project X to q, k and v, cut each into H heads of Dh = D / H features
    (split_heads), run attention in every head on its own, put the heads side by side again
    (merge_heads) and mix them with W^O."""
    if not 1 <= num_heads <= 4:
        raise ValueError(f"multi_head_figure: draw between 1 and 4 heads, got {num_heads}")
    height = 2.0 * num_heads + 1.2
    figure, ax = canvas(20.5, height, inches_per_unit=9.6 / 20.5)
    middle = height / 2
    rows = [middle + (num_heads - 1) - 2.0 * h for h in range(num_heads)]
    box(ax, (1.1, middle), r"$\mathbf{X}$" + "\n(B, T, D)", role="input", width=1.6, height=1.3,
        fontsize=FONT_SIZE - 1)
    arrow(ax, (1.9, middle), (2.9, middle))
    box(ax, (3.9, middle), r"$\mathbf{W}^Q, \mathbf{W}^K, \mathbf{W}^V$", role="plain", width=2.0, height=1.0,
        fontsize=FONT_SIZE - 2)
    label(ax, (3.9, middle - 0.85), "(D × D) each", color=MUTED, fontsize=FONT_SIZE - 3)
    # split_heads: every head gets Dh = D / H features of q, k and v
    dot(ax, (5.3, middle))
    arrow(ax, (4.9, middle), (5.3, middle), head=False)
    label(ax, (5.6, height - 0.35), "split_heads", color=MUTED, fontsize=FONT_SIZE - 2, style="italic")
    slices = [middle + 0.35 * (num_heads - 1) - 0.7 * h for h in range(num_heads)]
    for h, (y, slice_y) in enumerate(zip(rows, slices), start=1):
        path(ax, [(5.3, middle), (5.9, y), (6.35, y)])
        for offset, (symbol, role) in enumerate((("q", "query"), ("k", "key"), ("v", "value"))):
            box(ax, (6.9 + 0.95 * offset, y), rf"$\mathbf{{{symbol}}}_{{{h}}}$", role=role, width=0.8,
                height=0.6, fontsize=FONT_SIZE - 2)
        arrow(ax, (9.2, y), (9.8, y))
        box(ax, (12.15, y), f"attention in head {h}\n" + rf"softmax$(\mathbf{{q}}_{{{h}}} \mathbf{{k}}_{{{h}}}^\top"
            rf" / \sqrt{{D_h}})\,\mathbf{{v}}_{{{h}}}$", role="plain", width=4.7, height=1.1,
            fontsize=FONT_SIZE - 2)
        path(ax, [(14.5, y), (15.1, y), (15.1, slice_y), (15.85, slice_y)])  # head h fills slice h
    label(ax, (6.9 + 0.95, rows[-1] - 0.75), "(B, T, Dh) each, Dh = D / H", color=MUTED, fontsize=FONT_SIZE - 3)
    # merge_heads: the heads side by side, then W^O
    label(ax, (15.9, height - 0.35), "merge_heads", color=MUTED, fontsize=FONT_SIZE - 2, style="italic")
    for slice_y in slices:  # the joined vector: one slice per head
        box(ax, (16.1, slice_y), "", role="plain", width=0.45, height=0.7, linewidth=1.2)
    arrow(ax, (16.35, middle), (17.1, middle))
    box(ax, (17.7, middle), r"$\mathbf{W}^O$", role="plain", width=1.0, height=0.9)
    arrow(ax, (18.2, middle), (18.9, middle))
    box(ax, (19.6, middle), r"$\mathbf{Y}$" + "\n(B, T, D)", role="output", width=1.4, height=1.3,
        fontsize=FONT_SIZE - 1)
    return figure


def _block(ax, center_x: float, title: str, sublayers: Sequence[tuple[str, str]]) -> float:
    """A Transformer block drawn bottom to top: boxes (name, role) in order; ("fork", "") splits the
    stream for a residual connection, which the next ("+", "") adds back. Returns the top y."""
    gap, fork = 0.42, 0.0
    label(ax, (center_x, 0.35), r"$\mathbf{x}$ (B, T, D)", color=COLORS["input"][1], fontsize=FONT_SIZE - 1)
    y = 0.6  # the top of what has been drawn: the stream continues upwards from here
    for name, role in sublayers:
        if name == "fork":
            arrow(ax, (center_x, y), (center_x, y + 0.3), head=False,
                  color=COLORS["input"][1] if y == 0.6 else INK)
            y += 0.3
            dot(ax, (center_x, y))
            fork = y
        elif name == "+":
            arrow(ax, (center_x, y), (center_x, y + gap))
            operator(ax, (center_x, y + gap + 0.28), "+")
            path(ax, [(center_x, fork), (center_x - 2.1, fork), (center_x - 2.1, y + gap + 0.28),
                      (center_x - 0.28, y + gap + 0.28)], color=MUTED)
            label(ax, (center_x - 2.25, (fork + y + gap) / 2), "residual", color=MUTED, fontsize=FONT_SIZE - 3,
                  rotation=90, ha="right")
            y += gap + 0.56
        else:
            arrow(ax, (center_x, y), (center_x, y + gap))
            box(ax, (center_x, y + gap + 0.35), name, role=role, width=2.7, height=0.7, fontsize=FONT_SIZE - 1)
            y += gap + 0.7
    arrow(ax, (center_x, y), (center_x, y + gap))
    label(ax, (center_x, y + gap + 0.25), "to the next block", color=MUTED, fontsize=FONT_SIZE - 2)
    label(ax, (center_x, 9.75), title, fontsize=FONT_SIZE - 1, fontweight="bold")
    return y + gap + 0.25


def transformer_block_figure() -> Figure:
    """A Transformer block two ways: post-norm (LayerNorm after each residual sum: the original
    Transformer and BERT) and pre-norm (LayerNorm before each sublayer: GPT-2)."""
    figure, ax = canvas(15.0, 10.4, inches_per_unit=0.54)
    frame(ax, (0.3, 0.05), 6.9, 8.9)
    frame(ax, (7.8, 0.05), 6.9, 8.9)
    _block(ax, 4.5, "post-norm (Transformer, BERT)",
           [("fork", ""), ("self-attention", "plain"), ("+", ""), ("LayerNorm", "norm"), ("fork", ""),
            ("feedforward", "plain"), ("+", ""), ("LayerNorm", "norm")])
    _block(ax, 12.0, "pre-norm (GPT-2)",
           [("fork", ""), ("LayerNorm", "norm"), ("self-attention", "plain"), ("+", ""), ("fork", ""),
            ("LayerNorm", "norm"), ("feedforward", "plain"), ("+", "")])
    label(ax, (12.0, 9.27), "(a stack of them ends with a final LayerNorm)", color=MUTED, fontsize=FONT_SIZE - 3)
    return figure


FIGURES = {function.__name__: function for function in (
    attention_flow_figure, attention_steps_figure, multi_head_figure, transformer_block_figure)}
