"""dl4nlp.transformer: contracts, equivalence with torch.nn, invariants."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import assert_seeded_initialisation, close, gradients, leaves
from torch import nn
from torch.nn import functional as F

from dl4nlp.attention import causal_mask, padding_mask
from dl4nlp.transformer import (EncoderLayerConfig, PositionalEmbedding, TransformerEncoder, TransformerEncoderLayer,
                                feedforward, post_norm_block, pre_norm_block, sinusoidal_positions)

GRAD_ATOL = 1e-4  # gradients run through more float32 operations than the outputs
PLACEMENTS = [(norm_first, activation) for norm_first in (False, True) for activation in ("relu", "gelu")]
PLACEMENT_IDS = [f"{'pre' if norm_first else 'post'}-norm-{activation}" for norm_first, activation in PLACEMENTS]


def torch_layer(d_model: int, nhead: int, dim_feedforward: int, activation: str, norm_first: bool,
                seed: int) -> nn.TransformerEncoderLayer:
    """A torch.nn layer in eval mode whose biases and norms are not at their initial 0 and 1."""
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=0.1, activation=activation,
                                       batch_first=True, norm_first=norm_first)
    with torch.no_grad():
        for name, parameter in layer.named_parameters():
            if "bias" in name or "norm" in name:
                parameter.add_(0.3 * torch.randn(parameter.shape))
    return layer.eval()


def real(output: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """The output at real positions, zero at padded ones (B, T, D)."""
    if lengths is None:
        return output
    return output * ~padding_mask(lengths, output.shape[1])[..., None]


def torch_style_masks(kind: str, batch: int, time: int, generator: torch.Generator):
    """(src_mask for both in torch.nn's convention, src_key_padding_mask, our is_causal, lengths)."""
    lengths = torch.randint(1, time + 1, (batch,), generator=generator) if "padding" in kind else None
    key_padding = None if lengths is None else padding_mask(lengths, time)
    if "is_causal" in kind:
        return None, key_padding, True, lengths
    if "bool causal" in kind:
        return ~causal_mask(time), key_padding, False, lengths
    if "float causal" in kind:
        float_padding = None if key_padding is None else torch.zeros(batch, time).masked_fill(key_padding, -math.inf)
        return nn.Transformer.generate_square_subsequent_mask(time), float_padding, False, lengths
    return None, key_padding, False, lengths


MASK_KINDS = ["none", "padding", "is_causal", "bool causal", "float causal", "padding, is_causal",
              "padding, bool causal", "padding, float causal"]


# --- the block ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first, activation", PLACEMENTS, ids=PLACEMENT_IDS)
@given(batch=st.integers(1, 3), heads=st.integers(1, 3), head_dim=st.integers(4, 6), time=st.integers(1, 5),
       dim_feedforward=st.integers(1, 8), kind=st.sampled_from(MASK_KINDS), seed=st.integers(0, 2**16))
@settings(max_examples=15, deadline=None)
def test_encoder_layer_copies_torch(norm_first, activation, batch, heads, head_dim, time, dim_feedforward, kind,
                                    seed):
    # D >= 4: a LayerNorm over 2 or 3 features of nearly equal values magnifies float32 rounding (the
    # fused in-projection of torch vs our three) far beyond any tolerance, in outputs and gradients alike.
    reference = torch_layer(heads * head_dim, heads, dim_feedforward, activation, norm_first, seed)
    ours = TransformerEncoderLayer.from_torch(reference).eval()
    generator = torch.Generator().manual_seed(seed)
    src_mask, key_padding, is_causal, lengths = torch_style_masks(kind, batch, time, generator)
    src = torch.randn(batch, time, heads * head_dim, generator=generator, requires_grad=True)
    (our_src,) = leaves(src)
    output = real(ours(our_src, None if is_causal else src_mask, key_padding, is_causal=is_causal), lengths)
    their_mask = ~causal_mask(time) if is_causal else src_mask
    expected = real(reference(src, their_mask, key_padding, is_causal=is_causal), lengths)
    assert output.shape == src.shape and close(output, expected)
    our_parameters = [ours.self_attn.q_proj.weight, ours.self_attn.k_proj.weight, ours.self_attn.v_proj.weight,
                      ours.linear1.weight, ours.linear2.bias, ours.norm1.weight, ours.norm2.bias]
    their_parameters = [reference.self_attn.in_proj_weight, reference.linear1.weight, reference.linear2.bias,
                        reference.norm1.weight, reference.norm2.bias]
    our_gradients = gradients(output, [our_src, *our_parameters], seed)
    their_gradients = gradients(expected, [src, *their_parameters], seed)
    assert close(our_gradients[0], their_gradients[0], atol=GRAD_ATOL)
    assert close(torch.cat(our_gradients[1:4]), their_gradients[1], atol=GRAD_ATOL)  # W^Q, W^K, W^V stacked
    assert close(our_gradients[4:], their_gradients[2:], atol=GRAD_ATOL)


@pytest.mark.parametrize("norm_first, activation", PLACEMENTS, ids=PLACEMENT_IDS)
def test_encoder_layer_matches_torchs_fused_inference_path(norm_first, activation):
    """Without gradients torch runs one fused kernel; ours still gives the same at real positions."""
    reference = torch_layer(8, 2, 16, activation, norm_first, seed=1)
    ours = TransformerEncoderLayer.from_torch(reference).eval()
    lengths = torch.tensor([6, 3, 1])
    src = torch.randn(3, 6, 8)
    with torch.no_grad():
        for key_padding in (None, padding_mask(lengths, 6)):
            used = None if key_padding is None else lengths
            assert close(real(ours(src, src_key_padding_mask=key_padding), used),
                         real(reference(src, src_key_padding_mask=key_padding), used))


def test_block_functions_put_the_norms_in_their_places():
    """Sublayers a grader can follow by hand: attention doubles, the feedforward adds 1, the norms multiply by 10."""
    x = torch.tensor([[[1.0, -2.0]]])  # (1, 1, 2)

    def self_attention(h):
        return 2 * h

    def plus_one(h):
        return h + 1

    def times_ten(h):
        return 10 * h

    def identity(h):
        return h

    # post-norm: x1 = 10 (x + 2x) = 30x;  x2 = 10 (x1 + x1 + 1) = 600x + 10
    assert close(post_norm_block(x, self_attention, plus_one, times_ten, times_ten, identity), 600 * x + 10)
    # pre-norm:  x1 = x + 2 (10x) = 21x;  x2 = x1 + (10 x1 + 1) = 231x + 1
    assert close(pre_norm_block(x, self_attention, plus_one, times_ten, times_ten, identity), 231 * x + 1)
    # dropout sits on each sublayer's output, before the residual sum: dropping everything leaves x (pre-norm)
    assert close(pre_norm_block(x, self_attention, plus_one, times_ten, times_ten, torch.zeros_like), x)
    # FFN(x) = W_2 act(W_1 x + b_1) + b_2, here act = ReLU: relu([-2, 2]) * 2 = [0, 4]
    hidden_dropped = []
    result = feedforward(torch.tensor([[[-1.0, 3.0]]]), lambda h: h - 1, lambda h: 2 * h, F.relu,
                         lambda h: hidden_dropped.append(h) or h)
    assert result.tolist() == [[[0.0, 4.0]]] and hidden_dropped[0].tolist() == [[[0.0, 2.0]]]


def test_block_functions_take_a_graders_modules():
    """post_norm_block with torch.nn's own sublayers is torch.nn's layer."""
    reference = torch_layer(6, 3, 10, "gelu", False, seed=2)
    x = torch.randn(2, 4, 6)
    mask = padding_mask(torch.tensor([4, 2]), 4)

    def self_attention(h):
        return reference.self_attn(h, h, h, key_padding_mask=mask)[0]

    def position_wise(h):
        return reference.linear2(F.gelu(reference.linear1(h)))

    ours = post_norm_block(x, self_attention, position_wise, reference.norm1, reference.norm2, nn.Identity())
    assert close(real(ours, torch.tensor([4, 2])), real(reference(x, src_key_padding_mask=mask), torch.tensor([4, 2])))


def test_encoder_layer_layout_and_initialisation():
    reference = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    ours = TransformerEncoderLayer(8, 2, 16)
    their_names = {name: tuple(p.shape) for name, p in reference.state_dict().items()
                   if not name.startswith("self_attn.")}
    assert {name: tuple(p.shape) for name, p in ours.state_dict().items()
            if not name.startswith("self_attn.")} == their_names  # linear1, linear2, norm1, norm2 as in torch.nn
    assert ours.config == EncoderLayerConfig(8, 2, 16)
    model = assert_seeded_initialisation(lambda generator: TransformerEncoderLayer(8, 2, 16, generator=generator))
    bound = 1 / math.sqrt(8)  # nn.Linear's: 1 / sqrt(fan_in)
    assert float(model.linear1.weight.detach().abs().max()) <= bound
    assert float(model.linear1.bias.detach().abs().max()) > 0  # drawn, not zero


# --- the encoder stack --------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
@pytest.mark.parametrize("norm_first, final_norm", [(False, False), (True, True), (False, True)],
                         ids=["post-norm", "pre-norm-final-norm", "post-norm-final-norm"])
def test_encoder_copies_torch(norm_first, final_norm):
    torch.manual_seed(3)
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=norm_first)
    norm = nn.LayerNorm(8, eps=1e-6) if final_norm else None
    reference = nn.TransformerEncoder(layer, 3, norm=norm, enable_nested_tensor=not norm_first).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape))  # layers no longer identical copies
    ours = TransformerEncoder.from_torch(reference).eval()
    assert len(ours.layers) == 3 and ours.config == EncoderLayerConfig(8, 2, 12, 0.0, "gelu", norm_first)
    assert (ours.norm is None) == (not final_norm) and (final_norm is False or ours.norm.eps == 1e-6)
    assert {k: v.shape for k, v in ours.state_dict().items() if "self_attn" not in k} == \
        {k: v.shape for k, v in reference.state_dict().items() if "self_attn" not in k}
    lengths = torch.tensor([5, 2, 4])
    mask = padding_mask(lengths, 5)
    src = torch.randn(3, 5, 8, requires_grad=True)
    (our_src,) = leaves(src)
    output = real(ours(our_src, src_key_padding_mask=mask, is_causal=True), lengths)
    expected = real(reference(src, ~causal_mask(5), src_key_padding_mask=mask, is_causal=True), lengths)
    assert close(output, expected)
    assert close(gradients(output, [our_src]), gradients(expected, [src]), atol=GRAD_ATOL)
    with torch.no_grad():  # torch's nested-tensor inference path: zeros at padded positions, ours are computed
        assert close(real(ours(src, src_key_padding_mask=mask), lengths),
                     real(reference(src, src_key_padding_mask=mask), lengths))


