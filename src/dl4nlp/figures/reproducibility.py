"""Figures of the reproducibility workshop: where a training run's random numbers come from, with one
global generator and with a generator per consumer (`dl4nlp.reproducibility`, `train_run`).

Each function returns a new `matplotlib.figure.Figure`; the page draws it in a hidden cell and gives
the caption and the alt text.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from dl4nlp.figures import COLORS, FONT_SIZE, MUTED, arrow, box, canvas, frame, label

CONSUMERS = (("weights", "input", "w"), ("batch order", "gate", "o"), ("dropout", "candidate", "m"))


def random_draws_figure(draws: Sequence[int] = (3, 2, 3)) -> Figure:
    """Where the random numbers of a training run go. Top: one global generator hands out its draws in
    turn (the weights, the batch order, the dropout masks); a print that draws one number first shifts
    every later draw. Bottom: three generators, seeded with seed, seed + 1 and seed + 2, one per
    consumer (as `train_run` does): the print draws from the global generator, and nothing moves.

    Args: draws, how many numbers each consumer draws (weights, batch order, dropout), each at least 1.
    """
    if len(draws) != len(CONSUMERS) or min(draws) < 1:
        raise ValueError(f"random_draws_figure: give {len(CONSUMERS)} counts of at least 1, got {tuple(draws)}")
    total = sum(draws)
    step = 1.05
    width = 5.2 + step * (total + 1)
    figure, ax = canvas(width, 11.6, inches_per_unit=0.5)
    left = 4.6

    def stream(y: float, with_print: bool) -> None:
        """One row of the global generator's draws d1, d2, ..., coloured by who receives them."""
        owners = (["print"] if with_print else []) + [name for (name, _, _), count in zip(CONSUMERS, draws)
                                                      for _ in range(count)]
        if with_print:  # the print comes after the weights' draws
            owners = owners[1:draws[0] + 1] + ["print"] + owners[draws[0] + 1:]
        roles = {name: role for name, role, _ in CONSUMERS} | {"print": "output"}
        for k, owner in enumerate(owners):
            box(ax, (left + step * k, y), f"$d_{{{k + 1}}}$", role=roles[owner], width=0.85, height=0.62,
                fontsize=FONT_SIZE - 2)
        label(ax, (left - 0.7, y), "with a print" if with_print else "as written", ha="right",
              fontsize=FONT_SIZE - 2)

    frame(ax, (0.3, 6.2), width - 0.6, 5.0, title="")
    label(ax, (0.6, 10.75), "one global generator: torch.manual_seed(seed)", ha="left", fontsize=FONT_SIZE)
    stream(9.6, False)
    stream(8.4, True)
    for k, ((name, role, _), count) in enumerate(zip(CONSUMERS, draws)):
        start = sum(draws[:k])
        label(ax, (left + step * (start + (count - 1) / 2), 10.2), name, color=COLORS[role][1],
              fontsize=FONT_SIZE - 2)
    label(ax, (left + step * draws[0], 7.75), "print", color=COLORS["output"][1], fontsize=FONT_SIZE - 2)
    label(ax, (width / 2, 6.75), "every later draw moves: other batches, other masks", color=COLORS["output"][1],
          fontsize=FONT_SIZE - 1)

    frame(ax, (0.3, 0.3), width - 0.6, 5.5, title="")
    label(ax, (0.6, 5.35), "a generator per consumer (train_run)", ha="left", fontsize=FONT_SIZE)
    offsets = ("seed", "seed + 1", "seed + 2")
    for row, ((name, role, letter), count, offset) in enumerate(zip(CONSUMERS, draws, offsets)):
        y = 4.3 - 1.05 * row
        label(ax, (left - 0.7, y), f"{offset}: {name}", ha="right", fontsize=FONT_SIZE - 2, color=COLORS[role][1])
        for k in range(count):
            box(ax, (left + step * k, y), f"${letter}_{{{k + 1}}}$", role=role, width=0.85, height=0.62,
                fontsize=FONT_SIZE - 2)
    print_x = left + step * (max(draws) + 1.5)
    box(ax, (print_x, 3.25), "global", role="output", width=1.3, height=0.62, fontsize=FONT_SIZE - 2)
    arrow(ax, (print_x, 2.9), (print_x, 2.0), color=COLORS["output"][1])
    label(ax, (print_x, 1.75), "print", color=COLORS["output"][1], fontsize=FONT_SIZE - 2)
    label(ax, (width / 2, 0.8), "nothing moves: the print draws from a generator no one else uses", color=MUTED,
          fontsize=FONT_SIZE - 1)
    return figure
