"""The book's figures: each drawing function returns a complete Figure with the labels the
text refers to, and every figure cell of a book page has a caption, a name and alt text."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
import re
from pathlib import Path

import matplotlib
import nbformat
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import dl4nlp.figures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Words each figure must show (case-insensitive substrings of its texts). A new figure
# function fails `test_every_figure_has_expected_labels` until it is listed here.
EXPECTED_LABELS = {
    "rnn.unit_comparison_figure": ["feedforward", "vanilla RNN", "LSTM", "GRU", "c}_{t-1}"],
    "rnn.unrolled_rnn_figure": ["RNN", "h}_{0}", "x}_{1}", "same weights"],
    "rnn.lstm_cell_figure": ["forget", "add", "output", "candidate", "tanh", "c}_{t-1}", "h}_{t-1}"],
    "rnn.gru_cell_figure": ["reset", "update", "candidate", "tanh", "1−", "h}_{t-1}"],
    "rnn.bidirectional_rnn_figure": ["forward", "backward", "overrightarrow", "overleftarrow", "y}_{1}"],
    "rnn.bidirectional_classifier_figure": ["linear", "softmax", "last word", "first word", "P(positive)"],
    "cnn.convolution_figure": ["sentence", "window: K = 3", "kernel", "feature map (5)", "stride = 1", "film"],
    "attention.attention_flow_figure": ["RNN", "one after the other", "bidirectional", "causal", "y}_{3}",
                                        "h}_{3}", "x}_{5}", "not"],
    "attention.attention_steps_figure": ["q}_{3}", "k}_{1}", "v}_{5}", "W}^Q", "W}^K", "W}^V", "softmax over j",
                                         "alpha_{31}", "score", "y}_{3}", "weighted sum", "query: “was”"],
    "attention.multi_head_figure": ["split_heads", "merge_heads", "W}^O", "head 3", "sqrt{D_h}", "q}_{1}",
                                    "(B, T, D)"],
    "attention.transformer_block_figure": ["post-norm", "pre-norm", "BERT", "GPT-2", "self-attention",
                                           "LayerNorm", "feedforward", "residual", "+"],
    "cnn.feedforward_convolution_figure": ["feedforward layer", "convolutional layer", "same weights", "x}_{1}",
                                           "y_{3}", "K = 3"],
    "cnn.feature_map_figure": ["window (step)", "feature map", "y_{5}", "(7 − 3) // 1 + 1 = 5", "film",
                               "every word is seen"],
    "cnn.pooling_figure": ["feature map", "max", "average", "over time", "windows of 2", "2.1", "0.78"],
    "bert.bidirectional_context_figure": ["left-to-right", "GPT", "masked LM", "BERT", "[MASK]", "predict",
                                          "not yet read", "x_{6}"],
    "bert.input_representation_figure": ["Input", "Token", "Segment", "Position", "[CLS]", "[SEP]", "##ing",
                                         "E_A", "E_B", "E_{10}", "LayerNorm", "sentence B"],
    "bert.pretraining_tasks_figure": ["NSP", "IsNext / NotNext", "Mask LM", "[MASK]", "cute", "[CLS]", "sentence A",
                                      "bidirectional", "no loss"],
    "gpt.autoregressive_loop_figure": ["step 1", "GPT", "append", "every token so far", "chosen", "store"],
    "gpt.causal_mask_figure": ["query i", "key j", "j ≤ i", "cached keys (5)", "new", "store"],
    "gpt.decoder_stack_figure": ["causal self-attention", "LayerNorm", "feedforward", "residual", "× L",
                                 "LM head", "tied", "E_word[x_t] + E_pos[t]", "softmax", "x_{t+1}"],
    "gpt.kv_cache_figure": ["without the cache", "with the cache", "step 5", "computed: 20", "computed: 6"],
    "gpt.decoding_methods_figure": ["greedy", "temperature = 2", "top-k, k = 3", "top-p, p = 0.8", "1 of 8 kept",
                                    "3 of 8 kept", "store"],
    "finetune.paradigm_figure": ["pretrain", "add a task head", "finetune", "masked LM", "linear D → 2", "layer 6",
                                 "embeddings", "frozen", "trained", "labelled examples", "unlabelled text"],
    "finetune.sarcasm_classifier_figure": ["[CLS]", "parking", "pretrained encoder", "h_{0}", "mean", "task head",
                                           "P(sarcastic)"],
    "finetune.data_efficiency_figure": ["labelled training examples", "accuracy", "pretrained", "from scratch",
                                        "guessing", "mean ± sd", "256"],
    "finetune.confusion_matrix_figure": ["predicted class", "true class", "TP", "FN", "sarcastic", "accuracy"],
    "prompting.prompting_pipeline_figure": ["input x", "template", "[X]", "[Z]", "prompt:", "language model",
                                            "answer space", "verbalizer", "prediction", "positive"],
    "prompting.few_shot_prompt_figure": ["k = 2 demonstrations", "instruction", "demonstration 1", "query",
                                         "label word", "NOT SARCASTIC", "Label: ___"],
    "prompting.chain_rule_scoring_figure": ["prompt", "label word “five stars”", "not scored", "five", "stars",
                                            "-1.10", "one forward pass"],
    "prompting.calibration_figure": ["p(y | x)", "p_cf(y)", "N/A", "calibrated", "÷", "0.62",
                                     "after calibration: negative"],
    "reproducibility.random_draws_figure": ["one global generator", "with a print", "every later draw moves",
                                            "seed + 1", "seed + 2", "nothing moves", "weights", "batch order",
                                            "dropout", "d_{4}"],
    "choosing.eras_figure": ["rule-based", "statistical", "neural\nend-to-end", "pretrain and\nfinetune",
                             "pretrain and\nprompt", "VADER", "naive\nBayes", "labelled data", "you can read",
                             "performance and ability to generalize", "control and interpretability"],
    "choosing.learning_curve_figure": ["labelled training examples", "training accuracy", "validation accuracy",
                                       "overfitting", "guessing", "mean ± sd over 3 seeds", "0.98", "2,000"],
    "choosing.word_evidence_figure": ["“not”", "“good”", "VADER", "logistic regression", "→ positive",
                                      "negative ←", "evidence for positive"],
    "cnn.text_cnn_figure": ["sentence", "K = 2", "K = 3", "max over time", "pooled vector", "linear", "softmax",
                            "P(positive)"],
}
MIN_ARTISTS = 15  # patches + texts: a figure with fewer has lost its content


def _chapter_modules() -> list[str]:
    return [name for _, name, _ in pkgutil.iter_modules(dl4nlp.figures.__path__)]


def _figure_functions() -> dict[str, object]:
    functions = {}
    for module_name in _chapter_modules():
        module = importlib.import_module(f"dl4nlp.figures.{module_name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and not name.startswith("_"):
                functions[f"{module_name}.{name}"] = function
    return functions


FUNCTIONS = _figure_functions()


def _texts(figure: Figure) -> list[str]:
    return [artist.get_text() for artist in figure.findobj(Text) if artist.get_text()]


def test_figure_functions_are_named_apart_from_the_chapters_functions() -> None:
    """A figure function ends with `_figure` and never shares a name with a function of its chapter
    module: a student who pastes the book's `lstm_cell_figure()` call must not look like calling
    the reference `lstm_cell`."""
    for module_name in _chapter_modules():
        chapter = importlib.import_module(f"dl4nlp.{module_name}")
        chapter_functions = {name for name, function in inspect.getmembers(chapter, callable)
                             if not name.startswith("_") and getattr(function, "__module__", None) == chapter.__name__}
        assert chapter_functions, f"dl4nlp.{module_name} defines no public functions"
        figures = [name.split(".", 1)[1] for name in FUNCTIONS if name.startswith(f"{module_name}.")]
        assert figures, f"dl4nlp.figures.{module_name} defines no figure functions"
        for name in figures:
            assert name.endswith("_figure"), f"dl4nlp.figures.{module_name}.{name}: name it <thing>_figure"
            assert name not in chapter_functions, \
                f"dl4nlp.figures.{module_name}.{name} shadows dl4nlp.{module_name}.{name}"


def test_there_are_figures() -> None:
    assert "rnn.lstm_cell_figure" in FUNCTIONS and len(FUNCTIONS) >= 5


def test_every_figure_has_expected_labels() -> None:
    missing = sorted(set(FUNCTIONS) - set(EXPECTED_LABELS))
    assert not missing, f"list the labels of these figures in EXPECTED_LABELS: {missing}"
    stale = sorted(set(EXPECTED_LABELS) - set(FUNCTIONS))
    assert not stale, f"EXPECTED_LABELS names figures that no longer exist: {stale}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_figure_is_complete(name: str) -> None:
    open_before = plt.get_fignums()
    figure = FUNCTIONS[name]()
    try:
        assert isinstance(figure, Figure), f"{name} should return a matplotlib Figure, got {type(figure)}"
        assert plt.get_fignums() == open_before, f"{name} left a pyplot figure open (build it with Figure())"
        (ax,) = figure.axes
        artists = len(ax.patches) + len(_texts(figure))
        assert artists >= MIN_ARTISTS, f"{name} draws only {artists} patches and texts"
        texts = " | ".join(_texts(figure)).lower()
        for word in EXPECTED_LABELS.get(name, []):
            assert word.lower() in texts, f"{name} should show {word!r}; its texts are: {texts}"
        width, height = figure.get_size_inches()
        assert 5 <= width <= 10 and height <= 7, f"{name} is {width:.1f} x {height:.1f} in, too big for a page"
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")
    finally:
        plt.close(figure)  # a no-op for a Figure() outside pyplot; closes it if a function used pyplot
    assert plt.get_fignums() == open_before


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_figure_functions_are_deterministic(name: str) -> None:
    """Same call, same drawing: no random layout that would change the book between builds."""
    first, second = FUNCTIONS[name](), FUNCTIONS[name]()
    assert _texts(first) == _texts(second)
    assert [p.get_extents().bounds for p in first.axes[0].patches] == \
        [p.get_extents().bounds for p in second.axes[0].patches]


@pytest.mark.parametrize("kernel_size, stride", [(1, 1), (3, 1), (2, 2), (3, 3), (7, 1)])
def test_convolution_figure_draws_one_feature_per_window_of_conv1d(kernel_size: int, stride: int) -> None:
    """The feature map drawn has as many entries as `dl4nlp.cnn.conv1d` computes, and only valid windows exist."""
    import torch

    from dl4nlp.cnn import conv1d
    from dl4nlp.figures.cnn import convolution_figure

    words = ("the", "film", "was", "not", "bad", "at", "all")
    windows = conv1d(torch.zeros(1, len(words), 4), torch.zeros(1, 4, kernel_size), stride=stride).shape[1]
    figure = convolution_figure(words, kernel_size, stride, position=windows - 1)
    features = [text for text in _texts(figure) if re.fullmatch(r"\$y_\{\d+\}\$", text)]
    assert features == [f"$y_{{{t}}}$" for t in range(1, windows + 1)]
    assert f"feature map ({windows})" in _texts(figure)
    with pytest.raises(ValueError, match="position must be between 0 and"):
        convolution_figure(words, kernel_size, stride, position=windows)
    with pytest.raises(ValueError, match="kernel_size"):
        convolution_figure(words, len(words) + 1)


@pytest.mark.parametrize("T, position", [(2, 1), (5, 3), (7, 7)])
def test_attention_flow_figure_draws_the_masks_of_dl4nlp_attention(T: int, position: int) -> None:
    """The causal panel connects y_i to exactly the x_j that `causal_mask` lets it attend to; the
    bidirectional panel connects every pair; the connections into y_position are the dark ones."""
    import torch

    from dl4nlp.attention import causal_mask
    from dl4nlp.figures.attention import FAINT, attention_flow_figure

    words = [f"w{t}" for t in range(T)]
    figure = attention_flow_figure(words, position)
    drawn = {patch.get_gid(): patch for patch in figure.axes[0].patches
             if (patch.get_gid() or "").startswith("attend-")}
    pairs = {kind: {tuple(int(n) for n in gid.split("-")[2:]) for gid in drawn if gid.startswith(f"attend-{kind}-")}
             for kind in ("bidirectional", "causal")}
    allowed = {(i + 1, j + 1) for i, j in torch.nonzero(causal_mask(T)).tolist()}
    assert pairs["causal"] == allowed
    assert pairs["bidirectional"] == {(i, j) for i in range(1, T + 1) for j in range(1, T + 1)}
    for gid, patch in drawn.items():
        into_position = int(gid.split("-")[2]) == position
        assert (matplotlib.colors.to_hex(patch.get_edgecolor()) != FAINT) == into_position, gid
    with pytest.raises(ValueError, match="position must be between 1 and"):
        attention_flow_figure(words, T + 1)


@pytest.mark.parametrize("kernel_size, stride", [(1, 1), (3, 1), (2, 2), (2, 3), (3, 3), (7, 1), (1, 4)])
def test_feature_map_figure_draws_the_windows_of_conv1d(kernel_size: int, stride: int) -> None:
    """One feature per window that `conv1d` computes, with its value; the words no window covers are named."""
    import torch

    from dl4nlp.cnn import conv1d
    from dl4nlp.figures.cnn import feature_map_figure

    words = ("the", "film", "was", "not", "bad", "at", "all")
    features = conv1d(torch.arange(7.0).view(1, 7, 1) / 10, torch.ones(1, 1, kernel_size), stride=stride)[0, :, 0]
    figure = feature_map_figure(words, kernel_size, stride, features.tolist())
    texts = _texts(figure)
    pairs = [(texts[i], texts[i + 1]) for i in range(len(texts) - 1)]  # each window's number, then its feature
    assert all((str(t + 1), f"{value:.2g}") in pairs for t, value in enumerate(features.tolist()))
    assert str(len(features) + 1) not in texts, "a window too many"
    assert texts.count("max") == 1
    covered = {t * stride + k for t in range(len(features)) for k in range(kernel_size)}
    unseen = [word for t, word in enumerate(words) if t not in covered]
    note = next(text for text in texts if text.startswith(("words no window sees", "every word is seen")))
    assert note == ("words no window sees: " + ", ".join(f"“{word}”" for word in unseen) if unseen
                    else "every word is seen by some window")
    with pytest.raises(ValueError, match="windows but"):
        feature_map_figure(words, kernel_size, stride, [0.0] * (len(features) + 1))


@pytest.mark.parametrize("a, b", [(["my", "dog", "is", "cute"], ["he", "likes", "play", "##ing"]), (["hi"], ["you"]),
                                  (["a", "b", "c", "d"], [])])
def test_input_representation_figure_draws_the_segments_of_encode_pair(a, b) -> None:
    """Segment A up to the first [SEP] and B after it, as `encode_pair`'s token_type_ids; one position each."""
    from dl4nlp.bert import encode_pair
    from dl4nlp.figures.bert import input_representation_figure

    vocabulary = {token: i for i, token in enumerate(["[CLS]", "[SEP]", *a, *b])}
    input_ids, token_type_ids = encode_pair([vocabulary[t] for t in a], [vocabulary[t] for t in b],
                                            vocabulary["[CLS]"], vocabulary["[SEP]"])
    tokens = ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
    texts = _texts(input_representation_figure(tokens))
    assert [text for text in texts if text in ("$E_A$", "$E_B$")] == ["$E_A$" if s == 0 else "$E_B$"
                                                                        for s in token_type_ids]
    assert [text for text in texts if re.fullmatch(r"\$E_\{\d+\}\$", text)] == \
        [f"$E_{{{t}}}$" for t in range(len(input_ids))]
    with pytest.raises(ValueError, match="between 3 and 12"):
        input_representation_figure(["[CLS]"] * 13)


