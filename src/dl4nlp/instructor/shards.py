"""Grading a class on several machines: `--shard K/N` and `dl4nlp merge`.

A shard is chosen by a stable hash of the student's folder name (SHA-256, not Python's
`hash()`, which changes from one process to the next), so every machine, whatever its
Python or its order of listing files, puts each student in the same shard, and the N
shards together hold every entry exactly once. Grading a student does not depend on
the other students, so merging the shards' CSVs gives the CSV of grading everything
at once, byte for byte.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dl4nlp.instructor.gradebook import COLUMNS, GradebookError, read_rows, sort_key, write_table


def parse_shard(text: str) -> tuple[int, int]:
    """(K, N) from "K/N" with 1 <= K <= N; a clear error otherwise."""
    try:
        index, count = (int(piece) for piece in text.split("/"))
    except ValueError:
        raise GradebookError(f"--shard {text!r}: expected K/N, e.g. 2/8 (the 2nd of 8 shards)") from None
    if not 1 <= index <= count:
        raise GradebookError(f"--shard {text!r}: K must be between 1 and N")
    return index, count


def shard_of(student: str, count: int) -> int:
    """The shard (1..count) a student's folder name falls into: the same on every machine."""
    digest = hashlib.sha256(student.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def in_shard(entries: list[Path], index: int, count: int) -> list[Path]:
    """The entries of shard `index` of `count`, in their order."""
    return [entry for entry in entries if shard_of(entry.name, count) == index]


def merge(paths: list[Path], out: Path, expected: list[str] | None = None) -> int:
    """Join the shards' grades.csv files into `out`; returns the number of rows.

    Every (student, assignment) must appear exactly once across the shards; with `expected`
    (the entries of the submissions folder) every one of them must appear, and nothing else.
    The rows are sorted by student as one unsharded run writes them.
    """
    seen: dict[tuple[str, str], Path] = {}
    rows: list[list[str]] = []
    problems: list[str] = []
    for path in paths:
        for line in read_rows(path):
            key = (sort_key(line[0]), line[1])
            if key in seen:
                problems.append(f"{key[0]} ({key[1]}) is in both {seen[key]} and {path}")
                continue
            seen[key] = path
            rows.append(line)
    if expected is not None:
        assignments = sorted({assignment for _, assignment in seen}) or [""]
        graded = {student for student, _ in seen}
        problems += [f"{name} has no row in any shard: grade its shard again"
                     for name in expected if name not in graded]
        problems += [f"{student} has a row but is not an entry of the submissions folder"
                     for student in sorted(graded - set(expected))]
        if len(assignments) > 1:
            problems.append(f"the shards grade different assignments ({', '.join(assignments)})")
    if problems:
        listed = "\n  ".join(problems[:50]) + (f"\n  and {len(problems) - 50} more" if len(problems) > 50 else "")
        raise GradebookError(f"cannot merge {len(paths)} CSV file(s), every entry must appear exactly once:\n  "
                             f"{listed}")
    rows.sort(key=lambda line: (line[1], sort_key(line[0])))
    write_table(COLUMNS, rows, out)
    return len(rows)
