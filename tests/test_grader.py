"""Grading that survives a real class: hostile, broken and Colab-edited submissions.

Every submission below is built from the real notebooks of an assignment (the instructor
notebook for correct code, the released one for stubs) and graded in ONE run of the real
`dl4nlp autograde` command (two jobs), which must give each the expected score and status:

- tampering earns nothing: builtins, torch, numpy and the checking helpers monkeypatched or
  shadowed, test cells edited or deleted, reports forged on the grader's channel;
- the hidden tests and other submissions are out of reach (reading solutions/, the
  submissions folder, the network; writing into another student's folder);
- answers imported from dl4nlp, looked up by name, taken from a class or loaded from the
  package's file are flagged "reference" and score nothing;
- Colab downloads, inserted scratch and magic cells, a markdown cell turned into code,
  copied cells (duplicate grade ids), lost metadata and a nested folder grade correctly,
  with what was recovered in `detail`;
- an infinite loop (also one that ignores the alarm), a slow graded function, os._exit, a
  segfault, a memory bomb and a fork bomb cost that submission its points with a clear
  status, never the batch;
- every entry gets exactly one row: invalid JSON, not a notebook, empty file, wrong file
  name, extra notebook, a stray file;
- feedback pages are written, and hide the failing case when asked.

Then properties of the checks themselves, in process (fast): for every assignment the
reference passes on cases drawn from any seed, and no wrong implementation of a part
(perturbed outputs, or typical bugs) passes it.
"""

from __future__ import annotations

import base64
import copy
import csv
import json
import re
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dl4nlp import assessment
from dl4nlp.grader.course import load_course
from dl4nlp.grader.sandbox import Limits, Sandbox
from dl4nlp.grading import assignments

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = [a for a in assignments(ROOT) if (ROOT / "assignments" / a).is_dir()]
CELL_TIMEOUT = 8


# --- building submissions ---------------------------------------------------------------------


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


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
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    notebook.cells.insert(solution_index(notebook) + 1 if position is None else position, cell)
    return notebook


def wrong_answers(parts: list[str]) -> str:
    """Every graded function defined, returning its first argument: wrong for every part."""
    return "\n".join(f"def {name}(*args, **kwargs):\n    return args[0]\n" for name in parts)


def perturbed(source: str, name: str) -> str:
    return source + textwrap.dedent(f"""

        _correct_{name} = {name}
        def {name}(*args, **kwargs):
            def nudge(value):
                return tuple(nudge(v) for v in value) if isinstance(value, tuple) else value + 0.01
            return nudge(_correct_{name}(*args, **kwargs))
        """)


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


@dataclass
class Expect:
    score: float
    status: str
    says: tuple[str, ...] = ()  # substrings of `detail`


