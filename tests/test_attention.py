"""dl4nlp.attention: contracts, equivalence with torch.nn.functional and torch.nn, invariants."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import assert_seeded_initialisation, close, gradients, leaves
from torch import nn
from torch.nn import functional as F

from dl4nlp.attention import (MultiHeadAttention, attention_scores, attention_weights, causal_mask, merge_heads,
                              multi_head_attention,
                              padding_mask, padding_to_attn_mask, qkv_projections, scaled_dot_product_attention,
                              split_heads, weighted_sum)

GRAD_ATOL = 1e-4  # gradients run through more float32 operations than the outputs


def same_gradients(ours, our_inputs, theirs, their_inputs, seed: int) -> bool:
    """Both computations give the same gradient of one random weighted sum of their outputs
    with respect to each of their inputs (listed in the same order)."""
    return close(gradients(ours, our_inputs, seed), gradients(theirs, their_inputs, seed), atol=GRAD_ATOL)


@st.composite
def attention_shapes(draw):
    """(leading, T_q, T_k, Dh, Dv): 0 to 2 leading (batch, head) dimensions and small sizes."""
    leading = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return leading, draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 4))


@st.composite
def masks(draw, shape: tuple[int, ...], generator: torch.Generator):
    """A mask for scores of `shape` (..., T_q, T_k): None, causal, or a boolean or float tensor whose shape
    broadcasts to `shape` (some dimensions 1, some leading ones left out). Returns (attn_mask, is_causal)."""
    kind = draw(st.sampled_from(["none", "causal", "bool", "float"]))
    if kind in ("none", "causal"):
        return None, kind == "causal"
    dropped = draw(st.integers(0, len(shape) - 2))  # leading dimensions left out
    mask_shape = [size if draw(st.booleans()) else 1 for size in shape[dropped:]]
    if kind == "bool":
        return torch.rand(mask_shape, generator=generator) < 0.7, False  # some rows fully masked, at times
    mask = torch.randn(mask_shape, generator=generator)
    return mask.masked_fill(torch.rand(mask_shape, generator=generator) < 0.3, float("-inf")), False


# --- scaled dot-product attention -------------------------------------------------------------


@given(shape=attention_shapes(), data=st.data(), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_scaled_dot_product_attention_matches_torch(shape, data, seed):
    leading, time_q, time_k, head_dim, value_dim = shape
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(*leading, time_q, head_dim, generator=generator, requires_grad=True)
    k = torch.randn(*leading, time_k, head_dim, generator=generator, requires_grad=True)
    v = torch.randn(*leading, time_k, value_dim, generator=generator, requires_grad=True)
    attn_mask, is_causal = data.draw(masks((*leading, time_q, time_k), generator))
    our_inputs = leaves(q, k, v)
    output = scaled_dot_product_attention(*our_inputs, attn_mask, is_causal)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=is_causal)
    assert output.shape == (*leading, time_q, value_dim)
    assert close(output, expected)
    assert same_gradients(output, our_inputs, expected, [q, k, v], seed)

    weights = attention_weights(q, k, attn_mask, is_causal)  # (..., T_q, T_k)
    assert weights.shape == (*leading, time_q, time_k) and bool((weights >= 0).all())
    row_sums = weights.sum(-1)
    assert bool(((row_sums - 1).abs() < 1e-5).logical_or(row_sums == 0).all())  # a distribution, or no key at all
    assert close(weighted_sum(weights, v), expected)


def test_attention_worked_values():
    # Dh = 2: score_ij = q_i . k_j / sqrt(2)
    q = torch.tensor([[2.0, 0.0]])  # (1, 2)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # (3, 2)
    v = torch.tensor([[1.0], [10.0], [100.0]])  # (3, 1)
    assert close(attention_scores(q, k), torch.tensor([[math.sqrt(2), 0.0, math.sqrt(2)]]))
    e = math.exp(math.sqrt(2))
    alpha = torch.tensor([[e, 1.0, e]]) / (2 * e + 1)
    assert close(attention_weights(q, k), alpha)
    assert close(scaled_dot_product_attention(q, k, v), alpha @ v)
    assert close(attention_weights(q, k, torch.tensor([[False, True, False]])), torch.tensor([[0.0, 1.0, 0.0]]))
    assert weighted_sum(torch.tensor([[0.0, 1.0, 0.0]]), v).tolist() == [[10.0]]  # one-hot weights pick v_j
    equal_keys = torch.ones(4, 2)
    assert close(attention_weights(q, equal_keys), torch.full((1, 4), 0.25))  # equal scores: equal weights


def test_a_query_that_may_attend_to_no_key_gets_zero_weights_and_output_like_torch():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, generator=generator, requires_grad=True) for _ in range(3))
    attn_mask = torch.ones(2, 3, 3, dtype=torch.bool)
    attn_mask[1, 2] = False  # query 2 of sequence 1 may attend to nothing
    float_mask = torch.zeros(2, 3, 3).masked_fill(~attn_mask, float("-inf"))
    our_inputs = leaves(q, k, v)
    for mask in (attn_mask, float_mask):
        output = scaled_dot_product_attention(*our_inputs, mask)
        expected = F.scaled_dot_product_attention(q, k, v, mask)
        assert output[1, 2].tolist() == [0.0] * 4 and close(output, expected)
        assert attention_weights(q, k, mask)[1, 2].tolist() == [0.0] * 3
        our_gradients = gradients(output, our_inputs)
        assert all(bool(torch.isfinite(g).all()) for g in our_gradients)  # no NaN leaks into the gradients
        assert close(our_gradients, gradients(expected, [q, k, v]), atol=GRAD_ATOL)


@pytest.mark.parametrize("mask", [None, "boolean", "float"])
def test_without_autograd_the_weights_are_the_same_and_still_differentiable_with_it(mask):
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4, generator=generator), torch.randn(2, 3, 6, 4, generator=generator)
    allowed = torch.rand(5, 6, generator=generator) > 0.3
    attn_mask = {None: None, "boolean": allowed,
                 "float": torch.zeros(5, 6).masked_fill(~allowed, float("-inf"))}[mask]
    q.requires_grad_(True)
    with_autograd = attention_weights(q, k, attn_mask)  # the softmax gets its own buffer: backward needs it
    with torch.no_grad():
        without = attention_weights(q, k, attn_mask)  # the softmax writes over the scores
    assert torch.allclose(with_autograd, without, atol=1e-6) and not without.requires_grad
    (with_autograd * torch.randn(with_autograd.shape, generator=generator)).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_permuting_keys_and_values_together_changes_nothing():
    generator = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(2, 4, 3, generator=generator), torch.randn(2, 6, 3, generator=generator), \
        torch.randn(2, 6, 5, generator=generator)
    attn_mask = torch.rand(4, 6, generator=generator) < 0.8
    permutation = torch.randperm(6, generator=generator)
    output = scaled_dot_product_attention(q, k, v, attn_mask)
    assert close(scaled_dot_product_attention(q, k[:, permutation], v[:, permutation], attn_mask[:, permutation]),
                 output)
    assert close(attention_weights(q, k[:, permutation], attn_mask[:, permutation]),
                 attention_weights(q, k, attn_mask)[..., permutation])
    assert not close(scaled_dot_product_attention(q, k, v[:, permutation], attn_mask), output)  # values alone: no


def test_with_is_causal_no_query_sees_a_later_key():
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 6, 4, generator=generator) for _ in range(3))
    output = scaled_dot_product_attention(q, k, v, is_causal=True)
    for t in range(6):
        later_k, later_v = k.clone(), v.clone()
        later_k[..., t + 1:, :], later_v[..., t + 1:, :] = 5.0, -3.0  # change every key and value after t
        changed = scaled_dot_product_attention(q, later_k, later_v, is_causal=True)
        assert close(changed[..., :t + 1, :], output[..., :t + 1, :])
        if t < 5:
            assert not close(changed[..., t + 1:, :], output[..., t + 1:, :])
    assert bool((torch.triu(attention_weights(q, k, is_causal=True)[0, 0], diagonal=1) == 0).all())


# --- masks ----------------------------------------------------------------------------------


def test_masks_worked_values():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]
    assert torch.equal(causal_mask(5), ~nn.Transformer.generate_square_subsequent_mask(5).isinf())
    lengths = torch.tensor([3, 1])
    assert padding_mask(lengths, 4).tolist() == [[False, False, False, True], [False, True, True, True]]
    assert padding_to_attn_mask(padding_mask(lengths, 4)).tolist() == [[[[True, True, True, False]]],
                                                                       [[[True, False, False, False]]]]
    float_mask = torch.tensor([[0.0, float("-inf")]])
    assert torch.equal(padding_to_attn_mask(float_mask), float_mask[:, None, None])
    both = causal_mask(4) & padding_to_attn_mask(padding_mask(lengths, 4))  # (B, 1, T, T)
    assert both.shape == (2, 1, 4, 4) and both[0, 0, 3].tolist() == [True, True, True, False]


def test_padded_keys_change_nothing():
    """Attention over a padded batch equals attention over each sequence's real keys alone."""
    generator = torch.Generator().manual_seed(3)
    lengths = torch.tensor([5, 2, 4])
    q, k, v = (torch.randn(3, 2, 5, 4, generator=generator) for _ in range(3))  # (B, H, T, Dh)
    attn_mask = padding_to_attn_mask(padding_mask(lengths, 5))  # (B, 1, 1, T)
    output = scaled_dot_product_attention(q, k, v, attn_mask)
    for b, length in enumerate(lengths.tolist()):
        alone = scaled_dot_product_attention(q[b], k[b, :, :length], v[b, :, :length])
        assert close(output[b], alone)
    garbage_k, garbage_v = k.clone(), v.clone()
    garbage_k[1, :, 2:], garbage_v[1, :, 2:] = 1e4, -1e4
    assert close(scaled_dot_product_attention(q, garbage_k, garbage_v, attn_mask), output)


