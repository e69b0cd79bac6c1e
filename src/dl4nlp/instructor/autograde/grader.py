"""Grade a folder of submissions: one report per entry, N at a time, nothing trusted but outputs.

For each entry of the submissions folder (a student's folder, or anything else that lies
there) the grader reads the notebook (`rnn.ipynb`; else the one file named as Colab or a
browser saves it, "Copy of rnn.ipynb" or "rnn (1).ipynb", which `detail` names; two such
files and no `rnn.ipynb` are "invalid"; else `rnn.ipynb` in a subfolder; its size checked
before, its parsing done in a memory-limited process), draws the cases of every part from a
seed that depends on a course secret, the assignment, the student, the part and the
notebook's own bytes, runs the submission in the sandbox, and compares what came back with
the reference's outputs computed here. Feedback that hides the cases never shows text a
graded function produced. A part scores its points only if every case matches, the
reference was not used (status "reference") and none of its forbidden library calls was
(status "forbidden": a call such as `torch.lstm_cell` that does the part's work, found in the
code it reaches or seen while it ran on the grader's cases; see `dl4nlp.exercises.calls`).
Per-student results do not depend on the number of jobs or the order of grading.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
from base64 import b64decode
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dl4nlp.exercises import (NOT_DIFFERENTIABLE, Case, Outcome, Verdict, generator, judge, passed_fraction,
                              reference_outcomes)
from dl4nlp.exercises.calls import FORBIDDEN, REFERENCE, explain
from dl4nlp.instructor import GradingError
from dl4nlp.instructor.autograde.rubric import Rubric, load_rubric, trapped_package
from dl4nlp.instructor.autograde.sandbox import UID_BASE, Limits, Run, Sandbox, Worker, memory_note
from dl4nlp.instructor.autograde.submission import (MAX_NOTEBOOK_BYTES, InvalidSubmission, LimitedReader, Submission,
                                                    forbidden_uses, reference_uses)

MAX_LISTED = 20  # notes and cell errors kept per submission
SECRET_FILE = ".grading-secret"
SECRET_VARIABLE = "DL4NLP_GRADING_SECRET"
STATUS_WORDS = {
    "timeout": "ran past its time limit",
    "memory": "ran out of memory",
    "processes": "started too many processes",
}


@dataclass
class PartResult:
    name: str
    points: float
    max_points: float
    message: str = ""  # why it lost its points, with the failing case
    summary: str = ""  # the same without the case (feedback that hides hidden cases)
    reference: str = ""  # how it used the reference, if it did
    forbidden: str = ""  # the library call that does its work, if it used one
    automatic: float | None = None  # the grader's points, when overrides.csv replaced them
    override: str = ""  # the reason for the override (overrides.csv)


@dataclass
class Report:
    """Everything the grader found out about one entry of the submissions folder."""

    student: str
    assignment: str
    max_score: float
    status: str = "graded"
    problem: str = ""  # for statuses other than graded: what happened, what to fix
    parts: list[PartResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cell_errors: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)  # (cell, error, defines)
    log: str = ""  # for the instructor only (never in the CSV or feedback): what a crashed run wrote on stderr
    answers: list[tuple[str, float, str]] = field(default_factory=list)  # (question, points, answer), graded by hand

    @property
    def score(self) -> float:
        return float(sum(part.points for part in self.parts))

    def detail(self, limit: int = 2000) -> str:
        pieces = [self.problem] if self.problem else []
        for part in self.parts:
            text = f"test_{part.name} {part.points:g}/{part.max_points:g}"
            pieces.append(text + (f" ({part.message})" if part.message else ""))
        pieces += self.notes
        pieces += [f"cell {index} ({', '.join(defines)}) raised {error}" for index, error, defines in self.cell_errors
                   if defines]
        text = " ".join("; ".join(pieces).split())  # one line: no newlines or tabs from student text
        return text if len(text) <= limit else text[:limit - 3] + "..."


def course_secret(root: Path) -> str:
    """The secret mixed into every seed: $DL4NLP_GRADING_SECRET, else .grading-secret (made once, git-ignored)."""
    if os.environ.get(SECRET_VARIABLE):
        return os.environ[SECRET_VARIABLE]
    path = root / SECRET_FILE
    if not path.is_file():
        path.write_text(secrets.token_hex(16) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


class Grader:
    """One grading run: the rubric, the sandbox and a scratch folder, shared by all jobs."""

    def __init__(self, root: Path, assignment: str, submissions: Path, limits: Limits,
                 private: list[Path] = (), partial: bool = False) -> None:
        self.rubric: Rubric = load_rubric(root, assignment)
        self.partial = partial  # --partial: a part earns the fraction of its cases passed
        self.submissions, self.limits = submissions, limits
        self.secret = course_secret(root)
        self.reader = LimitedReader(root, assignment)
        self.scratch = Path(tempfile.mkdtemp(prefix="dl4nlp-grading-"))
        exercises = self.rubric.exercises
        graded = {module: [p.name for p in exercises.parts if p.module == module] for module in exercises.modules}
        package = trapped_package(self.scratch / "package", graded)
        self.sandbox = Sandbox(package, self.scratch, [root, submissions, *private], limits,
                               [*exercises.modules, *self.rubric.imports])
        self._uids = iter(range(UID_BASE + secrets.randbelow(10**6) * 1000, UID_BASE + 2 * 10**9))
        self._lock = threading.Lock()
        self._in_process = threading.Lock()  # the grader's own torch work, one job at a time: see draw_cases
        self._workers: list[Worker] = []
        self._idle: queue.Queue[Worker] = queue.Queue()

    def start_workers(self, jobs: int) -> None:
        """Start the workers in the background (each imports torch once: seconds).

        Where every submission gets a user id of its own, one worker runs all `jobs` at once;
        elsewhere each job gets a worker (its own sandbox) of its own.
        """
        shared = self.sandbox.drops_user
        for _ in range(1 if shared else jobs):
            worker = Worker(self.sandbox)
            self._workers.append(worker)
            threading.Thread(target=self._warm_up, args=(worker, jobs if shared else 1), daemon=True).start()

    def _warm_up(self, worker: Worker, users: int) -> None:
        try:
            worker.start()
        except RuntimeError:
            pass  # it tries again on its first submission, whose row then says why it failed
        for _ in range(users):
            self._idle.put(worker)

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self.reader.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def entries(self) -> list[Path]:
        """Every entry of the submissions folder except hidden ones (.DS_Store, .ipynb_checkpoints)."""
        return sorted(p for p in self.submissions.iterdir() if not p.name.startswith("."))

    # --- one entry ------------------------------------------------------------------------------

    def grade(self, entry: Path) -> Report:
        """The report of one entry of the submissions folder; never raises."""
        report = Report(entry.name, self.rubric.assignment, self.rubric.max_score)
        try:
            path = self._notebook(entry, report)
            if path is None:
                return self._zero(report)
            data = read_bounded(path)
            submission = self.reader.read(data, path.name)
            report.answers = submission.answers
            report.notes += submission.notes[:MAX_LISTED]
            if len(submission.notes) > MAX_LISTED:
                report.notes.append(f"and {len(submission.notes) - MAX_LISTED} more notes")
            self._run(entry.name, submission, report, hashlib.sha256(data).hexdigest())
        except InvalidSubmission as error:
            report.status, report.problem = "invalid", str(error)
            return self._zero(report)
        except Exception as error:  # noqa: BLE001 - a grader bug costs one row, never the batch
            report.status = "error"
            report.problem = f"the grader failed on this submission ({type(error).__name__}: {error})"
            return self._zero(report)
        return report

    def _zero(self, report: Report) -> Report:
        report.parts = [PartResult(name, 0.0, points, "not graded") for name, points in self.rubric.points.items()]
        return report

    def _notebook(self, entry: Path, report: Report) -> Path | None:
        name = self.rubric.notebook
        if entry.is_symlink():
            report.status, report.problem = "invalid", f"{entry.name} is a symbolic link, not a submission"
            return None
        if not entry.is_dir():
            report.status = "invalid"
            report.problem = (f"{entry.name} is a file in the submissions folder, not a student folder: "
                              f"put each notebook in a folder named after the student, e.g. {entry.stem}/{name}")
            return None
        path = entry / name
        if not path.is_file():
            candidates = download_names(entry, name)
            if len(candidates) > 1:
                report.status = "invalid"
                report.problem = (f"found {len(candidates)} notebooks that could be {name}: "
                                  f"{', '.join(p.name for p in candidates)}: hand in one, named {name}")
                return None
            if candidates:
                path = candidates[0]
                report.notes.append(f"graded {path.name} (expected {name})")
        if not path.is_file():
            nested = [p for p in entry.rglob(name) if p.is_file() and len(p.relative_to(entry).parts) <= 4]
            if len(nested) == 1 and not nested[0].is_symlink():
                report.notes.append(f"graded {nested[0].relative_to(entry).as_posix()} (expected it at {name})")
                path = nested[0]
            else:
                found = ", ".join(sorted(p.name for p in entry.iterdir())) or "nothing"
                report.status = "missing"
                report.problem = (f"expected {name} in {entry.name}/, found {found}: hand in the notebook "
                                  f"under the name {name}")
                return None
        if path.is_symlink():
            report.status, report.problem = "invalid", f"{name} is a symbolic link, not a notebook"
            return None
        extra = sorted(p.name for p in entry.iterdir() if p.name != path.name and not p.name.startswith("."))
        if extra and path.parent == entry:
            report.notes.append(f"ignored {', '.join(extra)}: only {path.name} is graded")
        return path

    def _seed_words(self, student: str, part: str, content: str) -> tuple[str, ...]:
        """What a part's cases are drawn from. `content` is a hash of the notebook's bytes: any
        change to a notebook draws new cases, so cases leaked by one submission (through its
        feedback, say) are of no use to the next."""
        return ("grading", self.secret, self.rubric.assignment, student, part, content)

    @contextmanager
    def _seeded(self, student: str, what: str, content: str) -> Iterator[None]:
        """The grader's own torch work, one job at a time, with torch's global generator seeded from the seed
        words (`what` in place of a part's name) and restored after (see draw_cases)."""
        with self._in_process, torch.random.fork_rng(devices=[]):
            torch.manual_seed(generator(*self._seed_words(student, what, content)).initial_seed())
            yield

    def draw_cases(self, student: str, content: str) -> tuple[dict[str, list[Case]], bytes, dict[str, list[Outcome]]]:
        """Every part's cases for one submission, the same bytes torch.save makes of them, and the reference's outcomes.

        One job at a time, with torch's global random state set from the seed words and restored after:
        a case may build a model that initializes from that state (transformers does), or import a
        library on first use (transformers' lazy attributes are not thread-safe). Drawn in parallel,
        two jobs got each other's weights, or "module 'transformers' has no attribute 'BertModel'".
        Judging (`_judge`, which reruns typical bugs) holds the same lock, seeded the same way: a bug that
        seeds the global generator and then draws from it was named in one run and not in the next.
        """
        with self._seeded(student, "", content):
            cases = {part.name: part.cases(generator(*self._seed_words(student, part.name, content)))
                     for part in self.rubric.exercises.parts}
            buffer = io.BytesIO()
            torch.save({name: [case.args for case in drawn] for name, drawn in cases.items()}, buffer)
            expected = {name: reference_outcomes(self.rubric.exercises.part(name), drawn)
                        for name, drawn in cases.items()}
        return cases, buffer.getvalue(), expected

    def _run(self, student: str, submission: Submission, report: Report, content: str) -> None:
        rubric = self.rubric
        cases, drawn_args, expected = self.draw_cases(student, content)
        header = {"cells": [[cell.index, cell.source] for cell in submission.runnable],
                  "parts": {part.name: part.module for part in rubric.exercises.parts},
                  "forbidden": {part.name: list(part.forbidden) for part in rubric.exercises.parts},
                  "given": {part.name: {name: f"{function.__module__}:{function.__qualname__}"
                                        for name, function in part.given.items()}
                            for part in rubric.exercises.parts if part.given},
                  "effects": {part.name: f"{part.effects.__module__}:{part.effects.__qualname__}"
                              for part in rubric.exercises.parts if part.effects is not None}}
        with self._lock:
            uid = next(self._uids) if self.sandbox.drops_user else None
        if not self._workers:
            self.start_workers(1)
        worker = self._idle.get()
        try:
            run = worker.run(header, drawn_args, uid)
            if run.killed == "cell" and run.running and isinstance(run.running.get("cell"), int):
                run = self._before_cell(worker, header, drawn_args, uid, run.running["cell"])
        finally:
            self._idle.put(worker)
        # Typical bugs rerun here: one seeds torch's global generator, then draws from it; one that draws
        # without seeding gets the same draws in every run, whichever submissions were judged before.
        with self._seeded(student, "judge", content):
            self._judge(run, submission, cases, expected, report)

    def _before_cell(self, worker: Worker, header: dict, cases: bytes, uid: int | None, slow: int) -> Run:
        """Run the cells before `slow` (a cell the grader had to kill) again, and grade the parts.

        A cell that ignores the alarm is killed with its process, and nothing it defined can be
        graded; the cells before it ran fine, so they run again without it. The run that comes
        back says that cell `slow` timed out, as the harness says for a cell it stopped itself.
        """
        again = {**header, "cells": [cell for cell in header["cells"] if cell[0] < slow]}
        with self._lock:
            uid = next(self._uids) if uid is not None else None
        run = worker.run(again, cases, uid)
        run.events.append({"event": "cell", "phase": "end", "index": slow, "status": "timeout", "error": None})
        return run

    # --- what came back ---------------------------------------------------------------------------

    def _judge(self, run: Run, submission: Submission, cases: dict[str, list[Case]],
               expected: dict[str, list[Outcome]], report: Report) -> None:
        rubric = self.rubric
        static = submission.uses if submission.uses is not None else reference_uses(submission, rubric)
        static_forbidden = submission.forbidden if submission.forbidden is not None \
            else forbidden_uses(submission, rubric)
        events = run.events
        cells = {e.get("index"): e for e in events if e.get("event") == "cell" and e.get("phase") == "end"}
        parts = {e.get("name"): e for e in events if e.get("event") == "part" and e.get("phase") == "end"}
        done = [e for e in events if e.get("event") == "done"]
        setup = [e for e in events if e.get("event") == "setup-failed"]
        defines = {cell.index: cell.defines for cell in submission.cells}
        for index, event in cells.items():
            if event.get("status") == "error" and isinstance(index, int) and len(report.cell_errors) < MAX_LISTED:
                report.cell_errors.append((index, str(event.get("error"))[:300], defines.get(index, ())))
        fatal = self._fatal(run, cells, done, setup)
        if fatal:
            report.status, report.problem = fatal
            if report.status in ("crashed", "error"):
                report.log = crash_log(run.stderr)
        stopped = None if fatal else self._stopped_early(cells)
        if stopped:
            report.status, report.problem = stopped
        for name, max_points in rubric.points.items():
            result = PartResult(name, 0.0, max_points)
            report.parts.append(result)
            used = static.get(name) or self._dynamic_reference(parts.get(name))
            if used:
                result.reference = used
                result.message = result.summary = explain(used, REFERENCE)
                continue
            forbidden = static_forbidden.get(name) or self._dynamic_forbidden(parts.get(name))
            if forbidden:
                result.forbidden = forbidden
                result.message = result.summary = explain(forbidden, FORBIDDEN)
                continue
            if fatal:
                result.message = result.summary = "not graded"
                continue
            event = parts.get(name)
            verdict = self._verdict(name, event, cases[name], expected[name])
            result.message, result.summary = verdict.message, verdict.summary
            if verdict.passed:
                result.points = max_points
                result.message = result.summary = ""
            elif self.partial:
                result.points = self._partial_points(name, event, cases[name], expected[name], max_points)
            if event and event.get("status") in STATUS_WORDS:
                report.status = event["status"]
        if any(part.reference for part in report.parts) and report.status == "graded":
            report.status = "reference"
        if any(part.forbidden for part in report.parts) and report.status == "graded":
            report.status = "forbidden"

    def _fatal(self, run: Run, cells: dict, done: list[dict], setup: list[dict]) -> tuple[str, str] | None:
        """(status, problem) when the run ended early, else None."""
        limits = self.limits
        last_cell = run.running.get("cell") if run.running and "cell" in run.running else None
        last_part = run.running.get("part") if run.running and "part" in run.running else None
        if setup:
            return "error", f"the grader could not start the notebook: {setup[-1].get('error')}"
        for index, event in cells.items():
            status = event.get("status")
            if status == "timeout" and done and not done[-1].get("fatal"):
                continue  # the harness went on and ran the graded functions: see `_stopped_early`
            if status in STATUS_WORDS:
                word = {"timeout": f"ran longer than {limits.cell_timeout:g} s (an infinite loop?)",
                        "memory": f"ran out of memory (limit {limits.memory_mb} MiB)",
                        "processes": f"started too many processes (limit {limits.processes})"}[status]
                error = "" if status == "timeout" else f": {event.get('error')}"
                return status, f"{status}: cell {index} {word}{error}; nothing after it ran"
        if run.killed == "notebook":
            return "timeout", (f"timeout: the notebook ran longer than {limits.notebook_timeout:g} s in all"
                               + (f" (it was in cell {last_cell})" if last_cell is not None else ""))
        if run.killed == "cell":
            return "timeout", (f"timeout: cell {last_cell} ran longer than {limits.cell_timeout:g} s "
                               "(an infinite loop?); nothing after it ran")
        if run.killed == "part":
            return "timeout", (f"timeout: {last_part} ran longer than {limits.cell_timeout:g} s on the grader's "
                               "cases (an infinite loop?)")
        broken = [e for e in run.events if e.get("event") == "harness-failed"]
        if broken:
            return "crashed", (f"crashed: after {_where(last_cell, last_part)} the grading harness failed "
                               f"({broken[-1].get('error')}): did the notebook replace Python or grader internals?")
        if run.killed == "worker":
            return "crashed", f"crashed: the grading worker stopped while running {_where(last_cell, last_part)}"
        if any(e.get("event") == "overflow" for e in run.events):
            return "error", "the notebook sent the grader too much data"
        if done:
            return None
        code = run.returncode
        where = _where(last_cell, last_part)
        if code is not None and (code < 0 or code > 128):
            number = -code if code < 0 else code - 128
            name = _signal_name(number)
            if number == 9:
                return "memory", f"memory: {where} was killed (SIGKILL), most likely for using too much memory"
            return "crashed", f"crashed: {where} crashed the Python process ({name}); nothing after it ran"
        return "crashed", (f"crashed: {where} ended the Python process (exit code {code}; os._exit or a "
                           "crash?); nothing after it ran")

    def _stopped_early(self, cells: dict) -> tuple[str, str] | None:
        """(status, problem) when a cell ran past its time limit but the parts were graded anyway,
        as the cells before it had defined them."""
        slow = [index for index, event in cells.items() if isinstance(index, int) and event.get("status") == "timeout"]
        if not slow:
            return None
        return "timeout", (f"timeout: cell {min(slow)} ran longer than {self.limits.cell_timeout:g} s (an infinite "
                           "loop?) and stopped the run; the cells after it did not run, and each function was "
                           "graded as the cells before it defined it")

    @staticmethod
    def _dynamic_reference(event: dict | None) -> str:
        if not event:
            return ""
        if event.get("is_reference") is True:
            return "the graded function is the one from dl4nlp"
        calls = event.get("calls")
        if isinstance(calls, list) and calls:
            return f"calls {', '.join(str(c) for c in calls[:3])}"
        return ""

    @staticmethod
    def _dynamic_forbidden(event: dict | None) -> str:
        """The first forbidden call the harness saw while the part ran ("uses torch.lstm_cell in f (cell 8)")."""
        found = event.get("forbidden") if event else None
        if isinstance(found, list) and found:
            return str(found[0])[:200]
        return ""

    def _verdict(self, name: str, event: dict | None, cases: list[Case], expected: list) -> Verdict:
        if event is None:
            return Verdict(False, "not run: the notebook stopped before it", "not run")
        if event.get("problem"):
            problem = str(event["problem"])
            if event.get("status") == "timeout":
                problem = f"ran longer than {self.limits.cell_timeout:g} s on the grader's cases"
            return Verdict(False, problem, _hidden_problem(name, event))
        try:
            outcomes = _load_outcomes(str(event.get("outputs", "")), len(cases))
        except ValueError as error:
            return Verdict(False, f"its outputs could not be read ({error})", "its outputs could not be read")
        return _hide_messages(judge(self.rubric.exercises.part(name), cases, expected, outcomes),
                              self.rubric.exercises.part(name), cases, expected, outcomes)

    def _partial_points(self, name: str, event: dict | None, cases: list[Case], expected: list,
                        max_points: float) -> float:
        """With --partial: the part's points times the fraction of cases passed (0 if it did not run)."""
        if event is None or event.get("problem"):
            return 0.0
        try:
            outcomes = _load_outcomes(str(event.get("outputs", "")), len(cases))
        except ValueError:
            return 0.0
        return round(max_points * passed_fraction(self.rubric.exercises.part(name), cases, expected, outcomes), 2)


# --- what feedback that hides the cases may say -----------------------------------------------------
# Text a graded function produced while it ran on the grader's cases (an exception's message, or
# anything the submission wrote on the report channel then) can carry those cases. Under
# --hide-cases the feedback shows `summary`, so summaries never hold such text.

HIDDEN_MESSAGE = "its message is not shown, as it may depend on the hidden case"


def _hidden_problem(name: str, event: dict) -> str:
    """A part's problem as a fixed sentence: the harness's own text cannot be told from a forgery."""
    problem = str(event.get("problem", ""))
    if event.get("status") == "timeout":
        return "ran longer than the time limit on the grader's cases"
    if event.get("status") in ("memory", "processes"):
        return STATUS_WORDS[event["status"]] + " on the grader's cases"
    if problem == f"{name} is not defined":
        return problem
    if problem.startswith(f"{name} is a ") and problem.endswith(", not a function"):
        return f"{name} is not a function"
    if problem.startswith("its outputs"):
        return "its outputs could not be stored or are too large"
    return f"it raised an exception on a hidden case ({HIDDEN_MESSAGE})"


def _exception_type(error: str) -> str:
    """The exception's class name from "Name: message", if it looks like one; else "an exception"."""
    name = error.split(":", 1)[0].strip()
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,59}", name) else "an exception"


