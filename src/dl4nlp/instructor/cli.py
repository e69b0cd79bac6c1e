"""The `dl4nlp` command: instructor and contributor tooling, one module per command.

    dl4nlp release [ASSIGNMENT]                     regenerate assignments/ from solutions/ (nbgrader)
    dl4nlp collect ASSIGNMENT ZIP_OR_FOLDER --out SUBMISSIONS_DIR [--deadline 2026-10-02T23:59]
    dl4nlp autograde ASSIGNMENT SUBMISSIONS_DIR --out grades.csv [--jobs N] [--feedback DIR]
                     [--overrides overrides.csv] [--partial] [--student NAME | --shard K/N]
    dl4nlp feedback ASSIGNMENT SUBMISSIONS_DIR --out DIR [--hide-cases]
    dl4nlp merge SHARD.csv ... --out grades.csv [--submissions SUBMISSIONS_DIR]
    dl4nlp export GRADES.csv ... --roster roster.csv --format canvas|moodle|wide --out FILE
    dl4nlp sync                                     re-derive solution, setup and badge cells
    dl4nlp book [--smoke] [--output DIR]            build the book: every page executed, offline, on the CPU

Run from the repository root (the folder with _config.yml).
"""

from __future__ import annotations

import argparse
import os
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
    from dl4nlp.instructor.autograde.rubric import load_rubric
    from dl4nlp.instructor.autograde.sandbox import Limits
    from dl4nlp.instructor.feedback import write_feedback
    from dl4nlp.instructor.late import read_late
    from dl4nlp.instructor.overrides import apply_overrides, check_overrides, read_overrides
    from dl4nlp.instructor.gradebook import visible

    start = time.perf_counter()
    limits = Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.timeout, memory_mb=args.memory_mb)
    submissions = Path(args.submissions).resolve()
    select = _selection(args, submissions)
    late = read_late(submissions)
    overrides = read_overrides(Path(args.overrides)) if args.overrides else []
    points = load_rubric(root, args.assignment).points
    check_overrides(overrides, args.assignment, points)  # a typo stops the run before grading, not after

    def progress(report) -> None:
        print(f"{visible(report.student):<24} {report.score:>5g}/{report.max_score:g}  {report.status}", flush=True)
        if report.log.strip():  # a crash: where it happened, for you (students never see this)
            print(f"dl4nlp {args.command}: {visible(report.student)} {report.status}; the sandbox said:\n"
                  + visible(report.log.strip()).replace("\\n", "\n"), file=sys.stderr, flush=True)

    private = [path.resolve().parent if path.suffix else path.resolve() for path in (csv_path, feedback) if path]
    graded = grade_folder(root, args.assignment, submissions, jobs=args.jobs, limits=limits, private=private,
                          progress=progress, select=select, partial=args.partial)
    warnings = apply_overrides(graded.reports, overrides, args.assignment, points)
    for report in graded.reports:
        for part in report.parts:
            if part.override:
                print(f"{report.student:<24} {part.name}: {part.automatic:g} -> {part.points:g} by overrides.csv "
                      f"({part.override}); score {report.score:g}/{report.max_score:g}")
    for warning in graded.warnings + ([] if select else warnings):
        print(f"dl4nlp {args.command}: warning: {warning}", file=sys.stderr)
    for note in graded.notes:
        print(f"dl4nlp {args.command}: note: {note}", file=sys.stderr)
    if csv_path is not None:
        rows = [gradebook.row(report, late.get(report.student, "")) for report in graded.reports]
        if args.student and csv_path.exists():
            gradebook.update_csv(csv_path, rows)  # that row replaced, every other one byte for byte as it was
        else:
            gradebook.write_csv(rows, csv_path)
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


def _selection(args: argparse.Namespace, submissions: Path):
    """What --student or --shard keeps of the submissions folder's entries (None: everything)."""
    from dl4nlp.instructor.shards import in_shard, parse_shard

    if args.student and args.shard:
        raise RuntimeError("--student and --shard cannot be used together")
    if args.student:
        if not os.path.lexists(submissions / args.student) or args.student.startswith(".") or "/" in args.student:
            raise FileNotFoundError(f"{args.student} is not an entry of {submissions}")
        return lambda entries: [entry for entry in entries if entry.name == args.student]
    if args.shard:
        index, count = parse_shard(args.shard)
        return lambda entries: in_shard(entries, index, count)
    return None


