"""Building submissions and grading them, for the tests: written once, used by every grading test.

- `read`, `nbgrader`, `solution_index`, `insert`: notebooks and their cells;
- `wrong_answers`, `perturbed`, `replaced`: answers that are wrong on purpose;
- `colab`: a notebook as Colab's File > Download writes it;
- `write_submission`: one student's folder;
- `autograde`: the real `dl4nlp autograde` command, its CSV read back by student.
"""

from __future__ import annotations

import copy
import csv
import inspect
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["student", "assignment", "score", "max_score", "status", "detail", "late"]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def is_test_cell(cell: nbformat.NotebookNode) -> bool:
    return bool(nbgrader(cell).get("grade")) and not nbgrader(cell).get("solution")


def solution_index(notebook: nbformat.NotebookNode, part: str | None = None) -> int:
    """Position of the (first) solution cell of `part`, or of the first graded part."""
    for index, cell in enumerate(notebook.cells):
        if nbgrader(cell).get("solution") and (part is None or nbgrader(cell).get("grade_id") == part):
            return index
    raise LookupError(part)


def insert(notebook: nbformat.NotebookNode, source: str, position: int | None = None,
           kind: str = "code") -> nbformat.NotebookNode:
    """A copy of `notebook` with a new cell (no metadata) after the first solution cell, or at `position`."""
    notebook = copy.deepcopy(notebook)
    position = solution_index(notebook) + 1 if position is None else position
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    notebook.cells.insert(position, cell)
    return notebook


def append(notebook: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """A copy of `notebook` with a new code cell at the end."""
    return insert(notebook, source, len(notebook.cells))


def wrong_answers(parts: list[str]) -> str:
    """Every graded function defined, returning its first argument: wrong for every part."""
    return "\n".join(f"def {name}(*args, **kwargs):\n    return args[0]\n" for name in parts)


def perturbed(source: str, name: str) -> str:
    """A solution cell with one bug: the function's floating-point results are all off by 0.01."""
    return source + textwrap.dedent(f"""

        _correct_{name} = {name}
        def {name}(*args, **kwargs):
            def nudge(value):
                return tuple(nudge(v) for v in value) if isinstance(value, tuple) else value + 0.01
            return nudge(_correct_{name}(*args, **kwargs))
        """)


def with_source(notebook: nbformat.NotebookNode, part: str, source: str) -> nbformat.NotebookNode:
    """A copy of `notebook` whose solution cell of `part` holds `source` (dedented)."""
    notebook = copy.deepcopy(notebook)
    notebook.cells[solution_index(notebook, part)].source = textwrap.dedent(source)
    return notebook


def replaced(notebook: nbformat.NotebookNode, part: str, function: object) -> nbformat.NotebookNode:
    """A copy of `notebook` whose solution cell of `part` defines `function`'s source under the part's name."""
    notebook = copy.deepcopy(notebook)
    source = textwrap.dedent(inspect.getsource(function))
    name = function.__name__
    notebook.cells[solution_index(notebook, part)].source = source + (f"\n\n{part} = {name}\n" if name != part else "")
    return notebook


def colab(notebook: nbformat.NotebookNode) -> dict:
    """The notebook as Colab's File > Download writes it: nbformat 4.0, ids in metadata, no outputs."""
    data = json.loads(nbformat.writes(notebook))
    data["nbformat_minor"] = 0
    data["metadata"] = {"colab": {"provenance": [], "gpuType": "T4"}, "accelerator": "GPU",
                        "kernelspec": {"name": "python3", "display_name": "Python 3"},
                        "language_info": {"name": "python"}}
    for cell in data["cells"]:
        cell["metadata"]["id"] = cell.pop("id", uuid.uuid4().hex[:12])
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if isinstance(cell["source"], str):
            cell["source"] = cell["source"].splitlines(keepends=True)
    return data


def write_submission(folder: Path, student: str, notebook: nbformat.NotebookNode | dict | bytes,
                     file_name: str) -> Path:
    """`folder/student/file_name` holding `notebook` (a notebook, Colab's JSON, or raw bytes)."""
    path = folder / student / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(notebook, bytes):
        path.write_bytes(notebook)
    elif isinstance(notebook, dict):
        path.write_text(json.dumps(notebook, indent=1))
    else:
        nbformat.write(notebook, path)
    return path


def autograde(assignment: str, submissions: Path, out: Path, *options: str,
              root: Path = ROOT) -> tuple[dict[str, dict[str, str]], str]:
    """Run `dl4nlp autograde` as an instructor would; ({student: CSV row}, stderr)."""
    result = subprocess.run([sys.executable, "-m", "dl4nlp", "autograde", assignment, str(submissions),
                             "--out", str(out), *options], cwd=root, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert not rows or list(rows[0]) == COLUMNS
    return {row["student"]: row for row in rows}, result.stderr
