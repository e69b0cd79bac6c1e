"""Reproducibility: seeds, deterministic algorithms, the variance across seeds, leaks between splits, and a
record of the configuration and the environment kept next to every result.

Two ways to make a run repeatable:

- pass **generators** (``torch.Generator().manual_seed(s)``) to whatever draws at random: weight
  initialisation, data shuffling, dropout masks, masking, sampling. Nothing else can move their state, so
  adding a print or a plot that draws a number does not change the result. The course's functions take a
  ``generator=`` argument for this reason.
- or seed the **global** random number generators of Python, NumPy and torch (`set_seed`), which is what
  code that takes no generator (most libraries) falls back on.

Even with every seed fixed, some GPU kernels add floating-point numbers in whatever order their threads
finish (atomic adds in scatter and index_add, some cuDNN convolutions and backward passes): the results
then differ in the last bits from run to run, and training amplifies the differences. `set_seed(...,
deterministic=True)` asks torch for deterministic kernels, which may be slower, and errors where none
exists. One number from one seed is an anecdote: report the mean and standard deviation over seeds
(`seed_statistics`), and check that no example of the test split also sits in the training split
(`split_overlap`).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

RECORDED_PACKAGES = ("dl4nlp", "torch", "transformers", "datasets", "tokenizers", "numpy", "scikit-learn")
CUBLAS_VARIABLE, CUBLAS_SETTING = "CUBLAS_WORKSPACE_CONFIG", ":4096:8"  # what deterministic cuBLAS needs (CUDA >= 10.2)


def set_seed(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed every global random number generator: Python's `random`, NumPy's legacy global one, torch's on the
    CPU and on every GPU. With `deterministic`, also ask torch for deterministic algorithms only
    (torch.use_deterministic_algorithms, cuDNN without autotuning, cuBLAS's workspace setting), so that the same
    seed gives the same bits on the same machine; operations without a deterministic kernel then raise. Turn it
    off again with torch.use_deterministic_algorithms(False).

    Args: seed, an integer in [0, 2^32) (NumPy's range); deterministic.
    Returns: a fresh torch.Generator seeded with `seed`, to pass on to code that takes one (the better way:
      a generator's state is not shared with anything else).
    Matches: transformers.set_seed(seed, deterministic) (and lightning's seed_everything) for these libraries.
    """
    import numpy as np

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"set_seed: seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # the CPU's generator and, lazily, every GPU's
    torch.cuda.manual_seed_all(seed)
    if deterministic:  # never switched off here: a notebook that asked for it keeps it
        os.environ.setdefault(CUBLAS_VARIABLE, CUBLAS_SETTING)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class SeedStatistics:
    """A result over seeds: the values, their mean, sample standard deviation (n - 1) and the standard error
    of the mean (sd / sqrt(n))."""

    values: tuple[float, ...]
    mean: float
    std: float
    standard_error: float

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g} (n = {len(self.values)})"


def seed_statistics(values: Iterable[float]) -> SeedStatistics:
    """Mean ± standard deviation of a result measured with several seeds.

    Args: values, one result per seed (at least two: one seed says nothing about the spread).
    Returns: `SeedStatistics`.
    Matches: statistics.mean and statistics.stdev (numpy.std(ddof=1)).
    """
    values = tuple(float(value) for value in values)
    if len(values) < 2 or not all(math.isfinite(value) for value in values):
        raise ValueError(f"seed_statistics: give at least two finite values, one per seed; got {list(values)}")
    std = statistics.stdev(values)
    return SeedStatistics(values, statistics.fmean(values), std, std / math.sqrt(len(values)))


def over_seeds(run: Callable[[torch.Generator], float], seeds: Sequence[int]) -> SeedStatistics:
    """`run(generator)` once per seed, each with its own torch.Generator: the spread of a result over seeds."""
    return seed_statistics(run(torch.Generator().manual_seed(seed)) for seed in seeds)


def reproduces(measured: float | SeedStatistics, reported: float, tolerance: float) -> bool:
    """Whether a measured result reproduces a reported one: |measured - reported| <= tolerance (for a
    `SeedStatistics`, its mean). Choose the tolerance before you measure, e.g. two standard deviations of the
    seeds' spread, or the reported precision."""
    if not tolerance >= 0:
        raise ValueError(f"reproduces: tolerance must be >= 0, got {tolerance!r}")
    value = measured.mean if isinstance(measured, SeedStatistics) else float(measured)
    return abs(value - reported) <= tolerance


def split_overlap(first: Iterable[Hashable], second: Iterable[Hashable],
                  normalize: Callable[[Any], Hashable] | None = None) -> list[Hashable]:
    """The examples that occur in both splits (a leak: a test example the model may have trained on).

    Args: first, second, the examples of two splits (sentences, ids, tuples); normalize, applied to every
      example before comparing (default: strip and lowercase strings, so "Great film." and "great film. " meet).
    Returns: the shared examples (normalized), in the order of `second`, each once.
    """
    normalize = normalize or (lambda x: " ".join(x.lower().split()) if isinstance(x, str) else x)
    seen = {normalize(example) for example in first}
    return list(dict.fromkeys(key for key in map(normalize, second) if key in seen))


# --- a record of the run ---------------------------------------------------------------------------


def package_versions(names: Iterable[str] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """{package: installed version, or None if it is not installed}."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Where this runs: Python, the operating system, the processor and torch's threads, the GPU (name, CUDA and
    cuDNN versions) if any, package versions, whether torch's deterministic mode is on, and the git commit of
    the current folder if it is a repository."""
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "packages": package_versions(),
        "git_commit": _git_commit(Path.cwd()),
        "argv": list(sys.argv),
    }


@dataclass
class RunRecord:
    """What a result needs beside it to be reproduced: the configuration (hyperparameters, data, seeds), the
    results, the environment and when. `save` writes it as JSON; `RunRecord.load` reads it back."""

    config: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=environment)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON (values that JSON lacks, such as tensors or paths, as their str)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, default=_jsonable) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunRecord:
        return cls(**json.loads(Path(path).read_text()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def record_run(config: Mapping[str, Any], **results: Any) -> RunRecord:
    """A `RunRecord` of this run: ``record_run({"lr": 1e-3, "seed": 0}, accuracy=0.91).save("runs/a.json")``."""
    if not isinstance(config, Mapping):
        raise TypeError(f"record_run: config should be a mapping of setting -> value, got {type(config).__name__}")
    return RunRecord(dict(config), dict(results))
