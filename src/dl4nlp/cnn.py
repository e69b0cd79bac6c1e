"""Convolutional neural networks for text: 1-d convolution over the rows of a
sentence matrix, pooling over time, and Kim's (2014) sentence classifier.

A convolutional layer decides from local regions of the input: a filter of
width K looks at K consecutive words at a time (a window, or region), always
with the same weights, and slides along the sentence `stride` words at a time.
Everything is batch first: a sentence is a matrix x (T, D), one row per word,
so a batch is (B, T, D) and a feature map is (B, T_out, C), one column per
filter. Weights are laid out as in `torch.nn.Conv1d` (C, D, K), so they copy
over with `from_torch`; torch's own convolution wants (B, D, T) instead, which
is why the tests compare with it on the transposed input.

Padding: pass `lengths` (B,) to the pooling functions and positions past a
sentence's end never win the max nor count in the mean. After a convolution a
sentence of L words has (L - K) // stride + 1 valid positions
(`feature_lengths`), so padding a batch never changes a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dl4nlp.shapes import Lengths, check_lengths, check_shapes, optional, shapes

Conv = Callable[..., Tensor]  # conv(x, weight, bias, stride) -> (B, T_out, C), like `conv1d`


def check_window(function: str, kernel_size: int, stride: int, time: int) -> None:
    """A positive stride, and a kernel (window) no longer than the sentence: 1 <= K <= T.

    Raises: ValueError naming `function` and what to fix.
    """
    for name, value in (("stride", stride), ("kernel_size", kernel_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{function}: {name} must be a positive integer, got {value!r}")
    if kernel_size > time:
        raise ValueError(f"{function}: the kernel is longer than the sentence: K={kernel_size} words "
                         f"but T={time}; a window of K words needs at least K rows of x (pad to T >= K)")


# --- convolution over time ------------------------------------------------------------


@shapes(x="B T D", weight="C D K", bias=optional("C"))
def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """1-d convolution over time: every filter c looks at K consecutive rows (words) of x.

        y[b, t, c] = bias[c] + sum_{k, d} weight[c, d, k] * x[b, t * stride + k, d]

    for t = 0, ..., T_out - 1 with T_out = (T - K) // stride + 1 (no padding: each
    window lies inside the sentence).

    Args: x (B, T, D), one row per word; weight (C, D, K); bias (C,) or None; stride >= 1.
    Returns: y (B, T_out, C), the C feature maps.
    Matches: torch.nn.functional.conv1d(x.transpose(1, 2), weight, bias, stride).transpose(1, 2),
      i.e. torch.nn.Conv1d(D, C, K, stride) on (B, D, T).
    """
    check_window("conv1d", weight.shape[2], stride, x.shape[1])
    B, T, D = x.shape
    C, _, K = weight.shape
    windows = x.unfold(1, K, stride)  # (B, T_out, D, K): windows[b, t] = x[b, t*stride : t*stride + K].T
    y = torch.einsum("btdk,cdk->btc", windows, weight)  # (B, T_out, C)
    return y if bias is None else y + bias  # (B, T_out, C)


@shapes(x="B T D", weight="C D K", bias=optional("C"))
def conv1d_windows(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1) -> Tensor:
    """1-d convolution, one window at a time: a linear layer applied to each window of K words.

    The window starting at word s, flattened, is a vector of K * D numbers; each filter
    is a row of K * D weights; their dot product (plus the bias) is one feature:

        y[b, t, c] = bias[c] + sum_{k, d} weight[c, d, k] * x[b, t * stride + k, d]

    Same contract and same results as `conv1d`, written with a Python loop over the
    window starts 0, stride, 2 * stride, ... <= T - K: T_out separate products, slow where each is small.

    Args: x (B, T, D); weight (C, D, K); bias (C,) or None; stride >= 1.
    Returns: y (B, T_out, C) with T_out = (T - K) // stride + 1.
    Matches: `conv1d`, and torch.nn.functional.conv1d on x.transpose(1, 2).
    """
    check_window("conv1d_windows", weight.shape[2], stride, x.shape[1])
    B, T, D = x.shape
    C, _, K = weight.shape
    filters = weight.transpose(1, 2).reshape(C, K * D)  # (C, K*D), rows ordered word by word like a window
    outputs = []
    for start in range(0, T - K + 1, stride):
        window = x[:, start:start + K].reshape(B, K * D)  # (B, K*D): K words side by side
        outputs.append(window @ filters.T)  # (B, C)
    y = torch.stack(outputs, dim=1)  # (B, T_out, C)
    return y if bias is None else y + bias  # (B, T_out, C)


def feature_lengths(lengths: Tensor, kernel_size: int, stride: int = 1) -> Tensor:
    """How many windows of each sentence a convolution computes: (L - K) // stride + 1.

    Args: lengths (B,), tokens per sentence; kernel_size K; stride >= 1.
    Returns: (B,), the valid positions of each sentence's feature map (the rest is padding).
    Raises: ValueError if a sentence is shorter than the kernel (it has no window).
    """
    check_shapes("feature_lengths", lengths=(lengths, "B"))
    check_window("feature_lengths", kernel_size, stride, time=kernel_size)  # K and stride only; lengths below
    if len(lengths) and int(lengths.min()) < kernel_size:
        raise ValueError(f"feature_lengths: every sentence must be at least as long as the kernel (K={kernel_size}), "
                         f"got lengths {lengths.tolist()}")
    return (lengths - kernel_size) // stride + 1  # (B,)


# --- pooling --------------------------------------------------------------------------


@shapes(x="B T C", lengths=optional(Lengths()))
def max_pool_over_time(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The largest value of each feature map over the sentence: y[b, c] = max_{t < L_b} x[b, t, c].

    Args: x (B, T, C); lengths (B,) or None (every sentence has T positions); positions
      t >= lengths[b] are padding and never win the max.
    Returns: y (B, C).
    Matches: torch.nn.functional.max_pool1d(x.transpose(1, 2), T).squeeze(-1) without lengths,
      and the same on each sentence alone, x[b:b + 1, :lengths[b]], with them.
    """
    B, T, C = x.shape
    if lengths is not None:
        padding = torch.arange(T, device=x.device) >= lengths.to(x.device)[:, None]  # (B, T), True past the end
        x = x.masked_fill(padding[..., None], float("-inf"))  # (B, T, C), a new tensor
    return x.max(dim=1).values  # (B, C)


