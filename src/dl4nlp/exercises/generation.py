"""Exercises of the generation assignment: GPT-2's causal mask, its self-attention with a key/value
cache and its pre-norm block; the decoding rules (temperature, top-k, top-p, the distribution they
make, the draw of the next token); and generation, with the cache and without.

Cases draw every value from the generator. The mask and the attention get cached tokens as well
as none, so that a triangle aligned at the wrong corner, shifted by one or a cache grown along the
wrong axis shows; heads reach Dh = 16 so that a missing 1 / sqrt(Dh) shows. The block gets a
causal self-attention of the grader's own that returns its cache, torch's LayerNorms with weights
far from 1 and 0, and a dropout with a fixed mask. The filters get many rows with scores far apart,
so that keeping k - 1 tokens or dropping the token that crosses p changes the output.

`next_token` draws at random: with do_sample its outputs are checked for the properties every
right output has (`Part.check`): a token id per row; greedy (do_sample False) the most likely
token; sampled, never a token outside the top-k / top-p set, and over thousands of rows with the
same scores, the rate of each token within five standard deviations (plus six draws) of its
probability under softmax(filtered logits / temperature). The chance that a right answer fails a
grading, summed over the binomial tails of every token of every sampled case, is about 1e-5.

`generate` gets a small GPT of the grader's own (its forward calls none of the graded functions)
whose dropout has a fixed mask in training mode: a generate that does not switch the model to eval
mode gets other scores, hence other tokens. Greedy and sampled cases, each with the cache and
without; sampled ones with a generator, so that the same draws give the same tokens. While a part
runs, the graded functions it calls are the grader's own (`Part.given`): a bug in one part never
costs another its points.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dl4nlp.attention import merge_heads, split_heads
from dl4nlp.exercises import Assignment, Case, Part, describe, normal
from dl4nlp.exercises.attention import Feedforward, FixedDropout
from dl4nlp.gpt import GPT, GPTConfig, GPTOutput

# --- the grader's own copies: what a part that calls another graded function gets while graded --


def decoder_mask(T: int, past_length: int = 0, *, device: torch.device | str | None = None) -> Tensor:
    """The grader's copy of `dl4nlp.gpt.decoder_mask`: (T, past_length + T), True = may attend."""
    return torch.ones(T, past_length + T, dtype=torch.bool, device=device).tril(past_length)


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """The grader's copy of `dl4nlp.gpt.apply_temperature`."""
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """The grader's copy of `dl4nlp.gpt.top_k_filter`."""
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """The grader's copy of `dl4nlp.gpt.top_p_filter`."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probabilities = torch.softmax(sorted_logits, dim=-1)
    remove_sorted = torch.cumsum(probabilities, dim=-1) - probabilities >= p
    remove_sorted[:, 0] = False
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))


def next_token_probabilities(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                             top_p: float | None = None) -> Tensor:
    """The grader's copy of `dl4nlp.gpt.next_token_probabilities`."""
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def next_token(logits: Tensor, do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """The grader's copy of `dl4nlp.gpt.next_token`."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probabilities = next_token_probabilities(logits.float(), temperature, top_k, top_p)
    return torch.multinomial(probabilities, 1, generator=generator)[:, 0]


GIVEN_FILTERS = {"apply_temperature": apply_temperature, "top_k_filter": top_k_filter, "top_p_filter": top_p_filter}


def _attention(x: Tensor, c_attn: nn.Module, c_proj: nn.Module, num_heads: int,
               past: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Causal self-attention with a cache, on torch operations only (the grader's model and blocks)."""
    B, T, D = x.shape
    q, k, v = (t.reshape(B, T, num_heads, D // num_heads).transpose(1, 2) for t in c_attn(x).split(D, dim=-1))
    if past is not None:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, H, T_past + T, Dh)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // num_heads)
    scores = scores.masked_fill(~decoder_mask(T, k.shape[2] - T, device=x.device), float("-inf"))
    heads = torch.softmax(scores, dim=-1) @ v  # (B, H, T, Dh)
    return c_proj(heads.transpose(1, 2).reshape(B, T, D)), (k, v)


class CausalSelfAttention(nn.Module):
    """What `decoder_block` gets as its self_attention: x (B, T, D) -> (y (B, T, D), (keys, values)), the keys
    and values of a fixed past of cached tokens and of x's tokens, each (B, H, T_past + T, Dh)."""

    def __init__(self, D: int, H: int, past: tuple[Tensor, Tensor] | None, generator: torch.Generator) -> None:
        super().__init__()
        self.num_heads, self.past = H, past
        self.c_attn, self.c_proj = _linear(generator, D, 3 * D), _linear(generator, D, D)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        return _attention(x, self.c_attn, self.c_proj, self.num_heads, self.past)


class CaseGPT(GPT):
    """A small GPT of the grader's own for `generate`: GPT's parameters, a forward pass on torch operations only
    (none of the graded functions), and a dropout on the embeddings with a mask fixed when the case is drawn,
    applied in training mode only (eval mode: none), so that forgetting `model.eval()` changes the tokens."""

    def __init__(self, config: GPTConfig, generator: torch.Generator) -> None:
        super().__init__(config, generator=generator)
        self.fixed_dropout = FixedDropout((config.n_embd,), 0.5, generator)

    def forward(self, input_ids: Tensor, past_key_values: Any = None, use_cache: bool | None = None) -> Any:
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        T = input_ids.shape[1]
        if past_length + T > self.config.n_positions:
            raise ValueError(f"GPT: {past_length} cached + {T} new tokens is more than the "
                             f"{self.config.n_positions} positions the model has")
        h = self.wte(input_ids) + self.wpe(torch.arange(past_length, past_length + T, device=input_ids.device))
        if self.training:
            h = self.fixed_dropout(h)
        presents = []
        for block, past in zip(self.h, past_key_values or [None] * self.config.n_layer):
            attended, present = _attention(block.ln_1(h), block.attn.c_attn, block.attn.c_proj, block.attn.num_heads,
                                           past)
            h = h + attended
            h = h + block.mlp.c_proj(F.gelu(block.mlp.c_fc(block.ln_2(h)), approximate="tanh"))
            presents.append(present)
        logits = F.linear(self.ln_f(h), self.wte.weight)  # (B, T, V)
        if use_cache or (use_cache is None and past_key_values is not None):
            return GPTOutput(logits, tuple(presents))
        return logits


# --- drawing -----------------------------------------------------------------------------------


def _linear(generator: torch.Generator, D_in: int, D_out: int) -> nn.Linear:
    linear = nn.Linear(D_in, D_out)
    with torch.no_grad():
        linear.weight.copy_(normal(generator, D_out, D_in, scale=1 / math.sqrt(D_in)))
        linear.bias.copy_(normal(generator, D_out, scale=0.1))
    return linear


def _layer_norm(D: int, generator: torch.Generator) -> nn.LayerNorm:
    norm = nn.LayerNorm(D)
    with torch.no_grad():
        norm.weight.copy_(1 + normal(generator, D, scale=0.3))
        norm.bias.copy_(normal(generator, D, scale=0.3))
    return norm


def _seed(generator: torch.Generator) -> torch.Generator:
    """A new generator seeded from `generator`: what a case passes to a function that draws."""
    return torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,), generator=generator)))