# --- projections and heads ----------------------------------------------------------------------


@given(batch=st.integers(1, 3), time_q=st.integers(1, 5), time_k=st.integers(1, 5), width=st.integers(1, 8),
       with_bias=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_qkv_projections_match_the_in_projection_of_torch(batch, time_q, time_k, width, with_bias, seed):
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(width, 1, bias=with_bias, batch_first=True)
    if with_bias:
        nn.init.normal_(reference.in_proj_bias)  # torch starts them at zero
    query, key, value = torch.randn(batch, time_q, width), torch.randn(batch, time_k, width), \
        torch.randn(batch, time_k, width)
    weights = reference.in_proj_weight.chunk(3)
    biases = reference.in_proj_bias.chunk(3) if with_bias else (None, None, None)
    q, k, v = qkv_projections(query, key, value, *weights, *biases)
    packed = reference.in_proj_weight, reference.in_proj_bias
    assert close(q, F.linear(query, *packed).chunk(3, dim=-1)[0])  # torch projects all three at once
    assert close(k, F.linear(key, *packed).chunk(3, dim=-1)[1])
    assert close(v, F.linear(value, *packed).chunk(3, dim=-1)[2])
    assert (q.shape, k.shape, v.shape) == ((batch, time_q, width), (batch, time_k, width), (batch, time_k, width))


def test_split_heads_slices_the_features_and_merge_heads_undoes_it():
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).reshape(2, 3, 12)  # (B, T, D)
    heads = split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 3)
    for h in range(4):
        assert torch.equal(heads[:, h], x[..., 3 * h:3 * h + 3])  # head h: features 3h, 3h+1, 3h+2
    assert torch.equal(heads, x.view(2, 3, 4, 3).permute(0, 2, 1, 3))  # Hugging Face BERT's transpose_for_scores
    assert torch.equal(merge_heads(heads), x)
    assert torch.equal(split_heads(x, 1)[:, 0], x)


