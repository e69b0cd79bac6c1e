"""Exercises of the attention assignment: attention weights with both kinds of mask, scaled
dot-product attention, splitting and merging heads, multi-head attention, and the two
placements of the Transformer block's normalization.

Every case draws its values from the generator. Masks are boolean (True = may attend) in both
shapes students meet (a (T_q, T_k) pattern and a (B, 1, 1, T_k) padding mask), causal
(`is_causal`) or float (added to the scores); every boolean mask leaves each query at least one
key it may attend to and one it may not, so that a mask read the wrong way round gives numbers,
wrong ones. Leading dimensions vary (none, batch, batch and heads), and head widths reach 32 so
that a missing 1 / sqrt(Dh) shows. Two cases of `scaled_dot_product_attention` and
`multi_head_attention` hold the same keys and values permuted together: the outputs must not
change. While `scaled_dot_product_attention` and `multi_head_attention` run, the notebook's
helpers they call are the grader's own (`Part.given`), and the blocks get sublayers built on
torch's modules and a dropout with a fixed mask: a bug in one part never costs another its points.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.exercises import Assignment, Case, Part, normal

# --- the grader's own helpers: what the parts that call them get while graded ----------------


def attention_weights(q: Tensor, k: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
    """The grader's copy of `dl4nlp.attention.attention_weights` (every query has a key to attend to)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T_q, T_k)
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask
    return torch.softmax(scores, dim=-1)  # (..., T_q, T_k)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 is_causal: bool = False) -> Tensor:
    """The grader's copy of `dl4nlp.attention.scaled_dot_product_attention`."""
    return attention_weights(q, k, attn_mask, is_causal) @ v  # (..., T_q, Dv)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """The grader's copy of `dl4nlp.attention.split_heads`: (B, T, D) -> (B, H, T, D / H)."""
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """The grader's copy of `dl4nlp.attention.merge_heads`: (B, H, T, Dh) -> (B, T, H * Dh)."""
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)


GIVEN_HEADS = {"attention_weights": attention_weights, "scaled_dot_product_attention": scaled_dot_product_attention,
               "split_heads": split_heads, "merge_heads": merge_heads}


class FixedDropout(nn.Module):
    """Dropout with a mask fixed when the case is drawn (0 or 1 / (1 - p), broadcast over `shape`'s
    dimensions of size 1): the same on every call, so that where it is applied changes the result."""

    def __init__(self, shape: tuple[int, ...], p: float, generator: torch.Generator) -> None:
        super().__init__()
        keep = (torch.rand(shape, generator=generator) >= p).float()
        keep.view(-1)[0] = 0.0  # at least one entry dropped
        self.register_buffer("mask", keep / (1 - p))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask


class SelfAttention(nn.Module):
    """Self-attention on torch.nn.MultiheadAttention(batch_first=True), with its padding mask
    (True = padding) fixed when the case is drawn: x (B, T, D) -> (B, T, D)."""

    def __init__(self, D: int, H: int, key_padding_mask: Tensor | None, generator: torch.Generator) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(D, H, batch_first=True)
        self.key_padding_mask = key_padding_mask
        with torch.no_grad():
            for parameter in self.attention.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / math.sqrt(D))

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(x, x, x, key_padding_mask=self.key_padding_mask, need_weights=False)[0]


class Feedforward(nn.Module):
    """W_2 act(W_1 x + b_1) + b_2 at every position: x (B, T, D) -> (B, T, D)."""

    def __init__(self, D: int, D_ff: int, activation: str, generator: torch.Generator) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(D, D_ff), nn.Linear(D_ff, D)
        self.activation = F.gelu if activation == "gelu" else F.relu
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / math.sqrt(parameter.shape[-1]))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.activation(self.linear1(x)))


# --- drawing -----------------------------------------------------------------------------


def _pattern(generator: torch.Generator, *shape: int) -> Tensor:
    """A boolean mask (..., T_q, T_k), True = may attend, with a True and a False in every row."""
    mask = torch.rand(*shape, generator=generator) < 0.5
    T_k = shape[-1]
    first = torch.randint(0, T_k, shape[:-1], generator=generator)  # (..., T_q)
    second = (first + torch.randint(1, T_k, shape[:-1], generator=generator)) % T_k  # another key
    mask.scatter_(-1, first[..., None], True)
    mask.scatter_(-1, second[..., None], False)
    return mask