def _without_messages(outcomes: list[Outcome]) -> list[Outcome]:
    hidden = []
    for outcome in outcomes:
        error = outcome.error
        if error is not None and not error.startswith("not implemented"):
            error = f"it raised {_exception_type(error)} on a hidden case ({HIDDEN_MESSAGE})"
        elif error is not None:
            error = "not implemented yet (NotImplementedError)"
        hidden.append(Outcome(output=outcome.output, gradients=outcome.gradients, error=error))
    return hidden


def _hide_messages(verdict: Verdict, part, cases: list[Case], expected: list, outcomes: list[Outcome]) -> Verdict:
    """`verdict` with a summary in which no exception message of the graded function appears."""
    if verdict.passed or not any(outcome.error for outcome in outcomes):
        return verdict
    hidden = judge(part, cases, expected, _without_messages(outcomes))
    return Verdict(verdict.passed, verdict.message, hidden.summary, verdict.bug)


def crash_log(stderr: str, limit: int = 3000) -> str:
    """Where a run crashed: faulthandler's report from the job's stderr ("Fatal Python error: ..." and the
    stack), without its long list of extension modules; else the end of stderr."""
    start = stderr.rfind("Fatal Python error")
    text = stderr[start:] if start >= 0 else stderr[-limit:]
    lines = [line for line in text.splitlines() if not line.startswith("Extension modules:")]
    return "\n".join(lines)[:limit]


