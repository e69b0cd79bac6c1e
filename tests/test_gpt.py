"""dl4nlp.gpt: equivalence with Hugging Face's GPT-2 (random tiny configs: logits, gradients, the cache, greedy
generation token for token, the logits processors), causality, sampling inside the top-k / top-p set, and the
errors."""

from __future__ import annotations

import pytest
import torch
import transformers
from helpers import assert_seeded_initialisation, close, gradients
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dl4nlp.attention import causal_mask
from dl4nlp.gpt import (GPT, GPTConfig, apply_temperature, causal_self_attention, count_gpt_parameters,
                        decoder_block, decoder_mask, generate, next_token, next_token_probabilities, top_k_filter,
                        top_p_filter)
from dl4nlp.transformer import pre_norm_block

ATOL = 1e-5


def huggingface(vocab_size: int = 97, n_positions: int = 48, n_embd: int = 24, n_layer: int = 3, n_head: int = 4,
                seed: int = 0, **changes) -> transformers.GPT2LMHeadModel:
    """A random GPT2LMHeadModel in eval mode, every parameter moved off its initial value (LayerNorms not 1 and 0,
    biases not 0), so that a weight copied to the wrong place or not transposed shows."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                                     n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1, **changes)
    model = transformers.GPT2LMHeadModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def pair() -> tuple[GPT, transformers.GPT2LMHeadModel]:
    theirs = huggingface()
    return GPT.from_huggingface(theirs), theirs


# --- the model against Hugging Face's ------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(n_layer=st.integers(1, 3), n_head=st.sampled_from([1, 2, 4]), head_size=st.integers(2, 6),
       batch=st.integers(1, 3), time=st.integers(1, 12), seed=st.integers(0, 100))
def test_logits_equal_huggingfaces_on_random_configs(n_layer, n_head, head_size, batch, time, seed):
    theirs = huggingface(n_embd=n_head * head_size, n_layer=n_layer, n_head=n_head, seed=seed)
    ours = GPT.from_huggingface(theirs)
    input_ids = torch.randint(0, 97, (batch, time), generator=torch.Generator().manual_seed(seed))
    assert close(ours(input_ids), theirs(input_ids).logits, atol=1e-4)


def test_gradients_equal_huggingfaces(pair):
    ours, theirs = pair
    input_ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    ours_out, theirs_out = ours(input_ids), theirs(input_ids).logits
    ours_grads = gradients(ours_out, list(ours.parameters()))
    named = dict(theirs.named_parameters())
    theirs_grads = dict(zip(named, gradients(theirs_out, list(named.values()))))
    for (name, _), grad in zip(ours.named_parameters(), ours_grads):
        theirs_grad = theirs_grads[f"transformer.{name}"]
        if name.endswith(".weight") and name.split(".")[-2] in ("c_attn", "c_proj", "c_fc"):
            theirs_grad = theirs_grad.t()
        assert close(grad, theirs_grad, atol=1e-4), name


def test_the_cache_gives_the_same_logits_and_huggingfaces_keys_and_values(pair):
    ours, theirs = pair
    input_ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(2))
    full = ours(input_ids)
    first, cache = ours(input_ids[:, :6], use_cache=True)
    second, cache = ours(input_ids[:, 6:9], past_key_values=cache)
    third, cache = ours(input_ids[:, 9:], past_key_values=cache)
    assert close(torch.cat([first, second, third], dim=1), full)
    assert len(cache) == 3 and cache[0][0].shape == (2, 4, 10, 6)  # (B, H, T, Dh) per layer
    their_cache = theirs(input_ids, use_cache=True).past_key_values
    for layer, (keys, values) in enumerate(cache):
        their_keys, their_values = (their_cache[layer] if isinstance(their_cache, tuple)
                                    else (their_cache.layers[layer].keys, their_cache.layers[layer].values))
        assert close(keys, their_keys) and close(values, their_values)


def test_parameters_are_named_as_huggingfaces_and_the_lm_head_is_the_word_embeddings(pair):
    ours, theirs = pair
    their_names = {name.removeprefix("transformer.") for name, _ in theirs.named_parameters()}
    assert {name for name, _ in ours.named_parameters()} == their_names  # lm_head.weight is wte.weight in both


def test_gpt2_small_has_124m_parameters_as_huggingfaces():
    with torch.device("meta"):
        theirs = sum(p.numel() for p in transformers.GPT2LMHeadModel(transformers.GPT2Config()).parameters())
    assert count_gpt_parameters(GPTConfig.gpt2()) == theirs == 124_439_808


def test_config_from_huggingface_keeps_the_sizes_and_drops_ids_outside_the_vocabulary():
    config = GPTConfig.from_huggingface(transformers.GPT2Config(vocab_size=50, n_embd=8, n_head=2, n_layer=1))
    assert (config.vocab_size, config.n_embd, config.n_head, config.n_layer) == (50, 8, 2, 1)
    assert config.eos_token_id is None and config.inner_size == 32
    assert GPTConfig.from_huggingface(transformers.GPT2Config()) == GPTConfig.gpt2()


def test_seeded_initialisation_and_gpt2s_scaled_residual_projections():
    model = assert_seeded_initialisation(lambda generator: GPT(GPTConfig.tiny(n_layer=8), generator=generator))
    assert abs(model.h[0].attn.c_attn.weight.std().item() - 0.02) < 0.003
    assert abs(model.h[0].attn.c_proj.weight.std().item() - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 L), L = 8


# --- causality ------------------------------------------------------------------------------------


def test_a_later_token_never_changes_an_earlier_prediction(pair):
    ours, _ = pair
    input_ids = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(3))
    changed = input_ids.clone()
    changed[0, 7:] = (changed[0, 7:] + 1) % 97
    before, after = ours(input_ids), ours(changed)
    assert close(before[:, :7], after[:, :7])
    assert not close(before[:, 7:], after[:, 7:])


def test_decoder_mask_is_the_causal_mask_aligned_at_the_bottom_right():
    assert torch.equal(decoder_mask(5), causal_mask(5))
    mask = decoder_mask(2, past_length=3)
    assert torch.equal(mask, torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    expected = torch.ones(3, 7, dtype=torch.bool).tril(4)
    assert torch.equal(decoder_mask(3, 4), expected)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        decoder_mask(0)
    with pytest.raises(ValueError, match="past_length must be a non-negative integer"):
        decoder_mask(2, -1)


def test_decoder_block_is_a_pre_norm_block_with_causal_attention():
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 5, 8, generator=generator)
    c_attn, c_proj = nn.Linear(8, 24), nn.Linear(8, 8)
    norm1, norm2, ffn = nn.LayerNorm(8), nn.LayerNorm(8), nn.Linear(8, 8)

    def attention(h):
        return causal_self_attention(h, c_attn, c_proj, 2)

    y, (keys, values) = decoder_block(x, attention, ffn, norm1, norm2, nn.Identity())
    assert close(y, pre_norm_block(x, lambda h: attention(h)[0], ffn, norm1, norm2, nn.Identity()))
    assert keys.shape == values.shape == (2, 2, 5, 4)


def test_causal_self_attention_is_torchs_causal_attention():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(3, 6, 8, generator=generator)
    c_attn, c_proj = nn.Linear(8, 24), nn.Linear(8, 8)
    theirs = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(c_attn.weight)
        theirs.in_proj_bias.copy_(c_attn.bias)
        theirs.out_proj.weight.copy_(c_proj.weight)
        theirs.out_proj.bias.copy_(c_proj.bias)
    expected = theirs(x, x, x, attn_mask=~causal_mask(6), need_weights=False)[0]
    assert close(causal_self_attention(x, c_attn, c_proj, 2)[0], expected)


# --- decoding --------------------------------------------------------------------------------------


def test_greedy_generation_equals_huggingfaces_token_for_token(pair):
    ours, theirs = pair
    prompt = torch.randint(0, 97, (3, 5), generator=torch.Generator().manual_seed(6))
    expected = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, do_sample=False,
                               pad_token_id=96, eos_token_id=None)
    for use_cache in (True, False):
        assert torch.equal(generate(ours, prompt, 30, use_cache=use_cache), expected)


def test_sampling_is_deterministic_for_a_generator_and_the_same_with_and_without_the_cache(pair):
    ours, _ = pair
    prompt = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(7))
    settings = dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.9)
    runs = [generate(ours, prompt, 25, generator=torch.Generator().manual_seed(11), use_cache=cache, **settings)
            for cache in (True, True, False)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = generate(ours, prompt, 25, generator=torch.Generator().manual_seed(12), **settings)
    assert not torch.equal(other, runs[0])
    assert torch.equal(runs[0][:, :4], prompt)


def test_generate_restores_training_mode_and_needs_no_new_tokens(pair):
    ours, _ = pair
    ours.train()
    prompt = torch.randint(0, 97, (1, 3))
    assert torch.equal(generate(ours, prompt, 0), prompt)
    generate(ours, prompt, 2)
    assert ours.training
    ours.eval()


def test_generated_tokens_are_ordinary_tensors_that_training_can_use(pair):
    """generate runs under inference_mode; what it returns must still be usable where autograd records (the
    embedding saves its indices for backward, which an inference tensor refuses)."""
    ours, _ = pair
    tokens = generate(ours, torch.randint(0, 97, (2, 3), generator=torch.Generator().manual_seed(8)), 4)
    assert not tokens.is_inference()
    ours(tokens).logsumexp(-1).sum().backward()
    assert all(parameter.grad is not None for parameter in ours.parameters())
    ours.zero_grad(set_to_none=True)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_top_p_and_top_k_equal_transformers_logits_processors(p):
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(8)) * 3
    assert torch.equal(top_p_filter(logits, p), transformers.TopPLogitsWarper(top_p=p)(None, logits.clone()))
    for k in (1, 5, 40, 100):
        assert torch.equal(top_k_filter(logits, k), transformers.TopKLogitsWarper(top_k=k)(None, logits.clone()))
    assert close(apply_temperature(logits, 0.7), transformers.TemperatureLogitsWarper(0.7)(None, logits.clone()))


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert top_p_filter(logits, 0.6).isfinite().tolist() == [[True, True, False, False]]  # 0.5 < 0.6, 0.8 >= 0.6
    assert top_p_filter(logits, 0.5).isfinite().tolist() == [[True, False, False, False]]
    assert top_p_filter(logits, 0.01).isfinite().tolist() == [[True, False, False, False]]


def test_samples_stay_inside_the_top_k_and_top_p_sets_and_follow_the_distribution():
    logits = torch.randn(1, 30, generator=torch.Generator().manual_seed(9)) * 2
    many = logits.expand(20_000, 30)
    generator = torch.Generator().manual_seed(10)
    top_k_set = set(torch.topk(logits[0], 6).indices.tolist())
    drawn = next_token(many, do_sample=True, top_k=6, generator=generator)
    assert set(drawn.tolist()) <= top_k_set and len(set(drawn.tolist())) == 6
    nucleus = set(top_p_filter(logits, 0.7).isfinite().nonzero()[:, 1].tolist())
    drawn = next_token(many, do_sample=True, top_p=0.7, generator=generator)
    assert set(drawn.tolist()) == nucleus
    probabilities = next_token_probabilities(logits, temperature=1.5)[0]
    counts = torch.bincount(next_token(many, do_sample=True, temperature=1.5, generator=generator), minlength=30)
    standard_error = (probabilities * (1 - probabilities) / 20_000).sqrt()
    assert ((counts / 20_000 - probabilities).abs() <= 5 * standard_error + 1e-9).all()


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    cold, warm = next_token_probabilities(logits, 0.5)[0], next_token_probabilities(logits, 2.0)[0]
    assert cold[0] > torch.softmax(logits, -1)[0, 0] > warm[0]


def test_greedy_is_the_argmax():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(11))
    assert torch.equal(next_token(logits), logits.argmax(-1))


# --- errors that say what to fix ---------------------------------------------------------------------


def test_errors_say_what_to_fix(pair):
    ours, theirs = pair
    with pytest.raises(ValueError, match="n_embd=10 is not divisible by n_head=4"):
        GPTConfig.tiny(n_embd=10)
    with pytest.raises(ValueError, match="activation_function must be one of"):
        GPTConfig.tiny(activation_function="swish")
    with pytest.raises(ValueError, match=r"token ids in \[0, vocab_size=97\)"):
        ours(torch.tensor([[1, 97]]))
    with pytest.raises(ValueError, match="integer token ids"):
        ours(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="more than the 48 positions"):
        ours(torch.zeros(1, 49, dtype=torch.long))
    with pytest.raises(ValueError, match="shorten the prompt or generate fewer"):
        generate(ours, torch.zeros(1, 40, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        next_token(torch.randn(1, 5), do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match=r"p must be a probability in \(0, 1\]"):
        top_p_filter(torch.randn(1, 5), 1.5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_k_filter(torch.randn(1, 5), 0)
    with pytest.raises(TypeError, match="expects a transformers.GPT2LMHeadModel"):
        GPT.from_huggingface(transformers.BertModel(transformers.BertConfig(hidden_size=8, num_attention_heads=2,
                                                                            num_hidden_layers=1, intermediate_size=8)))
    with pytest.raises(TypeError, match="use GPTConfig.from_huggingface"):
        GPT(theirs.config)


def test_a_weight_that_does_not_fit_names_the_layer_and_both_shapes(pair, monkeypatch):
    _, theirs = pair
    broken = huggingface()
    broken.transformer.h[1].mlp.c_fc.weight = nn.Parameter(torch.zeros(24, 50))
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp\.c_fc\.weight has shape \(50, 24\).*our "
                                         r"h\.1\.mlp\.c_fc\.weight has shape \(96, 24\)"):
        GPT.from_huggingface(broken)


# --- the page's experiment: the same model without the causal mask --------------------------------


def test_bidirectional_gpt_starts_as_the_gpt_and_sees_the_future():
    from dl4nlp.gpt import bidirectional_gpt, unmasked_self_attention

    config = GPTConfig.tiny(vocab_size=31, n_layer=1)
    causal = GPT(config, generator=torch.Generator().manual_seed(3))
    unmasked = bidirectional_gpt(config, generator=torch.Generator().manual_seed(3))
    for (name, ours), (_, theirs) in zip(causal.state_dict().items(), unmasked.state_dict().items()):
        assert torch.equal(ours, theirs), name  # the same first weights
    input_ids = torch.randint(0, 31, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        # one layer: the last position sees every token in both models; the first sees only itself in the GPT
        assert close(unmasked(input_ids)[:, -1], causal(input_ids)[:, -1])
        changed = input_ids.clone()
        changed[:, -1] = (changed[:, -1] + 1) % 31
        assert close(causal(changed)[:, 0], causal(input_ids)[:, 0])
        assert not torch.allclose(unmasked(changed)[:, 0], unmasked(input_ids)[:, 0], atol=1e-4)
    block = causal.h[0]
    with pytest.raises(ValueError, match="no key/value cache"):
        unmasked_self_attention(torch.zeros(1, 2, 64), block.attn.c_attn, block.attn.c_proj, 4,
                                past=(torch.zeros(1, 4, 1, 16), torch.zeros(1, 4, 1, 16)))
