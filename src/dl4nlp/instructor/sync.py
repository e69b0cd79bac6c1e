"""`dl4nlp sync`: keep notebooks in step with the package and the repository settings.

One source of truth:
- A graded solution cell of an instructor notebook `solutions/<assignment>/*.ipynb`
  (nbgrader metadata ``solution: true`` and ``grade_id`` = the name of a part of
  `dl4nlp.exercises.<assignment>`) *is* that part's reference function's source, with
  nbgrader's markers inserted by `solution_cell_source`: the student stub keeps the
  decorators, the signature, the docstring and any leading ``check_*`` lines.
- The points of a part live in `dl4nlp.exercises.<assignment>`; sync writes them into
  the ``points`` of its test cell (``grade_id`` ``test_<part>``), and the part's rules
  (its points, the library calls that score 0, the typical bugs the feedback names)
  into the markdown cell tagged ``dl4nlp-rules-<part>``.
- The repository URL, branch and term's release tag live in ``_config.yml``; cells tagged
  ``dl4nlp-setup`` (install cell: the package at the release tag) and ``dl4nlp-badge``
  (Open in Colab badge: the notebook on the branch) are rendered from them, and every
  other Open-in-Colab address in markdown (cells, book pages, the README) is rewritten
  to point at them.

`sync_notebook` and `sync_markdown` rewrite those; the tests assert that they change nothing.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import yaml

from dl4nlp.exercises import Assignment, Part, load

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SETUP_TAG, BADGE_TAG, RULES_TAG = "dl4nlp-setup", "dl4nlp-badge", "dl4nlp-rules-"


def project_root() -> Path:
    """The repository root: the nearest folder above the working directory with _config.yml."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "_config.yml").is_file() and (folder / "_toc.yml").is_file():
            return folder
    raise FileNotFoundError("run this inside the course repository (no _config.yml and _toc.yml found)")


def repository(root: Path) -> tuple[str, str]:
    """(URL, branch) of the course repository, from _config.yml."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/"), config["repository"].get("branch", "main")


def release_tag(root: Path) -> str:
    """The git tag students install this term (``repository: release_tag:`` in _config.yml; else the branch).

    One tag per term, pushed to the repository before the term's release, so that a change on the
    branch in the middle of the term cannot change what students run.
    """
    config = yaml.safe_load((root / "_config.yml").read_text())
    return str(config["repository"].get("release_tag") or repository(root)[1])


def colab_url(root: Path, notebook: Path) -> str:
    """The Open-in-Colab address of a notebook of this repository."""
    url, branch = repository(root)
    github_path = url.split("github.com/", 1)[1]
    return (f"https://colab.research.google.com/github/{github_path}/blob/{branch}/"
            f"{notebook.resolve().relative_to(root.resolve()).as_posix()}")


def setup_cell_source(root: Path) -> str:
    """The first code cell of every notebook: install dl4nlp at the term's release tag in Colab only;
    Colab's torch is left alone."""
    url, _ = repository(root)
    tag = release_tag(root)
    return textwrap.dedent(f"""\
        # Setup: in Colab, install the course package at this term's release (Colab's own torch is kept);
        # locally it is installed already.
        import sys
        if "google.colab" in sys.modules:
            import subprocess
            subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "dl4nlp @ git+{url}@{tag}"], check=True)""")


