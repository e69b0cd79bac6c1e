"""One HTML page per student: each part's points and, for a lost part, what went wrong; then the
student's written answers, which the course staff grade by hand from this page.

With `hide_cases`, a failing part says what went wrong (wrong values, wrong shape, the
exception) but not on which of the grader's cases, so the hidden cases stay hidden. The
grader never runs or shows test code: the checks are the grader's own.
Every text that comes from a submission is escaped.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

from dl4nlp.instructor.autograde.grader import Report
from dl4nlp.instructor.gradebook import visible

STYLE = """body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;
vertical-align:top}.ok{color:#1a7f37}.lost{color:#b42318}.note{color:#555}code{background:#f4f4f4;padding:0 .2rem}"""

ERRORS_INTRO = """<h2>Cells that raised an error</h2><p class="note">The grader runs your notebook with dl4nlp's own
versions of the graded functions switched off, so a cell that uses them (training with the course's modules, say)
stops here; that costs no points.</p>"""

ANSWERS_INTRO = """<h2>Written answers</h2><p class="note">Graded by hand by the course staff, separately from the
score above.</p>"""


MAX_STEM = 100  # characters of the name kept in a page's file name (file names stop at 255 bytes)


def file_name(student: str) -> str:
    """A safe file name for a student's page, unique per exact name.

    A name that is already safe (lower-case letters, digits, '.', '_', '@', '-', not too long)
    is kept: `alice.html`. Any other is made safe and gets a short hash of the exact name after
    a '~', which no kept name contains: "a b" and "a_b", "Zoë" and "Zoé", "Bob" and "bob" (the
    same file where the file system ignores case) get different pages.
    """
    safe = re.sub(r"[^a-z0-9._@-]", "_", student).lstrip(".")[:MAX_STEM]
    if safe == student and safe:
        return safe + ".html"
    return f"{safe or '_'}~{hashlib.sha256(student.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}.html"


def render(report: Report, hide_cases: bool = False) -> str:
    def escape(text: str) -> str:
        return html.escape(visible(text))

    rows = []
    for part in report.parts:
        lost = part.points < part.max_points
        why = part.summary if hide_cases else part.message
        rows.append(f"<tr><td><code>{escape(part.name)}</code></td>"
                    f"<td class=\"{'lost' if lost else 'ok'}\">{part.points:g} / {part.max_points:g}</td>"
                    f"<td>{escape(why) if lost or part.override else 'passed'}</td></tr>")
    problem = f"<p class=\"lost\"><strong>{escape(report.problem)}</strong></p>" if report.problem else ""
    notes = "".join(f"<li>{escape(note)}</li>" for note in report.notes)
    errors = "".join(f"<li>cell {index}: <code>{escape(error)}</code></li>" for index, error, _ in report.cell_errors)
    answers = "".join(f"<p class=\"note\">{escape(question)} ({points:g} point{'s' if points != 1 else ''})</p>"
                      f"<blockquote style=\"white-space:pre-wrap\">{escape(answer) or '<em>no answer found</em>'}"
                      "</blockquote>" for question, points, answer in report.answers)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(report.assignment)}: {escape(report.student)}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(report.assignment)}: feedback for {escape(report.student)}</h1>
<p>Score: <strong>{report.score:g} / {report.max_score:g}</strong> (status: {escape(report.status)})</p>
{problem}
<table><tr><th>part</th><th>points</th><th>result</th></tr>
{''.join(rows)}
</table>
<p class="note">Each function was called on cases drawn at grading time and its outputs compared with the
reference implementation's; a part scores its points only if every case matches.</p>
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
{ERRORS_INTRO + f'<ul>{errors}</ul>' if errors else ''}
{ANSWERS_INTRO + answers if answers else ''}
</body></html>
"""


def write_feedback(reports: list[Report], folder: Path, hide_cases: bool = False) -> tuple[list[Path], list[str]]:
    """Write a page (`file_name`) for every report: (pages written, problems).

    A page that cannot be written costs that page only, never the others: the problem says whose.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pages, problems = [], []
    for report in reports:
        page = folder / file_name(report.student)
        temporary = page.with_name(page.name + ".tmp")
        try:
            temporary.write_text(render(report, hide_cases), encoding="utf-8")
            temporary.replace(page)
        except (OSError, UnicodeError, ValueError) as error:
            try:
                temporary.unlink(missing_ok=True)
            except OSError:
                pass
            problems.append(f"no feedback page for {visible(report.student)!r}: {type(error).__name__}: {error}")
            continue
        pages.append(page)
    return pages, problems
