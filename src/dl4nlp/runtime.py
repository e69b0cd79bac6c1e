"""Where code runs: the device, smoke mode, grading and Colab detection.

Smoke mode (environment variable ``DL4NLP_SMOKE=1``) makes every training run
and data set tiny, so that notebooks, the book build and autograding finish in
seconds on a CPU. Colab runs the real thing.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SMOKE_VARIABLE = "DL4NLP_SMOKE"
GRADING_VARIABLE = "DL4NLP_GRADING"  # set by the autograder's sandbox
# What the book build, the tests and graded submissions run under: no hub, no downloads, no display.
OFFLINE_ENVIRONMENT = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "MPLBACKEND": "Agg"}


def smoke_mode() -> bool:
    """True when DL4NLP_SMOKE is set to anything but "", "0" or "false"."""
    return os.environ.get(SMOKE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def grading() -> bool:
    """True while the autograder runs a notebook (it sets DL4NLP_GRADING): experiments that only call the
    graded functions, such as training runs, are skipped there, since the grader checks the functions itself."""
    return bool(os.environ.get(GRADING_VARIABLE))


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def get_device() -> torch.device:
    """cuda when a GPU is present, else cpu."""
    import torch  # imported here so that instructor tools start without loading torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def scaled(full: int, smoke: int) -> int:
    """`smoke` in smoke mode, else `full`: how training loops size epochs, examples, steps."""
    return smoke if smoke_mode() else full
