"""Grading that survives a real class: hostile, broken and Colab-edited submissions.

Each scenario below is one kind of submission, built from the real notebooks of an assignment
(the instructor notebook for correct code, the released one for stubs), with the score,
status and words of `detail` it must get. All scenarios are graded in ONE run of the real
`dl4nlp autograde` command (two jobs), and each is its own test:

- tampering earns nothing: builtins, torch, numpy and the checking helpers monkeypatched or
  shadowed, test cells edited or deleted, reports forged on the grader's channel;
- the instructor notebook and other submissions are out of reach (reading solutions/, the
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
reference passes on cases drawn from any seed, no wrong implementation of a part (perturbed
outputs, or typical bugs) passes it, and each typical bug is named.
"""

from __future__ import annotations

import base64
import copy
import csv
import inspect
import json
import linecache
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from submissions import (append, autograde, colab, insert, is_test_cell, nbgrader, perturbed, read, solution_index,
                         with_source, write_submission, wrong_answers)

from dl4nlp import exercises
from dl4nlp.instructor.autograde.rubric import Rubric, load_rubric
from dl4nlp.instructor.autograde.sandbox import Limits, Sandbox
from dl4nlp.instructor.release import assignments

pytestmark = pytest.mark.instructor  # needs the instructor tools: not run by the Colab check

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = [a for a in assignments(ROOT) if (ROOT / "assignments" / a).is_dir()]
# The hostile scenarios below are written against the rnn notebook (its parts, its one-liners); every
# assignment gets the generic round trip, bugs and one-liners in tests/test_assignments.py.
ASSIGNMENT_UNDER_TEST = "rnn"
CELL_TIMEOUT = 8


# --- the hostile suite: one scenario, one test -------------------------------------------------


@dataclass
class Expect:
    score: float
    status: str
    says: tuple[str, ...] = ()  # substrings of `detail`


@dataclass
class Kit:
    """What a scenario builds from: the assignment's notebooks and numbers, and where things are."""

    rubric: Rubric
    solution: nbformat.NotebookNode  # the instructor notebook: correct code
    released: nbformat.NotebookNode  # the student notebook: stubs
    folder: Path  # the submissions folder
    secret_target: Path  # a file outside the submissions that no submission may write

    @property
    def name(self) -> str:
        return self.rubric.notebook

    @property
    def parts(self) -> list[str]:
        return list(self.rubric.points)

    @property
    def total(self) -> float:
        return self.rubric.max_score

    @property
    def second(self) -> str:
        return self.parts[1] if len(self.parts) > 1 else self.parts[0]

    def submit(self, student: str, notebook, file_name: str | None = None) -> Path:
        return write_submission(self.folder, student, notebook, file_name or self.name)


Scenario = Callable[[Kit, str], Expect]
SCENARIOS: dict[str, tuple[Scenario, str | None]] = {}  # id -> (builder, what the machine must offer)


def scenario(needs: str | None = None) -> Callable[[Scenario], Scenario]:
    """Register a scenario under its function's name (dashes for underscores).

    The builder writes one student's folder (named by the id) with `kit.submit` and returns what
    it must get. `needs`: "bubblewrap" (reading files is only stopped there) or "process-limit"
    (a fork bomb is only contained where the process limit holds).
    """
    def register(build: Scenario) -> Scenario:
        SCENARIOS[build.__name__.replace("_", "-")] = (build, needs)
        return build
    return register


# honest round trips


@scenario()
def honest(kit: Kit, student: str) -> Expect:
    kit.submit(student, kit.solution)
    return Expect(kit.total, "graded")


@scenario()
def untouched(kit: Kit, student: str) -> Expect:
    kit.submit(student, kit.released)
    return Expect(0, "graded", tuple(f"test_{p} 0/" for p in kit.parts))


# tampering earns nothing


@scenario()
def patch_builtins(kit: Kit, student: str) -> Expect:
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
    kit.submit(student, insert(append(kit.released, wrong_answers(kit.parts)), patches, 0))
    return Expect(0, "graded")


@scenario()
def patch_grader(kit: Kit, student: str) -> Expect:
    helpers = textwrap.dedent("""\
        import sys
        checks = sys.modules["dl4nlp.exercises"]
        checks.difference = lambda *a, **k: None
        checks.mismatch = lambda *a, **k: None
        checks.judge = lambda *a, **k: checks.Verdict(True)
        checks.call = lambda function, case: checks.Outcome(output=case.args[0])
        """)
    kit.submit(student, insert(append(kit.released, wrong_answers(kit.parts)), helpers, 0))
    return Expect(0, "graded")


@scenario()
def shadow_names(kit: Kit, student: str) -> Expect:
    kit.submit(student, append(kit.released, wrong_answers(kit.parts)
                               + "\nclass torch:\n    allclose = staticmethod(lambda *a, **k: True)\n"))
    return Expect(0, "graded")


@scenario()
def edit_tests(kit: Kit, student: str) -> Expect:
    edited = append(kit.released, wrong_answers(kit.parts))
    for cell in edited.cells:
        if is_test_cell(cell):
            cell.source = "pass  # all tests pass"
    kit.submit(student, edited)
    return Expect(0, "graded")


@scenario()
def delete_tests_honest(kit: Kit, student: str) -> Expect:
    deleted = copy.deepcopy(kit.solution)
    deleted.cells = [c for c in deleted.cells if not is_test_cell(c)]
    kit.submit(student, deleted)
    return Expect(kit.total, "graded")


@scenario()
def delete_tests_wrong(kit: Kit, student: str) -> Expect:
    deleted = append(kit.released, wrong_answers(kit.parts))
    deleted.cells = [c for c in deleted.cells if not is_test_cell(c)]
    kit.submit(student, deleted)
    return Expect(0, "graded")


@scenario()
def forge_report(kit: Kit, student: str) -> Expect:
    forge = textwrap.dedent("""\
        import os, json, base64, io, torch
        for fd in range(3, 64):
            try:
                buffer = io.BytesIO()
                torch.save([(torch.zeros(1), (), None)] * 8, buffer)
                for name in %r:
                    os.write(fd, (json.dumps({"event": "part", "phase": "end", "name": name, "is_reference": False,
                                              "calls": [], "outputs": base64.b64encode(buffer.getvalue()).decode()})
                                  + "\\n").encode())
                os.write(fd, b'{"event": "done"}\\n')
            except OSError:
                pass
        os._exit(0)
        """) % (kit.parts,)
    kit.submit(student, append(kit.released, forge))
    return Expect(0, "graded")


# out of reach: the instructor notebook, other submissions, the network


