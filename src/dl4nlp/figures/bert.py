"""Figures of the BERT chapter: what a left-to-right and a masked language model may look at,
BERT's input representation (token + segment + position embeddings, the paper's Figure 2),
and the two pre-training tasks on one input pair.

Each function returns a new `matplotlib.figure.Figure`; the chapter page draws them in
hidden cells and gives the caption and alt text. The symbols match `dl4nlp.bert`:
e_t = LayerNorm(E_word[x_t] + E_pos[t] + E_seg[s_t]), segment 0 (A) for [CLS] A [SEP] and
1 (B) for B [SEP]. Figure functions are named `<thing>_figure`, apart from the graded
functions (`input_representation_figure()` draws what `dl4nlp.bert.bert_embeddings` computes).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, frame, label, operator

FAINT = "#cbd5e1"  # connections that are not the highlighted ones
SEGMENT_ROLES = ("gate", "candidate")  # segment A green, segment B purple


def _token(text: str) -> str:
    """A token's embedding, in plain text: mathtext cannot write ##ing."""
    return f"E_{text}"


def _segments(tokens: Sequence[str]) -> list[int]:
    """0 up to and including the first [SEP], 1 after it (BERT's token_type_ids)."""
    first_sep = tokens.index("[SEP]") if "[SEP]" in tokens else len(tokens) - 1
    return [0 if t <= first_sep else 1 for t in range(len(tokens))]


def bidirectional_context_figure(words: Sequence[str] = ("the", "man", "went", "to", "the", "store"),
                                 position: int = 3) -> Figure:
    """What the prediction of one word may look at. Left: a left-to-right language model (OpenAI GPT)
    predicts word `position` from the words before it only. Right: a masked language model (BERT) sees
    the input with that word replaced by [MASK] and predicts it from the words on both sides.

    Args: words, 3 to 8 words; position, the word to predict, numbered from 1.
    """
    if not 3 <= len(words) <= 8:
        raise ValueError(f"bidirectional_context_figure: draw between 3 and 8 words, got {len(words)}")
    if not 1 <= position <= len(words):
        raise ValueError(f"bidirectional_context_figure: position must be between 1 and {len(words)}, got {position}")
    T, step = len(words), 1.45
    panel = T * step + 0.8
    figure, ax = canvas(2 * panel + 0.6, 6.4, inches_per_unit=9.8 / (2 * panel + 0.6))
    target = words[position - 1]
    for p, (title, masked) in enumerate([("left-to-right LM (OpenAI GPT):\nonly the words before", False),
                                         ("masked LM (BERT):\nthe words on both sides", True)]):
        left = p * (panel + 0.6)
        frame(ax, (left + 0.1, 0.1), panel - 0.2, 6.2)
        label(ax, (left + panel / 2, 5.75), title, fontsize=FONT_SIZE - 1, color=INK)
        xs = [left + 0.4 + step * (t + 0.5) for t in range(T)]
        top = (xs[position - 1], 3.9)
        box(ax, top, f"predict\n“{target}”", role="output", width=1.6, height=0.9, fontsize=FONT_SIZE - 2)
        for t, (x, word) in enumerate(zip(xs, words), start=1):
            shown = "[MASK]" if masked and t == position else word
            hidden = not masked and t >= position  # a left-to-right model has not read it yet
            box(ax, (x, 1.2), "" if hidden else shown, role="input", width=1.3, height=0.7,
                fontsize=FONT_SIZE - 2 if shown == "[MASK]" else FONT_SIZE - 1)
            if hidden:
                label(ax, (x, 1.2), word, color=FAINT, fontsize=FONT_SIZE - 1)
            label(ax, (x, 0.5), f"$x_{{{t}}}$", color=MUTED, fontsize=FONT_SIZE - 2)
            sees = (t < position) if not masked else (t != position)
            if sees:
                arrow(ax, (x, 1.6), (top[0] + 0.12 * (x - top[0]) / step, top[1] - 0.48), color=INK, linewidth=1.4)
        if not masked:
            label(ax, (xs[-1] - 0.2, 2.35), "not yet read", color=MUTED, fontsize=FONT_SIZE - 2)
    return figure


