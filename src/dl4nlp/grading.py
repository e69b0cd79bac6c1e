"""Release and autograde assignments with nbgrader, one CSV row per student.

Instructor tooling (needs the `instructor` extra: nbgrader); students never import it.

Layout: the instructor notebooks are `solutions/<assignment>/*.ipynb` (nbgrader's
source), the student notebooks `assignments/<assignment>/*.ipynb` (its release).
A submissions folder holds one folder per student with the notebook under its
released name, e.g. `alice/rnn.ipynb`. Grading works in a scratch course folder,
so the repository, its gradebook and the submissions folder are never changed,
and running it twice gives the same CSV.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from dl4nlp.runtime import SMOKE_VARIABLE

GRADING_ENVIRONMENT = {SMOKE_VARIABLE: "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
# nbgrader runs `alembic` and kernels from PATH: put this environment's bin/ first.
NBGRADER_PATH = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
# nbgrader 0.9 triggers SQLAlchemy autoflush warnings on every autograde: noise for instructors.
warnings.filterwarnings("ignore", message=r".*not in session.*", module=r"nbgrader\..*")
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


@dataclass(frozen=True)
class GradeRow:
    """One line of grades.csv."""

    student: str
    assignment: str
    score: float
    max_score: float
    status: str  # "graded", or what went wrong: "missing", "invalid", "error"
    detail: str


class GradingError(RuntimeError):
    """nbgrader could not release or prepare an assignment (an instructor-side problem)."""


def nbgrader_config(root: Path, course_dir: Path) -> Config:
    """The repository's nbgrader_config.py, pointed at `course_dir`."""
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


def autograde(root: Path, assignment: str, submissions: Path) -> list[GradeRow]:
    """Grade every student folder in `submissions` with nbgrader; one row per student folder.

    Runs in smoke mode and offline. A submission that is missing, is not a notebook or
    breaks nbgrader gets a row with that status and zero points; the batch goes on.
    """
    _check_assignment(root, assignment)
    if not submissions.is_dir():
        raise GradingError(f"submissions folder {submissions} does not exist")
    released = sorted(p.name for p in (root / "solutions" / assignment).glob("*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="dl4nlp-grading-") as scratch, _environment({**GRADING_ENVIRONMENT, **NBGRADER_PATH}):
        course = Path(scratch)
        shutil.copytree(root / "solutions" / assignment, course / "solutions" / assignment,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        api = NbGraderAPI(config=nbgrader_config(root, course))
        result = api.generate_assignment(assignment, force=True)
        if not result["success"]:
            raise GradingError(f"could not prepare {assignment}:\n{_errors(result)}")
        with Gradebook(api.coursedir.db_url) as gradebook:
            max_score = gradebook.find_assignment(assignment).max_score
        rows = []
        for folder in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
            rows.append(_grade_student(api, course, assignment, folder, released, max_score))
    return rows


def _grade_student(api: NbGraderAPI, course: Path, assignment: str, folder: Path,
                   released: list[str], max_score: float) -> GradeRow:
    student = folder.name

    def row(status: str, detail: str, score: float = 0.0) -> GradeRow:
        return GradeRow(student, assignment, score, max_score, status, detail)

    if not _STUDENT_ID.match(student):
        return row("invalid", f"folder name {student!r} is not a usable student id "
                              "(letters, digits, '_', '.', '@', '-')")
    missing = [name for name in released if not (folder / name).is_file()]
    if missing:
        found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
        return row("missing", f"expected {', '.join(missing)} in {student}/, found {found}")
    target = course / "submitted" / student / assignment
    target.mkdir(parents=True)
    for name in released:
        try:
            notebook = nbformat.read(folder / name, as_version=4)
        except Exception as error:  # not JSON, not a notebook
            return row("invalid", f"{name} is not a readable notebook ({type(error).__name__}: {error}); "
                                  "download it again with File > Download > .ipynb")
        nbformat.write(notebook, target / name)
    result = api.autograde(assignment, student, force=True, create=True)
    if not result["success"]:
        error = (result.get("error") or result.get("log") or "unknown error").strip().splitlines()
        return row("error", f"nbgrader could not grade the submission: {error[-1] if error else ''}")
    return _graded_row(api, course, assignment, student, max_score)


def _graded_row(api: NbGraderAPI, course: Path, assignment: str, student: str, max_score: float) -> GradeRow:
    """Score from the gradebook; detail lists every part, with the error of each failed test cell."""
    failures = {}
    for path in (course / "autograded" / student / assignment).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error" and grade_id:
                    failures[grade_id] = f"{output.get('ename')}: {output.get('evalue', '')}".strip()[:300]
    with Gradebook(api.coursedir.db_url) as gradebook:
        submission = gradebook.find_submission(assignment, student)
        score = submission.score
        parts = []
        for notebook in submission.notebooks:
            for grade in sorted(notebook.grades, key=lambda g: g.name):
                text = f"{grade.name} {grade.score:g}/{grade.max_score:g}"
                if grade.name in failures:
                    text += f" ({failures[grade.name]})"
                parts.append(text)
    return GradeRow(student, assignment, score, max_score, "graded", "; ".join(parts))


def write_csv(rows: list[GradeRow], path: Path) -> None:
    """Write grades.csv with the columns student, assignment, score, max_score, status, detail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([field.name for field in fields(GradeRow)])
        for row in rows:
            writer.writerow(astuple(row))
    temporary.replace(path)  # never a half-written CSV
