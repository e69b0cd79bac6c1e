"""What a graded function must do: cases drawn at grading time, compared with the reference.

Each assignment has a module here, named after it (`dl4nlp.exercises.rnn`), that defines
``ASSIGNMENT``: one `Part` per graded function. A part says everything about its function
in one place: the chapter module with the reference, its points (`dl4nlp sync` writes
them into the instructor notebook's test cell), how to draw its cases, the library calls
that would do its work in one line (`forbidden`) and its typical bugs (`bugs`:
known-wrong variants whose name the feedback gives when a wrong answer matches one).

A part builds its cases from a `torch.Generator`, so nothing is stored: the autograder
draws secret cases per student and computes the reference's outputs itself; the student
self-check (`dl4nlp.selfcheck`) draws public ones. Each call is checked twice: its outputs,
and the gradients of its outputs with respect to every floating-point input (tensors and
the parameters of modules passed in), so that a detached or numpy implementation fails (a part
whose output is itself a gradient, `Part.gradients` False, is checked on its outputs only). A
part passes only if every case matches the reference: its points are all or nothing. An
answer that uses the reference, or one of the part's `forbidden` calls, scores nothing
whatever it returns: `dl4nlp.exercises.calls` finds both, in the code the graded function
reaches and while it runs, for the grader and the self-check alike.

Colab-safe: this package imports torch and the chapter modules only, never the instructor tools.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Case:
    """One call of a graded function: positional arguments and a description students can read."""

    args: tuple[Any, ...]
    description: str  # e.g. "batch 1, D=3, H=4"


@dataclass(frozen=True, eq=False)
class Part:
    """A graded function: where its reference lives, what it is worth, how to check it.

    name: the function's name, the ``grade_id`` of its solution cell (its test cell is
      ``test_<name>``); module: the chapter module with the reference, e.g. "dl4nlp.rnn";
    points: what the part is worth (the only place it is written);
    cases: draws the cases from a generator;
    forbidden: dotted names of library calls that would do the part's work in one line
      ("torch.lstm_cell", "torch.nn.LSTM"; a module, "torch._VF", forbids everything under it):
      using one scores 0 (status "forbidden"); only the part's own list counts;
    bugs: {description: known-wrong implementation}, the typical bugs that feedback names;
    atol, rtol: the tolerance for outputs and gradients;
    given: {name: function}, notebook functions the part's function may call (`unroll`, from the
      bidirectional layer) that the grader and the self-check bind to their own version while the
      part runs (`binding`), so that a bug in one part never costs another its points;
    gradients: False for a part whose output is itself a gradient: only its outputs are compared;
    check: for a part whose outputs are random (`mask_tokens` draws which tokens to hide), so that no two
      right answers agree: check(case, output) says what is wrong with an answer's output (None if nothing)
      from the properties any right output has, statistical ones with a tolerance, instead of comparing it
      with the reference's. The reference must pass it (tests prove it, and that each bug fails it). Its
      words should not quote the case (they are shown under --hide-cases); a typical bug matches an answer
      whose problems read the same, numbers aside.
    effects: for a function that changes its arguments instead of (only) returning a result, such as a training
      step that updates a model, an optimizer and a scheduler: effects(args) reads what a call left in its
      arguments (the parameters, the learning rate, the scheduler's step count), and the answer's output is
      compared as (what it returned, effects(args)). The case's arguments are then deep-copied together (one
      copy.deepcopy of the tuple, so that an optimizer keeps pointing at the copied model's parameters), and
      only outputs are compared (no input gradients). Grader, harness and self-check pass it to `call` alike.
    grading: how the part is graded, in words for students, where the rules' standard sentence does not fit
      (`dl4nlp sync` writes it into the part's rules cell).
    """

    name: str
    module: str
    points: float
    cases: Callable[[torch.Generator], list[Case]]
    forbidden: tuple[str, ...] = ()
    bugs: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    atol: float = 1e-4
    rtol: float = 1e-4
    given: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    gradients: bool = True
    check: Callable[[Case, Any], str | None] | None = None
    effects: Callable[[tuple[Any, ...]], Any] | None = None
    grading: str = ""

    def reference(self) -> Callable[..., Any]:
        """The reference implementation of the part."""
        return getattr(importlib.import_module(self.module), self.name)


@dataclass(frozen=True, eq=False)
class Assignment:
    """The graded parts of one assignment, in notebook order."""

    name: str
    parts: tuple[Part, ...]

    def part(self, name: str) -> Part:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(f"assignment {self.name!r} has no part {name!r}")

    @property
    def points(self) -> dict[str, float]:
        """{part: points}, in notebook order."""
        return {part.name: float(part.points) for part in self.parts}

    @property
    def modules(self) -> tuple[str, ...]:
        """The chapter modules whose functions are graded, each once."""
        return tuple(dict.fromkeys(part.module for part in self.parts))


def load(assignment: str) -> Assignment:
    """The `Assignment` of an assignment, from `dl4nlp.exercises.<assignment>`."""
    try:
        module = importlib.import_module(f"{__name__}.{assignment}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{assignment}":
            raise
        raise LookupError(f"no exercises for assignment {assignment!r}: write src/dl4nlp/exercises/{assignment}.py "
                          "(see exercises/rnn.py)") from None
    return module.ASSIGNMENT


def generator(*words: str) -> torch.Generator:
    """A torch.Generator seeded from words (assignment, student, part, a secret): same words, same cases."""
    digest = hashlib.sha256("\0".join(words).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@contextmanager
def binding(functions: Mapping[str, Callable[..., Any]], namespace: MutableMapping[str, Any]) -> Iterator[None]:
    """Bind `functions` (a part's `given`) in a notebook's `namespace` while the part runs; restore it after."""
    missing = object()
    saved = {name: namespace.get(name, missing) for name in functions}
    namespace.update(functions)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def normal(generator: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    """Standard normal values of `shape` from `generator`, times `scale`: the parts' random inputs."""
    return torch.randn(*shape, generator=generator) * scale


def draw_lengths(generator: torch.Generator, B: int, T: int) -> Tensor:
    """Lengths (B,) in 1..T with one full sequence and, when B > 1, one shorter: a padded batch."""
    lengths = torch.randint(1, T + 1, (B,), generator=generator)
    lengths[0] = T
    if B > 1:
        lengths[-1] = int(torch.randint(1, T, (1,), generator=generator))
    return lengths


def public_cases(assignment: Assignment, part: Part) -> list[Case]:
    """The cases everyone may see: what the self-check runs."""
    return part.cases(generator("public", assignment.name, part.name))


# --- outputs: plain data, compared with a tolerance -------------------------------------


Plain = Any  # a torch.Tensor, None, bool, int, float, str, or a tuple of those


def plain(value: Any, depth: int = 0) -> Plain:
    """`value` as plain data (tensors detached and copied, lists and dataclasses as tuples); TypeError for
    anything else."""
    if depth > 4:
        raise TypeError("returned a structure nested too deeply")
    if isinstance(value, Tensor):
        copy_ = torch.empty(tuple(value.shape), dtype=value.dtype)
        copy_.copy_(value.detach().cpu())
        return copy_
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(plain(item, depth + 1) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # Metrics(accuracy, f1, confusion)
        return tuple(plain(getattr(value, item.name), depth + 1) for item in dataclasses.fields(value))
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
        gap[(got64 == expected64) | (got64.isnan() & expected64.isnan())] = 0  # infinities and NaN where expected
        tolerance = (atol + rtol * expected64.abs()).nan_to_num(posinf=0.0)  # an infinity is matched exactly
        if bool((gap <= tolerance).all()):
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
    if type(expected) is float:  # a loss or an accuracy: compared with the tolerance, like a tensor
        if isinstance(got, Tensor) and got.numel() == 1 and not got.is_complex():
            got = float(got.reshape(()))
        if type(got) not in (float, int):
            return f"returned {describe(got)}, expected a float"
        if math.isnan(expected) and math.isnan(got):
            return None
        return (None if abs(got - expected) <= atol + rtol * abs(expected) or got == expected
                else f"returned {got:.6g}, expected {expected:.6g}")
    return None if got == expected else f"returned {got!r}, expected {expected!r}"


# --- calling a function: outputs and gradients ----------------------------------------------


NOT_DIFFERENTIABLE = "not differentiable"  # the gradients of an output that autograd cannot trace


def _leaves(value: Any, label: str, depth: int = 0) -> Iterator[tuple[str, Tensor]]:
    """(label, tensor) for every floating-point tensor in an argument: tensors, tuples, module parameters."""
    if depth > 4:
        return
    if isinstance(value, Tensor):
        if value.is_floating_point():
            yield label, value
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{label}[{index}]", depth + 1)
    elif isinstance(value, nn.Module):
        for name, parameter in value.named_parameters():
            if parameter.is_floating_point():
                yield f"{label}.{name}", parameter


def argument_names(function: Callable[..., Any], count: int) -> list[str]:
    """The names of the first `count` positional parameters of `function` (arg1, arg2, ... if unknown)."""
    try:
        names = [p.name for p in inspect.signature(function).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        names = []
    return [names[i] if i < len(names) else f"arg{i + 1}" for i in range(count)]


def input_labels(part: Part, case: Case) -> list[str]:
    """Names of the differentiable inputs of a case, in the order `call` returns their gradients."""
    names = argument_names(part.reference(), len(case.args))
    return [label for name, arg in zip(names, case.args) for label, _ in _leaves(arg, name)]


def _output_tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _output_tensors(item)]
    return []


def _gradients(args: tuple[Any, ...], output: Any) -> tuple[Tensor, ...] | str:
    """d(sum of outputs weighted by fixed random numbers) / d(every differentiable input), as plain tensors.

    Inputs the output does not depend on get zeros. Returns NOT_DIFFERENTIABLE if no floating-point
    output is connected to autograd (computed with numpy, detached, or under torch.no_grad()).
    """
    inputs = [tensor for arg in args for _, tensor in _leaves(arg, "")]
    outputs = _output_tensors(output)
    if not inputs or not outputs:
        return ()
    weights = torch.Generator().manual_seed(1234)
    total = None
    for tensor in outputs:
        if not tensor.requires_grad:
            continue
        weight = torch.randn(tuple(tensor.shape), generator=weights, dtype=torch.float64)
        term = (tensor.to(torch.float64) * weight.to(tensor.device)).sum()
        total = term if total is None else total + term
    if total is None:
        return NOT_DIFFERENTIABLE
    grads = torch.autograd.grad(total, inputs, allow_unused=True)
    return tuple(plain(torch.zeros_like(tensor) if grad is None else grad) for tensor, grad in zip(inputs, grads))


def _prepare(args: tuple[Any, ...], together: bool = False) -> tuple[Any, ...]:
    """A private copy of the arguments whose floating-point tensors track gradients (leaves).

    together: one copy.deepcopy of all the arguments instead (a part with `Part.effects`): objects that refer
    to each other (an optimizer to a model's parameters, a scheduler to the optimizer) still do in the copy,
    and nothing is added or reset. (A parameter's .grad survives neither copy.deepcopy nor pickling: a case that
    needs stale gradients keeps them in its model's state, as `dl4nlp.exercises.finetune.StaleGradients` does.)
    """
    if together:
        return copy.deepcopy(tuple(args))
    def copy_arg(value: Any) -> Any:
        if isinstance(value, Tensor):
            value = value.detach().clone()
            return value.requires_grad_(True) if value.is_floating_point() else value
        if isinstance(value, tuple):
            return tuple(copy_arg(item) for item in value)
        if isinstance(value, list):
            return [copy_arg(item) for item in value]
        if isinstance(value, nn.Module):
            module = copy.deepcopy(value)
            for parameter in module.parameters():
                parameter.grad = None
            return module
        if isinstance(value, torch.Generator):  # each call draws the same numbers
            return torch.Generator(value.device).set_state(value.get_state())
        return value  # functions, numbers, None: shared
    return tuple(copy_arg(arg) for arg in args)


@dataclass(frozen=True)
class Outcome:
    """One call of a function: its plain output and input gradients, or the error it raised.

    gradients: one tensor per differentiable input (see `input_labels`), `NOT_DIFFERENTIABLE`,
    or () when nothing is differentiable.
    """

    output: Plain = None
    gradients: tuple[Tensor, ...] | str = ()
    error: str | None = None


def call(function: Callable[..., Any], case: Case,
         effects: Callable[[tuple[Any, ...]], Any] | None = None) -> Outcome:
    """Call `function` on a private copy of a case; any exception becomes an error message.

    effects: a part's `Part.effects`: the output is then (what `function` returned, effects(the copied
    arguments after the call)), and no gradients are taken.
    """
    args = _prepare(case.args, together=effects is not None)
    try:
        with torch.enable_grad():
            output = function(*args)
            if effects is not None:
                return Outcome(output=(plain(output), plain(effects(args))))
            result = plain(output)
            gradients = _gradients(args, output)
    except NotImplementedError:
        return Outcome(error="not implemented yet (NotImplementedError)")
    except Exception as error:  # noqa: BLE001 - any failure of student code is a result
        return Outcome(error=error_message(error))
    return Outcome(output=result, gradients=gradients)


def error_message(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def mismatch(part: Part, case: Case, expected: Outcome, got: Outcome) -> str | None:
    """None if `got` matches `expected` (outputs, then gradients), else what is wrong, in words."""
    if expected.error is not None:
        raise RuntimeError(f"the reference {part.module}.{part.name} failed on a case: {expected.error}")
    if part.check is not None:
        return got.error or checked(part, case, got.output)
    problem = got.error or difference(expected.output, got.output, part.atol, part.rtol)
    if problem or not part.gradients or not expected.gradients or expected.gradients == NOT_DIFFERENTIABLE:
        return problem  # a reference that computes without autograd (under torch.no_grad()): outputs only
    if got.gradients == NOT_DIFFERENTIABLE or len(got.gradients) != len(expected.gradients):
        return ("the output is right but gradients cannot flow back through it to the inputs: compute it "
                "with torch operations on the inputs (no numpy, .detach(), .item() or torch.no_grad())")
    for label, want, have in zip(input_labels(part, case), expected.gradients, got.gradients):
        problem = difference(want, have, part.atol, part.rtol)
        if problem:
            return (f"the output is right but its gradient with respect to {label} is wrong ({problem}): "
                    "is part of the computation detached or done outside torch?")
    return None


def reference_outcomes(part: Part, cases: Sequence[Case]) -> list[Outcome]:
    """What the reference gives on each case, for `judge`: the grader and the self-check alike. A checked part's
    outputs are judged by `Part.check`, not against the reference's, so its reference is not run (a part such as
    a training run would only take time)."""
    if part.check is not None:
        return [Outcome() for _ in cases]
    return [call(part.reference(), case, part.effects) for case in cases]


@dataclass(frozen=True)
class Verdict:
    """A part's result: passed, or the first failing case and what went wrong.

    message: what went wrong, with the case (for students); summary: the same without the
    case (feedback that hides the grader's cases); bug: the typical bug the answer matches.
    """

    passed: bool
    message: str = ""
    summary: str = ""
    bug: str = ""


def judge(part: Part, cases: Sequence[Case], expected: Sequence[Outcome], outcomes: Sequence[Outcome]) -> Verdict:
    """Compare a function's outcomes with the reference's, case by case; name a typical bug it matches."""
    if len(outcomes) != len(cases):
        return Verdict(False, "did not run on every case", "did not run on every case")
    for number, (case, want, outcome) in enumerate(zip(cases, expected, outcomes), start=1):
        problem = mismatch(part, case, want, outcome)
        if problem and problem.startswith("not implemented"):
            return Verdict(False, problem, problem)
        if problem:
            bug = diagnose(part, cases, outcomes)
            hint = f" This looks like a typical bug: {bug}." if bug else ""
            return Verdict(False, f"{problem} on case {number} ({case.description}).{hint}",
                           (f"{problem} on a hidden case" if outcome.error is None else problem) + f".{hint}", bug)
    return Verdict(True)


def diagnose(part: Part, cases: Sequence[Case], outcomes: Sequence[Outcome]) -> str:
    """The first of the part's typical bugs that gives the same outcome as `outcomes` on every case, or "".

    Same outcome: the same output (and gradients), or an error on the same cases. A bug may
    only run on some shapes (a convolution that slides along the word vectors needs T = D);
    it matches if the answer fails exactly where it fails and agrees with it everywhere else,
    on at least one case.
    """
    if all(outcome.error for outcome in outcomes):
        return ""
    if part.check is not None:
        return _diagnose_checked(part, cases, outcomes)
    for name, bug in part.bugs.items():
        for case, outcome in zip(cases, outcomes):
            wrong = call(bug, case, part.effects)
            if wrong.error is not None or outcome.error is not None:
                if wrong.error is None or outcome.error is None:
                    break
            elif mismatch(part, case, wrong, outcome) is not None:
                break
        else:
            return name
    return ""


def checked(part: Part, case: Case, output: Any) -> str | None:
    """What `part.check` finds wrong with an output; a check that fails on a malformed output says so."""
    try:
        return part.check(case, output)
    except Exception as error:  # noqa: BLE001 - an output the check cannot read is a wrong output
        return f"its output could not be checked ({error_message(error, 120)}): {describe(output)}"


def _symptom(outcome: Outcome, part: Part, case: Case) -> str | None:
    """What is wrong with an outcome of a checked part, numbers left out: "error" for any exception."""
    if outcome.error is not None:
        return "error"
    problem = checked(part, case, outcome.output)
    return None if problem is None else re.sub(r"\d+(\.\d+)?", "#", problem)


def _diagnose_checked(part: Part, cases: Sequence[Case], outcomes: Sequence[Outcome]) -> str:
    """The first typical bug of a checked part that shows every problem the answer shows, numbers aside.

    Answer and bug draw differently, so a problem one of them shows on a case the other may miss
    there by chance (a random sentence that happens to come from another document); what they
    show over all the cases is what identifies them.
    """
    symptoms = {_symptom(outcome, part, case) for case, outcome in zip(cases, outcomes)} - {None}
    if not symptoms:
        return ""
    for name, bug in part.bugs.items():
        if symptoms <= {_symptom(call(bug, case, part.effects), part, case) for case in cases}:
            return name
    return ""


def passed_fraction(part: Part, cases: Sequence[Case], expected: Sequence[Outcome],
                    outcomes: Sequence[Outcome]) -> float:
    """The fraction of cases on which a function matches the reference: partial credit (`--partial`).

    All or nothing stays the default, since a part's cases are drawn to be equally hard, and
    an answer right on most of them is usually wrong in a way the rest catch (a state ignored
    only looks right when it is zero); some instructors still prefer partial credit for effort.
    """
    if not cases or len(outcomes) != len(cases):
        return 0.0
    passed = sum(mismatch(part, case, want, got) is None for case, want, got in zip(cases, expected, outcomes))
    return passed / len(cases)