def test_pretraining_tasks_figure_predicts_at_every_mask() -> None:
    from dl4nlp.figures.bert import pretraining_tasks_figure

    tokens = ["[CLS]", "[MASK]", "dog", "[SEP]", "it", "[MASK]", "[MASK]", "[SEP]"]
    texts = _texts(pretraining_tasks_figure(tokens, ["the", "barks", "loud"]))
    assert [text for text in texts if text.startswith("Mask LM")] == ["Mask LM\n“the”", "Mask LM\n“barks”",
                                                                       "Mask LM\n“loud”"]
    with pytest.raises(ValueError, match="3 \\[MASK\\] tokens but 2 originals"):
        pretraining_tasks_figure(tokens, ["the", "barks"])


@pytest.mark.parametrize("T, past_length", [(2, 1), (6, 5), (8, 3)])
def test_causal_mask_figure_draws_decoder_mask(T: int, past_length: int) -> None:
    """The cells drawn allowed are exactly those `dl4nlp.gpt.decoder_mask` allows, with and without a cache."""
    from dl4nlp.figures.gpt import causal_mask_figure
    from dl4nlp.gpt import decoder_mask

    figure = causal_mask_figure([f"w{t}" for t in range(T)], past_length)
    cells = [patch.get_gid().split("-") for patch in figure.axes[0].patches
             if (patch.get_gid() or "").startswith("cell-")]
    whole = {(int(i), int(j)) for _, kind, i, j, state in cells if kind == "whole" and state == "allowed"}
    assert whole == {tuple(pair) for pair in torch_nonzero(decoder_mask(T))}
    assert len([cell for cell in cells if cell[1] == "whole"]) == T * T
    cached = [(int(j), state) for _, kind, _, j, state in cells if kind == "cached"]
    assert cached == [(j, "allowed" if allowed else "blocked") for j, allowed in
                      enumerate(decoder_mask(1, past_length)[0].tolist())]
    with pytest.raises(ValueError, match="past_length must be between 1 and"):
        causal_mask_figure([f"w{t}" for t in range(T)], T)