def _padding(generator: torch.Generator, B: int, T_k: int) -> tuple[Tensor, Tensor]:
    """(lengths (B,) in 1..T_k - 1, the mask (B, 1, 1, T_k) with True = may attend: a real key)."""
    lengths = torch.randint(1, T_k, (B,), generator=generator)
    return lengths, (torch.arange(T_k) < lengths[:, None])[:, None, None, :]


def _mask_description(attn_mask: Tensor | None, is_causal: bool) -> str:
    if is_causal:
        return "is_causal=True"
    if attn_mask is None:
        return "no mask"
    kind = "boolean" if attn_mask.dtype == torch.bool else "float"
    return f"{kind} attn_mask of shape {tuple(attn_mask.shape)}"


def weights_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for leading, T_q, T_k, Dh, mask in (((2,), 3, 5, 4, "none"), ((2, 2), 4, 4, 8, "causal"),
                                        ((3,), 4, 4, 6, "pattern"), ((2, 2), 3, 6, 5, "padding"),
                                        ((), 4, 6, 16, "float"), ((1,), 5, 5, 32, "none")):
        q, k = normal(generator, *leading, T_q, Dh), normal(generator, *leading, T_k, Dh)
        attn_mask = {"pattern": lambda: _pattern(generator, *leading, T_q, T_k),
                     "padding": lambda: _padding(generator, leading[0], T_k)[1],
                     "float": lambda: normal(generator, T_q, T_k, scale=2.0)}.get(mask, lambda: None)()
        is_causal = mask == "causal"
        drawn.append(Case((q, k, attn_mask, is_causal), f"q {tuple(q.shape)}, k {tuple(k.shape)}, "
                                                       + _mask_description(attn_mask, is_causal)))
    return drawn


def attention_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for leading, T_q, T_k, Dh, Dv, mask in (((2,), 3, 5, 4, 3, "none"), ((2, 2), 4, 4, 8, 8, "causal"),
                                            ((3,), 4, 4, 6, 2, "pattern"), ((2, 3), 3, 6, 16, 5, "padding"),
                                            ((), 4, 4, 8, 6, "float")):
        q, k, v = (normal(generator, *leading, T_q, Dh), normal(generator, *leading, T_k, Dh),
                   normal(generator, *leading, T_k, Dv))
        attn_mask = {"pattern": lambda: _pattern(generator, *leading, T_q, T_k),
                     "padding": lambda: _padding(generator, leading[0], T_k)[1],
                     "float": lambda: normal(generator, T_q, T_k, scale=2.0)}.get(mask, lambda: None)()
        is_causal = mask == "causal"
        description = (f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                       + _mask_description(attn_mask, is_causal))
        drawn.append(Case((q, k, v, attn_mask, is_causal), description))
        if mask == "none":  # the same keys and values, permuted together: the same outputs
            order = torch.randperm(T_k, generator=generator)
            drawn.append(Case((q, k[..., order, :], v[..., order, :], None, False),
                              description + ", keys and values permuted together"))
    return drawn


def split_cases(generator: torch.Generator) -> list[Case]:
    return [Case((normal(generator, B, T, D), H), f"x ({B}, {T}, {D}), {H} heads")
            for B, T, D, H in ((2, 5, 8, 2), (1, 3, 6, 3), (3, 4, 12, 4), (2, 6, 4, 1), (1, 2, 10, 5))]


def merge_cases(generator: torch.Generator) -> list[Case]:
    return [Case((normal(generator, B, H, T, Dh),), f"x ({B}, {H}, {T}, {Dh})")
            for B, H, T, Dh in ((2, 2, 5, 4), (1, 3, 3, 2), (3, 4, 4, 3), (2, 1, 6, 4), (1, 5, 2, 2))]


def _linear(generator: torch.Generator, D: int) -> nn.Linear:
    linear = nn.Linear(D, D)
    with torch.no_grad():
        linear.weight.copy_(normal(generator, D, D, scale=1 / math.sqrt(D)))
        linear.bias.copy_(normal(generator, D, scale=0.1))
    return linear