def test_encoder_layers_start_different_and_seeded():
    model = assert_seeded_initialisation(
        lambda generator: TransformerEncoder(EncoderLayerConfig(8, 2, 16), 2, final_norm=True, generator=generator))
    assert not torch.equal(model.layers[0].linear1.weight, model.layers[1].linear1.weight)  # unlike torch's clones
    assert model.norm is not None and model.norm.weight.shape == (8,)


# --- invariants ---------------------------------------------------------------------------------


def test_without_positions_attention_is_blind_to_word_order_and_with_them_it_is_not():
    torch.manual_seed(4)
    encoder = TransformerEncoder(EncoderLayerConfig(8, 2, 16, dropout=0.0), 2).eval()
    learned = PositionalEmbedding(10, 8).eval()
    x = torch.randn(2, 6, 8)
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    output = encoder(x)
    assert close(encoder(x[:, permutation]), output[:, permutation])  # permutation-equivariant
    sinusoids = sinusoidal_positions(6, 8)
    with_sinusoids = encoder(x + sinusoids)
    assert not close(encoder(x[:, permutation] + sinusoids), with_sinusoids[:, permutation], atol=1e-3)
    assert not close(encoder(learned(x[:, permutation])), encoder(learned(x))[:, permutation], atol=1e-3)


