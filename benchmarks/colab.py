"""The Colab-only parts of the notebooks' full runs, estimated for a free Colab T4 (issue 18).

    .venv/bin/python benchmarks/colab.py [--parts NAME ...] [--quick] [--json FILE] [--list]

In Colab, without smoke mode, the notebooks read SST-2 and TweetEval instead of the generated sets, and
some cells load BERT-base, MiniLM or GPT-2 from the Hugging Face hub and train or run them. No GPU and no
hub are here, so each such part is estimated, and every row says so:

- **Time** from FLOPs: every unit of work the part repeats (a training step, a validation batch, a
  prompt) runs once here under `torch.utils.flop_counter.FlopCounterMode`, on the same shapes with the
  same model built from its config (random weights: the FLOPs and the memory do not depend on them). The
  FLOPs times the number of units the notebook runs, over the T4's published throughput (8.1 TFLOP/s in
  float32, 65 in float16 with tensor cores, for parts that train with mixed precision) at the fraction of
  it that real runs reach (`EFFICIENCY`, an assumption), or the operations, whichever takes longer: every
  PyTorch operation (aten op) the unit runs is counted too, and each costs the GPU's host `OP_SECONDS` (10
  to 25 µs: the dispatcher, the kernel launch and the Python around it, on Colab's 2.2 GHz Xeon). The GPU
  computes while the host launches the next operations, and every unit ends waiting for its result (a
  loss read, predictions copied back), so a unit takes the longer of the two. Small models (the RNNs that
  loop over time steps in Python) are bound by the operations, BERT-base's steps by the FLOPs. Loading
  data is left out. The slow end is what is compared with the 15 minutes.
- **Memory**: each part runs in a fresh process, each unit for real, twice (counted, then timed: a
  training step's optimizer has its state by then); the growth of the process's peak resident memory
  over its memory after the imports is the tensors' memory. On the GPU that memory moves there, and CUDA's context
  (`CUDA_CONTEXT_BYTES`) comes on top; float32 here bounds the activations of a mixed-precision run,
  whose float16 copies of the weights (half their bytes) are added. Compared with the T4's 15 GB.

`--quick` checks the script itself on tiny models: its numbers mean nothing and its rows say so.
A benchmark, not a test: it reads /proc (Linux) and takes a few minutes on a 2-core CPU.

Adding a part: a function that imports what it needs and returns the part's units, registered with
`@part(name, notebooks=..., what=..., precision=...)`; a `Unit`'s `run` does one unit of work on the CPU,
`count` says how many the full run makes, `scale` multiplies one run's FLOPs when `run` does a smaller
batch of the same shape (FLOPs grow linearly with the batch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import ROOT, _cpu, device_name, load, memory_bytes, now  # noqa: E402 - the other benchmark's stamps

T4_FLOPS = {"float32": 8.1e12, "mixed": 65e12}  # NVIDIA T4 datasheet: FP32, and mixed FP16/FP32 (tensor cores)
EFFICIENCY = {"float32": (0.25, 0.5), "mixed": (0.1, 0.3)}  # assumed share of it that training reaches (slow, fast)
T4_MEMORY_BYTES = 15e9  # "16 GB" of which Colab shows about 15
OP_SECONDS = (10e-6, 25e-6)  # one aten op's cost on the host of a GPU in eager mode, fast and slow (an assumption)
CUDA_CONTEXT_BYTES = 0.5e9  # CUDA's context and cuBLAS's workspace, about 0.3 to 0.5 GB: the upper end
BUDGET_S = 15 * 60  # issue 18: each notebook's full run within 15 minutes on a free Colab T4


@dataclass(frozen=True)
class Unit:
    label: str
    run: Callable[[], object]  # one unit of work on the CPU
    count: int  # how many the notebook's full run makes
    scale: float = 1.0  # one unit's FLOPs = scale * the FLOPs of run() (run does a smaller batch)
    trained_parameters: int = 0  # parameters that a mixed-precision run also keeps in float16


@dataclass(frozen=True)
class Part:
    name: str
    notebooks: str
    what: str
    precision: str  # "float32" or "mixed"
    factory: Callable[[bool], list[Unit]]  # quick -> the units


PARTS: dict[str, Part] = {}


def part(name: str, *, notebooks: str, what: str, precision: str = "float32"
         ) -> Callable[[Callable[[bool], list[Unit]]], Callable[[bool], list[Unit]]]:
    def register(factory: Callable[[bool], list[Unit]]) -> Callable[[bool], list[Unit]]:
        if name in PARTS or precision not in T4_FLOPS:
            raise ValueError(f"part {name!r}: a second part of that name, or precision {precision!r} unknown")
        PARTS[name] = Part(name, notebooks, what, precision, factory)
        return factory
    return register


# --- the parts -----------------------------------------------------------------------------------------


def _bert_config(quick: bool):
    from dl4nlp.bert import BertConfig

    return BertConfig.tiny(vocab_size=100) if quick else BertConfig.base()  # bert-base-uncased's sizes


def _token_batch(vocab_size: int, B: int, T: int):
    import torch

    generator = torch.Generator().manual_seed(0)
    return (torch.randint(vocab_size, (B, T), generator=generator), torch.ones(B, T, dtype=torch.long),
            torch.randint(2, (B,), generator=generator))


def _finetuning(quick: bool, *, batch: int, length: int, steps: int, pooling: str, validation: int,
                validation_batch: int, runs: int, sizes: dict | None = None) -> list[Unit]:
    """Full finetuning of a BERT classifier (BERT-base, or `sizes` changed) with AdamW (dl4nlp.finetune's step),
    then its validation."""
    import torch

    from dl4nlp.bert import BertConfig, BertModel
    from dl4nlp.finetune import SequenceClassifier, finetune_step, optimizer_and_schedule

    config = _bert_config(quick) if quick or sizes is None else BertConfig.base(**sizes)
    model = SequenceClassifier(BertModel(config, generator=torch.Generator().manual_seed(0)), 2, pooling=pooling)
    optimizer, scheduler = optimizer_and_schedule(model, 5e-5, 1000)
    B, T = (4, 8) if quick else (batch, length)
    input_ids, attention_mask, labels = _token_batch(config.vocab_size, B, T)

    def step():
        model.train()
        finetune_step(model, {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels},
                      optimizer, scheduler)

    sample = min(8, B)  # validation FLOPs from a few rows: they grow linearly with the batch

    def validate():
        model.eval()
        with torch.no_grad():
            model(input_ids=input_ids[:sample], attention_mask=attention_mask[:sample])

    batches = runs * -(-validation // validation_batch)
    return [Unit(f"training step, {batch} × {length} tokens, forward, backward, AdamW", step, steps,
                 trained_parameters=sum(p.numel() for p in model.parameters())),
            Unit(f"validation, {runs} × {validation} sentences in batches of {validation_batch}", validate, batches,
                 scale=validation_batch / sample)]


@part("finetune-sst2", notebooks="`book/finetune.ipynb`, its Colab-only cell",
      what="bert-base-uncased finetuned on SST-2 for 1 epoch (67,349 sentences, batches of 32 of at most 64 "
           "tokens: `trim_padding` cuts shorter ones, counted here at 64), mixed precision; then 872 dev sentences",
      precision="mixed")
def finetune_sst2(quick):
    return _finetuning(quick, batch=32, length=64, steps=-(-67_349 // 32), pooling="pooler", validation=872,
                       validation_batch=100, runs=1)


@part("finetune-part6", notebooks="`solutions/finetune/finetune.ipynb` Part 6 (on a GPU)",
      what="bert-base-uncased and the same BERT from random weights, each finetuned on 100, 400 and 1,600 "
           "TweetEval irony tweets for 5 epochs (batches of 16 × 64 tokens, float32, the student's recipe); "
           "each then on 955 validation tweets")
def finetune_part6(quick):
    steps = 2 * 5 * sum(-(-size // 16) for size in (100, 400, 1600))  # 1,320
    return _finetuning(quick, batch=16, length=64, steps=steps, pooling="cls", validation=955, validation_batch=256,
                       runs=6)


MINILM = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}
FINETUNE_PAGE_STEPS = {"the data-efficiency curve": 2 * 3 * (16 + 16 + 32), "the freezing table": 3 * 3 * 32,
                       "the schedules and their reference": (3 + 1) * 3 * 16, "the optimizers": 3 * 3 * 16,
                       "the detector": 1024 // 16}  # a run's steps: 16 sentences 8 epochs of 2, 64 4 of 4, 256 2 of 16
FINETUNE_PAGE_RUNS = 2 * 3 * 3 + 3 * 3 + 4 * 3 + 3 * 3 + 1  # each measured on all 955 validation tweets in Colab


@part("finetune-page-minilm", notebooks="`book/finetune.ipynb` in Colab, all but its Colab-only cell",
      what=f"all-MiniLM-L6-v2 (from the hub in Colab) finetuned {FINETUNE_PAGE_RUNS} times on TweetEval irony "
           f"tweets: {sum(FINETUNE_PAGE_STEPS.values()):,} steps of 16 × 64 tokens in all ("
           + ", ".join(f"{name} {steps}" for name, steps in FINETUNE_PAGE_STEPS.items())
           + "; every step counted as full finetuning, though the freezing table's runs train fewer layers), each "
             "run then measured on the 955 validation tweets (the offline build measures on 160)")
def finetune_page_minilm(quick):
    return _finetuning(quick, batch=16, length=64, steps=sum(FINETUNE_PAGE_STEPS.values()), pooling="mean",
                       validation=955, validation_batch=100, runs=FINETUNE_PAGE_RUNS, sizes=MINILM)


@part("bert-base-pair", notebooks="`book/bert.ipynb`'s Colab cells, `solutions/bert/bert.ipynb` Part 6",
      what="bert-base-uncased twice (ours from Hugging Face's, and Hugging Face's) and with its MLM head, all "
           "three kept; the sublayers compared on 2 pairs of 16 tokens, 3 masked sentences of 16 tokens guessed")
def bert_base_pair(quick):
    import torch
    import transformers

    from dl4nlp.bert import BertForPreTraining, BertModel

    config = _bert_config(quick)
    theirs = transformers.BertModel(transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size)).eval()
    ours = BertModel.from_huggingface(theirs).eval()
    with_head = BertForPreTraining(config).eval()
    input_ids, attention_mask, _ = _token_batch(config.vocab_size, 2, 16)

    def compare():
        with torch.no_grad():
            ours(input_ids, attention_mask=attention_mask)
            theirs(input_ids=input_ids, attention_mask=attention_mask)
            with_head(input_ids[:1], attention_mask=attention_mask[:1])

    return [Unit("one forward pass of each model", compare, 3)]


SST2_LENGTHS = (32, 56)  # assumed: the longest of 64 SST-2 training phrases (mean 9.4 words), of the 256 dev sentences


def _sentiment_training(quick: bool, models: dict, *, runs: int, epochs: int, train_size: int, lr: float
                        ) -> list[Unit]:
    """Classifiers trained on SST-2 in Colab as `dl4nlp.training.train_classifier` does (Adam, the norm
    clipped at 1.0, batches of 64), each validated on its 872 dev sentences after every epoch (batches of 256)."""
    import torch

    from dl4nlp import cnn, rnn
    from dl4nlp.training import classification_loss, evaluate, training_step

    vocab_size = 100 if quick else 15_000  # SST-2's words in 10,000 to 20,000 phrases: the size barely matters
    (T, T_dev), (B, B_dev) = ((8, 8), (4, 4)) if quick else (SST2_LENGTHS, (64, 256))
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randint(1, vocab_size, (B, T), generator=generator), torch.full((B,), T),
             torch.randint(2, (B,), generator=generator))
    dev = [(torch.randint(1, vocab_size, (B_dev, T_dev), generator=generator), torch.full((B_dev,), T_dev),
            torch.randint(2, (B_dev,), generator=generator))]
    units = []
    for name, (kind, options) in models.items():
        if kind == "cnn":
            model = cnn.TextCNN(cnn.TextCNNConfig(vocab_size, **options), generator=generator)
        else:
            model = rnn.SequenceClassifier(rnn.ClassifierConfig(vocab_size, **options), generator=generator)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)

        def step(model=model, optimizer=optimizer):
            model.train()
            training_step(model, batch, classification_loss, optimizer, clip=1.0)

        units += [Unit(f"{name}: training step, 64 × {T} tokens", step, runs * epochs * -(-train_size // 64)),
                  Unit(f"{name}: validation batch, 256 × {T_dev} tokens", lambda model=model: evaluate(model, dev),
                       runs * epochs * -(-872 // 256))]
    return units


RECURRENT = {"embedding_dim": 64, "hidden_size": 64}


@part("rnn-page", notebooks="`book/rnn.ipynb` in Colab", what="the comparison of four recurrent classifiers (vanilla "
      "RNN, LSTM, GRU, bidirectional LSTM; D = H = 64; the course's cells, unrolled in Python) on the first 4,000 "
      "SST-2 phrases, 3 seeds × 10 epochs each")
def rnn_page(quick):
    one_way = {**RECURRENT, "bidirectional": False}
    models = {"vanilla RNN": ("rnn", {**one_way, "cell": "rnn"}), "LSTM": ("rnn", {**one_way, "cell": "lstm"}),
              "GRU": ("rnn", {**one_way, "cell": "gru"}),
              "bidirectional LSTM": ("rnn", {**RECURRENT, "cell": "lstm", "bidirectional": True})}
    return _sentiment_training(quick, models, runs=3, epochs=10, train_size=4_000, lr=5e-3)


@part("cnn-page", notebooks="`book/cnn.ipynb` in Colab", what="Kim's CNN (widths 3, 4, 5, 64 filters each) against "
      "the bidirectional LSTM on the first 4,000 SST-2 phrases, 3 seeds × 8 epochs each")
def cnn_page(quick):
    models = {"CNN": ("cnn", {"embedding_dim": 64, "kernel_sizes": (3, 4, 5), "num_filters": 64, "dropout": 0.5}),
              "bidirectional LSTM": ("rnn", {**RECURRENT, "cell": "lstm", "bidirectional": True})}
    return _sentiment_training(quick, models, runs=3, epochs=8, train_size=4_000, lr=5e-3)


@part("rnn-cnn-assignments", notebooks="`solutions/rnn/rnn.ipynb`, `solutions/cnn/cnn.ipynb` in Colab",
      what="the training at the end of each: the bidirectional LSTM (rnn), and the CNN (widths 3, 4, 5, 100 "
           "filters each) and the bidirectional LSTM (cnn), on 10,000 SST-2 phrases for 5 epochs each")
def rnn_cnn_assignments(quick):
    bilstm = ("rnn", {**RECURRENT, "cell": "lstm", "bidirectional": True})
    models = {"rnn: bidirectional LSTM": bilstm, "cnn: bidirectional LSTM": bilstm,
              "cnn: CNN": ("cnn", {"embedding_dim": 64, "kernel_sizes": (3, 4, 5), "num_filters": 100})}
    return _sentiment_training(quick, models, runs=1, epochs=5, train_size=10_000, lr=2e-3)


def _gpt2(quick: bool):
    import torch

    from dl4nlp.gpt import GPT, GPTConfig

    config = GPTConfig.tiny(vocab_size=100) if quick else GPTConfig.gpt2()
    return GPT(config, generator=torch.Generator().manual_seed(0)).eval(), config


@part("gpt2-generation", notebooks="`book/generation.ipynb`'s Colab cell, `solutions/generation/generation.ipynb` "
      "Part 7", what="GPT-2 small in our `GPT` and in transformers' `GPT2LMHeadModel`, both kept; 128 new tokens "
      "after a prompt of 8, with and without the key/value cache (the instructor notebook's timing, the largest "
      "of the generations)")
def gpt2_generation(quick):
    import torch
    import transformers

    from dl4nlp.gpt import generate

    ours, config = _gpt2(quick)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.n_positions, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head)).eval()
    prompt = torch.randint(config.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
    new = 8 if quick else 128
    return [Unit(f"{new} new tokens without the cache", lambda: generate(ours, prompt, new, use_cache=False), 2),
            Unit(f"{new} new tokens with the cache", lambda: generate(ours, prompt, new), 2),
            Unit("30 new tokens by transformers' generate", lambda: theirs.generate(
                prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8 if quick else 30, do_sample=False,
                pad_token_id=0), 1)]


REVIEW_TOKENS = 33  # assumed: one SST-2 review with its template's words, in GPT-2's tokens (about 20 words)
PROMPTING_EVALUATIONS = {0: 17, 1: 5, 2: 5, 4: 13, 8: 5}  # demonstrations: evaluations of 203 prompts with that many


@part("gpt2-prompting", notebooks="`solutions/prompting/prompting.ipynb` in Colab",
      what="GPT-2 small scoring 2 label words after each prompt: 45 evaluations (16 templates and label words "
           "zero-shot, 21 with 0 to 8 demonstrations, 8 orders of 4) of 203 prompts (200 SST-2 reviews and 3 "
           f"content-free ones); a prompt of k demonstrations counted as (k + 1) × {REVIEW_TOKENS} tokens")
def gpt2_prompting(quick):
    model, config = _gpt2(quick)
    return _prompt_units(model, config, quick, {(shots, 2): evaluations * 203
                                                for shots, evaluations in PROMPTING_EVALUATIONS.items()})


def _prompt_units(model, config, quick: bool, prompts: dict[tuple[int, int], int]) -> list[Unit]:
    """One unit per (demonstrations, label words): a prompt of (k + 1) reviews scored on that many one-token label
    words (`continuation_log_probs`, one batch of a row per word), counted as many times as `prompts` says."""
    import torch

    from dl4nlp.prompting import continuation_log_probs

    units = []
    for (shots, words), count in prompts.items():
        T = (shots + 1) * (4 if quick else REVIEW_TOKENS)
        prompt = torch.randint(config.vocab_size, (T,), generator=torch.Generator().manual_seed(shots)).tolist()
        label = (f"a prompt of {shots} demonstration{'s' * (shots != 1)}, {words} label words "
                 f"({words} × {T + 1} tokens)")
        units.append(Unit(label, lambda prompt=prompt, words=words: continuation_log_probs(
            model, prompt, [[11 + w] for w in range(words)]), count))
    return units


PROMPTING_PAGE = {"development": 200, "test": 500}  # SST-2 reviews the page samples in Colab


def prompting_page_prompts(development: int, test: int) -> dict[tuple[int, int], int]:
    """(demonstrations, label words) -> prompts the prompting page scores in Colab, each evaluation on the test
    reviews with its 3 content-free prompts; the page caches an evaluation it asks for again."""
    evaluation = test + 3
    return {(0, 8): 15 * development + 2 * test + evaluation,  # the template search; its two on test; "all of them"
            (0, 2): (4 + 14) * evaluation,  # the other four verbalizers; the other 14 templates zero-shot
            (1, 2): (5 + 3) * evaluation,  # five draws; the widget's three other templates
            (2, 2): (5 + 1 + 3 + 2) * evaluation,  # five draws; the generation's two; the widget's; evaluate_prompting
            (3, 2): (6 + 5 + 3) * evaluation}  # six orders; five draws; the widget's


@part("prompting-page", notebooks="`book/prompting.ipynb` in Colab",
      what=f"GPT-2 small scoring the label words after prompts of {PROMPTING_PAGE['test']} SST-2 validation reviews "
           f"(and {PROMPTING_PAGE['development']} training ones for the search of 15 templates): 5 verbalizers, 15 "
           "templates, 6 orders, 0 to 3 demonstrations in 5 draws, the widget's 16 settings (the page caches "
           "repeats), 60 generations of 5 tokens; "
           f"a prompt of k demonstrations counted as (k + 1) × {REVIEW_TOKENS} tokens")
def prompting_page(quick):
    import torch

    from dl4nlp.gpt import generate

    model, config = _gpt2(quick)
    prompt = torch.randint(config.vocab_size, (1, 3 * (4 if quick else REVIEW_TOKENS)),
                           generator=torch.Generator().manual_seed(9))
    return [*_prompt_units(model, config, quick, prompting_page_prompts(**PROMPTING_PAGE)),
            Unit("5 tokens generated after a prompt of 2 demonstrations", lambda: generate(model, prompt, 5), 2 * 60)]


CHOOSING_PAGE = {"seeds": 3, "test": 400, "probes": 5 * 60}  # the page's seeds, test sentences per seed, probes


def choosing_page_prompts(seeds: int, test: int, probes: int) -> dict[tuple[int, int], int]:
    """(demonstrations, label words) -> prompts the choosing page scores with GPT-2 in Colab: each seed's test
    sentences zero-shot and with 2 demonstrations, the zero-shot model on the five probe sets and, again, on the
    sentences it got wrong (counted as all of them), and one sentence with each of its 6 words left out."""
    return {(0, 2): seeds * (test + probes + test) + 7,
            (2, 2): seeds * test}


@part("choosing-page", notebooks="`book/choosing.ipynb` in Colab",
      what=f"GPT-2 small as the page's prompted classifier, zero-shot and with 2 demonstrations, on "
           f"{CHOOSING_PAGE['seeds']} seeds × {CHOOSING_PAGE['test']} SST-2 test sentences, and zero-shot on "
           f"{CHOOSING_PAGE['probes']} probe sentences per seed and again where it was wrong (counted as every "
           f"test sentence); a prompt of k demonstrations counted as (k + 1) × {REVIEW_TOKENS} tokens (the page draws "
           "short demonstrations: an upper bound)")
def choosing_page(quick):
    model, config = _gpt2(quick)
    return _prompt_units(model, config, quick, choosing_page_prompts(**CHOOSING_PAGE))


# --- measuring, one part per fresh process -------------------------------------------------------------


def _status_bytes(field: str) -> int:
    value = memory_bytes(field)
    if value is None:
        raise RuntimeError(f"no {field} in /proc/self/status (this measures memory on Linux only)")
    return value


def measure_part(name: str, quick: bool) -> dict:
    """In this process: the part's units built, each run once under the counters and once timed."""
    import torch
    import transformers  # noqa: F401 - imported before the baseline, as every part uses it or dl4nlp's modules
    from torch.utils.flop_counter import FlopCounterMode

    import dl4nlp.bert  # noqa: F401
    import dl4nlp.finetune  # noqa: F401
    import dl4nlp.gpt  # noqa: F401
    import dl4nlp.prompting  # noqa: F401

    for lazy in ("BertModel", "GPT2LMHeadModel", "get_linear_schedule_with_warmup"):
        getattr(transformers, lazy)  # transformers imports these modules on first use: before the baseline
    torch.set_num_threads(2)
    baseline = _status_bytes("VmRSS")
    units = PARTS[name].factory(quick)
    rows, total_flops, total_ops = [], 0.0, 0
    for unit in units:
        counter, operations = FlopCounterMode(display=False), OperationCounter()
        with counter, operations:
            unit.run()
        start = time.perf_counter()
        unit.run()  # timed outside the counters (a training step's optimizer now has its state)
        seconds = time.perf_counter() - start
        flops = counter.get_total_flops() * unit.scale
        total_flops, total_ops = total_flops + flops * unit.count, total_ops + operations.count * unit.count
        rows.append({"unit": unit.label, "flops": flops, "operations": operations.count, "count": unit.count,
                     "cpu_seconds": seconds})
    peak = _status_bytes("VmHWM")
    return {"units": rows, "flops": total_flops, "operations": total_ops, "tensor_bytes": peak - baseline,
            "threads": torch.get_num_threads(), "trained_parameters": max(unit.trained_parameters for unit in units)}


def OperationCounter():
    """A dispatch mode that counts the aten operations run under it, backward ones included (views too, which
    launch no kernel: an overcount)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += 1
            return func(*args, **(kwargs or {}))

    return Counter()


def estimate(name: str, measured: dict, quick: bool) -> dict:
    entry = PARTS[name]
    peak_flops = T4_FLOPS[entry.precision]
    slow, fast = EFFICIENCY[entry.precision]
    seconds = tuple(sum(unit["count"] * max(unit["flops"] / (peak_flops * share), unit["operations"] * per_operation)
                        for unit in measured["units"]) for share, per_operation in ((fast, OP_SECONDS[0]),
                                                                                    (slow, OP_SECONDS[1])))
    half_weights = 2 * measured["trained_parameters"] if entry.precision == "mixed" else 0  # bytes in float16
    memory = measured["tensor_bytes"] + CUDA_CONTEXT_BYTES + half_weights
    return {"part": name, "notebooks": entry.notebooks, "what": entry.what, "precision": entry.precision,
            "quick": quick, "t4_seconds": seconds, "t4_memory_bytes": memory,
            "met": None if quick else seconds[1] <= BUDGET_S and memory <= T4_MEMORY_BYTES, "when": now(),
            "load": load(), "device": device_name(_cpu()), **measured}


def run_parts(names: list[str], quick: bool) -> list[dict]:
    rows = []
    for name in names:
        command = [sys.executable, __file__, "--measure", name, *(["--quick"] if quick else [])]
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        if result.returncode != 0:
            raise RuntimeError(f"part {name} failed:\n{result.stderr[-3000:]}")
        row = estimate(name, json.loads(result.stdout.splitlines()[-1]), quick)
        rows.append(row)
        print(f"{name}: {row['flops']:.3g} FLOPs, T4 {_minutes(row['t4_seconds'])}, "
              f"{row['t4_memory_bytes'] / 1e9:.2f} GB ({load()})", file=sys.stderr, flush=True)
    return rows


def _minutes(seconds: tuple[float, float]) -> str:
    low, high = seconds
    if high < 1:
        return "under 1 s"
    return f"{low:.0f} to {high:.0f} s" if high < 120 else f"{low / 60:.1f} to {high / 60:.1f} min"


def table(rows: list[dict]) -> str:
    lines = ["| part | notebooks | what runs | FLOPs and operations in all | T4 time, estimated | "
             "T4 memory, estimated | within 15 min and 15 GB | measured where, when |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        units = "; ".join(f"{unit['count']:,} × {unit['unit']} ({unit['flops']:.3g} FLOPs, {unit['operations']:,} "
                          f"operations, {_seconds(unit['cpu_seconds'])} here)" for unit in row["units"])
        verdict = "— (quick mode)" if row["met"] is None else "yes" if row["met"] else "**no**"
        speed = (f"{T4_FLOPS[row['precision']] / 1e12:g} TFLOP/s {row['precision']} at "
                 + " to ".join(f"{share:.0%}" for share in reversed(EFFICIENCY[row["precision"]]))
                 + f", or {OP_SECONDS[0] * 1e6:g} to {OP_SECONDS[1] * 1e6:g} µs an operation, the longer")
        lines.append(
            f"| {row['part']}{' (quick mode: tiny models)' if row['quick'] else ''} | {row['notebooks']} | "
            f"{row['what']}: {units} | {row['flops']:.3g} FLOPs, {row['operations']:.3g} operations | "
            f"{_minutes(row['t4_seconds'])} ({speed}) | "
            f"{row['t4_memory_bytes'] / 1e9:.2f} GB ({row['tensor_bytes'] / 1e9:.2f} GB of tensors, measured "
            f"here, + {CUDA_CONTEXT_BYTES / 1e9:.1f} GB CUDA context"
            f"{' + float16 weights' if row['precision'] == 'mixed' else ''}) | {verdict} | "
            f"{row['device']}, {row['threads']} threads, {row['when']}, {row['load']} |")
    return "\n".join(lines)


def _seconds(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--parts", nargs="+", metavar="NAME", help=f"parts to run (default: all): {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="check the script on tiny models")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    parser.add_argument("--measure", metavar="NAME", help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_part(args.measure, args.quick)))
        return 0
    if args.list:
        for entry in PARTS.values():
            print(f"{entry.name}: {entry.notebooks}; {entry.what}")
        return 0
    names = args.parts or list(PARTS)
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    rows = run_parts(names, args.quick)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
