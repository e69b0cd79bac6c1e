"""Shared test settings: offline, smoke mode, and the repository root."""

from __future__ import annotations

import os
import threading
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


class BookBuild:
    """The book's smoke build (`dl4nlp book`'s code path), running in the background from the end of collection.

    Started as soon as the tests are collected, it runs beside the tests that come before the first one that
    needs the book: jupyter-book executes one page at a time, so it takes one core for 4 to 5 minutes, which a
    2-core CI machine otherwise spent waiting. Its output goes to build.log in its folder."""

    def __init__(self, out: Path) -> None:
        self.out, self.log = out, out / "build.log"
        self.code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._build, name="book build", daemon=True)
        self.thread.start()

    def _build(self) -> None:
        from dl4nlp.instructor.book import build_book

        try:
            with self.log.open("w") as log:
                self.code = build_book(ROOT, smoke=True, output=self.out, log=log)
        except BaseException as error:  # noqa: BLE001 - reported by the fixture, in the test that needs the book
            self.error = error

    def html(self) -> Path:
        """The built book's _build/html, once the build has ended; fails the test with the log's end if it failed."""
        self.thread.join()
        html = self.out / "_build" / "html"
        if self.error is not None or self.code != 0 or not (html / "search.html").is_file():
            tail = self.log.read_text(errors="replace")[-8000:] if self.log.is_file() else ""
            why = f"{type(self.error).__name__}: {self.error}" if self.error is not None else f"exit {self.code}"
            pytest.fail(f"the book build failed ({why}); the end of its log ({self.log}):\n{tail}")
        return html


BOOK_BUILD = pytest.StashKey[BookBuild]()


def pytest_collection_finish(session) -> None:
    """Start the book's build now if a collected test needs the book (and $DL4NLP_BOOK_HTML names none)."""
    if session.config.option.collectonly or os.environ.get("DL4NLP_BOOK_HTML"):
        return
    if any("book_html" in getattr(item, "fixturenames", ()) for item in session.items):
        # config._tmp_path_factory is what the tmp_path_factory fixture returns (no fixture runs before collection ends)
        session.config.stash[BOOK_BUILD] = BookBuild(session.config._tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="session")
def book_html(request) -> Path:
    """The built book's _build/html: $DL4NLP_BOOK_HTML, or the one smoke build of this test session, started
    in the background when the tests were collected (`BookBuild`)."""
    given = os.environ.get("DL4NLP_BOOK_HTML")
    if given:
        html = Path(given).resolve()
        if not (html / "search.html").is_file():
            pytest.fail(f"DL4NLP_BOOK_HTML={given} is not a built book (no search.html)")
        return html
    return request.config.stash[BOOK_BUILD].html()
