"""A generative Transformer: GPT-2's causal decoder, trained to predict the next token, and decoding.

    embeddings    h = E_word[x_t] + E_pos[t]                                        (`GPT`)
    L blocks      h = pre-norm block(h) with causal self-attention: token i sees j <= i   (`decoder_block`)
                  attention of new tokens over cached keys and values of earlier ones  (`causal_self_attention`)
    LM head       logits_t = LayerNorm_f(h_t) E_word^T   (tied to the word embeddings)
    decoding      next token = argmax (greedy), or a draw from softmax(logits / temperature) restricted to
                  the k most likely tokens (top-k) or the fewest whose probability reaches p (top-p)

The attention is causal (unidirectional) because the model learns p(x_t | x_<t): were token t allowed to
see token t + 1, predicting it would be copying, and the model would have nothing to copy from when it
generates. Generation runs the model once per new token; the key/value cache keeps every layer's keys
and values of the tokens seen so far, so each step computes only the new token's (`generate`'s use_cache).

Parameters are named and laid out as in Hugging Face's GPT-2 (``transformer.h.0.attn.c_attn`` becomes our
``h.0.attn.c_attn``), except that Hugging Face keeps its projections as Conv1D with the weight transposed
(in, out); `GPT.from_huggingface` transposes them into nn.Linear (out, in). The cache is a tuple with one
(key, value) pair per layer, each (B, H, T_past, Dh), as Hugging Face's legacy format.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.attention import Sublayer, attention_weights, merge_heads, split_heads, weighted_sum
from dl4nlp.shapes import check_shapes, shapes
from dl4nlp.transformer import feedforward

KeyValue = tuple[Tensor, Tensor]  # one layer's cached keys and values, each (B, H, T_past, Dh)
Cache = tuple[KeyValue, ...]  # one KeyValue per layer

GPT_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": partial(F.gelu, approximate="tanh"),  # GPT-2's: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GPTConfig:
    """GPT-2's sizes, with Hugging Face's field names; the defaults are GPT-2 small (as transformers.GPT2Config()).

    vocab_size V; n_positions, the longest sequence (the context window); n_embd D; n_layer L; n_head H (a
    divisor of D); n_inner, the feedforward's hidden width (None: 4 D); activation_function ("gelu_new", GPT-2's
    tanh approximation); dropout probabilities on the embeddings, on the sublayers' outputs (resid) and on the
    attention weights; layer_norm_epsilon; initializer_range, the std of the initial weights; bos_token_id and
    eos_token_id (GPT-2's <|endoftext|>, 50256; None: none).
    """

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value!r}")
        if self.n_inner is not None and (isinstance(self.n_inner, bool) or not isinstance(self.n_inner, int)
                                         or self.n_inner < 1):
            raise ValueError(f"GPTConfig: n_inner must be None (4 * n_embd) or a positive integer, got "
                             f"{self.n_inner!r}")
        if self.n_embd % self.n_head:
            divisors = [h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0]
            raise ValueError(f"GPTConfig: n_embd={self.n_embd} is not divisible by n_head={self.n_head}; each head "
                             f"gets n_embd / n_head features, so choose n_head among {divisors}")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"GPTConfig: {name} must be a probability in [0, 1), got {getattr(self, name)!r}")
        if self.activation_function not in GPT_ACTIVATIONS:
            raise ValueError(f"GPTConfig: activation_function must be one of {sorted(GPT_ACTIVATIONS)}, got "
                             f"{self.activation_function!r}")
        if not self.layer_norm_epsilon > 0 or not self.initializer_range > 0:
            raise ValueError(f"GPTConfig: layer_norm_epsilon and initializer_range must be positive, got "
                             f"{self.layer_norm_epsilon!r} and {self.initializer_range!r}")
        for name in ("bos_token_id", "eos_token_id"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"GPTConfig: {name} must be None or an id in [0, vocab_size={self.vocab_size}), got "
                                 f"{getattr(self, name)!r}")

    @property
    def inner_size(self) -> int:
        """The feedforward's hidden width: n_inner, or 4 * n_embd."""
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @classmethod
    def gpt2(cls, **changes: Any) -> GPTConfig:
        """GPT-2 small (Radford et al. 2019): V=50257, 1024 positions, D=768, L=12, H=12 (124M parameters).
        Keywords change fields, e.g. ``GPTConfig.gpt2(n_layer=6)`` (distilgpt2's shape)."""
        return replace(cls(), **changes)

    @classmethod
    def tiny(cls, vocab_size: int = 256, **changes: Any) -> GPTConfig:
        """A GPT for the CPU and for tests: D=64, L=2, H=4, 128 positions, no dropout; the special tokens are the
        last id. E.g. ``GPTConfig.tiny(vocab_size=tokenizer.vocab_size)``."""
        ids = {"bos_token_id": vocab_size - 1, "eos_token_id": vocab_size - 1}
        return replace(cls(vocab_size=vocab_size, n_positions=128, n_embd=64, n_layer=2, n_head=4, resid_pdrop=0.0,
                           embd_pdrop=0.0, attn_pdrop=0.0, **ids), **changes)

    @classmethod
    def from_huggingface(cls, config: Any) -> GPTConfig:
        """The same sizes as a transformers.GPT2Config (GPT-2's attention: scaled by 1 / sqrt(Dh), no extras)."""
        import transformers

        if not isinstance(config, transformers.GPT2Config):
            raise TypeError(f"GPTConfig.from_huggingface expects a transformers.GPT2Config, got "
                            f"{type(config).__name__}")
        unsupported = {"scale_attn_weights=False": not config.scale_attn_weights,
                       "scale_attn_by_inverse_layer_idx=True": config.scale_attn_by_inverse_layer_idx,
                       "reorder_and_upcast_attn=True": config.reorder_and_upcast_attn,
                       "add_cross_attention=True": config.add_cross_attention}
        if any(unsupported.values()):
            raise ValueError(f"GPTConfig.from_huggingface does not support "
                             f"{', '.join(k for k, v in unsupported.items() if v)}")
        values = {field.name: getattr(config, field.name) for field in fields(cls)}
        for name in ("bos_token_id", "eos_token_id"):  # a random small config keeps GPT-2's 50256: no such token
            if not isinstance(values[name], int) or not 0 <= values[name] < values["vocab_size"]:
                values[name] = None
        return cls(**values)


# --- the pure functions: mask, attention with a cache, the block ------------------------------


def decoder_mask(T: int, past_length: int = 0, *, device: torch.device | str | None = None) -> Tensor:
    """Which keys each new token may attend to in a left-to-right model, with `past_length` tokens before them:

        allowed[i, j] = j <= past_length + i      (query i is the token at position past_length + i)

    Args: T, the number of new tokens (queries); past_length, the number of earlier tokens whose keys are
      cached (0 without a cache); device.
    Returns: (T, past_length + T) boolean, True = may attend: every cached key, then a lower triangle with its
      diagonal (a token sees itself).
    Matches: dl4nlp.attention.causal_mask(T) for past_length 0; with a past, torch's is_causal aligned at the
      bottom right (the mask Hugging Face's GPT-2 builds).
    """
    for name, value in (("T", T), ("past_length", past_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "T" else 0):
            raise ValueError(f"decoder_mask: {name} must be a{' positive' if name == 'T' else ' non-negative'} "
                             f"integer, got {value!r}")
    return torch.ones(T, past_length + T, dtype=torch.bool, device=device).tril(past_length)  # (T, past + T)


@shapes(x="B T D")
def causal_self_attention(x: Tensor, c_attn: Sublayer, c_proj: Sublayer, num_heads: int,
                          past: KeyValue | None = None, dropout: Sublayer | None = None) -> tuple[Tensor, KeyValue]:
    """Multi-head causal self-attention of the new tokens x over the cached tokens and themselves:

        q, k, v = split(c_attn(x))                     (B, T, D) each, then (B, H, T, Dh)
        k, v    = [k_past ; k], [v_past ; v]           along the time axis: (B, H, T_past + T, Dh)
        y       = c_proj(merge(softmax(q k^T / sqrt(Dh), decoder_mask) v))

    Args: x (B, T, D), the (normalized) new tokens; c_attn, D -> 3D, the query, key and value projections side
      by side (GPT-2's c_attn); c_proj, D -> D (W^O); num_heads H; past, the cached (keys, values) of the
      T_past earlier tokens, each (B, H, T_past, Dh), or None; dropout on the attention weights (None: none).
    Returns: y (B, T, D); present, (keys, values) of all T_past + T tokens, each (B, H, T_past + T, Dh): the
      cache for the next step.
    Matches: Hugging Face's GPT2Attention with layer_past and use_cache=True (Conv1D weights transposed).
    """
    B, T, D = x.shape
    q, k, v = c_attn(x).split(D, dim=-1)  # (B, T, D) each
    q, k, v = split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads)  # (B, H, T, Dh)
    past_length = 0
    if past is not None:
        check_shapes("causal_self_attention", q=(q, "B H T Dh"), past_keys=(past[0], "B H P Dh"),
                     past_values=(past[1], "B H P Dh"))
        past_length = past[0].shape[2]
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, T_past + T, Dh)
    # One new token, each step of generation, may attend to every key: its row of the mask is all True.
    attn_mask = decoder_mask(T, past_length, device=x.device) if T > 1 else None  # (T, T_past + T)
    weights = attention_weights(q, k, attn_mask)  # (B, H, T, T_past + T)
    heads = weighted_sum(weights if dropout is None else dropout(weights), v)  # (B, H, T, Dh)
    return c_proj(merge_heads(heads)), (k, v)  # (B, T, D), the cache