def read_bounded(path: Path) -> bytes:
    """A notebook's bytes; InvalidSubmission, without reading it, if the file is larger than a notebook may be.

    The size comes from stat() first (a sparse file can claim 4 GB and cost nothing on disk),
    and no more than the limit is ever read, should the file grow meanwhile.
    """
    limit = MAX_NOTEBOOK_BYTES
    too_large = InvalidSubmission(f"{path.name} is larger than {limit // 2**20} MB: clear the outputs "
                                  "(Edit > Clear all outputs) and download it again")
    if path.stat().st_size > limit:
        raise too_large
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


def download_names(entry: Path, name: str) -> list[Path]:
    """The files in `entry` named as browsers and Colab save `name`: "Copy of rnn.ipynb", "rnn (1).ipynb",
    "Copy of rnn (2).ipynb", "rnn(1).ipynb", "rnn.ipynb.ipynb"; sorted by name."""
    stem, suffix = re.escape(Path(name).stem), re.escape(Path(name).suffix)
    pattern = re.compile(rf"(Copy of )*{stem}( ?\(\d+\))?({suffix})+")
    return sorted((p for p in entry.iterdir() if p.name != name and pattern.fullmatch(p.name) and p.is_file()),
                  key=lambda p: p.name)


def _load_outcomes(encoded: str, count: int) -> list[Outcome]:
    """The harness's outputs, loaded as plain data only (no pickled objects, no tensor subclasses)."""
    try:
        data = torch.load(io.BytesIO(b64decode(encoded, validate=True)), weights_only=True)
    except Exception as error:  # noqa: BLE001 - anything unreadable is rejected
        raise ValueError(f"{type(error).__name__}") from None
    if not isinstance(data, list) or len(data) != count:
        raise ValueError("wrong number of results")
    outcomes = []
    for item in data:
        if not isinstance(item, (tuple, list)) or len(item) != 3 or not isinstance(item[2], (str, type(None))):
            raise ValueError("malformed result")
        output, gradients, error = item
        _check_plain(output)
        if gradients != NOT_DIFFERENTIABLE:
            if not isinstance(gradients, (tuple, list)) or not all(type(g) is torch.Tensor for g in gradients):
                raise ValueError("malformed gradients")
            gradients = tuple(gradients)
        outcomes.append(Outcome(output=output, gradients=gradients, error=error))
    return outcomes