def build(root: Path, folder: Path, secret_target: Path, sandbox: Sandbox) -> dict[str, Expect]:
    """Write every kind of submission into `folder`; return what each must get.

    Without bubblewrap the grader cannot keep a submission from reading files, and as root
    it cannot limit processes: those submissions are left out there (a fork bomb would be real).
    """
    course = load_course(root, ASSIGNMENT_UNDER_TEST)
    name = course.notebook
    solution = read(root / "solutions" / course.assignment / name)
    released = read(root / "assignments" / course.assignment / name)
    parts, points, total = list(course.points), course.points, course.max_score
    second = parts[1] if len(parts) > 1 else parts[0]
    expect: dict[str, Expect] = {}

    def submit(student: str, notebook, expectation: Expect, file_name: str = name) -> None:
        (folder / student).mkdir(parents=True)
        path = folder / student / file_name
        if isinstance(notebook, bytes):
            path.write_bytes(notebook)
        elif isinstance(notebook, dict):
            path.write_text(json.dumps(notebook, indent=1))
        else:
            nbformat.write(notebook, path)
        expect[student] = expectation

    # honest round trips
    submit("honest", solution, Expect(total, "graded"))
    submit("untouched", released, Expect(0, "graded", tuple(f"test_{p} 0/" for p in parts)))

    # tampering earns nothing
    patches = textwrap.dedent("""\
        import builtins, numpy, numpy.testing, torch, torch.testing
        builtins.abs = lambda x: 0
        builtins.max = lambda *a, **k: 0
        builtins.all = lambda *a, **k: True
        builtins.isinstance = lambda *a: True
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        torch.testing.assert_close = lambda *a, **k: None
        torch.Tensor.__sub__ = lambda self, other: torch.zeros(()).expand(self.shape)
        numpy.testing.assert_allclose = lambda *a, **k: None
        numpy.allclose = lambda *a, **k: True
        """)
    submit("patch-builtins", insert(insert(released, wrong_answers(parts), len(released.cells)), patches, 0),
           Expect(0, "graded"))
    helpers = textwrap.dedent("""\
        import sys
        checks = sys.modules["dl4nlp.assessment"]
        checks.difference = lambda *a, **k: None
        checks.judge = lambda *a, **k: checks.Verdict(True)
        checks.call = lambda function, case: checks.Outcome(output=case.args[0])
        sys.modules["dl4nlp.checks"].check_shapes = lambda *a, **k: {}
        """)
    submit("patch-grader", insert(insert(released, wrong_answers(parts), len(released.cells)), helpers, 0),
           Expect(0, "graded"))
    shadowed = insert(released, wrong_answers(parts) + "\nclass torch:\n    allclose = staticmethod(lambda *a, **k: True)\n",
                      len(released.cells))
    submit("shadow-names", shadowed, Expect(0, "graded"))
    edited = insert(released, wrong_answers(parts), len(released.cells))
    for cell in edited.cells:
        if nbgrader(cell).get("grade") and not nbgrader(cell).get("solution"):
            cell.source = "pass  # all tests pass"
    submit("edit-tests", edited, Expect(0, "graded"))
    deleted = copy.deepcopy(solution)
    deleted.cells = [c for c in deleted.cells if not (nbgrader(c).get("grade") and not nbgrader(c).get("solution"))]
    submit("delete-tests-honest", deleted, Expect(total, "graded"))
    wrong_deleted = insert(released, wrong_answers(parts), len(released.cells))
    wrong_deleted.cells = [c for c in wrong_deleted.cells
                           if not (nbgrader(c).get("grade") and not nbgrader(c).get("solution"))]
    submit("delete-tests-wrong", wrong_deleted, Expect(0, "graded"))
    forge = textwrap.dedent("""\
        import os, json, base64, io, torch
        for fd in range(3, 64):
            try:
                buffer = io.BytesIO()
                torch.save([(torch.zeros(1), None)] * 8, buffer)
                for name in %r:
                    os.write(fd, (json.dumps({"event": "part", "phase": "end", "name": name, "is_reference": False,
                                              "calls": [], "outputs": base64.b64encode(buffer.getvalue()).decode()})
                                  + "\\n").encode())
                os.write(fd, b'{"event": "done"}\\n')
            except OSError:
                pass
        os._exit(0)
        """) % (parts,)
    submit("forge-report", insert(released, forge, len(released.cells)), Expect(0, "graded"))

    # out of reach: hidden tests, other submissions, the network
    steal = textwrap.dedent(f"""\
        import json, socket
        stolen = []
        for path in [{str(root / 'solutions' / course.assignment / name)!r}, {str(folder / 'honest' / name)!r}]:
            try:
                notebook = json.load(open(path))
            except OSError:
                continue
            for cell in notebook["cells"]:
                source = "".join(cell["source"])
                if cell.get("metadata", {{}}).get("nbgrader", {{}}).get("solution"):
                    stolen.append("\\n".join(l for l in source.splitlines() if "### " not in l))
        for code in stolen:
            exec(code)
        for target in [{str(folder / 'honest' / name)!r}, {str(secret_target)!r}]:
            try:
                open(target, "w").write("overwritten")
            except OSError:
                pass
        try:
            socket.create_connection(("pypi.org", 443), timeout=3)
            raise SystemExit("the network is reachable")
        except OSError:
            pass
        """)
    if sandbox.mode == "bubblewrap":
        submit("read-hidden", insert(released, steal, len(released.cells)), Expect(0, "graded"))

    # answers from the reference
    module = course.assessment.module
    submit("import-reference", insert(released, f"from {module} import {', '.join(parts)}", len(released.cells)),
           Expect(0, "reference", ("reference",)))
    lookup = "\n".join(f"def {p}(*args, **kwargs):\n    import importlib\n"
                       f"    return getattr(importlib.import_module({module!r}), {p!r})(*args, **kwargs)\n"
                       for p in parts)
    submit("call-reference", insert(released, lookup, len(released.cells)), Expect(0, "reference", ("reference",)))
    from_file = textwrap.dedent(f"""\
        import importlib, importlib.util
        _module = importlib.import_module({module!r})
        _spec = importlib.util.spec_from_file_location("copy_of_reference", _module.__file__)
        _copy = importlib.util.module_from_spec(_spec)
        import sys
        sys.modules["copy_of_reference"] = _copy
        _spec.loader.exec_module(_copy)
        """) + "\n".join(f"{p} = _copy.{p}" for p in parts)
    submit("load-reference-file", insert(released, from_file, len(released.cells)),
           Expect(0, "reference", ("reference",)))

    # robust to editing
    submit("colab", colab(solution), Expect(total, "graded"))
    scratch = insert(insert(insert(insert(solution, "x = 1 / 0  # a scratch cell with an error", 1),
                                   "!pip install nothing-at-all\n%matplotlib inline\nimport math\nprint(math.pi)"),
                            "%%bash\necho this cell is not Python", 3),
                     "import sys\nsys.exit('a student stopping the notebook')", len(solution.cells))
    submit("scratch-cells", scratch, Expect(total, "graded", ("not Python",)))
    turned = copy.deepcopy(solution)
    markdown = next(i for i, c in enumerate(turned.cells) if c.cell_type == "markdown")
    turned.cells[markdown] = nbformat.v4.new_code_cell(turned.cells[markdown].source)
    submit("markdown-to-code", turned, Expect(total, "graded"))
    copied = copy.deepcopy(solution)
    position = solution_index(copied, second)
    twin = copy.deepcopy(copied.cells[position])
    twin.source = perturbed(twin.source, second)
    copied.cells.insert(position + 2, twin)
    submit("duplicate-ids", copied, Expect(total - points[second], "graded", (f"test_{second} 0/{points[second]:g}",
                                                                             "the last one")))
    bare = copy.deepcopy(solution)
    for cell in bare.cells:
        cell.metadata = {}
    submit("no-metadata", bare, Expect(total, "graded", ("recovered",)))
    (folder / "nested" / "download").mkdir(parents=True)
    nbformat.write(solution, folder / "nested" / "download" / name)
    expect["nested"] = Expect(total, "graded", ("download/",))

    # contained
    submit("infinite-loop", insert(solution, "while True:\n    pass"), Expect(0, "timeout", ("timeout",)))
    ignore = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"
    submit("loop-ignores-alarm", insert(solution, ignore), Expect(0, "timeout", ("timeout",)))
    slow = copy.deepcopy(solution)
    slow.cells[solution_index(slow, second)].source += f"\n\ndef {second}(*args, **kwargs):\n    while True:\n        pass\n"
    submit("slow-function", slow, Expect(total - points[second], "timeout", (f"test_{second} 0/",)))
    submit("os-exit", insert(solution, "import os\nos._exit(3)"), Expect(0, "crashed", ("crashed",)))
    submit("segfault", insert(solution, "import ctypes\nctypes.string_at(0)"), Expect(0, "crashed", ("SIGSEGV",)))
    bomb = "chunks, size = [], 2**20\nwhile True:\n    chunks.append(bytearray(size))\n    size *= 2"
    submit("memory-bomb", insert(solution, bomb), Expect(0, "memory", ("memory",)))
    if sandbox.limits_processes:
        submit("fork-bomb", insert(solution, "import os\nwhile True:\n    os.fork()"),
               Expect(0, "processes", ("processes",)))

    # one row per entry, whatever it holds
    submit("invalid-json", b'{"cells": [', Expect(0, "invalid", ("not valid JSON",)))
    submit("not-a-notebook", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), Expect(0, "invalid", ("not a text file",)))
    submit("json-not-notebook", b"[1, 2, 3]", Expect(0, "invalid", ("not a Jupyter notebook",)))
    submit("empty-file", b"", Expect(0, "invalid", ("empty",)))
    submit("wrong-name", solution, Expect(0, "missing", (name,)), file_name="my_homework.ipynb")
    submit("extra-notebook", solution, Expect(total, "graded", ("ignored",)))
    nbformat.write(released, folder / "extra-notebook" / "scratch.ipynb")
    (folder / "stray.ipynb").write_text("{}")
    expect["stray.ipynb"] = Expect(0, "invalid", ("not a student folder",))
    return expect


