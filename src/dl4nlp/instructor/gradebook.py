"""grades.csv: one row per entry of a submissions folder, written atomically.

Columns: student, assignment, score, max_score, status, detail, late. Every text field is
made safe for a spreadsheet: invisible characters escaped (`\\x07`), no leading formula sign.
`late` is the last column so that readers of the first six keep working: "" on time, else
the days late ("2") or "yes" when the days are not known (see `dl4nlp.instructor.late`).
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from dataclasses import astuple, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class GradeRow:
    """One line of grades.csv."""

    student: str
    assignment: str
    score: float
    max_score: float
    # "graded"; "reference" (a part used dl4nlp's reference and scored 0); "forbidden" (a part used
    # a library call that does its work, e.g. torch.lstm_cell, and scored 0); or what went wrong:
    # "missing", "invalid", "timeout", "memory", "processes", "crashed", "error"
    status: str
    detail: str
    late: str = ""  # "" on time; days late ("2"), or "yes" when the days are not known


COLUMNS = [field.name for field in fields(GradeRow)]


def row(report: object, late: str = "") -> GradeRow:
    """The CSV row of a `dl4nlp.instructor.autograde.grader.Report`."""
    return GradeRow(report.student, report.assignment, report.score, report.max_score, report.status,
                    report.detail(), late)


def write_csv(rows: list[GradeRow], path: Path) -> None:
    """Write grades.csv (student, assignment, score, max_score, status, detail, late) atomically."""
    write_table(COLUMNS, [[_cell(value) for value in astuple(grade)] for grade in rows], path)


def write_table(header: list[str], rows: list[list[object]], path: Path) -> None:
    """Write a CSV atomically: a reader (or an LMS upload) never sees a half-written file.

    The cells are written as given: make text spreadsheet-safe with `safe_cell` first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", newline="", encoding="utf-8", dir=path.parent,
                                         prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(handle.name, path)  # never a half-written CSV
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV, cells as written; a clear error for a missing or empty file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: a BOM from a spreadsheet is fine
        table = list(csv.reader(handle))
    if not table:
        raise GradebookError(f"{path} is empty: expected a header line")
    return table[0], [line for line in table[1:] if line]


def read_rows(path: Path) -> list[list[str]]:
    """The rows of a grades.csv as written (strings), after checking its header.

    A grades.csv written before the `late` column existed (six columns) is read with an empty `late`.
    """
    header, rows = read_table(path)
    if header == COLUMNS[:-1]:
        return [line + [""] for line in rows]
    if header != COLUMNS:
        raise GradebookError(f"{path} is not a grades.csv of dl4nlp autograde: its columns are {', '.join(header)}, "
                             f"expected {', '.join(COLUMNS)}")
    for number, line in enumerate(rows, start=2):
        if len(line) != len(COLUMNS):
            raise GradebookError(f"{path}, line {number}: {len(line)} fields, expected {len(COLUMNS)}")
    return rows


def read_csv(path: Path) -> list[GradeRow]:
    """A grades.csv as `GradeRow`s (text cells as written, spreadsheet escapes included)."""
    grades = []
    for number, line in enumerate(read_rows(path), start=2):
        student, assignment, score, max_score, status, detail, late = line
        try:
            grades.append(GradeRow(student, assignment, float(score), float(max_score), status, detail, late))
        except ValueError:
            raise GradebookError(f"{path}, line {number}: score {score!r} or max_score {max_score!r} "
                                 "is not a number") from None
    return grades


def update_csv(path: Path, rows: list[GradeRow]) -> None:
    """Replace (or add) the rows of these students in an existing grades.csv, atomically.

    Every other row is written back exactly as it was read, so it stays byte-identical; the
    rows stay sorted by student, as `dl4nlp autograde` writes them.
    """
    lines = read_rows(path)
    other = sorted({line[1] for line in lines} - {grade.assignment for grade in rows})
    if other:
        raise GradebookError(f"{path} holds grades of {', '.join(other)}: update it with the same assignment, "
                             "or write another file")
    for grade in rows:
        fresh = [_cell(value) for value in astuple(grade)]
        same = [index for index, line in enumerate(lines) if line[:2] == fresh[:2]]
        if same:
            lines[same[0]] = fresh
        else:
            after = [index for index, line in enumerate(lines) if sort_key(line[0]) > grade.student]
            lines.insert(after[0] if after else len(lines), fresh)
    write_table(COLUMNS, lines, path)


def sort_key(student_cell: str) -> str:
    """The folder name a (spreadsheet-safe) student cell was written from: rows sort by it, as entries do."""
    if student_cell[:1] == "'" and student_cell[1:2] in ("=", "+", "-", "@"):
        return student_cell[1:]
    return student_cell


class GradebookError(RuntimeError):
    """A CSV an instructor gave cannot be used as it is; the message says what to fix."""


def safe_cell(value: object) -> object:
    """A CSV field that a spreadsheet shows as text (see `_cell`)."""
    return _cell(value)


def visible(text: str) -> str:
    """`text` with every invisible character written out (`\\x07`, `\\u202e`) and backslashes doubled.

    Escaping, not replacing: two different names ("a\\x07b" and "a b") never look the same.
    """
    return INVISIBLE.sub(_escape, text)


INVISIBLE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    character = match.group()
    if character in ESCAPES:
        return ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _cell(value: object) -> object:
    """A CSV field that a spreadsheet shows as text: invisible characters escaped, no leading formula sign."""
    if not isinstance(value, str):
        return value
    value = visible(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