def input_representation_figure(tokens: Sequence[str] = ("[CLS]", "my", "dog", "is", "cute", "[SEP]", "he", "likes",
                                                         "play", "##ing", "[SEP]")) -> Figure:
    """BERT's input representation (Devlin et al. 2019, Figure 2): for every token of [CLS] A [SEP] B [SEP],
    its token embedding plus its segment embedding (A up to the first [SEP], B after) plus its position
    embedding, summed and normalized into e_t.

    Args: tokens, 3 to 12 WordPiece tokens, with [SEP] after sentence A.
    """
    if not 3 <= len(tokens) <= 12:
        raise ValueError(f"input_representation_figure: draw between 3 and 12 tokens, got {len(tokens)}")
    T, step, margin = len(tokens), 1.45, 4.6
    width = margin + T * step + 0.3
    figure, ax = canvas(width, 10.0, inches_per_unit=9.8 / width)
    segments = _segments(tokens)
    rows = {"input": 8.7, "token": 7.0, "plus1": 6.05, "segment": 5.1, "plus2": 4.15, "position": 3.2,
            "sum": 1.5}
    for name, text in [("input", "Input"), ("token", "Token\nembeddings"), ("segment", "Segment\nembeddings"),
                       ("position", "Position\nembeddings"), ("sum", "e_t = LayerNorm\n(sum)")]:
        label(ax, (0.2, rows[name]), text, ha="left", fontsize=FONT_SIZE - 1, color=INK if name != "sum" else MUTED)
    for t, (token, segment) in enumerate(zip(tokens, segments)):
        x = margin + step * (t + 0.5)
        special = token in ("[CLS]", "[SEP]")
        box(ax, (x, rows["input"]), token, role="plain", width=1.32, height=0.75, fontsize=FONT_SIZE - 2,
            bold=special)
        box(ax, (x, rows["token"]), _token(token), role="input", width=1.32, height=0.8, fontsize=FONT_SIZE - 2)
        operator(ax, (x, rows["plus1"]), "+", radius=0.22, fontsize=FONT_SIZE)
        box(ax, (x, rows["segment"]), "$E_A$" if segment == 0 else "$E_B$", role=SEGMENT_ROLES[segment],
            width=1.32, height=0.8, fontsize=FONT_SIZE - 1)
        operator(ax, (x, rows["plus2"]), "+", radius=0.22, fontsize=FONT_SIZE)
        box(ax, (x, rows["position"]), f"$E_{{{t}}}$", role="hidden", width=1.32, height=0.8,
            fontsize=FONT_SIZE - 1)
        arrow(ax, (x, rows["position"] - 0.42), (x, rows["sum"] + 0.42), color=MUTED, linewidth=1.2)
        box(ax, (x, rows["sum"]), f"$e_{{{t}}}$", role="norm", width=1.0, height=0.8, fontsize=FONT_SIZE - 1)
    first_b = segments.index(1) if 1 in segments else T
    for segment, (start, stop) in enumerate([(0, first_b), (first_b, T)]):
        if stop > start:
            x0, x1 = margin + step * start + 0.1, margin + step * stop - 0.1
            ax.plot([x0, x1], [9.35, 9.35], color=COLORS[SEGMENT_ROLES[segment]][1], linewidth=2.5)
            label(ax, ((x0 + x1) / 2, 9.6), f"sentence {'AB'[segment]} (segment {segment})",
                  color=COLORS[SEGMENT_ROLES[segment]][1], fontsize=FONT_SIZE - 2)
    label(ax, (margin + T * step / 2, 0.45), "e_t = LayerNorm(E_word[x_t] + E_seg[s_t] + E_pos[t]), one vector of "
          "width D per token", color=MUTED, fontsize=FONT_SIZE - 2)
    return figure


def pretraining_tasks_figure(tokens: Sequence[str] = ("[CLS]", "my", "dog", "is", "[MASK]", "[SEP]", "he", "likes",
                                                      "[MASK]", "[SEP]"),
                             originals: Sequence[str] = ("cute", "play")) -> Figure:
    """BERT's two pre-training tasks on one input: masked LM predicts the original token at every [MASK]
    (one output per masked position), next sentence prediction reads IsNext / NotNext off the output at
    [CLS]. The encoder sees the whole input: every output depends on every token.

    Args: tokens, 4 to 12 tokens [CLS] A [SEP] B [SEP], some of them [MASK]; originals, the token each [MASK]
      replaced, in order.
    """
    if not 4 <= len(tokens) <= 12:
        raise ValueError(f"pretraining_tasks_figure: draw between 4 and 12 tokens, got {len(tokens)}")
    masked = [t for t, token in enumerate(tokens) if token == "[MASK]"]
    if len(masked) != len(originals):
        raise ValueError(f"pretraining_tasks_figure: {len(masked)} [MASK] tokens but {len(originals)} originals")
    T, step = len(tokens), 1.45
    width = T * step + 0.6
    figure, ax = canvas(width, 8.6, inches_per_unit=9.6 / width)
    xs = [0.3 + step * (t + 0.5) for t in range(T)]
    segments = _segments(tokens)
    box(ax, (width / 2, 4.0), "BERT: L Transformer layers, bidirectional self-attention (no mask)", role="plain",
        width=width - 0.6, height=1.3, fontsize=FONT_SIZE - 1)
    for t, (x, token, segment) in enumerate(zip(xs, tokens, segments)):
        box(ax, (x, 1.3), token, role=SEGMENT_ROLES[segment], width=1.32, height=0.75, fontsize=FONT_SIZE - 2,
            bold=token in ("[CLS]", "[SEP]", "[MASK]"))
        arrow(ax, (x, 1.7), (x, 3.35), color=MUTED, linewidth=1.2)
        used = t == 0 or t in masked
        name = "[CLS]" if t == 0 else str(t)
        arrow(ax, (x, 4.65), (x, 5.6), color=INK if used else FAINT, linewidth=1.4 if used else 1.0)
        label(ax, (x, 5.85), f"$h_{{{name}}}$" if t else r"$h_{[CLS]}$", color=INK if used else FAINT,
              fontsize=FONT_SIZE - 1)
    label(ax, (xs[0], 0.5), "sentence A", color=COLORS[SEGMENT_ROLES[0]][1], fontsize=FONT_SIZE - 2, ha="left")
    if 1 in segments:
        label(ax, (xs[segments.index(1)], 0.5), "sentence B", color=COLORS[SEGMENT_ROLES[1]][1],
              fontsize=FONT_SIZE - 2, ha="left")
    box(ax, (xs[0] + 0.5, 7.4), "NSP\nIsNext / NotNext", role="output", width=2.4, height=1.1, fontsize=FONT_SIZE - 2)
    arrow(ax, (xs[0], 6.1), (xs[0], 6.85), color=INK)
    for t, original in zip(masked, originals):
        box(ax, (xs[t], 7.4), f"Mask LM\n“{original}”", role="output", width=1.9, height=1.1, fontsize=FONT_SIZE - 2)
        arrow(ax, (xs[t], 6.1), (xs[t], 6.85), color=INK)
    label(ax, (width - 0.3, 8.35), "no loss at the other positions", color=MUTED, fontsize=FONT_SIZE - 2, ha="right")
    return figure
