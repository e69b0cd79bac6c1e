"""How many submissions per minute `dl4nlp autograde` grades, against plain `nbgrader autograde`.

    .venv/bin/python benchmarks/grading_throughput.py [--assignment rnn] [-n 30] [--jobs 1 2] [--no-nbgrader]

Makes N honest submissions (copies of the instructor notebook, one folder per student),
then times, from the repository root:
- `dl4nlp autograde ASSIGNMENT SUBMISSIONS --jobs J` for each J (the whole command: start-up,
  sandbox, workers, CSV), and checks that every submission got full marks;
- plain nbgrader on the same submissions, one `nbgrader autograde ASSIGNMENT --student S`
  per student in a scratch course (after one `nbgrader generate_assignment`), as an
  instructor without this tool would run it; smoke mode for both.
Prints submissions per minute for each; for dl4nlp also the rate after start-up (the command
on one submission is timed too: start-up is paid once per run, whatever the class size) and
per core (J jobs use min(J, CPUs) cores): the number to size `--shard K/N` runs with, since
N machines of C cores each grade about N * C times the per-core rate.
A benchmark, not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENT = {**os.environ, "DL4NLP_SMOKE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
               "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def make_submissions(folder: Path, notebook: Path, count: int) -> list[str]:
    students = [f"student{index:03d}" for index in range(count)]
    for student in students:
        (folder / student).mkdir(parents=True)
        shutil.copy(notebook, folder / student / notebook.name)
    return students


def dl4nlp_rate(assignment: str, submissions: Path, jobs: int, out: Path) -> tuple[float, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dl4nlp", "autograde", assignment, str(submissions), "--out", str(out),
                    "--jobs", str(jobs)], cwd=ROOT, env=ENVIRONMENT, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(float(r["score"]) == float(r["max_score"]) for r in rows), "an honest submission lost points"
    return seconds, len(rows) / seconds * 60


def nbgrader_rate(assignment: str, notebook: Path, students: list[str], scratch: Path) -> tuple[float, float]:
    course = scratch / "nbgrader-course"
    (course / "solutions").mkdir(parents=True)
    shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    nbgrader = [sys.executable, "-m", "nbgrader"]
    subprocess.run([*nbgrader, "generate_assignment", assignment, "--force"], cwd=course, env=ENVIRONMENT,
                   check=True, capture_output=True)
    for student in students:
        target = course / "submitted" / student / assignment
        target.mkdir(parents=True)
        shutil.copy(notebook, target / notebook.name)
    start = time.perf_counter()
    for student in students:
        subprocess.run([*nbgrader, "autograde", assignment, "--student", student, "--force"], cwd=course,
                       env=ENVIRONMENT, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    return seconds, len(students) / seconds * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="rnn")
    parser.add_argument("-n", type=int, default=30, help="number of submissions (default: 30)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-nbgrader", action="store_true", help="skip plain nbgrader (slow)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    notebook = next((ROOT / "solutions" / args.assignment).glob("*.ipynb"))
    results = {"assignment": args.assignment, "submissions": args.n, "machine": platform.platform(),
               "cpus": os.cpu_count(), "load_average_before": os.getloadavg(), "rates": {}}
    with tempfile.TemporaryDirectory(prefix="dl4nlp-benchmark-") as scratch:
        submissions = Path(scratch) / "submissions"
        students = make_submissions(submissions, notebook, args.n)
        one = Path(scratch) / "one"
        make_submissions(one, notebook, 1)
        for jobs in args.jobs:
            startup, _ = dl4nlp_rate(args.assignment, one, jobs, Path(scratch) / f"one-{jobs}.csv")
            seconds, rate = dl4nlp_rate(args.assignment, submissions, jobs, Path(scratch) / f"grades-{jobs}.csv")
            marginal = (args.n - 1) / max(seconds - startup, 1e-9) * 60
            results["rates"][f"dl4nlp autograde --jobs {jobs}"] = rate
            results["rates"][f"dl4nlp autograde --jobs {jobs}, after start-up"] = marginal
            cores = max(1, min(jobs, os.cpu_count() or 1))
            results["rates"][f"dl4nlp autograde --jobs {jobs}, per core"] = rate / cores
            print(f"dl4nlp autograde --jobs {jobs}: {args.n} submissions in {seconds:.1f} s = {rate:.1f} per minute "
                  f"(one submission: {startup:.1f} s, so {marginal:.1f} per minute after start-up; "
                  f"{rate / cores:.1f} per minute per core on {cores} core(s))", flush=True)
        if not args.no_nbgrader:
            seconds, rate = nbgrader_rate(args.assignment, notebook, students, Path(scratch))
            results["rates"]["nbgrader autograde, one per student"] = rate
            print(f"nbgrader autograde (one per student): {args.n} submissions in {seconds:.1f} s = "
                  f"{rate:.1f} per minute", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