def test_decoding_methods_figure_keeps_what_the_filters_keep() -> None:
    """Each panel says how many tokens greedy, temperature, top-k and top-p keep, as `dl4nlp.gpt` computes it."""
    import torch

    from dl4nlp.figures.gpt import decoding_methods_figure
    from dl4nlp.gpt import top_k_filter, top_p_filter

    logits = (3.0, 2.5, 0.1, 0.0, -1.0)
    texts = _texts(decoding_methods_figure(("a", "b", "c", "d", "e"), logits, 0.5, 2, 0.9))
    row = torch.tensor([logits])
    kept_p = int(torch.isfinite(top_p_filter(row, 0.9)).sum())
    kept_k = int(torch.isfinite(top_k_filter(row, 2)).sum())
    assert [text for text in texts if text.endswith("kept")] == ["1 of 5 kept", "5 of 5 kept", f"{kept_k} of 5 kept",
                                                                 f"{kept_p} of 5 kept"]
    with pytest.raises(ValueError, match="one logit each"):
        decoding_methods_figure(("a", "b", "c"), (1.0, 2.0))


@pytest.mark.parametrize("probabilities, content_free", [((0.35, 0.65), (0.25, 0.75)), ((0.5, 0.5), (0.5, 0.5)),
                                                        ((0.2, 0.3, 0.5), (0.6, 0.3, 0.1))])
