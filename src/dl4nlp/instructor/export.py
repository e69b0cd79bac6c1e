"""`dl4nlp export`: one or more grades.csv into a file the LMS imports, and a report of what needs a look.

    dl4nlp export rnn-grades.csv [cnn-grades.csv ...] --roster roster.csv --format canvas \
        --canvas-gradebook canvas-export.csv --out canvas-import.csv [--late-penalty 10]

The roster maps each submission folder name to the student's LMS identity: a CSV with a
`student` column (the folder name) and any of `name`, `email`, `sis_login_id`,
`sis_user_id`, `username`, `idnumber`, `section` (headers in any case, spaces or
underscores). Formats:

- `canvas`: the assignment's column of a gradebook CSV exported from Canvas (*Grades >
  Export*) is filled, the students matched by SIS Login ID (against the roster's
  `sis_login_id` or `email`) or SIS User ID. Only the identity columns and the exported
  assignments' columns are written, so an import never overwrites another assignment with
  a stale value; the "Points Possible" row is kept.
- `moodle`: Moodle's grade import CSV: an identifier column named as Moodle's export names
  it ("Email address", "Username" or "ID number") and one column per assignment named as
  its export names a grade item ("Assignment: rnn (Real)"); map them on Moodle's import page.
- `wide`: any other LMS: one row per student (the roster's columns first), one column per assignment.

Every roster student without a row in an assignment's grades gets 0 and is listed; every
graded submission that matches no roster entry is listed (and kept as a row in `wide`),
never dropped silently. The late policy (`--late-penalty` percent of the maximum per day
late) is applied here, from the `late` column; overrides were applied when grading and are
listed with their automatic points. The report goes next to the output: `<out>.report.txt`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dl4nlp.instructor.gradebook import GradebookError, GradeRow, read_csv, read_table, safe_cell, sort_key, write_table
from dl4nlp.instructor.late import LatePolicy

IDENTITY = ["name", "email", "sis_login_id", "sis_user_id", "username", "idnumber", "section"]
MOODLE_IDS = {"email": "Email address", "username": "Username", "idnumber": "ID number"}
CANVAS_IDENTITY = ["Student", "ID", "SIS User ID", "SIS Login ID", "Integration ID", "Section"]


@dataclass(frozen=True)
class Student:
    """One roster line: the submission folder name and what the LMS knows the student by."""

    folder: str
    identity: dict[str, str]

    def get(self, key: str) -> str:
        return self.identity.get(key, "")


@dataclass
class Export:
    """What an export did, for the report and the command's output."""

    format: str
    out: Path
    assignments: list[str]
    students: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)  # assignment -> roster students with no row
    unmatched: dict[str, list[str]] = field(default_factory=dict)  # assignment -> rows with no roster entry
    late: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"dl4nlp export ({self.format}) -> {self.out}",
                 f"{self.students} students, assignments: {', '.join(self.assignments)}", ""]
        for assignment in self.assignments:
            missing, unmatched = self.missing.get(assignment, []), self.unmatched.get(assignment, [])
            lines.append(f"{assignment}: no submission, exported as 0 ({len(missing)}): {', '.join(missing) or '-'}")
            kept = ("kept as rows of the export" if self.format == "wide"
                    else "NOT in the import: add them to the roster")
            lines.append(f"{assignment}: graded but in no roster entry, {kept} ({len(unmatched)}): "
                         f"{', '.join(unmatched) or '-'}")
        for title, items in (("late penalties", self.late), ("overrides (automatic points and reason)", self.overrides),
                             ("notes", self.notes)):
            lines += ["", f"{title} ({len(items)}):", *(f"  {item}" for item in items)]
        return "\n".join(lines) + "\n"


def read_roster(path: Path) -> list[Student]:
    """The roster: a `student` column (the submission folder name) and identity columns."""
    header, rows = read_table(path)
    keys = [re.sub(r"[\s-]+", "_", name.strip().lower()) for name in header]
    if "student" not in keys:
        raise GradebookError(f"{path}: the roster needs a 'student' column with each submission folder name "
                             f"(found {', '.join(header)}), and any of {', '.join(IDENTITY)}")
    students, seen = [], set()
    for number, line in enumerate(rows, start=2):
        values = dict(zip(keys, (cell.strip() for cell in line)))
        folder = values.pop("student", "")
        if not folder:
            raise GradebookError(f"{path}, line {number}: no student (submission folder name)")
        if folder in seen:
            raise GradebookError(f"{path}, line {number}: {folder} is in the roster twice")
        seen.add(folder)
        students.append(Student(folder, {key: value for key, value in values.items() if key in IDENTITY and value}))
    return students


