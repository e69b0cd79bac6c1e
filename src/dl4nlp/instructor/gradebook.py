"""grades.csv: one row per entry of a submissions folder, written atomically.

Columns: student, assignment, score, max_score, status, detail. Every text field is
made safe for a spreadsheet: invisible characters escaped (`\\x07`), no leading formula sign.
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
    # "graded"; "reference" (a part used dl4nlp's reference and scored 0); or what went wrong:
    # "missing", "invalid", "timeout", "memory", "processes", "crashed", "error"
    status: str
    detail: str


def row(report: object) -> GradeRow:
    """The CSV row of a `dl4nlp.grader.batch.Report`."""
    return GradeRow(report.student, report.assignment, report.score, report.max_score, report.status,
                    report.detail())


def write_csv(rows: list[GradeRow], path: Path) -> None:
    """Write grades.csv (student, assignment, score, max_score, status, detail) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", newline="", dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow([field.name for field in fields(GradeRow)])
            for grade in rows:
                writer.writerow([_cell(value) for value in astuple(grade)])
        os.replace(handle.name, path)  # never a half-written CSV
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


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
