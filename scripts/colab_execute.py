"""Execute the course's notebooks as Colab would, in smoke mode and offline (run by scripts/colab_check.py).

Every book page and every instructor notebook runs whole; every student notebook runs up to its
first stub (the first cell that raises NotImplementedError), test cells left out, since what
follows needs the student's code. Each notebook starts with a hidden first cell that turns a
DeprecationWarning or FutureWarning raised from dl4nlp code into an error. Uses the nbclient and
kernel of the environment it runs in, through `dl4nlp.instructor.execution.ReplyTolerantClient` (a
kernel's lost reply to a cell costs 10 s, not the 600 s timeout). Exit status 1 if any notebook failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat

from dl4nlp.instructor.execution import ReplyTolerantClient  # goes on when a kernel's reply to a cell is lost

ROOT = Path(__file__).resolve().parent.parent
STRICT = """import warnings
for category in (DeprecationWarning, FutureWarning):
    warnings.filterwarnings("error", category=category, module=r"dl4nlp(\\.|$)")"""
ENVIRONMENT = {"DL4NLP_SMOKE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "MPLBACKEND": "Agg"}


def up_to_first_stub(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The cells before the first student stub, without test cells."""
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "code" and "raise NotImplementedError" in cell.source:
            break
        nbgrader = cell.metadata.get("nbgrader", {})
        if not (nbgrader.get("grade") and not nbgrader.get("solution")):
            cells.append(cell)
    notebook.cells = cells
    return notebook


def execute(path: Path, whole: bool) -> str | None:
    """Run one notebook; None if it ran cleanly, else what went wrong."""
    notebook = nbformat.read(path, as_version=4)
    if not whole:
        notebook = up_to_first_stub(notebook)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(STRICT))
    import os

    os.environ.update(ENVIRONMENT)
    client = ReplyTolerantClient(notebook, timeout=600, kernel_name="python3",
                                 resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except Exception as error:  # noqa: BLE001 - reported per notebook
        return f"{type(error).__name__}: {str(error)[-1500:]}"
    if client.lost_replies:  # not a failure: said, so that a pattern shows
        print(f"     {path.name}: {client.lost_replies_note()}", flush=True)
    return None


def main() -> int:
    jobs = [(path, True) for path in sorted(ROOT.glob("book/*.ipynb"))]
    jobs += [(path, True) for path in sorted(ROOT.glob("solutions/*/*.ipynb"))]
    jobs += [(path, False) for path in sorted(ROOT.glob("assignments/*/*.ipynb"))]
    failures = 0
    for path, whole in jobs:
        start = time.perf_counter()
        problem = execute(path, whole)
        what = "" if whole else " (up to the first stub)"
        print(f"{'ok  ' if problem is None else 'FAIL'} {path.relative_to(ROOT)}{what}: "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        if problem:
            failures += 1
            print(problem, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