def test_padding_never_changes_real_outputs():
    torch.manual_seed(5)
    encoder = TransformerEncoder(EncoderLayerConfig(6, 3, 12, dropout=0.0, norm_first=True), 2,
                                 final_norm=True).eval()
    lengths = torch.tensor([5, 2, 3])
    x = torch.randn(3, 5, 6)
    mask = padding_mask(lengths, 5)
    output = encoder(x, src_key_padding_mask=mask)
    for b, length in enumerate(lengths.tolist()):
        assert close(output[b, :length], encoder(x[b:b + 1, :length])[0])  # each sequence alone
    garbage = x.clone()
    garbage[1, 2:], garbage[2, 3:] = 1e3, -1e3
    assert close(real(encoder(garbage, src_key_padding_mask=mask), lengths), real(output, lengths))


def test_with_is_causal_no_position_sees_a_later_one():
    torch.manual_seed(6)
    encoder = TransformerEncoder(EncoderLayerConfig(8, 4, 16, dropout=0.0), 2).eval()
    x = torch.randn(2, 6, 8)
    output = encoder(x, is_causal=True)
    for t in range(6):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn(2, 5 - t, 8)
        new = encoder(changed, is_causal=True)
        assert close(new[:, :t + 1], output[:, :t + 1])
        if t < 5:
            assert not close(new[:, t + 1:], output[:, t + 1:])
    assert not close(encoder(x)[:, 0], output[:, 0])  # without the mask, position 0 sees everything


