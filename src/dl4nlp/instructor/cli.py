"""The `dl4nlp` command: instructor and contributor tooling, one module per command.

    dl4nlp release [ASSIGNMENT]                     regenerate assignments/ from solutions/ (nbgrader)
    dl4nlp autograde ASSIGNMENT SUBMISSIONS_DIR --out grades.csv [--jobs N] [--feedback DIR]
    dl4nlp feedback ASSIGNMENT SUBMISSIONS_DIR --out DIR [--hide-cases]
    dl4nlp sync                                     re-derive solution, setup and badge cells
    dl4nlp book [--smoke] [--output DIR]            build the book: every page executed, offline, on the CPU

Run from the repository root (the folder with _config.yml).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _release(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp.instructor.release import assignments, release

    for assignment in [args.assignment] if args.assignment else assignments(root):
        for notebook in release(root, assignment):
            print(f"released {notebook.relative_to(root)}")
    return 0


def _grade(args: argparse.Namespace, root: Path, csv_path: Path | None, feedback: Path | None) -> int:
    from dl4nlp.instructor import gradebook
    from dl4nlp.instructor.autograde.grader import grade_folder
    from dl4nlp.instructor.autograde.sandbox import Limits
    from dl4nlp.instructor.feedback import write_feedback
    from dl4nlp.instructor.gradebook import visible

    start = time.perf_counter()
    limits = Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.timeout, memory_mb=args.memory_mb)
    submissions = Path(args.submissions).resolve()

    def progress(report) -> None:
        print(f"{visible(report.student):<24} {report.score:>5g}/{report.max_score:g}  {report.status}", flush=True)

    private = [path.resolve().parent if path.suffix else path.resolve() for path in (csv_path, feedback) if path]
    graded = grade_folder(root, args.assignment, submissions, jobs=args.jobs, limits=limits, private=private,
                          progress=progress)
    for warning in graded.warnings:
        print(f"dl4nlp {args.command}: warning: {warning}", file=sys.stderr)
    for note in graded.notes:
        print(f"dl4nlp {args.command}: note: {note}", file=sys.stderr)
    if csv_path is not None:
        gradebook.write_csv([gradebook.row(report) for report in graded.reports], csv_path)
    if feedback is not None:
        _, problems = write_feedback(graded.reports, feedback, args.hide_cases)
        for problem in problems:
            print(f"dl4nlp {args.command}: warning: {problem}", file=sys.stderr)
    seconds = time.perf_counter() - start
    rate = len(graded.reports) / seconds * 60 if seconds else 0.0
    written = " and ".join(str(p) for p in (csv_path, feedback) if p is not None)
    print(f"{len(graded.reports)} submissions graded in {seconds:.1f} s ({rate:.0f} per minute, {args.jobs} job(s), "
          f"{graded.mode}) -> {written}")
    return 0


def _autograde(args: argparse.Namespace, root: Path) -> int:
    return _grade(args, root, Path(args.out), Path(args.feedback) if args.feedback else None)


def _feedback(args: argparse.Namespace, root: Path) -> int:
    return _grade(args, root, None, Path(args.out))


def _grading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignment")
    parser.add_argument("submissions", help="folder with one folder per student holding the released notebook")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default: 1)")
    parser.add_argument("--hide-cases", "--hide-hidden", dest="hide_cases", action="store_true",
                        help="feedback says what failed but not on which of the grader's cases")
    parser.add_argument("--cell-timeout", type=float, default=120.0,
                        help="seconds per notebook cell and per graded function (default: 120)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per notebook (default: 600)")
    parser.add_argument("--memory-mb", type=int, default=4096,
                        help="address space of each process of a submission in MiB (RLIMIT_AS; default: 4096); "
                             "not a bound on the submission as a whole, which may start up to 64 processes")


def _sync(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp.instructor.sync import course_markdown, course_notebooks, sync_markdown, sync_notebook

    for notebook in course_notebooks(root):
        if sync_notebook(notebook, root):
            print(f"updated {notebook.relative_to(root)}")
    for page in course_markdown(root):
        if sync_markdown(page, root):
            print(f"updated {page.relative_to(root)}")
    return 0


def _book(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp.instructor.book import build_book

    return build_book(root, smoke=args.smoke, output=Path(args.output) if args.output else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dl4nlp", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    release = commands.add_parser("release", help="regenerate student notebooks from solutions/ with nbgrader")
    release.add_argument("assignment", nargs="?", help="one assignment (default: all)")
    release.set_defaults(run=_release)
    grade = commands.add_parser("autograde", help="autograde a folder of submissions into a CSV")
    _grading_options(grade)
    grade.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    grade.add_argument("--feedback", help="also write one HTML feedback page per student into this folder")
    grade.set_defaults(run=_autograde)
    feedback = commands.add_parser("feedback", help="grade a folder of submissions into HTML feedback pages")
    _grading_options(feedback)
    feedback.add_argument("--out", required=True, help="folder for the pages, one per student")
    feedback.set_defaults(run=_feedback)
    sync = commands.add_parser("sync", help="re-derive solution, setup and badge cells from the package and _config.yml")
    sync.set_defaults(run=_sync)
    book = commands.add_parser("book", help="build the book into _build/html")
    book.add_argument("--smoke", action="store_true", help="tiny training runs (DL4NLP_SMOKE=1)")
    book.add_argument("--output", help="output folder (default: _build in the repository)")
    book.set_defaults(run=_book)
    args = parser.parse_args(argv)

    from dl4nlp.instructor.sync import project_root

    try:
        return args.run(args, project_root())
    except (FileNotFoundError, RuntimeError) as error:
        print(f"dl4nlp {args.command}: {error}", file=sys.stderr)
        return 2
