"""Figures of the CNN chapter: a feedforward layer next to a convolutional one, a kernel
sliding over the rows of a sentence matrix, the windows and feature map of every step,
pooling, and Kim's (2014) sentence classifier.

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

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, label

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


def feedforward_convolution_figure(words: Sequence[str] = ("the", "film", "was", "not", "bad"),
                                   kernel_size: int = 3) -> Figure:
    """What a unit reads: a feedforward layer (every unit reads every input) next to a
    convolutional layer (each feature reads K neighbouring words, with the same weights
    at every window: the k-th word of each window is weighed by the same W_k)."""
    T = len(words)
    if not 1 <= kernel_size <= T:
        raise ValueError(f"feedforward_convolution_figure: need 1 <= kernel_size <= {T}, got {kernel_size}")
    figure, ax = canvas(17.2, 7.4, inches_per_unit=0.55)
    step, y_in, y_out = 1.45, 2.0, 5.0
    kernel_colors = ("#6d28d9", "#c2410c", "#0f766e", "#b91c1c", "#15803d", "#1d4ed8", "#334155")

    def inputs(x0: float) -> list[float]:
        xs = [x0 + step * t for t in range(T)]
        for t, (x, word) in enumerate(zip(xs, words), start=1):
            box(ax, (x, y_in), rf"$\mathbf{{x}}_{{{t}}}$", role="input", width=1.0, height=0.7)
            label(ax, (x, y_in - 0.8), f"“{word}”", color=MUTED, fontsize=FONT_SIZE - 2, style="italic")
        return xs

    # Left: a feedforward layer over the whole (concatenated) sentence.
    left = inputs(1.0)
    units = [left[0] + (left[-1] - left[0]) * u / 3 for u in range(4)]
    for u, x_unit in enumerate(units, start=1):
        for x in left:
            arrow(ax, (x, y_in + 0.35), (x_unit, y_out - 0.35), color="#94a3b8", linewidth=0.9, head=False)
        box(ax, (x_unit, y_out), rf"$h_{{{u}}}$", role="plain", width=0.9, height=0.7)
    centre = (left[0] + left[-1]) / 2
    label(ax, (centre, 6.55), "feedforward layer", fontsize=FONT_SIZE + 1, fontweight="bold")
    label(ax, (centre, 6.05), "every unit reads all T × D inputs", color=MUTED, fontsize=FONT_SIZE - 2)

    # Right: a convolutional layer: one feature per window, the same K weight blocks everywhere.
    right = inputs(left[-1] + 2.6)
    windows = T - kernel_size + 1
    for t in range(windows):
        x_feature = sum(right[t:t + kernel_size]) / kernel_size
        for k in range(kernel_size):
            arrow(ax, (right[t + k], y_in + 0.35), (x_feature, y_out - 0.35), color=kernel_colors[k % 7],
                  linewidth=1.6, head=False)
        box(ax, (x_feature, y_out), rf"$y_{{{t + 1}}}$", role="output", width=0.9, height=0.7)
    centre = (right[0] + right[-1]) / 2
    label(ax, (centre, 6.55), "convolutional layer", fontsize=FONT_SIZE + 1, fontweight="bold")
    label(ax, (centre, 6.05), f"each feature reads K = {kernel_size} neighbouring words", color=MUTED,
          fontsize=FONT_SIZE - 2)
    legend = ", ".join(f"W$_{{{k + 1}}}$" for k in range(kernel_size))
    label(ax, (centre, 0.45), f"same weights at every window: {legend} (one colour each)", color=MUTED,
          fontsize=FONT_SIZE - 2)
    ax.plot([left[-1] + 1.3] * 2, [1.0, 6.9], color="#cbd5e1", linewidth=1.0)
    return figure


def feature_map_figure(words: Sequence[str] = ("the", "film", "was", "not", "bad", "at", "all"),
                       kernel_size: int = 3, stride: int = 1, features: Sequence[float] | None = None) -> Figure:
    """Every step of a convolution at once: one column per window, a bar over the words it
    sees, and below it the feature it writes (with its value, if `features` are given:
    red for positive, blue for negative, the stronger the larger).

    Words that no window covers (a stride > 1 can skip the last words, and a stride > K
    words between windows) are greyed out and named. The figure's size depends only on
    the sentence, so a widget that changes K and the stride redraws it in place.
    """
    T = len(words)
    if not 1 <= kernel_size <= T or stride < 1:
        raise ValueError(f"feature_map_figure: need 1 <= kernel_size <= {T} words and stride >= 1, "
                         f"got kernel_size={kernel_size}, stride={stride}")
    windows = (T - kernel_size) // stride + 1
    if features is not None and len(features) != windows:
        raise ValueError(f"feature_map_figure: {windows} windows but {len(features)} features")
    row, column, words_right = 0.5, 0.78, 3.4
    width, height = max(13.0, words_right + 1.2 + T * column), max(T * row + 4.2, 7.0)
    figure, ax = canvas(width, height, inches_per_unit=0.52)
    top = height - 1.2  # the upper edge of the first word's row
    seen = {t * stride + k for t in range(windows) for k in range(kernel_size)}
    unseen = [word for t, word in enumerate(words) if t not in seen]
    for t, word in enumerate(words):
        y = top - (t + 0.5) * row
        label(ax, (words_right, y), word, ha="right", style="italic", color=INK if t in seen else "#cbd5e1",
              fontsize=FONT_SIZE - 1)
        ax.plot([words_right + 0.15, words_right + 0.6 + windows * column], [y, y], color="#e2e8f0",
                linewidth=0.8, zorder=1)
    fill, edge = COLORS["hidden"]
    scale = max([abs(float(value)) for value in features or []] + [1e-9])  # the largest |feature|: full colour
    best = max(range(windows), key=lambda t: float(features[t])) if features is not None else None  # max over time
    y_feature = top - T * row - 0.9
    for t in range(windows):
        x = words_right + 0.6 + (t + 0.5) * column
        first, last = t * stride, t * stride + kernel_size - 1
        ax.add_patch(Rectangle((x - 0.2, top - (last + 1) * row + 0.06), 0.4, (last - first + 1) * row - 0.12,
                               facecolor=fill, edgecolor=edge, linewidth=1.4, zorder=3))
        label(ax, (x, top + 0.35), str(t + 1), color=MUTED, fontsize=FONT_SIZE - 3)
        if features is None:
            face, text = COLORS["output"][0], rf"$y_{{{t + 1}}}$"
        else:
            value = float(features[t])
            strength = min(abs(value) / scale, 1.0)
            base = (0.72, 0.11, 0.11) if value >= 0 else (0.11, 0.30, 0.85)
            face = tuple(1 - strength * 0.75 * (1 - channel) for channel in base)
            text = f"{value:.2g}" if abs(value) < 10 else f"{value:.0f}"
        ax.add_patch(Rectangle((x - column / 2 + 0.03, y_feature - 0.3), column - 0.06, 0.6, facecolor=face,
                               edgecolor=COLORS["output"][1], linewidth=2.6 if t == best else 1.2,
                               zorder=4 if t == best else 3))
        label(ax, (x, y_feature), text, fontsize=FONT_SIZE - 3 if features is not None else FONT_SIZE - 2)
        if t == best:
            label(ax, (x, y_feature - 0.55), "max", color=COLORS["output"][1], fontsize=FONT_SIZE - 3)
    label(ax, (words_right + 0.6, top + 0.85), "window (step) t: the words it sees", ha="left", color=edge,
          fontsize=FONT_SIZE - 1)
    label(ax, (words_right + 0.1, y_feature), "feature map", ha="right", color=COLORS["output"][1],
          fontsize=FONT_SIZE - 1)
    label(ax, (0.3, 0.95), f"K = {kernel_size}, stride = {stride}: (T − K) // stride + 1 = ({T} − {kernel_size}) "
          f"// {stride} + 1 = {windows} feature{'s' if windows != 1 else ''}", ha="left", color=MUTED,
          fontsize=FONT_SIZE - 2)
    label(ax, (0.3, 0.4), "words no window sees: " + ", ".join(f"“{word}”" for word in unseen) if unseen
          else "every word is seen by some window", ha="left", color="#b91c1c" if unseen else MUTED,
          fontsize=FONT_SIZE - 2)
    return figure


def pooling_figure(features: Sequence[float] = (0.2, 1.5, -0.3, 0.8, 2.1, 0.4), window: int = 2) -> Figure:
    """Pooling one feature map: max and average over windows of `window` values side by side
    (subsets of the map, left), and over the whole map, over time (right), which leaves one
    number per map whatever the sentence's length."""
    T = len(features)
    if not 1 <= window <= T:
        raise ValueError(f"pooling_figure: need 1 <= window <= {T} features, got {window}")
    values = [float(value) for value in features]
    starts = range(0, T - window + 1, window)
    cell = 0.85
    figure, ax = canvas(cell * 2 * T + 6.4, 7.2, inches_per_unit=0.52)
    y_map, y_max, y_average = 5.6, 3.6, 2.4

    def cells(y: float, xs: Sequence[float], numbers: Sequence[float], role: str, *, strong: Sequence[int] = ()) -> None:
        fill, edge = COLORS[role]
        for index, (x, number) in enumerate(zip(xs, numbers)):
            ax.add_patch(Rectangle((x - cell / 2 + 0.04, y - 0.3), cell - 0.08, 0.6, facecolor=fill, edgecolor=edge,
                                   linewidth=2.6 if index in strong else 1.2, zorder=3))
            label(ax, (x, y), f"{number:.2g}", fontsize=FONT_SIZE - 2)

    def bracket(x_from: float, x_to: float, y: float) -> None:
        ax.plot([x_from, x_from, x_to, x_to], [y + 0.15, y, y, y + 0.15], color=MUTED, linewidth=1.2, zorder=2)

    panels = {"windows": 2.9, "time": 2.9 + cell * T + 2.2}
    for name, left in panels.items():
        xs = [left + (t + 0.5) * cell for t in range(T)]
        best = values.index(max(values))
        cells(y_map, xs, values, "output", strong=[best] if name == "time" else
              [start + group.index(max(group)) for start in starts for group in [values[start:start + window]]])
        if name == "windows":
            groups = [(xs[start] - cell / 2 + 0.1, xs[start + window - 1] + cell / 2 - 0.1, values[start:start + window])
                      for start in starts]
            title = f"over windows of {window} (subsets)"
        else:
            groups = [(xs[0] - cell / 2 + 0.1, xs[-1] + cell / 2 - 0.1, values)]
            title = "over time (the whole map)"
        label(ax, ((xs[0] + xs[-1]) / 2, 6.75), title, fontsize=FONT_SIZE - 1)
        centres = []
        for x_from, x_to, group in groups:
            bracket(x_from, x_to, y_map - 0.55)
            centre = (x_from + x_to) / 2
            centres.append(centre)
            arrow(ax, (centre, y_map - 0.55), (centre, y_max + 0.32), color=MUTED, linewidth=1.2)
            ax.plot([centre, centre], [y_max - 0.3, y_average + 0.3], color=MUTED, linewidth=1.0, linestyle=":")
        cells(y_max, centres, [max(group) for _, _, group in groups], "candidate")
        cells(y_average, centres, [sum(group) / len(group) for _, _, group in groups], "gate")
    label(ax, (2.6, y_map), "feature map", ha="right", color=COLORS["output"][1], fontsize=FONT_SIZE - 1)
    label(ax, (2.6, y_max), "max", ha="right", color=COLORS["candidate"][1], fontsize=FONT_SIZE - 1)
    label(ax, (2.6, y_average), "average", ha="right", color=COLORS["gate"][1], fontsize=FONT_SIZE - 1)
    pooled = len(starts)
    label(ax, (0.3, 1.1), f"{T} numbers become {pooled} (windows of {window}) or 1 (over time): fewer numbers for the "
          "next layer.", ha="left", color=MUTED, fontsize=FONT_SIZE - 2)
    label(ax, (0.3, 0.5), "The max keeps the strongest match (thick edge), wherever in its window it was.",
          ha="left", color=MUTED, fontsize=FONT_SIZE - 2)
    return figure