@shapes(x="B T D")
def decoder_block(x: Tensor, self_attention: Callable[[Tensor], tuple[Tensor, KeyValue]], feedforward: Sublayer,
                  norm1: Sublayer, norm2: Sublayer, dropout: Sublayer) -> tuple[Tensor, KeyValue]:
    """GPT-2's block: a pre-norm Transformer block whose self-attention is causal and returns its cache:

        a, present = self_attention(norm1(x))
        x = x + dropout(a)
        x = x + dropout(feedforward(norm2(x)))

    Args: x (B, T, D), the residual stream of the new tokens; self_attention, (B, T, D) -> ((B, T, D), cache),
      e.g. `causal_self_attention` with its weights and past bound; feedforward, (B, T, D) -> (B, T, D); norm1,
      norm2, e.g. nn.LayerNorm(D); dropout, on each sublayer's output.
    Returns: x (B, T, D); present, the self-attention's cache.
    Matches: dl4nlp.transformer.pre_norm_block with a causal self-attention; Hugging Face's GPT2Block.
    """
    attended, present = self_attention(norm1(x))  # (B, T, D), the layer's keys and values so far
    x = x + dropout(attended)  # (B, T, D)
    return x + dropout(feedforward(norm2(x))), present  # (B, T, D)


# --- the model ----------------------------------------------------------------------------------


