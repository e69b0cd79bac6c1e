"""Read whatever a student hands in and decide which cells run.

A submission may come from Jupyter or Colab (ids in cell metadata, nbformat 4.0, Colab
metadata, no outputs), have cells inserted, copied or retyped, or have lost all its
metadata. The grader never trusts a cell's role blindly:

- test cells (nbgrader ``grade: true``, or a cell whose source is one of the assignment's
  test cells) are never run: the grader checks the functions with its own cases;
- every other code cell runs, top to bottom, as "Run all" would: the graded function is
  whatever the name (``lstm_cell``) refers to at the end. A solution cell is recognised by
  its nbgrader metadata or, when that is gone, by the marker every released stub carries,
  the definition ``def lstm_cell(``; what was recovered is reported;
- IPython syntax is neutralised: ``!pip ...`` and ``%magic`` lines become ``pass``, cells
  with a non-Python cell magic (``%%bash``) are skipped.

`reference_uses` and `forbidden_uses` read, in the code a graded function reaches (its own,
and the notebook's top-level functions it calls), uses of the graded reference functions and
of the part's forbidden library calls (`dl4nlp.exercises.calls`, shared with the self-check);
importing the grader's own modules anywhere counts as using the reference.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

from dl4nlp.exercises.calls import FORBIDDEN, REFERENCE, Program, Use, find_uses, targets
from dl4nlp.instructor.autograde.rubric import Rubric, normalised

MAX_NOTEBOOK_BYTES = 50 * 2**20
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug", "python", "python3"}
DOWNLOAD_AGAIN = "download it again (Colab: File > Download > Download .ipynb; Jupyter: File > Download)"


class InvalidSubmission(ValueError):
    """The file is not a notebook the grader can read; the message tells the student what to fix."""


@dataclass
class CodeCell:
    index: int  # position in the notebook, counting every cell from 1
    source: str  # Python source, IPython syntax neutralised
    role: str  # "solution", "test" or "other"
    grade_id: str | None = None
    defines: tuple[str, ...] = ()  # graded functions this cell defines at top level


@dataclass
class Submission:
    cells: list[CodeCell]
    notes: list[str] = field(default_factory=list)  # what was recovered or looks wrong, for `detail`

    @property
    def runnable(self) -> list[CodeCell]:
        return [cell for cell in self.cells if cell.role != "test"]


def parse_notebook(data: bytes, name: str) -> list[dict]:
    """The cells of a notebook file (nbformat 4.x, or 3 upgraded); InvalidSubmission with a fix otherwise."""
    if not data.strip():
        raise InvalidSubmission(f"{name} is empty: {DOWNLOAD_AGAIN}")
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise InvalidSubmission(f"{name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB: clear the outputs "
                                "(Edit > Clear all outputs) and download it again")
    try:
        notebook = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InvalidSubmission(f"{name} is not a text file, so not a notebook: {DOWNLOAD_AGAIN}") from None
    except RecursionError:
        raise InvalidSubmission(f"{name} is nested too deeply to be a notebook: {DOWNLOAD_AGAIN}") from None
    except json.JSONDecodeError as error:
        raise InvalidSubmission(f"{name} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                                f"it was probably edited by hand or cut short: {DOWNLOAD_AGAIN}") from None
    if not isinstance(notebook, dict) or not ("cells" in notebook or "worksheets" in notebook):
        raise InvalidSubmission(f"{name} is JSON but not a Jupyter notebook: {DOWNLOAD_AGAIN}")
    if "worksheets" in notebook and "cells" not in notebook:  # nbformat 3
        import nbformat

        try:
            notebook = nbformat.convert(nbformat.from_dict(notebook), 4)
        except Exception as error:  # noqa: BLE001 - any failure means an unreadable notebook
            raise InvalidSubmission(f"{name} is an old notebook format that could not be upgraded ({error}): "
                                    f"{DOWNLOAD_AGAIN}") from None
    cells = notebook["cells"]
    if not isinstance(cells, list):
        raise InvalidSubmission(f"{name} has no list of cells: {DOWNLOAD_AGAIN}")
    return cells


def _text(source: object) -> str | None:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    return None


def python_source(source: str) -> str | None:
    """The cell as plain Python: shell and magic lines become `pass`; None for a non-Python cell magic."""
    try:
        ast.parse(source)
        return source
    except (SyntaxError, ValueError):  # ValueError: null bytes
        pass
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = first[2:].split()[0] if first[2:].split() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None
        lines = ["pass  # " + first] + lines[1:]
    python = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")):
            python.append(line[:len(line) - len(stripped)] + "pass  # " + stripped)
        else:
            python.append(line)
    return "\n".join(python)


def _top_level_names(source: str, parts: set[str]) -> tuple[str, ...]:
    """Graded functions a cell defines at top level (by `def`, or by assignment as a fallback)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return tuple(name for name in parts if re.search(rf"^def\s+{name}\s*\(", source, re.MULTILINE))
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in parts:
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name) and t.id in parts]
    return tuple(dict.fromkeys(names))


def _nbgrader(cell: dict) -> dict:
    metadata = cell.get("metadata")
    value = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return value if isinstance(value, dict) else {}