# --- MultiHeadAttention -----------------------------------------------------------------------


@st.composite
def torch_masks(draw, batch: int, heads: int, time: int, lengths: torch.Tensor, generator: torch.Generator):
    """Masks in torch.nn.MultiheadAttention's conventions, for T_q = T_k = time: (key_padding_mask, attn_mask,
    our is_causal). No query is left without a key (torch.nn would give NaN there)."""
    padding = padding_mask(lengths, time) if draw(st.booleans()) else None  # key 0 is never padding
    kind = draw(st.sampled_from(["none", "causal", "is_causal", "bool", "bool per head", "float"]))
    if kind == "none":
        return padding, None, False
    if kind == "is_causal":
        return padding, None, True
    if kind == "causal":
        return padding, ~causal_mask(time), False  # True = may NOT attend
    blocked = torch.rand(batch * heads if kind == "bool per head" else 1, time, time, generator=generator) < 0.4
    blocked[..., 0] = False  # key 0 stays open
    blocked = blocked if kind == "bool per head" else blocked[0]
    if kind == "float":
        additive = torch.randn(time, time, generator=generator).masked_fill(blocked, float("-inf"))
        return (None if padding is None else torch.zeros(padding.shape).masked_fill(padding, float("-inf")),
                additive, False)
    return padding, blocked, False


