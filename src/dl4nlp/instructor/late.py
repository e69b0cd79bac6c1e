"""Late work: collect an LMS download into a submissions folder, keep the late flags, apply a policy.

`dl4nlp collect rnn submissions.zip --out submissions/` files every notebook of a Canvas
bulk download (a zip, or the folder it was extracted into) under
`submissions/<student>/rnn.ipynb`. Canvas marks a file handed in after the due date in its
name: `doejane_LATE_12345_6789012_rnn-1.ipynb` (student, LATE, Canvas user id, submission
id, the uploaded name with `-N` appended to a re-upload). The flags go to
`submissions/.late.csv` (`student,late`; hidden, so the grader does not take it for a
submission): `late` is the number of days late, or `yes` when it is not known.

Canvas names carry no days. Give `--deadline 2026-10-02T23:59` and the days come from the
files' times (the zip's entry times, or the files' modification times): a late file is at
least one day late, each further started day counts. Without a deadline the days are left
`yes`; edit `.late.csv` by hand (a number of days, or delete the line of a student who had
an extension) before grading. Grading copies the flag into the `late` column of grades.csv;
the penalty is applied by `dl4nlp export`, never by grading, so changing the policy never
means grading again.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dl4nlp.instructor.gradebook import GradebookError, read_table, write_table

LATE_FILE = ".late.csv"
CANVAS_NAME = re.compile(r"^(?P<student>[^_/\\]+)_(?:(?P<late>LATE)_)?(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
REUPLOAD = re.compile(r"^(?P<stem>.+?)-(?P<number>\d+)(?P<suffix>\.[A-Za-z0-9]+)$")


@dataclass
class Collected:
    """What collecting a download gave: who was filed, who is late, what needs a look."""

    students: dict[str, list[str]] = field(default_factory=dict)  # student -> file names written
    late: dict[str, str] = field(default_factory=dict)  # student -> days late or "yes"
    notes: list[str] = field(default_factory=list)  # files renamed or chosen: worth a look
    skipped: list[str] = field(default_factory=list)  # files whose name is not Canvas's


@dataclass(frozen=True)
class _File:
    name: str  # the name in the download
    student: str
    late: bool
    file: str  # the uploaded name, Canvas's -N removed
    upload: int  # N of Canvas's -N, 0 without
    time: datetime
    read: object  # () -> bytes


def parse_canvas_name(name: str) -> tuple[str, bool, str, int] | None:
    """(student, late, uploaded file name, re-upload number) of a Canvas download name, or None."""
    match = CANVAS_NAME.match(name)
    if not match or match["student"].startswith("."):
        return None
    file, upload = match["file"], 0
    again = REUPLOAD.match(file)
    if again:
        file, upload = again["stem"] + again["suffix"], int(again["number"])
    if file.startswith(".") or "/" in file or "\\" in file:
        return None
    return match["student"], match["late"] is not None, file, upload


def _download(source: Path) -> list[tuple[str, datetime, object]]:
    """(base name, time, reader) of every file of a zip or folder; macOS and hidden files left out."""
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist: give the zip of the LMS download or its extracted folder")
    if source.is_dir():
        files = [p for p in sorted(source.rglob("*")) if p.is_file() and not p.is_symlink()
                 and not any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(source).parts)]
        return [(p.name, datetime.fromtimestamp(p.stat().st_mtime), p.read_bytes) for p in files]
    if not zipfile.is_zipfile(source):
        raise GradebookError(f"{source} is neither a folder nor a zip file")
    archive = zipfile.ZipFile(source)
    entries = [info for info in archive.infolist() if not info.is_dir()
               and not any(part.startswith(".") or part == "__MACOSX" for part in info.filename.split("/"))]
    return [(info.filename.rsplit("/", 1)[-1], datetime(*info.date_time),
             (lambda info=info: archive.read(info))) for info in sorted(entries, key=lambda i: i.filename)]


def days_late(time: datetime, deadline: datetime) -> int:
    """Started days after the deadline: one minute late is 1 day, 24 h and one minute is 2."""
    return max(1, math.ceil((time - deadline).total_seconds() / 86400))


def collect(notebook: str, source: Path, out: Path, deadline: datetime | None = None) -> Collected:
    """File every student's notebook of a Canvas download under `out/<student>/<notebook>`; write `.late.csv`.

    A student's file whose uploaded name is the released one is filed under it (of several
    re-uploads, the last); a student with a single notebook under another name gets it filed
    under the released name, with a note; anything else is filed under its own name, so the
    grader lists it in that student's row.
    """
    result = Collected()
    by_student: dict[str, list[_File]] = {}
    for name, time, read in _download(source):
        parsed = parse_canvas_name(name)
        if parsed is None:
            result.skipped.append(name)
            continue
        student, late, file, upload = parsed
        by_student.setdefault(student, []).append(_File(name, student, late, file, upload, time, read))
    for student, files in sorted(by_student.items()):
        folder = out / student
        folder.mkdir(parents=True, exist_ok=True)
        chosen = _choose(notebook, files, result.notes)
        result.students[student] = []
        for target, item in chosen.items():
            (folder / target).write_bytes(item.read())
            result.students[student].append(target)
        late = [item for item in chosen.values() if item.late]
        if late:
            last = max(item.time for item in late)
            result.late[student] = str(days_late(last, deadline)) if deadline else "yes"
    write_late(out, result.late)
    return result


def _choose(notebook: str, files: list[_File], notes: list[str]) -> dict[str, _File]:
    """{name to file it under: file} for one student's files."""
    released = [item for item in files if item.file == notebook]
    notebooks = [item for item in files if item.file.endswith(".ipynb")]
    chosen: dict[str, _File] = {}
    if released:
        latest = max(released, key=lambda item: item.upload)
        chosen[notebook] = latest
        if len(released) > 1:
            notes.append(f"{latest.student}: {len(released)} uploads of {notebook}, filed the last ({latest.name})")
    elif len(notebooks) == 1:
        chosen[notebook] = notebooks[0]
        notes.append(f"{notebooks[0].student}: filed {notebooks[0].file} as {notebook} (its only notebook)")
    for item in files:
        if item not in chosen.values() and item.file not in chosen:
            chosen[item.file] = item
    return chosen


