"""What the grader knows about an assignment, read once per run from the repository.

- the parts and their points: the instructor notebook's test cells (``grade_id``
  ``test_<function>``, nbgrader ``points``); each must have a check in
  `dl4nlp.assessment.<assignment>`, and the two must agree on the points;
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
from dataclasses import dataclass
from pathlib import Path

from dl4nlp.assessment import Assessment, load
from dl4nlp.grading import GradingError


@dataclass(frozen=True)
class Course:
    root: Path
    assignment: str
    notebook: str  # the notebook's file name, e.g. "rnn.ipynb"
    assessment: Assessment
    points: dict[str, float]  # part (graded function) -> points, in notebook order
    test_sources: dict[str, str]  # normalised test cell source -> grade_id
    imports: tuple[str, ...]  # modules the released notebook imports: workers import them once, up front

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


def load_course(root: Path, assignment: str) -> Course:
    """Read parts, points and test cells of `assignment`; GradingError if notebook and checks disagree."""
    notebooks = sorted((root / "solutions" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        found = ", ".join(p.name for p in notebooks) or "none"
        raise GradingError(f"expected one notebook in solutions/{assignment}/, found {found}")
    solution = notebooks[0]
    try:
        assessment = load(assignment)
    except LookupError as error:
        raise GradingError(str(error)) from None
    points: dict[str, float] = {}
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
                if not grade_id.startswith("test_") or part not in {p.name for p in assessment.parts}:
                    raise GradingError(f"solutions/{assignment}/{solution.name}: graded cell {grade_id!r} has no check: "
                                       f"name it test_<function> and add the function to dl4nlp/assessment/{assignment}.py")
                points[part] = float(nbgrader.get("points", 0))
    missing = [p.name for p in assessment.parts if p.name not in points]
    if missing:
        raise GradingError(f"solutions/{assignment}/{solution.name} has no test cell for {', '.join(missing)} "
                           f"(expected grade_id test_{missing[0]})")
    disagree = [f"{name}: notebook {points[name]:g}, assessment {assessment.points.get(name)}"
                for name in points if float(assessment.points.get(name, -1)) != points[name]]
    if disagree:
        raise GradingError(f"points differ between the test cells and dl4nlp/assessment/{assignment}.py "
                           f"({'; '.join(disagree)}): make them agree")
    return Course(root, assignment, solution.name, assessment, points, test_sources, tuple(imports))


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


def trapped_package(destination: Path, module: str, names: list[str]) -> Path:
    """Copy the installed `dl4nlp` to `destination/dl4nlp` with `names` in `module` replaced by traps.

    Each trapped function keeps its signature and docstring; its body raises
    `dl4nlp.grader.trap.reference_unavailable`. Returns the copy's package folder.
    """
    import dl4nlp

    source = Path(dl4nlp.__file__).parent
    package = destination / "dl4nlp"
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
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
    lines += ["", "from dl4nlp.grader.trap import reference_unavailable as _reference_unavailable  # noqa: E402"]
    path.write_text("\n".join(lines) + "\n")
    compileall.compile_dir(str(package), quiet=2)
    return package
