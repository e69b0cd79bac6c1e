"""Does every typical bug fail on every draw? Grade each part's typical bugs on many draws of its cases.

The round-trip test grades each typical bug once, on the cases that run's secret draws. A case set
that exposes a bug only on most draws passes that test most of the time and fails CI now and then
(cnn's `classify` with pooling that ignores the lengths slipped through 2 draws in 300). Run this
after changing a part's cases or adding a bug:

    python scripts/audit_bugs.py                      # every assignment, 20 draws per part
    python scripts/audit_bugs.py cnn --draws 300      # one assignment, more draws

A part stops after --seconds (default 60) even if it has not drawn --draws times. The exit status
is 1 when a bug passed a draw (it is then listed with the number of draws it passed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dl4nlp import exercises

ROOT = Path(__file__).resolve().parent.parent


def audit(assignment: str, draws: int, seconds: float) -> bool:
    """Print one line per part with typical bugs; True if every bug failed every draw."""
    clean = True
    for part in exercises.load(assignment).parts:
        if not part.bugs:
            continue
        start, passed, done = time.perf_counter(), dict.fromkeys(part.bugs, 0), 0
        while done < draws and time.perf_counter() - start < seconds:
            cases = part.cases(exercises.generator("audit", assignment, part.name, str(done)))
            expected = exercises.reference_outcomes(part, cases)
            for name, bug in part.bugs.items():
                outcomes = [exercises.call(bug, case, part.effects) for case in cases]
                passed[name] += exercises.judge(part, cases, expected, outcomes).passed
            done += 1
        slipped = {name: count for name, count in passed.items() if count}
        clean &= not slipped
        print(f"{assignment}.{part.name}: {len(part.bugs)} bugs, {done} draws, "
              f"{time.perf_counter() - start:.0f} s: " + (f"PASSED {slipped}" if slipped else "every bug failed"),
              flush=True)
    return clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignments", nargs="*", help="default: every folder in solutions/")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per part")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.assignments or sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    results = [audit(name, args.draws, args.seconds) for name in names]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
