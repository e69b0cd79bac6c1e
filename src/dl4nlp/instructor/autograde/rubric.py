"""The rubric: what the grader knows about an assignment, read once per run from the repository.

- the parts and their points: `dl4nlp.exercises.<assignment>`, the one place they are
  written; the instructor notebook must have a test cell (``grade_id`` ``test_<function>``)
  per part, with the same points (`dl4nlp sync` writes them there);
- the test cells' sources (instructor and student versions), so that test cells are
  recognised in a submission even when an editor dropped their metadata;
- a copy of the `dl4nlp` package in which every graded function raises `trap.reference_unavailable`:
  the only `dl4nlp` a submission can import while it is graded.
"""

from __future__ import annotations

import ast
import compileall
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dl4nlp.exercises import Assignment, load
from dl4nlp.instructor import GradingError


@dataclass(frozen=True)
class Rubric:
    root: Path
    assignment: str
    notebook: str  # the notebook's file name, e.g. "rnn.ipynb"
    exercises: Assignment
    points: dict[str, float]  # part (graded function) -> points, in notebook order
    test_sources: dict[str, str]  # normalised test cell source -> grade_id
    imports: tuple[str, ...]  # modules the released notebook imports: workers import them once, up front
    # grade_id -> (question, points): the written answers, markdown cells graded by hand (nbgrader's
    # ``solution`` and ``grade``); the grader only shows them, on the feedback page
    answers: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def max_score(self) -> float:
        return float(sum(self.points.values()))


def normalised(source: str) -> str:
    """A cell's source for comparison: no trailing spaces, no blank lines at either end."""
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _cells(path: Path) -> list[dict]:
    notebook = json.loads(path.read_text())
    cells = notebook.get("cells", [])
    for cell in cells:
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
    return cells


def _nbgrader(cell: dict) -> dict:
    metadata = cell.get("metadata")
    value = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return value if isinstance(value, dict) else {}


def load_rubric(root: Path, assignment: str) -> Rubric:
    """Read parts, points and test cells of `assignment`; GradingError if notebook and exercises disagree."""
    notebooks = sorted((root / "solutions" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        found = ", ".join(p.name for p in notebooks) or "none"
        raise GradingError(f"expected one notebook in solutions/{assignment}/, found {found}")
    solution = notebooks[0]
    try:
        exercises = load(assignment)
    except LookupError as error:
        raise GradingError(str(error)) from None
    points: dict[str, float] = {}  # as the notebook's test cells say
    test_sources: dict[str, str] = {}
    released = root / "assignments" / assignment / solution.name
    imports: dict[str, None] = {}
    for path in [solution, *([released] if released.is_file() else [])]:
        for cell in _cells(path):
            if cell.get("cell_type") == "code":
                imports.update(dict.fromkeys(_imported_modules(cell["source"])))
            nbgrader = _nbgrader(cell)
            if cell.get("cell_type") != "code" or not nbgrader.get("grade") or nbgrader.get("solution"):
                continue
            grade_id = str(nbgrader.get("grade_id", ""))
            test_sources[normalised(cell["source"])] = grade_id
            if path == solution:
                part = grade_id.removeprefix("test_")
                if not grade_id.startswith("test_") or part not in exercises.points:
                    raise GradingError(f"solutions/{assignment}/{solution.name}: graded cell {grade_id!r} has no part: "
                                       f"name it test_<function> and add the function to dl4nlp/exercises/{assignment}.py")
                points[part] = float(nbgrader.get("points", 0))
    answers: dict[str, tuple[str, float]] = {}
    previous = ""
    for cell in _cells(solution):
        nbgrader = _nbgrader(cell)
        if cell.get("cell_type") == "markdown" and nbgrader.get("solution") and nbgrader.get("grade"):
            answers[str(nbgrader.get("grade_id", ""))] = (previous, float(nbgrader.get("points", 0)))
        previous = cell["source"]
    missing = [name for name in exercises.points if name not in points]
    if missing:
        raise GradingError(f"solutions/{assignment}/{solution.name} has no test cell for {', '.join(missing)} "
                           f"(expected grade_id test_{missing[0]})")
    if points != exercises.points:
        raise GradingError(f"the points of solutions/{assignment}/{solution.name} differ from "
                           f"dl4nlp/exercises/{assignment}.py, where they are written: run `dl4nlp sync`")
    return Rubric(root, assignment, solution.name, exercises, exercises.points, test_sources, tuple(imports),
                  answers)


def _imported_modules(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return [name for name in names if name.split(".")[0] not in ("google", "IPython", "__future__")]


def trapped_package(destination: Path, graded: dict[str, list[str]]) -> Path:
    """Copy the installed `dl4nlp` to `destination/dl4nlp` with the graded functions replaced by traps.

    `graded` maps each chapter module to its graded functions ({"dl4nlp.rnn": ["rnn_cell", ...]}).
    Each trapped function keeps its signature, decorators and docstring; its body raises
    `dl4nlp.instructor.autograde.trap.reference_unavailable`. Returns the copy's package folder.
    """
    import dl4nlp

    source = Path(dl4nlp.__file__).parent
    package = destination / "dl4nlp"
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for module, names in graded.items():
        _trap(package, module, names)
    compileall.compile_dir(str(package), quiet=2)
    return package


def _trap(package: Path, module: str, names: list[str]) -> None:
    """Replace the bodies of `names` in the copy of `module` under `package` by traps."""
    path = package.joinpath(*module.split(".")[1:]).with_suffix(".py")
    lines = path.read_text().splitlines()
    functions = {node.name: node for node in ast.parse("\n".join(lines)).body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names}
    if set(functions) != set(names):
        raise GradingError(f"{module} does not define {', '.join(sorted(set(names) - set(functions)))}")
    for node in sorted(functions.values(), key=lambda n: n.lineno, reverse=True):
        body = node.body
        docstring = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str)
        start = body[1].lineno if docstring and len(body) > 1 else (None if docstring else body[0].lineno)
        indent = " " * body[0].col_offset
        trap = f"{indent}raise _reference_unavailable({module + '.' + node.name!r})"
        if start is None:  # a docstring and nothing else
            lines[node.end_lineno:node.end_lineno] = [trap]
        else:
            lines[start - 1:node.end_lineno] = [trap]
    lines += ["", "from dl4nlp.instructor.autograde.trap import reference_unavailable as _reference_unavailable  # noqa: E402"]
    path.write_text("\n".join(lines) + "\n")