def read_submission(data: bytes, name: str, rubric: Rubric) -> Submission:
    """Classify every code cell of a submission; notes say what was recovered."""
    parts = set(rubric.points)
    cells: list[CodeCell] = []
    notes: list[str] = []
    skipped = 0
    for index, raw in enumerate(parse_notebook(data, name), start=1):
        if not isinstance(raw, dict) or raw.get("cell_type") != "code":
            continue
        text = _text(raw.get("source"))
        if text is None:
            skipped += 1
            continue
        nbgrader = _nbgrader(raw)
        grade_id = nbgrader.get("grade_id") if isinstance(nbgrader.get("grade_id"), str) else None
        python = python_source(text)
        if python is None:
            notes.append(f"cell {index} is not Python ({text.split()[0]}) and was skipped")
            continue
        defines = _top_level_names(python, parts)
        if nbgrader.get("grade") and not nbgrader.get("solution"):
            cells.append(CodeCell(index, python, "test", grade_id, defines))
            if defines:
                notes.append(f"cell {index} is a test cell ({grade_id}), and test cells are not run: move your "
                             f"{', '.join(defines)} out of it")
        elif normalised(text) in rubric.test_sources:
            cells.append(CodeCell(index, python, "test", rubric.test_sources[normalised(text)], defines))
        elif nbgrader.get("solution") and grade_id in parts:
            cells.append(CodeCell(index, python, "solution", grade_id, defines))
        else:
            cells.append(CodeCell(index, python, "solution" if defines else "other", None, defines))
    if skipped:
        notes.append(f"{skipped} cell(s) without readable source were skipped")
    for part in rubric.points:
        defining = [cell for cell in cells if part in cell.defines and cell.role != "test"]
        if not defining:
            notes.append(f"no cell defines {part}")
            continue
        last = defining[-1]
        if len(defining) > 1:
            where = ", ".join(str(cell.index) for cell in defining)
            notes.append(f"{part} is defined in cells {where}: the last one (cell {last.index}) counts")
        if last.grade_id != part:
            notes.append(f"recovered {part} from cell {last.index} (its nbgrader metadata is missing)")
    return Submission(cells, notes)


MAX_ANSWER_CHARACTERS = 5000


def written_answers(data: bytes, name: str, rubric: Rubric) -> list[tuple[str, float, str]]:
    """(question, points, answer) for each written answer of the rubric, in order ("" if none was found).

    An answer is the markdown cell with the answer's ``grade_id`` or, when its metadata is gone,
    the markdown cell right after the question. Nothing is graded: the feedback page shows them.
    """
    questions = {normalised(question): grade_id for grade_id, (question, _) in rubric.answers.items()}
    found: dict[str, str] = {}
    previous = ""
    for raw in parse_notebook(data, name):
        text = (_text(raw.get("source")) if isinstance(raw, dict) else None) or ""
        if isinstance(raw, dict) and raw.get("cell_type") == "markdown":
            nbgrader = _nbgrader(raw)
            grade_id = nbgrader.get("grade_id")
            if isinstance(grade_id, str) and grade_id in rubric.answers and nbgrader.get("solution"):
                found[grade_id] = text
            elif questions.get(previous) and questions[previous] not in found:
                found[questions[previous]] = text
        previous = normalised(text)
    return [(question, points, found.get(grade_id, "").strip()[:MAX_ANSWER_CHARACTERS])
            for grade_id, (question, points) in rubric.answers.items()]

# --- answers taken from the reference, library calls that do a part's work -----------------------


def static_uses(submission: Submission, rubric: Rubric) -> dict[str, list[Use]]:
    """{part: uses of the reference or of its forbidden calls}, read in the code (`dl4nlp.exercises.calls`).

    Only what the graded function's name is bound to at the end, and the notebook's top-level
    functions and classes it reaches, count: a scratch cell that compares one's own function
    with `course.lstm_cell(...)` is not a use.
    """
    program = Program.from_cells((cell.index, cell.source) for cell in submission.runnable)
    parts = rubric.exercises.parts
    return {part.name: find_uses(program, part.name, targets(part, parts)) for part in parts}


def reference_uses(submission: Submission, rubric: Rubric) -> dict[str, str]:
    """{part: how its code reaches a graded reference function}; importing the grader's own modules
    (`dl4nlp.exercises`, `dl4nlp.instructor.autograde`) anywhere counts for every part."""
    uses = {name: str(found[0]) for name, found in static_uses(submission, rubric).items()
            if found and found[0].kind == REFERENCE}
    for cell in submission.runnable:
        try:
            tree = ast.parse(cell.source)
        except (SyntaxError, ValueError):  # ValueError: null bytes
            continue
        for node in ast.walk(tree):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for module in modules:
                if module.startswith(("dl4nlp.exercises", "dl4nlp.instructor.autograde")):
                    for part in rubric.points:
                        uses.setdefault(part, f"imports {module} (the grader's own code) in cell {cell.index}")
    return uses


def forbidden_uses(submission: Submission, rubric: Rubric) -> dict[str, str]:
    """{part: the first forbidden library call its code uses}: "uses torch.lstm_cell in lstm_cell (cell 8)"."""
    return {name: str(forbidden[0]) for name, found in static_uses(submission, rubric).items()
            if (forbidden := [use for use in found if use.kind == FORBIDDEN])}
