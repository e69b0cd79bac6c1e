"""The Colab-only parts of the notebooks' full runs, estimated for a free Colab T4 (issue 18).

    .venv/bin/python benchmarks/colab.py [--parts NAME ...] [--quick] [--json FILE] [--list]

In Colab, without smoke mode, some cells load BERT-base or GPT-2 from the Hugging Face hub and train or
run them. No GPU and no hub are here, so each such part is estimated, and every row says so:

- **Time** from FLOPs: every unit of work the part repeats (a training step, a validation batch, a
  prompt) runs once here under `torch.utils.flop_counter.FlopCounterMode`, on the same shapes with the
  same model built from its config (random weights: the FLOPs and the memory do not depend on them). The
  FLOPs times the number of units the notebook runs, over the T4's published throughput (8.1 TFLOP/s in
  float32, 65 in float16 with tensor cores, for parts that train with mixed precision) at the fraction of
  it that real runs reach (`EFFICIENCY`, an assumption: the arithmetic only, not kernel launches or
  loading data). The slow end is what is compared with the 15 minutes.
- **Memory**: each part runs in a fresh process, each unit for real (a training step twice: an
  optimizer's state exists from its first step); the growth of the process's peak resident memory over its memory
  after the imports is the tensors' memory. On the GPU that memory moves there, and CUDA's context
  (`CUDA_CONTEXT_BYTES`) comes on top; float32 here bounds the activations of a mixed-precision run,
  whose float16 copies of the weights (half their bytes) are added. Compared with the T4's 15 GB.

`--quick` checks the script itself on tiny models: its numbers mean nothing and its rows say so.
A benchmark, not a test: it reads /proc (Linux) and takes a few minutes on a 2-core CPU.

Adding a part: a function that imports what it needs and returns the part's units, registered with
`@part(name, notebooks=..., what=..., precision=...)`; a `Unit`'s `run` does one unit of work on the CPU,
`count` says how many the full run makes, `scale` multiplies one run's FLOPs when `run` does a smaller
batch of the same shape (FLOPs grow linearly with the batch), and a training step is `stateful`.
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
from models import ROOT, device_name, load, now  # noqa: E402 - the same row stamps as the other benchmark

T4_FLOPS = {"float32": 8.1e12, "mixed": 65e12}  # NVIDIA T4 datasheet: FP32, and mixed FP16/FP32 (tensor cores)
EFFICIENCY = {"float32": (0.25, 0.5), "mixed": (0.1, 0.3)}  # assumed share of it that training reaches (slow, fast)
T4_MEMORY_BYTES = 15e9  # "16 GB" of which Colab shows about 15
CUDA_CONTEXT_BYTES = 0.5e9  # CUDA's context and cuBLAS's workspace, about 0.3 to 0.5 GB: the upper end
BUDGET_S = 15 * 60  # issue 18: each notebook's full run within 15 minutes on a free Colab T4


@dataclass(frozen=True)
class Unit:
    label: str
    run: Callable[[], object]  # one unit of work on the CPU
    count: int  # how many the notebook's full run makes
    scale: float = 1.0  # one unit's FLOPs = scale * the FLOPs of run() (run does a smaller batch)
    stateful: bool = False  # run twice: its first run makes state (an optimizer's) that the second one carries
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
                validation_batch: int, runs: int) -> list[Unit]:
    """Full finetuning of a BERT-base classifier with AdamW (dl4nlp.finetune's step), then its validation."""
    import torch

    from dl4nlp.bert import BertModel
    from dl4nlp.finetune import SequenceClassifier, finetune_step, optimizer_and_schedule

    config = _bert_config(quick)
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
    return [Unit(f"training step, {batch} × {length} tokens, forward, backward, AdamW", step, steps, stateful=True,
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


@part("gpt2-prompting", notebooks="`solutions/prompting/prompting.ipynb` in Colab, `book/choosing.ipynb`'s "
      "prompting in Colab", what="GPT-2 small scoring 2 label words after each prompt: 40 evaluations of 203 "
      "prompts (200 SST-2 reviews and 3 content-free ones) in the instructor notebook; counted at 300 tokens, "
      "the longest (8 demonstrations), where the average is about 100")
def gpt2_prompting(quick):
    import torch

    from dl4nlp.prompting import continuation_log_probs

    model, config = _gpt2(quick)
    prompt = torch.randint(config.vocab_size, (20 if quick else 298,), generator=torch.Generator().manual_seed(0))
    prompt_ids, words = prompt.tolist(), [[11], [12]]
    return [Unit("one prompt, 2 label words of 1 token (a batch of 2 × 300 tokens)",
                 lambda: continuation_log_probs(model, prompt_ids, words), 40 * 203)]


# --- measuring, one part per fresh process -------------------------------------------------------------


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status (this measures memory on Linux only)")


def measure_part(name: str, quick: bool) -> dict:
    """In this process: the part's units built, each run once under the FLOP counter (a stateful one again)."""
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
    rows, total_flops = [], 0.0
    for unit in units:
        counter = FlopCounterMode(display=False)
        start = time.perf_counter()
        with counter:
            unit.run()
        seconds = time.perf_counter() - start
        if unit.stateful:
            start = time.perf_counter()
            unit.run()
            seconds = time.perf_counter() - start
        flops = counter.get_total_flops() * unit.scale
        total_flops += flops * unit.count
        rows.append({"unit": unit.label, "flops": flops, "count": unit.count, "cpu_seconds": seconds})
    peak = _status_bytes("VmHWM")
    return {"units": rows, "flops": total_flops, "tensor_bytes": peak - baseline, "threads": torch.get_num_threads(),
            "trained_parameters": max(unit.trained_parameters for unit in units)}


def estimate(name: str, measured: dict, quick: bool) -> dict:
    entry = PARTS[name]
    peak_flops = T4_FLOPS[entry.precision]
    slow, fast = EFFICIENCY[entry.precision]
    seconds = (measured["flops"] / (peak_flops * fast), measured["flops"] / (peak_flops * slow))
    half_weights = 2 * measured["trained_parameters"] if entry.precision == "mixed" else 0  # bytes in float16
    memory = measured["tensor_bytes"] + CUDA_CONTEXT_BYTES + half_weights
    return {"part": name, "notebooks": entry.notebooks, "what": entry.what, "precision": entry.precision,
            "quick": quick, "t4_seconds": seconds, "t4_memory_bytes": memory,
            "met": None if quick else seconds[1] <= BUDGET_S and memory <= T4_MEMORY_BYTES, "when": now(),
            "load": load(), "device": device_name(_cpu()), **measured}


def _cpu():
    import torch

    return torch.device("cpu")


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
    return f"{low:.0f} to {high:.0f} s" if high < 120 else f"{low / 60:.1f} to {high / 60:.1f} min"


def table(rows: list[dict]) -> str:
    lines = ["| part | notebooks | what runs | FLOPs in all | T4 time, estimated | T4 memory, estimated | "
             "within 15 min and 15 GB | measured where, when |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        units = "; ".join(f"{unit['count']:,} × {unit['unit']} ({unit['flops']:.3g} FLOPs)" for unit in row["units"])
        verdict = "— (quick mode)" if row["met"] is None else "yes" if row["met"] else "**no**"
        speed = f"{T4_FLOPS[row['precision']] / 1e12:g} TFLOP/s {row['precision']} at " + " to ".join(
            f"{share:.0%}" for share in reversed(EFFICIENCY[row["precision"]]))
        lines.append(
            f"| {row['part']}{' (quick mode: tiny models)' if row['quick'] else ''} | {row['notebooks']} | "
            f"{row['what']}: {units} | {row['flops']:.3g} | {_minutes(row['t4_seconds'])} ({speed}) | "
            f"{row['t4_memory_bytes'] / 1e9:.2f} GB ({row['tensor_bytes'] / 1e9:.2f} GB of tensors, measured "
            f"here, + {CUDA_CONTEXT_BYTES / 1e9:.1f} GB CUDA context"
            f"{' + float16 weights' if row['precision'] == 'mixed' else ''}) | {verdict} | "
            f"{row['device']}, {row['threads']} threads, {row['when']}, {row['load']} |")
    return "\n".join(lines)


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