def test_calibration_figure_draws_what_calibrate_computes(probabilities, content_free) -> None:
    """The right panel's numbers are `dl4nlp.prompting.calibrate`'s, and the prediction named is their argmax."""
    import torch

    from dl4nlp.figures.prompting import calibration_figure
    from dl4nlp.prompting import calibrate

    names = ("negative", "positive", "neutral")[:len(probabilities)]
    texts = _texts(calibration_figure(names, probabilities, content_free))
    numbers = [text for text in texts if re.fullmatch(r"\d\.\d\d", text)]
    q = calibrate(torch.tensor([probabilities]), torch.tensor(content_free))[0]
    assert numbers[-len(names):] == [f"{value:.2f}" for value in q.tolist()]
    assert texts[-1].endswith(f"after calibration: {names[int(q.argmax())]}")
    with pytest.raises(ValueError, match="one probability each"):
        calibration_figure(names, probabilities[:-1], content_free)


def test_few_shot_prompt_figure_shows_the_lectures_prompt() -> None:
    """Each row is a part of `lecture_prompt()`, in its order (long inputs shortened with …)."""
    from dl4nlp.figures.prompting import few_shot_prompt_figure
    from dl4nlp.prompting import lecture_prompt

    texts = _texts(few_shot_prompt_figure())
    rows = [text for text in texts if text.startswith(("Here", "Data:"))]
    parts = lecture_prompt().split("\n\n")
    assert len(rows) == len(parts) == 5
    for row, part in zip(rows, parts):
        assert part.startswith(row.split("…")[0].removesuffix(" ___")), (row, part)
    assert "k = 0 demonstrations: zero-shot" in _texts(few_shot_prompt_figure(demonstrations=()))