def badge_cell_source(root: Path, notebook: Path) -> str:
    """A markdown cell with the Open in Colab badge for this notebook."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(root, notebook)})")


_COLAB_ADDRESS = re.compile(r"https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/[\w./-]+?/"
                            r"(?=(?:book|assignments|solutions)/)")


_CLONE_ADDRESS = re.compile(r"(?<=git clone )https://github\.com/[\w.-]+/[\w.-]+?\.git")


def retarget_colab_links(text: str, root: Path) -> str:
    """Point every Open-in-Colab address and `git clone` command at the configured repository and branch."""
    url, branch = repository(root)
    prefix = f"https://colab.research.google.com/github/{url.split('github.com/', 1)[1]}/blob/{branch}/"
    return _CLONE_ADDRESS.sub(f"{url}.git", _COLAB_ADDRESS.sub(prefix, text))


def sync_markdown(path: Path, root: Path) -> bool:
    """Rewrite the Open-in-Colab addresses of a markdown file in place; True if it changed."""
    text = path.read_text()
    new = retarget_colab_links(text, root)
    if new != text:
        path.write_text(new)
    return new != text


def solution_cell_source(function: Callable[..., Any]) -> str:
    """The source of `function` with nbgrader's solution markers around its body.

    The markers go after the docstring and after any leading ``check_*(...)`` calls,
    which stay in the student's stub so that wrong shapes still get a clear message.
    """
    source = textwrap.dedent(inspect.getsource(function))
    tree = ast.parse(source).body[0]
    if not isinstance(tree, ast.FunctionDef):
        raise TypeError(f"{function.__qualname__} is not a function")
    body = tree.body
    kept = 0
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        kept = 1  # the docstring
    while kept < len(body) and _is_check_call(body[kept]):
        kept += 1
    if kept == len(body):
        raise ValueError(f"{function.__qualname__} has no body to hide from students")
    lines = source.splitlines()
    split = body[kept - 1].end_lineno if kept else tree.body[0].lineno - 1
    indent = " " * body[kept].col_offset
    return "\n".join(lines[:split] + [indent + BEGIN] + lines[split:] + [indent + END])


def rules_cell_source(part: Part) -> str:
    """A markdown cell telling students what a part is worth, what it may not call, and its typical bugs."""
    points = f"{part.points:g} point{'s' if part.points != 1 else ''}"
    calls = ", ".join(f"`{name}`" for name in part.forbidden)
    bugs = "\n".join(f"- {bug}" for bug in part.bugs)
    return (f"**Rules for `{part.name}`** ({points}). "
            + ("Write it yourself. " if part.check is not None or part.effects is not None
               else "Write it with tensor operations. ")
            + (f"These calls would do the work in one line, so using them scores 0 for this part: {calls}. "
               if calls else "")
            + (part.grading if part.grading else
               "The grader calls your function on its own cases. Its draws are random, so its outputs are not "
               "compared with the reference's: the grader checks the properties every right output has, and "
               "counts how often each outcome occurs, which must lie within five standard deviations of the "
               "expected rate (a right answer fails about once in 100,000 gradings)." if part.check is not None else
               "The grader calls your function on its own cases and compares the outputs, and their gradients "
               "with respect to every input, with the reference implementation." if part.gradients else
               "The grader calls your function on its own cases and compares its outputs with the reference "
               "implementation's (the outputs only: no gradients are taken of them).")
            + (f" If a wrong answer matches one of these typical bugs, the feedback names it:\n\n{bugs}"
               if bugs else ""))


def _is_check_call(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Name) and statement.value.func.id.startswith("check_"))


def strip_solution_markers(source: str) -> str:
    """A solution cell's source without nbgrader's markers: the package function's source."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN, END))


def exercises_of(path: Path, root: Path) -> Assignment | None:
    """The exercises of an instructor notebook (`solutions/<assignment>/...`), None for other notebooks."""
    relative = path.resolve().relative_to(root.resolve())
    if relative.parts[0] != "solutions" or len(relative.parts) != 3:
        return None
    return load(relative.parts[1])


def graded_functions(path: Path, root: Path) -> dict[str, Callable[..., Any]]:
    """{part: reference function} of an instructor notebook's assignment, in notebook order ({} for a page)."""
    exercises = exercises_of(path, root)
    return {} if exercises is None else {part.name: part.reference() for part in exercises.parts}


def sync_notebook(path: Path, root: Path) -> bool:
    """Rewrite a notebook's derived cells (solutions, points, setup, badge) in place; True if it changed."""
    notebook = nbformat.read(path, as_version=4)
    exercises = exercises_of(path, root)
    functions = graded_functions(path, root)
    changed = False
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        nbgrader = cell.metadata.get("nbgrader", {})
        grade_id = nbgrader.get("grade_id")
        if exercises is not None and nbgrader.get("grade") and not nbgrader.get("solution") \
                and str(grade_id).removeprefix("test_") in exercises.points:
            points = exercises.points[grade_id.removeprefix("test_")]
            if nbgrader.get("points") != points:
                nbgrader["points"], changed = int(points) if points == int(points) else points, True
            continue
        rules = [tag.removeprefix(RULES_TAG) for tag in tags if tag.startswith(RULES_TAG)]
        if grade_id in functions and nbgrader.get("solution"):
            new = solution_cell_source(functions[grade_id])
        elif rules and exercises is not None:
            new = rules_cell_source(exercises.part(rules[0]))
        elif SETUP_TAG in tags:
            new = setup_cell_source(root)
        elif BADGE_TAG in tags:
            new = badge_cell_source(root, _published_notebook(path, root))
        elif cell.cell_type == "markdown":
            new = retarget_colab_links(cell.source, root)
        else:
            continue
        if cell.source != new:
            cell.source, changed = new, True
    if changed:
        nbformat.write(notebook, path)
    return changed


def _published_notebook(path: Path, root: Path) -> Path:
    """Students open the released notebook: a solutions/ path maps to its assignments/ twin."""
    relative = path.resolve().relative_to(root.resolve())
    if relative.parts[0] == "solutions":
        return root / "assignments" / Path(*relative.parts[1:])
    return path


def course_notebooks(root: Path) -> list[Path]:
    """The notebooks that `sync` maintains: instructor notebooks and book pages."""
    return sorted([*root.glob("solutions/*/*.ipynb"), *root.glob("book/**/*.ipynb")])


def course_markdown(root: Path) -> list[Path]:
    """The markdown files whose Colab links `sync` maintains: book pages and the README."""
    return sorted([*root.glob("book/**/*.md"), root / "README.md"])