def read_grades(paths: list[Path]) -> dict[str, dict[str, GradeRow]]:
    """{assignment: {student folder name: row}} from several grades.csv; a student twice is an error."""
    grades: dict[str, dict[str, GradeRow]] = {}
    for path in paths:
        for grade in read_csv(path):
            student = sort_key(grade.student)
            by_student = grades.setdefault(grade.assignment, {})
            if student in by_student:
                raise GradebookError(f"{student} has two rows for {grade.assignment} (the second in {path}): "
                                     "export each assignment's grades once (merge shards with dl4nlp merge)")
            by_student[student] = grade
    if not grades:
        raise GradebookError("the grades CSV files hold no rows")
    return grades


def _number(value: float) -> str:
    return f"{round(value, 2):g}"


def _scores(grades: dict[str, dict[str, GradeRow]], roster: list[Student], policy: LatePolicy,
            result: Export) -> dict[str, dict[str, float]]:
    """{assignment: {student: exported score}}: penalties applied, 0 for roster students without a row."""
    folders = {student.folder for student in roster}
    scores: dict[str, dict[str, float]] = {}
    for assignment, rows in grades.items():
        scores[assignment] = {}
        for student, grade in sorted(rows.items()):
            score = policy.apply(grade.score, grade.max_score, grade.late)
            if grade.late:
                result.late.append(f"{student} {assignment}: late {grade.late} "
                                   f"({policy.days(grade.late)} day(s)), {_number(grade.score)} -> {_number(score)}")
            result.overrides += [f"{student} {assignment}: {text}" for text in _overrides(grade.detail)]
            scores[assignment][student] = score
        result.missing[assignment] = [s.folder for s in roster if s.folder not in rows]
        result.unmatched[assignment] = sorted(student for student in rows if student not in folders)
        for student in result.missing[assignment]:
            scores[assignment][student] = 0.0
    return scores


def _overrides(detail: str) -> list[str]:
    """The overridden parts of a grades.csv detail ("test_x 2/3 (override: automatic 0/3, set to 2 (why))")."""
    found = []
    for piece in re.split(r"; (?=test_)", detail):  # one piece per part
        if "(override: automatic" in piece:
            text, cut, _ = piece.partition("; automatic result:")
            found.append(text + (")" if cut else ""))
    return found


def export(grade_files: list[Path], roster_path: Path, fmt: str, out: Path, *, policy: LatePolicy = LatePolicy(),
           canvas_gradebook: Path | None = None, columns: dict[str, str] | None = None,
           moodle_id: str = "email") -> Export:
    """Write the LMS file and `<out>.report.txt`; returns what was done."""
    grades = read_grades(grade_files)
    roster = read_roster(roster_path)
    result = Export(fmt, out, list(grades))
    scores = _scores(grades, roster, policy, result)
    max_scores = {a: max(row.max_score for row in rows.values()) for a, rows in grades.items()}
    if fmt == "canvas":
        if canvas_gradebook is None:
            raise GradebookError("--format canvas needs --canvas-gradebook: the gradebook CSV exported from Canvas "
                                 "(Grades > Export), whose assignment columns it fills")
        _canvas(canvas_gradebook, roster, scores, max_scores, columns or {}, out, result)
    elif fmt == "moodle":
        _moodle(roster, scores, moodle_id, out, result)
    elif fmt == "wide":
        _wide(roster, scores, out, result)
    else:
        raise GradebookError(f"unknown format {fmt!r}: canvas, moodle or wide")
    report_path(out).write_text(result.report(), encoding="utf-8")
    return result


def report_path(out: Path) -> Path:
    return out.with_name(out.name + ".report.txt")


def _wide(roster: list[Student], scores: dict[str, dict[str, float]], out: Path, result: Export) -> None:
    identity = [key for key in IDENTITY if any(student.get(key) for student in roster)]
    assignments = list(scores)
    rows = [[student.folder, *(student.get(key) for key in identity),
             *(_number(scores[a][student.folder]) if student.folder in scores[a] else "" for a in assignments)]
            for student in roster]
    extra = sorted({student for a in assignments for student in result.unmatched[a]})
    rows += [[student, *([""] * len(identity)),
              *(_number(scores[a][student]) if student in scores[a] else "" for a in assignments)] for student in extra]
    result.students = len(rows)
    write_table(["student", *identity, *assignments], [[safe_cell(cell) for cell in row] for row in rows], out)


