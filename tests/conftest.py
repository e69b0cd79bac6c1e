"""Shared test settings: offline, smoke mode, and the repository root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dl4nlp.runtime import OFFLINE_ENVIRONMENT, SMOKE_VARIABLE

# Nothing in the tests touches the network; notebooks and kernels started by tests inherit these.
os.environ.update({**OFFLINE_ENVIRONMENT, SMOKE_VARIABLE: "1"})
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each, or they wait for each other
    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items) -> None:
    """The Colab check (scripts/colab_check.py) runs the tests on Colab's stack, where the instructor tools
    (nbgrader, jupyter-book, a browser) are not installed: under DL4NLP_NO_INSTRUCTOR_TOOLS the tests marked
    `instructor` are left out, and under DL4NLP_STRICT_WARNINGS a DeprecationWarning or FutureWarning from
    dl4nlp fails."""
    if os.environ.get("DL4NLP_NO_INSTRUCTOR_TOOLS"):
        kept = [item for item in items if item.get_closest_marker("instructor") is None]
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    if os.environ.get("DL4NLP_STRICT_WARNINGS"):
        for item in items:
            for category in ("DeprecationWarning", "FutureWarning"):
                item.add_marker(pytest.mark.filterwarnings(f"error::{category}:dl4nlp"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `make test` hands whole modules to its workers in this order: the book's own tests first, so that the
        # shared smoke build starts at once, and the other tests that read the book (the browser's) last, so that
        # no worker waits for it.
        readers = {item.module.__name__ for item in items if "book_html" in item.fixturenames}
        items.sort(key=lambda item: 0 if item.module.__name__ == "test_book" else 2 if item.module.__name__ in readers
                   else 1)


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """The built book's _build/html: $DL4NLP_BOOK_HTML, or one smoke build per test session
    through the same code path as `make book` (`dl4nlp book`)."""
    given = os.environ.get("DL4NLP_BOOK_HTML")
    if given:
        html = Path(given).resolve()
        if not (html / "search.html").is_file():
            pytest.fail(f"DL4NLP_BOOK_HTML={given} is not a built book (no search.html)")
        return html
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _build_book(tmp_path_factory.mktemp("book"))
    # Under `make test` (pytest-xdist) the first worker that needs the book builds it once for all of them.
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "book"
    with FileLock(f"{shared}.lock"):
        failed = shared / "failed"
        if failed.exists():
            pytest.fail(f"the book build failed in another worker: {failed.read_text()}")
        html = shared / "_build" / "html"
        if not (html / "search.html").is_file():
            try:
                shared.mkdir(parents=True, exist_ok=True)
                _build_book(shared)
            except BaseException as error:
                shared.mkdir(parents=True, exist_ok=True)
                failed.write_text(str(error)[:500])
                raise
    return html


def _build_book(out: Path) -> Path:
    """One smoke build of the book into `out`, through the same code path as `make book`; its _build/html."""
    from dl4nlp.instructor.book import build_book

    code = build_book(ROOT, smoke=True, output=out)
    html = out / "_build" / "html"
    if code != 0 or not (html / "search.html").is_file():
        pytest.fail(f"the book build failed (exit {code}); its log is in the captured output above")
    return html
