"""Exercises of the CNN assignment: convolution over time twice (window by window, then
vectorised), pooling over time that knows about padding, and Kim's sentence classifier.

Every case draws its values from the generator. The convolutions get strides above 1,
kernels as long as the sentence, and sentence matrices that are square (T = D) next to ones
that are not: a convolution that slides along the word vectors instead of along the
sentence gives wrong numbers on the square ones and fails on the others. The pooling cases
put values at padded positions that would win the max (or move the mean), and features that
are all negative, so that padding filled with zeros wins too. The classifier gets
convolutions built on torch's own kernel, a dropout with a fixed mask (so that leaving it
out, or applying it in the wrong place, shows), and, while it runs, the notebook's
`max_pool_over_time` is the grader's own (`Part.given`): a bug in one part never costs
another its points.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.exercises import Assignment, Case, Part, draw_lengths, normal

# --- what the classifier's cases are built from ---------------------------------------------


class TorchConv(nn.Module):
    """A convolution over time on torch's kernel with the interface of `dl4nlp.cnn.Conv1d`:
    weight (C, D, K), bias (C,), `kernel_size` and `stride`; x (B, T, D) -> (B, T_out, C)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        scale = 1 / math.sqrt(in_channels * kernel_size)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, generator=generator) * scale)
        self.bias = nn.Parameter(torch.rand(out_channels, generator=generator) * 2 - 1)  # some filters below zero

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x.transpose(1, 2), self.weight, self.bias, self.stride).transpose(1, 2)  # (B, T_out, C)


class FixedDropout(nn.Module):
    """Dropout with a mask fixed when the case is drawn (0 or 1 / (1 - p) per feature): the
    same on every call, so that where the dropout is applied changes the result."""

    def __init__(self, features: int, p: float, generator: torch.Generator) -> None:
        super().__init__()
        keep = (torch.rand(features, generator=generator) >= p).float()
        keep[0] = 0.0  # at least one feature dropped
        self.register_buffer("mask", keep / (1 - p))  # (F,)

    def forward(self, features: Tensor) -> Tensor:
        if features.shape[-1] != self.mask.shape[0]:
            raise ValueError(f"dropout: expected the pooled features (B, {self.mask.shape[0]}), got "
                             f"{tuple(features.shape)}")
        return features * self.mask  # (B, F)


