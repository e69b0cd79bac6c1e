"""What a graded function must do: cases drawn at grading time, compared with the reference.

Each assignment has a module here, named after it (`dl4nlp.assessment.rnn`), that defines
``ASSESSMENT``: the chapter module holding the reference functions, and one `Part` per
graded function (its name is the function's name and the ``grade_id`` of its solution
cell). A part builds its cases from a `torch.Generator`, so nothing is stored: the
autograder draws secret cases per student and computes the reference's outputs itself;
the student self-check (`dl4nlp.selfcheck`) draws public ones. A part passes only if
every case matches the reference: its points are all or nothing.

Colab-safe: this package imports torch and the chapter modules only, never nbgrader.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Case:
    """One call of a graded function: positional arguments and a description students can read."""

    args: tuple[Any, ...]
    description: str  # e.g. "batch 1, D=3, H=4"


@dataclass(frozen=True)
class Part:
    """A graded function: its name and how to draw its cases."""

    name: str
    cases: Callable[[torch.Generator], list[Case]]
    atol: float = 1e-4
    rtol: float = 1e-4


@dataclass(frozen=True)
class Assessment:
    """The graded parts of one assignment.

    `points` is what the self-check reports (it runs in Colab, where the notebook file is
    out of reach); the autograder takes each part's points from the test cell metadata
    of the instructor notebook and refuses to grade if the two disagree.
    """

    assignment: str
    module: str  # the chapter module with the reference functions, e.g. "dl4nlp.rnn"
    parts: tuple[Part, ...]
    points: Mapping[str, float]

    def reference(self, name: str) -> Callable[..., Any]:
        """The reference implementation of a part."""
        return getattr(importlib.import_module(self.module), name)

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)


def load(assignment: str) -> Assessment:
    """The `Assessment` of an assignment, from `dl4nlp.assessment.<assignment>`."""
    try:
        module = importlib.import_module(f"{__name__}.{assignment}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{assignment}":
            raise
        raise LookupError(f"no checks for assignment {assignment!r}: write src/dl4nlp/assessment/{assignment}.py "
                          "(see assessment/rnn.py)") from None
    return module.ASSESSMENT


def generator(*words: str) -> torch.Generator:
    """A torch.Generator seeded from words (assignment, student, part, a secret): same words, same cases."""
    digest = hashlib.sha256("\0".join(words).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def public_cases(assessment: Assessment, part: Part) -> list[Case]:
    """The cases everyone may see: what the self-check runs."""
    return part.cases(generator("public", assessment.assignment, part.name))


# --- outputs: plain data, compared with a tolerance -------------------------------------


Plain = Any  # a torch.Tensor, None, bool, int, float, str, or a tuple of those


def plain(value: Any, depth: int = 0) -> Plain:
    """`value` as plain data (tensors detached and copied, lists as tuples); TypeError for anything else."""
    if depth > 4:
        raise TypeError("returned a structure nested too deeply")
    if isinstance(value, Tensor):
        copy = torch.empty(tuple(value.shape), dtype=value.dtype)
        copy.copy_(value.detach().cpu())
        return copy
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(plain(item, depth + 1) for item in value)
    raise TypeError(f"returned a {type(value).__name__}, expected tensors")


def describe(value: Plain) -> str:
    """How a value looks, for messages: "a tensor (3, 4)", "a tuple of 2 values"."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} values"
    return "None" if value is None else f"a {type(value).__name__}"


def difference(expected: Plain, got: Plain, atol: float, rtol: float) -> str | None:
    """None if `got` matches `expected` within the tolerance, else what is wrong, in words."""
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor):
            return f"returned {describe(got)}, expected {describe(expected)}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if expected.is_floating_point() and not got.is_floating_point():
            return f"returned dtype {got.dtype}, expected a floating point tensor"
        if got.numel() == 0:
            return None
        got64, expected64 = got.to(torch.float64), expected.to(torch.float64)
        if not torch.isfinite(got64).all() and torch.isfinite(expected64).all():
            return "returned NaN or infinite values"
        gap = (got64 - expected64).abs()
        if bool((gap <= atol + rtol * expected64.abs()).all()):
            return None
        worst = float(gap.max())
        return f"max difference {worst:.3g}" if math.isfinite(worst) else "values differ"
    if isinstance(expected, tuple):
        if not isinstance(got, tuple) or len(got) != len(expected):
            return f"returned {describe(got)}, expected {describe(expected)}"
        for index, (e, g) in enumerate(zip(expected, got)):
            problem = difference(e, g, atol, rtol)
            if problem:
                return f"returned value {index + 1} of {len(expected)}: {problem}"
        return None
    return None if got == expected else f"returned {got!r}, expected {expected!r}"


@dataclass(frozen=True)
class Outcome:
    """One call of a student's function: its plain output, or the error it raised."""

    output: Plain = None
    error: str | None = None


def call(function: Callable[..., Any], case: Case) -> Outcome:
    """Call `function` on a case; any exception becomes an error message (the student's bug, not ours)."""
    try:
        return Outcome(output=plain(function(*case.args)))
    except NotImplementedError:
        return Outcome(error="not implemented yet (NotImplementedError)")
    except Exception as error:  # noqa: BLE001 - any failure of student code is a result
        return Outcome(error=error_message(error))


def error_message(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Verdict:
    """A part's result: passed, or the first failing case and what went wrong."""

    passed: bool
    message: str = ""  # what went wrong, with the case: for students
    summary: str = ""  # what went wrong, without the case (for feedback that hides hidden cases)


def judge(part: Part, cases: Sequence[Case], expected: Sequence[Plain], outcomes: Sequence[Outcome]) -> Verdict:
    """Compare a student's outcomes with the reference's outputs, case by case."""
    if len(outcomes) != len(cases):
        return Verdict(False, "did not run on every case", "did not run on every case")
    for number, (case, want, outcome) in enumerate(zip(cases, expected, outcomes), start=1):
        problem = outcome.error or difference(want, outcome.output, part.atol, part.rtol)
        if problem and problem.startswith("not implemented"):
            return Verdict(False, problem, problem)
        if problem:
            return Verdict(False, f"{problem} on case {number} ({case.description})",
                           f"{problem} on a hidden case" if outcome.error is None else problem)
    return Verdict(True)