@scenario(needs="bubblewrap")
def read_instructor_notebook(kit: Kit, student: str) -> Expect:
    steal = textwrap.dedent(f"""\
        import json, socket
        stolen = []
        for path in [{str(ROOT / 'solutions' / kit.rubric.assignment / kit.name)!r},
                     {str(kit.folder / 'honest' / kit.name)!r}]:
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
        for target in [{str(kit.folder / 'honest' / kit.name)!r}, {str(kit.secret_target)!r}]:
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
    kit.submit(student, append(kit.released, steal))
    return Expect(0, "graded")


# answers from the reference


def _imports(kit: Kit) -> str:
    return "\n".join(f"from {part.module} import {part.name}" for part in kit.rubric.exercises.parts)


@scenario()
def import_reference(kit: Kit, student: str) -> Expect:
    kit.submit(student, append(kit.released, _imports(kit)))
    return Expect(0, "reference", ("reference",))


@scenario()
def call_reference(kit: Kit, student: str) -> Expect:
    lookup = "\n".join(f"def {p.name}(*args, **kwargs):\n    import importlib\n"
                       f"    return getattr(importlib.import_module({p.module!r}), {p.name!r})(*args, **kwargs)\n"
                       for p in kit.rubric.exercises.parts)
    kit.submit(student, append(kit.released, lookup))
    return Expect(0, "reference", ("reference",))


@scenario()
def load_reference_file(kit: Kit, student: str) -> Expect:
    from_file = "import importlib, importlib.util, sys\n" + "".join(textwrap.dedent(f"""\
        _module = importlib.import_module({p.module!r})
        _spec = importlib.util.spec_from_file_location("copy_of_{p.name}", _module.__file__)
        _copy = importlib.util.module_from_spec(_spec)
        sys.modules["copy_of_{p.name}"] = _copy
        _spec.loader.exec_module(_copy)
        {p.name} = _copy.{p.name}
        """) for p in kit.rubric.exercises.parts)
    kit.submit(student, append(kit.released, from_file))
    return Expect(0, "reference", ("reference",))


# library calls that do a part's work, and what merely looks like the reference


def _answer(kit: Kit, part: str, source: str) -> nbformat.NotebookNode:
    """The instructor notebook with the solution cell of `part` replaced by `source`."""
    return with_source(kit.solution, part, source)


def _cell(kit: Kit, part: str) -> int:
    """The number of the solution cell of `part`, counting every cell from 1 (as `detail` does)."""
    return solution_index(kit.solution, part) + 1


def _loses(kit: Kit, part: str, status: str, *says: str) -> Expect:
    return Expect(kit.total - kit.rubric.points[part], status, (f"test_{part} 0/", *says))


ONE_LINERS = {"lstm_cell": "torch.lstm_cell(x, state, *weights)", "gru_cell": "torch.gru_cell(x, state, *weights)",
              "rnn_cell": "torch.rnn_tanh_cell(x, state, *weights)"}


def _one_liner(part: str) -> Scenario:
    def build(kit: Kit, student: str) -> Expect:
        source = f"def {part}(x, state, *weights):\n    return {ONE_LINERS[part]}\n"
        kit.submit(student, _answer(kit, part, source))
        call = ONE_LINERS[part].split("(")[0]
        return _loses(kit, part, "forbidden", f"uses {call} in {part} (cell {_cell(kit, part)})")
    build.__name__ = f"one_liner_{part.removesuffix('_cell')}"
    return build


for _part in ONE_LINERS:
    scenario()(_one_liner(_part))


@scenario()
def one_liners_in_disguise(kit: Kit, student: str) -> Expect:
    notebook = _answer(kit, "lstm_cell", """\
        from torch import lstm_cell as step

        def lstm_cell(x, state, *weights):
            return step(x, state, *weights)
        """)
    notebook.cells[solution_index(notebook, "gru_cell")].source = (
        "def gru_cell(x, h, *weights):\n    return getattr(torch, 'gru_cell')(x, h, *weights)\n")
    notebook.cells[solution_index(notebook, "rnn_cell")].source = (
        "import importlib\n\ndef rnn_cell(x, h, *weights):\n"
        "    return importlib.import_module('torch._VF').rnn_tanh_cell(x, h, *weights)\n")
    kit.submit(student, notebook)
    lost = sum(kit.rubric.points[part] for part in ONE_LINERS)
    return Expect(kit.total - lost, "forbidden", ("torch.lstm_cell in lstm_cell", "torch.gru_cell in gru_cell",
                                                  "torch._VF.rnn_tanh_cell in rnn_cell"))


@scenario()
def lstm_cell_module(kit: Kit, student: str) -> Expect:
    """nn.LSTMCell under a name built at run time: only the watch in the sandbox can see it."""
    kit.submit(student, _answer(kit, "lstm_cell", """\
        def lstm_cell(x, state, *weights):
            cell = getattr(nn, "LSTM" + "Cell")(x.shape[1], state[0].shape[1])
            names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            return torch.func.functional_call(cell, dict(zip(names, weights)), (x, state))
        """))
    cell = _cell(kit, "lstm_cell")
    return _loses(kit, "lstm_cell", "forbidden", f"uses torch.nn.LSTMCell in lstm_cell (cell {cell})")


NUMPY_GRU_CELL = """\
    def gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
        import numpy as np
        x, h, w_ih, w_hh, b_ih, b_hh = (t.detach().numpy() for t in (x, h, weight_ih, weight_hh, bias_ih, bias_hh))
        x_r, x_z, x_n = np.split(x @ w_ih.T + b_ih, 3, axis=1)
        h_r, h_z, h_n = np.split(h @ w_hh.T + b_hh, 3, axis=1)
        r, z = 1 / (1 + np.exp(-(x_r + h_r))), 1 / (1 + np.exp(-(x_z + h_z)))
        n = np.tanh(x_n + r * h_n)
        return torch.from_numpy((1 - z) * n + z * h)
    """


@scenario()
def numpy_cell(kit: Kit, student: str) -> Expect:
    kit.submit(student, _answer(kit, "gru_cell", NUMPY_GRU_CELL))
    return _loses(kit, "gru_cell", "graded", "gradients cannot flow")


@scenario()
def pasted_figure_call(kit: Kit, student: str) -> Expect:
    figure = textwrap.dedent("""\
        from dl4nlp.figures import rnn as figs
        figs.lstm_cell_figure()
        import dl4nlp.figures.rnn
        dl4nlp.figures.rnn.lstm_cell_figure()
        """)
    kit.submit(student, insert(kit.solution, figure, solution_index(kit.solution, "lstm_cell") + 2))
    return Expect(kit.total, "graded")


@scenario()
def scratch_comparison(kit: Kit, student: str) -> Expect:
    compare = textwrap.dedent("""\
        from dl4nlp import rnn as course
        x, state = torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4))
        weights = (torch.randn(16, 3), torch.randn(16, 4), torch.randn(16), torch.randn(16))
        print((lstm_cell(x, state, *weights)[0] - course.lstm_cell(x, state, *weights)[0]).abs().max())
        """)
    kit.submit(student, insert(kit.solution, compare, solution_index(kit.solution, "lstm_cell") + 2))
    return Expect(kit.total, "graded")


@scenario()
def colab_copy_name(kit: Kit, student: str) -> Expect:
    kit.submit(student, colab(kit.solution), f"Copy of {kit.name}")
    return Expect(kit.total, "graded", (f"graded Copy of {kit.name}",))


@scenario()
def numbered_download_name(kit: Kit, student: str) -> Expect:
    name = f"{Path(kit.name).stem} (1){Path(kit.name).suffix}"
    kit.submit(student, kit.solution, name)
    return Expect(kit.total, "graded", (f"graded {name}",))


@scenario()
def two_download_names(kit: Kit, student: str) -> Expect:
    names = [f"Copy of {kit.name}", f"{Path(kit.name).stem} (1){Path(kit.name).suffix}"]
    for name in names:
        kit.submit(student, kit.solution, name)
    return Expect(0, "invalid", tuple(names))


# the self-check and the grader agree: the same answers to lstm_cell, through both (see the test below)


AGREEMENT = {  # answer -> (source of the lstm_cell cell, verdict, typical bug)
    "honest": (None, "passed", ""),
    "imported": ("from dl4nlp.rnn import lstm_cell\n", "reference", ""),
    "class-attribute": ("from dl4nlp.rnn import LSTM\n\ndef lstm_cell(*args):\n    return LSTM.reference_cell(*args)\n",
                        "reference", ""),
    "one-liner": ("def lstm_cell(x, state, *weights):\n    return torch.lstm_cell(x, state, *weights)\n",
                  "forbidden", ""),
    "aliased": ("import torch as t\n\ndef lstm_cell(x, state, *weights):\n    return t.lstm_cell(x, state, *weights)\n",
                "forbidden", ""),
    "getattr": ("def lstm_cell(x, state, *weights):\n    return getattr(torch, 'lstm_cell')(x, state, *weights)\n",
                "forbidden", ""),
    "built-name": ("def lstm_cell(x, state, *weights):\n"
                   "    return getattr(torch, 'lstm' + '_cell')(x, state, *weights)\n",
                   "forbidden", ""),
    "private": ("import importlib\n\ndef lstm_cell(x, state, *weights):\n"
                "    return importlib.import_module('torch._VF').lstm_cell(x, state, *weights)\n", "forbidden", ""),
    "numpy": ("def lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh):\n    import numpy as np\n"
              "    h, c = (s.detach().numpy() for s in state)\n"
              "    gates = x.detach().numpy() @ weight_ih.detach().numpy().T + bias_ih.detach().numpy() \\\n"
              "        + h @ weight_hh.detach().numpy().T + bias_hh.detach().numpy()\n"
              "    i, f, g, o = np.split(gates, 4, axis=1)\n    sigmoid = lambda v: 1 / (1 + np.exp(-v))\n"
              "    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)\n"
              "    return torch.from_numpy(sigmoid(o) * np.tanh(c)), torch.from_numpy(c)\n", "wrong", ""),
    "detached": ("def lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh):\n    h, c = state\n"
                 "    gates = x @ weight_ih.T + bias_ih + h.detach() @ weight_hh.T + bias_hh\n"
                 "    i, f, g, o = gates.chunk(4, dim=1)\n"
                 "    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)\n"
                 "    return torch.sigmoid(o) * torch.tanh(c), c\n", "wrong", ""),
    "typical-bug": (None, "wrong", "gate order i, f, o, g instead of PyTorch's i, f, g, o"),
}


def _agreement_notebook(solution: nbformat.NotebookNode, answer: str) -> nbformat.NotebookNode:
    source, _, bug = AGREEMENT[answer]
    notebook = copy.deepcopy(solution)
    if bug:
        function = exercises.load("rnn").part("lstm_cell").bugs[bug]
        source = inspect.getsource(function).replace(f"def {function.__name__}(", "def lstm_cell(")
    if source is not None:
        notebook.cells[solution_index(notebook, "lstm_cell")].source = source
    return notebook


def _agreement(answer: str) -> Scenario:
    def build(kit: Kit, student: str) -> Expect:
        kit.submit(student, _agreement_notebook(kit.solution, answer))
        verdict = AGREEMENT[answer][1]
        if verdict == "passed":
            return Expect(kit.total, "graded")
        return _loses(kit, "lstm_cell", "graded" if verdict == "wrong" else verdict)
    build.__name__ = f"agree_{answer.replace('-', '_')}"
    return build


for _answer_name in AGREEMENT:
    scenario()(_agreement(_answer_name))


# robust to editing


@scenario()
def colab_download(kit: Kit, student: str) -> Expect:
    kit.submit(student, colab(kit.solution))
    return Expect(kit.total, "graded")


@scenario()
def scratch_cells(kit: Kit, student: str) -> Expect:
    scratch = insert(insert(insert(insert(kit.solution, "x = 1 / 0  # a scratch cell with an error", 1),
                                   "!pip install nothing-at-all\n%matplotlib inline\nimport math\nprint(math.pi)"),
                            "%%bash\necho this cell is not Python", 3),
                     "import sys\nsys.exit('a student stopping the notebook')", len(kit.solution.cells))
    kit.submit(student, scratch)
    return Expect(kit.total, "graded", ("not Python",))


@scenario()
def markdown_to_code(kit: Kit, student: str) -> Expect:
    turned = copy.deepcopy(kit.solution)
    markdown = next(i for i, c in enumerate(turned.cells) if c.cell_type == "markdown")
    turned.cells[markdown] = nbformat.v4.new_code_cell(turned.cells[markdown].source)
    kit.submit(student, turned)
    return Expect(kit.total, "graded")


@scenario()
def duplicate_ids(kit: Kit, student: str) -> Expect:
    copied = copy.deepcopy(kit.solution)
    position = solution_index(copied, kit.second)
    twin = copy.deepcopy(copied.cells[position])
    twin.source = perturbed(twin.source, kit.second)
    copied.cells.insert(position + 2, twin)
    kit.submit(student, copied)
    points = kit.rubric.points[kit.second]
    return Expect(kit.total - points, "graded", (f"test_{kit.second} 0/{points:g}", "the last one"))


@scenario()
def no_metadata(kit: Kit, student: str) -> Expect:
    bare = copy.deepcopy(kit.solution)
    for cell in bare.cells:
        cell.metadata = {}
    kit.submit(student, bare)
    return Expect(kit.total, "graded", ("recovered",))


@scenario()
def nested(kit: Kit, student: str) -> Expect:
    kit.submit(student, kit.solution, f"download/{kit.name}")
    return Expect(kit.total, "graded", ("download/",))


# contained


def _defined_before(kit: Kit, position: int) -> float:
    """Points of the parts whose solution cells come before `position` in the instructor notebook."""
    return sum(points for part, points in kit.rubric.points.items() if solution_index(kit.solution, part) < position)


@scenario()
def infinite_loop(kit: Kit, student: str) -> Expect:
    position = solution_index(kit.solution) + 1
    kit.submit(student, insert(kit.solution, "while True:\n    pass", position))
    return Expect(_defined_before(kit, position), "timeout", ("timeout", f"cell {position + 1}", "stopped the run"))


@scenario()
def loop_ignores_alarm(kit: Kit, student: str) -> Expect:
    ignore = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"
    position = solution_index(kit.solution) + 1
    kit.submit(student, insert(kit.solution, ignore, position))
    return Expect(_defined_before(kit, position), "timeout", ("timeout", f"cell {position + 1}"))


@scenario()
def slow_function(kit: Kit, student: str) -> Expect:
    slow = copy.deepcopy(kit.solution)
    slow.cells[solution_index(slow, kit.second)].source += (
        f"\n\ndef {kit.second}(*args, **kwargs):\n    while True:\n        pass\n")
    kit.submit(student, slow)
    return Expect(kit.total - kit.rubric.points[kit.second], "timeout", (f"test_{kit.second} 0/",))


@scenario()
def os_exit(kit: Kit, student: str) -> Expect:
    kit.submit(student, insert(kit.solution, "import os\nos._exit(3)"))
    return Expect(0, "crashed", ("crashed",))


@scenario()
def segfault(kit: Kit, student: str) -> Expect:
    kit.submit(student, insert(kit.solution, "import ctypes\nctypes.string_at(0)"))
    return Expect(0, "crashed", ("SIGSEGV",))


@scenario()
def memory_bomb(kit: Kit, student: str) -> Expect:
    bomb = "chunks, size = [], 2**20\nwhile True:\n    chunks.append(bytearray(size))\n    size *= 2"
    kit.submit(student, insert(kit.solution, bomb))
    return Expect(0, "memory", ("memory",))


@scenario(needs="process-limit")
def fork_bomb(kit: Kit, student: str) -> Expect:
    kit.submit(student, insert(kit.solution, "import os\nwhile True:\n    os.fork()"))
    return Expect(0, "processes", ("processes",))


# one notebook never costs a classmate a grade


@scenario()
def deep_directory_tree(kit: Kit, student: str) -> Expect:
    deep = "import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')"
    kit.submit(student, insert(kit.solution, deep))
    return Expect(kit.total, "graded")  # and every submission graded after it in the same worker too


DAEMON = textwrap.dedent("""\
    import os, signal, time
    main, zygote = os.getpid(), os.getppid()
    def parent_and_state(pid):
        try:
            state, parent = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()[:2]
            return int(parent), state
        except (OSError, ValueError):
            return None, "gone"
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:  # detached: its own session, and soon an orphan
            while parent_and_state(main)[1] not in ("Z", "gone"):
                time.sleep(0.05)
            time.sleep(1)  # the submission is over: now kill the later submissions of this zygote
            for _ in range(300):  # never kill(-1): only what this grading's zygote started
                for entry in os.listdir("/proc"):
                    if entry.isdigit() and int(entry) != os.getpid() and parent_and_state(entry)[0] == zygote:
                        try:
                            os.kill(int(entry), signal.SIGKILL)
                        except OSError:
                            pass
                time.sleep(0.1)
        os._exit(0)
    os.wait()
    """)


@scenario()
def detached_process(kit: Kit, student: str) -> Expect:
    """A daemon (double fork, setsid) that kills later submissions' processes, were it left running."""
    kit.submit(student, insert(kit.solution, DAEMON))
    return Expect(kit.total, "graded")