def _collect(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp.instructor.autograde.rubric import load_rubric
    from dl4nlp.instructor.late import LATE_FILE, collect, parse_deadline

    notebook = load_rubric(root, args.assignment).notebook
    out = Path(args.out)
    collected = collect(notebook, Path(args.source), out, parse_deadline(args.deadline))
    for note in collected.notes:
        print(f"note: {note}")
    for name in collected.skipped:
        print(f"skipped {name}: not a Canvas download name (student_[LATE_]userid_submissionid_file)")
    late = ", ".join(f"{student} ({days})" for student, days in sorted(collected.late.items())) or "none"
    print(f"{len(collected.students)} students filed under {out}/<student>/{notebook}; late: {late} "
          f"-> {out / LATE_FILE}")
    return 0


def _merge(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp.instructor.shards import merge

    expected = None
    if args.submissions:
        folder = Path(args.submissions)
        if not folder.is_dir():
            raise FileNotFoundError(f"submissions folder {folder} does not exist")
        expected = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    count = merge([Path(p) for p in args.csvs], Path(args.out), expected)
    print(f"{count} rows from {len(args.csvs)} CSV file(s) -> {args.out}")
    return 0


def _export(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp.instructor.export import export, report_path
    from dl4nlp.instructor.late import LatePolicy

    columns = {}
    for given in args.column:
        assignment, _, header = given.partition("=")
        if not header:
            raise RuntimeError(f"--column {given!r}: expected ASSIGNMENT=COLUMN, e.g. rnn='RNN cells (12345)'")
        columns[assignment] = header
    policy = LatePolicy(args.late_penalty, args.late_days_unknown, args.late_max_days)
    out = Path(args.out)
    result = export([Path(p) for p in args.csvs], Path(args.roster), args.format, out, policy=policy,
                    canvas_gradebook=Path(args.canvas_gradebook) if args.canvas_gradebook else None,
                    columns=columns, moodle_id=args.moodle_id)
    for assignment in result.assignments:
        if result.missing[assignment]:
            print(f"{assignment}: no submission, exported as 0: {', '.join(result.missing[assignment])}")
        if result.unmatched[assignment]:
            print(f"dl4nlp export: warning: {assignment}: graded but in no roster entry: "
                  f"{', '.join(result.unmatched[assignment])}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}")
    print(f"{result.students} students -> {out} (report: {report_path(out)})")
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
    parser.add_argument("--overrides", help="overrides.csv (student,assignment,part,points,reason) applied on top "
                                            "of the automatic points")
    parser.add_argument("--partial", action="store_true",
                        help="a part earns the fraction of its cases passed (default: all or nothing)")
    parser.add_argument("--student", help="grade only this entry; with --out, update its row of an existing CSV")
    parser.add_argument("--shard", help="grade only shard K of N (K/N, e.g. 2/8), chosen by a stable hash of the "
                                        "student's name; join the shards' CSVs with dl4nlp merge")


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
    collect = commands.add_parser("collect", help="file a Canvas download (zip or folder) into a submissions folder")
    collect.add_argument("assignment")
    collect.add_argument("source", help="the LMS's zip of submissions, or the folder it was extracted into")
    collect.add_argument("--out", required=True, help="submissions folder: one folder per student")
    collect.add_argument("--deadline", help="due date, e.g. 2026-10-02T23:59: late days from the files' times")
    collect.set_defaults(run=_collect)
    merge = commands.add_parser("merge", help="join the CSVs of --shard runs into one grades.csv")
    merge.add_argument("csvs", nargs="+", help="the shards' grades.csv files")
    merge.add_argument("--out", required=True, help="the merged CSV")
    merge.add_argument("--submissions", help="check that every entry of this folder has exactly one row")
    merge.set_defaults(run=_merge)
    export = commands.add_parser("export", help="grades.csv files into a file the LMS imports")
    export.add_argument("csvs", nargs="+", help="grades.csv files (one or more assignments)")
    export.add_argument("--roster", required=True, help="CSV: student (submission folder name), email, "
                                                         "sis_login_id, ...")
    export.add_argument("--format", required=True, choices=["canvas", "moodle", "wide"])
    export.add_argument("--out", required=True, help="the file to import (a report goes to OUT.report.txt)")
    export.add_argument("--canvas-gradebook", help="canvas: the gradebook CSV exported from Canvas")
    export.add_argument("--column", action="append", default=[], metavar="ASSIGNMENT=COLUMN",
                        help="canvas: the column of an assignment, when it is not named 'ASSIGNMENT (id)'")
    export.add_argument("--moodle-id", default="email", choices=["email", "username", "idnumber"],
                        help="moodle: how Moodle identifies students (default: email)")
    export.add_argument("--late-penalty", type=float, default=0.0,
                        help="percent of the maximum score taken off per day late (default: 0, no penalty)")
    export.add_argument("--late-days-unknown", type=int, default=1,
                        help="days counted for a late submission whose days are not known (default: 1)")
    export.add_argument("--late-max-days", type=int, help="more days late than this score 0 (default: no limit)")
    export.set_defaults(run=_export)
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