class GPTAttention(nn.Module):
    """The parameters of one causal self-attention: c_attn (D -> 3D: W^Q, W^K, W^V side by side), c_proj."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.num_heads = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)

    def forward(self, x: Tensor, past: KeyValue | None = None) -> tuple[Tensor, KeyValue]:
        dropout = self.attn_dropout if self.training else None  # eval mode: no dropout, not even its call
        return causal_self_attention(x, self.c_attn, self.c_proj, self.num_heads, past, dropout)


class GPTMLP(nn.Module):
    """The feedforward: c_fc (D -> D_ff), the activation, c_proj (D_ff -> D)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.inner_size)
        self.c_proj = nn.Linear(config.inner_size, config.n_embd)
        self.activation = GPT_ACTIVATIONS[config.activation_function]

    def forward(self, x: Tensor) -> Tensor:
        return feedforward(x, self.c_fc, self.c_proj, self.activation, no_dropout)  # (B, T, D)


def no_dropout(x: Tensor) -> Tensor:
    """The identity: GPT-2 drops nothing between the feedforward's two layers, and nn.Dropout in eval mode is the
    identity too (at a module call per use, which adds up over the steps of generation)."""
    return x


class GPTBlock(nn.Module):
    """One decoder block's parameters, named as Hugging Face's GPT2Block: ln_1, attn, ln_2, mlp."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPTAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPTMLP(config)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: Tensor, past: KeyValue | None = None) -> tuple[Tensor, KeyValue]:
        dropout = self.resid_dropout if self.training else no_dropout  # eval mode: no dropout, not even its call
        return decoder_block(x, partial(self.attn, past=past), self.mlp, self.ln_1, self.ln_2, dropout)


class GPTOutput(NamedTuple):
    """What `GPT` returns when asked for its cache: logits (B, T, V); past_key_values, one (keys, values) pair per
    layer, each (B, H, T_past + T, Dh)."""

    logits: Tensor
    past_key_values: Cache


class GPT(nn.Module):
    """GPT-2: word and position embeddings, L causal pre-norm blocks, a final LayerNorm, and an LM head tied to
    the word embeddings (logits = ln_f(h) E_word^T: no weights of its own).

    Parameters as Hugging Face's GPT2LMHeadModel's transformer (wte, wpe, h.i.*, ln_f); `from_huggingface` copies
    them. Initialisation as GPT-2's: normal(0, initializer_range), the projections into the residual stream
    (attn.c_proj, mlp.c_proj) with std initializer_range / sqrt(2 L), biases 0, LayerNorms 1 and 0.
    """

    def __init__(self, config: GPTConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a dl4nlp.gpt.GPTConfig, got {type(config).__name__} "
                            f"(for a transformers.GPT2Config use GPTConfig.from_huggingface)")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPTBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self._init_weights(generator)

    def _init_weights(self, generator: torch.Generator | None) -> None:
        std = self.config.initializer_range
        with torch.no_grad():
            for name, module in self.named_modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    scale = 1 / math.sqrt(2 * self.config.n_layer) if name.endswith("c_proj") else 1.0
                    nn.init.normal_(module.weight, 0.0, std * scale, generator=generator)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)
                if isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def forward(self, input_ids: Tensor, past_key_values: Cache | None = None,
                use_cache: bool | None = None) -> Tensor | GPTOutput:
        """Args: input_ids (B, T), the new tokens; past_key_values, the cache of the tokens before them (from an
          earlier call with use_cache), or None; use_cache, return the cache too (default: when one was given).
        Returns: logits (B, T, V), the scores of the token after each position; with use_cache, a `GPTOutput`
          (logits, past_key_values) for the next call.
        Matches: transformers.GPT2LMHeadModel(input_ids, past_key_values=...).logits with the same weights.
        """
        config = self.config
        check_shapes(type(self).__name__, input_ids=(input_ids, "B T"))
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(f"{type(self).__name__}: input_ids should hold integer token ids, got dtype "
                             f"{input_ids.dtype}")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= config.vocab_size):
            raise ValueError(f"{type(self).__name__}: input_ids should be token ids in [0, vocab_size="
                             f"{config.vocab_size}), got values from {int(input_ids.min())} to {int(input_ids.max())}")
        if past_key_values is not None and len(past_key_values) != config.n_layer:
            raise ValueError(f"{type(self).__name__}: past_key_values should have one (keys, values) pair per layer "
                             f"({config.n_layer}), got {len(past_key_values)}")
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        T = input_ids.shape[1]
        if past_length + T > config.n_positions:
            raise ValueError(f"{type(self).__name__}: {past_length} cached + {T} new tokens is more than the "
                             f"{config.n_positions} positions the model has (n_positions); crop the input to its "
                             f"last {config.n_positions} tokens")
        positions = torch.arange(past_length, past_length + T, device=input_ids.device)  # (T,)
        h = self.drop(self.wte(input_ids) + self.wpe(positions))  # (B, T, D)
        presents = []
        for block, past in zip(self.h, past_key_values or [None] * config.n_layer):
            h, present = block(h, past)  # (B, T, D), this layer's keys and values
            presents.append(present)
        logits = F.linear(self.ln_f(h), self.wte.weight)  # (B, T, V): the LM head is E_word
        if use_cache or (use_cache is None and past_key_values is not None):
            return GPTOutput(logits, tuple(presents))
        return logits

    @classmethod
    def from_huggingface(cls, model_or_path: Any) -> GPT:
        """A copy of a transformers.GPT2LMHeadModel (or the one ``from_pretrained(path)`` loads from a folder or,
        online, a hub name such as "gpt2"), in the same train/eval mode, on the same device.

        Raises: TypeError for another kind of model; ValueError for a configuration we do not have, and for a
          weight that does not fit, naming the layer and both shapes.
        """
        import transformers

        if isinstance(model_or_path, (str, os.PathLike)):
            model_or_path = transformers.GPT2LMHeadModel.from_pretrained(model_or_path)
        if not isinstance(model_or_path, transformers.GPT2LMHeadModel):
            raise TypeError(f"GPT.from_huggingface expects a transformers.GPT2LMHeadModel or a path to one, got "
                            f"{type(model_or_path).__name__}")
        theirs = model_or_path
        ours = cls(GPTConfig.from_huggingface(theirs.config))
        their_state, own = theirs.state_dict(), ours.state_dict()
        state = {}
        for name, expected in ((name, value.shape) for name, value in own.items()):
            their_name = f"transformer.{name}"
            if their_name not in their_state:
                raise ValueError(f"GPT.from_huggingface: the Hugging Face model has no {their_name} (for our {name})")
            value = their_state[their_name]
            if name.endswith(".weight") and name.split(".")[-2] in CONV1D_MODULES:
                value = value.t()  # Conv1D keeps (in, out); nn.Linear (out, in)
            if value.shape != expected:
                raise ValueError(f"GPT.from_huggingface: {their_name} has shape {tuple(value.shape)} (as our layout), "
                                 f"but our {name} has shape {tuple(expected)} (from the config); the weights do not "
                                 f"fit the configuration")
            state[name] = value.detach()
        ours.load_state_dict(state, strict=True)
        reference = next(theirs.parameters())
        return ours.to(device=reference.device, dtype=reference.dtype).train(theirs.training)


CONV1D_MODULES = ("c_attn", "c_proj", "c_fc")  # Hugging Face's GPT-2 projections: Conv1D, weight (in, out)


# --- decoding --------------------------------------------------------------------------------------


def check_logits(function: str, logits: Tensor) -> None:
    check_shapes(function, logits=(logits, "B V"))
    if not logits.is_floating_point():
        raise ValueError(f"{function}: logits should be floating point scores (B, V), got dtype {logits.dtype}")


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Sharpen (temperature < 1) or flatten (> 1) the next-token distribution: logits / temperature, before the
    softmax. As temperature -> 0 sampling becomes greedy; at 1 it is the model's own distribution.

    Args: logits (B, V); temperature > 0.
    Returns: (B, V).
    Matches: transformers' TemperatureLogitsWarper.
    """
    check_logits("apply_temperature", logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"apply_temperature: temperature must be a number > 0, got {temperature!r} (for greedy "
                         f"decoding use do_sample=False)")
    return logits / temperature  # (B, V)


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k highest-scoring tokens of each row; the others get -inf (probability 0 after the softmax).
    Tokens tied with the k-th score are kept too.

    Args: logits (B, V); k >= 1 (k >= V keeps everything).
    Returns: (B, V).
    Matches: transformers' TopKLogitsWarper(top_k=k).
    """
    check_logits("top_k_filter", logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k_filter: k must be a positive integer, got {k!r}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1): the k-th highest score
    return logits.masked_fill(logits < kth, float("-inf"))  # (B, V)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the fewest most likely tokens whose probabilities add up to at least p (the token
    that crosses p is kept); the others get -inf.

        sort the probabilities in decreasing order: pi_1 >= pi_2 >= ...
        keep token (r) iff pi_1 + ... + pi_(r-1) < p       (the mass before it has not yet reached p)

    Args: logits (B, V); p in (0, 1] (1 keeps everything).
    Returns: (B, V); the most likely token of each row is always kept.
    Matches: transformers' TopPLogitsWarper(top_p=p).
    """
    check_logits("top_p_filter", logits)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"top_p_filter: p must be a probability in (0, 1], got {p!r}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probabilities = torch.softmax(sorted_logits, dim=-1)  # (B, V), decreasing
    before = torch.cumsum(probabilities, dim=-1) - probabilities  # (B, V): the mass of the tokens ranked above
    remove_sorted = before >= p  # (B, V): the nucleus is already full without this token
    remove_sorted[:, 0] = False  # the most likely token always stays
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # (B, V) back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))  # (B, V)


