"""What a graded reference function does while grading: record the call and refuse.

The grader runs submissions against a copy of `dl4nlp` whose graded functions (for the
RNN assignment `dl4nlp.rnn.lstm_cell`, ...) keep their signature and docstring but whose
body is ``raise _reference_unavailable("dl4nlp.rnn.lstm_cell")``. A submission that
imports or calls the reference therefore computes nothing, and the harness reports the
call: the part scores zero and its row says "reference".
"""

from __future__ import annotations

CALLS: list[str] = []


class ReferenceUnavailable(RuntimeError):
    """Raised by a graded reference function while grading."""


def reference_unavailable(qualified_name: str) -> ReferenceUnavailable:
    CALLS.append(qualified_name)
    return ReferenceUnavailable(f"{qualified_name} is the reference implementation, which is not available "
                                "while grading: the grader checks your own code")
