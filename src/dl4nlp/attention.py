"""Self-attention: queries, keys and values, scaled dot-product attention, and
multi-head attention.

A self-attention layer decides for every word from the whole sequence at once,
in one step instead of T. Each word x_i is projected three ways, and each
output y_i is a weighted sum over all words, with weights from how well the
word's query matches every key:

    1. projections   q_i = W^Q x_i,   k_i = W^K x_i,   v_i = W^V x_i
    2. weights       score_ij = q_i . k_j / sqrt(Dh),   alpha_ij = exp(score_ij) / sum_j' exp(score_ij')
    3. output        y_i = sum_j alpha_ij v_j

Each step is a pure function (`qkv_projections`; `attention_scores` and
`attention_weights`; `weighted_sum`), and `scaled_dot_product_attention` is
steps 2 and 3 together: it matches `torch.nn.functional.scaled_dot_product_attention`
for any leading (batch, head) dimensions. Multi-head attention runs H attentions
side by side, each on its own slice of Dh = D / H features (`split_heads`,
`merge_heads`), and mixes their outputs with W^O (`MultiHeadAttention`).

Masks: two conventions, each that of the torch API it matches.
- The functions take `attn_mask` as F.scaled_dot_product_attention does: boolean with
  True = may attend, or a float mask added to the scores (-inf: may not attend). Build one
  with `causal_mask` (query i sees keys j <= i) and `padding_to_attn_mask` (no padded key);
  combine boolean masks with &: ``causal_mask(T) & padding_to_attn_mask(padding_mask(lengths, T))``.
- `MultiHeadAttention.forward` takes torch.nn.MultiheadAttention's arguments:
  `key_padding_mask` (B, T_k) with True = padding (ignore this key), and a boolean
  `attn_mask` with True = may NOT attend (the opposite of the functions above); float
  masks are added, as everywhere. It converts them at its edge.

A query that may attend to no key at all gets alpha_ij = 0 for every j, hence y_i = 0,
as F.scaled_dot_product_attention gives (torch >= 2.5); torch.nn.MultiheadAttention
returns NaN there when it computes the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.shapes import check_lengths, check_shapes, optional, shapes

Sublayer = Callable[[Tensor], Tensor]  # a module or function of one tensor: a projection, dropout, a block's sublayer


def _broadcast_shapes(*shapes: tuple[int, ...]) -> torch.Size | None:
    """The shape that `shapes` broadcast to, as torch.broadcast_shapes, or None if they do not broadcast.

    Plain Python: the checks run at every attention call (every layer, every generated token), and
    torch.broadcast_shapes, written for symbolic shapes, costs more than the attention of one token.
    """
    result = [1] * max(len(shape) for shape in shapes)
    for shape in shapes:
        for index, size in enumerate(shape, len(result) - len(shape)):  # aligned at the right
            if size == 1 or size == result[index]:
                continue
            if result[index] != 1:
                return None
            result[index] = size
    return torch.Size(result)


def _check_attention_inputs(function: str, **tensors: tuple[Tensor, str]) -> tuple[torch.Size, dict[str, int]]:
    """Check tensors (..., X, Y) against the letters of their last two dimensions, e.g. q=(q, "T_q Dh").

    The leading (batch, head) dimensions may be any, as long as they broadcast together.
    Returns: the broadcast leading shape and {letter: size}.
    Raises: TypeError if an argument is not a tensor; ValueError naming the argument and both shapes.
    """
    sizes: dict[str, int] = {}
    for name, (tensor, pattern) in tensors.items():
        letters = pattern.split()
        expected = f"(..., {', '.join(letters)})"
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{function}: {name} should be a torch.Tensor of shape {expected}, "
                            f"got {type(tensor).__name__}")
        if tensor.dim() < 2:
            raise ValueError(f"{function}: {name} should have shape {expected}, at least 2 dimensions, "
                             f"but it has shape {tuple(tensor.shape)}")
        for letter, size in zip(letters, tensor.shape[-2:]):
            if sizes.setdefault(letter, size) != size:
                numbers = ", ".join(str(sizes.get(other, other)) for other in letters)
                raise ValueError(f"{function}: {name} should have shape {expected} = (..., {numbers}), but it has "
                                 f"shape {tuple(tensor.shape)} (does not match). Known sizes so far: "
                                 + ", ".join(f"{key}={value}" for key, value in sizes.items()))
    leading = _broadcast_shapes(*(tensor.shape[:-2] for tensor, _ in tensors.values()))
    if leading is None:
        shapes_given = ", ".join(f"{name} {tuple(tensor.shape)}" for name, (tensor, _) in tensors.items())
        raise ValueError(f"{function}: the leading (batch, head) dimensions should be equal or broadcast "
                         f"together, but they do not: {shapes_given}") from None
    return leading, sizes


def _check_attn_mask(function: str, attn_mask: Tensor | None, is_causal: bool, target: tuple[int, ...]) -> None:
    """None, or a boolean or float mask whose shape broadcasts to the scores' shape `target` (..., T_q, T_k);
    not both a mask and is_causal."""
    if attn_mask is None:
        return
    if is_causal:
        raise ValueError(f"{function}: pass attn_mask or is_causal=True, not both (as in "
                         f"F.scaled_dot_product_attention); combine them as causal_mask(T_q, T_k) & attn_mask")
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"{function}: attn_mask should be a torch.Tensor, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise ValueError(f"{function}: attn_mask should be boolean (True = may attend) or floating point "
                         f"(added to the scores), got {attn_mask.dtype}")
    fits = attn_mask.dim() >= 2 and _broadcast_shapes(attn_mask.shape, target) == target
    if not fits:
        raise ValueError(f"{function}: attn_mask should have shape (..., T_q, T_k) = {tuple(target)} or one that "
                         f"broadcasts to it, e.g. (T_q, T_k) = {tuple(target[-2:])}, but it has shape "
                         f"{tuple(attn_mask.shape)}. A key padding mask (B, T_k) becomes (B, 1, 1, T_k) "
                         f"with padding_to_attn_mask")


def check_heads(function: str, width: int, num_heads: int) -> None:
    """num_heads is a positive integer that divides the width D: each head gets Dh = D / H features."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"{function}: num_heads must be a positive integer, got {num_heads!r}")
    if width % num_heads:
        divisors = [h for h in range(1, width + 1) if width % h == 0]
        raise ValueError(f"{function}: D={width} is not divisible by num_heads={num_heads}; each head gets "
                         f"Dh = D / H features, so choose num_heads among {divisors} (or change D)")


