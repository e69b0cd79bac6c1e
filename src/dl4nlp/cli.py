"""The `dl4nlp` command: instructor and contributor tooling.

    dl4nlp release [ASSIGNMENT]                     regenerate assignments/ from solutions/ (nbgrader)
    dl4nlp autograde ASSIGNMENT SUBMISSIONS_DIR --out grades.csv
    dl4nlp sync                                     re-derive solution, setup and badge cells
    dl4nlp book [--smoke] [--output DIR]            build the book: every page executed, offline, on the CPU

Run from the repository root (the folder with _config.yml).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def _release(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp import grading

    for assignment in [args.assignment] if args.assignment else grading.assignments(root):
        for notebook in grading.release(root, assignment):
            print(f"released {notebook.relative_to(root)}")
    return 0


def _autograde(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp import grading

    start = time.perf_counter()
    rows = grading.autograde(root, args.assignment, Path(args.submissions).resolve())
    grading.write_csv(rows, Path(args.out))
    for row in rows:
        print(f"{row.student:<20} {row.score:>5g}/{row.max_score:g}  {row.status}")
    print(f"{len(rows)} submissions graded in {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


def _sync(args: argparse.Namespace, root: Path) -> int:
    from dl4nlp.notebooks import course_notebooks, sync_notebook

    for notebook in course_notebooks(root):
        if sync_notebook(notebook, root):
            print(f"updated {notebook.relative_to(root)}")
    return 0


def _book(args: argparse.Namespace, root: Path) -> int:
    return build_book(root, smoke=args.smoke, output=Path(args.output) if args.output else None)


def build_book(root: Path, *, smoke: bool = False, output: Path | None = None) -> int:
    """Build the book with every warning an error; offline; rebuilds all pages (execution stays cached)."""
    environment = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "MPLBACKEND": "Agg"}
    environment.pop("DL4NLP_SMOKE", None)
    if smoke:
        environment["DL4NLP_SMOKE"] = "1"
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--all",
               "--warningiserror", "--nitpick", "--keep-going"]
    if output is not None:
        command += ["--path-output", str(output)]
    start = time.perf_counter()
    code = subprocess.run(command, env=environment).returncode
    print(f"book build {'succeeded' if code == 0 else 'FAILED'} in {time.perf_counter() - start:.0f} s")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dl4nlp", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    release = commands.add_parser("release", help="regenerate student notebooks from solutions/ with nbgrader")
    release.add_argument("assignment", nargs="?", help="one assignment (default: all)")
    release.set_defaults(run=_release)
    grade = commands.add_parser("autograde", help="autograde a folder of submissions into a CSV")
    grade.add_argument("assignment")
    grade.add_argument("submissions", help="folder with one folder per student holding the released notebook")
    grade.add_argument("--out", default="grades.csv", help="CSV to write (default: grades.csv)")
    grade.set_defaults(run=_autograde)
    sync = commands.add_parser("sync", help="re-derive solution, setup and badge cells from the package and _config.yml")
    sync.set_defaults(run=_sync)
    book = commands.add_parser("book", help="build the book into _build/html")
    book.add_argument("--smoke", action="store_true", help="tiny training runs (DL4NLP_SMOKE=1)")
    book.add_argument("--output", help="output folder (default: _build in the repository)")
    book.set_defaults(run=_book)
    args = parser.parse_args(argv)

    from dl4nlp.notebooks import project_root

    try:
        return args.run(args, project_root())
    except (FileNotFoundError, RuntimeError) as error:
        print(f"dl4nlp {args.command}: {error}", file=sys.stderr)
        return 2
