"""BERT: a bidirectional Transformer encoder, pre-trained by filling in masked words
(MLM) and by telling whether sentence B follows sentence A (NSP).

    embeddings   e_t = LayerNorm(E_word[x_t] + E_pos[t] + E_seg[s_t])      (`bert_embeddings`)
    L layers     h = post-norm Transformer block(h), padding keys masked      (`bert_layer`)
    pooler       p = tanh(W_p h_[CLS] + b_p)                                   (`BertModel`)
    MLM head     logits_t = LayerNorm(gelu(W h_t + b)) E_word^T + b_V          (`mlm_head`; tied to E_word)
    NSP head     logits = W_nsp p + b_nsp: 0 = B follows A, 1 = B is random   (`BertForPreTraining`)

Every position sees the whole sequence, left and right: no causal mask. s_t is the
segment of token t (0 for [CLS] A [SEP], 1 for B [SEP]), which tells the two sentences
of a pair apart. The layers are the attention chapter's: `dl4nlp.transformer`'s
post-norm block and encoder layer with `dl4nlp.attention.MultiHeadAttention`.

Conventions at the edge are Hugging Face's, so inputs from its tokenizers go straight in:
`attention_mask` (B, T) is 1 for a real token and 0 for padding; MLM `labels` are -100
where no prediction is asked for; `next_sentence_label` is 0 when B is A's continuation
and 1 when B is a random sentence. Parameters copy from `transformers.BertModel` and
`transformers.BertForPreTraining` (`from_huggingface`, with the name table
`huggingface_names`); `compare_layers` shows after which sublayer two models part ways.

Pre-training data: `mask_tokens` (15% of the tokens chosen; of those 80% -> [MASK],
10% -> a random token, 10% unchanged), `make_nsp_pairs` (sentence pairs, half of
them random) and `encode_pair` / `encode_pairs` ([CLS] A [SEP] B [SEP] with segments).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any, NamedTuple

import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.attention import Sublayer
from dl4nlp.shapes import check_shapes, optional, shapes
from dl4nlp.transformer import ACTIVATIONS, EncoderLayerConfig, PositionalEmbedding, TransformerEncoder, feedforward

IGNORE_INDEX = -100  # MLM labels of tokens that were not selected: no loss (F.cross_entropy's default ignore_index)


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BertConfig:
    """BERT's sizes, with Hugging Face's field names; the defaults are BERT-base (as transformers.BertConfig()).

    vocab_size V; hidden_size D; num_hidden_layers L; num_attention_heads H (a divisor of D);
    intermediate_size, the feedforward's hidden width; max_position_embeddings, the longest
    input; type_vocab_size, the number of segments; hidden_act, the feedforward's and the MLM
    head's activation ("gelu" is exact, erf-based, as Hugging Face's); dropout probabilities on
    the sublayers' outputs (hidden) and on the attention weights; pad_token_id, the word whose
    embedding starts at zero (None: none); initializer_range, the std of the initial weights.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    hidden_act: str = "gelu"
    pad_token_id: int | None = 0
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BertConfig: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            divisors = [h for h in range(1, self.hidden_size + 1) if self.hidden_size % h == 0]
            raise ValueError(f"BertConfig: hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                             f"{self.num_attention_heads}; each head gets hidden_size / num_attention_heads "
                             f"features, so choose num_attention_heads among {divisors}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"BertConfig: {name} must be a probability in [0, 1), got {getattr(self, name)!r}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act must be one of {sorted(ACTIVATIONS)}, got {self.hidden_act!r}")
        if not self.layer_norm_eps > 0 or not self.initializer_range > 0:
            raise ValueError(f"BertConfig: layer_norm_eps and initializer_range must be positive, got "
                             f"{self.layer_norm_eps!r} and {self.initializer_range!r}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"BertConfig: pad_token_id must be None or an id in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_token_id!r}")

    @classmethod
    def base(cls, **changes: Any) -> BertConfig:
        """BERT-base (Devlin et al. 2019): V=30522, D=768, L=12, H=12, feedforward 3072, 512 positions, 2 segments
        (110M parameters). Keywords change fields, e.g. ``BertConfig.base(num_hidden_layers=6)``."""
        return replace(cls(), **changes)

    @classmethod
    def small(cls, **changes: Any) -> BertConfig:
        """BERT-Small (Turc et al. 2019, google/bert_uncased_L-4_H-512_A-8): D=512, L=4, H=8, feedforward 2048,
        BERT's WordPiece vocabulary (29M parameters, most of them embeddings); trains on a CPU."""
        return replace(cls(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
                       **changes)

    @classmethod
    def tiny(cls, **changes: Any) -> BertConfig:
        """BERT-Tiny (Turc et al. 2019, google/bert_uncased_L-2_H-128_A-2): D=128, L=2, H=2, feedforward 512,
        BERT's WordPiece vocabulary (4.4M parameters); for tests, e.g. ``BertConfig.tiny(vocab_size=100)``."""
        return replace(cls(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
                       **changes)

    @classmethod
    def from_huggingface(cls, config: Any) -> BertConfig:
        """The same sizes as a transformers.BertConfig (an encoder with absolute positions, activation gelu or relu)."""
        import transformers

        if not isinstance(config, transformers.BertConfig):
            raise TypeError(f"BertConfig.from_huggingface expects a transformers.BertConfig, "
                            f"got {type(config).__name__}")
        unsupported = {"is_decoder=True (ours is an encoder)": getattr(config, "is_decoder", False),
                       "add_cross_attention=True": getattr(config, "add_cross_attention", False),
                       f"position_embedding_type={getattr(config, 'position_embedding_type', 'absolute')!r} "
                       f"(ours are absolute)": getattr(config, "position_embedding_type", "absolute") != "absolute",
                       f"hidden_act={config.hidden_act!r} (ours: {sorted(ACTIVATIONS)})":
                           not isinstance(config.hidden_act, str) or config.hidden_act not in ACTIVATIONS}
        if any(unsupported.values()):
            raise ValueError(f"BertConfig.from_huggingface does not support "
                             f"{', '.join(k for k, v in unsupported.items() if v)}")
        return cls(**{field.name: getattr(config, field.name) for field in fields(cls)})


def _init_bert_weights(model: nn.Module, config: BertConfig, generator: torch.Generator | None) -> None:
    """BERT's initialisation (Hugging Face's _init_weights), drawn from `generator`: every Linear and embedding
    weight normal(0, initializer_range), biases 0, the [PAD] embedding 0, LayerNorms weight 1 and bias 0."""
    std = config.initializer_range
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, PositionalEmbedding)):
                nn.init.normal_(module.weight, 0.0, std, generator=generator)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


# --- inputs ---------------------------------------------------------------------------------


def _check_ids(function: str, name: str, ids: Tensor, high: int, meaning: str) -> None:
    """Integer ids, each in [0, high)."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{function}: {name} should hold integer ids (torch.long), got {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= high):
        raise ValueError(f"{function}: {name} holds ids from {int(ids.min())} to {int(ids.max())}, but {meaning}")


def check_bert_inputs(function: str, input_ids: Tensor, token_type_ids: Tensor | None = None,
                      attention_mask: Tensor | None = None, *, vocab_size: int, max_position_embeddings: int,
                      type_vocab_size: int) -> None:
    """Check a batch for a BERT of the given sizes: input_ids (B, T) with 1 <= T <= max_position_embeddings and ids
    in [0, vocab_size); token_type_ids None or (B, T) in [0, type_vocab_size); attention_mask None or (B, T) of 1
    (real token) and 0 (padding).

    Raises: TypeError or ValueError naming `function`, the argument and what to fix.
    """
    check_shapes(function, input_ids=(input_ids, "B T"))
    if token_type_ids is not None:
        check_shapes(function, input_ids=(input_ids, "B T"), token_type_ids=(token_type_ids, "B T"))
    if attention_mask is not None:
        check_shapes(function, input_ids=(input_ids, "B T"), attention_mask=(attention_mask, "B T"))
    T = input_ids.shape[1]
    if not 1 <= T <= max_position_embeddings:
        raise ValueError(f"{function}: input_ids has T={T} tokens, but there are position embeddings for 1 to "
                         f"max_position_embeddings={max_position_embeddings} only; truncate the input, e.g. "
                         f"tokenizer(..., truncation=True, max_length={max_position_embeddings})")
    _check_ids(function, "input_ids", input_ids, vocab_size,
               f"the vocabulary has vocab_size={vocab_size} ids (0 to {vocab_size - 1}): was it tokenized for "
               f"another model?")
    if token_type_ids is not None:
        _check_ids(function, "token_type_ids", token_type_ids, type_vocab_size,
                   f"there are type_vocab_size={type_vocab_size} segments (0 = sentence A with [CLS], 1 = sentence "
                   f"B, ...)")
    if attention_mask is not None and not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError(f"{function}: attention_mask should be 1 for real tokens and 0 for padding (Hugging Face's "
                         f"convention), got the values {sorted(set(attention_mask.flatten().tolist()))[:5]}")


# --- the embeddings ---------------------------------------------------------------------------


@shapes(input_ids="B T", token_type_ids=optional("B T"), word_embeddings="V D", position_embeddings="P D",
        token_type_embeddings="S D")
def bert_embeddings(input_ids: Tensor, token_type_ids: Tensor | None, word_embeddings: Tensor,
                    position_embeddings: Tensor, token_type_embeddings: Tensor, layer_norm: Sublayer,
                    dropout: Sublayer) -> Tensor:
    """BERT's input: each token's word vector plus its position's vector plus its segment's vector, normalized.

        e_t = dropout(LayerNorm(E_word[x_t] + E_pos[t] + E_seg[s_t]))      at positions t = 0, ..., T - 1

    Args: input_ids x (B, T), token ids in [0, V); token_type_ids s (B, T), segments in [0, S) (0 for [CLS] A
      [SEP], 1 for B [SEP]), or None: all 0; word_embeddings E_word (V, D); position_embeddings E_pos (P, D)
      with P >= T; token_type_embeddings E_seg (S, D); layer_norm, e.g. nn.LayerNorm(D, eps=1e-12); dropout,
      e.g. nn.Dropout (identity in eval mode).
    Returns: e (B, T, D).
    Matches: transformers' BertEmbeddings (model.embeddings) with the same weights: word_embeddings.weight,
      position_embeddings.weight, token_type_embeddings.weight, LayerNorm, dropout.
    """
    check_bert_inputs("bert_embeddings", input_ids, token_type_ids, vocab_size=word_embeddings.shape[0],
                      max_position_embeddings=position_embeddings.shape[0],
                      type_vocab_size=token_type_embeddings.shape[0])
    T = input_ids.shape[1]
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)  # (B, T): one sentence, segment 0
    e = word_embeddings[input_ids] + position_embeddings[:T] + token_type_embeddings[token_type_ids]  # (B, T, D)
    return dropout(layer_norm(e))  # (B, T, D)


class BertEmbeddings(nn.Module):
    """The parameters of `bert_embeddings`, named as in Hugging Face's BertEmbeddings (LayerNorm -> layer_norm):
    word_embeddings (nn.Embedding (V, D), the [PAD] row starting at 0), position_embeddings (a learned
    `dl4nlp.transformer.PositionalEmbedding` (P, D)), token_type_embeddings (nn.Embedding (S, D)), layer_norm.

    `bert_embeddings` looks up the weight itself, so the [PAD] row gets the gradients of the padded positions,
    where Hugging Face's nn.Embedding(padding_idx) gives it none: they are zero when the loss leaves the padded
    positions out (attention never looks at them), as BERT's losses do.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        D = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, D, padding_idx=config.pad_token_id)
        self.position_embeddings = PositionalEmbedding(config.max_position_embeddings, D)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, D)
        self.layer_norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Args: input_ids (B, T); token_type_ids (B, T) or None (all 0). Returns: (B, T, D)."""
        return bert_embeddings(input_ids, token_type_ids, self.word_embeddings.weight, self.position_embeddings.weight,
                               self.token_type_embeddings.weight, self.layer_norm, self.dropout)  # (B, T, D)


# --- a layer ----------------------------------------------------------------------------------


@shapes(x="B T D", attention_mask=optional("B T"))
def bert_layer(x: Tensor, attention_mask: Tensor | None, attention: Callable[..., tuple[Tensor, Tensor]],
               feedforward: Sublayer, norm1: Sublayer, norm2: Sublayer, dropout: Sublayer) -> Tensor:
    """One BERT layer: a post-norm Transformer block whose self-attention skips the padding.

        a = norm1(x + dropout(SelfAttention(x)))     keys where attention_mask = 0 get no weight
        y = norm2(a + dropout(FFN(a)))               FFN(a) = W_2 gelu(W_1 a + b_1) + b_2

    Args: x (B, T, D); attention_mask (B, T), 1 = real token and 0 = padding (Hugging Face's convention), or
      None: no padding; attention, called as attention(query, key, value, key_padding_mask) -> (output (B, T, D),
      weights) with key_padding_mask (B, T) True = padding: a `dl4nlp.attention.MultiHeadAttention` or a
      torch.nn.MultiheadAttention(batch_first=True); feedforward, (B, T, D) -> (B, T, D); norm1, norm2, e.g.
      nn.LayerNorm(D, eps=1e-12); dropout, applied to each sublayer's output before the residual sum.
    Returns: y (B, T, D). Outputs at padded positions are computed but mean nothing.
    Matches: transformers' BertLayer (model.encoder.layer[i]): attention.self (query, key, value) and
      attention.output.dense -> attention; attention.output.LayerNorm -> norm1; intermediate.dense, its
      activation and output.dense -> feedforward; output.LayerNorm -> norm2.
    """
    key_padding_mask = None if attention_mask is None else attention_mask == 0  # (B, T): True = padding
    a = norm1(x + dropout(attention(x, x, x, key_padding_mask)[0]))  # (B, T, D): every query sees every real key
    return norm2(a + dropout(feedforward(a)))  # (B, T, D)


# --- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BertModelOutput:
    """What `BertModel` returns: last_hidden_state (B, T, D); pooler_output (B, D), tanh(W_p h_[CLS] + b_p);
    hidden_states, L + 1 tensors (B, T, D): the embeddings, then every layer's output (Hugging Face's
    output_hidden_states=True)."""

    last_hidden_state: Tensor
    pooler_output: Tensor
    hidden_states: tuple[Tensor, ...]


# The modules of one layer in the order they run: (ours, Hugging Face's, what it computes); ours are in
# encoder.layers.i (a dl4nlp.transformer.TransformerEncoderLayer), theirs in encoder.layer.i (a BertLayer).
LAYER_MODULES = [("self_attn.q_proj", "attention.self.query", "query"),
                 ("self_attn.k_proj", "attention.self.key", "key"),
                 ("self_attn.v_proj", "attention.self.value", "value"),
                 ("self_attn.out_proj", "attention.output.dense", "attention output"),
                 ("norm1", "attention.output.LayerNorm", "attention LayerNorm"),
                 ("linear1", "intermediate.dense", "feedforward W_1"), ("linear2", "output.dense", "feedforward W_2"),
                 ("norm2", "output.LayerNorm", "output LayerNorm")]
# The pre-training heads' modules: (ours, Hugging Face BertForPreTraining's, what it computes).
HEAD_MODULES = [("mlm_dense", "cls.predictions.transform.dense", "MLM dense"),
                ("mlm_norm", "cls.predictions.transform.LayerNorm", "MLM LayerNorm"),
                ("nsp", "cls.seq_relationship", "NSP")]


class BertModel(nn.Module):
    """BERT's encoder: `BertEmbeddings`, L post-norm Transformer layers, and a pooler on [CLS].

    The layers are a `dl4nlp.transformer.TransformerEncoder` of `TransformerEncoderLayer`s (post-norm, BERT's
    activation and eps), with BERT's dropouts: attention_probs_dropout_prob on the attention weights,
    hidden_dropout_prob on each sublayer's output, none inside the feedforward. `forward` runs them through
    `bert_layer`; ``model.encoder(x, src_key_padding_mask=attention_mask == 0)`` is the same computation.
    Parameters copy from transformers.BertModel (`from_huggingface`; names in `huggingface_names`).
    """

    def __init__(self, config: BertConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"BertModel expects a dl4nlp.bert.BertConfig, got {type(config).__name__} "
                            f"(for a transformers.BertConfig use BertConfig.from_huggingface)")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        layer = EncoderLayerConfig(config.hidden_size, config.num_attention_heads, config.intermediate_size,
                                   config.hidden_dropout_prob, config.hidden_act, norm_first=False,
                                   layer_norm_eps=config.layer_norm_eps)
        self.encoder = TransformerEncoder(layer, config.num_hidden_layers, generator=generator)
        for encoder_layer in self.encoder.layers:
            encoder_layer.self_attn.dropout = nn.Dropout(config.attention_probs_dropout_prob)  # on the weights
            encoder_layer.dropout = nn.Identity()  # BERT drops nothing between the feedforward's two layers
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)  # W_p, b_p
        _init_bert_weights(self, config, generator)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None) -> BertModelOutput:
        """Args: input_ids (B, T), token ids; token_type_ids (B, T), 0 for [CLS] A [SEP] and 1 for B [SEP], or None
          (all 0); attention_mask (B, T), 1 = real token and 0 = padding, or None (no padding; a mask of all 1
          is treated as None, as Hugging Face's SDPA attention does). Pass them by name: Hugging Face's BertModel
          takes attention_mask second.
        Returns: `BertModelOutput` with last_hidden_state (B, T, D), pooler_output (B, D) and hidden_states.
        Matches: transformers.BertModel with the same weights: last_hidden_state at real positions,
          pooler_output, hidden_states (output_hidden_states=True).
        """
        config = self.config
        check_bert_inputs(type(self).__name__, input_ids, token_type_ids, attention_mask,
                          vocab_size=config.vocab_size, max_position_embeddings=config.max_position_embeddings,
                          type_vocab_size=config.type_vocab_size)
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding anywhere: nothing to mask (Hugging Face skips it too)
        h = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        hidden_states = [h]
        for layer in self.encoder.layers:
            position_wise = partial(feedforward, linear1=layer.linear1, linear2=layer.linear2,
                                    activation=layer.activation, dropout=layer.dropout)  # (B, T, D) -> (B, T, D)
            h = bert_layer(h, attention_mask, layer.self_attn, position_wise, layer.norm1, layer.norm2,
                           layer.residual_dropout)  # (B, T, D)
            hidden_states.append(h)
        pooled = torch.tanh(self.pooler(h[:, 0]))  # (B, D): from the [CLS] token's vector
        return BertModelOutput(h, pooled, tuple(hidden_states))

    @classmethod
    def from_huggingface(cls, model_or_path: Any) -> BertModel:
        """A copy of a transformers.BertModel with the same weights (in the same train/eval mode), or of the one
        ``transformers.BertModel.from_pretrained(path)`` loads from a folder (or, online, a hub name).

        Raises: TypeError for another kind of model; ValueError for a configuration we do not have, and for a
          weight that does not fit, naming the layer and both shapes.
        """
        model = _huggingface_model(model_or_path, "BertModel", cls.__name__)
        if model.pooler is None:
            raise ValueError(f"{cls.__name__}.from_huggingface: the model has no pooler (add_pooling_layer=False); "
                             f"ours always has one")
        ours = cls(BertConfig.from_huggingface(model.config))
        _load_huggingface(ours, model, huggingface_names(ours.config), cls.__name__)
        return ours


def huggingface_names(config: BertConfig, prefix: str = "") -> dict[str, str]:
    """Our parameter names -> Hugging Face BertModel's (each under `prefix`, e.g. "bert." for BertForPreTraining):
    the key table of `from_huggingface`, e.g. "encoder.layers.0.norm1.weight" -> "encoder.layer.0.attention.output
    .LayerNorm.weight"."""
    names = {f"embeddings.{table}.weight": f"embeddings.{table}.weight"
             for table in ("word_embeddings", "position_embeddings", "token_type_embeddings")}
    modules = [("embeddings.layer_norm", "embeddings.LayerNorm"), ("pooler", "pooler.dense")]
    modules += [(f"encoder.layers.{i}.{ours}", f"encoder.layer.{i}.{theirs}")
                for i in range(config.num_hidden_layers) for ours, theirs, _ in LAYER_MODULES]
    names |= {f"{ours}.{kind}": f"{theirs}.{kind}" for ours, theirs in modules for kind in ("weight", "bias")}
    return {f"{prefix}{ours}": f"{prefix}{theirs}" for ours, theirs in names.items()}


def _sublayers(config: BertConfig, heads: bool = False) -> list[tuple[str, str, str, bool]]:
    """(what it computes, our module, Hugging Face's, whether its output has a position axis) for every sublayer
    of a BertModel (and of the heads of a BertForPreTraining, with the prefix bert. on the encoder's modules),
    in the order they run."""
    prefix = "bert." if heads else ""
    rows = [("embeddings", "embeddings", "embeddings", True)]
    rows += [(f"layer {i} {what}", f"encoder.layers.{i}.{ours}", f"encoder.layer.{i}.{theirs}", True)
             for i in range(config.num_hidden_layers) for ours, theirs, what in LAYER_MODULES]
    rows += [("pooler dense", "pooler", "pooler.dense", False)]
    rows = [(what, prefix + ours, prefix + theirs, positions) for what, ours, theirs, positions in rows]
    return rows + [(what, ours, theirs, ours != "nsp") for ours, theirs, what in HEAD_MODULES] if heads else rows


def _huggingface_model(model_or_path: Any, kind: str, function: str) -> nn.Module:
    """The transformers model of class `kind`: the one given, or from_pretrained(path)."""
    import transformers

    hf_class = getattr(transformers, kind)
    if isinstance(model_or_path, (str, os.PathLike)):
        return hf_class.from_pretrained(model_or_path)
    if not isinstance(model_or_path, hf_class):
        hint = " (for a BertForPreTraining pass its .bert)" if kind == "BertModel" else ""
        raise TypeError(f"{function}.from_huggingface expects a transformers.{kind} or a path to one{hint}, "
                        f"got {type(model_or_path).__name__}")
    return model_or_path


def _load_huggingface(ours: nn.Module, theirs: nn.Module, names: dict[str, str], function: str) -> None:
    """Copy theirs' weights into ours by the table `names` (ours -> theirs), checking every name and shape."""
    their_state, own = theirs.state_dict(), ours.state_dict()
    state = {}
    for our_name, their_name in names.items():
        if their_name not in their_state:
            raise ValueError(f"{function}.from_huggingface: the Hugging Face model has no {their_name} "
                             f"(for our {our_name})")
        value, expected = their_state[their_name], own[our_name].shape
        if value.shape != expected:
            raise ValueError(f"{function}.from_huggingface: {their_name} has shape {tuple(value.shape)}, but our "
                             f"{our_name} has shape {tuple(expected)} (from the model's config); the weights do "
                             f"not fit the configuration")
        state[our_name] = value.detach()
    ours.load_state_dict(state, strict=True)  # every one of our names filled
    reference = next(theirs.parameters())
    ours.to(device=reference.device, dtype=reference.dtype).train(theirs.training)


# --- pre-training: the MLM and NSP heads ------------------------------------------------------


@shapes(hidden_states="B T D", word_embeddings="V D", bias="V")
def mlm_head(hidden_states: Tensor, dense: Sublayer, activation: Callable[[Tensor], Tensor], layer_norm: Sublayer,
             word_embeddings: Tensor, bias: Tensor) -> Tensor:
    """The masked-language-model head: a score for every word of the vocabulary at every position.

        logits_t = LayerNorm(act(W h_t + b)) E_word^T + b_V

    The output layer is the input embeddings E_word, transposed (tied weights): a position's vector scores
    each word by how well it matches that word's embedding, and only the bias b_V is the head's own.

    Args: hidden_states h (B, T, D); dense, D -> D (nn.Linear); activation, e.g. F.gelu; layer_norm, over D;
      word_embeddings E_word (V, D); bias b_V (V,).
    Returns: logits (B, T, V).
    Matches: transformers' BertLMPredictionHead (cls.predictions of BertForPreTraining): transform.dense,
      transform_act_fn, transform.LayerNorm, then decoder with weight tied to the word embeddings and bias.
    """
    h = layer_norm(activation(dense(hidden_states)))  # (B, T, D)
    return F.linear(h, word_embeddings, bias)  # (B, T, D) @ (D, V) + (V,) -> (B, T, V)


def check_mlm_labels(function: str, labels: Tensor, vocab_size: int) -> None:
    """ValueError unless `labels` holds integer ids in [0, vocab_size), or -100 where no prediction is asked for."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{function}: labels should hold integer ids (torch.long), got {labels.dtype}")
    wrong = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= vocab_size))
    if bool(wrong.any()):
        raise ValueError(f"{function}: labels should be ids in [0, {vocab_size}) at selected tokens and "
                         f"{IGNORE_INDEX} elsewhere, got {int(labels[wrong][0])}")


@shapes(mlm_logits="B T V", labels="B T")
def mlm_loss(mlm_logits: Tensor, labels: Tensor) -> Tensor:
    """The masked-language-model loss: the mean cross-entropy over the selected tokens only.

        loss = -(1 / |S|) sum over (b, t) in S of log softmax(mlm_logits[b, t])[labels[b, t]]
        S = the selected tokens, where labels != -100

    Args: mlm_logits (B, T, V), a score for every word at every position; labels (B, T), the original id at
      selected tokens and -100 elsewhere (as `mask_tokens` returns them).
    Returns: the loss, a scalar tensor. A batch without a single selected token gives NaN (0 / 0), as in
      Hugging Face.
    Matches: F.cross_entropy(mlm_logits.flatten(0, 1), labels.flatten(), ignore_index=-100), the MLM term of
      transformers.BertForPreTraining's loss.
    """
    check_mlm_labels("mlm_loss", labels, mlm_logits.shape[-1])
    log_probs = torch.log_softmax(mlm_logits, dim=-1)  # (B, T, V)
    selected = labels != IGNORE_INDEX  # (B, T)
    picked = log_probs.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)  # (B, T): log p(label); any id where -100
    return -(picked * selected).sum() / selected.sum()  # the mean over the selected tokens


def pretraining_losses(mlm_logits: Tensor, nsp_logits: Tensor, labels: Tensor | None = None,
                       next_sentence_label: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """BERT's two pre-training losses, each a mean cross-entropy (the MLM one is `mlm_loss`):

        MLM: -mean over selected tokens t of log p(labels_t | masked input)   (labels -100: not selected)
        NSP: -mean over pairs of log p(next_sentence_label | pair)            (0 = B follows A, 1 = B is random)

    Args: mlm_logits (B, T, V); nsp_logits (B, 2); labels (B, T), the original id at selected tokens and -100
      elsewhere, or None; next_sentence_label (B,) in {0, 1}, or None.
    Returns: (mlm_loss, nsp_loss), scalars, each None where its labels are None. An MLM batch without a single
      selected token gives NaN (0 / 0), as in Hugging Face.
    Matches: the CrossEntropyLoss terms of transformers.BertForPreTraining, whose loss is their sum.
    """
    mlm = nsp = None
    if labels is not None:
        check_shapes("pretraining_losses", mlm_logits=(mlm_logits, "B T V"), labels=(labels, "B T"))
        mlm = mlm_loss(mlm_logits, labels)
    if next_sentence_label is not None:
        check_shapes("pretraining_losses", nsp_logits=(nsp_logits, "B 2"),
                     next_sentence_label=(next_sentence_label, "B"))
        nsp = F.cross_entropy(nsp_logits, next_sentence_label)
    return mlm, nsp


@dataclass(frozen=True)
class BertPreTrainingOutput:
    """What `BertForPreTraining` returns: mlm_logits (B, T, V); nsp_logits (B, 2), 0 = B follows A, 1 = B is
    random; loss, mlm_loss + nsp_loss of the labels given (None without labels); mlm_loss and nsp_loss apart;
    hidden_states of the encoder, L + 1 tensors (B, T, D)."""

    mlm_logits: Tensor
    nsp_logits: Tensor
    loss: Tensor | None
    mlm_loss: Tensor | None
    nsp_loss: Tensor | None
    hidden_states: tuple[Tensor, ...]


class BertForPreTraining(nn.Module):
    """`BertModel` with BERT's two pre-training heads: masked-word prediction on every position (`mlm_head`:
    mlm_dense, mlm_norm, the word embeddings as output weights, mlm_bias) and next-sentence prediction on the
    pooled [CLS] vector (nsp, D -> 2). Parameters copy from transformers.BertForPreTraining (`from_huggingface`):
    bert.* as `BertModel`, cls.predictions.transform.dense -> mlm_dense, transform.LayerNorm -> mlm_norm,
    decoder.bias -> mlm_bias, cls.seq_relationship -> nsp.
    """

    def __init__(self, config: BertConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, generator=generator)
        self.mlm_dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.mlm_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(config.vocab_size))  # b_V; the weights are the word embeddings
        self.nsp = nn.Linear(config.hidden_size, 2)
        self.activation = ACTIVATIONS[config.hidden_act]
        _init_bert_weights(nn.ModuleList([self.mlm_dense, self.mlm_norm, self.nsp]), config, generator)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, next_sentence_label: Tensor | None = None) -> BertPreTrainingOutput:
        """Args: input_ids, token_type_ids, attention_mask as in `BertModel.forward`; labels (B, T), the original
          ids of the selected tokens and -100 elsewhere (see `mask_tokens`), or None; next_sentence_label (B,),
          0 = B follows A and 1 = B is random, or None.
        Returns: `BertPreTrainingOutput`; loss is the sum of the losses whose labels are given.
        Matches: transformers.BertForPreTraining: prediction_logits -> mlm_logits, seq_relationship_logits ->
          nsp_logits, loss (Hugging Face computes it only when both labels are given).
        """
        encoded = self.bert(input_ids, token_type_ids, attention_mask)
        mlm_logits = mlm_head(encoded.last_hidden_state, self.mlm_dense, self.activation, self.mlm_norm,
                              self.bert.embeddings.word_embeddings.weight, self.mlm_bias)  # (B, T, V)
        nsp_logits = self.nsp(encoded.pooler_output)  # (B, 2)
        mlm_loss, nsp_loss = pretraining_losses(mlm_logits, nsp_logits, labels, next_sentence_label)
        if mlm_loss is not None and nsp_loss is not None:
            loss = mlm_loss + nsp_loss
        else:
            loss = mlm_loss if mlm_loss is not None else nsp_loss
        return BertPreTrainingOutput(mlm_logits, nsp_logits, loss, mlm_loss, nsp_loss, encoded.hidden_states)

    @classmethod
    def from_huggingface(cls, model_or_path: Any) -> BertForPreTraining:
        """A copy of a transformers.BertForPreTraining with the same weights (in the same train/eval mode), or of
        the one ``transformers.BertForPreTraining.from_pretrained(path)`` loads.

        Raises: TypeError for another kind of model; ValueError for a configuration we do not have, an MLM decoder
          not tied to the word embeddings, or a weight that does not fit (naming the layer and both shapes).
        """
        model = _huggingface_model(model_or_path, "BertForPreTraining", cls.__name__)
        decoder, words = model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight
        if decoder.shape != words.shape or not torch.equal(decoder, words):
            raise ValueError(f"{cls.__name__}.from_huggingface: the model's MLM decoder (cls.predictions.decoder"
                             f".weight {tuple(decoder.shape)}) is not tied to its word embeddings "
                             f"({tuple(words.shape)}); ours always is (tie_word_embeddings=True)")
        ours = cls(BertConfig.from_huggingface(model.config))
        names = huggingface_names(ours.config, prefix="bert.")
        names |= {f"{mine}.{kind}": f"{theirs}.{kind}" for mine, theirs, _ in HEAD_MODULES
                  for kind in ("weight", "bias")}
        names["mlm_bias"] = "cls.predictions.decoder.bias"
        _load_huggingface(ours, model, names, cls.__name__)
        return ours


# --- finding where two models part ways --------------------------------------------------------


def compare_layers(ours: BertModel | BertForPreTraining, theirs: nn.Module, inputs: Mapping[str, Tensor] | Tensor,
                   tolerance: float = 1e-4) -> pd.DataFrame:
    """How far apart two BERTs are after every sublayer, in the order they run: the first row that is not
    close is where to look for a bug.

    Runs both models (in eval mode, without gradients) on the same inputs and records each sublayer's output
    with forward hooks: the embeddings; in every layer the query, key and value projections, the attention
    output (after W^O), the attention LayerNorm, the feedforward's two linear layers and the output LayerNorm;
    the pooler's dense layer; the MLM and NSP heads of pre-training models; then the models' final outputs.

    Args: ours, a `BertModel` or `BertForPreTraining`; theirs, the transformers model of the same kind;
      inputs, a tokenizer's output (input_ids and, optionally, token_type_ids and attention_mask, (B, T) each)
      or input_ids (B, T); tolerance, the largest difference still called close.
    Returns: a pandas DataFrame, one row per sublayer: sublayer, ours (our module), theirs (theirs), shape (ours),
      max_abs_diff (over real positions where the output has a position axis: padding is ignored; NaN if a
      module did not run or the shapes differ) and close (max_abs_diff <= tolerance).
    """
    import transformers

    kind = "BertForPreTraining" if isinstance(ours, BertForPreTraining) else "BertModel"
    if not isinstance(ours, (BertModel, BertForPreTraining)) or not isinstance(theirs, getattr(transformers, kind)):
        raise TypeError(f"compare_layers expects our BertModel and a transformers.BertModel, or our "
                        f"BertForPreTraining and a transformers.BertForPreTraining; got {type(ours).__name__} "
                        f"and {type(theirs).__name__}")
    arguments = {"input_ids": inputs} if isinstance(inputs, Tensor) else \
        {name: inputs[name] for name in ("input_ids", "token_type_ids", "attention_mask") if name in inputs}
    rows = _sublayers(ours.config, heads=kind == "BertForPreTraining")
    recorded: dict[str, Tensor] = {}

    def recorder(key: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            recorded[key] = output[0] if isinstance(output, tuple) else output
        return hook

    handles = [model.get_submodule(name).register_forward_hook(recorder(f"{side}:{name}"))
               for _, our_name, their_name, _ in rows
               for side, model, name in (("ours", ours, our_name), ("theirs", theirs, their_name))]
    modes = ours.training, theirs.training
    try:
        ours.eval()
        theirs.eval()
        with torch.no_grad():
            mine, other = ours(**arguments), theirs(**arguments)
    finally:
        for handle in handles:
            handle.remove()
        ours.train(modes[0])
        theirs.train(modes[1])
    pairs = [(name, our_name, their_name, recorded.get(f"ours:{our_name}"), recorded.get(f"theirs:{their_name}"),
              positions) for name, our_name, their_name, positions in rows]
    if kind == "BertModel":
        pairs += [("last_hidden_state", "", "", mine.last_hidden_state, other.last_hidden_state, True),
                  ("pooler_output", "", "", mine.pooler_output, other.pooler_output, False)]
    else:
        pairs += [("mlm_logits", "", "prediction_logits", mine.mlm_logits, other.prediction_logits, True),
                  ("nsp_logits", "", "seq_relationship_logits", mine.nsp_logits, other.seq_relationship_logits, False)]
    real = arguments.get("attention_mask")
    table = []
    for name, our_name, their_name, our_output, their_output, positions in pairs:
        difference = math.nan
        if our_output is not None and their_output is not None and our_output.shape == their_output.shape:
            gap = (our_output - their_output).abs()  # (B, T, ...) or (B, ...)
            if positions and real is not None:
                gap = gap[real.bool()]  # (real tokens, ...): padded positions left out
            difference = float(gap.max()) if gap.numel() else 0.0
        table.append({"sublayer": name, "ours": our_name or name, "theirs": their_name or name,
                      "shape": None if our_output is None else tuple(our_output.shape),
                      "max_abs_diff": difference, "close": difference <= tolerance})
    return pd.DataFrame(table)


# --- pre-training data ------------------------------------------------------------------------


@shapes(input_ids="B T", special_tokens_mask=optional("B T"))
def mask_tokens(input_ids: Tensor, mask_token_id: int, vocab_size: int, special_tokens_mask: Tensor | None = None,
                mlm_probability: float = 0.15, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking for the MLM task: choose tokens to predict, and hide most of them.

        each token that is not special is selected with probability mlm_probability; of the selected,
        80% -> [MASK], 10% -> a random word of the vocabulary, 10% -> unchanged

    [MASK] never occurs when the model is fine-tuned later, so not every selected token is hidden: the
    model must also predict a word it sees (10%) and the right word in place of a wrong one (10%), and so
    keeps a useful vector for every input word, not only for [MASK].

    Args: input_ids (B, T) token ids; mask_token_id, the id of [MASK]; vocab_size V, random words are drawn
      from [0, V); special_tokens_mask (B, T), True or 1 at tokens never to select ([CLS], [SEP], [PAD]), as a
      tokenizer's return_special_tokens_mask=True gives, or None: every token may be selected;
      mlm_probability in [0, 1]; generator, for the random draws (on input_ids' device).
    Returns: (inputs, labels), each (B, T), new tensors (input_ids is left alone): inputs with the selected
      tokens replaced; labels the original id at selected tokens and -100 elsewhere (no loss there).
    Matches: transformers.DataCollatorForLanguageModeling(mlm_probability=...) in distribution (its random
      words, too, may happen to be the original word or a special token).
    """
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise ValueError(f"mask_tokens: input_ids should hold integer ids (torch.long), got {input_ids.dtype}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"mask_tokens: vocab_size must be a positive integer, got {vocab_size!r}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_tokens: mask_token_id={mask_token_id!r} is not an id of the vocabulary "
                         f"[0, {vocab_size})")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mask_tokens: mlm_probability must be in [0, 1], got {mlm_probability!r}")
    shape, device = input_ids.shape, input_ids.device
    selected = torch.rand(shape, generator=generator, device=device) < mlm_probability  # (B, T)
    if special_tokens_mask is not None:
        selected &= ~special_tokens_mask.bool()  # (B, T): specials are never selected
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)  # (B, T): the original id where selected
    choice = torch.rand(shape, generator=generator, device=device)  # (B, T): which of the three fates
    random_words = torch.randint(vocab_size, shape, generator=generator, device=device, dtype=input_ids.dtype)
    inputs = input_ids.masked_fill(selected & (choice < 0.8), mask_token_id)  # (B, T): 80% [MASK]
    to_random = selected & (choice >= 0.8) & (choice < 0.9)  # (B, T): 10% a random word, the last 10% unchanged
    return torch.where(to_random, random_words, inputs), labels


