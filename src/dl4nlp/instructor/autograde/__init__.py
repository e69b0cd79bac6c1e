"""`dl4nlp autograde`: every submission runs contained, and only its outputs are trusted.

    grader.py      grade a folder of submissions, N at a time: draw each part's cases, run the
                   submission, compare its outputs and gradients with the reference in the
                   grader's own process; one report per entry of the folder
    rubric.py      what the grader knows about an assignment: parts, points, test cells, and the
                   copy of dl4nlp whose graded functions are replaced by traps
    submission.py  read any notebook a student hands in; find graded cells, recover lost metadata;
                   flag answers taken from the reference
    sandbox.py     run one submission: bubblewrap (read-only system, no network, own PID
                   namespace, unprivileged user) with time, memory and process limits
    harness.py     inside the sandbox: run the student's cells, call each graded function on the
                   grader's cases, send back the outputs as plain tensors
    trap.py        what a trapped reference function does when a submission calls it

The feedback pages are `dl4nlp.instructor.feedback`, grades.csv `dl4nlp.instructor.gradebook`.
This file stays free of imports: the harness starts as `python -m dl4nlp.instructor.autograde.harness`.
"""