def write_late(submissions: Path, late: dict[str, str]) -> Path:
    """`submissions/.late.csv`: one line per late student (student, days late or "yes")."""
    path = submissions / LATE_FILE
    write_table(["student", "late"], [[student, days] for student, days in sorted(late.items())], path)
    return path


def read_late(submissions: Path) -> dict[str, str]:
    """{student: days late or "yes"} from `submissions/.late.csv`; {} when there is none."""
    path = submissions / LATE_FILE
    if not path.is_file():
        return {}
    header, rows = read_table(path)
    if [name.strip().lower() for name in header] != ["student", "late"]:
        raise GradebookError(f"{path}: the columns must be student,late (found {','.join(header)})")
    late = {}
    for number, line in enumerate(rows, start=2):
        if len(line) != 2:
            raise GradebookError(f"{path}, line {number}: expected student,late")
        student, days = line[0], line[1].strip().lower()
        if days and days != "yes" and not (days.isdigit() and int(days) > 0):
            raise GradebookError(f"{path}, line {number}: late must be a number of days (1, 2, ...) or yes, "
                                 f"not {line[1]!r}")
        if days:
            late[student] = days
    return late


@dataclass(frozen=True)
class LatePolicy:
    """A late penalty: `per_day` percent of the maximum score per day late, `unknown_days` for a bare "yes".

    The default, 0 percent, applies no penalty (the late column is still exported in the report).
    `max_days`: after that many days the work scores 0 (None: no limit).
    """

    per_day: float = 0.0
    unknown_days: int = 1
    max_days: int | None = None

    def days(self, late: str) -> int:
        if not late:
            return 0
        return self.unknown_days if late == "yes" else int(late)

    def apply(self, score: float, max_score: float, late: str) -> float:
        """The score after the penalty, never below 0, rounded to hundredths."""
        days = self.days(late)
        if not days:
            return score
        if self.max_days is not None and days > self.max_days:
            return 0.0
        return round(max(0.0, score - max_score * self.per_day / 100 * days), 2)


def parse_deadline(text: str | None) -> datetime | None:
    """A deadline in ISO form (2026-10-02T23:59), in the time zone of the download's times."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise GradebookError(f"--deadline {text!r}: expected a date and time such as 2026-10-02T23:59") from None