ASSIGNMENT_UNDER_TEST = ASSIGNMENTS[0] if ASSIGNMENTS else "rnn"


def autograde(root: Path, submissions: Path, out: Path, *extra: str) -> tuple[dict[str, dict[str, str]], str]:
    result = subprocess.run(
        [sys.executable, "-m", "dl4nlp", "autograde", ASSIGNMENT_UNDER_TEST, str(submissions), "--out", str(out),
         "--jobs", "2", "--cell-timeout", str(CELL_TIMEOUT), "--timeout", "120", "--memory-mb", "2048", *extra],
        cwd=root, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["student", "assignment", "score", "max_score", "status", "detail"]
    return {row["student"]: row for row in rows}, result.stderr


def check_hostile_suite(root: Path, tmp_path: Path) -> None:
    import dl4nlp

    sandbox = Sandbox(Path(dl4nlp.__file__).parent, tmp_path, [], Limits(), "dl4nlp.rnn", [])  # what this machine offers
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    csv_path = tmp_path / "out" / "grades.csv"
    csv_path.parent.mkdir()
    expect = build(root, submissions, csv_path, sandbox)
    honest = submissions / "honest" / load_course(root, ASSIGNMENT_UNDER_TEST).notebook
    before = honest.read_bytes()
    grades, stderr = autograde(root, submissions, csv_path, "--feedback", str(tmp_path / "feedback"),
                               "--hide-hidden")
    assert ("warning" in stderr) == (sandbox.mode != "bubblewrap"), stderr
    assert sorted(grades) == sorted(expect), "exactly one row per entry"
    problems = []
    for student, expectation in expect.items():
        row = grades[student]
        got = (float(row["score"]), row["status"])
        if got != (expectation.score, expectation.status) or not all(s in row["detail"] for s in expectation.says):
            problems.append(f"{student}: expected {expectation.score:g} {expectation.status} {expectation.says}, "
                            f"got {got[0]:g} {got[1]}: {row['detail']}")
    assert not problems, "\n".join(problems)
    assert honest.read_bytes() == before, "a submission changed another student's notebook"
    pages = sorted(p.name for p in (tmp_path / "feedback").iterdir())
    assert len(pages) == len(expect)
    page = (tmp_path / "feedback" / "duplicate-ids.html").read_text()
    assert "0 / " in page and "hidden case" in page and not re.search(r"on case \d", page)  # --hide-hidden


@pytest.mark.slow
@pytest.mark.skipif(not ASSIGNMENTS, reason="no released assignment yet")
def test_hostile_and_broken_submissions(tmp_path):
    check_hostile_suite(ROOT, tmp_path)


# --- the checks themselves (in process) -------------------------------------------------------


def _nudged(function, where: int, size: float):
    def wrong(*args, **kwargs):
        def nudge(value):
            if isinstance(value, tuple):
                return tuple(nudge(v) for v in value)
            value = value.clone()
            value.view(-1)[where % value.numel()] += size
            return value
        return nudge(function(*args, **kwargs))
    return wrong


@pytest.mark.parametrize("assignment", ASSIGNMENTS or ["rnn"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.text(max_size=8))
def test_the_reference_passes_on_any_cases(assignment, seed):
    checks = assessment.load(assignment)
    for part in checks.parts:
        cases = part.cases(assessment.generator(seed, part.name))
        reference = checks.reference(part.name)
        expected = [assessment.plain(reference(*case.args)) for case in cases]
        outcomes = [assessment.call(reference, case) for case in cases]
        assert assessment.judge(part, cases, expected, outcomes).passed


@pytest.mark.parametrize("assignment", ASSIGNMENTS or ["rnn"])
@settings(max_examples=25, deadline=None)
@given(seed=st.text(max_size=8), where=st.integers(0, 10**6), size=st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3),
       data=st.data())
def test_no_wrong_implementation_passes(assignment, seed, where, size, data):
    """A part's output wrong in a single number, by any amount that matters, scores zero for that part."""
    checks = assessment.load(assignment)
    part = data.draw(st.sampled_from(checks.parts))
    cases = part.cases(assessment.generator(seed, part.name))
    reference = checks.reference(part.name)
    expected = [assessment.plain(reference(*case.args)) for case in cases]
    wrong = _nudged(reference, where, size)
    case_index = data.draw(st.integers(0, len(cases) - 1))
    outcomes = [assessment.call(wrong if i == case_index else reference, case) for i, case in enumerate(cases)]
    assert not assessment.judge(part, cases, expected, outcomes).passed


def test_the_sandbox_choice_is_explained(tmp_path):
    sandbox = Sandbox(tmp_path, tmp_path, [], Limits(), "dl4nlp.rnn", [], requested="none")
    assert sandbox.mode == "subprocess" and "not contained" in sandbox.warning


def test_a_report_survives_anything_in_its_outputs():
    from dl4nlp.grader.batch import _load_outcomes

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for payload in (Evil(), [torch.nn.Parameter(torch.ones(1))], "text"):
        buffer = __import__("io").BytesIO()
        torch.save(payload, buffer)
        with pytest.raises(ValueError):
            _load_outcomes(base64.b64encode(buffer.getvalue()).decode(), 1)
    with pytest.raises(ValueError):
        _load_outcomes("not base64 at all!", 1)


# rnn: typical bugs, each of which the cases must catch whatever the seed
def _rnn_bugs() -> dict[str, object]:
    from dl4nlp import rnn

    def rnn_no_bias_hh(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
        return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T)

    def lstm_gates_ifog(x, state, weight_ih, weight_hh, bias_ih, bias_hh):
        h, c = state
        i, f, o, g = (x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def gru_reset_outside(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
        x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
        h_r, h_z, _ = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)
        W_hn, b_hn = weight_hh.chunk(3)[2], bias_hh.chunk(3)[2]
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + (r * h) @ W_hn.T + b_hn)
        return (1 - z) * n + z * h

    def bidirectional_flip_everything(cell, x, state_forward, state_backward, weights_forward, weights_backward,
                                      lengths=None):
        forward, final_forward = rnn.unroll(cell, x, state_forward, weights_forward, lengths)
        backward, final_backward = rnn.unroll(cell, x.flip(1), state_backward, weights_backward, lengths)
        return torch.cat([forward, backward.flip(1)], dim=-1), final_forward, final_backward

    def bidirectional_zero_backward_state(cell, x, state_forward, state_backward, weights_forward,
                                          weights_backward, lengths=None):
        zeros = tuple(torch.zeros_like(s) for s in state_backward) if isinstance(state_backward, tuple) \
            else torch.zeros_like(state_backward)
        return rnn.bidirectional_layer(cell, x, state_forward, zeros, weights_forward, weights_backward, lengths)

    def classify_last_step(tokens, lengths, embedding, encoder, head):
        output, _ = encoder(embedding(tokens), lengths=lengths)
        return head(output[:, -1])

    def classify_first_layer(tokens, lengths, embedding, encoder, head):
        _, final = encoder(embedding(tokens), lengths=lengths)
        h_n = final[0] if isinstance(final, tuple) else final
        directions = 2 if encoder.bidirectional else 1
        return head(torch.cat(list(h_n[:directions]), dim=-1))

    return {"rnn_cell": [rnn_no_bias_hh], "lstm_cell": [lstm_gates_ifog], "gru_cell": [gru_reset_outside],
            "bidirectional_layer": [bidirectional_flip_everything, bidirectional_zero_backward_state],
            "classify": [classify_last_step, classify_first_layer]}


@pytest.mark.skipif("rnn" not in assignments(ROOT), reason="no rnn assignment")
@settings(max_examples=5, deadline=None)
@given(seed=st.text(max_size=8))
def test_typical_rnn_bugs_score_zero(seed):
    checks = assessment.load("rnn")
    for name, bugs in _rnn_bugs().items():
        part = checks.part(name)
        cases = part.cases(assessment.generator(seed, name))
        expected = [assessment.plain(checks.reference(name)(*case.args)) for case in cases]
        for bug in bugs:
            verdict = assessment.judge(part, cases, expected, [assessment.call(bug, case) for case in cases])
            assert not verdict.passed, f"{bug.__name__} passes the checks of {name}"


# --- reading submissions and the CSV (fast, no sandbox) ---------------------------------------


@pytest.mark.parametrize("assignment", assignments(ROOT))
def test_every_assignment_has_checks_that_agree_with_its_notebook(assignment):
    course = load_course(ROOT, assignment)  # raises if a test cell has no check or the points differ
    assert course.points and course.max_score == sum(course.assessment.points.values())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_graded_cells_are_recovered_without_metadata(assignment):
    from dl4nlp.grader.submission import read_submission

    course = load_course(ROOT, assignment)
    solution = read(ROOT / "solutions" / assignment / course.notebook)
    data = colab(solution)
    for cell in data["cells"]:
        cell["metadata"] = {}
    submission = read_submission(json.dumps(data).encode(), course.notebook, course)
    defined = {name for cell in submission.runnable for name in cell.defines}
    assert defined == set(course.points)
    assert all(f"recovered {name}" in " ".join(submission.notes) for name in course.points)
    assert not [cell for cell in submission.runnable if "BEGIN HIDDEN TESTS" in cell.source]  # tests never run


def test_answers_taken_from_the_reference_are_found_in_the_source():
    from dl4nlp.grader.course import Course
    from dl4nlp.grader.submission import CodeCell, Submission, reference_uses

    course = Course(ROOT, "rnn", "rnn.ipynb", assessment.load("rnn"), {"lstm_cell": 3, "gru_cell": 3,
                                                                       "rnn_cell": 2}, {}, ())
    sources = {
        "from dl4nlp.rnn import lstm_cell as mine": {"lstm_cell"},
        "import dl4nlp.rnn as R\ndef gru_cell(*a):\n    return R.gru_cell(*a)": {"gru_cell"},
        "from dl4nlp import rnn\nf = getattr(rnn, 'rnn_cell')": {"rnn_cell"},
        "import dl4nlp\nx = dl4nlp.rnn.lstm_cell": {"lstm_cell"},
        "from dl4nlp.rnn import LSTM, unroll, reverse_padded\nfrom dl4nlp.checks import check_shapes": set(),
        "def lstm_cell(x, state, *weights):\n    return state": set(),
    }
    for source, flagged in sources.items():
        submission = Submission([CodeCell(1, source, "other")])
        assert set(reference_uses(submission, course)) == flagged, source


def test_the_csv_holds_one_plain_row_per_report(tmp_path):
    from dl4nlp.grading import GradeRow, write_csv

    rows = [GradeRow("=HYPERLINK(\"x\")", "rnn", 1.0, 13.0, "graded", "line\nbreak, \"quotes\"\x00 and\ttabs"),
            GradeRow("bob", "rnn", 0.0, 13.0, "invalid", "-1 points?")]
    path = tmp_path / "grades.csv"
    write_csv(rows, path)
    with path.open() as handle:
        read_back = list(csv.DictReader(handle))
    assert [r["student"] for r in read_back] == ["'=HYPERLINK(\"x\")", "bob"]
    assert read_back[0]["detail"] == "line break, \"quotes\"  and tabs" and read_back[1]["detail"] == "'-1 points?"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv"]  # no temporary file left behind


# --- the student self-check -------------------------------------------------------------------------


def _namespace(notebook: nbformat.NotebookNode) -> dict:
    """Run a notebook's code up to its last solution cell, test cells left out: what a student has defined."""
    namespace: dict = {}
    last = max(i for i, c in enumerate(notebook.cells) if nbgrader(c).get("solution"))
    for cell in notebook.cells[:last + 1]:
        if cell.cell_type == "code" and not nbgrader(cell).get("grade"):
            exec(compile(cell.source, "<cell>", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_selfcheck_gives_points_for_what_works(assignment):
    from dl4nlp.selfcheck import run_selfcheck

    course = load_course(ROOT, assignment)
    instructor = run_selfcheck(assignment, _namespace(read(ROOT / "solutions" / assignment / course.notebook)))
    student = run_selfcheck(assignment, _namespace(read(ROOT / "assignments" / assignment / course.notebook)))
    assert instructor.points == course.max_score and "passed" in repr(instructor)
    assert student.points == 0 and "not implemented" in student._repr_html_()


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_student_notebook_ends_with_the_selfcheck(assignment):
    name = load_course(ROOT, assignment).notebook
    code = [c.source for c in read(ROOT / "assignments" / assignment / name).cells if c.cell_type == "code"]
    assert f'run_selfcheck("{assignment}", globals())' in code[-1], "the last code cell should run the self-check"


def test_the_selfcheck_needs_no_instructor_tools():
    script = textwrap.dedent("""\
        import sys
        for name in ("nbgrader", "nbformat", "nbclient", "jupyter_client"):
            sys.modules[name] = None  # any import of these fails
        from dl4nlp import rnn
        from dl4nlp.selfcheck import run_selfcheck
        mine = {name: (lambda f: lambda *a: f(*a))(getattr(rnn, name))
                for name in ("rnn_cell", "lstm_cell", "gru_cell", "bidirectional_layer", "classify")}
        report = run_selfcheck("rnn", mine)
        print(report)
        assert report.points == report.max_points
        assert run_selfcheck("rnn", {"rnn_cell": rnn.rnn_cell}).parts[0].points == 0  # imported: no points
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "13/13 points so far" in result.stdout
