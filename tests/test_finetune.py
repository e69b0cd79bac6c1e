"""dl4nlp.finetune: heads equal to Hugging Face's, what `freeze` leaves trainable, BERT's optimizer and
schedule, one finetuning step, the metrics against scikit-learn, and `fit`'s checkpoints."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dl4nlp.bert import BertConfig, BertModel
from dl4nlp.finetune import (SequenceClassifier, TokenClassifier, batch_loss, classification_head,
                             classification_metrics, encoder_layers, finetune_step, freeze, optimizer_and_schedule)
from dl4nlp.training import fit, training_step

CONFIG = BertConfig.tiny(vocab_size=50, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                         num_hidden_layers=3, max_position_embeddings=16, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)


def huggingface_classifier(kind: str = "BertForSequenceClassification", num_labels: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(transformers, kind)(transformers.BertConfig(**asdict(CONFIG), num_labels=num_labels)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape) * 0.1)
    return model


def inputs(batch: int = 3, time: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, CONFIG.vocab_size, (batch, time), generator=generator)
    mask = (torch.arange(time) < torch.tensor([time, 4, 2][:batch])[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("ours", [False, True], ids=["transformers encoder", "dl4nlp BertModel"])
def test_pooler_head_is_huggingfaces_sequence_classifier(ours):
    theirs = huggingface_classifier()
    encoder = BertModel.from_huggingface(theirs.bert) if ours else theirs.bert
    model = SequenceClassifier(encoder, 3, pooling="pooler").eval()
    model.classifier.load_state_dict(theirs.classifier.state_dict())
    ids, mask = inputs()
    labels = torch.tensor([0, 2, 1])
    mine, other = model(ids, mask, labels=labels), theirs(ids, attention_mask=mask, labels=labels)
    assert torch.allclose(mine.logits, other.logits, atol=1e-5) and torch.allclose(mine.loss, other.loss, atol=1e-5)
    assert model(ids, mask).loss is None


def test_cls_and_mean_pooling_and_padding():
    encoder = BertModel(CONFIG, generator=torch.Generator().manual_seed(1)).eval()
    model = SequenceClassifier(encoder, 2, pooling="mean").eval()
    ids, mask = inputs()
    hidden = encoder(ids, attention_mask=mask).last_hidden_state
    by_hand = torch.stack([hidden[b, :int(mask[b].sum())].mean(0) for b in range(3)])
    assert torch.allclose(model(ids, mask).logits, model.classifier(by_hand), atol=1e-5)
    changed = ids.clone()
    changed[mask == 0] = 7  # other tokens at padded positions change nothing
    assert torch.allclose(model(changed, mask).logits, model(ids, mask).logits, atol=1e-5)
    assert torch.allclose(classification_head(hidden, mask, nn.Identity(), model.classifier, "cls"),
                          model.classifier(hidden[:, 0]))
    with pytest.raises(ValueError, match=r"classification_head: pooling must be one of 'cls', 'mean', got 'max'"):
        classification_head(hidden, mask, nn.Identity(), model.classifier, "max")
    with pytest.raises(ValueError, match=r"SequenceClassifier: num_labels must be an integer of at least 2"):
        SequenceClassifier(encoder, 1)
    with pytest.raises(TypeError, match=r"the encoder should have a config with hidden_size"):
        SequenceClassifier(nn.Linear(2, 2), 2)


def test_token_classifier_is_huggingfaces():
    theirs = huggingface_classifier("BertForTokenClassification", num_labels=4)
    with_pooler = transformers.BertModel(theirs.config)  # Hugging Face's token classifier has no pooler; ours does
    with_pooler.load_state_dict(theirs.bert.state_dict(), strict=False)
    model = TokenClassifier(BertModel.from_huggingface(with_pooler.eval()), 4).eval()
    model.classifier.load_state_dict(theirs.classifier.state_dict())
    ids, mask = inputs()
    labels = torch.randint(4, ids.shape).masked_fill(mask == 0, -100)
    mine, other = model(ids, mask, labels=labels), theirs(ids, attention_mask=mask, labels=labels)
    assert torch.allclose(mine.logits, other.logits, atol=1e-5) and torch.allclose(mine.loss, other.loss, atol=1e-5)


@pytest.mark.parametrize("encoder_kind", ["ours", "transformers"])
def test_freeze_leaves_exactly_the_head_and_the_top_layers_trainable(encoder_kind):
    encoder = BertModel(CONFIG) if encoder_kind == "ours" else transformers.BertModel(
        transformers.BertConfig(**asdict(CONFIG)))
    model = SequenceClassifier(encoder, 2)
    head = sum(p.numel() for p in model.classifier.parameters())
    layer = sum(p.numel() for p in encoder_layers(encoder)[0].parameters())
    pooler = sum(p.numel() for p in encoder.pooler.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert freeze(model, 0).trainable == head
    assert freeze(model, 1).trainable == head + layer
    assert freeze(model, 3).trainable == head + 3 * layer
    assert freeze(SequenceClassifier(encoder, 2, pooling="pooler"), 1).trainable == head + layer + pooler
    everything = freeze(model, None)
    assert everything.trainable == everything.total == total and "100.00%" in str(everything)
    freeze(model, 1)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    top = "encoder.encoder.layers.2." if encoder_kind == "ours" else "encoder.encoder.layer.2."
    assert all(name.startswith((top, "classifier.")) for name in trainable)
    ids, mask = inputs()
    model(ids, mask, labels=torch.tensor([0, 1, 1])).loss.backward()
    assert all((p.grad is None) != p.requires_grad for p in model.parameters())  # gradients exactly where trained
    with pytest.raises(ValueError, match=r"freeze: trainable_layers must be None or an integer from 0 to 3"):
        freeze(model, 4)


def test_optimizer_and_schedule_are_berts():
    model = SequenceClassifier(BertModel(CONFIG), 2)
    freeze(model, 1)
    optimizer, scheduler = optimizer_and_schedule(model, lr=1e-3, total_steps=10, warmup_ratio=0.2)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert sum(p.numel() for group in optimizer.param_groups for p in group["params"]) == freeze(model, 1).trainable
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0 and rates[1] == pytest.approx(5e-4) and rates[2] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-3 / 8) and optimizer.param_groups[0]["lr"] == 0


def test_finetune_step_is_a_step_of_fit():
    ids, mask = inputs()
    labels = torch.tensor([0, 1, 1])
    models = [SequenceClassifier(BertModel(CONFIG, generator=torch.Generator().manual_seed(2)), 2, dropout=0.0)
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    kits = [optimizer_and_schedule(model, 1e-3, total_steps=5, warmup_ratio=0.4) for model in models]
    for model in models:  # stale gradients from before: zero_grad must clear them
        model(ids, mask, labels=labels).loss.backward()
    for _ in range(2):
        first = finetune_step(models[0], {"input_ids": ids, "attention_mask": mask, "labels": labels}, *kits[0],
                              clip=0.5)
        second = training_step(models[1], (ids, mask, labels), batch_loss, kits[1][0], clip=0.5, scheduler=kits[1][1])
        assert first == pytest.approx(second)
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))
    assert kits[0][1].get_last_lr() == kits[1][1].get_last_lr()


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), classes=st.integers(2, 4), seed=st.integers(0, 2 ** 16))
def test_metrics_are_scikit_learns(n, classes, seed):
    generator = torch.Generator().manual_seed(seed)
    predictions, labels = torch.randint(classes, (n,), generator=generator), torch.randint(classes, (n,), generator=generator)
    result = classification_metrics(predictions, labels, classes)
    assert result.accuracy == pytest.approx(sk.accuracy_score(labels, predictions))
    f1 = (sk.f1_score(labels, predictions, average="binary", pos_label=1, zero_division=0) if classes == 2 else
          sk.f1_score(labels, predictions, average="macro", labels=list(range(classes)), zero_division=0))
    assert result.f1 == pytest.approx(f1)
    assert torch.equal(result.confusion, torch.as_tensor(sk.confusion_matrix(labels, predictions,
                                                                                labels=list(range(classes)))))


def test_metrics_errors_say_what_to_pass():
    with pytest.raises(ValueError, match=r"predictions should be class ids in \[0, 2\); pass logits.argmax\(-1\)"):
        classification_metrics(torch.randn(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"classification_metrics: no examples"):
        classification_metrics(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))


def _training_run(tmp_path, epochs, checkpoint=None, keep_best=False, validate=None):
    torch.manual_seed(0)
    model = SequenceClassifier(BertModel(CONFIG, generator=torch.Generator().manual_seed(3)), 2, dropout=0.3)
    ids, mask = inputs(3, 7)
    data = TensorDataset(ids.repeat(4, 1), mask.repeat(4, 1), torch.tensor([0, 1, 1] * 4))
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(4))
    optimizer, scheduler = optimizer_and_schedule(model, 1e-3, total_steps=4 * 3)
    records = fit(model, loader, batch_loss, epochs=epochs, optimizer=optimizer, scheduler=scheduler, device="cpu",
                  progress=False, checkpoint=checkpoint, keep_best=keep_best, validate=validate, seed=5)
    return model, records


def test_fit_resumes_from_its_checkpoint_as_if_never_stopped(tmp_path):
    uninterrupted, records = _training_run(tmp_path, 4)
    path = tmp_path / "run" / "checkpoint.pt"
    _training_run(tmp_path, 2, checkpoint=path)  # Colab disconnects after epoch 2
    resumed, resumed_records = _training_run(tmp_path, 4, checkpoint=path)
    assert [r.epoch for r in resumed_records] == [1, 2, 3, 4]
    assert [r.train_loss for r in resumed_records] == pytest.approx([r.train_loss for r in records])
    assert all(torch.allclose(a, b) for a, b in zip(uninterrupted.parameters(), resumed.parameters()))
    with pytest.raises(ValueError, match=r"fit: the checkpoint .* belongs to another model"):
        fit(nn.Linear(2, 2), [(torch.zeros(1, 2),)], lambda m, b: m(b[0]).sum(), epochs=5, checkpoint=path,
            progress=False, device="cpu")


def test_fit_keeps_the_best_epoch(tmp_path):
    scores = iter([0.5, 0.9, 0.7])
    snapshots = []

    def validate(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    model, records = _training_run(tmp_path, 3, keep_best=True, validate=validate)
    assert [r.validation for r in records] == [0.5, 0.9, 0.7]
    assert all(torch.equal(value, snapshots[1][name]) for name, value in model.state_dict().items())


def test_encode_dataset_takes_dataset_columns_and_checks_lengths():
    from dl4nlp.data.corpus import story_wordpiece_tokenizer
    from dl4nlp.data.sarcasm import make_synthetic_sarcasm
    from dl4nlp.finetune import encode_dataset

    split = make_synthetic_sarcasm(6, 0, 0)["train"]
    tokenizer = story_wordpiece_tokenizer(split["sentence"][:])
    encoded = encode_dataset(tokenizer, split["sentence"], split["label"], max_length=12)
    input_ids, attention_mask, labels = encoded.tensors
    assert input_ids.shape == attention_mask.shape and input_ids.shape[0] == 6 and input_ids.shape[1] <= 12
    assert (input_ids[:, 0] == tokenizer.cls_token_id).all()
    assert labels.tolist() == split["label"][:]
    with pytest.raises(ValueError, match="as many labels as sentences"):
        encode_dataset(tokenizer, split["sentence"], [0, 1])
