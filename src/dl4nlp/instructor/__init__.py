"""Instructor tooling: one module per command of the `dl4nlp` command line.

    release.py     dl4nlp release    student notebooks from solutions/ (nbgrader generate_assignment)
    sync.py        dl4nlp sync       solution cells, points, badges and install cells from the package
    book.py        dl4nlp book       the book, every page executed offline
    execution.py   running a notebook that goes on when the kernel's reply to a cell is lost
    autograde/     dl4nlp autograde  grade a folder of submissions, contained, into grades.csv
    feedback.py    dl4nlp feedback   one HTML page per student
    gradebook.py   grades.csv: one row per entry of a submissions folder
    late.py        dl4nlp collect    an LMS download into a submissions folder, late flags, the late policy
    overrides.py   overrides.csv: points set by hand, with a reason (autograde --overrides)
    shards.py      dl4nlp merge      --shard K/N and joining the shards' CSVs
    export.py      dl4nlp export     grades.csv files into a Canvas, Moodle or wide CSV
    cli.py         the command line itself

The student side of `dl4nlp` (the chapter modules, `data`, `figures`, `exercises`,
`selfcheck`) never imports anything from here; a test enforces the direction. The
dependencies of this side (nbgrader, jupyter-book) are the `instructor` extra.
This file stays free of imports: the grading harness starts as a module below it.
"""


class GradingError(RuntimeError):
    """An assignment cannot be released or graded as it is (an instructor-side problem)."""
