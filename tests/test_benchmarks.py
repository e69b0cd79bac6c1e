"""benchmarks/models.py and benchmarks/colab.py keep working: their quick modes run and print their tables (the
numbers themselves are a benchmark, not a test), and what they count adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "models.py"


def test_quick_mode_prints_the_table(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                             os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--threads", "1",
                             "--json", str(tmp_path / "results.json")],
                            capture_output=True, text=True, env=environment, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| ours | reference |") and "| ratio |" in table[0] and "| when |" in table[0]
    lstm = [line for line in table if "`torch.nn.LSTM`" in line]
    assert len(lstm) == 2 and all("quick mode" in line and "torch " in line for line in lstm)
    results = json.loads((tmp_path / "results.json").read_text())
    measured = {row["row"]: row for row in results["pairs"] if row["status"] == "measured"}
    assert set(measured) >= {"lstm-forward", "lstm-train", "conv1d", "generate", "generate-cache"}  # once landed
    assert all(row["ratio"] > 0 and row["met"] is None for row in measured.values())  # quick: no verdict
    for row in measured.values():  # the rounds' own ratios bracket their median
        spread = row["round_ratios"]
        assert 0 < spread["low"] <= spread["median"] <= spread["high"]
        assert f"(rounds {spread['low']:.2f} to {spread['high']:.2f})" in result.stdout
        assert row["warmup_calls"]["ours"] >= 1 and row["warmup_calls"]["reference"] >= 1
        assert "malloc keeping freed memory" in row["allocator"]  # the steady allocator, by default
        assert row["allocator"] in result.stdout  # and the table says so
    assert "warm-up 1 + 1 calls" in result.stderr  # quick: no settling


def _measure():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import models
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return models.measure


def _maps_fresh_memory_at_first(calls: int):
    """A function that maps in and writes 4 MB of fresh memory in each of its first `calls` calls, as a model's
    forward pass does while the allocator is still handing its buffers back to the system; then nothing."""
    import mmap

    count = {"calls": 0}

    def function():
        count["calls"] += 1
        if count["calls"] <= calls:
            with mmap.mmap(-1, 4 << 20) as memory:
                memory.write(b"\1" * (4 << 20))  # every page touched: about 1,000 page faults

    return function


def test_the_warm_up_goes_on_until_neither_side_takes_page_faults():
    import torch

    measure = _measure()
    settled = measure(_maps_fresh_memory_at_first(12), lambda: None, torch.device("cpu"), repeats=3, warmup=2,
                      target_s=0.001, settle_s=60)
    assert settled["warmup_settled"] and settled["warmup_calls"]["ours"] >= 13
    assert settled["faults_per_call"] == {"ours": 0, "reference": 0}  # the timed calls ran in the steady state
    # The control: two warm-up calls only, and the timed rounds pay for the faults.
    unsettled = measure(_maps_fresh_memory_at_first(12), lambda: None, torch.device("cpu"), repeats=3, warmup=2,
                        target_s=0.001, settle_s=0)
    assert not unsettled["warmup_settled"] and unsettled["warmup_calls"] == {"ours": 2, "reference": 2}
    assert unsettled["faults_per_call"]["ours"] > 100


def test_every_row_states_its_requirement():
    result = subprocess.run([sys.executable, str(SCRIPT), "--list"], capture_output=True, text=True, timeout=60,
                            check=True)
    rows = result.stdout.splitlines()
    assert {line.split(":")[0] for line in rows} >= {"lstm-forward", "lstm-train", "attention", "bert", "conv1d",
                                                    "generate", "generate-cache"}
    assert all("≤" in line or "a control" in line for line in rows)
    assert [line.split(":")[0] for line in rows if "a control" in line] == ["attention-plain"]


COLAB = ROOT / "benchmarks" / "colab.py"


def test_the_colab_estimate_counts_a_training_step_as_three_forward_passes(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                             os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, str(COLAB), "--quick", "--parts", "finetune-part6", "--json",
                             str(tmp_path / "rows.json")], capture_output=True, text=True, env=environment, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert "| T4 time, estimated |" in table[0] and len(table) == 3 and "quick mode" in table[2]
    [row] = json.loads((tmp_path / "rows.json").read_text())
    step, validation = row["units"]
    assert step["count"] == 1320 and validation["count"] == 6 * 4  # 955 tweets in batches of 256, six runs
    forward = validation["flops"] / (256 / 4)  # the validation unit counted 4 of the quick batch's rows
    assert 2.5 < step["flops"] / forward < 3.5  # backward costs about twice the forward pass
    assert step["operations"] > 2 * validation["operations"]  # and runs its own operations, then AdamW's
    assert row["flops"] == sum(unit["flops"] * unit["count"] for unit in row["units"])
    assert row["operations"] == sum(unit["operations"] * unit["count"] for unit in row["units"]) > 0
    fast, slow = row["t4_seconds"]  # each unit: float32 at the slow end's efficiency, or 25 µs an operation
    assert 0 < fast < slow == pytest.approx(sum(unit["count"] * max(unit["flops"] / (8.1e12 * 0.25),
                                                                    unit["operations"] * 25e-6)
                                                for unit in row["units"]))
    assert row["tensor_bytes"] > 0 and row["t4_memory_bytes"] > row["tensor_bytes"] and row["met"] is None


def test_every_colab_part_names_its_notebooks():
    result = subprocess.run([sys.executable, str(COLAB), "--list"], capture_output=True, text=True, timeout=60,
                            check=True)
    parts = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert set(parts) == {"finetune-sst2", "finetune-part6", "bert-base-pair", "gpt2-generation", "gpt2-prompting",
                          "rnn-page", "cnn-page", "rnn-cnn-assignments", "finetune-page-minilm",
                          "prompting-page", "choosing-page"}
    assert all(".ipynb" in text for text in parts.values())


def test_the_notebook_table_reads_the_kernels_peak_memory(tmp_path):
    import nbformat

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import models
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("block = bytearray(300 * 2**20)  # 300 MiB\nblock[::4096] = b'x' * (300 * 256)"),
        nbformat.v4.new_code_cell("del block")])
    path = tmp_path / "memory.ipynb"
    nbformat.write(notebook, path)
    saved = dict(os.environ)  # run_notebooks sets the kernels' environment in its own
    try:
        [row] = models.run_notebooks([path])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert row["error"] is None and row["met"]
    assert 300 * 2**20 < row["peak_memory_bytes"] < 2 * 2**30  # the block, plus the kernel itself
    line = models.notebooks_table([row]).splitlines()[2]
    assert f"| {row['peak_memory_bytes'] / 2**30:.2f} GiB |" in line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_steady_allocator_maps_a_freed_buffer_in_only_once():
    """`--allocator steady`: a 40 MB buffer, malloc'ed, written, freed, three times, is mapped in once; with the
    system's settings (above glibc's largest mmap threshold, 32 MB) it is mapped in anew every time."""
    script = """
import ctypes, resource, sys
sys.path.insert(0, sys.argv[1])
import models
how = models.keep_freed_memory() if sys.argv[2] == "steady" else "system"
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, size, faults = ctypes.c_void_p, 40 << 20, []
for attempt in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = libc.malloc(size)
    ctypes.memset(buffer, 1, size)
    libc.free(ctypes.c_void_p(buffer))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(how, "|", faults[1] + faults[2])
"""
    result = {}
    for allocator in ("steady", "system"):
        out = subprocess.run([sys.executable, "-c", script, str(ROOT / "benchmarks"), allocator], capture_output=True,
                             text=True, timeout=120, check=True).stdout
        how, faults = out.rsplit("|", 1)
        result[allocator] = (how.strip(), int(faults))
    assert "mallopt" in result["steady"][0] and result["steady"][1] < 100
    assert result["system"][1] > 10_000  # 2 x 10,240 pages of 4 KB mapped in again