def torch_nonzero(mask) -> list[list[int]]:
    import torch

    return torch.nonzero(mask).tolist()


@pytest.mark.parametrize("trainable_layers, frozen", [(0, 7), (2, 5), (6, 1), (None, 0)])
def test_paradigm_figure_greys_what_freeze_freezes(trainable_layers, frozen) -> None:
    """Panel 3 colours the embeddings and the bottom L - k layers as frozen, as `freeze(model, k)` does."""
    from matplotlib.patches import FancyBboxPatch

    from dl4nlp.figures import COLORS
    from dl4nlp.figures.finetune import paradigm_figure

    figure = paradigm_figure(6, trainable_layers)
    grey = COLORS["norm"][1].lower()
    boxes = [p for p in figure.axes[0].patches if isinstance(p, FancyBboxPatch)
             and matplotlib.colors.to_hex(p.get_edgecolor()) == grey]
    assert len(boxes) == frozen + 1  # the frozen parts, and the legend's swatch
    assert f"frozen:\n{frozen} of 7" in _texts(figure)
    with pytest.raises(ValueError, match="between 0 and 6"):
        paradigm_figure(6, 7)


def test_data_efficiency_figure_labels_the_means() -> None:
    from dl4nlp.figures.finetune import data_efficiency_figure

    texts = _texts(data_efficiency_figure([8, 32], [[0.6, 0.7, 0.8], [0.9, 0.9, 0.93]], [[0.5, 0.5, 0.53], [0.6, 0.62, 0.61]]))
    assert {"0.70", "0.91", "0.51", "0.61"} <= set(texts)
    assert "data efficiency: mean ± sd over 3 seeds" in texts
    with pytest.raises(ValueError, match="one list of values per size"):
        data_efficiency_figure([8, 32], [[0.6]], [[0.5], [0.6]])