def test_encoder_layer_dropout_only_while_training():
    torch.manual_seed(7)
    layer = TransformerEncoderLayer(8, 2, 16, dropout=0.3)
    x = torch.randn(2, 4, 8)
    assert not close(layer.train()(x), layer(x))
    assert close(layer.eval()(x), layer(x))


# --- positional encodings -------------------------------------------------------------------


def test_sinusoidal_positions_known_values():
    pe = sinusoidal_positions(50, 6)
    assert pe.shape == (50, 6) and pe.dtype == torch.float32
    assert pe[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]  # position 0: sin 0, cos 0, ...
    small = sinusoidal_positions(2, 4)  # frequencies 1 and 1 / 10000^(2/4) = 1 / 100
    assert close(small[1], torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]))
    odd = sinusoidal_positions(3, 5)  # ends with a sine
    assert close(odd[2, 4], torch.tensor(math.sin(2 / 10000 ** (4 / 5))))
    expected = torch.tensor([[math.sin(t / 10000 ** (2 * (d // 2) / 6)) if d % 2 == 0 else
                              math.cos(t / 10000 ** (2 * (d // 2) / 6)) for d in range(6)] for t in range(50)])
    assert close(pe, expected)
    assert bool((pe.abs() <= 1).all()) and len({tuple(row.tolist()) for row in pe}) == 50  # every position its own
    assert sinusoidal_positions(3, 4, dtype=torch.float64).dtype == torch.float64


def test_sinusoidal_positions_shift_by_a_rotation():
    """PE[t + k] is PE[t] with each (sin, cos) pair rotated by the angle k * frequency: the same for every t."""
    pe = sinusoidal_positions(20, 8, dtype=torch.float64)
    k = 3
    frequencies = 10000 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)  # (4,)
    cos, sin = torch.cos(k * frequencies), torch.sin(k * frequencies)
    pairs = pe.view(20, 4, 2)  # (T, D/2, [sin, cos])
    rotated = torch.stack([pairs[..., 0] * cos + pairs[..., 1] * sin, pairs[..., 1] * cos - pairs[..., 0] * sin], -1)
    assert close(rotated.view(20, 8)[:-k], pe[k:])


def test_positional_embedding_adds_one_learned_vector_per_position():
    model = assert_seeded_initialisation(lambda generator: PositionalEmbedding(7, 4, generator=generator))
    x = torch.randn(2, 5, 4)
    assert close(model(x), x + model.weight[:5])
    assert [name for name, _ in model.named_parameters()] == ["weight"] and model.weight.shape == (7, 4)
    bert_like = nn.Embedding(7, 4)
    model.load_state_dict(bert_like.state_dict())  # the layout of BERT's position_embeddings
    assert close(model(x), x + bert_like(torch.arange(5)))


# --- errors -----------------------------------------------------------------------------------


def test_encoder_errors_say_what_to_fix():
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: activation must be one of \['gelu', 'relu'\], "
                                         r"got 'tanh'"):
        TransformerEncoderLayer(8, 2, 16, activation="tanh")
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: d_model=10 is not divisible by nhead=4; .* among "
                                         r"\[1, 2, 5, 10\]"):
        TransformerEncoderLayer(10, 4)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: dim_feedforward must be a positive integer, got 0"):
        TransformerEncoderLayer(8, 2, 0)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: dropout must be a probability in \[0, 1\), got 1"):
        TransformerEncoderLayer(8, 2, 16, dropout=1)
    layer = TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: src should have shape \(B, T, D\) = \(2, 5, 8\), "
                                         r"but it has shape \(2, 5, 6\)"):
        layer(torch.randn(2, 5, 6))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: key_padding_mask should have shape \(B, T_k\) = "
                                         r"\(2, 5\), but it has shape \(2, 4\)"):
        layer(torch.randn(2, 5, 8), src_key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: attn_mask should have shape \(T_q, T_k\) = \(5, 5\)"):
        layer(torch.randn(2, 5, 8), src_mask=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"TransformerEncoder: num_layers must be a positive integer, got 0"):
        TransformerEncoder(EncoderLayerConfig(8, 2), 0)
    with pytest.raises(ValueError, match=r"PositionalEmbedding: x has T=9 positions but there are vectors for "
                                         r"max_positions=7 only"):
        PositionalEmbedding(7, 4)(torch.randn(1, 9, 4))
    with pytest.raises(ValueError, match=r"PositionalEmbedding: x should have shape \(B, T, D\) = \(1, 3, 4\), "
                                         r"but it has shape \(1, 3, 5\)"):
        PositionalEmbedding(7, 4)(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match=r"sinusoidal_positions: D must be a positive integer, got 0"):
        sinusoidal_positions(4, 0)
    with pytest.raises(ValueError, match=r"post_norm_block: x should have shape \(B, T, D\)"):
        post_norm_block(torch.randn(5, 8), *[nn.Identity()] * 5)


@pytest.mark.parametrize("build, error, message", [
    (lambda: nn.TransformerEncoderLayer(8, 2, 16), ValueError, r"MultiHeadAttention.from_torch does not support "
                                                               r"batch_first=False"),
    (lambda: nn.TransformerEncoderLayer(8, 2, 16, activation=torch.tanh, batch_first=True), ValueError,
     r"supports activation 'relu' or 'gelu' \(exact\)"),
    (lambda: nn.TransformerEncoderLayer(8, 2, 16, activation=nn.GELU(approximate="tanh"), batch_first=True),
     ValueError, r"supports activation 'relu' or 'gelu' \(exact\)"),
    (lambda: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, bias=False), ValueError,
     r"does not support bias=False"),
    (lambda: nn.Linear(8, 8), TypeError, r"expects a torch.nn.TransformerEncoderLayer, got Linear"),
], ids=["batch_first", "custom-activation", "tanh-gelu", "no-bias", "not-a-layer"])
def test_encoder_layer_from_torch_refuses_what_it_cannot_copy(build, error, message):
    with pytest.raises(error, match=message):
        TransformerEncoderLayer.from_torch(build())


def test_encoder_layer_from_torch_accepts_activation_modules_and_copies_eps():
    reference = nn.TransformerEncoderLayer(8, 2, 16, activation=nn.GELU(), layer_norm_eps=1e-12, batch_first=True)
    ours = TransformerEncoderLayer.from_torch(reference)
    assert ours.config.activation == "gelu" and ours.norm1.eps == 1e-12 and ours.config.layer_norm_eps == 1e-12
    x = torch.randn(2, 3, 8)
    assert close(ours.eval()(x), reference.eval()(x))
    relu_module = TransformerEncoderLayer.from_torch(
        nn.TransformerEncoderLayer(8, 2, 16, activation=nn.ReLU(), batch_first=True))
    assert relu_module.config.activation == "relu"


def test_encoder_from_torch_errors():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    with pytest.raises(ValueError, match=r"a final norm that is a LayerNorm or None, got Identity"):
        TransformerEncoder.from_torch(nn.TransformerEncoder(layer, 2, norm=nn.Identity(), enable_nested_tensor=False))
    with pytest.raises(TypeError, match=r"expects a torch.nn.TransformerEncoder, got TransformerEncoderLayer"):
        TransformerEncoder.from_torch(layer)
    mixed = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    mixed.layers[1] = nn.TransformerEncoderLayer(8, 2, 32, batch_first=True)
    with pytest.raises(ValueError, match=r"needs layers of one configuration"):
        TransformerEncoder.from_torch(mixed)
