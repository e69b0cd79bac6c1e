"""Figures of the chapter on pretraining and prompting (`dl4nlp.prompting`): the prompting pipeline from an input to
a label, the anatomy of a few-shot prompt (the lecture's sarcasm prompt), scoring a label word of several tokens by
the chain rule, and contextual calibration.

Each function returns a new `matplotlib.figure.Figure`; the chapter page draws them in hidden cells and gives the
caption and alt text. Figure functions are named `<thing>_figure`, never like a function of `dl4nlp.prompting`
(`calibration_figure()` draws what `dl4nlp.prompting.calibrate` computes). The symbols follow `dl4nlp.prompting`:
[X] the input slot, [Z] the answer slot, p(y | x) the label probabilities, p_cf(y) those of a content-free input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from dl4nlp.figures import COLORS, FONT_SIZE, INK, MUTED, arrow, box, canvas, frame, label


def prompting_pipeline_figure(text: str = "the plot was really clever .",
                              template: str = "[X] overall , it was [Z]",
                              words: Sequence[tuple[str, str, float]] = (("good", "positive", 0.71),
                                                                          ("bad", "negative", 0.29))) -> Figure:
    """Prompting from an input to a label: the input x fills the template's [X]; the prompt ends where [Z] was; the
    language model scores each word of the answer space as the continuation; the verbalizer maps each answer word to
    a label, and the label of the most likely word is the prediction.

    Args: text, the input; template, with [X] and [Z] at its end; words, (answer word, label, probability) for each
      word of the answer space, 2 to 4 of them.
    """
    from dl4nlp.prompting import check_template, fill_template

    check_template("prompting_pipeline_figure", template)
    if not 2 <= len(words) <= 4:
        raise ValueError(f"prompting_pipeline_figure: draw 2 to 4 answer words, got {len(words)}")
    width, height = 16.0, 8.8
    figure, ax = canvas(width, height, inches_per_unit=9.8 / width)
    top = height - 0.9
    box(ax, (2.6, top), f"input x\n“{text}”", role="input", width=4.6, height=1.1, fontsize=FONT_SIZE - 2)
    box(ax, (9.6, top), f"template\n{template}", role="plain", width=6.2, height=1.1, fontsize=FONT_SIZE - 2)
    label(ax, (9.6, top - 0.85), "[X]: the input goes here · [Z]: the answer slot, at the end", color=MUTED,
          fontsize=FONT_SIZE - 4)
    prompt = fill_template(template, text)
    y_prompt = top - 2.3
    box(ax, (6.5, y_prompt), f"prompt: “{prompt}”", role="input", width=11.6, height=0.8, fontsize=FONT_SIZE - 2)
    arrow(ax, (2.6, top - 0.55), (4.2, y_prompt + 0.4), color=MUTED, linewidth=1.2)
    arrow(ax, (9.6, top - 1.05), (8.6, y_prompt + 0.4), color=MUTED, linewidth=1.2)
    label(ax, (13.5, y_prompt), "fill_template", color=MUTED, fontsize=FONT_SIZE - 3, ha="left")
    y_lm = y_prompt - 1.6
    box(ax, (6.5, y_lm), "pretrained language model (GPT)", role="hidden", width=6.4, height=0.8,
        fontsize=FONT_SIZE - 1, bold=True)
    arrow(ax, (6.5, y_prompt - 0.4), (6.5, y_lm + 0.4), color=INK, linewidth=1.3)
    label(ax, (10.0, y_lm), "no training: its weights stay as they are", color=MUTED, fontsize=FONT_SIZE - 3,
          ha="left")
    y_answer, y_label = y_lm - 1.9, y_lm - 3.6
    label(ax, (0.5, y_answer + 0.75), "answer space: p(word | prompt)", color=MUTED, fontsize=FONT_SIZE - 3,
          ha="left")
    label(ax, (0.5, (y_answer + y_label) / 2), "verbalizer:\nanswer word\n→ label", color=MUTED, fontsize=FONT_SIZE - 3,
          ha="left")
    best = max(range(len(words)), key=lambda index: words[index][2])
    spacing = 11.0 / len(words)
    for index, (word, name, probability) in enumerate(words):
        x = 1.0 + spacing * (index + 0.5)
        arrow(ax, (6.5, y_lm - 0.4), (x, y_answer + 0.4), color=MUTED, linewidth=1.0)
        box(ax, (x, y_answer), f"“{word}”  {probability:.2f}", role="output" if index == best else "plain",
            width=2.5, height=0.7, fontsize=FONT_SIZE - 2)
        arrow(ax, (x, y_answer - 0.35), (x, y_label + 0.35), color=INK, linewidth=1.2)
        box(ax, (x, y_label), name, role="gate" if index == best else "plain", width=2.5, height=0.7,
            fontsize=FONT_SIZE - 2, bold=index == best)
    label(ax, (12.9, y_label + 0.15), f"prediction:\n{words[best][1]}", fontsize=FONT_SIZE - 1, ha="left",
          color=COLORS["gate"][1])
    return figure


def few_shot_prompt_figure(header: str = "Here are two training instances:",
                           demonstrations: Sequence[tuple[str, str]] = (
                               ("Natalie was soooooo happy she had booked a 5 a.m. flight.", "SARCASTIC"),
                               ("Natalie loved early morning flights because she could get to her destination "
                                "before brunch!", "NOT SARCASTIC")),
                           query_header: str = "Here is a test instance. Fill in the correct label:",
                           query: str = "Natalie was sooooooooooooo excited to wait in an early morning airport "
                                        "security line.",
                           template: str = 'Data: "[X]" Label: [Z]') -> Figure:
    """The anatomy of a few-shot prompt, as `dl4nlp.prompting.few_shot_prompt` builds it (by default the lecture's
    sarcasm prompt): an instruction, k demonstrations (the template filled with an input and its label word), a
    header for the query, and the query in the template with its answer slot left open for the model.

    Args: header, query_header, the instructions ("" for none); demonstrations, 0 to 4 (text, label word) pairs;
      query, the input to classify; template, with [X] and [Z] at its end.
    """
    from dl4nlp.prompting import check_template, fill_template

    check_template("few_shot_prompt_figure", template)
    if len(demonstrations) > 4:
        raise ValueError(f"few_shot_prompt_figure: draw 0 to 4 demonstrations, got {len(demonstrations)}")

    def short(text: str, limit: int = 58) -> str:
        return text if len(text) <= limit else text[:limit - 1] + "…"

    rows = ([("instruction", header, "plain")] if header else []) + \
        [(f"demonstration {index + 1}", fill_template(template, short(text), word), "gate")
         for index, (text, word) in enumerate(demonstrations)] + \
        ([("instruction", query_header, "plain")] if query_header else []) + \
        [("query", fill_template(template, short(query)) + " ___", "input")]
    width = 16.0
    row_height = 1.05
    height = len(rows) * row_height + 2.0
    figure, ax = canvas(width, height, inches_per_unit=9.8 / width)
    top = height - 0.9
    k = len(demonstrations)
    label(ax, (width / 2, height - 0.4), f"k = {k} demonstrations: " + ("zero-shot" if k == 0 else
          "one-shot" if k == 1 else "few-shot"), fontsize=FONT_SIZE - 1)
    for index, (name, text, role) in enumerate(rows):
        y = top - index * row_height - 0.35
        label(ax, (2.7, y), name, ha="right", fontsize=FONT_SIZE - 3, color=COLORS[role][1])
        box(ax, (8.9, y), "", role=role, width=12.0, height=0.8)
        label(ax, (3.1, y), text, ha="left", fontsize=FONT_SIZE - 4)
        if role == "gate":  # the label word of a demonstration, written by the verbalizer
            label(ax, (15.3, y), "label\nword", fontsize=FONT_SIZE - 5, color=COLORS["gate"][1])
    y_query = top - (len(rows) - 1) * row_height - 0.35
    label(ax, (9.2, y_query - 0.75), "the model continues here: each label word is scored as the next text",
          fontsize=FONT_SIZE - 4, color=COLORS["input"][1])
    frame(ax, (0.2, y_query - 1.05), width - 0.4, height - 0.95 - (y_query - 1.05), color=MUTED)
    return figure


def chain_rule_scoring_figure(prompt: Sequence[str] = ("it", "was", "great", ".", "my", "rating", ":"),
                              word: Sequence[str] = ("five", "stars"),
                              log_probs: Sequence[float] = (-0.9, -0.2)) -> Figure:
    """Scoring a label word of several tokens, as `dl4nlp.prompting.continuation_log_probs` does: one forward pass over
    the prompt followed by the word; the output at the last prompt token gives log p(first word token | prompt), the
    output at each word token the next one, and the word's score is their sum (the chain rule). The prompt's own
    tokens are never scored.

    Args: prompt, 2 to 8 tokens; word, 1 to 3 tokens of the label word; log_probs, one per word token.
    """
    if not 2 <= len(prompt) <= 8 or not 1 <= len(word) <= 3 or len(log_probs) != len(word):
        raise ValueError(f"chain_rule_scoring_figure: draw 2 to 8 prompt tokens, 1 to 3 word tokens and one "
                         f"log-probability per word token; got {len(prompt)}, {len(word)} and {len(log_probs)}")
    tokens = list(prompt) + list(word)
    step = 1.45
    width = max(12.0, 1.4 + step * len(tokens) + 0.8)
    height = 6.2
    figure, ax = canvas(width, height, inches_per_unit=9.8 / width)
    y_in, y_model, y_out = 1.0, 2.55, 4.1
    P = len(prompt)
    box(ax, (1.4 + step * (len(tokens) - 1) / 2, y_model), "causal language model (one forward pass)", role="hidden",
        width=step * len(tokens), height=0.7, fontsize=FONT_SIZE - 2)
    for t, token in enumerate(tokens):
        x = 1.4 + step * t
        box(ax, (x, y_in), token, role="input" if t < P else "gate", width=1.25, height=0.6, fontsize=FONT_SIZE - 3)
        arrow(ax, (x, y_in + 0.3), (x, y_model - 0.35), color=MUTED, linewidth=1.0)
        if P - 1 <= t < len(tokens) - 1:  # its output predicts the next token, a token of the word
            j = t - (P - 1)
            arrow(ax, (x, y_model + 0.35), (x, y_out - 0.35), color=INK, linewidth=1.2)
            box(ax, (x, y_out), rf"$\log p$(“{word[j]}”)", role="output", width=1.4, height=0.65,
                fontsize=FONT_SIZE - 4)
            label(ax, (x, y_out + 0.55), f"{log_probs[j]:+.2f}", fontsize=FONT_SIZE - 3, color=COLORS["output"][1])
        elif t < P - 1:
            label(ax, (x, y_model + 0.65), "not scored", fontsize=FONT_SIZE - 5, color=MUTED)
    label(ax, (1.4 + step * (P - 1) / 2, 0.3), "prompt", fontsize=FONT_SIZE - 3, color=COLORS["input"][1])
    label(ax, (1.4 + step * (P + (len(word) - 1) / 2), 0.3), f"label word “{' '.join(word)}”", fontsize=FONT_SIZE - 3,
          color=COLORS["gate"][1])
    total = sum(log_probs)
    terms = " + ".join(rf"\log p(\mathrm{{{w}}} \mid \ldots)" for w in word)
    label(ax, (width / 2, height - 0.45), rf"$\log p(\mathrm{{{' '.join(word).replace(' ', '~')}}} \mid$ prompt$)"
          rf" = {terms} = {total:.2f}$", fontsize=FONT_SIZE - 2)
    return figure


def calibration_figure(label_names: Sequence[str] = ("negative", "positive"),
                       probabilities: Sequence[float] = (0.35, 0.65),
                       content_free: Sequence[float] = (0.25, 0.75)) -> Figure:
    """Contextual calibration, computed with `dl4nlp.prompting.calibrate`: the label probabilities of an input (left),
    those of a content-free input such as "N/A" in the same prompt (middle: what the model favours before reading
    anything), and the input's probabilities divided by them and renormalized (right).

    Args: label_names, 2 or 3 labels; probabilities, p(y | x), summing to 1; content_free, p_cf(y), positive,
      summing to 1.
    """
    from dl4nlp.prompting import calibrate

    C = len(label_names)
    if not 2 <= C <= 3 or len(probabilities) != C or len(content_free) != C:
        raise ValueError(f"calibration_figure: give 2 or 3 labels with one probability each, got {C} labels, "
                         f"{len(probabilities)} and {len(content_free)} probabilities")
    p = torch.tensor([list(probabilities)], dtype=torch.float64)  # (1, C)
    cf = torch.tensor(list(content_free), dtype=torch.float64)  # (C,)
    q = calibrate(p, cf)[0]
    panels = [("p(y | x)\nthe input", p[0], "input"), ("p_cf(y)\ncontent-free “N/A”", cf, "key"),
              ("q(y | x) ∝ p(y | x) / p_cf(y)\ncalibrated", q, "gate")]
    bar, bar_height = 1.1, 3.6
    panel_width = C * bar + 2.6
    width, height = 3 * panel_width + 0.4, bar_height + 3.3
    figure, ax = canvas(width, height, inches_per_unit=9.6 / width)
    base = 1.3
    for index, (title, values, role) in enumerate(panels):
        x0 = 0.6 + index * panel_width
        label(ax, (x0 + C * bar / 2, height - 0.75), title, fontsize=FONT_SIZE - 3)
        ax.plot([x0 - 0.15, x0 + C * bar + 0.15], [base, base], color=MUTED, linewidth=0.8)
        predicted = int(values.argmax())
        for c, (name, value) in enumerate(zip(label_names, values.tolist())):
            fill, edge = COLORS[role]
            ax.add_patch(Rectangle((x0 + c * bar + 0.1, base), bar - 0.2, value * bar_height,
                                   facecolor=edge if (c == predicted and index != 1) else fill, edgecolor=edge,
                                   linewidth=1.0, zorder=2))
            label(ax, (x0 + (c + 0.5) * bar, base + value * bar_height + 0.25), f"{value:.2f}",
                  fontsize=FONT_SIZE - 4)
            label(ax, (x0 + (c + 0.5) * bar, base - 0.3), name, fontsize=FONT_SIZE - 4)
        if index < 2:
            label(ax, (x0 + C * bar + 1.3, base + bar_height / 2), "÷" if index == 0 else "=", fontsize=FONT_SIZE + 6)
    before, after = label_names[int(p.argmax())], label_names[int(q.argmax())]
    label(ax, (width / 2, 0.3), f"prediction before: {before} · after calibration: {after}", fontsize=FONT_SIZE - 3,
          color=MUTED)
    return figure