def test_learning_curve_figure_labels_the_validation_means_and_the_baselines() -> None:
    from dl4nlp.figures.choosing import learning_curve_figure

    texts = _texts(learning_curve_figure([10, 40], [[1.0, 1.0], [0.9, 1.0]], [[0.5, 0.6], [0.8, 0.9]],
                                         baselines={"naive Bayes": [[0.7, 0.71], [0.72, 0.74]]}, model="CNN"))
    assert {"0.55", "0.85", "0.70", "0.73"} <= set(texts)
    assert {"CNN: training accuracy", "naive Bayes: validation accuracy", "mean ± sd over 2 seeds"} <= \
        {text.replace("learning curve: ", "") for text in texts}
    with pytest.raises(ValueError, match="one list of values per size"):
        learning_curve_figure([10, 40], [[1.0]], [[0.5], [0.6]])


def test_word_evidence_figure_draws_one_bar_per_word_and_model() -> None:
    from matplotlib.patches import Rectangle

    from dl4nlp.figures.choosing import word_evidence_figure

    figure = word_evidence_figure(["a", "dull", "film"], [0.0, -1.5, 0.0], [0.1, -0.9, 0.2])
    bars = [p for p in figure.axes[0].patches if isinstance(p, Rectangle)]
    assert sorted(round(bar.get_width(), 6) for bar in bars) == sorted([0.0, -1.5, 0.0, 0.1, -0.9, 0.2])
    ticks = dict(zip([t.get_text() for t in figure.axes[0].get_yticklabels()], figure.axes[0].get_yticks()))
    assert sorted(ticks, key=ticks.get, reverse=True) == ["“a”", "“dull”", "“film”"]  # the first word on top
    with pytest.raises(ValueError, match="one lexicon score and one weight per word"):
        word_evidence_figure(["a"], [0.0, 1.0], [0.0])