def multi_head_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T_q, T_k, D, H, mask, cross in ((2, 5, 5, 8, 2, "none", False), (2, 3, 6, 8, 4, "padding", True),
                                           (1, 4, 4, 6, 3, "causal", False), (3, 5, 5, 12, 4, "float", False),
                                           (2, 4, 4, 4, 1, "none", False)):
        query = normal(generator, B, T_q, D)
        key = normal(generator, B, T_k, D) if cross else query
        value = normal(generator, B, T_k, D) if cross else query
        projections = tuple(_linear(generator, D) for _ in range(4))  # W^Q, W^K, W^V, W^O
        attn_mask = {"padding": lambda: _padding(generator, B, T_k)[1],
                     "causal": lambda: torch.ones(T_q, T_k, dtype=torch.bool).tril(),
                     "float": lambda: normal(generator, T_q, T_k, scale=2.0)}.get(mask, lambda: None)()
        dropout = FixedDropout((1, H, T_q, T_k), 0.2, generator) if mask == "float" else None
        description = (f"{'cross' if cross else 'self'}-attention, query ({B}, {T_q}, {D}), {H} heads, "
                       + _mask_description(attn_mask, False) + (", a dropout on the weights" if dropout else ""))
        drawn.append(Case((query, key, value, *projections, H, attn_mask, dropout), description))
        if mask == "none" and H > 1:  # keys and values permuted together: the same outputs, the weights permuted
            order = torch.randperm(T_k, generator=generator)
            drawn.append(Case((query, key[:, order], value[:, order], *projections, H, None, None),
                              description + ", keys and values permuted together"))
    return drawn


def block_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, D, H, D_ff, activation, padded in ((2, 5, 8, 2, 16, "relu", False), (3, 4, 6, 3, 12, "gelu", True),
                                                 (1, 6, 4, 1, 8, "relu", True), (2, 3, 12, 4, 24, "gelu", False)):
        x = normal(generator, B, T, D)
        key_padding_mask = None
        if padded:
            lengths = torch.randint(1, T + 1, (B,), generator=generator)
            lengths[0] = T
            key_padding_mask = torch.arange(T) >= lengths[:, None]  # (B, T), True = padding (torch.nn's)
        norms = []
        for _ in range(2):
            norm = nn.LayerNorm(D)
            with torch.no_grad():
                norm.weight.copy_(1 + normal(generator, D, scale=0.3))
                norm.bias.copy_(normal(generator, D, scale=0.3))
            norms.append(norm)
        drawn.append(Case((x, SelfAttention(D, H, key_padding_mask, generator),
                           Feedforward(D, D_ff, activation, generator), *norms, FixedDropout((D,), 0.2, generator)),
                          f"x ({B}, {T}, {D}), {H} heads, {activation} feedforward of width {D_ff}"
                          + (", padded keys" if padded else "")))
    return drawn


# --- typical bugs: known-wrong variants the feedback names -----------------------------------
# Each is self-contained (torch, `math` and `F`, and the notebook's helpers that the grader binds
# to its own), so that the tests can hand one in as a student's answer. Masks are filled with a
# large finite number where a student's bug would otherwise give NaN for the whole row.


def weights_without_scale(q, k, attn_mask=None, is_causal=False):
    scores = q @ k.transpose(-2, -1)
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask
    return torch.softmax(scores, dim=-1)


def weights_softmax_over_queries(q, k, attn_mask=None, is_causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, -1e9) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.softmax(scores, dim=-2)


def weights_masked_after_softmax(q, k, attn_mask=None, is_causal=False):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if attn_mask is None:
        return weights
    return weights.masked_fill(~attn_mask, 0.0) if attn_mask.dtype == torch.bool else weights + attn_mask