@scenario(needs="bubblewrap")
def shared_loopback(kit: Kit, student: str) -> Expect:
    """Submissions graded at the same time must not share a loopback (a channel between them)."""
    probe = textwrap.dedent("""\
        import os, socket
        if os.geteuid() != 0:  # graded as root, each submission has a user id and a network of its own
            server, client = socket.socket(), socket.socket()
            client.settimeout(3)
            try:
                server.bind(("127.0.0.1", 0))
                server.listen()
                client.connect(server.getsockname())  # through the sandbox's loopback, if it shares that
                shared = True
            except OSError:
                shared = False
            if shared:  # then it scores nothing
        """) + textwrap.indent(wrong_answers(kit.parts), " " * 8)
    kit.submit(student, append(kit.solution, probe))
    return Expect(kit.total, "graded")


@scenario()
def leak_cases(kit: Kit, student: str) -> Expect:
    """Every graded function sends the grader's cases back as text: a forged result and an exception."""
    leak = "import json, os\n" + "\n".join(textwrap.dedent(f"""\
        def {name}(*args, **kwargs):
            text = "LEAKED " + repr(args)[:5000]
            for fd in range(3, 64):
                try:
                    os.write(fd, (json.dumps({{"event": "part", "phase": "end", "name": {name!r},
                                               "problem": text}}) + "\\n").encode())
                except OSError:
                    pass
            raise ValueError(text)
        """) for name in kit.parts)
    kit.submit(student, append(kit.released, leak))
    return Expect(0, "graded")


@scenario()
def sparse_notebook(kit: Kit, student: str) -> Expect:
    path = kit.submit(student, kit.solution)
    os.truncate(path, 4 * 2**30)  # 4 GB on paper, nothing on disk
    return Expect(0, "invalid", ("larger than",))


