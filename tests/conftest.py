"""Shared test settings: offline, smoke mode, and the repository root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the tests touches the network; notebooks and kernels started by tests inherit these.
os.environ.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "DL4NLP_SMOKE": "1", "MPLBACKEND": "Agg"})

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT
