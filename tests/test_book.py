"""The book build: every page executes offline, outputs reach the HTML, nothing private is published,
and a build with an error fails — also when it is run again."""

from __future__ import annotations

import ast
import html as html_module
import importlib
import inspect
import re
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest
import yaml

from dl4nlp.instructor.book import build_book, execute_pages

pytestmark = pytest.mark.instructor  # needs the instructor tools: not run by the Colab check

ROOT = Path(__file__).resolve().parent.parent


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []):
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


NOTEBOOK_PAGES = [f for f in toc_files() if (ROOT / f"{f}.ipynb").is_file()]


@pytest.mark.slow
def test_every_toc_page_is_built(book_html):
    for page in toc_files():
        assert (book_html / f"{page}.html").is_file(), page


@pytest.mark.slow
def test_private_notebooks_are_not_published(book_html):
    published = {p.relative_to(book_html).parts[0] for p in book_html.rglob("*.html")}
    assert not published & {"solutions", "assignments", "tests", "src"}
    assert not list(book_html.rglob("*BEGIN SOLUTION*"))
    for page in book_html.rglob("*.html"):
        assert "### BEGIN SOLUTION" not in page.read_text(errors="ignore"), page


@pytest.mark.slow
@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_notebook_pages_show_executed_outputs(book_html, page):
    html = (book_html / f"{page}.html").read_text()
    source = nbformat.read(ROOT / f"{page}.ipynb", as_version=4)
    code_cells = [c for c in source.cells if c.cell_type == "code"]
    assert html.count('class="cell_output') >= len(code_cells) // 2, "too few executed outputs"
    assert "Traceback" not in html and "NotImplementedError" not in html
    # The page as the build read it: from the execution cache, where the build or the pages run before it put it
    # (jupyter_execute/ holds outputs only for the pages that the build itself ran).
    from jupyter_cache import get_cache

    _, executed = get_cache(str(book_html.parent / ".jupyter_cache")).merge_match_into_notebook(source)
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")


@pytest.mark.slow
@pytest.mark.parametrize("page", [page for page in NOTEBOOK_PAGES if (ROOT / "solutions" / Path(page).name).is_dir()])
def test_chapter_has_figures_and_a_saved_widget(book_html, page):
    html = (book_html / f"{page}.html").read_text()
    assert len(re.findall(r"<figure", html)) >= 5  # the lecture's diagrams and a training curve
    assert "application/vnd.jupyter.widget-state+json" in html  # widget state saved in the page
    assert "application/vnd.jupyter.widget-view+json" in html


# Functions students write in the assignment, beyond the graded parts `dl4nlp.exercises` lists today.
ALSO_GRADED = {"rnn": ["unroll"]}


def graded_functions(chapter: str) -> list:
    """The package functions of a chapter that its assignment grades."""
    from dl4nlp.exercises import load

    parts = [(part.module, part.name) for part in load(chapter).parts]
    parts += [(f"dl4nlp.{chapter}", name) for name in ALSO_GRADED.get(chapter, [])]
    return [getattr(importlib.import_module(module), name) for module, name in dict.fromkeys(parts)]


def body_lines(function) -> list[str]:
    """The statements of a function's body after its docstring, one stripped line each (no comments)."""
    source = textwrap.dedent(inspect.getsource(function))
    definition = ast.parse(source).body[0]
    body = definition.body[1:] if isinstance(definition.body[0], ast.Expr) else definition.body
    lines = source.splitlines()[body[0].lineno - 1: body[-1].end_lineno]
    code = [line.split("  #")[0].strip() for line in lines]
    return [line for line in code if len(line) >= 12]  # short lines ("return h, c") are not distinctive


def page_text(html: str) -> str:
    """What a reader sees of a page: tags removed (highlighted code is split into spans), entities decoded."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    return html_module.unescape(re.sub(r"<[^>]+>", "", text))


@pytest.mark.slow
@pytest.mark.parametrize("page", [page for page in NOTEBOOK_PAGES if (ROOT / "solutions" / Path(page).name).is_dir()])
def test_chapter_page_is_not_the_answer_key(book_html, page):
    """The page shows a graded function's contract (signature, docstring), never a line of its body
    (a line its docstring states as an equation is part of the contract: students' stubs keep it)."""
    text = page_text((book_html / f"{page}.html").read_text())
    from dl4nlp import rnn

    if Path(page).name == "rnn":
        shown = body_lines(rnn.reverse_padded)  # not graded: the page shows its body, so the check can see bodies
        assert all(line in text for line in shown), "the page no longer shows reverse_padded: pick another witness"
    for function in graded_functions(Path(page).name):
        assert function.__doc__.strip().splitlines()[0] in text, f"show the contract of {function.__name__}"
        leaked = [line for line in body_lines(function) if line in text and line not in function.__doc__]
        assert not leaked, f"the page shows the body of the graded {function.__name__}: {leaked}"


def test_a_failing_cell_fails_the_build_every_time(tmp_path):
    """A cell error fails the build; the rebuild after it fails too (no stale cache hides it)."""
    for name in ("_config.yml", "nbgrader_config.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book" / "_ext", tmp_path / "book" / "_ext")
    shutil.copytree(ROOT / "book" / "_static", tmp_path / "book" / "_static")
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/broken\n")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n\nA test book.\n")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_markdown_cell("# Broken"),
                      nbformat.v4.new_code_cell("raise ValueError('this page is broken')")]
    nbformat.write(notebook, tmp_path / "book" / "broken.ipynb")
    assert build_book(tmp_path, smoke=True) != 0
    assert build_book(tmp_path, smoke=True) != 0
    notebook.cells[1].source = "print('fixed')"
    nbformat.write(notebook, tmp_path / "book" / "broken.ipynb")
    assert build_book(tmp_path, smoke=True) == 0


def test_pages_run_side_by_side_into_the_cache_the_build_reads(tmp_path):
    """The pages the cache lacks run before the build, two at a time, and are cached as myst-nb matches them
    (by their code cells); a page that fails is not cached (the build runs it again and reports it); a
    page already cached is not run again."""
    from jupyter_cache import get_cache

    timed = "import time\nstart = time.time()\ntime.sleep(3)\nprint({}, start, time.time())"
    pages = {"one": timed.format(1), "two": timed.format(2), "broken": "raise ValueError('no')"}
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       + "".join(f"  - file: book/{name}\n" for name in pages))
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    for name, source in pages.items():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        notebook.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, tmp_path / "book" / f"{name}.ipynb")
    cache_path = tmp_path / "_build" / ".jupyter_cache"
    failed = execute_pages(tmp_path, cache_path, timeout=60)
    assert failed == [str(tmp_path / "book" / "broken.ipynb")]
    cache = get_cache(str(cache_path))
    spans = []
    for name in ("one", "two"):
        record = cache.match_cache_notebook(nbformat.read(tmp_path / "book" / f"{name}.ipynb", as_version=4))
        outputs = cache.get_cache_bundle(record.pk).nb.cells[0].outputs
        spans.append([float(word) for word in outputs[0]["text"].split()[1:]])
    assert max(start for start, _ in spans) < min(end for _, end in spans), f"one after the other: {spans}"
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(tmp_path / "book" / "broken.ipynb", as_version=4))
    assert "execution" not in cache.get_cache_bundle(record.pk).nb.cells[0].metadata  # cached as myst-nb would
    log = (tmp_path / "_build" / "pre-execution.log").read_text()
    kernel = re.search(r"two\.ipynb: executed in \S+ s \(in the kernel (\d+\.\d) s, around it \S+ s; slowest cell 0",
                       log)
    assert kernel and 2.9 <= float(kernel.group(1)) < 10, log  # where the time went: the kernel slept 3 s
    # Run again: only the page the cache lacks runs (alone), and fails again; the others are not run.
    assert execute_pages(tmp_path, cache_path, timeout=60) == [str(tmp_path / "book" / "broken.ipynb")]
    last = (tmp_path / "_build" / "pre-execution.log").read_text()[len(log):]
    assert "executing 1 page, 1 at a time" in last and "broken.ipynb: failed" in last and "one.ipynb" not in last


CHAPTERS = [page for page in NOTEBOOK_PAGES if (ROOT / "solutions" / Path(page).name).is_dir()]


def test_every_assignment_has_a_chapter_page():
    assignments = {p.name for p in (ROOT / "solutions").iterdir() if p.is_dir()}
    assert assignments <= {Path(page).name for page in CHAPTERS}


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_opens_with_objectives_and_ends_with_exercises(page):
    """Learning objectives near the top; a summary and exercises that link the assignment's Colab badge."""
    cells = [c.source for c in nbformat.read(ROOT / f"{page}.ipynb", as_version=4).cells if c.cell_type == "markdown"]
    text = "\n".join(cells)
    assert "Learning objectives" in "\n".join(cells[:4]), "open the chapter with its learning objectives"
    summary, exercises = text.rfind("## Summary"), text.rfind("## Exercises")
    assert 0 < summary < exercises, "end the chapter with ## Summary, then ## Exercises"
    assignment = f"/assignments/{Path(page).name}/{Path(page).name}.ipynb"
    tail = text[exercises:]
    assert "colab-badge.svg" in tail and assignment in tail, "link the assignment with its Open in Colab badge"