class SentencePair(NamedTuple):
    """A pair for next-sentence prediction, in Hugging Face's label convention:
    next_sentence_label 0 = b is the sentence after a (IsNext), 1 = b is a random sentence (NotNext)."""

    a: str
    b: str
    next_sentence_label: int


def check_documents(function: str, documents: Any) -> None:
    """TypeError unless `documents` is a list of documents, each a list of sentences (strings)."""
    if isinstance(documents, str) or not isinstance(documents, Sequence) or not all(
            isinstance(doc, Sequence) and not isinstance(doc, str) and all(isinstance(s, str) for s in doc)
            for doc in documents):
        raise TypeError(f"{function}: documents should be a list of documents, each a list of sentences (strings)")


def make_nsp_pairs(documents: Sequence[Sequence[str]], generator: torch.Generator | None = None) -> list[SentencePair]:
    """Sentence pairs for next-sentence prediction: every sentence that has a successor in its document becomes
    an `a`; for half of them (n // 2 of n, chosen at random) `b` is a random sentence, else the true successor.

    A random `b` is a random sentence of a random other document, as in BERT (of the same one only when there
    is a single document), and is never `a` itself nor `a`'s true successor, not even an equal sentence elsewhere.

    Args: documents, each a list of sentences in order; generator, for the random draws.
    Returns: the pairs in document order: `SentencePair(a, b, next_sentence_label)` with 0 = b follows a and
      1 = b is random (Hugging Face's next_sentence_label).
    Raises: ValueError if a pair needs a random sentence and no other sentence is left to draw.
    """
    check_documents("make_nsp_pairs", documents)
    starts = [(d, i) for d, document in enumerate(documents) for i in range(len(document) - 1)]  # a = documents[d][i]
    n = len(starts)
    is_random = torch.zeros(n, dtype=torch.bool)
    is_random[torch.randperm(n, generator=generator)[:n // 2]] = True  # exactly n // 2 random pairs
    others = [e for e, document in enumerate(documents) if document]  # the documents a random b may come from

    def random_sentence(d: int, avoid: tuple[str, str]) -> str:  # a random sentence of a random other document
        for _ in range(100):
            e = others[int(torch.randint(len(others), (1,), generator=generator))]
            if e == d and len(others) > 1:
                continue  # a's own document only when it is the only one
            sentence = documents[e][int(torch.randint(len(documents[e]), (1,), generator=generator))]
            if sentence not in avoid:  # not a, not its successor, not even an equal sentence elsewhere
                return sentence
        candidates = [s for e in others if e != d or len(others) == 1 for s in documents[e] if s not in avoid]
        if not candidates:
            raise ValueError(f"make_nsp_pairs: no sentence to pair at random with {avoid[0]!r}: every other sentence "
                             f"is it or its successor; give more documents")
        return candidates[int(torch.randint(len(candidates), (1,), generator=generator))]

    pairs = []
    for (d, i), random_b in zip(starts, is_random.tolist()):
        a, successor = documents[d][i], documents[d][i + 1]
        b = random_sentence(d, (a, successor)) if random_b else successor
        pairs.append(SentencePair(a, b, int(random_b)))
    return pairs


def encode_pair(a_ids: Sequence[int], b_ids: Sequence[int], cls_token_id: int, sep_token_id: int,
                max_length: int | None = None) -> tuple[list[int], list[int]]:
    """One BERT input from a sentence pair: [CLS] A [SEP] B [SEP], with segment 0 for [CLS] A [SEP] and 1 for B [SEP].

    Args: a_ids, b_ids, the two sentences' token ids without special tokens; cls_token_id, sep_token_id;
      max_length, the longest result (at least 3), or None: no limit. A pair too long loses tokens at the ends of
      its sentences: the shorter keeps min(its length, budget // 2), the longer the rest (the longer is B on a
      tie), where budget = max_length - 3.
    Returns: (input_ids, token_type_ids), lists of the same length.
    Matches: a Hugging Face tokenizer's tokenizer(a, b, truncation=True, max_length=max_length) for BERT
      (input_ids, token_type_ids).
    """
    a_ids, b_ids = list(a_ids), list(b_ids)
    if max_length is not None:
        if max_length < 3:
            raise ValueError(f"encode_pair: max_length must leave room for [CLS] and two [SEP], got {max_length}")
        budget = max_length - 3
        if len(a_ids) + len(b_ids) > budget:
            shorter, longer = (b_ids, a_ids) if len(a_ids) > len(b_ids) else (a_ids, b_ids)
            keep = min(len(shorter), budget // 2)
            shorter[keep:], longer[budget - keep:] = [], []  # in place on our own copies
    input_ids = [cls_token_id, *a_ids, sep_token_id, *b_ids, sep_token_id]
    token_type_ids = [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1)
    return input_ids, token_type_ids


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str, int]], max_length: int = 128) -> dict[str, Tensor]:
    """A batch for `BertForPreTraining` from sentence pairs (e.g. from `make_nsp_pairs`), padded to the longest.

    Args: tokenizer, a Hugging Face BERT tokenizer (encode, cls_token_id, sep_token_id, pad_token_id);
      pairs, (a, b, next_sentence_label) each; max_length, the longest input.
    Returns: {"input_ids", "token_type_ids", "attention_mask"}: (B, T) each, padding with pad_token_id,
      segment 0 and mask 0; "next_sentence_label": (B,). Also "special_tokens_mask" (B, T): True at [CLS],
      [SEP] and [PAD], for `mask_tokens`.
    """
    if not pairs:
        raise ValueError("encode_pairs: no pairs to encode")

    def tokens(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    encoded = [encode_pair(tokens(a), tokens(b), tokenizer.cls_token_id, tokenizer.sep_token_id, max_length)
               for a, b, _ in pairs]
    T = max(len(ids) for ids, _ in encoded)

    def padded(rows: list[list[Any]], value: Any) -> Tensor:
        return torch.tensor([row + [value] * (T - len(row)) for row in rows])  # (B, T)

    input_ids, token_type_ids = [ids for ids, _ in encoded], [segments for _, segments in encoded]
    specials = [[True] + [False] * (segments.count(0) - 2) + [True] + [False] * (segments.count(1) - 1) + [True]
                for segments in token_type_ids]  # [CLS] A [SEP] B [SEP]
    return {"input_ids": padded(input_ids, tokenizer.pad_token_id), "token_type_ids": padded(token_type_ids, 0),
            "attention_mask": padded([[1] * len(ids) for ids in input_ids], 0),
            "special_tokens_mask": padded(specials, True),
            "next_sentence_label": torch.tensor([label for _, _, label in pairs])}
