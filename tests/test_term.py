"""Running a real term: LMS exports, late work, overrides and regrades, partial credit, shards.

Fast tests (in process) use LMS files the tests write themselves, shaped like real ones:
several sections, a student without a submission, a submission that matches no roster
entry, commas, quotes and unicode in names. The slow tests grade a few real submissions
with the real command: three shards, graded as separate processes, merge into the CSV of
one unsharded run byte for byte; a regrade of one student changes that row only; and
`--partial` gives a fraction of a part's points.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from submissions import COLUMNS, autograde, read, replaced, write_submission

from dl4nlp import exercises
from dl4nlp.instructor import gradebook
from dl4nlp.instructor.cli import main
from dl4nlp.instructor.gradebook import GradebookError, GradeRow

pytestmark = pytest.mark.instructor  # needs the instructor tools: not run by the Colab check

ROOT = Path(__file__).resolve().parent.parent
HONEST = ROOT / "solutions" / "rnn" / "rnn.ipynb"
UNTOUCHED = ROOT / "assignments" / "rnn" / "rnn.ipynb"


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- a term's files, as the LMS and the grader write them -------------------------------------


@pytest.fixture
def term(tmp_path, monkeypatch) -> Path:
    """grades.csv of rnn, a roster and a Canvas gradebook export, in tmp_path."""
    monkeypatch.chdir(ROOT)
    gradebook.write_csv([
        GradeRow("doejane", "rnn", 13.0, 13.0, "graded", "test_rnn_cell 2/2; test_lstm_cell 3/3"),
        GradeRow("obrienmaire", "rnn", 10.0, 13.0, "graded",
                 "test_lstm_cell 3/3 (override: automatic 0/3, set to 3 (gate order checked by hand)); "
                 "test_gru_cell 0/3 (max difference 0.4 on case 1)", "2"),
        GradeRow("zoeller", "rnn", 8.0, 13.0, "graded", "test_gru_cell 0/3", "yes"),
        GradeRow("stranger", "rnn", 5.0, 13.0, "graded", "test_rnn_cell 2/2"),  # in no roster
    ], tmp_path / "grades.csv")
    _write(tmp_path / "roster.csv", [
        ["Student", "Name", "Email", "SIS Login ID", "SIS User ID", "Section"],
        ["doejane", "Doe, Jane", "jane.doe@uni.example", "jdoe", "1001", "Section A"],
        ["obrienmaire", "O'Brien, \"Máire\"", "maire.obrien@uni.example", "mobrien", "1002", "Section B"],
        ["zoeller", "Zöller, Jürgen", "juergen.zoeller@uni.example", "jzoeller", "1003", "Section B"],
        ["nguyenan", "Nguyễn, An", "an.nguyen@uni.example", "anguyen", "1004", "Section A"],  # no submission
    ])
    _write(tmp_path / "canvas.csv", [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Quiz 1 (11111)", "rnn (12345)",
         "Current Score", "Final Score"],
        ["    Points Possible", "", "", "", "", "10.00", "13.00", "(read only)", "(read only)"],
        ["Doe, Jane", "501", "1001", "jdoe", "Section A", "9.00", "", "90.00", "90.00"],
        ["O'Brien, \"Máire\"", "502", "1002", "maire.obrien@uni.example", "Section B", "7.00", "", "70.00", "35.00"],
        ["Zöller, Jürgen", "503", "", "jzoeller", "Section B", "", "", "", ""],
        ["Nguyễn, An", "504", "1004", "anguyen", "Section A", "10.00", "", "100.00", "50.00"],
        ["Student, Test", "599", "", "", "Section A", "", "4.00", "", ""],  # Canvas's test student
    ])
    return tmp_path


def test_canvas_export_fills_the_assignment_column(term, capsys):
    code, out, err = _run(capsys, "export", str(term / "grades.csv"), "--roster", str(term / "roster.csv"),
                          "--format", "canvas", "--canvas-gradebook", str(term / "canvas.csv"),
                          "--out", str(term / "import.csv"), "--late-penalty", "10")
    assert code == 0
    rows = _rows(term / "import.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "rnn (12345)"]  # no stale Quiz 1
    assert rows[1] == ["    Points Possible", "", "", "", "", "13.00"]
    by_name = {row[0]: row for row in rows[2:]}
    assert by_name["Doe, Jane"][-1] == "13"
    assert by_name["O'Brien, \"Máire\""][-1] == "7.4"  # 10 - 2 days x 10 % of 13, matched by e-mail as login
    assert by_name["Zöller, Jürgen"][-1] == "6.7"  # late, days unknown: 1 day
    assert by_name["Nguyễn, An"][-1] == "0"  # in the roster, no submission
    assert by_name["Student, Test"][-1] == "4.00"  # not in the roster: left as it was
    assert "nguyenan" in out and "stranger" in err
    report = (term / "import.csv.report.txt").read_text(encoding="utf-8")
    assert "no submission, exported as 0 (1): nguyenan" in report
    assert "NOT in the import: add them to the roster (1): stranger" in report
    assert "obrienmaire rnn: late 2 (2 day(s)), 10 -> 7.4" in report
    assert "override: automatic 0/3, set to 3 (gate order checked by hand)" in report


def test_canvas_export_without_the_assignment_says_what_to_do(term, capsys):
    _write(term / "canvas.csv", [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "cnn (2)"]])
    code, _, err = _run(capsys, "export", str(term / "grades.csv"), "--roster", str(term / "roster.csv"),
                        "--format", "canvas", "--canvas-gradebook", str(term / "canvas.csv"),
                        "--out", str(term / "import.csv"))
    assert code == 2 and "no column named 'rnn (<id>)'" in err and "--column" in err
    assert not (term / "import.csv").exists()


def test_moodle_export_has_an_identifier_and_one_column_per_item(term, capsys):
    code, _, _ = _run(capsys, "export", str(term / "grades.csv"), "--roster", str(term / "roster.csv"),
                      "--format", "moodle", "--moodle-id", "username", "--out", str(term / "moodle.csv"))
    assert code == 0
    rows = _rows(term / "moodle.csv")
    assert rows[0] == ["Username", "Assignment: rnn (Real)"]
    assert "roster has no username" in (term / "moodle.csv.report.txt").read_text(encoding="utf-8")
    code, _, _ = _run(capsys, "export", str(term / "grades.csv"), "--roster", str(term / "roster.csv"),
                      "--format", "moodle", "--out", str(term / "moodle.csv"))
    assert _rows(term / "moodle.csv") == [["Email address", "Assignment: rnn (Real)"],
                                          ["jane.doe@uni.example", "13"], ["maire.obrien@uni.example", "10"],
                                          ["juergen.zoeller@uni.example", "8"], ["an.nguyen@uni.example", "0"]]


def test_wide_export_keeps_every_student_and_unmatched_submissions(term, capsys):
    gradebook.write_csv([GradeRow("doejane", "cnn", 4.0, 5.0, "graded", ""),
                         GradeRow("=cmd", "cnn", 1.0, 5.0, "invalid", "")], term / "cnn.csv")
    code, _, err = _run(capsys, "export", str(term / "grades.csv"), str(term / "cnn.csv"), "--roster",
                        str(term / "roster.csv"), "--format", "wide", "--out", str(term / "wide.csv"))
    assert code == 0 and "stranger" in err and "=cmd" in err
    rows = _rows(term / "wide.csv")
    assert rows[0] == ["student", "name", "email", "sis_login_id", "sis_user_id", "section", "rnn", "cnn"]
    assert rows[2][:2] == ["obrienmaire", "O'Brien, \"Máire\""] and rows[2][-2:] == ["10", "0"]
    assert [row[0] for row in rows[5:]] == ["'=cmd", "stranger"]  # kept, spreadsheet-safe
    assert rows[6][-2:] == ["5", ""]


def test_a_student_graded_twice_stops_the_export(term, capsys):
    code, _, err = _run(capsys, "export", str(term / "grades.csv"), str(term / "grades.csv"), "--roster",
                        str(term / "roster.csv"), "--format", "wide", "--out", str(term / "wide.csv"))
    assert code == 2 and "doejane has two rows for rnn" in err


# --- late work ------------------------------------------------------------------------------------


def _canvas_zip(path: Path, files: dict[str, tuple[bytes, datetime]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, (data, time) in files.items():
            archive.writestr(zipfile.ZipInfo(name, time.timetuple()[:6]), data)
    return path


def test_collect_files_a_canvas_download_and_keeps_the_late_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    notebook = HONEST.read_bytes()
    due = datetime(2026, 10, 2, 23, 59)
    download = _canvas_zip(tmp_path / "submissions.zip", {
        "doejane_12345_6789012_rnn.ipynb": (notebook, datetime(2026, 10, 2, 20, 0)),
        "obrienmaire_LATE_12346_6789013_rnn-1.ipynb": (notebook, datetime(2026, 10, 4, 9, 0)),  # 2 started days
        "obrienmaire_LATE_12346_6789013_rnn.ipynb": (b"older", datetime(2026, 10, 3, 9, 0)),
        "zoeller_LATE_12347_6789014_rnn (1).ipynb": (notebook, datetime(2026, 10, 3, 0, 30)),
        "zoeller_LATE_12347_6789014_notes.pdf": (b"%PDF", datetime(2026, 10, 3, 0, 30)),
        "__MACOSX/._doejane_12345_6789012_rnn.ipynb": (b"", due),
        "README.txt": (b"not a submission", due),
    })
    code, out, _ = _run(capsys, "collect", "rnn", str(download), "--out", str(tmp_path / "submissions"),
                        "--deadline", "2026-10-02T23:59")
    assert code == 0
    folder = tmp_path / "submissions"
    assert sorted(p.name for p in folder.iterdir()) == [".late.csv", "doejane", "obrienmaire", "zoeller"]
    assert (folder / "obrienmaire" / "rnn.ipynb").read_bytes() == notebook  # the last upload
    assert sorted(p.name for p in (folder / "zoeller").iterdir()) == ["notes.pdf", "rnn.ipynb"]
    assert "filed rnn (1).ipynb as rnn.ipynb" in out and "skipped README.txt" in out
    assert _rows(folder / ".late.csv") == [["student", "late"], ["obrienmaire", "2"], ["zoeller", "1"]]
    _run(capsys, "collect", "rnn", str(download), "--out", str(tmp_path / "again"))
    assert _rows(tmp_path / "again" / ".late.csv")[1:] == [["obrienmaire", "yes"], ["zoeller", "yes"]]


def test_the_late_policy():
    from dl4nlp.instructor.late import LatePolicy, days_late, parse_canvas_name

    assert LatePolicy().apply(10.0, 13.0, "3") == 10.0  # no penalty by default
    assert LatePolicy(10).apply(10.0, 13.0, "2") == 7.4
    assert LatePolicy(50).apply(3.0, 13.0, "yes") == 0.0  # never below zero
    assert LatePolicy(10, unknown_days=2).apply(13.0, 13.0, "yes") == 10.4
    assert LatePolicy(10, max_days=3).apply(13.0, 13.0, "4") == 0.0
    assert days_late(datetime(2026, 10, 3, 0, 0), datetime(2026, 10, 2, 23, 59)) == 1
    assert days_late(datetime(2026, 10, 4, 0, 0), datetime(2026, 10, 2, 23, 59)) == 2
    assert parse_canvas_name("doejane_LATE_12345_6789012_rnn-1.ipynb") == ("doejane", True, "rnn.ipynb", 1)
    assert parse_canvas_name("rnn.ipynb") is None and parse_canvas_name(".x_1_2_rnn.ipynb") is None


# --- overrides, regrades, merges ------------------------------------------------------------------


def _report(student: str):
    from dl4nlp.instructor.autograde.grader import PartResult, Report

    return Report(student, "rnn", 13.0, parts=[PartResult("rnn_cell", 2.0, 2.0),
                                               PartResult("lstm_cell", 0.0, 3.0, "max difference 1 on case 2",
                                                          "max difference 1 on a hidden case")])


def test_an_override_shows_the_automatic_points_and_the_reason(tmp_path):
    from dl4nlp.instructor.feedback import render
    from dl4nlp.instructor.overrides import apply_overrides, read_overrides

    path = _write(tmp_path / "overrides.csv", [["student", "assignment", "part", "points", "reason"],
                                               ["bob", "rnn", "lstm_cell", "2.5", "regrade: right idea, one sign"],
                                               ["bob", "cnn", "conv", "1", "another assignment"],
                                               ["eve", "rnn", "rnn_cell", "1", "eve is graded elsewhere"]])
    reports = [_report("alice"), _report("bob")]
    warnings = apply_overrides(reports, read_overrides(path), "rnn", {"rnn_cell": 2.0, "lstm_cell": 3.0})
    assert warnings == ["overrides.csv names eve, who was not graded in this run"]
    assert reports[0].score == 2.0 and reports[1].score == 4.5
    assert ("test_lstm_cell 2.5/3 (override: automatic 0/3, set to 2.5 (regrade: right idea, one sign); "
            "automatic result: max difference 1 on case 2)") in reports[1].detail()
    page = render(reports[1], hide_cases=True)
    assert "automatic 0/3, set to 2.5" in page and "on a hidden case" in page and "on case 2" not in page
    for line, error in ((["bob", "rnn", "gru", "1", "x"], "has no part 'gru'"),
                        (["bob", "rnn", "lstm_cell", "4", "x"], "which is worth 3"),
                        (["bob", "rnn", "lstm_cell", "1", ""], "give a reason"),
                        (["bob", "rnn", "lstm_cell", "lots", "x"], "is not a number")):
        _write(path, [["student", "assignment", "part", "points", "reason"], line])
        with pytest.raises(GradebookError, match=error):
            apply_overrides([_report("bob")], read_overrides(path), "rnn", {"rnn_cell": 2.0, "lstm_cell": 3.0})


def test_a_wrong_override_stops_grading_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "submissions" / "alice").mkdir(parents=True)
    overrides = _write(tmp_path / "overrides.csv", [["student", "assignment", "part", "points", "reason"],
                                                     ["alice", "rnn", "lstm", "1", "typo in the part"]])
    code, _, err = _run(capsys, "autograde", "rnn", str(tmp_path / "submissions"), "--out",
                        str(tmp_path / "grades.csv"), "--overrides", str(overrides))
    assert code == 2 and "rnn has no part 'lstm'" in err and not (tmp_path / "grades.csv").exists()
    code, _, err = _run(capsys, "autograde", "rnn", str(tmp_path / "submissions"), "--out",
                        str(tmp_path / "grades.csv"), "--student", "zed")
    assert code == 2 and "zed is not an entry" in err


def test_updating_one_row_leaves_the_others_byte_identical(tmp_path):
    path = tmp_path / "grades.csv"
    rows = [GradeRow("=alice", "rnn", 1.0, 13.0, "graded", "a, \"quoted\" detail"),
            GradeRow("carol", "rnn", 13.0, 13.0, "graded", "ünïcode"),
            GradeRow("dave", "rnn", 0.0, 13.0, "missing", "expected rnn.ipynb", "yes")]
    gradebook.write_csv(rows, path)
    before = path.read_bytes().splitlines(keepends=True)
    gradebook.update_csv(path, [GradeRow("carol", "rnn", 7.0, 13.0, "graded", "regraded")])
    after = path.read_bytes().splitlines(keepends=True)
    assert after[:2] == before[:2] and after[3:] == before[3:]
    assert after[2] == b"carol,rnn,7.0,13.0,graded,regraded,\r\n"
    gradebook.update_csv(path, [GradeRow("bob", "rnn", 2.0, 13.0, "graded", "new")])  # a new entry: sorted in
    assert [row[0] for row in _rows(path)[1:]] == ["'=alice", "bob", "carol", "dave"]
    with pytest.raises(GradebookError, match="holds grades of rnn"):
        gradebook.update_csv(path, [GradeRow("bob", "cnn", 2.0, 5.0, "graded", "")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grades.csv"]


def test_shards_are_stable_and_cover_every_student():
    from dl4nlp.instructor.shards import in_shard, parse_shard, shard_of

    assert [shard_of(name, 3) for name in ("alice", "bob", "dave")] == [3, 3, 2]  # the same on every machine
    entries = [Path(f"student{index:03d}") for index in range(60)]
    shards = [in_shard(entries, k, 4) for k in range(1, 5)]
    assert sorted(entry for shard in shards for entry in shard) == entries and all(shards)
    for bad in ("0/3", "4/3", "2", "a/b"):
        with pytest.raises(GradebookError, match="--shard"):
            parse_shard(bad)


def test_merge_finds_a_student_twice_or_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    gradebook.write_csv([GradeRow("bob", "rnn", 1.0, 13.0, "graded", "")], tmp_path / "1.csv")
    gradebook.write_csv([GradeRow("alice", "rnn", 2.0, 13.0, "graded", ""),
                         GradeRow("bob", "rnn", 1.0, 13.0, "graded", "")], tmp_path / "2.csv")
    code, _, err = _run(capsys, "merge", str(tmp_path / "1.csv"), str(tmp_path / "2.csv"), "--out",
                        str(tmp_path / "grades.csv"))
    assert code == 2 and "bob (rnn) is in both" in err and not (tmp_path / "grades.csv").exists()
    (tmp_path / "submissions" / "carol").mkdir(parents=True)
    (tmp_path / "submissions" / "alice").mkdir()
    code, _, err = _run(capsys, "merge", str(tmp_path / "2.csv"), "--out", str(tmp_path / "grades.csv"),
                        "--submissions", str(tmp_path / "submissions"))
    assert code == 2 and "carol has no row in any shard" in err and "bob has a row but is not an entry" in err


# --- partial credit -------------------------------------------------------------------------------


def _rnn_cell_wrong_for_one_sentence(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    """Right for a batch of several sentences, wrong (state ignored) for a batch of one."""
    import torch

    state = torch.zeros_like(h) if x.shape[0] == 1 else h
    return torch.tanh(x @ weight_ih.T + bias_ih + state @ weight_hh.T + bias_hh)


def test_the_fraction_of_cases_passed():
    part = exercises.load("rnn").part("rnn_cell")
    cases = part.cases(exercises.generator("partial", part.name))
    expected = [exercises.call(part.reference(), case) for case in cases]
    wrong = [exercises.call(_rnn_cell_wrong_for_one_sentence, case) for case in cases]
    assert exercises.passed_fraction(part, cases, expected, expected) == 1.0
    assert exercises.passed_fraction(part, cases, expected, wrong) == 0.75  # batches 1, 5, 3, 4: one of four
    assert not exercises.judge(part, cases, expected, wrong).passed  # the default stays all or nothing
    assert exercises.passed_fraction(part, cases, expected, wrong[:2]) == 0.0


# --- real grading: shards, regrades, --partial -------------------------------------------------------


TOTAL = sum(exercises.load("rnn").points.values())  # full marks of the rnn assignment


def _grade(folder: Path, out: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dl4nlp", "autograde", "rnn", str(folder), "--out", str(out),
                             "--cell-timeout", "60", *options], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """A small class graded once, unsharded: an honest, an untouched, a late and a missing submission."""
    tmp = tmp_path_factory.mktemp("term")
    folder = tmp / "submissions"
    for student, notebook in (("alice", HONEST), ("bob", UNTOUCHED), ("carol, \"cc\"", HONEST)):
        write_submission(folder, student, read(notebook), "rnn.ipynb")
    (folder / "dave").mkdir()
    (folder / "dave" / "notes.txt").write_text("forgot the notebook")
    _write(folder / ".late.csv", [["student", "late"], ["carol, \"cc\"", "2"]])
    _write(tmp / "overrides.csv", [["student", "assignment", "part", "points", "reason"],
                                   ["bob", "rnn", "rnn_cell", "1", "regrade: stub, but the idea in a comment"]])
    grades, _ = autograde("rnn", folder, tmp / "grades.csv", "--cell-timeout", "60", "--overrides",
                          str(tmp / "overrides.csv"), "--feedback", str(tmp / "feedback"))
    assert [float(grades[s]["score"]) for s in ("alice", "bob", "carol, \"cc\"", "dave")] == [TOTAL, 1, TOTAL, 0]
    assert grades["carol, \"cc\""]["late"] == "2" and grades["alice"]["late"] == ""
    assert "override: automatic 0/2, set to 1 (regrade: stub" in grades["bob"]["detail"]
    assert "automatic 0/2, set to 1" in (tmp / "feedback" / "bob.html").read_text()
    return tmp


@pytest.mark.slow
def test_three_shards_merge_into_the_unsharded_csv(graded):
    folder, overrides = graded / "submissions", str(graded / "overrides.csv")
    runs = [_grade(folder, graded / f"shard{k}.csv", "--shard", f"{k}/3", "--overrides", overrides)
            for k in (1, 2, 3)]
    for run in runs:
        _, stderr = run.communicate(timeout=1200)
        assert run.returncode == 0, stderr[-3000:]
    sizes = [len(_rows(graded / f"shard{k}.csv")) - 1 for k in (1, 2, 3)]
    assert sum(sizes) == 4 and max(sizes) < 4, sizes  # the class was really split
    shards = [str(graded / f"shard{k}.csv") for k in (1, 2, 3)]
    result = subprocess.run([sys.executable, "-m", "dl4nlp", "merge", *shards, "--out", str(graded / "merged.csv"),
                             "--submissions", str(folder)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (graded / "merged.csv").read_bytes() == (graded / "grades.csv").read_bytes()


@pytest.mark.slow
def test_a_regrade_changes_one_row_only(graded, tmp_path):
    folder = tmp_path / "submissions"
    shutil.copytree(graded / "submissions", folder)
    shutil.copy(graded / "grades.csv", tmp_path / "grades.csv")
    write_submission(folder, "bob", read(HONEST), "rnn.ipynb")  # bob hands in a fixed notebook
    run = _grade(folder, tmp_path / "grades.csv", "--student", "bob", "--overrides", str(graded / "overrides.csv"))
    _, stderr = run.communicate(timeout=1200)
    assert run.returncode == 0, stderr[-3000:]
    before, after = _rows(graded / "grades.csv"), _rows(tmp_path / "grades.csv")
    assert after[0] == COLUMNS and len(after) == len(before)
    changed = [index for index, (old, new) in enumerate(zip(before, after)) if old != new]
    assert [after[index][0] for index in changed] == ["bob"]
    assert float(after[changed[0]][2]) == TOTAL - 1  # full marks automatic, with rnn_cell (2 points) overridden to 1
    old_lines = (graded / "grades.csv").read_bytes().splitlines()
    new_lines = (tmp_path / "grades.csv").read_bytes().splitlines()
    assert [line for line in new_lines if not line.startswith(b"bob,")] == \
        [line for line in old_lines if not line.startswith(b"bob,")]


@pytest.mark.slow
def test_partial_credit_gives_the_fraction_of_cases(tmp_path):
    folder = tmp_path / "submissions"
    write_submission(folder, "erin", replaced(read(HONEST), "rnn_cell", _rnn_cell_wrong_for_one_sentence),
                     "rnn.ipynb")
    partial, _ = autograde("rnn", folder, tmp_path / "partial.csv", "--cell-timeout", "60", "--partial")
    assert float(partial["erin"]["score"]) == TOTAL - 0.5 and "test_rnn_cell 1.5/2" in partial["erin"]["detail"]


def test_the_readmes_job_scripts_parse(tmp_path):
    """The Slurm array script is valid bash and the Actions workflow valid YAML that shards the grading."""
    import re

    import yaml

    readme = (ROOT / "README.md").read_text()
    slurm = re.search(r"```bash\n(#!/bin/bash\n#SBATCH.*?)```", readme, re.S).group(1)
    (tmp_path / "grade-array.sh").write_text(slurm)
    assert subprocess.run(["bash", "-n", str(tmp_path / "grade-array.sh")]).returncode == 0
    assert "--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"" in slurm
    workflow = yaml.safe_load(re.search(r"```yaml\n(name: grade\n.*?)```", readme, re.S).group(1))
    assert workflow["jobs"]["grade"]["strategy"]["matrix"]["shard"] and workflow["jobs"]["merge"]["needs"] == "grade"
    assert any("dl4nlp merge" in step.get("run", "") for step in workflow["jobs"]["merge"]["steps"])