@given(batch=st.integers(1, 3), heads=st.integers(1, 3), head_dim=st.integers(1, 4), time=st.integers(1, 5),
       with_bias=st.booleans(), data=st.data(), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_multi_head_attention_copies_torch(batch, heads, head_dim, time, with_bias, data, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    width = heads * head_dim
    reference = nn.MultiheadAttention(width, heads, bias=with_bias, batch_first=True)
    if with_bias:
        nn.init.normal_(reference.in_proj_bias)  # torch starts them at zero
        nn.init.normal_(reference.out_proj.bias)
    ours = MultiHeadAttention.from_torch(reference)
    lengths = torch.randint(1, time + 1, (batch,), generator=generator)
    key_padding_mask, attn_mask, is_causal = data.draw(torch_masks(batch, heads, time, lengths, generator))
    if is_causal:
        their_mask = ~causal_mask(time)
    else:
        their_mask = attn_mask
    self_attention = data.draw(st.booleans())
    x = torch.randn(batch, time, width, requires_grad=True)
    query, key, value = (x, x, x) if self_attention else (
        torch.randn(batch, time, width, requires_grad=True) for _ in range(3))
    their_inputs = [query] if self_attention else [query, key, value]
    our_inputs = leaves(*their_inputs)
    our_query, our_key, our_value = our_inputs * 3 if self_attention else our_inputs
    output, weights = ours(our_query, our_key, our_value, key_padding_mask, attn_mask, is_causal=is_causal)
    expected, expected_weights = reference(query, key, value, key_padding_mask, attn_mask=their_mask,
                                           average_attn_weights=False)
    assert output.shape == (batch, time, width) and weights.shape == (batch, heads, time, time)
    assert close(output, expected) and close(weights, expected_weights)
    assert close(weights.mean(dim=1), reference(query, key, value, key_padding_mask, attn_mask=their_mask)[1])
    our_parameters = [ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight, ours.out_proj.weight]
    their_parameters = [reference.in_proj_weight, reference.out_proj.weight]
    ours_all = gradients((output, weights), our_inputs + our_parameters, seed)
    theirs_all = gradients((expected, expected_weights), their_inputs + their_parameters, seed)
    inputs = len(their_inputs)
    assert close(ours_all[:inputs], theirs_all[:inputs], atol=GRAD_ATOL)
    assert close(torch.cat(ours_all[inputs:inputs + 3]), theirs_all[inputs], atol=GRAD_ATOL)  # stacked q, k, v
    assert close(ours_all[-1], theirs_all[-1], atol=GRAD_ATOL)


def test_multi_head_attention_layout_and_initialisation():
    model = assert_seeded_initialisation(lambda generator: MultiHeadAttention(8, 2, generator=generator))
    assert [(name, tuple(p.shape)) for name, p in model.named_parameters()] == [
        (f"{projection}.{kind}", (8, 8) if kind == "weight" else (8,))
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj") for kind in ("weight", "bias")]
    in_bound, out_bound = math.sqrt(6 / (8 + 24)), 1 / math.sqrt(8)  # torch.nn's: Xavier over (3D, D); Linear
    for projection in (model.q_proj, model.k_proj, model.v_proj):
        largest = float(projection.weight.detach().abs().max())
        assert in_bound / 2 < largest <= in_bound
        assert projection.bias.tolist() == [0.0] * 8
    assert float(model.out_proj.weight.detach().abs().max()) <= out_bound
    assert not torch.equal(model.q_proj.weight, model.k_proj.weight)
    no_bias = MultiHeadAttention(6, 3, bias=False)
    assert [name for name, _ in no_bias.named_parameters()] == [f"{p}.weight" for p in ("q_proj", "k_proj",
                                                                                           "v_proj", "out_proj")]


def test_multi_head_attention_where_no_key_is_left_gives_out_proj_bias_not_nan():
    torch.manual_seed(4)
    reference = nn.MultiheadAttention(4, 2, batch_first=True).eval()
    nn.init.normal_(reference.out_proj.bias)
    ours = MultiHeadAttention.from_torch(reference)
    x = torch.randn(2, 3, 4)
    all_padding = torch.tensor([[False, False, True], [True, True, True]])  # sequence 1: nothing but padding
    output, weights = ours(x, x, x, key_padding_mask=all_padding)
    assert close(output[1], reference.out_proj.bias.expand(3, 4)) and weights[1].abs().sum() == 0
    assert bool(torch.isnan(reference(x, x, x, key_padding_mask=all_padding)[0][1]).all())  # torch.nn: NaN
    assert close(output, reference(x, x, x, key_padding_mask=all_padding, need_weights=False)[0])  # its sdpa path


def test_multi_head_attention_invariants():
    """Padding never changes real outputs; a causal query never sees later words; permuting the keys and
    values together changes nothing."""
    torch.manual_seed(5)
    model = MultiHeadAttention(6, 3).eval()
    nn.init.normal_(model.q_proj.bias)
    lengths = torch.tensor([4, 2])
    x = torch.randn(2, 4, 6)
    output, _ = model(x, x, x, key_padding_mask=padding_mask(lengths, 4))
    for b, length in enumerate(lengths.tolist()):
        alone, _ = model(x[b:b + 1, :length], x[b:b + 1, :length], x[b:b + 1, :length])
        assert close(output[b:b + 1, :length], alone)
    garbage = x.clone()
    garbage[1, 2:] = 100.0
    assert close(model(garbage, garbage, garbage, padding_mask(lengths, 4))[0][1, :2], output[1, :2])

    causal, _ = model(x, x, x, is_causal=True)
    later = x.clone()
    later[:, 2:] = torch.randn(2, 2, 6)
    assert close(model(later, later, later, is_causal=True)[0][:, :2], causal[:, :2])
    assert not close(model(later, later, later, is_causal=True)[0][:, 2:], causal[:, 2:])

    memory = torch.randn(2, 5, 6)  # cross-attention: 4 queries, 5 keys and values
    permutation = torch.randperm(5)
    crossed, _ = model(x, memory, memory)
    assert close(model(x, memory[:, permutation], memory[:, permutation])[0], crossed)


def test_multi_head_attention_dropout_drops_weights_only_while_training():
    torch.manual_seed(6)
    model = MultiHeadAttention(4, 2, dropout=0.5)
    x = torch.randn(2, 5, 4)
    model.train()
    first, second = model(x, x, x)[0], model(x, x, x)[0]
    assert not close(first, second)  # a different dropout mask each call
    model.eval()
    assert close(model(x, x, x)[0], model(x, x, x)[0])
    assert close(model(x, x, x)[1].sum(-1), torch.ones(2, 2, 5))  # the returned weights: before dropout


# --- errors -----------------------------------------------------------------------------------


def test_attention_function_errors_name_the_argument_and_shapes():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    name = "scaled_dot_product_attention"
    with pytest.raises(ValueError, match=rf"{name}: q should have shape \(\.\.\., T_q, Dh\), at least 2 dimensions, "
                                         r"but it has shape \(4,\)"):
        scaled_dot_product_attention(q[0, 0], k, v)
    with pytest.raises(ValueError, match=rf"{name}: k should have shape \(\.\.\., T_k, Dh\) = \(\.\.\., 5, 4\), "
                                         r"but it has shape \(2, 5, 3\)"):
        scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match=rf"{name}: v should have shape \(\.\.\., T_k, Dv\) = \(\.\.\., 5, Dv\), "
                                         r"but it has shape \(2, 4, 6\)"):
        scaled_dot_product_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match=rf"{name}: the leading \(batch, head\) dimensions should be equal or "
                                         r"broadcast together.*q \(2, 3, 4\), k \(3, 5, 4\)"):
        scaled_dot_product_attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 6))
    with pytest.raises(ValueError, match=rf"{name}: attn_mask should have shape \(\.\.\., T_q, T_k\) = \(2, 3, 5\) "
                                         r"or one that broadcasts to it, e.g. \(T_q, T_k\) = \(3, 5\), but it has "
                                         r"shape \(5, 3\).*padding_to_attn_mask"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"{name}: attn_mask should have shape .* but it has shape \(5,\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, dtype=torch.bool))  # at least (T_q, T_k), as in torch
    with pytest.raises(ValueError, match=rf"{name}: attn_mask should be boolean \(True = may attend\) or floating "
                                         r"point \(added to the scores\), got torch.int64"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"{name}: pass attn_mask or is_causal=True, not both"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(ValueError, match=r"attention_weights: attn_mask should have shape \(\.\.\., T_q, T_k\) = "
                                         r"\(2, 3, 5\)"):
        attention_weights(q, k, torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"weighted_sum: v should have shape \(\.\.\., T_k, Dv\) = \(\.\.\., 3, Dv\)"):
        weighted_sum(torch.ones(2, 3, 3), v)
    with pytest.raises(ValueError, match=r"attention_scores: k should have shape \(\.\.\., T_k, Dh\)"):
        attention_scores(q, v)
    with pytest.raises(TypeError, match=rf"{name}: v should be a torch.Tensor"):
        scaled_dot_product_attention(q, k, v.tolist())


def test_mask_and_head_errors():
    with pytest.raises(ValueError, match=r"split_heads: D=10 is not divisible by num_heads=3; "
                                         r".* among \[1, 2, 5, 10\]"):
        split_heads(torch.randn(2, 3, 10), 3)
    with pytest.raises(ValueError, match=r"split_heads: num_heads must be a positive integer, got 0"):
        split_heads(torch.randn(2, 3, 10), 0)
    with pytest.raises(ValueError, match=r"split_heads: x should have shape \(B, T, D\)"):
        split_heads(torch.randn(3, 10), 2)
    with pytest.raises(ValueError, match=r"merge_heads: x should have shape \(B, H, T, Dh\)"):
        merge_heads(torch.randn(3, 10, 2))
    with pytest.raises(ValueError, match=r"causal_mask: T must be a positive integer, got 0"):
        causal_mask(0)
    with pytest.raises(ValueError, match=r"causal_mask: T_k must be a positive integer, got 2.5"):
        causal_mask(3, 2.5)
    with pytest.raises(ValueError, match=r"padding_mask: every length must be between 1 and T=4, got \[5, 2\]"):
        padding_mask(torch.tensor([5, 2]), 4)
    with pytest.raises(ValueError, match=r"padding_to_attn_mask: key_padding_mask should have shape \(B, T_k\)"):
        padding_to_attn_mask(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"qkv_projections: query should have shape \(B, T_q, D\) = \(2, 3, 4\), "
                                         r"but it has shape \(2, 3, 5\)"):
        qkv_projections(torch.randn(2, 3, 5), torch.randn(2, 3, 4), torch.randn(2, 3, 4), *torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match=r"qkv_projections: value should have shape \(B, T_k, D\) = \(2, 6, 4\)"):
        qkv_projections(torch.randn(2, 3, 4), torch.randn(2, 6, 4), torch.randn(2, 5, 4), *torch.randn(3, 4, 4))


def test_multi_head_attention_errors():
    with pytest.raises(ValueError, match=r"MultiHeadAttention: D=10 is not divisible by num_heads=4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: embed_dim must be a positive integer, got 0"):
        MultiHeadAttention(0, 1)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: dropout must be a probability in \[0, 1\), got 1.5"):
        MultiHeadAttention(4, 1, dropout=1.5)
    model = MultiHeadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: query should have shape \(B, T_q, D\) = \(2, 5, 8\), "
                                         r"but it has shape \(2, 5, 6\)"):
        model(torch.randn(2, 5, 6), x, x)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: value should have shape \(B, T_k, D\) = \(2, 5, 8\), "
                                         r"but it has shape \(2, 4, 8\)"):
        model(x, x, x[:, :4])
    with pytest.raises(ValueError, match=r"MultiHeadAttention: key_padding_mask should have shape \(B, T_k\) = "
                                         r"\(2, 5\), but it has shape \(5, 2\)"):
        model(x, x, x, key_padding_mask=torch.zeros(5, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: attn_mask should have shape \(T_q, T_k\) = \(5, 5\) or "
                                         r"\(B \* H, T_q, T_k\) = \(4, 5, 5\) \(as in torch.nn.MultiheadAttention, "
                                         r"True = may NOT attend\), but it has shape \(2, 5, 5\)"):
        model(x, x, x, attn_mask=torch.zeros(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: key_padding_mask should be boolean \(True = padding\) "
                                         r"or floating point"):
        model(x, x, x, key_padding_mask=torch.zeros(2, 5, dtype=torch.long))


@pytest.mark.parametrize("settings_, problem", [
    (dict(batch_first=False), "batch_first=False"),
    (dict(batch_first=True, kdim=4), "kdim or vdim different from embed_dim"),
    (dict(batch_first=True, vdim=4), "kdim or vdim different from embed_dim"),
    (dict(batch_first=True, add_bias_kv=True), "add_bias_kv=True"),
    (dict(batch_first=True, add_zero_attn=True), "add_zero_attn=True"),
], ids=["batch_first", "kdim", "vdim", "add_bias_kv", "add_zero_attn"])
def test_from_torch_refuses_what_it_cannot_copy(settings_, problem):
    with pytest.raises(ValueError, match=rf"MultiHeadAttention.from_torch does not support {problem}"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, **settings_))


def test_from_torch_copies_dtype_dropout_and_no_bias():
    reference = nn.MultiheadAttention(8, 2, dropout=0.25, bias=False, batch_first=True).double()
    ours = MultiHeadAttention.from_torch(reference)
    assert ours.q_proj.weight.dtype == torch.float64 and ours.dropout.p == 0.25 and ours.q_proj.bias is None
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    assert close(ours.eval()(x, x, x)[0], reference.eval()(x, x, x)[0])
    with pytest.raises(TypeError, match="expects a torch.nn.MultiheadAttention, got Linear"):
        MultiHeadAttention.from_torch(nn.Linear(8, 8))


def assert_unchanged(tensors, copies) -> None:
    for index, (tensor, (values, version)) in enumerate(zip(tensors, copies)):
        assert torch.equal(tensor, values), f"input {index} was changed"
        assert tensor._version == version, f"input {index} was written in place"


@pytest.mark.parametrize("call", [
    lambda q, k, v, mask: scaled_dot_product_attention(q, k, v, mask),
    lambda q, k, v, mask: attention_weights(q, k, mask),
    lambda q, k, v, mask: weighted_sum(attention_weights(q, k), v),
    lambda q, k, v, mask: split_heads(q, 2),
    lambda q, k, v, mask: merge_heads(split_heads(q, 2)),
    lambda q, k, v, mask: qkv_projections(q, k, v, *torch.ones(3, 4, 4)),
    lambda q, k, v, mask: padding_to_attn_mask(mask),
], ids=["sdpa", "attention_weights", "weighted_sum", "split_heads", "merge_heads", "qkv_projections",
        "padding_to_attn_mask"])
def test_functions_never_modify_their_inputs(call):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.rand(3, 5) < 0.5
    tensors = [q, k, v, mask]
    copies = [(tensor.clone(), tensor._version) for tensor in tensors]
    call(q, k, v, mask)
    assert_unchanged(tensors, copies)


def test_multi_head_attention_function_is_the_module_with_functions_masks():
    """The pure function takes the projections as callables and a mask with True = may attend; it gives
    torch.nn.MultiheadAttention's output and per-head weights (whose bool mask means the opposite)."""
    torch.manual_seed(0)
    B, T, D, H = 2, 5, 8, 2
    theirs = nn.MultiheadAttention(D, H, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(theirs)
    x = torch.randn(B, T, D)
    may_attend = causal_mask(T) & padding_to_attn_mask(padding_mask(torch.tensor([5, 3]), T))  # (B, 1, T, T)
    output, weights = multi_head_attention(x, x, x, ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj, H,
                                           may_attend)
    expected, expected_weights = theirs(x, x, x, key_padding_mask=padding_mask(torch.tensor([5, 3]), T),
                                        attn_mask=~causal_mask(T), average_attn_weights=False)
    assert close(output, expected) and close(weights, expected_weights)
    assert weights.shape == (B, H, T, T) and close(weights.sum(-1), torch.ones(B, H, T))
    with pytest.raises(ValueError, match=r"multi_head_attention: query should have shape \(B, T_q, D\)"):
        multi_head_attention(x[0], x, x, ours.q_proj, ours.k_proj, ours.v_proj, ours.out_proj, H)