@scenario()
def huge_cell(kit: Kit, student: str) -> Expect:
    data = colab(kit.solution)
    data["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                             "source": "x = 1\n" * 5_500_000})  # 33 MB in one cell
    kit.submit(student, json.dumps(data).encode())
    return Expect(0, "invalid", ("characters",))


@scenario()
def jupyter_syntax(kit: Kit, student: str) -> Expect:
    """What runs in Jupyter runs here: a scripted graded function, %%writefile, `x = !ls`."""
    first = kit.parts[0]
    signature = ", ".join(f"{a}: torch.Tensor" for a in ("x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    scripted = textwrap.dedent(f"""\
        files = !ls
        import torch
        import helper
        assert helper.ONE == 1 and files == []

        @torch.jit.script
        def {first}({signature}) -> torch.Tensor:
            return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
        """)
    notebook = append(append(append(kit.solution, f"del {first}"), "%%writefile helper.py\nONE = 1"), scripted)
    kit.submit(student, notebook)
    return Expect(kit.total, "graded")


# one row per entry, whatever it holds


@scenario()
def invalid_json(kit: Kit, student: str) -> Expect:
    kit.submit(student, b'{"cells": [')
    return Expect(0, "invalid", ("not valid JSON",))


@scenario()
def not_a_notebook(kit: Kit, student: str) -> Expect:
    kit.submit(student, b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    return Expect(0, "invalid", ("not a text file",))


@scenario()
def json_not_notebook(kit: Kit, student: str) -> Expect:
    kit.submit(student, b"[1, 2, 3]")
    return Expect(0, "invalid", ("not a Jupyter notebook",))


@scenario()
def empty_file(kit: Kit, student: str) -> Expect:
    kit.submit(student, b"")
    return Expect(0, "invalid", ("empty",))


@scenario()
def wrong_name(kit: Kit, student: str) -> Expect:
    kit.submit(student, kit.solution, "my_homework.ipynb")
    return Expect(0, "missing", (kit.name,))


@scenario()
def extra_notebook(kit: Kit, student: str) -> Expect:
    kit.submit(student, kit.solution)
    kit.submit(student, kit.released, "scratch.ipynb")
    return Expect(kit.total, "graded", ("ignored",))


@scenario()
def stray_file(kit: Kit, student: str) -> Expect:
    (kit.folder / student).write_text("{}")  # a file, not a student's folder
    return Expect(0, "invalid", ("not a student folder",))


@dataclass
class SuiteRun:
    expect: dict[str, Expect]
    grades: dict[str, dict[str, str]]
    skipped: dict[str, str]  # scenario -> why it was left out on this machine
    sandbox: Sandbox
    feedback: Path
    stderr: str  # what the command said: where a crashed run crashed


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> SuiteRun:
    """Every scenario written into one submissions folder and graded in one run of the real command."""
    if not ASSIGNMENTS:
        pytest.skip("no released assignment yet")
    import dl4nlp

    tmp_path = tmp_path_factory.mktemp("hostile")
    sandbox = Sandbox(Path(dl4nlp.__file__).parent, tmp_path, [], Limits(), [])  # what this machine offers
    offers = {"bubblewrap": sandbox.mode == "bubblewrap", "process-limit": sandbox.limits_processes}
    rubric = load_rubric(ROOT, ASSIGNMENT_UNDER_TEST)
    csv_path = tmp_path / "out" / "grades.csv"
    csv_path.parent.mkdir()
    kit = Kit(rubric, read(ROOT / "solutions" / rubric.assignment / rubric.notebook),
              read(ROOT / "assignments" / rubric.assignment / rubric.notebook), tmp_path / "submissions", csv_path)
    kit.folder.mkdir()
    expect, skipped = {}, {}
    chosen = os.environ.get("DL4NLP_SCENARIOS")  # e.g. "honest,fork-bomb": grade only these (while developing)
    for name, (build, needs) in SCENARIOS.items():
        if chosen and name not in chosen.split(","):
            skipped[name] = "not chosen in DL4NLP_SCENARIOS"
        elif needs and not offers[needs]:
            skipped[name] = f"needs {needs}, which this machine does not offer (sandbox: {sandbox.mode})"
        else:
            expect[name] = build(kit, name)
    honest_notebook = kit.folder / "honest" / kit.name
    before = honest_notebook.read_bytes()
    grades, stderr = autograde(rubric.assignment, kit.folder, csv_path, "--jobs", "2", "--cell-timeout",
                               str(CELL_TIMEOUT), "--timeout", "120", "--memory-mb", "2048",
                               "--feedback", str(tmp_path / "feedback"), "--hide-cases")
    warned = any(line.startswith("dl4nlp autograde: warning:") for line in stderr.splitlines())
    assert warned == (sandbox.mode != "bubblewrap"), stderr
    assert sorted(grades) == sorted(expect), "exactly one row per entry"
    assert honest_notebook.read_bytes() == before, "a submission changed another student's notebook"
    return SuiteRun(expect, grades, skipped, sandbox, tmp_path / "feedback", stderr)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_hostile_submission(suite, name):
    if name in suite.skipped:
        pytest.skip(suite.skipped[name])
    expectation, row = suite.expect[name], suite.grades[name]
    said = [part for part in suite.stderr.split("dl4nlp autograde: ") if part.startswith(f"{name} ")]
    assert (float(row["score"]), row["status"]) == (expectation.score, expectation.status), (row["detail"], said)
    for words in expectation.says:
        assert words in row["detail"], row["detail"]


@pytest.mark.slow
def test_a_crash_is_explained_to_the_instructor_only(suite):
    """Where a submission crashed Python, the command tells the instructor where (faulthandler's trace on
    stderr); the CSV and the feedback page keep to the status."""
    if "segfault" not in suite.expect:
        pytest.skip("the segfault scenario was not graded")
    said = [part for part in suite.stderr.split("dl4nlp autograde: ") if part.startswith("segfault ")]
    assert said and "Segmentation fault" in said[0], suite.stderr[-3000:]
    assert "Segmentation fault" not in suite.grades["segfault"]["detail"]


@pytest.mark.slow
def test_every_entry_gets_a_feedback_page_that_hides_the_cases(suite):
    pages = sorted(p.name for p in suite.feedback.iterdir())
    assert len(pages) == len(suite.expect)
    if "duplicate-ids" not in suite.expect:
        pytest.skip("the duplicate-ids scenario was not graded")
    page = (suite.feedback / "duplicate-ids.html").read_text()
    assert "0 / " in page and "hidden case" in page and not re.search(r"on case \d", page)  # --hide-cases


@pytest.mark.slow
def test_feedback_that_hides_the_cases_shows_no_text_a_graded_function_made(suite):
    if "leak-cases" not in suite.expect:
        pytest.skip("the leak-cases scenario was not graded")
    from dl4nlp.instructor.feedback import file_name

    page = (suite.feedback / file_name("leak-cases")).read_text()
    assert "LEAKED" not in page and "hidden case" in page
    assert "LEAKED" in suite.grades["leak-cases"]["detail"]  # the instructor's CSV keeps the message


# --- the checks themselves (in process) -------------------------------------------------------


def _nudged(function, where: int, size: float):
    def wrong(*args, **kwargs):
        def nudge(value):
            if isinstance(value, tuple):
                return tuple(nudge(v) for v in value)
            value = value.clone()
            finite = value.view(-1).isfinite().nonzero()[:, 0] if value.is_floating_point() else None
            index = where % value.numel() if finite is None or not len(finite) else int(finite[where % len(finite)])
            value.view(-1)[index] += size  # a finite number: -inf + size is still -inf (a filter's output)
            return value
        return nudge(function(*args, **kwargs))
    return wrong


def _outcomes(part: exercises.Part, cases: list[exercises.Case], function) -> list[exercises.Outcome]:
    return [exercises.call(function, case, part.effects) for case in cases]


@pytest.mark.parametrize("assignment", ASSIGNMENTS or ["rnn"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.text(max_size=8))
def test_the_reference_passes_on_any_cases(assignment, seed):
    for part in exercises.load(assignment).parts:
        cases = part.cases(exercises.generator(seed, part.name))
        expected = exercises.reference_outcomes(part, cases)  # as the grader draws them: none for a checked part
        assert exercises.judge(part, cases, expected, _outcomes(part, cases, part.reference())).passed


@pytest.mark.parametrize("assignment", ASSIGNMENTS or ["rnn"])
@settings(max_examples=25, deadline=None)
@given(seed=st.text(max_size=8), where=st.integers(0, 10**6), size=st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3),
       data=st.data())
def test_no_wrong_implementation_passes(assignment, seed, where, size, data):
    """A part's output wrong in a single number, by any amount that matters, scores zero for that part."""
    part = data.draw(st.sampled_from(exercises.load(assignment).parts))
    cases = part.cases(exercises.generator(seed, part.name))
    reference = part.reference()
    expected = exercises.reference_outcomes(part, cases)
    wrong = _nudged(reference, where, size)
    case_index = data.draw(st.integers(0, len(cases) - 1))
    outcomes = [exercises.call(wrong if i == case_index else reference, case, part.effects)
                for i, case in enumerate(cases)]
    assert not exercises.judge(part, cases, expected, outcomes).passed


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_an_installed_bubblewrap_contains_submissions(tmp_path):
    """Where bubblewrap is installed, the grader uses it: a fallback to plain subprocesses is a bug here."""
    import dl4nlp

    sandbox = Sandbox(Path(dl4nlp.__file__).parent, tmp_path, [], Limits(), [])
    assert sandbox.mode == "bubblewrap", sandbox.warning


def test_the_sandbox_choice_is_explained(tmp_path):
    sandbox = Sandbox(tmp_path, tmp_path, [], Limits(), [], requested="none")
    assert sandbox.mode == "subprocess" and "not contained" in sandbox.warning


def test_a_report_survives_anything_in_its_outputs():
    from dl4nlp.instructor.autograde.grader import _load_outcomes

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for payload in (Evil(), [torch.nn.Parameter(torch.ones(1))], "text", [(torch.ones(1), (Evil(),), None)]):
        buffer = __import__("io").BytesIO()
        torch.save(payload, buffer)
        with pytest.raises(ValueError):
            _load_outcomes(base64.b64encode(buffer.getvalue()).decode(), 1)
    with pytest.raises(ValueError):
        _load_outcomes("not base64 at all!", 1)


BUGS = [(assignment, part.name, bug) for assignment in ASSIGNMENTS for part in exercises.load(assignment).parts
        for bug in part.bugs]


@pytest.mark.parametrize(("assignment", "part_name", "bug"), BUGS, ids=[f"{a}-{p}-{b[:40]}" for a, p, b in BUGS])
@settings(max_examples=3, deadline=None)
@given(seed=st.text(max_size=8))
def test_each_typical_bug_fails_and_is_named(assignment, part_name, bug, seed):
    """Whatever the cases, a typical bug scores zero, and the feedback names it (and no other)."""
    part = exercises.load(assignment).part(part_name)
    cases = part.cases(exercises.generator(seed, part.name))
    verdict = exercises.judge(part, cases, _outcomes(part, cases, part.reference()),
                              _outcomes(part, cases, part.bugs[bug]))
    assert not verdict.passed
    assert verdict.bug == bug and bug in verdict.message and bug in verdict.summary


def test_every_part_has_typical_bugs_and_forbidden_calls():
    for assignment in ASSIGNMENTS:
        for part in exercises.load(assignment).parts:
            assert len(part.bugs) >= 2, f"{assignment}.{part.name}: list its typical bugs"
            assert part.forbidden, f"{assignment}.{part.name}: list the library calls that would do it in one line"


def test_an_expected_infinity_is_matched_exactly():
    """A filtered score is -inf: a finite number there is wrong, whatever the relative tolerance (rtol * inf)."""
    expected = torch.tensor([[1.0, float("-inf"), float("inf")]])
    assert exercises.difference(expected, expected.clone(), 1e-4, 1e-4) is None
    for wrong in ([[1.0, 0.0, float("inf")]], [[1.0, float("-inf"), 1e9]], [[1.0, float("inf"), float("inf")]]):
        assert exercises.difference(expected, torch.tensor(wrong), 1e-4, 1e-4) is not None, wrong
    assert exercises.difference(torch.tensor([float("nan")]), torch.tensor([float("nan")]), 1e-4, 1e-4) is None


def test_a_detached_or_numpy_answer_fails_on_its_gradients():
    """Right values are not enough: the gradients must flow back to every input."""
    import numpy as np

    from dl4nlp import rnn

    part = exercises.load("rnn").part("gru_cell")
    cases = part.cases(exercises.generator("gradients", part.name))
    expected = _outcomes(part, cases, part.reference())

    def detached(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
        x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
        h_r, h_z, h_n = (h @ weight_hh.T + bias_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n.detach())
        return (1 - z) * n + z * h

    def in_numpy(*args):
        return torch.from_numpy(np.asarray(rnn.gru_cell(*(a.detach() for a in args))))

    verdict = exercises.judge(part, cases, expected, _outcomes(part, cases, detached))
    assert not verdict.passed and "gradient with respect to" in verdict.message
    verdict = exercises.judge(part, cases, expected, _outcomes(part, cases, in_numpy))
    assert not verdict.passed and "gradients cannot flow" in verdict.message


# --- reading submissions and the CSV (fast, no sandbox) ---------------------------------------


@pytest.mark.parametrize("assignment", assignments(ROOT))
def test_every_assignment_has_exercises_that_agree_with_its_notebook(assignment):
    rubric = load_rubric(ROOT, assignment)  # raises if a test cell has no part or the points differ
    assert rubric.points and rubric.max_score == sum(part.points for part in rubric.exercises.parts)


def test_points_that_differ_from_the_exercises_stop_grading(tmp_path):
    from dl4nlp.instructor import GradingError

    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    notebook = read(ROOT / "solutions" / "rnn" / "rnn.ipynb")
    for cell in notebook.cells:
        if nbgrader(cell).get("grade_id") == "test_lstm_cell":
            cell.metadata.nbgrader.points = 30
    (tmp_path / "solutions" / "rnn").mkdir(parents=True)
    nbformat.write(notebook, tmp_path / "solutions" / "rnn" / "rnn.ipynb")
    with pytest.raises(GradingError, match="dl4nlp sync"):
        load_rubric(tmp_path, "rnn")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_graded_cells_are_recovered_without_metadata(assignment):
    from dl4nlp.instructor.autograde.submission import read_submission

    rubric = load_rubric(ROOT, assignment)
    solution = read(ROOT / "solutions" / assignment / rubric.notebook)
    data = colab(solution)
    for cell in data["cells"]:
        cell["metadata"] = {}
    submission = read_submission(json.dumps(data).encode(), rubric.notebook, rubric)
    defined = {name for cell in submission.runnable for name in cell.defines}
    assert defined == set(rubric.points)
    assert all(f"recovered {name}" in " ".join(submission.notes) for name in rubric.points)
    assert not [cell for cell in submission.runnable if "BEGIN HIDDEN TESTS" in cell.source]  # tests never run


def _rubric() -> Rubric:
    return load_rubric(ROOT, "rnn")


def _static(source: str) -> tuple[dict[str, str], dict[str, str]]:
    """({part: reference use}, {part: forbidden use}) found in a one-cell submission (cell 8)."""
    from dl4nlp.instructor.autograde.submission import CodeCell, Submission, forbidden_uses, reference_uses

    submission = Submission([CodeCell(8, textwrap.dedent(source), "other")])
    return reference_uses(submission, _rubric()), forbidden_uses(submission, _rubric())


def test_answers_taken_from_the_reference_are_found_in_the_source():
    """Binding the reference under a graded name, or using it in code the graded function reaches, counts;
    a scratch cell that only compares with the reference, or a figure of the same name, does not."""
    sources = {
        "from dl4nlp.rnn import lstm_cell as mine\nlstm_cell = mine": {"lstm_cell"},
        "from dl4nlp.rnn import lstm_cell": {"lstm_cell"},
        "import dl4nlp.rnn as R\ndef gru_cell(*a):\n    return R.gru_cell(*a)": {"gru_cell"},
        "from dl4nlp import rnn\nf = getattr(rnn, 'rnn_cell')\ndef rnn_cell(*a):\n    return f(*a)": {"rnn_cell"},
        "import dl4nlp\nlstm_cell = dl4nlp.rnn.lstm_cell": {"lstm_cell"},
        "from dl4nlp.rnn import LSTM\ndef lstm_cell(*a):\n    return LSTM.reference_cell(*a)": {"lstm_cell"},
        "import importlib\ndef gru_cell(*a):\n    return importlib.import_module('dl4nlp.rnn').gru_cell(*a)":
            {"gru_cell"},
        "from dl4nlp import rnn as course\ndef rnn_cell(x, h, *w):\n    return h\n"
        "print((rnn_cell(1, 2) - course.rnn_cell(1, 2)).abs().max())\nh = course.rnn_cell(1, 2)": set(),
        "import dl4nlp\nx = dl4nlp.rnn.lstm_cell": set(),
        "from dl4nlp.rnn import LSTM, lengths_to_mask, reverse_padded\nfrom dl4nlp.shapes import shapes": set(),
        "from dl4nlp.rnn import unroll": {"unroll"},  # a graded function since students write the loop
        "import dl4nlp.figures.rnn\ndl4nlp.figures.rnn.lstm_cell()": set(),  # a figure module's name is no graded one
        "from dl4nlp.figures import rnn as figs\nfigs.lstm_cell_figure()\ndef lstm_cell(x, state, *w):\n"
        "    figs.lstm_cell()\n    return state": set(),
        "def lstm_cell(x, state, *weights):\n    return state": set(),
        "a = b.x\nb = a.y\ndef lstm_cell(*args):\n    return a(b)": set(),  # names bound in a cycle
        "from dl4nlp.exercises import rnn": set(_rubric().points),  # the grader's own code
    }
    for source, flagged in sources.items():
        assert set(_static(source)[0]) == flagged, source


FORBIDDEN_SOURCES = {  # source -> (part, what the detail names)
    "import torch\ndef lstm_cell(x, state, *w):\n    return torch.lstm_cell(x, state, *w)":
        ("lstm_cell", "uses torch.lstm_cell in lstm_cell (cell 8)"),
    "import torch as t\ndef gru_cell(x, h, *w):\n    return t.gru_cell(x, h, *w)": ("gru_cell", "torch.gru_cell"),
    "from torch import rnn_tanh_cell as step\ndef rnn_cell(x, h, *w):\n    return step(x, h, *w)":
        ("rnn_cell", "torch.rnn_tanh_cell"),
    "from torch import nn\ndef lstm_cell(x, state, *w):\n    return nn.LSTMCell(3, 4)(x, state)":
        ("lstm_cell", "torch.nn.LSTMCell"),
    "import torch.nn.functional as F, torch\ndef lstm_cell(x, s, *w):\n    return torch.nn.modules.rnn.LSTMCell(1, 1)":
        ("lstm_cell", "torch.nn.LSTMCell"),
    "import torch\ndef gru_cell(x, h, *w):\n    return getattr(torch, 'gru_cell')(x, h, *w)":
        ("gru_cell", "torch.gru_cell"),
    "import importlib\ndef rnn_cell(x, h, *w):\n"
    "    return importlib.import_module('torch._VF').rnn_tanh_cell(x, h, *w)":
        ("rnn_cell", "torch._VF.rnn_tanh_cell"),
    "def lstm_cell(x, state, *w):\n    return __import__('torch').ops.aten.lstm_cell(x, state, *w)":
        ("lstm_cell", "torch.ops.aten.lstm_cell"),
    "import torch\nlstm_cell = torch.lstm_cell": ("lstm_cell", "uses torch.lstm_cell in lstm_cell (cell 8)"),
    "import torch\ndef step(x, h, w):\n    return torch._C._VariableFunctions.gru_cell(x, h, *w)\n"
    "def helper(x, h, w):\n    return step(x, h, w)\ndef gru_cell(x, h, *w):\n    return helper(x, h, w)":
        ("gru_cell", "uses torch._C._VariableFunctions.gru_cell in step (cell 8)"),
    "def lstm_cell(x, state, *w):\n    from torch import _VF as private\n    f = private.lstm_cell\n"
    "    return f(x, state, *w)": ("lstm_cell", "torch._VF.lstm_cell"),
}


@pytest.mark.parametrize("source", list(FORBIDDEN_SOURCES))
def test_forbidden_calls_are_found_in_the_code_a_part_reaches(source):
    part, says = FORBIDDEN_SOURCES[source]
    references, forbidden = _static(source)
    assert not references and set(forbidden) == {part}, forbidden
    assert says in forbidden[part]


def test_only_the_code_a_part_reaches_counts_and_only_its_own_forbidden_calls():
    references, forbidden = _static("""\
        import torch
        from torch import nn
        def lstm_cell(x, state, *w):
            return state
        def scratch(x, state, *w):
            return torch.lstm_cell(x, state, *w), nn.LSTMCell(3, 4)
        expected = torch.lstm_cell(1, 2)  # a scratch comparison at top level
        model = nn.LSTM(3, 4)  # an ungraded scratch model
        def bidirectional_layer(cell, x, *rest):
            return cell(x), torch.lstm_cell(x)  # allowed here: only the cells forbid it
        def classify(tokens, lengths, embedding, encoder, head):
            return nn.LSTM(3, 4)  # allowed in classify, which forbids only torch's private ops
        """)
    assert references == {} and forbidden == {}
    _, forbidden = _static("import torch\ndef bidirectional_layer(cell, x, *rest):\n    return torch.nn.GRU(1, 1)")
    assert set(forbidden) == {"bidirectional_layer"}
    # A part's `given` functions are the grader's own while it runs: the notebook's are not its code.
    _, forbidden = _static("""\
        import torch
        def unroll(cell, x, state, weights, lengths=None):
            return torch.nn.LSTM(3, 4)(x)
        def bidirectional_layer(cell, x, *rest):
            return unroll(cell, x, *rest)
        """)
    assert set(forbidden) == {"unroll"}
    references, _ = _static("""\
        from dl4nlp.rnn import unroll
        def bidirectional_layer(cell, x, *rest):
            return unroll(cell, x, *rest)
        """)
    assert set(references) == {"unroll"}  # the grader's own unroll runs in bidirectional_layer, not the reference


def test_a_later_cell_rebinds_a_graded_name():
    from dl4nlp.instructor.autograde.submission import CodeCell, Submission, forbidden_uses, reference_uses

    cells = [CodeCell(4, "import torch\nfrom dl4nlp.rnn import lstm_cell", "other"),
             CodeCell(9, "def lstm_cell(x, state, *w):\n    return state", "solution"),
             CodeCell(12, "gru_cell = torch.gru_cell", "other")]
    submission = Submission(cells)
    assert reference_uses(submission, _rubric()) == {}
    assert forbidden_uses(submission, _rubric()) == {"gru_cell": "uses torch.gru_cell in gru_cell (cell 12)"}


def test_calls_are_seen_while_a_part_runs_whatever_the_code_looks_like():
    """What reading the code cannot see (names built at run time) the watch sees, only during the graded call."""
    from dl4nlp.exercises import calls
    from dl4nlp.rnn import LSTM

    assignment = exercises.load("rnn")
    part = assignment.part("lstm_cell")
    case = exercises.public_cases(assignment, part)[0]

    def watched(function) -> list[str]:
        watch = calls.Watch(part.name, calls.targets(part, assignment.parts))
        assert exercises.call(watch.wrap(function), case).error is None
        return [f"{use.kind} {use.name}" for use in watch.uses]

    def hidden(x, state, *w):
        return getattr(torch, "lstm" + "_cell")(x, state, *w)

    def module(x, state, *w):
        cell = getattr(torch.nn, "LSTM" + "Cell")(x.shape[1], state[0].shape[1])
        names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
        return torch.func.functional_call(cell, dict(zip(names, w)), (x, state))

    def operator(x, state, *w):
        return tuple(torch.ops.aten.lstm_cell(x, list(state), *w))

    def class_attribute(*args):
        return LSTM.reference_cell(*args)

    assert watched(hidden) == ["forbidden torch.lstm_cell"]
    assert watched(module)[0] == "forbidden torch.nn.LSTMCell"
    assert watched(operator) == ["forbidden torch.ops.aten.lstm_cell"]
    assert watched(class_attribute) == ["reference dl4nlp.rnn.lstm_cell"]
    assert watched(part.bugs[next(iter(part.bugs))]) == []
    torch.nn.LSTMCell(3, 4)(torch.randn(1, 3))  # outside a graded call nothing is recorded, nothing fails


def test_the_grader_own_cells_and_encoders_are_not_counted():
    from dl4nlp.exercises import calls
    from dl4nlp import rnn

    assignment = exercises.load("rnn")
    for name in ("unroll", "bidirectional_layer", "classify", "gradient_norms"):
        part = assignment.part(name)
        watch = calls.Watch(name, calls.Targets(["torch.lstm_cell", "torch.gru_cell", "torch.rnn_tanh_cell",
                                                 "torch.lstm", "torch.gru", "torch.nn.LSTM", "torch.nn.GRU",
                                                 "torch.nn.RNN"], {}))
        for case in exercises.public_cases(assignment, part):  # torch-based cells and encoders, from the grader
            assert exercises.call(watch.wrap(getattr(rnn, name)), case).error is None
        assert watch.uses == [], name


def test_the_csv_holds_one_plain_row_per_report(tmp_path):
    from dl4nlp.instructor.gradebook import GradeRow, write_csv

    rows = [GradeRow("=HYPERLINK(\"x\")", "rnn", 1.0, 13.0, "graded", "line\nbreak, \"quotes\"\x00 and\ttabs"),
            GradeRow("bob", "rnn", 0.0, 13.0, "invalid", "-1 points?")]
    path = tmp_path / "grades.csv"
    write_csv(rows, path)
    with path.open() as handle:
        read_back = list(csv.DictReader(handle))
    assert [r["student"] for r in read_back] == ["'=HYPERLINK(\"x\")", "bob"]
    assert read_back[0]["detail"] == "line\\nbreak, \"quotes\"\\x00 and\\ttabs"  # escaped, so never ambiguous
    assert read_back[1]["detail"] == "'-1 points?"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv"]  # no temporary file left behind


def test_written_answers_are_found_and_shown_on_the_feedback_page():
    """The markdown answer cells (graded by hand) reach the feedback page, found by metadata or by their question."""
    from dl4nlp.instructor.autograde.grader import Report
    from dl4nlp.instructor.autograde.submission import written_answers
    from dl4nlp.instructor.feedback import render

    rubric = _rubric()
    assert len(rubric.answers) >= 2 and all(points > 0 for _, points in rubric.answers.values())
    first = next(iter(rubric.answers))
    answered = read(ROOT / "assignments" / "rnn" / rubric.notebook)
    for cell in answered.cells:
        if nbgrader(cell).get("grade_id") == first:
            cell.source = "The RNN's gradient <vanishes>: 0.57 per step."
    found = written_answers(nbformat.writes(answered).encode(), rubric.notebook, rubric)
    assert [(question, points) for question, points, _ in found] == list(rubric.answers.values())
    assert found[0][2] == "The RNN's gradient <vanishes>: 0.57 per step." and found[1][2] == "YOUR ANSWER HERE"
    bare = colab(answered)
    for cell in bare["cells"]:
        cell["metadata"] = {}
    assert written_answers(json.dumps(bare).encode(), rubric.notebook, rubric) == found
    page = render(Report("bob", "rnn", rubric.max_score, answers=found))
    assert "Written answers" in page and "The RNN&#x27;s gradient &lt;vanishes&gt;: 0.57 per step." in page


# --- the student self-check -------------------------------------------------------------------------


def _namespace(notebook: nbformat.NotebookNode) -> dict:
    """Run a notebook's code up to its last solution cell, test cells left out: what a student has defined.

    Each cell's source is kept where `inspect.getsource` finds it, as IPython does in Jupyter and Colab.
    """
    namespace: dict = {}
    last = max(i for i, c in enumerate(notebook.cells) if nbgrader(c).get("solution") and c.cell_type == "code")
    for index, cell in enumerate(notebook.cells[:last + 1]):
        if cell.cell_type == "code" and not nbgrader(cell).get("grade"):
            filename = f"/tmp/ipykernel_test/{id(notebook)}_{index}.py"
            linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(keepends=True), filename)
            exec(compile(cell.source, filename, "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_selfcheck_gives_points_for_what_works(assignment):
    from dl4nlp.selfcheck import run_selfcheck

    rubric = load_rubric(ROOT, assignment)
    instructor = run_selfcheck(assignment, _namespace(read(ROOT / "solutions" / assignment / rubric.notebook)))
    student = run_selfcheck(assignment, _namespace(read(ROOT / "assignments" / assignment / rubric.notebook)))
    assert instructor.points == rubric.max_score and "passed" in repr(instructor)
    assert student.points == 0 and "not implemented" in student._repr_html_()


def _grader_verdict(detail: str, part: str) -> tuple[str, str]:
    """(verdict, typical bug) of `part` in a CSV row's detail: "test_lstm_cell 3/3", "(reference: ...)", ..."""
    start = detail.index(f"test_{part} ")
    end = detail.find("; test_", start)
    segment = detail[start:end if end >= 0 else len(detail)]
    points, max_points = segment.split()[1].split("/")
    if points == max_points:
        return "passed", ""
    for verdict in ("reference", "forbidden"):
        if f"({verdict}: " in segment:
            return verdict, ""
    return "wrong", segment.split("typical bug: ", 1)[1] if "typical bug: " in segment else ""


@pytest.mark.slow
@pytest.mark.parametrize("answer", list(AGREEMENT))
def test_the_selfcheck_and_the_grader_agree(suite, answer):
    """The same answer gets the same verdict from the student's self-check and from the grader."""
    from dl4nlp.selfcheck import run_selfcheck

    student = f"agree-{answer}"
    if student in suite.skipped:
        pytest.skip(suite.skipped[student])
    notebook = _agreement_notebook(read(ROOT / "solutions" / "rnn" / "rnn.ipynb"), answer)
    check = next(p for p in run_selfcheck("rnn", _namespace(notebook)).parts if p.name == "lstm_cell")
    verdict, bug = _grader_verdict(suite.grades[student]["detail"], "lstm_cell")
    assert (check.status, bool(check.bug)) == (verdict, bool(bug)) == (AGREEMENT[answer][1], bool(AGREEMENT[answer][2]))
    assert check.bug in bug, (check.message, suite.grades[student]["detail"])


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_student_notebook_ends_with_the_selfcheck(assignment):
    name = load_rubric(ROOT, assignment).notebook
    code = [c.source for c in read(ROOT / "assignments" / assignment / name).cells if c.cell_type == "code"]
    assert f'run_selfcheck("{assignment}", globals())' in code[-1], "the last code cell should run the self-check"


def test_the_selfcheck_needs_no_instructor_tools():
    script = textwrap.dedent("""\
        import json, sys
        for name in ("nbgrader", "nbformat", "nbclient", "jupyter_client"):
            sys.modules[name] = None  # any import of these fails
        from dl4nlp import rnn
        from dl4nlp.selfcheck import run_selfcheck
        mine = {}
        for cell in json.load(open("solutions/rnn/rnn.ipynb"))["cells"]:  # the imports and the instructor's answers
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and (cell.get("metadata", {}).get("nbgrader", {}).get("solution")
                                                or "from dl4nlp.rnn import" in source):
                exec(source, mine)
        report = run_selfcheck("rnn", mine)
        print(report)
        assert report.points == report.max_points
        assert run_selfcheck("rnn", {"rnn_cell": rnn.rnn_cell}).parts[0].points == 0  # imported: no points
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "19/19 points so far" in result.stdout


def test_a_multi_module_assignment_traps_every_module(tmp_path):
    """An assignment may grade functions of several chapter modules: each one is trapped in its own module."""
    from dl4nlp.instructor.autograde.rubric import trapped_package

    package = trapped_package(tmp_path, {"dl4nlp.rnn": ["rnn_cell"], "dl4nlp.training": ["evaluate"]})
    script = textwrap.dedent("""\
        import torch
        from dl4nlp import rnn, training
        from dl4nlp.instructor.autograde.trap import CALLS, ReferenceUnavailable
        cell = [torch.zeros(1, 1)] * 4 + [torch.zeros(1)] * 2
        for call in (lambda: rnn.rnn_cell(*cell), lambda: training.evaluate(None, [])):
            try:
                call()
            except ReferenceUnavailable:
                pass
            else:
                raise SystemExit("not trapped")
        assert CALLS == ["dl4nlp.rnn.rnn_cell", "dl4nlp.training.evaluate"], CALLS
        assert rnn.lstm_cell(torch.zeros(1, 1), (torch.zeros(1, 1), torch.zeros(1, 1)),
                             *[torch.zeros(4, 1), torch.zeros(4, 1), torch.zeros(4), torch.zeros(4)])[0].shape == (1, 1)
        print(rnn.__file__)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(package.parent)}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(package))


# --- one notebook never costs a classmate a grade (fast, no sandbox) --------------------------------


@pytest.mark.parametrize("assignment", ["finetune"])  # its cases build transformers models
def test_cases_drawn_by_parallel_jobs_are_the_ones_drawn_alone(assignment, tmp_path):
    """`--jobs 2` grades each submission on the cases it would get alone: drawn at the same time in a fresh
    process (transformers not yet imported), four jobs got "module 'transformers' has no attribute
    'BertModel'" or each other's weights, before the cases were drawn one job at a time."""
    script = textwrap.dedent(f"""\
        import hashlib, threading
        from pathlib import Path
        import torch
        from dl4nlp.instructor.autograde.grader import Grader
        from dl4nlp.instructor.autograde.sandbox import Limits
        grader = Grader(Path({str(ROOT)!r}), {assignment!r}, Path({str(tmp_path)!r}), Limits())
        def draw(student):
            try:
                cases, drawn, expected = grader.draw_cases(student, "notebook")
                return hashlib.sha256(drawn).hexdigest()
            except Exception as error:
                return repr(error)
        together = {{}}
        threads = [threading.Thread(target=lambda s=s: together.update({{s: draw(s)}})) for s in "abcd"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        torch.manual_seed(1)  # the state grading left behind plays no part
        torch.rand(7)
        alone = {{s: draw(s) for s in "abcd"}}
        print(together == alone, sorted(together.values()), len(set(alone.values())))
        grader.close()
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == "True" and result.stdout.split()[-1] == "4", result.stdout


def test_a_job_folder_of_any_depth_and_permissions_is_removed(tmp_path):
    from dl4nlp.instructor.autograde.harness import remove_tree

    top = tmp_path / "job-1"
    top.mkdir()
    descriptor = os.open(top, os.O_RDONLY)
    for _ in range(3000):  # deeper than PATH_MAX allows to name, and than the recursion limit
        os.mkdir("d", dir_fd=descriptor)
        inner = os.open("d", os.O_RDONLY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = inner
    os.close(descriptor)
    (top / "locked").mkdir()
    (top / "locked" / "file").write_text("x")
    (top / "locked").chmod(0)
    (top / "link").symlink_to(tmp_path)
    remove_tree(top)
    assert list(tmp_path.iterdir()) == []


def test_a_detached_process_does_not_outlive_its_submission():
    """As the zygote does when grading as an ordinary user: a daemon (double fork, setsid) is found and killed."""
    script = textwrap.dedent("""\
        import os, sys, time
        from dl4nlp.instructor.autograde.harness import _become_subreaper, kill_descendants
        assert _become_subreaper()
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            os.setsid()
            if os.fork() == 0:
                os.setsid()
                os.write(write, str(os.getpid()).encode())
                while True:
                    time.sleep(1)
            os._exit(0)
        os.waitpid(child, 0)
        daemon = int(os.read(read, 32))
        assert os.path.exists(f"/proc/{daemon}")
        assert kill_descendants()
        state = open(f"/proc/{daemon}/stat").read().split(") ")[1][0] if os.path.exists(f"/proc/{daemon}") else "gone"
        print(state)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gone"


def test_cases_depend_on_the_notebook_itself():
    from types import SimpleNamespace

    from dl4nlp.instructor.autograde.grader import Grader

    grader = SimpleNamespace(secret="s", rubric=SimpleNamespace(assignment="rnn"))
    part = exercises.load("rnn").parts[0]
    first, second = (part.cases(exercises.generator(*Grader._seed_words(grader, "alice", part.name, content)))
                     for content in ("one notebook", "another"))
    assert not torch.equal(first[0].args[0], second[0].args[0])


def test_a_summary_shows_no_text_from_a_graded_call():
    from dl4nlp.instructor.autograde.grader import _hidden_problem, _hide_messages

    part = exercises.load("rnn").parts[0]
    cases = part.cases(exercises.generator("leak", part.name))
    expected = _outcomes(part, cases, part.reference())
    leaked = [exercises.Outcome(error=f"ValueError: {case.args[0].tolist()}") for case in cases]
    verdict = _hide_messages(exercises.judge(part, cases, expected, leaked), part, cases, expected, leaked)
    assert str(cases[0].args[0].tolist()[0][0])[:6] in verdict.message
    assert "ValueError" in verdict.summary and "[" not in verdict.summary
    forged = {"problem": "SECRET " * 1000}
    assert "SECRET" not in _hidden_problem(part.name, forged)
    assert _hidden_problem(part.name, {"problem": f"{part.name} is not defined"}) == f"{part.name} is not defined"


def test_the_report_channel_is_bounded_and_keeps_the_first_result(tmp_path):
    from dl4nlp.instructor.autograde.sandbox import MAX_EVENT_BYTES, _EventReader

    read, write = os.pipe()
    released = []
    reader = _EventReader(read, 8 * MAX_EVENT_BYTES, on_cases=lambda: released.append(True))
    lines = [{"event": "cell", "phase": "end", "index": 1, "status": "ok"},
             {"event": "part", "phase": "end", "name": "f", "outputs": "forged in a cell"},
             {"event": "cases"},
             {"event": "part", "phase": "end", "name": "f", "outputs": "first"},
             {"event": "part", "phase": "end", "name": "f", "outputs": "second"},
             {"event": "cases"},  # a second request changes nothing
             {"event": "cell", "phase": "end", "index": 2, "status": "error", "error": "after the cases"},
             {"event": "unknown"}]
    with os.fdopen(write, "wb") as stream:
        stream.write(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        stream.write(b'{"event": "part", "phase": "end", "name": "g", "problem": "' + b"x" * (MAX_EVENT_BYTES + 10)
                     + b'"}\n')
        stream.write(b'{"event": "done"}\n')
    reader.join(30)
    assert released == [True]
    assert [e.get("outputs") for e in reader.events if e["event"] == "part"] == ["first"]  # g's line was too long
    assert [e["index"] for e in reader.events if e["event"] == "cell"] == [1]
    assert reader.events[-1] == {"event": "done"}

    read, write = os.pipe()
    reader = _EventReader(read, 2**20)
    try:
        for _ in range(2**20):
            os.write(write, b"{}\n" * 4096)  # a flood: the reader stops and closes the channel
    except BrokenPipeError:
        pass
    finally:
        os.close(write)
    reader.join(30)
    assert reader.events == [{"event": "overflow"}]


def test_feedback_pages_are_unique_per_exact_name(tmp_path):
    from dl4nlp.instructor.autograde.grader import Report
    from dl4nlp.instructor.feedback import file_name, write_feedback

    names = ["alice", "a b", "a_b", "Zo\u00eb", "Zo\u00e9", "Bob", "bob", "x" * 255, "bell\x07", "bell ", "..", "~"]
    pages = [file_name(name) for name in names]
    assert len({page.lower() for page in pages}) == len(names)
    assert file_name("alice") == "alice.html" and all(len(page.encode()) < 200 for page in pages)
    written, problems = write_feedback([Report(name, "rnn", 13.0) for name in names], tmp_path / "pages")
    assert len(written) == len(names) and not problems
    assert "bell\\x07" in (tmp_path / "pages" / file_name("bell\x07")).read_text()


def test_a_page_that_cannot_be_written_costs_only_that_page(tmp_path, monkeypatch):
    from dl4nlp.instructor import feedback
    from dl4nlp.instructor.autograde.grader import Report

    monkeypatch.setattr(feedback, "file_name", lambda student: ("y" * 300 if student == "long" else student) + ".html")
    written, problems = feedback.write_feedback([Report(n, "rnn", 13.0) for n in ("a", "long", "b")], tmp_path)
    assert [page.name for page in written] == ["a.html", "b.html"] and "long" in problems[0]


def test_huge_or_sparse_notebooks_are_refused_before_they_are_read(tmp_path):
    from dl4nlp.instructor.autograde.grader import read_bounded
    from dl4nlp.instructor.autograde.submission import InvalidSubmission

    sparse = tmp_path / "rnn.ipynb"
    sparse.touch()
    os.truncate(sparse, 4 * 2**30)
    with pytest.raises(InvalidSubmission, match="larger than"):
        read_bounded(sparse)


def test_the_reader_process_parses_with_bounded_memory():
    from dl4nlp.instructor.autograde.submission import InvalidSubmission, LimitedReader

    notebook = colab(read(ROOT / "solutions" / "rnn" / "rnn.ipynb"))
    reader = LimitedReader(ROOT, "rnn")
    try:
        submission = reader.read(json.dumps(notebook).encode(), "rnn.ipynb")
        assert {name for cell in submission.cells for name in cell.defines} >= {"rnn_cell", "lstm_cell"}
        assert submission.uses == {}
        notebook["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "source": "x = 1\n" * 10**5})
        with pytest.raises(InvalidSubmission, match="characters"):
            reader.read(json.dumps(notebook).encode(), "rnn.ipynb")
        with open(f"/proc/{reader._process.pid}/limits") as limits:
            assert re.search(r"Max address space\s+\d+", limits.read())
    finally:
        reader.close()


@pytest.mark.parametrize(("cell", "python"), [
    ("files = !ls", "files = []  # files = !ls"),
    ("%time y = 2", "y = 2"),
    ("%%writefile helper.py\nONE = 1", "with open('helper.py', 'w') as _writefile:\n    _writefile.write('ONE = 1\\n')"),
    ("%%bash\necho hi", None),
])
def test_ipython_syntax_runs_as_in_jupyter(cell, python):
    from dl4nlp.instructor.autograde.submission import python_source

    assert python_source(cell) == python


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become an ordinary user")
def test_graded_as_an_ordinary_user_a_detached_process_dies_with_its_submission():
    """The usual laptop: no user id per submission, so one worker runs them one after another.

    A daemon left by the first submission would kill the zygote and every later submission.
    """
    become = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*become, sys.executable, "-c", "import subprocess, sys\n"
                            "subprocess.run([sys.executable, '-c', 'pass'], check=True)"], capture_output=True, cwd="/")
    if probe.returncode != 0:
        pytest.skip(f"an ordinary user cannot run {sys.executable} here (is it under a private folder?)")
    folder = Path(tempfile.mkdtemp(prefix="dl4nlp-ordinary-user-"))
    try:
        solution = read(ROOT / "solutions" / "rnn" / "rnn.ipynb")
        write_submission(folder / "submissions", "a-daemon", insert(solution, DAEMON), "rnn.ipynb")
        for student in ("b-honest", "c-honest"):
            write_submission(folder / "submissions", student, solution, "rnn.ipynb")
        subprocess.run(["chown", "-R", "65534:65534", str(folder)], check=True)
        environment = {**os.environ, "HOME": str(folder), "DL4NLP_GRADING_SECRET": "ordinary"}
        command = [*become, sys.executable, "-m", "dl4nlp",
                   "autograde", "rnn", str(folder / "submissions"), "--out", str(folder / "grades.csv"),
                   "--jobs", "1", "--cell-timeout", "30"]
        result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        with (folder / "grades.csv").open() as handle:
            rows = {row["student"]: row for row in csv.DictReader(handle)}
        graded = {name: (row["score"], row["status"]) for name, row in rows.items()}
        total = str(float(sum(exercises.load("rnn").points.values())))
        expected = {name: (total, "graded") for name in ("a-daemon", "b-honest", "c-honest")}
        assert graded == expected, [row["detail"] for row in rows.values()]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_without_a_user_id_per_submission_a_detached_process_dies_with_its_submission(tmp_path):
    """The same, on any machine: the grader told that it cannot give each submission a user id."""
    solution = read(ROOT / "solutions" / "rnn" / "rnn.ipynb")
    write_submission(tmp_path / "submissions", "a-daemon", insert(solution, DAEMON), "rnn.ipynb")
    for student in ("b-honest", "c-honest"):
        write_submission(tmp_path / "submissions", student, solution, "rnn.ipynb")
    script = textwrap.dedent(f"""\
        from pathlib import Path
        from dl4nlp.instructor.autograde import grader, sandbox
        sandbox.Sandbox.drops_user = property(lambda self: False)  # as for an ordinary user: one job per zygote
        graded = grader.grade_folder(Path({str(ROOT)!r}), "rnn", Path({str(tmp_path / "submissions")!r}), jobs=1,
                                     limits=sandbox.Limits(cell_timeout=30))
        for report in graded.reports:
            print(report.student, report.score, report.status, report.detail()[:300])
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "DL4NLP_GRADING_SECRET": "no-user-ids"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    total = str(float(sum(exercises.load("rnn").points.values())))
    assert [line.split()[:3] for line in lines] == [[name, total, "graded"] for name in
                                                   ("a-daemon", "b-honest", "c-honest")], lines


def test_every_line_of_the_threat_model_names_tests_that_exist():
    """The instructors' page says what the grader stops and which test proves it: those tests exist."""
    page = (ROOT / "book" / "instructors.md").read_text()
    table = page.split("### What the grader stops, and what it cannot", 1)[1].split("What it cannot stop", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| A submission")]
    assert len(rows) >= 10
    source = Path(__file__).read_text()
    for row in rows:
        named = re.findall(r"`([\w-]+)`", row.rsplit("|", 2)[-2])
        assert named, row
        for name in named:
            assert name in SCENARIOS or f"def {name}(" in source, f"the threat model names {name}, which is no test"