def weights_mask_inverted(q, k, attn_mask=None, is_causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask
    return torch.softmax(scores, dim=-1)


def attention_without_scale(q, k, v, attn_mask=None, is_causal=False):
    return attention_weights(q * math.sqrt(q.shape[-1]), k, attn_mask, is_causal) @ v


def attention_weights_transposed(q, k, v, attn_mask=None, is_causal=False):
    return attention_weights(q, k, attn_mask, is_causal).transpose(-2, -1) @ v


def attention_returns_weights(q, k, v, attn_mask=None, is_causal=False):
    return attention_weights(q, k, attn_mask, is_causal)


def split_heads_without_transpose(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, num_heads, T, D // num_heads)


def split_heads_strided(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, D // num_heads, num_heads).permute(0, 3, 1, 2)


def merge_heads_without_transpose(x):
    B, H, T, Dh = x.shape
    return x.reshape(B, T, H * Dh)


def merge_heads_interleaved(x):
    B, H, T, Dh = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, T, Dh * H)


def multi_head_split_without_transpose(query, key, value, q_proj, k_proj, v_proj, out_proj, num_heads,
                                       attn_mask=None, dropout=None):
    def split(x):
        B, T, D = x.shape
        return x.reshape(B, num_heads, T, D // num_heads)

    q, k, v = split(q_proj(query)), split(k_proj(key)), split(v_proj(value))
    weights = attention_weights(q, k, attn_mask)
    heads = (weights if dropout is None else dropout(weights)) @ v
    return out_proj(merge_heads(heads)), weights


def multi_head_without_out_proj(query, key, value, q_proj, k_proj, v_proj, out_proj, num_heads,
                                attn_mask=None, dropout=None):
    q, k, v = split_heads(q_proj(query), num_heads), split_heads(k_proj(key), num_heads), \
        split_heads(v_proj(value), num_heads)
    weights = attention_weights(q, k, attn_mask)
    heads = (weights if dropout is None else dropout(weights)) @ v
    return merge_heads(heads), weights


def multi_head_mask_ignored(query, key, value, q_proj, k_proj, v_proj, out_proj, num_heads,
                            attn_mask=None, dropout=None):
    q, k, v = split_heads(q_proj(query), num_heads), split_heads(k_proj(key), num_heads), \
        split_heads(v_proj(value), num_heads)
    weights = attention_weights(q, k)
    heads = (weights if dropout is None else dropout(weights)) @ v
    return out_proj(merge_heads(heads)), weights


def multi_head_weights_averaged(query, key, value, q_proj, k_proj, v_proj, out_proj, num_heads,
                                attn_mask=None, dropout=None):
    q, k, v = split_heads(q_proj(query), num_heads), split_heads(k_proj(key), num_heads), \
        split_heads(v_proj(value), num_heads)
    weights = attention_weights(q, k, attn_mask)
    heads = (weights if dropout is None else dropout(weights)) @ v
    return out_proj(merge_heads(heads)), weights.mean(dim=1)


def post_norm_without_attention_residual(x, self_attention, feedforward, norm1, norm2, dropout):
    x = norm1(dropout(self_attention(x)))
    return norm2(x + dropout(feedforward(x)))


def post_norm_without_feedforward_residual(x, self_attention, feedforward, norm1, norm2, dropout):
    x = norm1(x + dropout(self_attention(x)))
    return norm2(dropout(feedforward(x)))


def post_norm_as_pre_norm(x, self_attention, feedforward, norm1, norm2, dropout):
    x = x + dropout(self_attention(norm1(x)))
    return x + dropout(feedforward(norm2(x)))


def post_norm_without_dropout(x, self_attention, feedforward, norm1, norm2, dropout):
    x = norm1(x + self_attention(x))
    return norm2(x + feedforward(x))


def pre_norm_without_attention_residual(x, self_attention, feedforward, norm1, norm2, dropout):
    x = dropout(self_attention(norm1(x)))
    return x + dropout(feedforward(norm2(x)))


def pre_norm_without_feedforward_residual(x, self_attention, feedforward, norm1, norm2, dropout):
    x = x + dropout(self_attention(norm1(x)))
    return dropout(feedforward(norm2(x)))


def pre_norm_as_post_norm(x, self_attention, feedforward, norm1, norm2, dropout):
    x = norm1(x + dropout(self_attention(x)))
    return norm2(x + dropout(feedforward(x)))


def pre_norm_residual_normalized(x, self_attention, feedforward, norm1, norm2, dropout):
    x = norm1(x)
    x = x + dropout(self_attention(x))
    x = norm2(x)
    return x + dropout(feedforward(x))


# Library calls that would do a part's work in one line (the grader also refuses torch's private ops).
_PRIVATE = ("torch._VF", "torch._C", "torch.ops")
_ATTENTION = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.functional.multi_head_attention_forward",
              "torch.nn.MultiheadAttention", "torch._native_multi_head_attention")
_BLOCKS = ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoderLayer",
           "torch.nn.Transformer", "torch._transformer_encoder_layer_fwd")
_RESIDUAL_BUGS = "the residual connection around the {} sublayer is missing (x + sublayer(...))"

ASSIGNMENT = Assignment(
    name="attention",
    parts=(
        Part("attention_weights", "dl4nlp.attention", 3, weights_cases, forbidden=(*_ATTENTION, *_PRIVATE),
             bugs={"no 1 / sqrt(Dh) scale on the scores": weights_without_scale,
                   "softmax over the queries (dim -2) instead of over the keys (dim -1)":
                       weights_softmax_over_queries,
                   "the mask is applied after the softmax, so the rows no longer sum to 1 (mask the scores with "
                   "-inf before it)": weights_masked_after_softmax,
                   "inverted mask convention: True was taken as 'may not attend' (here True = may attend, as in "
                   "F.scaled_dot_product_attention)": weights_mask_inverted}),
        Part("scaled_dot_product_attention", "dl4nlp.attention", 1, attention_cases, given=GIVEN_HEADS,
             forbidden=(*_ATTENTION, *_PRIVATE),
             bugs={"no 1 / sqrt(Dh) scale on the scores": attention_without_scale,
                   "the weights are transposed (alpha^T v): each output sums over the queries":
                       attention_weights_transposed,
                   "the attention weights are returned instead of their weighted sum of the values":
                       attention_returns_weights}),
        Part("split_heads", "dl4nlp.attention", 1, split_cases, forbidden=(*_ATTENTION, *_PRIVATE),
             bugs={"heads split along the wrong dimension: (B, T, D) reshaped straight to (B, H, T, Dh), which "
                   "mixes positions (reshape to (B, T, H, Dh), then transpose)": split_heads_without_transpose,
                   "each head takes every H-th feature instead of Dh consecutive ones": split_heads_strided}),
        Part("merge_heads", "dl4nlp.attention", 1, merge_cases, forbidden=(*_ATTENTION, *_PRIVATE),
             bugs={"merged without moving the heads back next to the features: (B, H, T, Dh) reshaped straight to "
                   "(B, T, H * Dh) (transpose to (B, T, H, Dh) first)": merge_heads_without_transpose,
                   "the heads' features are interleaved instead of side by side": merge_heads_interleaved}),
        Part("multi_head_attention", "dl4nlp.attention", 3, multi_head_cases, given=GIVEN_HEADS,
             forbidden=(*_ATTENTION, *_PRIVATE),
             bugs={"heads split along the wrong dimension: (B, T, D) reshaped straight to (B, H, T, Dh)":
                       multi_head_split_without_transpose,
                   "W^O (out_proj) is left out: the merged heads are returned as they are":
                       multi_head_without_out_proj,
                   "attn_mask is ignored": multi_head_mask_ignored,
                   "the weights are averaged over the heads (B, T_q, T_k) instead of returned per head":
                       multi_head_weights_averaged}),
        Part("post_norm_block", "dl4nlp.transformer", 2, block_cases, forbidden=(*_BLOCKS, *_PRIVATE),
             bugs={_RESIDUAL_BUGS.format("self-attention"): post_norm_without_attention_residual,
                   _RESIDUAL_BUGS.format("feedforward"): post_norm_without_feedforward_residual,
                   "the normalization comes before each sublayer (pre-norm) instead of after the residual "
                   "connection": post_norm_as_pre_norm,
                   "dropout is left out of the sublayers' outputs": post_norm_without_dropout}),
        Part("pre_norm_block", "dl4nlp.transformer", 2, block_cases, forbidden=(*_BLOCKS, *_PRIVATE),
             bugs={_RESIDUAL_BUGS.format("self-attention"): pre_norm_without_attention_residual,
                   _RESIDUAL_BUGS.format("feedforward"): pre_norm_without_feedforward_residual,
                   "the normalization comes after the residual connection (post-norm) instead of before each "
                   "sublayer": pre_norm_as_post_norm,
                   "the residual stream itself is normalized (x = norm(x) before adding): only the sublayer's "
                   "input should be": pre_norm_residual_normalized}),
    ),
)
