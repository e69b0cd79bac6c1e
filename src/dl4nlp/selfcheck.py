"""The student self-check: every graded function against the reference, with the points it would earn.

The last cell of each assignment calls it::

    from dl4nlp.selfcheck import run_selfcheck
    run_selfcheck("rnn", globals())

It works in Colab and locally without nbgrader (the notebook file is not needed: the
cases come from `dl4nlp.exercises`). It calls each function the notebook defines on
public cases, compares the outputs and gradients with `dl4nlp`'s reference, and returns a
report that the notebook shows as a table. Like the grader, it gives a part no points if
its code uses the reference (status "reference") or a library call that does the part's
work, such as `torch.lstm_cell` (status "forbidden"): it reads the code the function
reaches (IPython keeps each cell's source) and watches the calls while the function runs
(`dl4nlp.exercises.calls`, the grader's own checks). The grader runs the same checks on
other cases, drawn when it grades; a function that passes here is very likely right. While
grading, the self-check does nothing.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from dl4nlp.exercises import Assignment, Part, binding, call, judge, load, public_cases, reference_outcomes
from dl4nlp.exercises.calls import FORBIDDEN, REFERENCE, Program, Use, Watch, explain, find_uses, targets


@dataclass(frozen=True)
class PartCheck:
    name: str
    points: float
    max_points: float
    message: str  # "" when it passed
    status: str = "passed"  # "passed", "reference", "forbidden" or "wrong" (also: not defined, not implemented)
    bug: str = ""  # the typical bug a wrong answer matches, if any


@dataclass(frozen=True)
class SelfCheck:
    """The self-check's result; a notebook shows it as a table (HTML in Jupyter and Colab)."""

    assignment: str
    parts: tuple[PartCheck, ...]
    skipped: bool = False

    @property
    def points(self) -> float:
        return sum(part.points for part in self.parts)

    @property
    def max_points(self) -> float:
        return sum(part.max_points for part in self.parts)

    def __repr__(self) -> str:
        if self.skipped:
            return "Self-check skipped while grading."
        width = max([len(part.name) for part in self.parts] + [4])
        lines = [f"Self-check of {self.assignment}: {self.points:g}/{self.max_points:g} points so far"]
        for part in self.parts:
            mark = "passed" if not part.message else part.message
            lines.append(f"  {part.name:<{width}}  {part.points:g}/{part.max_points:g}  {mark}")
        lines.append("The grader checks the same functions on other cases, drawn when it grades.")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if self.skipped:
            return "<p>Self-check skipped while grading.</p>"
        rows = "".join(
            f"<tr><td><code>{html.escape(part.name)}</code></td><td>{part.points:g}/{part.max_points:g}</td>"
            f"<td>{'&#10003; passed' if not part.message else '&#10007; ' + html.escape(part.message)}</td></tr>"
            for part in self.parts)
        return (f"<p><strong>Self-check of {html.escape(self.assignment)}: {self.points:g}/{self.max_points:g} "
                f"points so far</strong></p><table><tr><th>function</th><th>points</th><th>result</th></tr>{rows}"
                "</table><p>The grader checks the same functions on other cases, drawn when it grades.</p>")


def run_selfcheck(assignment: str, namespace: Mapping[str, Any]) -> SelfCheck:
    """Check every graded function defined in `namespace` (pass `globals()`) on the public cases."""
    exercises = load(assignment)
    if os.environ.get("DL4NLP_GRADING"):
        return SelfCheck(assignment, (), skipped=True)
    program = Program.from_namespace(namespace)
    return SelfCheck(assignment, tuple(check_part(exercises, part, namespace.get(part.name), program, namespace)
                                       for part in exercises.parts))


def check_part(exercises: Assignment, part: Part, function: Any, program: Program,
               namespace: Mapping[str, Any] | None = None) -> PartCheck:
    """One part: its code and its calls (reference, forbidden), then its outputs and gradients on the public cases."""
    max_points = float(part.points)
    if function is None:
        return PartCheck(part.name, 0.0, max_points, f"{part.name} is not defined: run its cell first", "wrong")
    part_targets = targets(part, exercises.parts)
    watch = Watch(part.name, part_targets)
    verdict = None
    if callable(function):
        cases = public_cases(exercises, part)
        expected = reference_outcomes(part, cases)
        given = part.given if isinstance(namespace, MutableMapping) else {}
        with binding(given, namespace if given else {}):  # the course's own helpers, as the grader binds them
            verdict = judge(part, cases, expected, [call(watch.wrap(function), case, part.effects) for case in cases])
    found = find_uses(program, part.name, part_targets, part.given) + watch.uses
    for kind in (REFERENCE, FORBIDDEN):
        uses: list[Use] = [use for use in found if use.kind == kind]
        if uses:
            return PartCheck(part.name, 0.0, max_points, explain(uses[0], kind), kind)
    if verdict is None:
        return PartCheck(part.name, 0.0, max_points, f"{part.name} is not a function", "wrong")
    if verdict.passed:
        return PartCheck(part.name, max_points, max_points, "")
    return PartCheck(part.name, 0.0, max_points, verdict.message, "wrong", verdict.bug)
