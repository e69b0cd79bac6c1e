"""Figures of the CNN chapter: a kernel sliding over the rows of a sentence matrix.

Each function returns a new `matplotlib.figure.Figure`; the chapter page draws them
in hidden cells and gives the caption and alt text. The symbols match `dl4nlp.cnn`:
a sentence is a matrix with one row per word (T rows of D numbers), a kernel covers
K rows, moves `stride` rows at a time and writes one number of the feature map per
window. Figure functions are named `<thing>_figure`, apart from the graded functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, canvas, label

CELL = 0.6  # side of one number of the sentence matrix, in data units


def _cell(ax, lower_left: tuple[float, float], role: str, *, width: float = CELL, linewidth: float = 1.0,
          linestyle: str = "-") -> None:
    fill, edge = COLORS[role]
    ax.add_patch(Rectangle(lower_left, width, CELL, facecolor=fill, edgecolor=edge, linewidth=linewidth,
                           linestyle=linestyle, zorder=2))


def convolution_figure(words: Sequence[str] = ("the", "film", "was", "not", "bad", "at", "all"),
                       kernel_size: int = 3, stride: int = 1, position: int = 1, width: int = 4) -> Figure:
    """A kernel of `kernel_size` rows over the sentence matrix (one row per word, `width`
    numbers each), at window `position`, and the feature map it fills, one number per window.

    Each feature is drawn level with the middle of its window, so the figure shows which
    words it sees; the feature map has (T - K) // stride + 1 entries.
    """
    T = len(words)
    if not 1 <= kernel_size <= T or stride < 1:
        raise ValueError(f"convolution_figure: need 1 <= kernel_size <= {T} words and stride >= 1, "
                         f"got kernel_size={kernel_size}, stride={stride}")
    windows = (T - kernel_size) // stride + 1
    if not 0 <= position < windows:
        raise ValueError(f"convolution_figure: position must be between 0 and {windows - 1}, got {position}")
    height = T * CELL + 2.6
    figure, ax = canvas(16, height, inches_per_unit=0.55)
    top = height - 1.3  # the upper edge of the first row

    def row_bottom(t: float) -> float:
        return top - (t + 1) * CELL

    # The sentence matrix: one row per word.
    left = 2.4
    for t, word in enumerate(words):
        label(ax, (left - 0.2, row_bottom(t) + CELL / 2), word, ha="right", style="italic")
        for d in range(width):
            _cell(ax, (left + d * CELL, row_bottom(t)), "input")
    label(ax, (left + width * CELL / 2, top + 0.35), f"sentence: T = {T} words × D", color=COLORS["input"][1],
          fontsize=FONT_SIZE - 1)
    start = position * stride
    window_top, window_bottom = top - start * CELL, row_bottom(start + kernel_size - 1)
    ax.add_patch(Rectangle((left - 0.08, window_bottom - 0.08), width * CELL + 0.16, window_top - window_bottom + 0.16,
                           fill=False, edgecolor=COLORS["hidden"][1], linewidth=2.6, zorder=4))
    middle = (window_top + window_bottom) / 2
    label(ax, (left + width * CELL + 0.3, window_top - 0.2), f"window: K = {kernel_size} words", ha="left",
          color=COLORS["hidden"][1], fontsize=FONT_SIZE - 1)

    # The kernel: K rows of D weights, the same at every window.
    kernel_left = 7.6
    kernel_top = middle + kernel_size * CELL / 2
    for k in range(kernel_size):
        for d in range(width):
            _cell(ax, (kernel_left + d * CELL, kernel_top - (k + 1) * CELL), "candidate")
    label(ax, (kernel_left + width * CELL / 2, kernel_top + 0.35), "kernel (filter)", color=COLORS["candidate"][1],
          fontsize=FONT_SIZE - 1)
    label(ax, (6.6, middle), "×", fontsize=FONT_SIZE + 6, color=INK)
    label(ax, (6.6, middle - 0.55), "sum", fontsize=FONT_SIZE - 3, color=MUTED)

    # The feature map: one number per window, level with the middle of its window.
    feature_left = 12.6
    arrow(ax, (kernel_left + width * CELL + 0.2, middle), (feature_left - 0.15, middle), color=COLORS["output"][1])
    label(ax, ((kernel_left + width * CELL + feature_left) / 2, middle + 0.3), "+ b", fontsize=FONT_SIZE - 2,
          color=MUTED)
    for t in range(windows):
        centre = (top - t * stride * CELL + row_bottom(t * stride + kernel_size - 1)) / 2
        current = t == position
        _cell(ax, (feature_left, centre - CELL / 2), "output" if t <= position else "plain",
              linewidth=2.6 if current else 1.0, linestyle="-" if t <= position else ":")
        label(ax, (feature_left + CELL + 0.15, centre), rf"$y_{{{t + 1}}}$", ha="left", fontsize=FONT_SIZE - 2,
              color=INK if current else MUTED)
    label(ax, (feature_left + CELL / 2, top + 0.35), f"feature map ({windows})", color=COLORS["output"][1],
          fontsize=FONT_SIZE - 1)
    label(ax, (8, 0.45), f"stride = {stride}: the window moves {stride} word{'s' if stride > 1 else ''} at a time; "
          f"(T − K) // stride + 1 = {windows} windows", color=MUTED, fontsize=FONT_SIZE - 2)
    return figure
