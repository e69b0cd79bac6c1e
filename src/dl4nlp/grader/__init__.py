"""The autograder: every submission runs contained, and only its outputs are trusted.

    course.py      what the grader knows about an assignment: parts, points, test cells, the
                   reference package with the graded functions replaced by a trap
    submission.py  read any notebook a student hands in; find graded cells, recover lost metadata;
                   flag answers imported from the reference
    sandbox.py     run one submission: bubblewrap (read-only system, no network, own PID
                   namespace, unprivileged user) with time, memory and process limits
    harness.py     inside the sandbox: run the student's cells, call each graded function on the
                   grader's cases, send back the outputs as plain tensors
    batch.py       grade a folder of submissions, N at a time; compare the outputs with the
                   reference in the grader's own process; one row per entry
    feedback.py    one HTML page per student

This file stays free of imports: the harness starts as `python -m dl4nlp.grader.harness`.
"""
