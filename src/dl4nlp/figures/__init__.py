"""Figures drawn by the course itself: one module per chapter (`dl4nlp.figures.rnn`, ...).

Every figure function returns a `matplotlib.figure.Figure` built without pyplot,
so drawing one registers nothing global and needs no `plt.close`. A book page
draws it in a cell whose input is hidden; the cell's metadata gives the caption
and the alt text (see docs/figures.md).

The helpers below place boxes, operator circles, arrows and labels in data
coordinates on an axis with equal aspect (one unit is the same length across and
up), so a layout is a handful of numbers. Colours have one meaning in every
chapter: `COLORS[role]` is (fill, edge).
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

Point = tuple[float, float]

# (fill, edge) per role; the edges are dark enough for text and lines on white.
COLORS: dict[str, tuple[str, str]] = {
    "input": ("#dbeafe", "#1d4ed8"),      # token embeddings x_t
    "hidden": ("#ffedd5", "#c2410c"),     # a recurrent cell / forward direction
    "backward": ("#ccfbf1", "#0f766e"),   # the backward direction of a bidirectional layer
    "gate": ("#dcfce7", "#15803d"),       # sigmoid gates
    "candidate": ("#ede9fe", "#6d28d9"),  # tanh: candidate information
    "output": ("#fee2e2", "#b91c1c"),     # classifier head, predictions
    "query": ("#fef3c7", "#b45309"),      # attention: the query q_i of the word that asks
    "key": ("#fce7f3", "#be185d"),        # attention: the keys k_j it is compared with
    "value": ("#ecfccb", "#4d7c0f"),      # attention: the values v_j that are summed
    "norm": ("#e7e5e4", "#44403c"),       # LayerNorm
    "operator": ("#ffffff", "#334155"),   # pointwise x and +
    "plain": ("#f1f5f9", "#334155"),      # anything else
}
INK = "#1e293b"    # text and ordinary arrows
MUTED = "#64748b"  # annotations
FONT_SIZE = 12


def canvas(width: float, height: float, *, inches_per_unit: float = 0.6) -> tuple[Figure, Axes]:
    """A blank figure whose axis spans [0, width] x [0, height] data units, axes hidden."""
    figure = Figure(figsize=(width * inches_per_unit, height * inches_per_unit), dpi=100)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return figure, ax


def box(ax: Axes, center: Point, text: str = "", *, role: str = "plain", width: float = 1.2,
        height: float = 0.8, fontsize: float = FONT_SIZE, bold: bool = False,
        linewidth: float = 1.6) -> FancyBboxPatch:
    """A rounded box centred at `center` with `text` inside, coloured by `role`."""
    fill, edge = COLORS[role]
    x, y = center
    patch = FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                           boxstyle="round,pad=0,rounding_size=0.15", facecolor=fill, edgecolor=edge,
                           linewidth=linewidth, zorder=3)
    ax.add_patch(patch)
    if text:
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=INK, zorder=4,
                fontweight="bold" if bold else "normal")
    return patch


def operator(ax: Axes, center: Point, symbol: str, *, radius: float = 0.28, role: str = "operator",
             fontsize: float = FONT_SIZE + 2) -> Circle:
    """A pointwise operation drawn as a small circle: "×" (multiply), "+" (add), "1−" ..."""
    fill, edge = COLORS[role]
    patch = Circle(center, radius, facecolor=fill, edgecolor=edge, linewidth=1.6, zorder=3)
    ax.add_patch(patch)
    ax.text(center[0], center[1], symbol, ha="center", va="center_baseline", fontsize=fontsize,
            color=INK, zorder=4)
    return patch


def arrow(ax: Axes, start: Point, end: Point, *, color: str = INK, linewidth: float = 1.6,
          connection: str = "arc3", head: bool = True, halo: bool = False,
          zorder: float = 2) -> FancyArrowPatch:
    """A straight (or, with `connection`, curved) arrow from `start` to `end`.

    `halo` draws a white outline under the line so that it reads as passing *over*
    lines drawn earlier where two cross.
    """
    patch = FancyArrowPatch(start, end, arrowstyle="-|>,head_length=6,head_width=3.5" if head else "-",
                            connectionstyle=connection, color=color, linewidth=linewidth,
                            shrinkA=0, shrinkB=0, zorder=zorder)
    if halo:
        patch.set_path_effects([patheffects.withStroke(linewidth=linewidth + 5, foreground="white")])
    ax.add_patch(patch)
    return patch


def path(ax: Axes, points: Sequence[Point], *, color: str = INK, linewidth: float = 1.6,
         head: bool = True, halo: bool = False, zorder: float = 2) -> FancyArrowPatch:
    """A polyline through `points` (right angles, usually) with an arrowhead at the end."""
    patch = FancyArrowPatch(path=Path(points), arrowstyle="-|>,head_length=6,head_width=3.5" if head else "-",
                            color=color, linewidth=linewidth, zorder=zorder, joinstyle="miter")
    if halo:
        patch.set_path_effects([patheffects.withStroke(linewidth=linewidth + 5, foreground="white")])
    ax.add_patch(patch)
    return patch


def dot(ax: Axes, center: Point, *, color: str = INK, size: float = 0.07) -> None:
    """A junction where a line splits in two."""
    ax.add_patch(Circle(center, size, color=color, zorder=3))


def label(ax: Axes, position: Point, text: str, *, color: str = INK, fontsize: float = FONT_SIZE,
          ha: str = "center", va: str = "center", **kwargs) -> None:
    """Text at a position in data units."""
    ax.text(position[0], position[1], text, color=color, fontsize=fontsize, ha=ha, va=va, zorder=5,
            **kwargs)


def frame(ax: Axes, lower_left: Point, width: float, height: float, *, color: str = MUTED,
          title: str = "") -> FancyBboxPatch:
    """A dashed outline around a group of parts (one cell, one layer), with an optional title."""
    patch = FancyBboxPatch(lower_left, width, height, boxstyle="round,pad=0,rounding_size=0.3",
                           facecolor="#f8fafc", edgecolor=color, linewidth=1.2, linestyle=(0, (4, 3)),
                           zorder=0)
    ax.add_patch(patch)
    if title:
        label(ax, (lower_left[0] + 0.2, lower_left[1] + height - 0.25), title, color=color,
              fontsize=FONT_SIZE - 1, ha="left", va="top", style="italic")
    return patch


__all__ = ["COLORS", "INK", "MUTED", "FONT_SIZE", "canvas", "box", "operator", "arrow", "path", "dot",
           "label", "frame"]
