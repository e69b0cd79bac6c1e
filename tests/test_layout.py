"""The shape of the package: two sides, one direction; the same files for every chapter.

- What students install in Colab (the chapter modules, data, figures, exercises, the self-check)
  never imports the instructor tooling (`dl4nlp.instructor`: release, sync, book, autograde,
  feedback, the command line), neither in its source nor when it runs.
- Every assignment is one slice: its chapter module(s), its exercises module, its figures
  module, its book page, its instructor notebook and its tests.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dl4nlp import exercises
from dl4nlp.instructor.release import assignments

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "dl4nlp"
INSTRUCTOR = PACKAGE / "instructor"
# `python -m dl4nlp` is the command line: dl4nlp/__main__.py belongs to the instructor side.
STUDENT_SIDE = sorted(p for p in PACKAGE.rglob("*.py") if not p.is_relative_to(INSTRUCTOR) and p.name != "__main__.py")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[str]:
    """Every module a file imports, absolute (relative imports resolved), wherever the import stands."""
    names = []
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", STUDENT_SIDE, ids=[p.relative_to(PACKAGE).as_posix() for p in STUDENT_SIDE])
def test_the_student_side_never_imports_the_instructor_tools(path):
    wrong = [name for name in _imports(path) if name == "dl4nlp.instructor" or name.startswith("dl4nlp.instructor.")
             or name.split(".")[0] in ("nbgrader", "jupyter_book", "nbval", "nbformat", "nbclient")]
    assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}: the student side must not need instructor tools"


def test_the_student_side_runs_with_the_instructor_tools_missing():
    """Import every student-side module, and run the self-check, where the instructor side cannot load."""
    modules = [_module_name(p) for p in STUDENT_SIDE]
    script = textwrap.dedent(f"""\
        import importlib, sys
        for name in ("dl4nlp.instructor", "nbgrader", "nbformat", "nbclient", "jupyter_book", "nbval"):
            sys.modules[name] = None  # any import of these fails
        for module in {modules!r}:
            importlib.import_module(module)
        from dl4nlp.selfcheck import run_selfcheck
        print(run_selfcheck("rnn", {{}}).max_points)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_instructor_side_has_one_module_per_command():
    """Each command of the `dl4nlp` command line is a module (or package) of dl4nlp.instructor."""
    result = subprocess.run([sys.executable, "-m", "dl4nlp", "--help"], capture_output=True, text=True, timeout=120)
    commands = re.search(r"\{([\w,-]+)\}", result.stdout).group(1).split(",")
    assert {"release", "sync", "book", "autograde", "feedback", "export", "collect", "merge"} <= set(commands)
    for command in commands:
        module = {"merge": "shards", "collect": "late"}.get(command, command)  # merge joins shards; collect keeps late flags
        assert (INSTRUCTOR / f"{module}.py").is_file() or (INSTRUCTOR / module / "__init__.py").is_file(), command


@pytest.mark.parametrize("assignment", assignments(ROOT))
def test_every_assignment_is_one_slice(assignment):
    """An assignment named like its chapter has all the files of a chapter, and the book lists its page."""
    parts = exercises.load(assignment).parts
    for module in {part.module for part in parts}:
        chapter = module.split(".")[-1]
        assert (PACKAGE / f"{chapter}.py").is_file(), f"{module}: src/dl4nlp/{chapter}.py"
        assert (ROOT / "tests" / f"test_{chapter}.py").is_file(), f"tests/test_{chapter}.py"
    assert (PACKAGE / "exercises" / f"{assignment}.py").is_file()
    chapters = sorted({part.module.split(".")[-1] for part in parts})  # "generation" grades dl4nlp.gpt
    assert any((PACKAGE / "figures" / f"{name}.py").is_file() for name in [assignment, *chapters]), \
        f"src/dl4nlp/figures/{assignment}.py (or figures named like its chapter module: {chapters})"
    assert (ROOT / "book" / f"{assignment}.ipynb").is_file(), f"book/{assignment}.ipynb"
    assert f"book/{assignment}" in (ROOT / "_toc.yml").read_text(), f"_toc.yml lists book/{assignment}"
    assert len(list((ROOT / "solutions" / assignment).glob("*.ipynb"))) == 1


def _pins(path: Path) -> dict[str, str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {name.lower().replace("_", "-"): version for name, _, version in (l.partition("==") for l in lines) if version}


def test_the_proven_version_range_is_colabs_and_the_pinned_one():
    """pyproject declares the range the course is tested on: Colab's stack (the lowest) and the pins (the highest),
    and requires at least Colab's versions, never more (installing dl4nlp in Colab must not replace its torch)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    proven = project["tool"]["dl4nlp"]["proven"]
    colab, pinned = _pins(ROOT / "scripts" / "colab-stack.txt"), _pins(ROOT / "requirements.txt")
    floors = {requirement.split(">=")[0]: requirement.split(">=")[1] for requirement in
              project["project"]["dependencies"] if ">=" in requirement}
    for package, (lowest, highest) in proven.items():
        if package == "python":
            continue
        assert colab[package] == lowest and pinned[package] == highest, package
        assert lowest.startswith(floors[package]), f"{package}: require >={lowest[:4]}, Colab's version"
    assert all("<" not in requirement for requirement in project["project"]["dependencies"])