@shapes(x="B T C", lengths=optional(Lengths()))
def avg_pool_over_time(x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The mean of each feature map over the sentence: y[b, c] = (1 / L_b) sum_{t < L_b} x[b, t, c].

    Args: x (B, T, C); lengths (B,) or None (every sentence has T positions); positions
      t >= lengths[b] are padding and count neither in the sum nor in L_b.
    Returns: y (B, C).
    Matches: torch.nn.functional.avg_pool1d(x.transpose(1, 2), T).squeeze(-1) without lengths,
      and the same on each sentence alone, x[b:b + 1, :lengths[b]], with them.
    """
    B, T, C = x.shape
    if lengths is None:
        return x.mean(dim=1)  # (B, C)
    lengths = lengths.to(x.device)
    valid = torch.arange(T, device=x.device) < lengths[:, None]  # (B, T), True at real positions
    total = torch.where(valid[..., None], x, 0.0).sum(dim=1)  # (B, C): padding adds nothing, not even NaN
    return total / lengths[:, None].to(x.dtype)  # (B, C)


@shapes(x="B T C")
def max_pool(x: Tensor, kernel_size: int, stride: int | None = None) -> Tensor:
    """Max over windows of K consecutive positions: y[b, t, c] = max_k x[b, t * stride + k, c].

    Args: x (B, T, C); kernel_size K <= T; stride >= 1, by default K (windows side by side).
    Returns: y (B, T_out, C) with T_out = (T - K) // stride + 1. Knows nothing of padding.
    Matches: torch.nn.functional.max_pool1d(x.transpose(1, 2), K, stride).transpose(1, 2).
    """
    stride = kernel_size if stride is None else stride
    check_window("max_pool", kernel_size, stride, x.shape[1])
    return x.unfold(1, kernel_size, stride).max(dim=-1).values  # (B, T_out, C, K) -> (B, T_out, C)


@shapes(x="B T C")
def avg_pool(x: Tensor, kernel_size: int, stride: int | None = None) -> Tensor:
    """Mean over windows of K consecutive positions: y[b, t, c] = (1 / K) sum_k x[b, t * stride + k, c].

    Args: x (B, T, C); kernel_size K <= T; stride >= 1, by default K (windows side by side).
    Returns: y (B, T_out, C) with T_out = (T - K) // stride + 1. Knows nothing of padding.
    Matches: torch.nn.functional.avg_pool1d(x.transpose(1, 2), K, stride).transpose(1, 2).
    """
    stride = kernel_size if stride is None else stride
    check_window("avg_pool", kernel_size, stride, x.shape[1])
    return x.unfold(1, kernel_size, stride).mean(dim=-1)  # (B, T_out, C, K) -> (B, T_out, C)


# --- modules: parameters named as in torch.nn -----------------------------------------


class Conv1d(nn.Module):
    """A convolution over time with `weight` (C, D, K) and `bias` (C,), named and shaped as in
    torch.nn.Conv1d(D, C, K, stride); it takes x (B, T, D) and returns (B, T_out, C)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 conv: Conv | None = None, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size, stride) < 1:
            raise ValueError("Conv1d: in_channels, out_channels, kernel_size and stride must be positive integers")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.conv: Conv = conv or conv1d  # a student's conv1d can be swapped in
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size))  # (C, D, K)
        self.bias = nn.Parameter(torch.empty(out_channels))  # (C,)
        bound = 1 / math.sqrt(in_channels * kernel_size)  # torch.nn's initialisation: fan_in = D * K
        for parameter in (self.weight, self.bias):
            nn.init.uniform_(parameter, -bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D) with D = in_channels. Returns: (B, T_out, C)."""
        check_shapes(type(self).__name__, weight=(self.weight, "C D K"), x=(x, "B T D"))  # blame x, not the weights
        return self.conv(x, self.weight, self.bias, self.stride)

    @classmethod
    def from_torch(cls, module: nn.Conv1d) -> Conv1d:
        """A copy of a torch.nn.Conv1d with the same weights (it reads (B, D, T); this reads (B, T, D))."""
        if type(module) is not nn.Conv1d:
            raise TypeError(f"Conv1d.from_torch expects a Conv1d, got {type(module).__name__}")
        unsupported = {"padding": module.padding != (0,), "dilation": module.dilation != (1,),
                       "groups": module.groups != 1, "bias=False": module.bias is None}
        if any(unsupported.values()):
            raise ValueError(f"Conv1d.from_torch does not support {', '.join(k for k, v in unsupported.items() if v)}")
        ours = cls(module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0])
        ours.load_state_dict(module.state_dict(), strict=True)  # same names; checks every shape
        return ours.to(device=module.weight.device, dtype=module.weight.dtype)


# --- sentence classification with a CNN (Kim 2014) ------------------------------------


@dataclass(frozen=True)
class TextCNNConfig:
    """Sizes of a `TextCNN`: num_filters feature maps for each kernel size (Kim 2014's defaults)."""

    vocab_size: int
    num_classes: int = 2
    embedding_dim: int = 128
    kernel_sizes: tuple[int, ...] = (3, 4, 5)
    num_filters: int = 100
    dropout: float = 0.5
    padding_idx: int = 0

    @classmethod
    def small(cls, vocab_size: int, num_classes: int = 2) -> TextCNNConfig:
        """A few thousand parameters: quick to train on a CPU, for tests and notebooks."""
        return cls(vocab_size, num_classes, embedding_dim=16, kernel_sizes=(2, 3), num_filters=8, dropout=0.1)


@shapes(tokens="B T", lengths=Lengths())
def classify(tokens: Tensor, lengths: Tensor, embedding: nn.Embedding, convs: Sequence[Conv1d],
             dropout: nn.Module, head: nn.Linear) -> Tensor:
    """Kim's (2014) CNN for sentence classification, from token ids to class scores.

        x = embedding(tokens)                          (B, T, D), zero rows past each sentence
        f_j = max over the valid t of ReLU(conv_j(x))  (B, C) for each kernel size K_j
        logits = head(dropout([f_1 ; ... ; f_n]))      (B, C_classes)

    A sentence of L words has (L - K_j) // stride + 1 valid windows (`feature_lengths`);
    windows that reach into padding never win the max. Sentences shorter than the
    longest kernel are padded with zero vectors up to it (as Kim does), so every
    kernel has at least one window: then those zero rows count as words.

    Args: tokens (B, T) token ids, padded; lengths (B,) real lengths; embedding V -> D;
      convs, one `Conv1d` (B, T, D) -> (B, T_out, C) per kernel size (each has
      `kernel_size` and `stride`); dropout, applied to the pooled features; head, a
      Linear from len(convs) * C to the classes.
    Returns: logits (B, num_classes).
    """
    B, T = tokens.shape
    lengths = lengths.to(tokens.device)
    valid = torch.arange(T, device=tokens.device) < lengths[:, None]  # (B, T), True at real positions
    x = embedding(tokens) * valid[..., None]  # (B, T, D), zero rows past each sentence
    longest_kernel = max(conv.kernel_size for conv in convs)  # every kernel needs at least one window
    x = nn.functional.pad(x, (0, 0, 0, max(0, longest_kernel - T)))  # (B, max(T, K_max), D)
    lengths = lengths.clamp(min=longest_kernel)  # (B,): the zero rows count as words
    pooled = [max_pool_over_time(torch.relu(conv(x)), feature_lengths(lengths, conv.kernel_size, conv.stride))
              for conv in convs]  # each (B, C)
    features = torch.cat(pooled, dim=-1)  # (B, len(convs) * C)
    return head(dropout(features))  # (B, num_classes)


class TextCNN(nn.Module):
    """Embedding -> one convolution (+ ReLU) per kernel size -> max over time -> concatenation
    -> dropout -> linear: Kim's (2014) CNN for sentence classification.

    Sentences shorter than the longest kernel are padded with zero vectors up to it (as Kim
    does), so every kernel has at least one window; padding tokens beyond a sentence's
    length are zeroed too, so they never change a result.
    """

    def __init__(self, config: TextCNNConfig, *, conv: Conv | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not config.kernel_sizes or min(config.kernel_sizes) < 1:
            raise ValueError(f"TextCNNConfig.kernel_sizes must be positive integers, got {config.kernel_sizes!r}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.padding_idx)
        self.convs = nn.ModuleList(Conv1d(config.embedding_dim, config.num_filters, size, conv=conv,
                                          generator=generator) for size in config.kernel_sizes)
        self.dropout = nn.Dropout(config.dropout)
        features = len(config.kernel_sizes) * config.num_filters
        self.head = nn.Linear(features, config.num_classes)
        with torch.no_grad():  # torch.nn's default initialisation, drawn from `generator`
            nn.init.normal_(self.embedding.weight, generator=generator)
            self.embedding.weight[config.padding_idx] = 0
            bound = 1 / math.sqrt(features)
            nn.init.uniform_(self.head.weight, -bound, bound, generator=generator)
            nn.init.uniform_(self.head.bias, -bound, bound, generator=generator)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Args: tokens (B, T) token ids, padded; lengths (B,) real lengths. Returns: logits (B, num_classes)."""
        return classify(tokens, lengths, self.embedding, self.convs, self.dropout, self.head)

    @classmethod
    def from_torch(cls, embedding: nn.Embedding, convs: Sequence[nn.Conv1d], head: nn.Linear,
                   dropout: float = 0.5) -> TextCNN:
        """A TextCNN with the weights of torch.nn modules: an Embedding, one Conv1d (stride 1,
        the same number of filters) per kernel size, and a Linear head over the pooled features."""
        sizes = {conv.out_channels for conv in convs}
        if len(sizes) != 1 or any(conv.stride != (1,) for conv in convs):
            raise ValueError("TextCNN.from_torch needs Conv1d modules with stride 1 and the same out_channels, "
                             f"got {[(conv.out_channels, conv.stride[0]) for conv in convs]}")
        config = TextCNNConfig(embedding.num_embeddings, head.out_features, embedding.embedding_dim,
                               tuple(conv.kernel_size[0] for conv in convs), sizes.pop(), dropout,
                               0 if embedding.padding_idx is None else embedding.padding_idx)
        ours = cls(config)
        ours.embedding.load_state_dict(embedding.state_dict())
        ours.convs = nn.ModuleList(Conv1d.from_torch(conv) for conv in convs)
        ours.head.load_state_dict(head.state_dict())  # checks its shape against the pooled features
        return ours.to(device=head.weight.device, dtype=head.weight.dtype)
