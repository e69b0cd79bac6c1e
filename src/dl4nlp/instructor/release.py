"""`dl4nlp release`: the student notebooks, generated from the instructor notebooks by nbgrader.

Layout: the instructor notebooks are `solutions/<assignment>/*.ipynb` (nbgrader's
source), the student notebooks `assignments/<assignment>/*.ipynb` (its release).
nbgrader only releases: grading is `dl4nlp.instructor.autograde`, which never runs
nbgrader (see there).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from dl4nlp.instructor import GradingError

if TYPE_CHECKING:
    from traitlets.config import Config


# nbgrader runs `alembic` and kernels from PATH: put this environment's bin/ first.
NBGRADER_PATH = {"PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


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
        gradebook = Path(scratch) / "gradebook.db"  # keep the repo clean
        gradebook.write_bytes(_empty_gradebook())
        config.CourseDirectory.db_url = f"sqlite:///{gradebook}"
        with _environment(NBGRADER_PATH):
            result = NbGraderAPI(config=config).generate_assignment(assignment, force=True)
    if not result["success"]:
        raise GradingError(f"nbgrader generate_assignment {assignment} failed:\n{_errors(result)}")
    return sorted((root / "assignments" / assignment).glob("*.ipynb"))


@functools.cache
def _empty_gradebook() -> bytes:
    """An empty nbgrader gradebook, made once per process. nbgrader stamps a new gradebook with its schema's
    revision by running `alembic` in a subprocess: 4 of the 5 seconds that releasing an assignment took."""
    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory() as scratch, _environment(NBGRADER_PATH):
        path = Path(scratch) / "gradebook.db"
        with Gradebook(f"sqlite:///{path}"):
            pass
        return path.read_bytes()


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
