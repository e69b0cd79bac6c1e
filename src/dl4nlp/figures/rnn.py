"""Figures of the RNN chapter: units compared, an RNN unrolled over time, the LSTM and GRU
cells with their gates, a bidirectional layer, and sequence classification with it.

Each function returns a new `matplotlib.figure.Figure`; the chapter page draws them
in hidden cells and gives the caption and alt text. The symbols match the equations
of `dl4nlp.rnn` (gates i, f, g, o for the LSTM and r, z, n for the GRU). Every figure
function is named `<thing>_figure`, so that none shares a name with a graded function
of `dl4nlp.rnn`: `lstm_cell_figure()` draws what `dl4nlp.rnn.lstm_cell` computes.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, dot, frame, label, operator, path

FORWARD_EDGE = COLORS["hidden"][1]
BACKWARD_EDGE = COLORS["backward"][1]
H_FORWARD = r"$\overrightarrow{\mathbf{h}}$"
H_BACKWARD = r"$\overleftarrow{\mathbf{h}}$"


def _x(t: int | str) -> str:
    return rf"$\mathbf{{x}}_{{{t}}}$"


def _h(t: int | str) -> str:
    return rf"$\mathbf{{h}}_{{{t}}}$"


def unit_comparison_figure() -> Figure:
    """What goes in and out of one step of a feedforward, a vanilla RNN, an LSTM and a GRU unit."""
    figure, ax = canvas(19.6, 5.6, inches_per_unit=0.43)
    c_prev, c_next = r"$\mathbf{c}_{t-1}$", r"$\mathbf{c}_t$"
    units = [("feedforward", "plain", _x(""), r"$\mathbf{h}$", [], "no state"),
             ("vanilla RNN", "hidden", _x("t"), _h("t"), [(_h("t-1"), _h("t"))], "state: h"),
             ("LSTM", "hidden", _x("t"), _h("t"), [(_h("t-1"), _h("t")), (c_prev, c_next)], "state: h and c"),
             ("GRU", "hidden", _x("t"), _h("t"), [(_h("t-1"), _h("t"))], "state: h")]
    y = 2.9
    for index, (name, role, given, output, carried, note) in enumerate(units):
        cx = 2.5 + 4.85 * index
        box(ax, (cx, y), name, role=role, width=2.5, height=1.3, fontsize=FONT_SIZE - 1)
        arrow(ax, (cx, 1.1), (cx, y - 0.65), color=COLORS["input"][1])
        label(ax, (cx, 0.75), given, color=COLORS["input"][1])
        arrow(ax, (cx, y + 0.65), (cx, 4.65))
        label(ax, (cx, 5.05), output)
        rows = [y + 0.3, y - 0.3] if len(carried) == 2 else [y]
        for row, (before, after) in zip(rows, carried):
            arrow(ax, (cx - 2.3, row), (cx - 1.25, row), color=FORWARD_EDGE)
            arrow(ax, (cx + 1.25, row), (cx + 2.3, row), color=FORWARD_EDGE)
            label(ax, (cx - 1.8, row + 0.28), before, color=FORWARD_EDGE, fontsize=FONT_SIZE - 2)
            label(ax, (cx + 1.8, row + 0.28), after, color=FORWARD_EDGE, fontsize=FONT_SIZE - 2)
        label(ax, (cx + 0.25, 1.75), note, color=MUTED, fontsize=FONT_SIZE - 2, ha="left", style="italic")
    return figure


def unrolled_rnn_figure(words: Sequence[str] = ("the", "film", "was", "great")) -> Figure:
    """The single-unit RNN layer: folded with its recurrent loop, and unrolled over the words."""
    figure, ax = canvas(16, 5.8, inches_per_unit=0.55)
    # Folded: one cell whose output loops back as its own input at the next step.
    cx, cy = 1.6, 3.2
    box(ax, (cx, cy), "RNN", role="hidden", width=1.3, height=0.9)
    box(ax, (cx, 1.7), _x("t"), role="input", width=0.9, height=0.6)
    arrow(ax, (cx, 2.0), (cx, cy - 0.45), color=COLORS["input"][1])
    arrow(ax, (cx, cy + 0.45), (cx, 4.5))
    label(ax, (cx, 4.85), _h("t"))
    path(ax, [(cx + 0.65, cy + 0.28), (cx + 1.15, cy + 0.28), (cx + 1.15, cy - 0.28), (cx + 0.65, cy - 0.28)],
         color=FORWARD_EDGE)  # the output fed back as the next step's input
    label(ax, (cx + 1.3, cy), _h("t-1"), color=FORWARD_EDGE, ha="left")
    label(ax, (4.75, cy), "=", fontsize=FONT_SIZE + 10, color=MUTED)
    label(ax, (4.75, cy - 0.75), "unrolled", fontsize=FONT_SIZE - 2, color=MUTED)
    # Unrolled: one copy of the same cell (same weights) per word.
    columns = [7.3 + 2.55 * t for t in range(len(words))]
    arrow(ax, (columns[0] - 1.75, cy), (columns[0] - 0.65, cy), color=FORWARD_EDGE)
    label(ax, (columns[0] - 1.55, cy + 0.35), _h(0) + r"$=\mathbf{0}$", color=FORWARD_EDGE,
          fontsize=FONT_SIZE - 1, ha="left")
    for t, (x, word) in enumerate(zip(columns, words), start=1):
        box(ax, (x, cy), "RNN", role="hidden", width=1.3, height=0.9)
        box(ax, (x, 1.7), _x(t), role="input", width=0.9, height=0.6)
        label(ax, (x, 0.95), f"“{word}”", color=MUTED, style="italic")
        arrow(ax, (x, 2.0), (x, cy - 0.45), color=COLORS["input"][1])
        arrow(ax, (x, cy + 0.45), (x, 4.5))
        label(ax, (x, 4.85), _h(t))
        if t < len(columns):
            arrow(ax, (x + 0.65, cy), (columns[t] - 0.65, cy), color=FORWARD_EDGE)
            label(ax, ((x + columns[t]) / 2, cy + 0.35), _h(t), color=FORWARD_EDGE, fontsize=FONT_SIZE - 1)
    label(ax, ((columns[0] + columns[-1]) / 2, 0.3),
          r"the same weights $\mathbf{W}_{ih}, \mathbf{W}_{hh}, \mathbf{b}$ at every step", color=MUTED,
          fontsize=FONT_SIZE - 1)
    return figure


def lstm_cell_figure() -> Figure:
    """The LSTM cell: the cell state c runs along the top; forget, add and output gates below."""
    figure, ax = canvas(13, 7.4, inches_per_unit=0.55)
    frame(ax, (1.3, 0.75), 9.9, 5.75, title="LSTM cell")
    top, gates, bottom = 5.6, 2.75, 1.35
    ink_c = INK
    # the cell state: c_{t-1} -> x forget -> + add -> c_t
    label(ax, (0.55, top + 0.4), r"$\mathbf{c}_{t-1}$")
    arrow(ax, (0.2, top), (3.0 - 0.28, top), color=ink_c, linewidth=2.4)
    operator(ax, (3.0, top), "×")
    arrow(ax, (3.28, top), (5.8 - 0.28, top), color=ink_c, linewidth=2.4)
    operator(ax, (5.8, top), "+")
    arrow(ax, (6.08, top), (12.6, top), color=ink_c, linewidth=2.4)
    label(ax, (12.3, top + 0.4), r"$\mathbf{c}_t$")
    # the inputs: h_{t-1} from the left, x_t from below, shared by all four layers
    label(ax, (0.55, bottom + 0.4), _h("t-1"))
    path(ax, [(0.2, bottom), (8.6, bottom)], head=False)
    arrow(ax, (2.0, 0.0), (2.0, bottom), color=COLORS["input"][1])
    label(ax, (2.35, 0.3), _x("t"), color=COLORS["input"][1], ha="left")
    dot(ax, (2.0, bottom))
    specs = [(3.0, r"$\sigma$", "gate", "forget gate", r"$\mathbf{f}$"),
             (4.8, r"$\sigma$", "gate", "add gate", r"$\mathbf{i}$"),
             (6.8, "tanh", "candidate", "candidate", r"$\mathbf{g}$"),
             (8.6, r"$\sigma$", "gate", "output gate", r"$\mathbf{o}$")]
    for x, text, role, name, symbol in specs:
        box(ax, (x, gates), text, role=role, width=1.05, height=0.7)
        if x != 8.6:
            dot(ax, (x, bottom))
        arrow(ax, (x, bottom), (x, gates - 0.35))
        label(ax, (x + 0.62, gates - 0.6), symbol, color=COLORS[role][1], ha="left",
              fontsize=FONT_SIZE - 1)
    # forget: f multiplies the old cell state
    arrow(ax, (3.0, gates + 0.35), (3.0, top - 0.28), color=COLORS["gate"][1])
    label(ax, (2.85, 4.2), "forget\ngate", color=COLORS["gate"][1], ha="right", fontsize=FONT_SIZE - 1)
    # add: i * g is written into the cell state
    operator(ax, (5.8, 4.25), "×")
    path(ax, [(4.8, gates + 0.35), (4.8, 4.25), (5.8 - 0.28, 4.25)], color=COLORS["gate"][1])
    path(ax, [(6.8, gates + 0.35), (6.8, 4.25), (5.8 + 0.28, 4.25)], color=COLORS["candidate"][1])
    arrow(ax, (5.8, 4.25 + 0.28), (5.8, top - 0.28))
    label(ax, (4.65, 4.75), "add\ngate", color=COLORS["gate"][1], ha="right", fontsize=FONT_SIZE - 1)
    label(ax, (6.95, 4.75), "candidate", color=COLORS["candidate"][1], ha="left", fontsize=FONT_SIZE - 1)
    # output: h_t = o * tanh(c_t)
    box(ax, (10.0, 4.25), "tanh", role="candidate", width=1.05, height=0.6)
    dot(ax, (10.0, top))
    arrow(ax, (10.0, top), (10.0, 4.55))
    operator(ax, (10.0, gates), "×")
    arrow(ax, (10.0, 3.95), (10.0, gates + 0.28))
    arrow(ax, (8.6 + 0.525, gates), (10.0 - 0.28, gates), color=COLORS["gate"][1])
    label(ax, (9.0, 3.45), "output\ngate", color=COLORS["gate"][1], ha="center", fontsize=FONT_SIZE - 1)
    path(ax, [(10.0, gates - 0.28), (10.0, bottom), (12.6, bottom)])
    label(ax, (12.3, bottom + 0.4), _h("t"))
    return figure


def gru_cell_figure() -> Figure:
    """The GRU cell: one state h along the top; reset and update gates below."""
    figure, ax = canvas(13, 7.4, inches_per_unit=0.55)
    frame(ax, (1.3, 0.75), 9.9, 5.75, title="GRU cell")
    top, gates, bottom = 5.6, 2.75, 1.35
    # the state: h_{t-1} -> x z -> + (1 - z) n -> h_t
    label(ax, (0.55, top + 0.4), _h("t-1"))
    arrow(ax, (0.2, top), (3.4 - 0.28, top), linewidth=2.4)
    operator(ax, (3.4, top), "×")
    arrow(ax, (3.4 + 0.28, top), (8.6 - 0.28, top), linewidth=2.4)
    operator(ax, (8.6, top), "+")
    arrow(ax, (8.6 + 0.28, top), (12.6, top), linewidth=2.4)
    label(ax, (12.3, top + 0.4), _h("t"))
    # the gates read h_{t-1} (branched off the top line) and x_t
    dot(ax, (1.7, top))
    path(ax, [(1.7, top), (1.7, bottom), (8.6, bottom)], head=False)
    arrow(ax, (2.3, 0.0), (2.3, bottom), color=COLORS["input"][1])
    label(ax, (2.65, 0.3), _x("t"), color=COLORS["input"][1], ha="left")
    dot(ax, (2.3, bottom))
    specs = [(3.4, r"$\sigma$", "gate", r"$\mathbf{z}$"), (6.0, r"$\sigma$", "gate", r"$\mathbf{r}$"),
             (8.6, "tanh", "candidate", r"$\mathbf{n}$")]
    for x, text, role, symbol in specs:
        box(ax, (x, gates), text, role=role, width=1.05, height=0.7)
        if x != 8.6:
            dot(ax, (x, bottom))
        arrow(ax, (x, bottom), (x, gates - 0.35))
        label(ax, (x + 0.62, gates - 0.6), symbol, color=COLORS[role][1], ha="left", fontsize=FONT_SIZE - 1)
    # update: z keeps the old state, 1 - z takes the candidate
    arrow(ax, (3.4, gates + 0.35), (3.4, top - 0.28), color=COLORS["gate"][1])
    label(ax, (3.25, 4.7), "update\ngate", color=COLORS["gate"][1], ha="right", fontsize=FONT_SIZE - 1)
    dot(ax, (3.4, 4.1), color=COLORS["gate"][1])
    operator(ax, (5.0, 4.1), "1−", fontsize=FONT_SIZE - 1)
    arrow(ax, (3.4, 4.1), (5.0 - 0.28, 4.1), color=COLORS["gate"][1])
    operator(ax, (8.6, 4.1), "×")
    arrow(ax, (5.0 + 0.28, 4.1), (8.6 - 0.28, 4.1), color=COLORS["gate"][1])
    arrow(ax, (8.6, gates + 0.35), (8.6, 4.1 - 0.28), color=COLORS["candidate"][1])
    arrow(ax, (8.6, 4.1 + 0.28), (8.6, top - 0.28))
    # reset: r scales the previous state's contribution to the candidate
    arrow(ax, (6.0 + 0.525, gates), (8.6 - 0.525, gates), color=COLORS["gate"][1])
    label(ax, (7.3, gates + 0.55), "reset\ngate", color=COLORS["gate"][1], fontsize=FONT_SIZE - 1)
    label(ax, (9.2, 3.45), "candidate", color=COLORS["candidate"][1], ha="left", fontsize=FONT_SIZE - 1)
    return figure


def _bidirectional_rows(ax, words: Sequence[str], columns: Sequence[float], y_forward: float,
                        y_backward: float, y_input: float) -> None:
    """Inputs, a forward row (left to right) and a backward row (right to left) of cells.

    Each input goes straight up to its forward cell and bends round the forward cell's
    right side to reach the backward cell.
    """
    for x in columns:  # drawn first, so that the recurrent arrows pass over them
        arrow(ax, (x + 0.25, y_input + 0.3), (x + 0.25, y_backward - 0.4), color=COLORS["input"][1],
              connection="arc3,rad=0.45", halo=True, zorder=1.5)
    for t, (x, word) in enumerate(zip(columns, words), start=1):
        box(ax, (x, y_input), _x(t), role="input", width=0.9, height=0.6)
        label(ax, (x, y_input - 0.7), f"“{word}”", color=MUTED, style="italic")
        arrow(ax, (x - 0.1, y_input + 0.3), (x - 0.1, y_forward - 0.4), color=COLORS["input"][1])
        box(ax, (x, y_forward), "", role="hidden", width=1.1, height=0.8)
        label(ax, (x, y_forward), H_FORWARD[:-1] + rf"_{{{t}}}$")
        box(ax, (x, y_backward), "", role="backward", width=1.1, height=0.8)
        label(ax, (x, y_backward), H_BACKWARD[:-1] + rf"_{{{t}}}$")
    for left, right in zip(columns[:-1], columns[1:]):
        arrow(ax, (left + 0.55, y_forward), (right - 0.55, y_forward), color=FORWARD_EDGE, halo=True, zorder=2.5)
        arrow(ax, (right - 0.55, y_backward), (left + 0.55, y_backward), color=BACKWARD_EDGE, halo=True,
              zorder=2.5)


def bidirectional_rnn_figure(words: Sequence[str] = ("not", "a", "bad", "film")) -> Figure:
    """A bidirectional RNN: a forward and a backward layer read the same inputs; each step's
    output joins both directions' states."""
    figure, ax = canvas(13, 8.4, inches_per_unit=0.55)
    columns = [3.2 + 2.8 * t for t in range(len(words))]
    y_input, y_forward, y_backward, y_output = 1.2, 3.4, 5.4, 7.3
    for x in columns:  # the forward state bends round the backward cell's left side
        arrow(ax, (x - 0.3, y_forward + 0.4), (x - 0.3, y_output - 0.28), color=FORWARD_EDGE,
              connection="arc3,rad=-0.45", halo=True, zorder=1.5)
    _bidirectional_rows(ax, words, columns, y_forward, y_backward, y_input)
    for t, x in enumerate(columns, start=1):
        # output y_t = [forward h_t ; backward h_t]
        box(ax, (x - 0.3, y_output), "", role="hidden", width=0.6, height=0.55, linewidth=1.4)
        box(ax, (x + 0.3, y_output), "", role="backward", width=0.6, height=0.55, linewidth=1.4)
        label(ax, (x, y_output + 0.62), rf"$\mathbf{{y}}_{{{t}}}$")
        arrow(ax, (x + 0.3, y_backward + 0.4), (x + 0.3, y_output - 0.28), color=BACKWARD_EDGE)
    label(ax, (0.3, y_forward), "forward\nlayer", color=FORWARD_EDGE, ha="left", fontsize=FONT_SIZE - 1)
    label(ax, (0.3, y_backward), "backward\nlayer", color=BACKWARD_EDGE, ha="left", fontsize=FONT_SIZE - 1)
    label(ax, (0.3, y_output), "output\n" + r"$[\overrightarrow{\mathbf{h}}_t ; \overleftarrow{\mathbf{h}}_t]$",
          ha="left", fontsize=FONT_SIZE - 1)
    return figure


