"""The Transformer block: self-attention, normalization, feedforward, normalization,
with residual connections; positional encodings; a stack of blocks (an encoder).

A block keeps the width D and the number of positions T, so blocks stack:

    post-norm (Vaswani et al. 2017, BERT)       pre-norm (GPT-2; norm_first=True)
    x = LN_1(x + SelfAttention(x))              x = x + SelfAttention(LN_1(x))
    x = LN_2(x + FFN(x))                        x = x + FFN(LN_2(x))

where FFN(x) = W_2 act(W_1 x + b_1) + b_2 works on each position alone (`feedforward`)
and dropout is applied to each sublayer's output before it is added back. The two
placements are the pure functions `post_norm_block` and `pre_norm_block`; they take
the sublayers as callables, so any attention and feedforward can be plugged in.
`TransformerEncoderLayer` holds the parameters, named and shaped as in
`torch.nn.TransformerEncoderLayer` (except self_attn, see `MultiHeadAttention`), so
`from_torch` copies them.

Self-attention by itself is blind to word order: permuting the words permutes the
outputs the same way and changes nothing else. Positional encodings give every
position its own vector, added to the word embeddings: fixed sinusoids
(`sinusoidal_positions`) or learned vectors (`PositionalEmbedding`, as in BERT).

Masks follow torch.nn.TransformerEncoderLayer: `src_key_padding_mask` (B, T) with
True = padding, a boolean `src_mask` with True = may NOT attend (see dl4nlp.attention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.attention import MultiHeadAttention, Sublayer
from dl4nlp.shapes import check_shapes, shapes

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}  # gelu: exact (erf), as BERT


# --- the block's forward ----------------------------------------------------------------


def feedforward(x: Tensor, linear1: Sublayer, linear2: Sublayer, activation: Callable[[Tensor], Tensor],
                dropout: Sublayer) -> Tensor:
    """The position-wise feedforward network: FFN(x_t) = W_2 dropout(act(W_1 x_t + b_1)) + b_2 at every t.

    Args: x (B, T, D); linear1, D -> D_ff (e.g. nn.Linear); linear2, D_ff -> D; activation, e.g.
      F.relu or F.gelu; dropout, applied to the hidden activations (e.g. nn.Dropout, or identity).
    Returns: (B, T, D).
    Matches: torch.nn.TransformerEncoderLayer's feedforward (_ff_block without its dropout2).
    """
    hidden = activation(linear1(x))  # (B, T, D_ff)
    return linear2(dropout(hidden))  # (B, T, D)


@shapes(x="B T D")
def post_norm_block(x: Tensor, self_attention: Sublayer, feedforward: Sublayer, norm1: Sublayer, norm2: Sublayer,
                    dropout: Sublayer) -> Tensor:
    """A Transformer block with the normalization after each residual connection (the original, and BERT's):

        x = norm1(x + dropout(self_attention(x)))
        x = norm2(x + dropout(feedforward(x)))

    Args: x (B, T, D); self_attention, (B, T, D) -> (B, T, D) with its masks applied, e.g.
      ``lambda x: attention(x, x, x, key_padding_mask=mask)[0]``; feedforward, (B, T, D) -> (B, T, D);
      norm1, norm2, e.g. nn.LayerNorm(D); dropout, applied to each sublayer's output (nn.Dropout).
    Returns: (B, T, D).
    Matches: torch.nn.TransformerEncoderLayer(norm_first=False) with the same sublayers.
    """
    x = norm1(x + dropout(self_attention(x)))  # (B, T, D)
    return norm2(x + dropout(feedforward(x)))  # (B, T, D)


@shapes(x="B T D")
def pre_norm_block(x: Tensor, self_attention: Sublayer, feedforward: Sublayer, norm1: Sublayer, norm2: Sublayer,
                   dropout: Sublayer) -> Tensor:
    """A Transformer block with the normalization before each sublayer (GPT-2's; trains more stably when deep):

        x = x + dropout(self_attention(norm1(x)))
        x = x + dropout(feedforward(norm2(x)))

    The residual stream x itself is never normalized: stacks of these end with a final norm.

    Args: as `post_norm_block`: x (B, T, D); self_attention and feedforward, (B, T, D) -> (B, T, D);
      norm1, norm2; dropout.
    Returns: (B, T, D).
    Matches: torch.nn.TransformerEncoderLayer(norm_first=True) with the same sublayers.
    """
    x = x + dropout(self_attention(norm1(x)))  # (B, T, D)
    return x + dropout(feedforward(norm2(x)))  # (B, T, D)


# --- the block as a module: parameters named as in torch.nn ----------------------------


@dataclass(frozen=True)
class EncoderLayerConfig:
    """Sizes of a `TransformerEncoderLayer` (torch.nn's defaults); `activation` is "relu" or "gelu"."""

    d_model: int
    nhead: int
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = False
    layer_norm_eps: float = 1e-5


def _init_linear(linear: nn.Linear, generator: torch.Generator | None) -> None:
    """nn.Linear's default initialisation, drawn from `generator`: uniform in +-1 / sqrt(fan_in)."""
    bound = 1 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound, generator=generator)
    nn.init.uniform_(linear.bias, -bound, bound, generator=generator)


class TransformerEncoderLayer(nn.Module):
    """One Transformer block: self-attention and a feedforward network, each with a residual
    connection and a LayerNorm (after it, or before it with norm_first=True), batch first.

    Parameters as in torch.nn.TransformerEncoderLayer(batch_first=True): self_attn (our
    `MultiHeadAttention`: q_proj, k_proj, v_proj, out_proj), linear1 (D -> D_ff), linear2
    (D_ff -> D), norm1, norm2. Hugging Face BERT's layer maps onto it as attention.self.* and
    attention.output.dense -> self_attn, attention.output.LayerNorm -> norm1,
    intermediate.dense -> linear1, output.dense -> linear2, output.LayerNorm -> norm2
    (post-norm, activation="gelu", layer_norm_eps=1e-12).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, *, layer_norm_eps: float = 1e-5,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"TransformerEncoderLayer: activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        for name, value in (("d_model", d_model), ("nhead", nhead), ("dim_feedforward", dim_feedforward)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TransformerEncoderLayer: {name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"TransformerEncoderLayer: dropout must be a probability in [0, 1), got {dropout!r}")
        if d_model % nhead:
            raise ValueError(f"TransformerEncoderLayer: d_model={d_model} is not divisible by nhead={nhead}; each "
                             f"head gets d_model / nhead features, so choose nhead among "
                             f"{[h for h in range(1, d_model + 1) if d_model % h == 0]}")
        self.config = EncoderLayerConfig(d_model, nhead, dim_feedforward, dropout, activation, norm_first,
                                         layer_norm_eps)
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout, generator=generator)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)  # on the feedforward's hidden activations
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.residual_dropout = nn.Dropout(dropout)  # on each sublayer's output: torch's dropout1 and dropout2
        self.activation = ACTIVATIONS[activation]
        for linear in (self.linear1, self.linear2):
            _init_linear(linear, generator)

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        """Args: src (B, T, D); src_mask (T, T) or (B * H, T, T) or None, boolean with True = may NOT
          attend, or float, added to the scores; src_key_padding_mask (B, T) or None, True = padding;
          is_causal: position i attends to positions j <= i only (applied, not a hint as in torch.nn).
        Returns: (B, T, D). Outputs at padded positions are computed but meaningless.
        Matches: torch.nn.TransformerEncoderLayer(batch_first=True) with the same weights.
        """
        check_shapes(type(self).__name__, weight=(self.norm1.weight, "D"), src=(src, "B T D"))

        def self_attention(x: Tensor) -> Tensor:
            return self.self_attn(x, x, x, src_key_padding_mask, src_mask, is_causal)[0]  # (B, T, D)

        def position_wise(x: Tensor) -> Tensor:
            return feedforward(x, self.linear1, self.linear2, self.activation, self.dropout)  # (B, T, D)

        block = pre_norm_block if self.config.norm_first else post_norm_block
        return block(src, self_attention, position_wise, self.norm1, self.norm2, self.residual_dropout)  # (B, T, D)

    @classmethod
    def from_torch(cls, module: nn.TransformerEncoderLayer) -> TransformerEncoderLayer:
        """A copy of a torch.nn.TransformerEncoderLayer(batch_first=True) with the same weights."""
        if type(module) is not nn.TransformerEncoderLayer:
            raise TypeError(f"TransformerEncoderLayer.from_torch expects a torch.nn.TransformerEncoderLayer, "
                            f"got {type(module).__name__}")
        activation = _activation_name(module.activation)
        if activation is None:
            raise ValueError(f"TransformerEncoderLayer.from_torch supports activation 'relu' or 'gelu' (exact), "
                             f"got {module.activation!r}")
        if module.linear1.bias is None:
            raise ValueError("TransformerEncoderLayer.from_torch does not support bias=False")
        attention = MultiHeadAttention.from_torch(module.self_attn)  # refuses batch_first=False, among others
        ours = cls(module.linear1.in_features, module.self_attn.num_heads, module.linear1.out_features,
                   module.dropout.p, activation, module.norm_first, layer_norm_eps=module.norm1.eps)
        state = {key: value for key, value in module.state_dict().items() if not key.startswith("self_attn.")}
        state |= {f"self_attn.{key}": value for key, value in attention.state_dict().items()}
        ours.load_state_dict(state, strict=True)  # every name present; checks every shape
        return ours.to(device=module.linear1.weight.device, dtype=module.linear1.weight.dtype)


def _activation_name(activation: object) -> str | None:
    """"relu" or "gelu" for the activations torch.nn.TransformerEncoderLayer accepts that we have, else None."""
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu or (isinstance(activation, nn.GELU) and activation.approximate == "none"):
        return "gelu"
    return None


class TransformerEncoder(nn.Module):
    """A stack of `num_layers` Transformer blocks, each initialised on its own, and an optional
    final LayerNorm (usual after pre-norm blocks). Parameters as in torch.nn.TransformerEncoder:
    layers.0.*, layers.1.*, ..., norm.weight, norm.bias.
    """

    def __init__(self, layer: EncoderLayerConfig, num_layers: int, final_norm: bool = False, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"TransformerEncoder: num_layers must be a positive integer, got {num_layers!r}")
        self.config = layer
        self.layers = nn.ModuleList(TransformerEncoderLayer(**asdict(layer), generator=generator)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(layer.d_model, eps=layer.layer_norm_eps) if final_norm else None

    def forward(self, src: Tensor, mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        """Args: src (B, T, D); mask, src_key_padding_mask and is_causal as in
          `TransformerEncoderLayer.forward` (torch.nn's conventions), the same for every layer.
        Returns: (B, T, D).
        Matches: torch.nn.TransformerEncoder (batch-first layers) with the same weights, at real positions
          (in eval mode torch may return zeros at padded ones).
        """
        x = src  # (B, T, D)
        for layer in self.layers:
            x = layer(x, mask, src_key_padding_mask, is_causal)  # (B, T, D)
        return x if self.norm is None else self.norm(x)  # (B, T, D)

    @classmethod
    def from_torch(cls, module: nn.TransformerEncoder) -> TransformerEncoder:
        """A copy of a torch.nn.TransformerEncoder of batch-first layers, with the same weights."""
        if type(module) is not nn.TransformerEncoder:
            raise TypeError(f"TransformerEncoder.from_torch expects a torch.nn.TransformerEncoder, "
                            f"got {type(module).__name__}")
        if module.norm is not None and type(module.norm) is not nn.LayerNorm:
            raise ValueError(f"TransformerEncoder.from_torch supports a final norm that is a LayerNorm or None, "
                             f"got {type(module.norm).__name__}")
        layers = [TransformerEncoderLayer.from_torch(layer) for layer in module.layers]
        if any(layer.config != layers[0].config for layer in layers):
            raise ValueError("TransformerEncoder.from_torch needs layers of one configuration, got "
                             f"{sorted({str(layer.config) for layer in layers})}")
        ours = cls(layers[0].config, len(layers), final_norm=module.norm is not None)
        ours.layers = nn.ModuleList(layers)
        if module.norm is not None:
            ours.norm = nn.LayerNorm(module.norm.normalized_shape, eps=module.norm.eps)
            ours.norm.load_state_dict(module.norm.state_dict())
        first = module.layers[0].linear1.weight
        return ours.to(device=first.device, dtype=first.dtype)


# --- positional encodings ---------------------------------------------------------------


def sinusoidal_positions(T: int, D: int, *, base: float = 10000.0, device: torch.device | str | None = None,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """Fixed positional encodings (Vaswani et al. 2017): sines and cosines of geometrically spaced frequencies.

        PE[t, 2i]     = sin(t / base^(2i / D))
        PE[t, 2i + 1] = cos(t / base^(2i / D))

    Each position gets its own vector, and PE[t + k] is a linear function (a rotation) of PE[t]
    for a fixed offset k, so relative positions are easy to read off. Position 0 is [0, 1, 0, 1, ...].

    Args: T, the number of positions; D, the width (odd D ends with a sine); base; device; dtype.
    Returns: PE (T, D), to add to word embeddings (B, T, D).
    """
    for name, value in (("T", T), ("D", D)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"sinusoidal_positions: {name} must be a positive integer, got {value!r}")
    position = torch.arange(T, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    frequency = base ** (-torch.arange(0, D, 2, dtype=torch.float64, device=device) / D)  # (ceil(D / 2),)
    angle = position * frequency  # (T, ceil(D / 2))
    pe = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)  # (T, 2 * ceil(D / 2)): sin, cos, sin, ...
    return pe[:, :D].to(dtype)  # (T, D)


class PositionalEmbedding(nn.Module):
    """Learned positional encodings: one trained vector per position, added to the input (as in BERT
    and GPT-2). `weight` (max_positions, D) is laid out as nn.Embedding's, so BERT's
    embeddings.position_embeddings.weight copies into it."""

    def __init__(self, max_positions: int, embed_dim: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        for name, value in (("max_positions", max_positions), ("embed_dim", embed_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PositionalEmbedding: {name} must be a positive integer, got {value!r}")
        self.weight = nn.Parameter(torch.empty(max_positions, embed_dim))  # (P, D)
        nn.init.normal_(self.weight, generator=generator)  # nn.Embedding's initialisation

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, T, D), e.g. word embeddings, with T <= max_positions. Returns: x + weight[:T], (B, T, D)."""
        name = type(self).__name__
        check_shapes(name, weight=(self.weight, "P D"), x=(x, "B T D"))
        T, max_positions = x.shape[1], self.weight.shape[0]
        if T > max_positions:
            raise ValueError(f"{name}: x has T={T} positions but there are vectors for max_positions="
                             f"{max_positions} only; shorten the sequences or build a larger PositionalEmbedding")
        return x + self.weight[:T]  # (B, T, D)