def max_pool_over_time(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The grader's own copy of `dl4nlp.cnn.max_pool_over_time`: what `classify` calls while graded."""
    if lengths is not None:
        valid = torch.arange(x.shape[1], device=x.device) < lengths.to(x.device)[:, None]  # (B, T)
        x = x.masked_fill(~valid[..., None], float("-inf"))  # (B, T, C)
    return x.max(dim=1).values  # (B, C)


# --- drawing -----------------------------------------------------------------------------


CONV_SIZES = (  # B, T, D, C, K, stride, bias
    (2, 5, 5, 3, 2, 2, True),  # square: sliding along D gives numbers, wrong ones
    (3, 7, 4, 5, 3, 1, True),
    (2, 9, 3, 4, 2, 3, False),  # stride 3: 3 windows, 8 if the stride is ignored
    (1, 4, 4, 2, 4, 1, True),  # K = T: one window
    (4, 6, 6, 2, 3, 2, True),  # square again
    (1, 1, 3, 2, 1, 1, True),  # one word, K = 1
)


def conv_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, D, C, K, stride, bias in CONV_SIZES:
        x = normal(generator, B, T, D)
        weight = normal(generator, C, D, K, scale=1 / math.sqrt(D * K))
        b = normal(generator, C) if bias else None
        drawn.append(Case((x, weight, b, stride), f"batch {B}, T={T}, D={D}, C={C} filters, K={K}, stride {stride}"
                                                  + ("" if bias else ", no bias")))
    return drawn


def pool_cases(generator: torch.Generator) -> list[Case]:
    """Padded batches whose padding holds values that would win the max (or move the mean)."""
    drawn = []
    for B, T, C, padded, negative in ((3, 5, 4, True, False), (2, 4, 3, True, True), (1, 3, 2, False, False),
                                      (4, 6, 5, True, False), (3, 3, 6, True, True)):
        x = normal(generator, B, T, C)
        if negative:
            x = -x.abs() - 0.1  # every real feature below zero: a padded zero would win the max
        lengths = draw_lengths(generator, B, T) if padded else None
        if padded:
            padding = torch.arange(T) >= lengths[:, None]  # (B, T)
            loud = normal(generator, B, T, C) + (0 if negative else 10)
            x = torch.where(padding[..., None], loud, x)  # (B, T, C)
        drawn.append(Case((x, lengths), f"batch {B}, T={T}, C={C}, "
                                        + (f"lengths {lengths.tolist()}" if padded else "no padding")
                                        + (", every feature negative" if negative else "")))
    return drawn


def classify_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    V = 20
    for B, T, D, C, kernels, stride, classes, shortest in ((3, 6, 5, 3, (2, 3), 1, 2, None),
                                                           (2, 3, 4, 2, (2, 4), 1, 3, 1),  # T < the longest kernel
                                                           (4, 7, 3, 4, (1, 2, 4), 1, 2, 2),
                                                           (1, 5, 4, 3, (3,), 1, 2, None),
                                                           (3, 8, 4, 2, (2, 3), 2, 3, 3)):  # stride 2
        lengths = draw_lengths(generator, B, T)
        if shortest is not None:
            lengths[-1] = shortest  # shorter than the longest kernel
        tokens = torch.randint(1, V, (B, T), generator=generator)
        tokens[torch.arange(T) >= lengths[:, None]] = 0  # <pad>
        embedding = nn.Embedding(V, D, padding_idx=0)
        with torch.no_grad():
            embedding.weight.normal_(generator=generator)
            embedding.weight[0] = 0
        convs = nn.ModuleList(TorchConv(D, C, K, stride, generator) for K in kernels)
        features = len(kernels) * C
        head = nn.Linear(features, classes)
        with torch.no_grad():
            head.weight.uniform_(-0.5, 0.5, generator=generator)
            head.bias.uniform_(-0.5, 0.5, generator=generator)
        drawn.append(Case((tokens, lengths, embedding, convs, FixedDropout(features, 0.25, generator), head),
                          f"kernels {list(kernels)}, {C} filters each, stride {stride}, batch {B}, T={T}, "
                          f"lengths {lengths.tolist()}"))
    drawn.append(windows_over_padding_case(generator, V))
    return drawn


def windows_over_padding_case(generator: torch.Generator, V: int) -> Case:
    """Every word vector below zero, every filter weight above zero and a large bias: each real
    word lowers a window's score, so a window that runs into the padding scores higher than
    every window inside the sentence. Pooling that ignores the lengths always changes the answer."""
    B, T, D, C, kernels, classes = 3, 8, 3, 3, (2, 3), 2
    lengths = draw_lengths(generator, B, T)
    lengths[1] = 4  # one sentence shorter than the batch and longer than every kernel
    tokens = torch.randint(1, V, (B, T), generator=generator)
    tokens[torch.arange(T) >= lengths[:, None]] = 0  # <pad>
    embedding = nn.Embedding(V, D, padding_idx=0)
    convs = nn.ModuleList(TorchConv(D, C, K, 1, generator) for K in kernels)
    head = nn.Linear(len(kernels) * C, classes)
    with torch.no_grad():
        embedding.weight.copy_(-normal(generator, V, D).abs() - 0.2)
        embedding.weight[0] = 0
        for conv in convs:
            conv.weight.abs_().add_(0.1)
            conv.bias.uniform_(8, 10, generator=generator)  # every window above zero: the ReLU keeps them all
        head.weight.uniform_(-0.5, 0.5, generator=generator)
        head.bias.uniform_(-0.5, 0.5, generator=generator)
    return Case((tokens, lengths, embedding, convs, FixedDropout(len(kernels) * C, 0.25, generator), head),
                f"kernels {list(kernels)}, {C} filters each, batch {B}, T={T}, lengths {lengths.tolist()}, "
                f"every word vector negative and every filter weight positive (a window over the padding "
                f"scores highest)")


# --- typical bugs: known-wrong variants the feedback names -----------------------------------
# Each is self-contained (torch and `F`, and for `classify` the notebook's `max_pool_over_time`,
# which the grader binds to its own), so that the tests can hand one in as a student's answer.


def conv1d_time_as_width(x, weight, bias=None, stride=1):
    """Reads x as torch's (B, D, T): the window slides along the word vectors, not the sentence."""
    K = weight.shape[2]
    windows = x.unfold(2, K, stride)  # (B, T, D_out, K): windows of the vector entries
    y = torch.einsum("bdtk,cdk->btc", windows, weight)
    return y if bias is None else y + bias


def conv1d_last_window_left_out(x, weight, bias=None, stride=1):
    B, T, D = x.shape
    C, _, K = weight.shape
    filters = weight.transpose(1, 2).reshape(C, K * D)
    outputs = [x[:, start:start + K].reshape(B, K * D) @ filters.T for start in range(0, T - K, stride)]
    y = torch.stack(outputs, dim=1)
    return y if bias is None else y + bias


def conv1d_window_count_without_plus_one(x, weight, bias=None, stride=1):
    B, T, D = x.shape
    C, _, K = weight.shape
    filters = weight.transpose(1, 2).reshape(C, K * D)
    outputs = [x[:, t * stride:t * stride + K].reshape(B, K * D) @ filters.T for t in range((T - K) // stride)]
    y = torch.stack(outputs, dim=1)
    return y if bias is None else y + bias


def conv1d_stride_ignored(x, weight, bias=None, stride=1):
    windows = x.unfold(1, weight.shape[2], 1)  # (B, T - K + 1, D, K): every start, whatever the stride
    y = torch.einsum("btdk,cdk->btc", windows, weight)
    return y if bias is None else y + bias


def conv1d_kernel_read_word_by_word(x, weight, bias=None, stride=1):
    """Flattens each window word by word (K, D) but each filter channel by channel (D, K)."""
    B, T, D = x.shape
    C, _, K = weight.shape
    filters = weight.reshape(C, D * K)
    outputs = [x[:, start:start + K].reshape(B, K * D) @ filters.T for start in range(0, T - K + 1, stride)]
    y = torch.stack(outputs, dim=1)
    return y if bias is None else y + bias


def max_pool_lengths_ignored(x, lengths=None):
    return x.max(dim=1).values


def max_pool_padding_as_zero(x, lengths=None):
    if lengths is not None:
        valid = torch.arange(x.shape[1]) < lengths[:, None]
        x = x * valid[..., None]
    return x.max(dim=1).values


def max_pool_over_features(x, lengths=None):
    return x.max(dim=2).values


def avg_pool_lengths_ignored(x, lengths=None):
    return x.mean(dim=1)


def avg_pool_divided_by_T(x, lengths=None):
    if lengths is not None:
        valid = torch.arange(x.shape[1]) < lengths[:, None]
        x = x * valid[..., None]
    return x.sum(dim=1) / x.shape[1]


def avg_pool_over_features(x, lengths=None):
    if lengths is None:
        return x.mean(dim=2)
    valid = (torch.arange(x.shape[1]) < lengths[:, None])[..., None]
    return (x * valid).sum(dim=2) / lengths[:, None]


def classify_lengths_ignored(tokens, lengths, embedding, convs, dropout, head):
    B, T = tokens.shape
    x = embedding(tokens) * (torch.arange(T) < lengths[:, None])[..., None]
    x = F.pad(x, (0, 0, 0, max(0, max(conv.kernel_size for conv in convs) - T)))
    return head(dropout(torch.cat([torch.relu(conv(x)).max(dim=1).values for conv in convs], dim=-1)))


def classify_without_relu(tokens, lengths, embedding, convs, dropout, head):
    B, T = tokens.shape
    longest = max(conv.kernel_size for conv in convs)
    x = embedding(tokens) * (torch.arange(T) < lengths[:, None])[..., None]
    x, lengths = F.pad(x, (0, 0, 0, max(0, longest - T))), lengths.clamp(min=longest)
    pooled = [max_pool_over_time(conv(x), (lengths - conv.kernel_size) // conv.stride + 1) for conv in convs]
    return head(dropout(torch.cat(pooled, dim=-1)))


def classify_average_pooling(tokens, lengths, embedding, convs, dropout, head):
    B, T = tokens.shape
    longest = max(conv.kernel_size for conv in convs)
    x = embedding(tokens) * (torch.arange(T) < lengths[:, None])[..., None]
    x, lengths = F.pad(x, (0, 0, 0, max(0, longest - T))), lengths.clamp(min=longest)
    pooled = []
    for conv in convs:
        features, valid = torch.relu(conv(x)), (lengths - conv.kernel_size) // conv.stride + 1
        keep = (torch.arange(features.shape[1]) < valid[:, None])[..., None]
        pooled.append((features * keep).sum(dim=1) / valid[:, None])
    return head(dropout(torch.cat(pooled, dim=-1)))


def classify_without_dropout(tokens, lengths, embedding, convs, dropout, head):
    B, T = tokens.shape
    longest = max(conv.kernel_size for conv in convs)
    x = embedding(tokens) * (torch.arange(T) < lengths[:, None])[..., None]
    x, lengths = F.pad(x, (0, 0, 0, max(0, longest - T))), lengths.clamp(min=longest)
    pooled = [max_pool_over_time(torch.relu(conv(x)), (lengths - conv.kernel_size) // conv.stride + 1)
              for conv in convs]
    return head(torch.cat(pooled, dim=-1))


# Library calls that would do a part's work in one line (the grader also refuses torch's private ops).
_PRIVATE = ("torch._VF", "torch._C", "torch.ops")
_CONVOLUTIONS = ("torch.nn.functional.conv1d", "torch.nn.functional.conv2d", "torch.conv1d", "torch.conv2d",
                 "torch.convolution", "torch.nn.Conv1d", "torch.nn.Conv2d", "torch.nn.functional.conv_transpose1d",
                 "torch.nn.LazyConv1d")
_MAX_POOLS = ("torch.nn.functional.max_pool1d", "torch.nn.functional.max_pool1d_with_indices",
              "torch.nn.functional.adaptive_max_pool1d", "torch.max_pool1d", "torch.adaptive_max_pool1d",
              "torch.nn.MaxPool1d", "torch.nn.AdaptiveMaxPool1d")
_AVG_POOLS = ("torch.nn.functional.avg_pool1d", "torch.nn.functional.adaptive_avg_pool1d", "torch.avg_pool1d",
              "torch.adaptive_avg_pool1d", "torch.nn.AvgPool1d", "torch.nn.AdaptiveAvgPool1d")

_CONV_BUGS: dict[str, Callable[..., Tensor]] = {
    "transposed input: the window slides along the word vectors (D used as time) instead of along the "
    "sentence": conv1d_time_as_width,
    "off-by-one window count: range(0, T - K, stride) leaves out the last window (it is T - K + 1)":
        conv1d_last_window_left_out,
    "off-by-one window count: T_out = (T - K) // stride without the + 1": conv1d_window_count_without_plus_one,
    "stride ignored: a window starts at every word": conv1d_stride_ignored,
    "each window is flattened word by word (K, D) but each filter channel by channel (D, K): transpose the "
    "weight to (C, K, D) first": conv1d_kernel_read_word_by_word,
}

ASSIGNMENT = Assignment(
    name="cnn",
    parts=(
        Part("conv1d_windows", "dl4nlp.cnn", 3, conv_cases, forbidden=(*_CONVOLUTIONS, *_PRIVATE), bugs=_CONV_BUGS),
        Part("conv1d", "dl4nlp.cnn", 3, conv_cases, forbidden=(*_CONVOLUTIONS, *_PRIVATE), bugs=_CONV_BUGS),
        Part("max_pool_over_time", "dl4nlp.cnn", 2, pool_cases, forbidden=(*_MAX_POOLS, *_PRIVATE),
             bugs={"padding wins the max: positions t >= lengths[b] take part (lengths ignored)":
                       max_pool_lengths_ignored,
                   "padding wins the max: padded positions set to 0, which beats features that are all "
                   "negative (fill them with -inf)": max_pool_padding_as_zero,
                   "the max is taken over the features (dim 2) instead of over time (dim 1)":
                       max_pool_over_features}),
        Part("avg_pool_over_time", "dl4nlp.cnn", 2, pool_cases, forbidden=(*_AVG_POOLS, *_PRIVATE),
             bugs={"the mean is taken over padded positions too (lengths ignored)": avg_pool_lengths_ignored,
                   "the mean divides by T instead of each sentence's length": avg_pool_divided_by_T,
                   "the mean is taken over the features (dim 2) instead of over time (dim 1)":
                       avg_pool_over_features}),
        Part("classify", "dl4nlp.cnn", 3, classify_cases, given={"max_pool_over_time": max_pool_over_time},
             forbidden=(*_MAX_POOLS, *_PRIVATE),
             bugs={"lengths ignored: windows that reach into the padding take part in the max":
                       classify_lengths_ignored,
                   "the ReLU after each convolution is left out": classify_without_relu,
                   "average pooling instead of max pooling over time": classify_average_pooling,
                   "dropout left out: the pooled features go straight to the head": classify_without_dropout}),
    ),
)
