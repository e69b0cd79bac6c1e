"""overrides.csv: points a grader sets by hand on top of the automatic ones, with a reason.

    student,assignment,part,points,reason
    alice,rnn,lstm_cell,3,"regrade: gate order right, checked by hand"

One line per (student, assignment, part). When grading (`dl4nlp autograde --overrides
overrides.csv`), the part's points become `points`; the automatic points and the reason
stay on the report, so the CSV's `detail` and the feedback page show both. The file is
read whole, so grading again with the same file gives the same CSV: keep it under version
control in the private course repository, next to the grades it changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from dl4nlp.instructor.gradebook import GradebookError, read_table

COLUMNS = ["student", "assignment", "part", "points", "reason"]


@dataclass(frozen=True)
class Override:
    student: str
    assignment: str
    part: str
    points: float
    reason: str


def read_overrides(path: Path) -> list[Override]:
    """Every line of overrides.csv, checked: known columns, a number, a reason, no line twice."""
    header, rows = read_table(path)
    if [name.strip().lower() for name in header] != COLUMNS:
        raise GradebookError(f"{path}: the columns must be {','.join(COLUMNS)} (found {','.join(header)})")
    overrides: list[Override] = []
    seen: set[tuple[str, str, str]] = set()
    for number, line in enumerate(rows, start=2):
        if len(line) != len(COLUMNS):
            raise GradebookError(f"{path}, line {number}: {len(line)} fields, expected {len(COLUMNS)} "
                                 "(quote a reason that contains a comma)")
        student, assignment, part, points, reason = (cell.strip() for cell in line)
        try:
            value = float(points)
        except ValueError:
            raise GradebookError(f"{path}, line {number}: points {points!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise GradebookError(f"{path}, line {number}: points must be a number >= 0, not {points!r}")
        if not reason:
            raise GradebookError(f"{path}, line {number}: give a reason (the student sees it on the feedback page)")
        key = (student, assignment, part)
        if key in seen:
            raise GradebookError(f"{path}, line {number}: a second override of {part} for {student} ({assignment})")
        seen.add(key)
        overrides.append(Override(student, assignment, part, value, " ".join(reason.replace(";", ",").split())))
    return overrides


def check_overrides(overrides: list[Override], assignment: str, max_points: dict[str, float]) -> list[Override]:
    """The overrides of `assignment`, checked against its parts before any grading starts.

    A part that is not in the assignment, or points above the part's maximum, is an error:
    a typo would otherwise change a grade silently.
    """
    mine = [override for override in overrides if override.assignment == assignment]
    for override in mine:
        if override.part not in max_points:
            raise GradebookError(f"overrides: {assignment} has no part {override.part!r} "
                                 f"(its parts: {', '.join(max_points)})")
        if override.points > max_points[override.part]:
            raise GradebookError(f"overrides: {override.points:g} points for {override.student}'s {override.part}, "
                                 f"which is worth {max_points[override.part]:g}")
    return mine


def apply_overrides(reports: list, overrides: list[Override], assignment: str,
                    max_points: dict[str, float]) -> list[str]:
    """Set the overridden parts' points on the reports (in place); returns warnings for the instructor.

    The overrides are checked first (`check_overrides`); an override of a student who was
    not graded in this run (another shard, a regrade of someone else) is left for that run.
    """
    mine = check_overrides(overrides, assignment, max_points)
    by_student: dict[str, list[Override]] = {}
    for override in mine:
        by_student.setdefault(override.student, []).append(override)
    for report in reports:
        for override in by_student.get(report.student, []):
            part = next(p for p in report.parts if p.name == override.part)
            _override(part, override)
    graded = {report.student for report in reports}
    return [f"overrides.csv names {student}, who was not graded in this run" for student in sorted(by_student)
            if student not in graded]


def _override(part, override: Override) -> None:
    """Replace a part's points, keeping the automatic points and the reason in its messages."""
    part.automatic, part.override = part.points, override.reason
    part.points = override.points
    said = f"override: automatic {part.automatic:g}/{part.max_points:g}, set to {override.points:g} ({override.reason})"
    part.message = said + (f"; automatic result: {part.message}" if part.message else "")
    part.summary = said + (f"; automatic result: {part.summary}" if part.summary else "")