def text_cnn_figure(words: Sequence[str] = ("the", "film", "was", "not", "bad", "at", "all"),
                    kernel_sizes: Sequence[int] = (2, 3), filters: int = 2) -> Figure:
    """Kim's (2014) CNN for sentences: the sentence matrix, `filters` feature maps per kernel
    size, max over time (one number per map) into the pooled vector, and a feedforward
    layer with a softmax over the classes."""
    T = len(words)
    if not kernel_sizes or min(kernel_sizes) < 1 or max(kernel_sizes) > T or filters < 1:
        raise ValueError(f"text_cnn_figure: need kernel sizes between 1 and {T} and filters >= 1, "
                         f"got {tuple(kernel_sizes)} and {filters}")
    row, gap = 0.5, 0.45
    maps = len(kernel_sizes) * filters
    width = 6.2 + maps * (row + gap) + 0.5 * len(kernel_sizes) + 5.6
    figure, ax = canvas(width, T * row + 5.0, inches_per_unit=0.5)
    top = T * row + 2.0  # the upper edge of the sentence matrix and of the feature maps
    roles = ("candidate", "gate", "backward", "hidden")
    left = 1.9
    for t, word in enumerate(words):
        label(ax, (left - 0.15, top - (t + 0.5) * row), word, ha="right", style="italic", fontsize=FONT_SIZE - 2)
        for d in range(4):
            ax.add_patch(Rectangle((left + d * row, top - (t + 1) * row), row, row, facecolor=COLORS["input"][0],
                                   edgecolor=COLORS["input"][1], linewidth=0.8, zorder=2))
    label(ax, (left + 2 * row, top + 0.4), "sentence", color=COLORS["input"][1], fontsize=FONT_SIZE - 1)
    label(ax, (left + 2 * row, top - T * row - 0.4), "T × D", color=COLORS["input"][1], fontsize=FONT_SIZE - 2)
    x = left + 4 * row + 1.9
    arrow(ax, (left + 4 * row + 0.2, top - T * row / 2), (x - 0.2, top - T * row / 2), color=INK)
    label(ax, (left + 4 * row + 0.95, top - T * row / 2 + 0.55), "conv\n+ ReLU", color=MUTED,
          fontsize=FONT_SIZE - 3)
    y_pooled = top + 1.35
    map_xs = []
    for j, K in enumerate(kernel_sizes):
        fill, edge = COLORS[roles[j % len(roles)]]
        group_left = x
        for _ in range(filters):
            for t in range(T - K + 1):  # each feature drawn level with the middle of its window
                y_centre = top - (t + K / 2) * row
                ax.add_patch(Rectangle((x, y_centre - row / 2), row, row, facecolor=fill, edgecolor=edge,
                                       linewidth=0.9, zorder=2))
            map_xs.append((x + row / 2, top - (K / 2 - 0.5) * row, roles[j % len(roles)]))
            x += row + gap
        label(ax, ((group_left + x - gap) / 2, top - T * row - 0.45), f"K = {K}", color=edge, fontsize=FONT_SIZE - 1)
        x += 0.5
    label(ax, ((map_xs[0][0] + map_xs[-1][0]) / 2, top - T * row - 1.05), "feature maps, one per filter",
          fontsize=FONT_SIZE - 1)
    middle = (map_xs[0][0] + map_xs[-1][0]) / 2
    pooled_xs = [middle + (index - (maps - 1) / 2) * row for index in range(maps)]  # side by side: one vector
    for (x_map, y_top, role), x_pooled in zip(map_xs, pooled_xs):
        fill, edge = COLORS[role]
        arrow(ax, (x_map, y_top + 0.05), (x_pooled, y_pooled - row / 2 - 0.05), color=edge, linewidth=1.2)
        ax.add_patch(Rectangle((x_pooled - row / 2, y_pooled - row / 2), row, row, facecolor=fill, edgecolor=edge,
                               linewidth=1.6, zorder=3))
    label(ax, (map_xs[0][0] - 0.45, (top + y_pooled) / 2), "max over time", ha="right", color=MUTED,
          fontsize=FONT_SIZE - 2)
    label(ax, ((pooled_xs[0] + pooled_xs[-1]) / 2, y_pooled + 0.6), "pooled vector (joined)", fontsize=FONT_SIZE - 1)
    x_linear = map_xs[-1][0] + 2.0
    arrow(ax, (pooled_xs[-1] + row / 2 + 0.1, y_pooled), (x_linear - 0.8, y_pooled))
    box(ax, (x_linear, y_pooled), "linear", role="output", width=1.5, height=0.75)
    box(ax, (x_linear, y_pooled - 1.7), "softmax", role="output", width=1.7, height=0.75)
    arrow(ax, (x_linear, y_pooled - 0.4), (x_linear, y_pooled - 1.3))
    arrow(ax, (x_linear, y_pooled - 2.1), (x_linear, y_pooled - 2.9))
    label(ax, (x_linear, y_pooled - 3.25), "P(negative),\nP(positive)", color=COLORS["output"][1],
          fontsize=FONT_SIZE - 2, va="top")
    label(ax, (x_linear, y_pooled + 0.7), "feedforward layer", color=MUTED, fontsize=FONT_SIZE - 2)
    label(ax, (0.3, 0.45), f"{maps} maps of different lengths, one number each: a vector of {maps} numbers for "
          "a sentence of any length", ha="left", color=MUTED, fontsize=FONT_SIZE - 2)
    return figure
