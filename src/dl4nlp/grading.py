"""Release assignments with nbgrader; autograde a folder of submissions into one CSV row per entry.

Instructor tooling (needs the `instructor` extra: nbgrader); students never import it.

Layout: the instructor notebooks are `solutions/<assignment>/*.ipynb` (nbgrader's
source), the student notebooks `assignments/<assignment>/*.ipynb` (its release).
A submissions folder holds one folder per student with the notebook under its
released name, e.g. `alice/rnn.ipynb`.

Releasing runs nbgrader's generate_assignment. Grading does not run nbgrader: each
submission runs contained (`dl4nlp.grader`), its graded functions are called on cases
drawn at grading time, and their outputs are compared with the reference in the
grader's own process. Points come from the instructor notebook's test cells. The
repository and the submissions folder are never changed (apart from the course secret
`.grading-secret`, made once), and running it twice gives the same CSV.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from traitlets.config import Config


# nbgrader runs `alembic` and kernels from PATH: put this environment's bin/ first.
NBGRADER_PATH = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


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


class GradingError(RuntimeError):
    """An assignment cannot be released or graded as it is (an instructor-side problem)."""


def nbgrader_config(root: Path, course_dir: Path) -> Config:
    """The repository's nbgrader_config.py, pointed at `course_dir`."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(course_dir)
    config.CourseDirectory.db_url = f"sqlite:///{course_dir / 'gradebook.db'}"
    config.NbGraderAPI.log_level = "WARN"
    return config


def assignments(root: Path) -> list[str]:
    """Names of the assignments: the folders of solutions/ holding a notebook."""
    return sorted(p.parent.name for p in (root / "solutions").glob("*/*.ipynb"))


def _check_assignment(root: Path, assignment: str) -> None:
    if assignment not in assignments(root):
        raise GradingError(f"no assignment {assignment!r}: expected a notebook in solutions/{assignment}/ "
                           f"(assignments: {', '.join(assignments(root)) or 'none'})")


def release(root: Path, assignment: str) -> list[Path]:
    """Regenerate assignments/<assignment>/ from solutions/<assignment>/ with nbgrader; return its notebooks."""
    from nbgrader.apps import NbGraderAPI

    _check_assignment(root, assignment)
    with tempfile.TemporaryDirectory() as scratch:
        config = nbgrader_config(root, root)
        config.CourseDirectory.db_url = f"sqlite:///{Path(scratch) / 'gradebook.db'}"  # keep the repo clean
        with _environment(NBGRADER_PATH):
            result = NbGraderAPI(config=config).generate_assignment(assignment, force=True)
    if not result["success"]:
        raise GradingError(f"nbgrader generate_assignment {assignment} failed:\n{_errors(result)}")
    return sorted((root / "assignments" / assignment).glob("*.ipynb"))


def _errors(result: dict[str, str]) -> str:
    """The error lines of an nbgrader API result's log (its traceback says only "see above")."""
    log = result.get("log") or ""
    errors = [line for line in log.splitlines() if "[ERROR]" in line or line.startswith("    ")]
    return "\n".join(errors[-30:]) or result.get("error") or "unknown error"


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def _cell(value: object) -> object:
    """A CSV field that a spreadsheet shows as text: no control characters, no leading formula sign."""
    if not isinstance(value, str):
        return value
    value = re.sub(r"[\x00-\x1f\x7f]", " ", value)
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