def _check_plain(value: object, depth: int = 0) -> None:
    if depth > 5:
        raise ValueError("nested too deeply")
    if type(value) is torch.Tensor or value is None or type(value) in (bool, int, float, str):
        return
    if type(value) in (tuple, list):
        for item in value:
            _check_plain(item, depth + 1)
        return
    raise ValueError(f"unexpected {type(value).__name__}")


def _where(cell: object, part: object) -> str:
    if cell is not None:
        return f"cell {cell}"
    return f"{part} (called on the grader's cases)" if part is not None else "the notebook"


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- the whole folder ---------------------------------------------------------------------------


@dataclass
class GradedFolder:
    """What grading a submissions folder gave: one report per entry, sorted by name."""

    reports: list[Report]
    warnings: list[str]
    mode: str
    notes: list[str] = field(default_factory=list)  # what the limits mean, for the instructor


def grade_folder(root: Path, assignment: str, submissions: Path, *, jobs: int = 1, limits: Limits = Limits(),
                 private: list[Path] = (), progress: Callable[[Report], None] | None = None,
                 select: Callable[[list[Path]], list[Path]] | None = None, partial: bool = False) -> GradedFolder:
    """Grade every entry of `submissions` (or those `select` keeps: one student, a shard); sorted by name."""
    if not submissions.is_dir():
        raise GradingError(f"submissions folder {submissions} does not exist")
    torch.set_num_threads(1)
    grader = Grader(root, assignment, submissions, limits, list(private), partial)
    try:
        entries = select(grader.entries()) if select else grader.entries()
        grader.start_workers(max(1, min(jobs, len(entries))))
        warnings = [grader.sandbox.warning] if grader.sandbox.warning else []
        notes = [memory_note(limits)]

        def grade(entry: Path) -> Report:
            report = grader.grade(entry)
            if progress:
                progress(report)
            return report

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            reports = list(pool.map(grade, entries))
        return GradedFolder(reports, warnings, grader.sandbox.mode, notes)
    finally:
        grader.close()
