"""The arrows of the course, for every assignment: package -> solutions -> assignments -> grades.

- a graded solution cell is the package function's source (with nbgrader's markers);
- re-deriving cells (`dl4nlp sync`) and regenerating assignments/ (`dl4nlp release`) change nothing;
- student stubs keep signature and docstring;
- grading through the real `dl4nlp autograde` command: the instructor notebook gets full marks,
  the untouched student notebook zero, one broken function loses exactly its part's points.
"""

from __future__ import annotations

import ast
import csv
import inspect
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from dl4nlp import grading
from dl4nlp.notebooks import (BEGIN, END, course_markdown, course_notebooks, graded_functions, repository,
                              solution_cell_source, strip_solution_markers, sync_markdown, sync_notebook)

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = grading.assignments(ROOT)
SOLUTIONS = sorted(ROOT.glob("solutions/*/*.ipynb"))


def ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in paths]


def solution_cells(notebook: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in notebook.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def copy_course(destination: Path) -> Path:
    for name in ("_config.yml", "_toc.yml", "nbgrader_config.py", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    for folder in ("solutions", "assignments", "book"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return destination


def test_every_assignment_is_released_and_graded():
    assert ASSIGNMENTS, "no assignment in solutions/"
    for assignment in ASSIGNMENTS:
        names = {p.name for p in (ROOT / "solutions" / assignment).glob("*.ipynb")}
        assert names == {p.name for p in (ROOT / "assignments" / assignment).glob("*.ipynb")}


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_solution_cells_are_the_package_code(path):
    notebook = nbformat.read(path, as_version=4)
    functions = graded_functions(notebook)
    assert functions, f"{path}: no solution cell is named after a function of metadata dl4nlp.module"
    cells = solution_cells(notebook)
    for name, function in functions.items():
        source = cells[name].source
        assert source == solution_cell_source(function), f"{name}: run `dl4nlp sync`"
        assert strip_solution_markers(source) == textwrap.dedent(inspect.getsource(function)).rstrip("\n")
        assert source.count(BEGIN) == source.count(END) == 1


@pytest.mark.parametrize("path", course_notebooks(ROOT), ids=ids(course_notebooks(ROOT)))
def test_sync_changes_nothing(path, tmp_path):
    course = copy_course(tmp_path)
    assert not sync_notebook(course / path.relative_to(ROOT), course), f"{path}: run `dl4nlp sync`"


@pytest.mark.parametrize("path", course_markdown(ROOT), ids=ids(course_markdown(ROOT)))
def test_markdown_links_are_in_sync(path, tmp_path):
    course = copy_course(tmp_path)
    assert not sync_markdown(course / path.relative_to(ROOT), course), f"{path}: run `dl4nlp sync`"


def test_repository_url_lives_in_one_place(tmp_path):
    """Change the repository in _config.yml, sync: no notebook or page names the old one."""
    course = copy_course(tmp_path)
    old_url, old_branch = repository(course)
    config = course / "_config.yml"
    config.write_text(config.read_text().replace(old_url, "https://github.com/someone/fork")
                      .replace(f"branch: {old_branch}", "branch: fall-term"))
    for notebook in course_notebooks(course):
        sync_notebook(notebook, course)
    for page in course_markdown(course):
        sync_markdown(page, course)
    derived = [*course_notebooks(course), *course_markdown(course)]
    old_repository = old_url.split("github.com/", 1)[1]
    assert not [p for p in derived if old_repository in p.read_text()]
    texts = "".join(p.read_text() for p in derived)
    assert "colab.research.google.com/github/someone/fork/blob/fall-term/assignments/" in texts
    assert "git+https://github.com/someone/fork@fall-term" in texts


@pytest.mark.parametrize("path", [*course_notebooks(ROOT), *ROOT.glob("assignments/*/*.ipynb")],
                         ids=ids([*course_notebooks(ROOT), *ROOT.glob("assignments/*/*.ipynb")]))
def test_notebooks_are_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    assert not [c for c in notebook.cells if c.cell_type == "code" and (c.outputs or c.execution_count)], \
        f"{path}: clear the outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_changes_nothing(assignment, tmp_path):
    course = copy_course(tmp_path)
    for notebook in grading.release(course, assignment):
        committed = ROOT / "assignments" / assignment / notebook.name
        assert json.loads(notebook.read_text()) == json.loads(committed.read_text()), \
            f"assignments/{assignment}/{notebook.name} is stale: run `dl4nlp release {assignment}`"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_stubs_keep_signature_and_docstring(assignment):
    for path in (ROOT / "assignments" / assignment).glob("*.ipynb"):
        student = nbformat.read(path, as_version=4)
        instructor = nbformat.read(ROOT / "solutions" / assignment / path.name, as_version=4)
        functions = graded_functions(instructor)
        for name, cell in solution_cells(student).items():
            if name not in functions:
                continue
            stub = ast.parse(cell.source).body[0]
            reference = ast.parse(textwrap.dedent(inspect.getsource(functions[name]))).body[0]
            assert ast.dump(stub.args) == ast.dump(reference.args) and ast.dump(stub.returns) == ast.dump(reference.returns)
            assert ast.get_docstring(stub) == ast.get_docstring(reference)
            assert "raise NotImplementedError()" in cell.source and BEGIN not in cell.source
            body_lines = strip_solution_markers(solution_cell_source(functions[name])).splitlines()
            hidden = body_lines[-3:]  # the end of the answer never reaches students
            assert not all(line in cell.source.splitlines() for line in hidden)
        hidden_tests = [c for c in student.cells if "BEGIN HIDDEN TESTS" in c.source or "END HIDDEN" in c.source]
        assert not hidden_tests


# --- grading round trip -----------------------------------------------------------------


def perturbed(source: str, name: str) -> str:
    """A solution cell with one bug: the function's results are all off by 0.01."""
    return source + textwrap.dedent(f"""

        _correct_{name} = {name}
        def {name}(*args, **kwargs):
            def nudge(value):
                if isinstance(value, tuple):
                    return tuple(nudge(v) for v in value)
                return value + 0.01
            return nudge(_correct_{name}(*args, **kwargs))
        """)


def autograde(assignment: str, submissions: Path, out: Path) -> dict[str, dict[str, str]]:
    subprocess.run([sys.executable, "-m", "dl4nlp", "autograde", assignment, str(submissions), "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, text=True)
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["student", "assignment", "score", "max_score", "status", "detail"]
    return {row["student"]: row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_grading_round_trip(assignment, tmp_path):
    submissions = tmp_path / "submissions"
    solutions = sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))
    name = solutions[0].name
    instructor = nbformat.read(solutions[0], as_version=4)
    parts = {grade_id: cell for grade_id, cell in solution_cells(instructor).items()
             if grade_id in graded_functions(instructor)}
    points = {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points for c in instructor.cells
              if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}

    def submit(student: str, notebook: nbformat.NotebookNode) -> None:
        (submissions / student).mkdir(parents=True)
        nbformat.write(notebook, submissions / student / name)

    submit("instructor", instructor)
    (submissions / "untouched").mkdir(parents=True)
    shutil.copy(ROOT / "assignments" / assignment / name, submissions / "untouched" / name)
    for part in parts:
        buggy = nbformat.read(solutions[0], as_version=4)
        cell = solution_cells(buggy)[part]
        cell.source = perturbed(cell.source, part)
        submit(f"bug-{part.replace('_', '-')}", buggy)
    (submissions / "wrong-name").mkdir()
    shutil.copy(solutions[0], submissions / "wrong-name" / "my_homework.ipynb")

    grades = autograde(assignment, submissions, tmp_path / "grades.csv")
    total = sum(points.values())
    assert set(grades) == {"instructor", "untouched", "wrong-name", *(f"bug-{p.replace('_', '-')}" for p in parts)}
    assert float(grades["instructor"]["max_score"]) == total
    assert (float(grades["instructor"]["score"]), grades["instructor"]["status"]) == (total, "graded")
    assert (float(grades["untouched"]["score"]), grades["untouched"]["status"]) == (0, "graded")
    for part in parts:
        assert f"test_{part} 0/" in grades["untouched"]["detail"]
        row = grades[f"bug-{part.replace('_', '-')}"]
        assert float(row["score"]) == total - points[f"test_{part}"], (part, row["detail"])
        assert f"test_{part} 0/{points[f'test_{part}']:g}" in row["detail"]
    assert grades["wrong-name"]["status"] == "missing" and name in grades["wrong-name"]["detail"]

    again = autograde(assignment, submissions, tmp_path / "again.csv")
    assert again == grades  # idempotent
