"""Shared test settings: offline, smoke mode, and the repository root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dl4nlp.runtime import OFFLINE_ENVIRONMENT, SMOKE_VARIABLE

# Nothing in the tests touches the network; notebooks and kernels started by tests inherit these.
os.environ.update({**OFFLINE_ENVIRONMENT, SMOKE_VARIABLE: "1"})

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


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def book_html(tmp_path_factory) -> Path:
    """The built book's _build/html: $DL4NLP_BOOK_HTML, or one smoke build per test session
    through the same code path as `make book` (`dl4nlp book`)."""
    from dl4nlp.instructor.book import build_book

    given = os.environ.get("DL4NLP_BOOK_HTML")
    if given:
        html = Path(given).resolve()
        if not (html / "search.html").is_file():
            pytest.fail(f"DL4NLP_BOOK_HTML={given} is not a built book (no search.html)")
        return html
    out = tmp_path_factory.mktemp("book")
    code = build_book(ROOT, smoke=True, output=out)
    html = out / "_build" / "html"
    if code != 0 or not (html / "search.html").is_file():
        pytest.fail(f"the book build failed (exit {code}); its log is in the captured output above")
    return html