def bidirectional_classifier_figure(words: Sequence[str] = ("the", "film", "was", "not", "bad")) -> Figure:
    """Sequence classification: the forward final state (after the last word) and the backward final
    state (after reading back to the first word) are joined and fed to a linear layer and a softmax."""
    figure, ax = canvas(14.5, 10.2, inches_per_unit=0.5)
    columns = [2.6 + 2.3 * t for t in range(len(words))]
    y_input, y_forward, y_backward = 1.3, 3.1, 4.9
    _bidirectional_rows(ax, words, columns, y_forward, y_backward, y_input)
    center = (columns[0] + columns[-1]) / 2
    y_join, y_linear, y_softmax = 6.9, 8.35, 9.45
    # the joined vector [forward h_T ; backward h_1], stacked as a column
    box(ax, (center, y_join + 0.3), "", role="hidden", width=0.7, height=0.6)
    box(ax, (center, y_join - 0.3), "", role="backward", width=0.7, height=0.6)
    # forward final state: from the last word's forward cell, round the right edge
    right = columns[-1] + 1.25
    path(ax, [(columns[-1] + 0.55, y_forward), (right, y_forward), (right, y_join + 0.3),
              (center + 0.35, y_join + 0.3)], color=FORWARD_EDGE, linewidth=2.2)
    label(ax, (right - 0.2, y_join + 0.45), H_FORWARD[:-1] + rf"_{{{len(words)}}}$" + ": after the last word",
          color=FORWARD_EDGE, ha="right", va="bottom", fontsize=FONT_SIZE - 1)
    # backward final state: from the first word's backward cell, round the left edge
    left = columns[0] - 1.25
    path(ax, [(columns[0] - 0.55, y_backward), (left, y_backward), (left, y_join - 0.3),
              (center - 0.35, y_join - 0.3)], color=BACKWARD_EDGE, linewidth=2.2)
    label(ax, (left + 0.2, y_join - 0.15), H_BACKWARD[:-1] + r"_{1}$" + ": after reading back\nto the first word",
          color=BACKWARD_EDGE, ha="left", va="bottom", fontsize=FONT_SIZE - 1)
    # head: linear layer, softmax, prediction
    arrow(ax, (center, y_join + 0.6), (center, y_linear - 0.3))
    box(ax, (center, y_linear), "linear", role="output", width=1.8, height=0.6)
    arrow(ax, (center, y_linear + 0.3), (center, y_softmax - 0.3))
    box(ax, (center, y_softmax), "softmax", role="output", width=1.8, height=0.6)
    label(ax, (center + 1.15, y_softmax), "P(negative), P(positive)", ha="left", color=COLORS["output"][1])
    return figure


FIGURES = {function.__name__: function for function in (
    unit_comparison_figure, unrolled_rnn_figure, lstm_cell_figure, gru_cell_figure, bidirectional_rnn_figure,
    bidirectional_classifier_figure)}