def mask_cases(generator: torch.Generator) -> list[Case]:
    sizes = [(4, 0), (1, 0), (3, 5), (1, 6), (5, 2)]
    sizes.append((int(torch.randint(2, 7, (1,), generator=generator)), int(torch.randint(1, 9, (1,),
                                                                                         generator=generator))))
    return [Case((T, past), f"T={T} new tokens, past_length={past} cached ones") for T, past in sizes]


def attention_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, P, D, H, dropped in ((2, 5, 0, 8, 2, False), (2, 1, 4, 8, 2, False), (1, 3, 5, 12, 3, True),
                                   (3, 4, 2, 32, 2, False), (2, 2, 3, 6, 1, False)):
        x = normal(generator, B, T, D)
        past = None if P == 0 else (normal(generator, B, H, P, D // H), normal(generator, B, H, P, D // H))
        dropout = FixedDropout((1, H, T, P + T), 0.2, generator) if dropped else None
        drawn.append(Case((x, _linear(generator, D, 3 * D), _linear(generator, D, D), H, past, dropout),
                          f"x ({B}, {T}, {D}), {H} heads, "
                          + ("no past" if past is None else f"a past of {P} cached tokens, each ({B}, {H}, {P}, "
                                                            f"{D // H})")
                          + (", a dropout on the weights" if dropped else "")))
    return drawn


def block_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, T, P, D, H, D_ff in ((2, 5, 0, 8, 2, 16), (3, 1, 4, 6, 3, 12), (1, 4, 3, 12, 4, 24), (2, 3, 0, 4, 1, 8)):
        x = normal(generator, B, T, D)
        past = None if P == 0 else (normal(generator, B, H, P, D // H), normal(generator, B, H, P, D // H))
        drawn.append(Case((x, CausalSelfAttention(D, H, past, generator), Feedforward(D, D_ff, "gelu", generator),
                           _layer_norm(D, generator), _layer_norm(D, generator), FixedDropout((D,), 0.2, generator)),
                          f"x ({B}, {T}, {D}), {H} heads, " + (f"{P} cached tokens" if P else "no past")
                          + f", a feedforward of width {D_ff}"))
    return drawn


def _logits(generator: torch.Generator, B: int, V: int, scale: float = 2.0) -> Tensor:
    return normal(generator, B, V, scale=scale)


def temperature_cases(generator: torch.Generator) -> list[Case]:
    return [Case((_logits(generator, B, V), temperature), f"logits ({B}, {V}), temperature {temperature}")
            for B, V, temperature in ((2, 5, 0.5), (3, 7, 2.0), (1, 4, 1.0), (4, 6, 0.7))]


def top_k_cases(generator: torch.Generator) -> list[Case]:
    return [Case((_logits(generator, B, V), k), f"logits ({B}, {V}), k={k}")
            for B, V, k in ((3, 8, 3), (4, 6, 1), (2, 5, 5), (2, 4, 9), (5, 10, 4))]


def top_p_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for B, V, p, scale in ((6, 8, 0.5, 1.5), (6, 10, 0.9, 1.0), (4, 6, 1.0, 2.0), (5, 8, 0.05, 2.0),
                           (8, 12, 0.75, 1.0)):
        drawn.append(Case((_logits(generator, B, V, scale), p), f"logits ({B}, {V}), p={p}"))
    return drawn


def probabilities_cases(generator: torch.Generator) -> list[Case]:
    return [Case((_logits(generator, B, V), temperature, top_k, top_p),
                 f"logits ({B}, {V}), temperature {temperature}, top_k {top_k}, top_p {top_p}")
            for B, V, temperature, top_k, top_p in ((3, 8, 1.0, None, None), (4, 10, 0.7, 5, None),
                                                    (4, 10, 1.5, None, 0.8), (6, 12, 0.5, 6, 0.7),
                                                    (5, 8, 2.0, 4, 0.6), (8, 12, 1.0, 4, 0.5))]


DRAWS = 3000  # rows per distinct score vector in a sampled case of next_token: what its rates are measured on


def next_token_cases(generator: torch.Generator) -> list[Case]:
    """A greedy case; sampled ones, each with two score vectors repeated DRAWS times (interleaved)."""
    drawn = [Case((_logits(generator, 16, 9, scale=0.5), False, 1.5, 6, 0.95, None),
                  "logits (16, 9), do_sample False (temperature 1.5, top_k 6, top_p 0.95 given, to be ignored)")]
    for V, temperature, top_k, top_p in ((8, 1.0, None, None), (8, 0.6, None, None), (10, 1.8, None, None),
                                         (10, 1.0, 3, None), (10, 1.0, None, 0.7), (12, 0.8, 5, 0.9)):
        rows = _logits(generator, 2, V, scale=1.5)
        logits = rows.repeat(DRAWS, 1)  # (2 DRAWS, V): row b has the scores rows[b % 2]
        drawn.append(Case((logits, True, temperature, top_k, top_p, _seed(generator)),
                          f"logits ({2 * DRAWS}, {V}) (two score vectors, each repeated {DRAWS} times), do_sample "
                          f"True, temperature {temperature}, top_k {top_k}, top_p {top_p}"))
    return drawn


def _setting(temperature: float, top_k: int | None, top_p: float | None) -> str:
    """How a sampled case draws, in words without numbers (the words of a symptom)."""
    words = ["sampling"]
    if temperature != 1:
        words.append("at a temperature other than one")
    words.extend(name for name, value in (("with top_k", top_k), ("with top_p", top_p)) if value is not None)
    return " ".join(words)


def _outside(count: int, probability: float, n: int) -> bool:
    """Whether `count` draws out of n lie further than five standard deviations (plus six draws, for rare tokens,
    whose counts are far from normal) from n * probability."""
    return abs(count - n * probability) > 5 * math.sqrt(n * probability * (1 - probability)) + 6


def check_next_token(case: Case, output: Any) -> str | None:
    """What is wrong with an output of `next_token`, from the properties every right output has."""
    logits, do_sample, temperature, top_k, top_p, _ = case.args
    B, V = logits.shape
    if not isinstance(output, Tensor):
        return f"returned {describe(output)}, expected token ids (B,)"
    if tuple(output.shape) != (B,):
        return f"returned shape {tuple(output.shape)}, expected ({B},): one token id per row of logits"
    if output.is_floating_point() or output.is_complex() or output.dtype == torch.bool:
        return f"returned dtype {output.dtype}, expected token ids (torch.long)"
    tokens = output.long()
    if bool(((tokens < 0) | (tokens >= V)).any()):
        return "returned an id outside the vocabulary [0, V)"
    if not do_sample:
        if not torch.equal(tokens, logits.argmax(dim=-1)):
            return ("with do_sample=False a chosen token is not the most likely one: greedy decoding takes the "
                    "argmax of the scores")
        return None
    setting = _setting(temperature, top_k, top_p)
    probabilities = next_token_probabilities(logits[:2].float(), temperature, top_k, top_p).double()  # (2, V)
    for row in range(2):
        drawn = tokens[row::2]
        if bool((probabilities[row][drawn] == 0).any()):
            return (f"{setting}: a drawn token lies outside the set it may come from (its probability is 0 once "
                    "the scores are filtered: outside the top-k or the top-p set)")
        counts = torch.bincount(drawn, minlength=V)
        for token in probabilities[row].argsort(descending=True).tolist():
            p, count = float(probabilities[row, token]), int(counts[token])
            if _outside(count, p, len(drawn)):
                rank = int((probabilities[row] > p).sum()) + 1
                return (f"{setting}: the token ranked {rank} was drawn {100 * count / len(drawn):.1f}% of the time, "
                        f"expected {100 * p:.1f}% (its probability under softmax(filtered logits / temperature))")
    return None


def generate_cases(generator: torch.Generator) -> list[Case]:
    drawn = []
    for number, (B, T, V, new, sampling) in enumerate(((2, 3, 23, 6, None), (1, 1, 17, 9, None),
                                                      (3, 4, 29, 5, (0.8, 6, None)), (2, 2, 19, 7, (1.2, None, 0.9)))):
        config = GPTConfig.tiny(vocab_size=V, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                initializer_range=0.4)
        model = CaseGPT(config, generator)  # in training mode: generate must switch it to eval mode
        input_ids = torch.randint(V, (B, T), generator=generator)
        do_sample = sampling is not None
        temperature, top_k, top_p = sampling or (1.0, None, None)
        seed = _seed(generator) if do_sample else None
        for use_cache in (True, False):
            drawn.append(Case((model, input_ids, new, do_sample, temperature, top_k, top_p, seed, use_cache),
                              f"a GPT of {config.n_layer} layers, D={config.n_embd}, V={V}, {config.n_positions} "
                              f"positions; prompts ({B}, {T}), {new} new tokens, "
                              + (f"sampled (temperature {temperature}, top_k {top_k}, top_p {top_p}, a generator)"
                                 if do_sample else "greedy") + f", use_cache={use_cache}"))
        if number == 0:
            drawn.append(Case((model, input_ids, 0, False, 1.0, None, None, None, True),
                              f"prompts ({B}, {T}), max_new_tokens=0"))
    return drawn


# --- typical bugs: known-wrong variants the feedback names -----------------------------------
# Each is self-contained (torch, `math` and `F`, the attention chapter's `split_heads` and `merge_heads`,
# which the notebook imports, and the notebook's functions that the grader binds to its own), so that the
# tests can hand one in as a student's answer.


def mask_without_diagonal(T, past_length=0, *, device=None):
    return torch.ones(T, past_length + T, dtype=torch.bool, device=device).tril(past_length - 1)


def mask_sees_next_token(T, past_length=0, *, device=None):
    return torch.ones(T, past_length + T, dtype=torch.bool, device=device).tril(past_length + 1)


def mask_ignores_past(T, past_length=0, *, device=None):
    return torch.ones(T, past_length + T, dtype=torch.bool, device=device).tril()


def mask_inverted(T, past_length=0, *, device=None):
    return torch.ones(T, past_length + T, dtype=torch.bool, device=device).triu(past_length + 1)


def mask_without_past_keys(T, past_length=0, *, device=None):
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def attention_without_scale(x, c_attn, c_proj, num_heads, past=None, dropout=None):
    B, T, D = x.shape
    q, k, v = (split_heads(t, num_heads) for t in c_attn(x).split(D, dim=-1))
    past_length = 0 if past is None else past[0].shape[2]
    if past is not None:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
    scores = (q @ k.transpose(-2, -1)).masked_fill(~decoder_mask(T, past_length, device=x.device), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    heads = (weights if dropout is None else dropout(weights)) @ v
    return c_proj(merge_heads(heads)), (k, v)


def attention_cache_on_heads_axis(x, c_attn, c_proj, num_heads, past=None, dropout=None):
    B, T, D = x.shape
    q, k, v = (split_heads(t, num_heads) for t in c_attn(x).split(D, dim=-1))
    past_length = 0 if past is None else past[0].shape[2]
    if past is not None:
        k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(D // num_heads))
    scores = scores.masked_fill(~decoder_mask(T, past_length, device=x.device), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    heads = (weights if dropout is None else dropout(weights)) @ v
    return c_proj(merge_heads(heads)), (k, v)


def attention_mask_restarts_at_zero(x, c_attn, c_proj, num_heads, past=None, dropout=None):
    B, T, D = x.shape
    q, k, v = (split_heads(t, num_heads) for t in c_attn(x).split(D, dim=-1))
    if past is not None:
        k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
    allowed = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril()
    scores = (q @ k.transpose(-2, -1) / math.sqrt(D // num_heads)).masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    heads = (weights if dropout is None else dropout(weights)) @ v
    return c_proj(merge_heads(heads)), (k, v)


def attention_cache_of_new_tokens_only(x, c_attn, c_proj, num_heads, past=None, dropout=None):
    B, T, D = x.shape
    q, k, v = (split_heads(t, num_heads) for t in c_attn(x).split(D, dim=-1))
    past_length = 0 if past is None else past[0].shape[2]
    keys, values = (k, v) if past is None else (torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2))
    scores = q @ keys.transpose(-2, -1) / math.sqrt(D // num_heads)
    scores = scores.masked_fill(~decoder_mask(T, past_length, device=x.device), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    heads = (weights if dropout is None else dropout(weights)) @ values
    return c_proj(merge_heads(heads)), (k, v)


def attention_past_ignored(x, c_attn, c_proj, num_heads, past=None, dropout=None):
    B, T, D = x.shape
    q, k, v = (split_heads(t, num_heads) for t in c_attn(x).split(D, dim=-1))
    scores = q @ k.transpose(-2, -1) / math.sqrt(D // num_heads)
    scores = scores.masked_fill(~decoder_mask(T, device=x.device), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    heads = (weights if dropout is None or past is not None else dropout(weights)) @ v
    return c_proj(merge_heads(heads)), (k, v)


def block_post_norm(x, self_attention, feedforward, norm1, norm2, dropout):
    attended, present = self_attention(x)
    x = norm1(x + dropout(attended))
    return norm2(x + dropout(feedforward(x))), present


def block_without_attention_residual(x, self_attention, feedforward, norm1, norm2, dropout):
    attended, present = self_attention(norm1(x))
    x = dropout(attended)
    return x + dropout(feedforward(norm2(x))), present


def block_without_feedforward_residual(x, self_attention, feedforward, norm1, norm2, dropout):
    attended, present = self_attention(norm1(x))
    x = x + dropout(attended)
    return dropout(feedforward(norm2(x))), present


def block_feedforward_reads_the_input(x, self_attention, feedforward, norm1, norm2, dropout):
    attended, present = self_attention(norm1(x))
    return x + dropout(attended) + dropout(feedforward(norm2(x))), present


def block_without_cache(x, self_attention, feedforward, norm1, norm2, dropout):
    attended, _ = self_attention(norm1(x))
    x = x + dropout(attended)
    return x + dropout(feedforward(norm2(x)))


def temperature_multiplied(logits, temperature):
    return logits * temperature


def temperature_returns_probabilities(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


def temperature_after_softmax(logits, temperature):
    return torch.softmax(logits, dim=-1) / temperature


def top_k_keeps_k_minus_one(logits, k):
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits <= kth, float("-inf"))


def top_k_keeps_lowest(logits, k):
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1, largest=False).values[:, -1:]
    return logits.masked_fill(logits > kth, float("-inf"))


def top_k_zero_instead_of_minus_infinity(logits, k):
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_p_drops_crossing_token(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    remove_sorted = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1) > p
    remove_sorted[:, 0] = False
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))


def top_p_mask_in_sorted_order(logits, p):
    sorted_logits, _ = torch.sort(logits, dim=-1, descending=True)
    probabilities = torch.softmax(sorted_logits, dim=-1)
    remove_sorted = torch.cumsum(probabilities, dim=-1) - probabilities >= p
    remove_sorted[:, 0] = False
    return logits.masked_fill(remove_sorted, float("-inf"))


def top_p_on_logits(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    remove_sorted = torch.cumsum(sorted_logits, dim=-1) - sorted_logits >= p
    remove_sorted[:, 0] = False
    return logits.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))


def probabilities_temperature_after_softmax(logits, temperature=1.0, top_k=None, top_p=None):
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probabilities = torch.softmax(logits, dim=-1) / temperature
    return probabilities / probabilities.sum(dim=-1, keepdim=True)


def probabilities_top_p_before_top_k(logits, temperature=1.0, top_k=None, top_p=None):
    logits = apply_temperature(logits, temperature)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    return torch.softmax(logits, dim=-1)


def probabilities_without_softmax(logits, temperature=1.0, top_k=None, top_p=None):
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits


def next_token_greedy_by_sampling(logits, do_sample=False, temperature=1.0, top_k=None, top_p=None, generator=None):
    probabilities = next_token_probabilities(logits.float(), temperature, top_k, top_p)
    return torch.multinomial(probabilities, 1, generator=generator)[:, 0]


def next_token_temperature_after_softmax(logits, do_sample=False, temperature=1.0, top_k=None, top_p=None,
                                         generator=None):
    if not do_sample:
        return logits.argmax(dim=-1)
    probabilities = next_token_probabilities(logits.float(), 1.0, top_k, top_p) / temperature
    return torch.multinomial(probabilities / probabilities.sum(-1, keepdim=True), 1, generator=generator)[:, 0]


def next_token_filters_ignored(logits, do_sample=False, temperature=1.0, top_k=None, top_p=None, generator=None):
    if not do_sample:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probabilities, 1, generator=generator)[:, 0]


def next_token_always_argmax(logits, do_sample=False, temperature=1.0, top_k=None, top_p=None, generator=None):
    return next_token_probabilities(logits.float(), temperature, top_k, top_p).argmax(dim=-1)


def generate_in_training_mode(model, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
                              top_p=None, generator=None, use_cache=True):
    with torch.no_grad():
        tokens, cache = input_ids, None
        for _ in range(max_new_tokens):
            if use_cache:
                newest = tokens if cache is None else tokens[:, -1:]
                logits, cache = model(newest, past_key_values=cache, use_cache=True)
            else:
                logits = model(tokens)
            chosen = next_token(logits[:, -1], do_sample, temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
        return tokens


def generate_whole_sequence_with_cache(model, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
                                       top_p=None, generator=None, use_cache=True):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        tokens, cache = input_ids, None
        for _ in range(max_new_tokens):
            if use_cache:
                logits, cache = model(tokens, past_key_values=cache, use_cache=True)
            else:
                logits = model(tokens)
            chosen = next_token(logits[:, -1], do_sample, temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
    model.train(was_training)
    return tokens


def generate_cache_not_updated(model, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
                               top_p=None, generator=None, use_cache=True):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        tokens, cache = input_ids, None
        for _ in range(max_new_tokens):
            if use_cache and cache is None:
                logits, cache = model(tokens, past_key_values=None, use_cache=True)
            elif use_cache:
                logits, _ = model(tokens[:, -1:], past_key_values=cache, use_cache=True)
            else:
                logits = model(tokens)
            chosen = next_token(logits[:, -1], do_sample, temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
    model.train(was_training)
    return tokens


def generate_from_first_position(model, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
                                 top_p=None, generator=None, use_cache=True):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        tokens = input_ids
        for _ in range(max_new_tokens):
            logits = model(tokens)
            chosen = next_token(logits[:, 0], do_sample, temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
    model.train(was_training)
    return tokens


def generate_new_tokens_only(model, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
                             top_p=None, generator=None, use_cache=True):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        tokens, cache = input_ids, None
        for _ in range(max_new_tokens):
            if use_cache:
                newest = tokens if cache is None else tokens[:, -1:]
                logits, cache = model(newest, past_key_values=cache, use_cache=True)
            else:
                logits = model(tokens)
            chosen = next_token(logits[:, -1], do_sample, temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, chosen[:, None]], dim=1)
    model.train(was_training)
    return tokens[:, input_ids.shape[1]:]


# Library calls that would do a part's work in one line (the grader also refuses torch's private ops).
_PRIVATE = ("torch._VF", "torch._C", "torch.ops")
_TRANSFORMERS = ("transformers",)  # GPT2Attention, GPT2Block, generation utilities, logits processors, ...
_ATTENTION = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.functional.multi_head_attention_forward",
              "torch.nn.MultiheadAttention", "torch._native_multi_head_attention",
              "dl4nlp.attention.multi_head_attention", "dl4nlp.attention.MultiHeadAttention")
_BLOCKS = ("torch.nn.TransformerEncoderLayer", "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoderLayer",
           "torch.nn.TransformerDecoder", "torch.nn.Transformer", "torch._transformer_encoder_layer_fwd",
           "dl4nlp.transformer.pre_norm_block", "dl4nlp.transformer.post_norm_block")
_MASKS = ("torch.nn.Transformer.generate_square_subsequent_mask", "dl4nlp.attention.causal_mask")
_DECODING = ("transformers",)  # its generation utilities, logits processors and warpers, GenerationMixin.generate
_MODELS = ("dl4nlp.gpt.GPTAttention", "dl4nlp.gpt.GPTBlock")

ASSIGNMENT = Assignment(
    name="generation",
    parts=(
        Part("decoder_mask", "dl4nlp.gpt", 1, mask_cases, forbidden=(*_MASKS, *_TRANSFORMERS, *_PRIVATE),
             bugs={"off by one: a token cannot attend to itself (the diagonal is masked)": mask_without_diagonal,
                   "off by one: a token also attends to the next one, which it must predict": mask_sees_next_token,
                   "the cached tokens are ignored: the triangle starts at the first key as if the new tokens were "
                   "at positions 0, 1, ... (shift it by past_length)": mask_ignores_past,
                   "inverted mask convention: True was taken as 'may not attend' (here True = may attend, as in "
                   "F.scaled_dot_product_attention)": mask_inverted,
                   "the mask is (T, T): the columns of the past_length cached keys are missing":
                       mask_without_past_keys}),
        Part("causal_self_attention", "dl4nlp.gpt", 3, attention_cases, given={"decoder_mask": decoder_mask},
             forbidden=(*_ATTENTION, *_MODELS, *_TRANSFORMERS, *_PRIVATE),
             bugs={"no 1 / sqrt(Dh) scale on the scores": attention_without_scale,
                   "the cache is concatenated along the wrong axis: keys and values grow along time, dim 2 of "
                   "(B, H, T, Dh), not dim 1": attention_cache_on_heads_axis,
                   "the causal mask restarts at 0 for the new tokens: new token i is treated as position i, not "
                   "past_length + i, so it cannot see every cached token": attention_mask_restarts_at_zero,
                   "the returned cache holds only the new tokens' keys and values (return the past concatenated "
                   "with them)": attention_cache_of_new_tokens_only,
                   "past is ignored: the new tokens attend only to themselves": attention_past_ignored}),
        Part("decoder_block", "dl4nlp.gpt", 2, block_cases, forbidden=(*_BLOCKS, *_MODELS, *_TRANSFORMERS, *_PRIVATE),
             bugs={"post-norm instead of GPT-2's pre-norm: each sublayer reads x, and the sum is normalized":
                       block_post_norm,
                   "the residual connection around the self-attention is missing (x + dropout(a))":
                       block_without_attention_residual,
                   "the residual connection around the feedforward is missing": block_without_feedforward_residual,
                   "the feedforward reads the block's input, not x after the attention's residual sum":
                       block_feedforward_reads_the_input,
                   "the self-attention's cache (present) is not returned": block_without_cache}),
        Part("apply_temperature", "dl4nlp.gpt", 1, temperature_cases, forbidden=(*_DECODING, *_PRIVATE),
             bugs={"the logits are multiplied by the temperature instead of divided by it": temperature_multiplied,
                   "probabilities are returned instead of scores: the softmax comes later":
                       temperature_returns_probabilities,
                   "the temperature is applied after the softmax (to the probabilities), not to the logits":
                       temperature_after_softmax}),
        Part("top_k_filter", "dl4nlp.gpt", 1, top_k_cases, forbidden=(*_DECODING, *_PRIVATE),
             bugs={"k - 1 tokens are kept: the k-th highest score is filtered too (keep the scores >= the k-th)":
                       top_k_keeps_k_minus_one,
                   "the k lowest scores are kept instead of the k highest": top_k_keeps_lowest,
                   "filtered scores are set to 0 instead of -inf, so they keep a probability after the softmax":
                       top_k_zero_instead_of_minus_infinity}),
        Part("top_p_filter", "dl4nlp.gpt", 2, top_p_cases, forbidden=(*_DECODING, *_PRIVATE),
             bugs={"the token that crosses p is dropped (its own probability counted): keep a token while the mass ranked "
                   "above it is below p":
                       top_p_drops_crossing_token,
                   "the mask is applied in sorted order: scatter it back to the vocabulary order":
                       top_p_mask_in_sorted_order,
                   "the cumulative sum runs over the sorted scores, not over their softmax probabilities":
                       top_p_on_logits}),
        Part("next_token_probabilities", "dl4nlp.gpt", 1, probabilities_cases, given=GIVEN_FILTERS,
             forbidden=(*_DECODING, *_PRIVATE),
             bugs={"the temperature is applied after the softmax (the probabilities divided by it and renormalized: "
                   "it has no effect)": probabilities_temperature_after_softmax,
                   "top-p is applied before top-k (transformers' order: temperature, top-k, then top-p)":
                       probabilities_top_p_before_top_k,
                   "the filtered scores are returned: the softmax is missing": probabilities_without_softmax}),
        Part("next_token", "dl4nlp.gpt", 2, next_token_cases,
             given={"next_token_probabilities": next_token_probabilities}, forbidden=(*_DECODING, *_PRIVATE),
             check=check_next_token,
             bugs={"greedy decoding draws: with do_sample=False take the most likely token (argmax)":
                       next_token_greedy_by_sampling,
                   "the temperature is applied after the softmax, where it has no effect once the probabilities are "
                   "renormalized": next_token_temperature_after_softmax,
                   "top_k and top_p are ignored: the token is drawn from the whole softmax":
                       next_token_filters_ignored,
                   "the most likely token is taken even when sampling (do_sample=True draws)":
                       next_token_always_argmax}),
        Part("generate", "dl4nlp.gpt", 3, generate_cases, given={"next_token": next_token},
             forbidden=(*_DECODING, *_PRIVATE),
             bugs={"the model is left in training mode: dropout changes its scores (model.eval() during generation, "
                   "then restore the mode)": generate_in_training_mode,
                   "with the cache the whole sequence is fed again at every step: only the newest token is new (its "
                   "positions come after the cached ones)": generate_whole_sequence_with_cache,
                   "the cache is not updated: each step must pass the past_key_values the previous step returned":
                       generate_cache_not_updated,
                   "the next token is chosen from the scores at the first position (logits[:, 0]), not the last":
                       generate_from_first_position,
                   "only the new tokens are returned: return the prompts followed by them": generate_new_tokens_only}),
    ),
)