def check_attention(function: str, q: Tensor, k: Tensor, v: Tensor | None = None, attn_mask: Tensor | None = None,
                    is_causal: bool = False) -> None:
    """Check the arguments of an attention function: q (..., T_q, Dh), k (..., T_k, Dh), v (..., T_k, Dv)
    or None, leading dimensions that broadcast, and a mask that fits the scores (..., T_q, T_k).

    Raises: TypeError or ValueError naming `function`, the argument and what to fix.
    """
    tensors = {"q": (q, "T_q Dh"), "k": (k, "T_k Dh")} | ({} if v is None else {"v": (v, "T_k Dv")})
    leading, sizes = _check_attention_inputs(function, **tensors)
    _check_attn_mask(function, attn_mask, is_causal, (*leading, sizes["T_q"], sizes["T_k"]))


# --- step 1: queries, keys and values -------------------------------------------------


@shapes(weight_q="D D", weight_k="D D", weight_v="D D", bias_q=optional("D"), bias_k=optional("D"),
        bias_v=optional("D"), query="B T_q D", key="B T_k D", value="B T_k D")
def qkv_projections(query: Tensor, key: Tensor, value: Tensor, weight_q: Tensor, weight_k: Tensor,
                    weight_v: Tensor, bias_q: Tensor | None = None, bias_k: Tensor | None = None,
                    bias_v: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Step 1: each word's query, key and value, three linear maps of its vector.

        q_i = W^Q x_i + b^Q,    k_j = W^K x_j + b^K,    v_j = W^V x_j + b^V

    In self-attention query, key and value are the same x; in cross-attention the
    keys and values come from another sequence (T_k words) than the queries.

    Args: query (B, T_q, D); key, value (B, T_k, D); weight_q, weight_k, weight_v (D, D), laid
      out as in nn.Linear (out, in), so a batch of rows x maps to x @ W.T; biases (D,) or None.
    Returns: q (B, T_q, D); k (B, T_k, D); v (B, T_k, D).
    Matches: F.linear(query, weight_q, bias_q) and the same for k and v: the in-projection of
      torch.nn.MultiheadAttention, whose in_proj_weight is torch.cat([weight_q, weight_k, weight_v]).
    """
    q = F.linear(query, weight_q, bias_q)  # (B, T_q, D): row i is q_i = W^Q x_i + b^Q
    k = F.linear(key, weight_k, bias_k)  # (B, T_k, D)
    v = F.linear(value, weight_v, bias_v)  # (B, T_k, D)
    return q, k, v


# --- step 2: attention weights --------------------------------------------------------


def attention_scores(q: Tensor, k: Tensor) -> Tensor:
    """How well each query matches each key, scaled: score_ij = q_i . k_j / sqrt(Dh).

    Dividing by sqrt(Dh) keeps the scores' spread independent of the width: a dot
    product of Dh terms of variance 1 has variance Dh, which would push the softmax
    towards one-hot weights with vanishing gradients.

    Args: q (..., T_q, Dh); k (..., T_k, Dh); the leading dimensions (batch, heads) broadcast.
    Returns: scores (..., T_q, T_k).
    Matches: q @ k.transpose(-2, -1) * scale inside F.scaled_dot_product_attention (scale = 1 / sqrt(Dh)).
    """
    _check_attention_inputs("attention_scores", q=(q, "T_q Dh"), k=(k, "T_k Dh"))
    q = q / math.sqrt(q.shape[-1])  # (..., T_q, Dh): scaling q costs less than scaling the scores
    return q @ k.transpose(-2, -1)  # (..., T_q, Dh) @ (..., Dh, T_k) -> (..., T_q, T_k)


def attention_weights(q: Tensor, k: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
    """Step 2: attention weights, a softmax over the keys of the masked, scaled scores.

        score_ij = q_i . k_j / sqrt(Dh)               (+ attn_mask[i, j] if it is a float mask)
        alpha_ij = exp(score_ij) / sum_j' exp(score_ij')   over the keys j' that query i may attend to

    Args: q (..., T_q, Dh); k (..., T_k, Dh); attn_mask None, boolean with True = may attend,
      or float (added to the scores), of a shape that broadcasts to (..., T_q, T_k), e.g.
      (T_q, T_k) or (B, 1, 1, T_k); is_causal: query i may attend to keys j <= i only
      (`causal_mask`), not together with attn_mask.
    Returns: alpha (..., T_q, T_k); each row sums to 1, or is all 0 where the mask leaves
      a query no key to attend to.
    Matches: the weights inside F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=is_causal),
      which returns alpha @ v.
    """
    check_attention("attention_weights", q, k, attn_mask=attn_mask, is_causal=is_causal)
    scores = (q @ k.transpose(-2, -1)).mul_(1 / math.sqrt(q.shape[-1]))  # (..., T_q, T_k): q_i . k_j / sqrt(Dh)
    if is_causal:
        attn_mask = causal_mask(q.shape[-2], k.shape[-2], device=scores.device)  # (T_q, T_k): j <= i
    # Without autograd the softmax may write over the scores: no second (..., T_q, T_k) buffer to allocate.
    out = None if scores.requires_grad else scores
    if attn_mask is None:
        return torch.softmax(scores, dim=-1, out=out)  # (..., T_q, T_k): rows sum to 1
    # A query that may attend to no key would get 0 / 0 = NaN: let it see every key, then zero its row.
    if attn_mask.dtype == torch.bool:
        nowhere = ~attn_mask.any(dim=-1, keepdim=True)  # (..., T_q, 1), at the mask's own (small) shape
        scores = scores.masked_fill_(~(attn_mask | nowhere), float("-inf"))  # (..., T_q, T_k): exp(-inf) = 0
    else:
        nowhere = (attn_mask == float("-inf")).all(dim=-1, keepdim=True)  # (..., T_q, 1)
        scores = scores.add_(attn_mask.masked_fill(nowhere, 0.0).to(scores.dtype))  # (..., T_q, T_k): added
    weights = torch.softmax(scores, dim=-1, out=out)  # (..., T_q, T_k): rows sum to 1
    # All zero for a query with no key; the pass over (..., T_q, T_k) is skipped when every query has one.
    return weights.masked_fill(nowhere, 0.0) if bool(nowhere.any()) else weights  # (..., T_q, T_k)


# --- step 3: the weighted sum of the values -------------------------------------------


def weighted_sum(weights: Tensor, v: Tensor) -> Tensor:
    """Step 3: each output is the attention-weighted sum of the values: y_i = sum_j alpha_ij v_j.

    Args: weights alpha (..., T_q, T_k); v (..., T_k, Dv); the leading dimensions broadcast.
    Returns: y (..., T_q, Dv).
    Matches: the last matrix product of F.scaled_dot_product_attention, weights @ v.
    """
    _check_attention_inputs("weighted_sum", weights=(weights, "T_q T_k"), v=(v, "T_k Dv"))
    return weights @ v  # (..., T_q, T_k) @ (..., T_k, Dv) -> (..., T_q, Dv)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 is_causal: bool = False) -> Tensor:
    """Attention weights (step 2), then the weighted sum of the values (step 3).

        y_i = sum_j softmax_j(q_i . k_j / sqrt(Dh) masked) v_j

    For the weights themselves (e.g. to plot them) call `attention_weights`.

    Args: q (..., T_q, Dh); k (..., T_k, Dh); v (..., T_k, Dv); the leading dimensions
      (batch, heads) broadcast; attn_mask None, boolean with True = may attend, or float
      (added to the scores), broadcasting to (..., T_q, T_k); is_causal: query i attends
      to keys j <= i only, not together with attn_mask.
    Returns: y (..., T_q, Dv); 0 for a query that may attend to no key.
    Matches: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=is_causal).
    """
    check_attention("scaled_dot_product_attention", q, k, v, attn_mask, is_causal)
    weights = attention_weights(q, k, attn_mask, is_causal)  # (..., T_q, T_k)
    return weighted_sum(weights, v)  # (..., T_q, Dv)


# --- masks ----------------------------------------------------------------------------


def causal_mask(T: int, T_k: int | None = None, *, device: torch.device | str | None = None) -> Tensor:
    """Which keys each query may attend to in a left-to-right model: key j <= query i.

    Args: T, the number of queries; T_k, the number of keys (default T); device.
    Returns: (T, T_k) boolean, True = may attend (lower triangle, diagonal included);
      for T_k != T aligned at the top left, like torch's is_causal.
    Matches: the mask of F.scaled_dot_product_attention(..., is_causal=True); the negation of
      torch.nn.Transformer.generate_square_subsequent_mask(T) == -inf (torch.nn modules' convention).
    """
    T_k = T if T_k is None else T_k
    for name, value in (("T", T), ("T_k", T_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"causal_mask: {name} must be a positive integer, got {value!r}")
    return torch.ones(T, T_k, dtype=torch.bool, device=device).tril()  # (T, T_k)


def padding_mask(lengths: Tensor, T: int) -> Tensor:
    """Where the padding is in a batch of sequences of different lengths.

    Args: lengths (B,) integers, 1 <= length <= T; T, the padded length.
    Returns: (B, T) boolean, True at padding (t >= lengths[b]): the `key_padding_mask` of
      torch.nn.MultiheadAttention and `src_key_padding_mask` of torch.nn.TransformerEncoderLayer.
    """
    check_shapes("padding_mask", lengths=(lengths, "B"))
    check_lengths("padding_mask", lengths, lengths.shape[0], T)
    return torch.arange(T, device=lengths.device) >= lengths[:, None]  # (B, T)


@shapes(key_padding_mask="B T_k")
def padding_to_attn_mask(key_padding_mask: Tensor) -> Tensor:
    """Turn a key padding mask (True = padding, torch.nn's convention) into an attn_mask for the functions here.

    Args: key_padding_mask (B, T_k), boolean with True = padding, or float (added to the scores).
    Returns: (B, 1, 1, T_k): boolean with True = may attend (or the float mask unchanged), which
      broadcasts over heads and queries of scores (B, H, T_q, T_k).
    Matches: how torch.nn.MultiheadAttention merges key_padding_mask into its attention mask.
    """
    if key_padding_mask.dtype == torch.bool:
        return ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
    return key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)


def _combine_masks(first: Tensor | None, second: Tensor | None) -> Tensor | None:
    """Both masks at once (each True = may attend, or float): & for two booleans, else the sum of float masks."""
    if first is None or second is None:
        return second if first is None else first
    if first.dtype == torch.bool and second.dtype == torch.bool:
        return first & second
    dtype = first.dtype if first.is_floating_point() else second.dtype
    as_float = [mask if mask.is_floating_point() else torch.zeros(mask.shape, dtype=dtype, device=mask.device)
                .masked_fill(~mask, float("-inf")) for mask in (first, second)]
    return as_float[0] + as_float[1]


# --- heads ----------------------------------------------------------------------------


@shapes(x="B T D")
def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """Cut every position's D features into H heads of Dh = D / H consecutive features each.

    Args: x (B, T, D); num_heads H, a divisor of D.
    Returns: (B, H, T, Dh); head h holds features h * Dh to (h + 1) * Dh - 1.
    Matches: the head layout of torch.nn.MultiheadAttention and of Hugging Face BERT
      (x.view(B, T, H, Dh).permute(0, 2, 1, 3)).
    """
    check_heads("split_heads", x.shape[-1], num_heads)
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).transpose(1, 2)  # (B, T, H, Dh) -> (B, H, T, Dh)


@shapes(x="B H T Dh")
def merge_heads(x: Tensor) -> Tensor:
    """Put the heads side by side again: the inverse of `split_heads`.

    Args: x (B, H, T, Dh).
    Returns: (B, T, H * Dh), head h in features h * Dh to (h + 1) * Dh - 1.
    """
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, H, Dh) -> (B, T, H * Dh)


def multi_head_attention(query: Tensor, key: Tensor, value: Tensor, q_proj: Sublayer, k_proj: Sublayer,
                         v_proj: Sublayer, out_proj: Sublayer, num_heads: int, attn_mask: Tensor | None = None,
                         dropout: Sublayer | None = None) -> tuple[Tensor, Tensor]:
    """Multi-head attention: H scaled dot-product attentions side by side, mixed by W^O.

        q, k, v = W^Q query, W^K key, W^V value                  (B, T, D) each
        head_h  = softmax(q_h k_h^T / sqrt(Dh) masked) v_h        on features h*Dh ... (h+1)*Dh - 1
        output  = W^O [head_1 ; ... ; head_H]                     (B, T_q, D)

    Args: query (B, T_q, D); key, value (B, T_k, D); q_proj, k_proj, v_proj, out_proj, the
      projections W^Q, W^K, W^V, W^O (e.g. nn.Linear(D, D)); num_heads H, a divisor of D;
      attn_mask None, or boolean with True = may attend (or float, added to the scores),
      broadcasting to (B, H, T_q, T_k), e.g. (T_q, T_k) or (B, 1, 1, T_k); dropout, applied
      to the attention weights before the weighted sum (None: no dropout).
    Returns: output (B, T_q, D); the attention weights of every head (B, H, T_q, T_k), before dropout.
    Matches: torch.nn.MultiheadAttention(D, H, batch_first=True) with the same weights and
      average_attn_weights=False (its bool masks mean the opposite: True = may NOT attend).
    """
    check_shapes("multi_head_attention", query=(query, "B T_q D"), key=(key, "B T_k D"), value=(value, "B T_k D"))
    q, k, v = q_proj(query), k_proj(key), v_proj(value)  # (B, T_q, D), (B, T_k, D), (B, T_k, D)
    q, k, v = split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads)  # (B, H, T, Dh)
    weights = attention_weights(q, k, attn_mask)  # (B, H, T_q, T_k)
    heads = weighted_sum(weights if dropout is None else dropout(weights), v)  # (B, H, T_q, Dh)
    return out_proj(merge_heads(heads)), weights  # (B, T_q, D), (B, H, T_q, T_k)


# --- the module: parameters laid out for torch.nn and Hugging Face --------------------


class MultiHeadAttention(nn.Module):
    """H heads of scaled dot-product attention side by side, batch first, mixed by W^O.

        q, k, v = W^Q query, W^K key, W^V value     (`qkv_projections`)
        head_h  = attention(q_h, k_h, v_h)           on features h * Dh ... (h + 1) * Dh - 1
        output  = W^O [head_1 ; ... ; head_H]

    W^Q, W^K, W^V and W^O are the Linear layers q_proj, k_proj, v_proj and out_proj, each
    (D, D). Their weights copy from
    - torch.nn.MultiheadAttention (`from_torch`): in_proj_weight is q_proj, k_proj and v_proj
      stacked (3D, D), in_proj_bias likewise (3D,); out_proj is out_proj;
    - Hugging Face BERT, layer.attention: self.query -> q_proj, self.key -> k_proj,
      self.value -> v_proj, output.dense -> out_proj (output.LayerNorm belongs to the block).

    `dropout` drops attention weights while training (as torch's does). `forward` takes masks in
    torch.nn.MultiheadAttention's conventions (see there) and returns the weights of every head.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"MultiHeadAttention: embed_dim must be a positive integer, got {embed_dim!r}")
        check_heads("MultiHeadAttention", embed_dim, num_heads)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be a probability in [0, 1), got {dropout!r}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^Q
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^K
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^V
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W^O
        self.dropout = nn.Dropout(dropout)
        # torch.nn.MultiheadAttention's initialisation, drawn from `generator`: Xavier-uniform over the
        # stacked (3D, D) in-projection, nn.Linear's default for out_proj, zero biases.
        in_bound = math.sqrt(6 / (embed_dim + 3 * embed_dim))
        out_bound = 1 / math.sqrt(embed_dim)
        for projection, bound in ((self.q_proj, in_bound), (self.k_proj, in_bound), (self.v_proj, in_bound),
                                  (self.out_proj, out_bound)):
            nn.init.uniform_(projection.weight, -bound, bound, generator=generator)
            if projection.bias is not None:
                nn.init.zeros_(projection.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                attn_mask: Tensor | None = None, is_causal: bool = False) -> tuple[Tensor, Tensor]:
        """Args, in torch.nn.MultiheadAttention(batch_first=True)'s conventions:
          query (B, T_q, D); key, value (B, T_k, D) (all three the same x for self-attention);
          key_padding_mask (B, T_k) or None: boolean with True = padding (no query attends to
          that key), or float, added to the scores;
          attn_mask (T_q, T_k) or (B * H, T_q, T_k) or None: boolean with True = may NOT attend
          (the opposite of F.scaled_dot_product_attention), or float, added to the scores;
          is_causal: query i attends to keys j <= i only, combined with the masks (in torch.nn
          it is only a hint that attn_mask is causal; here it applies `causal_mask`).
        Returns: output (B, T_q, D); the attention weights of every head (B, H, T_q, T_k), before
          dropout. torch.nn.MultiheadAttention returns their mean over the heads, weights.mean(1),
          unless called with average_attn_weights=False. A query with no key to attend to gets
          weights 0 and output out_proj.bias (torch.nn gives NaN when it returns weights).
        """
        name = type(self).__name__
        check_shapes(name, weight=(self.q_proj.weight, "D D"), query=(query, "B T_q D"),
                             key=(key, "B T_k D"), value=(value, "B T_k D"))
        H = self.num_heads
        mask = self._attention_mask(key_padding_mask, attn_mask, is_causal, query, key)
        return multi_head_attention(query, key, value, self.q_proj, self.k_proj, self.v_proj, self.out_proj, H,
                                    mask, self.dropout)  # (B, T_q, D), (B, H, T_q, T_k)

    def _attention_mask(self, key_padding_mask: Tensor | None, attn_mask: Tensor | None, is_causal: bool,
                        query: Tensor, key: Tensor) -> Tensor | None:
        """torch.nn's masks, converted to one attn_mask of the functions' convention (True = may attend):
        (B or 1, H or 1, T_q or 1, T_k), or None."""
        (B, T_q, _), T_k = query.shape, key.shape[1]
        name, H = type(self).__name__, self.num_heads
        for mask_name, mask, meaning in (("key_padding_mask", key_padding_mask, "padding"),
                                         ("attn_mask", attn_mask, "may NOT attend")):
            if isinstance(mask, Tensor) and mask.dtype != torch.bool and not mask.is_floating_point():
                raise ValueError(f"{name}: {mask_name} should be boolean (True = {meaning}) or floating point "
                                 f"(added to the scores), got {mask.dtype}")
        combined = causal_mask(T_q, T_k, device=query.device) if is_causal else None  # (T_q, T_k)
        if key_padding_mask is not None:
            check_shapes(name, query=(query, "B T_q D"), key=(key, "B T_k D"),
                         key_padding_mask=(key_padding_mask, "B T_k"))
            combined = _combine_masks(combined, padding_to_attn_mask(key_padding_mask))  # (B, 1, T_q or 1, T_k)
        if attn_mask is not None:
            if not isinstance(attn_mask, Tensor) or tuple(attn_mask.shape) not in ((T_q, T_k), (B * H, T_q, T_k)):
                got = tuple(attn_mask.shape) if isinstance(attn_mask, Tensor) else type(attn_mask).__name__
                raise ValueError(f"{name}: attn_mask should have shape (T_q, T_k) = {(T_q, T_k)} or (B * H, T_q, T_k) "
                                 f"= {(B * H, T_q, T_k)} (as in torch.nn.MultiheadAttention, True = may NOT "
                                 f"attend), but it has shape {got}")
            if attn_mask.dim() == 3:
                attn_mask = attn_mask.view(B, H, T_q, T_k)  # (B, H, T_q, T_k): torch stacks the heads batch by batch
            allowed = ~attn_mask if attn_mask.dtype == torch.bool else attn_mask  # True = may attend, or float
            combined = _combine_masks(combined, allowed)  # (B or 1, H or 1, T_q, T_k)
        if combined is not None and combined.is_floating_point():
            combined = combined.to(query.dtype)
        return combined

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of a torch.nn.MultiheadAttention(batch_first=True) with the same weights."""
        if type(module) is not nn.MultiheadAttention:
            raise TypeError(f"MultiHeadAttention.from_torch expects a torch.nn.MultiheadAttention, "
                            f"got {type(module).__name__}")
        unsupported = {"batch_first=False (pass batch_first=True)": not module.batch_first,
                       "kdim or vdim different from embed_dim": module.kdim != module.embed_dim
                       or module.vdim != module.embed_dim,
                       "add_bias_kv=True": module.bias_k is not None,
                       "add_zero_attn=True": module.add_zero_attn}
        if any(unsupported.values()):
            raise ValueError(f"MultiHeadAttention.from_torch does not support "
                             f"{', '.join(k for k, v in unsupported.items() if v)}")
        bias = module.in_proj_bias is not None
        ours = cls(module.embed_dim, module.num_heads, module.dropout, bias)
        weights = module.in_proj_weight.detach().chunk(3)  # W^Q, W^K, W^V, each (D, D)
        state = {f"{projection}.weight": weight for projection, weight in zip(("q_proj", "k_proj", "v_proj"), weights)}
        if bias:
            biases = module.in_proj_bias.detach().chunk(3)  # each (D,)
            state |= {f"{projection}.bias": b for projection, b in zip(("q_proj", "k_proj", "v_proj"), biases)}
        state |= {f"out_proj.{key}": value for key, value in module.out_proj.state_dict().items()}
        ours.load_state_dict(state, strict=True)  # every name present; checks every shape
        return ours.to(device=module.in_proj_weight.device, dtype=module.in_proj_weight.dtype)
