"""dl4nlp.reproducibility: seeding, the statistics over seeds, leaks between splits, and the run record."""

from __future__ import annotations

import importlib.metadata
import random
import statistics

import numpy as np
import pytest
import torch

from dl4nlp.reproducibility import (RunRecord, SeedStatistics, over_seeds, package_versions, record_run, reproduces,
                                    seed_statistics, set_seed, split_overlap)


def draws() -> tuple[float, float, list[float], list[float]]:
    layer = torch.nn.Linear(2, 2)  # initialised from torch's global generator
    return random.random(), float(np.random.rand()), torch.rand(3).tolist(), layer.weight.flatten().tolist()


def test_set_seed_makes_every_global_generator_repeat():
    set_seed(7)
    first = draws()
    set_seed(7)
    assert draws() == first
    set_seed(8)
    assert draws() != first


def test_set_seed_returns_a_generator_of_its_own():
    generator = set_seed(3)
    expected = torch.rand(4, generator=torch.Generator().manual_seed(3))
    torch.rand(100)  # the global generator moves; the returned one does not
    assert torch.equal(torch.rand(4, generator=generator), expected)


def test_deterministic_mode_is_asked_for_and_can_be_turned_off():
    try:
        set_seed(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark
        set_seed(0)  # does not switch it off behind the user's back
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("seed", [-1, 2 ** 32, 1.5, True, "0"])
def test_set_seed_rejects_what_numpy_cannot_take(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        set_seed(seed)


def test_seed_statistics_are_the_sample_mean_and_standard_deviation():
    values = [0.91, 0.88, 0.93, 0.90, 0.86]
    result = seed_statistics(values)
    assert result.mean == pytest.approx(statistics.mean(values))
    assert result.std == pytest.approx(np.std(values, ddof=1))
    assert result.standard_error == pytest.approx(np.std(values, ddof=1) / np.sqrt(5))
    assert str(result).startswith("0.896 ± 0.027") and "(n = 5)" in str(result)
    for bad in ([0.9], [0.9, float("nan")]):
        with pytest.raises(ValueError, match="at least two finite values"):
            seed_statistics(bad)


def test_over_seeds_gives_each_run_its_own_generator():
    result = over_seeds(lambda generator: torch.rand(1, generator=generator).item(), [0, 1, 2])
    assert result.values == tuple(torch.rand(1, generator=torch.Generator().manual_seed(s)).item() for s in (0, 1, 2))
    assert isinstance(result, SeedStatistics) and result.std > 0


def test_reproduces_within_a_tolerance():
    assert reproduces(0.912, 0.915, 0.005) and not reproduces(0.90, 0.915, 0.005)
    assert reproduces(seed_statistics([0.91, 0.92]), 0.915, 0.001)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        reproduces(1.0, 1.0, -0.1)


def test_split_overlap_finds_leaks_after_normalizing():
    train = ["A great film .", "dull", "fine"]
    test = ["a  great film .", "new", "Dull", "dull"]
    assert split_overlap(train, test) == ["a great film .", "dull"]
    assert split_overlap([1, 2, 3], [3, 4]) == [3]
    assert split_overlap(train, ["new"]) == []
    assert split_overlap([(1, "a")], [(1, "A")], normalize=lambda pair: (pair[0], pair[1].lower())) == [(1, "a")]


def test_run_record_keeps_config_results_and_environment(tmp_path):
    record = record_run({"lr": 1e-3, "seed": 0, "data": tmp_path}, accuracy=0.91, confusion=torch.tensor([[3, 1]]))
    path = record.save(tmp_path / "runs" / "a.json")
    loaded = RunRecord.load(path)
    assert loaded.config == {"lr": 1e-3, "seed": 0, "data": str(tmp_path)}
    assert loaded.results == {"accuracy": 0.91, "confusion": [[3, 1]]}
    environment = loaded.environment
    assert environment["packages"]["torch"] == importlib.metadata.version("torch")
    assert environment["device"] in ("cpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    assert {"python", "platform", "torch_threads", "deterministic_algorithms", "git_commit"} <= set(environment)
    assert loaded.created.endswith("+00:00")
    with pytest.raises(TypeError, match="config should be a mapping"):
        record_run([("lr", 1e-3)])


def test_package_versions_names_missing_packages():
    versions = package_versions(["torch", "no-such-package-dl4nlp"])
    assert versions["torch"] and versions["no-such-package-dl4nlp"] is None
