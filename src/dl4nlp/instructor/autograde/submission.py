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
- IPython syntax runs as Jupyter would run it, where it can: ``!pip ...`` and ``%magic`` lines
  become ``pass``, ``x = !ls`` assigns an empty list, ``%time statement`` runs the statement,
  ``%%writefile`` writes its file; cells with another non-Python cell magic (``%%bash``) are
  skipped, each with a note;
- sizes are bounded (the file, each cell, all cells) before anything is parsed, and the
  grader parses only in a memory-limited process (`parse_limited`).

`reference_uses` and `forbidden_uses` read, in the code a graded function reaches (its own,
and the notebook's top-level functions it calls), uses of the graded reference functions and
of the part's forbidden library calls (`dl4nlp.exercises.calls`, shared with the self-check);
importing the grader's own modules anywhere counts as using the reference.
"""

from __future__ import annotations

import ast
import json
import os
import re
import struct
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from dl4nlp.exercises.calls import FORBIDDEN, REFERENCE, Program, Use, find_uses, targets
from dl4nlp.instructor.autograde.rubric import Rubric, normalised

MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_CELL_CHARS = 200_000  # one code cell: parsing Python costs about 200 bytes of memory per character
MAX_SOURCE_CHARS = 2_000_000  # all code cells together
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
    uses: dict[str, str] | None = None  # `reference_uses`, when computed where the source was parsed
    forbidden: dict[str, str] | None = None  # `forbidden_uses`, likewise
    answers: list[tuple[str, float, str]] = field(default_factory=list)  # `written_answers`, likewise

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


ASSIGNED_MAGIC = re.compile(r"^(\s*[A-Za-z_]\w*\s*=\s*)[!%].*$")
TIMED_LINE = re.compile(r"^(\s*)%time\s+(.*)$")


def python_source(source: str) -> str | None:
    """The cell as plain Python, as Jupyter would run it; None for a cell magic that cannot run here.

    Shell and magic lines become `pass`; `x = !cmd` and `x = %magic` assign an empty list (no
    shell while grading); `%time statement` runs the statement; a `%%writefile` cell writes its
    file (in the submission's own folder).
    """
    try:
        ast.parse(source)
        return source
    except (SyntaxError, ValueError):  # ValueError: null bytes
        pass
    lines = source.splitlines()
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        words = first[2:].split()
        magic = words[0] if words else ""
        if magic == "writefile":
            return _write_file(words[1:], lines[1:])
        if magic not in PYTHON_CELL_MAGICS:
            return None
        lines = ["pass  # " + first] + lines[1:]
    python = []
    for line in lines:
        stripped = line.lstrip()
        indent = line[:len(line) - len(stripped)]
        if (timed := TIMED_LINE.match(line)) and not stripped.startswith("%timeit"):
            python.append(timed.group(1) + timed.group(2))
        elif assigned := ASSIGNED_MAGIC.match(line):
            python.append(f"{assigned.group(1)}[]  # {stripped}")
        elif stripped.startswith(("!", "%")):
            python.append(indent + "pass  # " + stripped)
        else:
            python.append(line)
    return "\n".join(python)


def _write_file(options: list[str], body: list[str]) -> str | None:
    """`%%writefile [-a] NAME` as Python: the cell's text written to NAME, relative to the working folder."""
    append = bool(options) and options[0] in ("-a", "--append")
    names = options[1:] if append else options
    if len(names) != 1:
        return None
    text = "".join(line + "\n" for line in body)
    return f"with open({names[0]!r}, {'a' if append else 'w'!r}) as _writefile:\n    _writefile.write({text!r})"


def _check_size(name: str, index: int, cell: int, total: int) -> None:
    """InvalidSubmission for a cell or a notebook with more code than any answer needs (and parsing affords)."""
    if cell > MAX_CELL_CHARS:
        raise InvalidSubmission(f"cell {index} of {name} holds {cell:,} characters of code, more than the "
                                f"{MAX_CELL_CHARS:,} a cell may hold: remove pasted data or outputs from it")
    if total > MAX_SOURCE_CHARS:
        raise InvalidSubmission(f"the code cells of {name} hold more than {MAX_SOURCE_CHARS:,} characters, more "
                                "than a notebook may hold: remove pasted data or outputs from its cells")


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
    skipped = total = 0
    for index, raw in enumerate(parse_notebook(data, name), start=1):
        if not isinstance(raw, dict) or raw.get("cell_type") != "code":
            continue
        text = _text(raw.get("source"))
        if text is None:
            skipped += 1
            continue
        total += len(text)
        _check_size(name, index, len(text), total)
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
    return {part.name: find_uses(program, part.name, targets(part, parts), part.given) for part in parts}


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


# --- parsing in a process of its own ------------------------------------------------------------

PARSER_MEMORY_MB = 1536  # address space the parser may add to what it holds after importing


class LimitedReader:
    """`read_submission`, `reference_uses`, `forbidden_uses` and `written_answers` in a process of their own,
    whose memory is limited.

    Parsing untrusted JSON and Python costs memory out of proportion to the file (`ast.parse`
    of a 34 MB cell took 6.9 GB), so the grader never parses a submission itself: a reader
    process started once per run (python -m dl4nlp.instructor.autograde.submission) loads the
    rubric, limits its own address space, and answers one request at a time. If it dies
    (out of memory, say), the submission is invalid and the next one gets a new reader.
    """

    def __init__(self, root: Path, assignment: str) -> None:
        self.root, self.assignment = root, assignment
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "dl4nlp.instructor.autograde.submission", str(self.root), self.assignment],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self._process

    def read(self, data: bytes, name: str) -> Submission:
        """The submission, parsed by the reader process; InvalidSubmission if it cannot be read."""
        with self._lock:
            process = self._start()
            try:
                _send(process.stdin, json.dumps({"name": name}).encode())
                _send(process.stdin, data)
                answer = json.loads(_receive(process.stdout))
            except (OSError, ValueError, EOFError):
                self.close()
                raise InvalidSubmission(f"{name} is too large or too complex to read: clear the outputs (Edit > "
                                        "Clear all outputs), remove pasted data and download it again") from None
        if "invalid" in answer:
            raise InvalidSubmission(answer["invalid"])
        if "error" in answer:
            raise RuntimeError(answer["error"])
        cells = [CodeCell(c["index"], c["source"], c["role"], c["grade_id"], tuple(c["defines"]))
                 for c in answer["cells"]]
        answers = [tuple(written) for written in answer["answers"]]
        return Submission(cells, answer["notes"], answer["uses"], answer["forbidden"], answers)

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                stream.close()
            self._process = None


def _send(stream: BinaryIO, data: bytes) -> None:
    stream.write(struct.pack("!Q", len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> bytes:
    head = stream.read(8)
    if len(head) != 8:
        raise EOFError("the reader stopped")
    size = struct.unpack("!Q", head)[0]
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the reader stopped")
    return data


def _limit_memory(extra_mb: int) -> None:
    """Limit this process's address space to what it holds now plus `extra_mb`."""
    import resource

    with open("/proc/self/status") as status:
        size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = size_kb * 1024 + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _answer(data: bytes, name: str, rubric: Rubric) -> dict:
    try:
        submission = read_submission(data, name, rubric)
        uses, forbidden = reference_uses(submission, rubric), forbidden_uses(submission, rubric)
        answers = written_answers(data, name, rubric)
    except InvalidSubmission as error:
        return {"invalid": str(error)}
    except (MemoryError, RecursionError):
        return {"invalid": f"{name} is too large or too complex to read: remove pasted data and download it again"}
    except Exception as error:  # noqa: BLE001 - reported as the grader's failure on this submission
        return {"error": f"{type(error).__name__}: {error}"}
    return {"cells": [asdict(cell) for cell in submission.cells], "notes": submission.notes, "uses": uses,
            "forbidden": forbidden, "answers": answers}


def _serve(root: Path, assignment: str) -> None:
    """The reader process: requests (a JSON header, the notebook's bytes) in, answers out, until stdin closes."""
    from dl4nlp.instructor.autograde.rubric import load_rubric

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever an import prints goes to stderr, not into the answers
    rubric = load_rubric(root, assignment)
    if sys.platform == "linux":
        _limit_memory(PARSER_MEMORY_MB)
    requests = sys.stdin.buffer
    while True:
        try:
            header = json.loads(_receive(requests))
            data = _receive(requests)
        except EOFError:
            return
        _send(answers, json.dumps(_answer(data, header["name"], rubric)).encode())
        del data


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _serve(Path(sys.argv[1]), sys.argv[2])