def next_token_probabilities(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                             top_p: float | None = None) -> Tensor:
    """The distribution a sampled next token is drawn from: temperature, then top-k, then top-p, then softmax.

    Args: logits (B, V), the model's scores for the next token; temperature > 0; top_k, None or >= 1; top_p,
      None or in (0, 1].
    Returns: probabilities (B, V), rows summing to 1, zero outside the top-k / top-p set.
    Matches: the logits processors of transformers' generate(do_sample=True) in the same order, then softmax.
    """
    logits = apply_temperature(logits, temperature)  # (B, V)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)  # (B, V)


def next_token(logits: Tensor, do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Choose the next token of each sequence: the most likely one (greedy), or a draw from
    `next_token_probabilities`.

    Args: logits (B, V); do_sample; temperature, top_k, top_p, as `next_token_probabilities` (ignored when
      greedy); generator, the random source of the draws (the same generator state gives the same tokens).
    Returns: token ids (B,).
    """
    check_logits("next_token", logits)
    if not do_sample:
        return logits.argmax(dim=-1)  # (B,)
    probabilities = next_token_probabilities(logits.float(), temperature, top_k, top_p)  # (B, V)
    where = probabilities.device if generator is None else generator.device
    drawn = torch.multinomial(probabilities.to(where), 1, generator=generator)  # (B, 1)
    return drawn[:, 0].to(logits.device)  # (B,)


@torch.no_grad()
def generate(model: GPT, input_ids: Tensor, max_new_tokens: int, do_sample: bool = False,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:
    """Autoregressive generation: append one token at a time, each chosen from the model's scores for the next
    position given everything before it.

        with the cache:    run the prompt once; then each step runs only the newest token, attending over the
                           cached keys and values of the ones before (T_new model calls of one token each)
        without the cache: each step runs the whole sequence so far again (quadratic in the length)

    Both give the same tokens. The model is put in eval mode (no dropout) for the call and restored after.

    Args: model, a `GPT` (or anything with its forward(input_ids, past_key_values, use_cache) and .config);
      input_ids (B, T), the prompts, all of the same length (no padding); max_new_tokens >= 0; do_sample,
      temperature, top_k, top_p, generator: see `next_token`; use_cache.
    Returns: (B, T + max_new_tokens): the prompts followed by the new tokens.
    Matches: transformers' generate(max_new_tokens=..., do_sample=...) with the same settings token for token
      when greedy (it does not stop at the end-of-text token; cut there yourself).
    """
    check_shapes("generate", input_ids=(input_ids, "B T"))
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if input_ids.shape[1] + max_new_tokens > model.config.n_positions:
        raise ValueError(f"generate: {input_ids.shape[1]} prompt + {max_new_tokens} new tokens is more than the "
                         f"model's {model.config.n_positions} positions; shorten the prompt or generate fewer")
    choose = partial(next_token, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                     generator=generator)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():  # no_grad, and no version counters on the small tensors of every step
            tokens, cache = input_ids, None
            for _ in range(max_new_tokens):
                if use_cache:
                    newest = tokens if cache is None else tokens[:, -1:]  # (B, T) first, then (B, 1)
                    logits, cache = model(newest, past_key_values=cache, use_cache=True)  # (B, T or 1, V)
                else:
                    logits = model(tokens)  # (B, T_so_far, V): everything again
                tokens = torch.cat([tokens, choose(logits[:, -1])[:, None]], dim=1)  # (B, T_so_far + 1)
        return tokens.clone()  # an ordinary tensor again (an inference tensor cannot be saved for backward)
    finally:
        model.train(was_training)


def count_gpt_parameters(config: GPTConfig) -> int:
    """The number of parameters of `GPT(config)`, counted on the meta device (no memory, no values)."""
    with torch.device("meta"):
        return sum(parameter.numel() for parameter in GPT(config).parameters())



# --- the experiment of the chapter page: the same model without the causal mask ------------------


def unmasked_self_attention(x: Tensor, c_attn: Sublayer, c_proj: Sublayer, num_heads: int,
                            past: KeyValue | None = None, dropout: Sublayer | None = None) -> tuple[Tensor, KeyValue]:
    """`causal_self_attention` with no mask: every token attends to every token of the input, the later ones
    too (BERT's self-attention, with GPT-2's weights). Not a model to use: trained to predict the next token,
    it reads the answer off the next position, which is there in training and missing when it generates.

    Args: as `causal_self_attention`; past must be None (a token's keys would change with every later token).
    Returns: y (B, T, D); (keys, values) of the T tokens, each (B, H, T, Dh).
    """
    if past is not None:
        raise ValueError("unmasked_self_attention: a bidirectional model has no key/value cache (every output "
                         "depends on the later tokens); call it on the whole sequence, use_cache=False")
    B, T, D = x.shape
    queries, keys, values = (split_heads(part, num_heads) for part in c_attn(x).split(D, dim=-1))  # (B, H, T, Dh)
    weights = attention_weights(queries, keys)  # (B, H, T, T): no mask, each row over all T tokens
    mixed = weighted_sum(dropout(weights) if dropout is not None else weights, values)  # (B, H, T, Dh)
    return c_proj(merge_heads(mixed)), (keys, values)  # (B, T, D)


class UnmaskedGPTAttention(GPTAttention):
    """GPTAttention's parameters with `unmasked_self_attention`: the bidirectional counterpart of a GPT layer."""

    def forward(self, x: Tensor, past: KeyValue | None = None) -> tuple[Tensor, KeyValue]:
        return unmasked_self_attention(x, self.c_attn, self.c_proj, self.num_heads, past, self.attn_dropout)


def bidirectional_gpt(config: GPTConfig, *, generator: torch.Generator | None = None) -> GPT:
    """A `GPT` whose self-attention has no causal mask, initialised exactly as GPT(config, generator=generator):
    the same model, with the same first weights, but every position sees the whole input. Trained with the
    next-token loss it learns to copy the next input token, so it cannot generate (use use_cache=False).
    """
    model = GPT(config, generator=generator)
    for block in model.h:
        unmasked = UnmaskedGPTAttention(config)
        unmasked.load_state_dict(block.attn.state_dict())
        block.attn = unmasked
    return model