def _moodle(roster: list[Student], scores: dict[str, dict[str, float]], moodle_id: str, out: Path,
            result: Export) -> None:
    if moodle_id not in MOODLE_IDS:
        raise GradebookError(f"--moodle-id {moodle_id!r}: one of {', '.join(MOODLE_IDS)}")
    assignments = list(scores)
    rows = []
    for student in roster:
        identifier = student.get(moodle_id)
        if not identifier:
            result.notes.append(f"{student.folder}: the roster has no {moodle_id}, so Moodle cannot match the row "
                                "(NOT in the import)")
            continue
        rows.append([identifier, *(_number(scores[a][student.folder]) if student.folder in scores[a] else ""
                                   for a in assignments)])
    result.students = len(rows)
    header = [MOODLE_IDS[moodle_id], *(f"Assignment: {a} (Real)" for a in assignments)]
    write_table(header, [[safe_cell(cell) for cell in row] for row in rows], out)


def _canvas_column(header: list[str], assignment: str, columns: dict[str, str], path: Path) -> int:
    """The index of an assignment's column ("rnn (12345)"), or a clear error."""
    if assignment in columns:
        if columns[assignment] not in header:
            raise GradebookError(f"{path} has no column {columns[assignment]!r} (given with --column)")
        return header.index(columns[assignment])
    pattern = re.compile(rf"^{re.escape(assignment)} \(\d+\)$", re.IGNORECASE)
    found = [index for index, name in enumerate(header) if pattern.match(name.strip())]
    if len(found) != 1:
        what = "no column" if not found else f"{len(found)} columns"
        raise GradebookError(f"{path} has {what} named '{assignment} (<id>)': create the assignment in Canvas and "
                             f"export the gradebook again, or name its column with --column "
                             f"{assignment}='<column>'")
    return found[0]


def _canvas(path: Path, roster: list[Student], scores: dict[str, dict[str, float]], max_scores: dict[str, float],
            columns: dict[str, str], out: Path, result: Export) -> None:
    header, rows = read_table(path)
    missing = [name for name in ("Student", "ID", "SIS Login ID") if name not in header]
    if missing:
        raise GradebookError(f"{path} is not a Canvas gradebook export: no {', '.join(missing)} column "
                             "(Grades > Export > Export Entire Gradebook)")
    identity = [header.index(name) for name in CANVAS_IDENTITY if name in header]
    targets = {assignment: _canvas_column(header, assignment, columns, path) for assignment in scores}
    login, user_id = header.index("SIS Login ID"), header.index("SIS User ID") if "SIS User ID" in header else None
    by_login = {}
    for student in roster:
        for key in ("sis_login_id", "email"):
            if student.get(key):
                by_login.setdefault(student.get(key).lower(), student)
    by_user_id = {student.get("sis_user_id"): student for student in roster if student.get("sis_user_id")}
    written, matched = [], set()
    for line in rows:
        line = line + [""] * (len(header) - len(line))
        name = line[0].strip()
        kept = [line[index] for index in identity]
        if name == "Points Possible" or not line[header.index("ID")].strip():
            # the "Points Possible" row (and posting-policy rows): kept, with the grader's maximum checked
            if name == "Points Possible":
                for assignment, index in targets.items():
                    canvas_max = line[index].strip()
                    if canvas_max and _float(canvas_max) != max_scores[assignment]:
                        result.notes.append(f"Canvas has {assignment} worth {canvas_max} points, the grader's maximum "
                                            f"is {_number(max_scores[assignment])}: scores are exported as points")
            written.append(kept + [line[index] for index in targets.values()])
            continue
        student = by_login.get(line[login].strip().lower()) or (by_user_id.get(line[user_id].strip())
                                                                 if user_id is not None else None)
        if student is None:
            result.notes.append(f"in Canvas, not in the roster, left as it was: {name} ({line[login]})")
            written.append(kept + [line[index] for index in targets.values()])
            continue
        matched.add(student.folder)
        written.append(kept + [_number(scores[a][student.folder]) if student.folder in scores[a] else line[index]
                               for a, index in targets.items()])
    for student in roster:
        if student.folder not in matched:
            result.notes.append(f"in the roster, not in the Canvas gradebook (NOT in the import): {student.folder}")
    result.students = len(matched)
    write_table([header[index] for index in identity] + [header[index] for index in targets.values()], written, out)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