def test_confusion_matrix_figure_puts_true_classes_in_rows() -> None:
    """Row = true class, column = predicted, as `classification_metrics`: FN is a sarcastic sentence missed."""
    import torch

    from dl4nlp.figures.finetune import confusion_matrix_figure
    from dl4nlp.finetune import classification_metrics

    confusion = classification_metrics(torch.tensor([0, 0, 1, 0, 1, 1, 1]), torch.tensor([0, 1, 1, 1, 1, 0, 1])).confusion
    texts = _texts(confusion_matrix_figure(confusion.tolist()))
    assert "TN\n1\n50% of row" in texts and "FP\n1\n50% of row" in texts
    assert "FN\n2\n40% of row" in texts and "TP\n3\n60% of row" in texts
    assert "7 examples, accuracy 57.1%" in texts
    with pytest.raises(ValueError, match="3 classes but 2 labels"):
        confusion_matrix_figure([[1, 0, 0], [0, 1, 0], [0, 0, 1]])


# --- figure cells of the book's pages ---------------------------------------------------

BOOK_NOTEBOOKS = sorted((ROOT / "book").glob("**/*.ipynb"))
NUMREF = re.compile(r"\{numref\}`(?:[^`<]*<)?([\w-]+)>?`")
FIGURE_CALL = re.compile(r"figures(?:\.\w+)+\(")  # rnn_figures.lstm_cell_figure(), dl4nlp.figures.rnn.gru_cell_figure()


def _figure_cells(path: Path) -> list[nbformat.NotebookNode]:
    """Code cells that draw a course figure or carry a figure caption."""
    notebook = nbformat.read(path, as_version=4)
    return [cell for cell in notebook.cells if cell.cell_type == "code"
            and ("figure" in cell.metadata.get("mystnb", {}) or FIGURE_CALL.search(cell.source))]


def test_book_has_notebook_pages() -> None:
    assert BOOK_NOTEBOOKS, "no notebooks under book/"


@pytest.mark.parametrize("path", BOOK_NOTEBOOKS, ids=lambda path: path.name)
def test_figure_cells_have_caption_name_and_alt_text(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    referenced = set(NUMREF.findall(text))
    for cell in _figure_cells(path):
        where = f"{path.name}, cell {cell.get('id', '?')} ({cell.source.strip()[:40]!r})"
        if FIGURE_CALL.search(cell.source):  # the drawing code is not the lesson: hide it
            assert "remove-input" in cell.metadata.get("tags", []), f"{where}: tag it remove-input"
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        image = cell.metadata.get("mystnb", {}).get("image", {})
        assert len(figure.get("caption", "").strip()) >= 20, f"{where}: mystnb.figure.caption is missing or short"
        assert re.fullmatch(r"fig-[a-z0-9-]+", figure.get("name", "")), f"{where}: mystnb.figure.name fig-..."
        assert len(image.get("alt", "").strip()) >= 40, f"{where}: mystnb.image.alt should describe the figure"
        assert figure["name"] in referenced, f"{where}: no {{numref}}`{figure['name']}` in the text"


def test_figure_names_are_unique_across_the_book() -> None:
    names = [cell.metadata["mystnb"]["figure"]["name"] for path in BOOK_NOTEBOOKS for cell in _figure_cells(path)
             if "name" in cell.metadata.get("mystnb", {}).get("figure", {})]
    assert len(names) == len(set(names)), f"figure names repeat: {sorted(names)}"
