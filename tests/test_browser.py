"""The published book, tested as a reader sees it: every page of _toc.yml in a real browser.

The book is built once per session (smoke mode, into a temporary folder) and served
from 127.0.0.1; headless Chromium (Playwright for Python, Debian's chromium) visits
each page at desktop and phone width. Per page:

- no console errors and no uncaught exceptions;
- nothing is fetched from another host: MathJax and the widget manager come from the
  book's own _static folder (requests elsewhere are aborted and fail the page);
- math is typeset by MathJax and no raw ``$$`` is left in the text;
- every image and figure loaded;
- notebook pages show executed outputs and an Open-in-Colab button whose address is
  built from _config.yml's repository settings;
- widgets render from their saved state on pages whose notebook has widgets;
- internal links resolve (HTTP 200, the anchor exists);
- the search page finds a word of each chapter and lists that chapter.

Screenshots (desktop 1366x900 and phone 390x844) go to $DL4NLP_ARTIFACTS (default
_build/screenshots): the first screen of each page, and the whole page where the visit found a
problem or DL4NLP_FULL_SCREENSHOTS=1 (a whole long page took 5 to 8 s to encode, 4 to 5 minutes
of every test run for all of them; the first screen takes 0.15 s). Set
DL4NLP_BOOK_HTML=path/to/_build/html to test a book that is already built instead of building
one. The browser: $DL4NLP_CHROMIUM, else chromium on PATH, else scripts/install_browser.sh
installs Debian's; the tests skip (saying how to install one) only when no browser can be had.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.instructor,  # the instructor tools: not run by the Colab check
              pytest.mark.browser]  # make test-browser and the pages workflow (make test leaves these out)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
SOURCE_SUFFIXES = (".ipynb", ".md", ".rst")
VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
# Words a reader might search for, tried first on each page; else a rare long word of the page.
SEARCH_WORDS = ("bidirectional", "forget", "attention", "transformer", "gradebook", "colab")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WAIT_MS = 15_000  # the longest wait for MathJax, widgets or the network to settle on one page
FULL_SCREENSHOTS = os.environ.get("DL4NLP_FULL_SCREENSHOTS", "") not in ("", "0")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
# Console messages that are not errors of the book. Keep this list short and explained.
ALLOWED_CONSOLE = [
    # (none so far: every error fails the page)
]


# --- the pages of _toc.yml ------------------------------------------------------------


def _toc_entries(node) -> list[str]:
    """Every `file` (and expanded `glob`) in a _toc.yml node, in order, recursively."""
    found: list[str] = []
    if isinstance(node, list):
        for item in node:
            found += _toc_entries(item)
    elif isinstance(node, dict):
        if "file" in node:
            found.append(str(node["file"]))
        if "glob" in node:
            found += sorted({str(p.relative_to(ROOT).with_suffix("")) for p in ROOT.glob(node["glob"] + ".*")
                             if p.suffix in SOURCE_SUFFIXES})
        for key in ("parts", "chapters", "sections", "subtrees", "entries"):
            if key in node:
                found += _toc_entries(node[key])
    return found


def toc_docnames() -> list[str]:
    """Document names (`book/rnn`) of every page in _toc.yml, the root first."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [str(toc["root"])] + _toc_entries(toc)
    names = [re.sub(r"\.(ipynb|md|rst)$", "", name) for name in names]
    return list(dict.fromkeys(names))


def source_of(docname: str) -> Path | None:
    """The page's source file, or None when _toc.yml names a file that does not exist."""
    for suffix in SOURCE_SUFFIXES:
        if (ROOT / (docname + suffix)).is_file():
            return ROOT / (docname + suffix)
    return None


def is_notebook(docname: str) -> bool:
    path = source_of(docname)
    return path is not None and path.suffix == ".ipynb"


DOCNAMES = toc_docnames()


def source_has_widgets(docname: str) -> bool:
    """True when the page's notebook shows a widget: saved widget state, a widget view output,
    or code that uses ipywidgets (book pages are committed without outputs and run at build time)."""
    if not is_notebook(docname):
        return False
    notebook = json.loads(source_of(docname).read_text())
    if notebook.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state"):
        return True
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    if any(re.search(r"^\s*(import ipywidgets|from ipywidgets import)", "".join(cell["source"]), re.M)
           for cell in code_cells):
        return True
    return any(WIDGET_VIEW in output.get("data", {}) for cell in code_cells for output in cell.get("outputs", []))


def colab_href(docname: str) -> str:
    """The Open-in-Colab address sphinx-book-theme must show for a notebook page."""
    repository = CONFIG["repository"]
    org_repo = urllib.parse.urlparse(repository["url"]).path.strip("/")
    org_repo = org_repo.removesuffix(".git")
    book_path = (repository.get("path_to_book") or "").strip("/")
    prefix = f"{book_path}/" if book_path else ""
    colab = CONFIG.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com").rstrip("/")
    return f"{colab}/github/{org_repo}/blob/{repository.get('branch', 'main')}/{prefix}{docname}.ipynb"


# --- build, serve, browse -------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="session")
def site(book_html):
    """The built book served on 127.0.0.1 at a free port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _find_chromium() -> str | None:
    given = os.environ.get("DL4NLP_CHROMIUM")
    if given and os.access(given, os.X_OK):
        return given
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium_path() -> tuple[str | None, str]:
    """(path to a Chromium, or None; why none was found). Installs Debian's when there is none."""
    path = _find_chromium()
    if path is not None:
        return path, ""
    script = ROOT / "scripts" / "install_browser.sh"
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode == 0 and lines and os.access(lines[-1], os.X_OK):
        return lines[-1], ""
    return None, result.stderr.strip()[-400:]


@pytest.fixture(scope="session")
def browser(chromium_path):
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: pip install -r requirements.txt")
    path, why = chromium_path
    with sync_playwright() as playwright:
        try:  # without a system Chromium, Playwright's own (`playwright install chromium`) if present
            launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except PlaywrightError as error:
            if path is not None:
                raise
            pytest.skip("no browser for the browser tests: scripts/install_browser.sh could not install "
                        f"Chromium ({why}), and Playwright has none of its own ({error.message.splitlines()[0]}). "
                        "Install one with `sudo apt-get install chromium` (Debian) or "
                        "`python -m playwright install chromium`, or set DL4NLP_CHROMIUM=/path/to/chrome.")
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("DL4NLP_ARTIFACTS", ROOT / "_build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Visit:
    """What a reader's browser saw on one page at one width."""
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    links: list[str] = field(default_factory=list)


LOAD_IMAGES_JS = """
() => Promise.race([
  Promise.all(Array.from(document.images).map(img => {
    img.loading = 'eager';
    return img.complete ? null : new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); });
  })),
  new Promise((_, fail) => setTimeout(() => fail(new Error('timeout')), 15000)),
])
"""

# Collected in the page after it settled: images, math, outputs, widgets, launch links.
FACTS_JS = r"""
() => {
  const article = document.querySelector('article') || document.querySelector('main') || document.body;
  const text = article.cloneNode(true);
  text.querySelectorAll('pre, code, script, style, mjx-container, .MathJax, .highlight').forEach(e => e.remove());
  const visible = text.textContent;
  const images = Array.from(document.images).filter(img => img.closest('article, main'))
      .map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0}));
  const figures = Array.from(document.querySelectorAll('figure')).map(fig => ({
      id: fig.id || fig.textContent.trim().slice(0, 60),
      ok: Array.from(fig.querySelectorAll('img')).every(i => i.complete && i.naturalWidth > 0)
          && (fig.offsetParent === null || fig.getBoundingClientRect().height > 0)}));  // hidden: in a closed toggle
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  return {
    title: document.title,
    mathElements: document.querySelectorAll('.math').length,
    mathUntypeset: Array.from(document.querySelectorAll('.math')).filter(e => !e.querySelector('mjx-container')).length,
    mjx: document.querySelectorAll('mjx-container').length,
    rawDisplayMath: visible.includes('$$'),
    rawEnvironments: /\\begin\{/.test(visible),
    images, figures,
    codeCells: document.querySelectorAll('.cell .cell_input').length,
    outputs: document.querySelectorAll('.cell .cell_output').length,
    widgetState: document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]').length,
    widgetViews: views.length,
    widgetsRendered: views.filter(v => {
      const area = v.previousElementSibling;
      return area && area.classList.contains('widget-subarea') && area.querySelector('.jupyter-widgets') &&
             area.getBoundingClientRect().height > 0;
    }).length,
    colab: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  };
}
"""


def _visit(browser, site: str, docname: str, width: str, screenshot: Path) -> Visit:
    from playwright.sync_api import Error as PlaywrightError

    base_host = urllib.parse.urlparse(site).netloc
    context = browser.new_context(viewport=VIEWPORTS[width], is_mobile=(width == "phone"),
                                  has_touch=(width == "phone"), service_workers="block")
    visit = Visit(url=site + docname + ".html")

    def route(route_) -> None:
        url = route_.request.url
        if urllib.parse.urlparse(url).netloc == base_host:
            route_.continue_()
        else:
            visit.external.append(url)
            route_.abort("blockedbyclient")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda message: visit.console_errors.append(f"{message.text} ({message.location.get('url', '')})")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
    page.on("requestfailed", lambda request: visit.failed.append(f"{request.url}: {request.failure}"))
    page.on("response", lambda response: visit.failed.append(f"{response.url}: HTTP {response.status}")
            if response.status >= 400 else None)
    try:
        response = page.goto(visit.url, wait_until="load")
        if response is None or response.status != 200:
            visit.problems.append(f"HTTP {response and response.status} for the page itself")
        # MathJax (deferred) typesets after load; wait for its first pass where the page has math.
        if page.query_selector(".math"):
            try:
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                       timeout=WAIT_MS)
                page.evaluate("() => MathJax.startup.promise.then(() => true)")
            except PlaywrightError as error:
                visit.problems.append(f"MathJax did not start: {error.message.splitlines()[0]}")
        # Widgets render after load, from the saved state; give them time where there are views.
        if page.query_selector('script[type="application/vnd.jupyter.widget-view+json"]'):
            try:
                page.wait_for_selector(".widget-subarea .jupyter-widgets", timeout=WAIT_MS)
            except PlaywrightError:  # reported by test_widgets_render_from_saved_state
                pass
        try:
            page.wait_for_load_state("networkidle", timeout=WAIT_MS)
        except PlaywrightError:
            visit.problems.append("the page never stopped loading (network busy)")
        try:  # every image of the page loaded or failed (lazy ones too)
            page.evaluate(LOAD_IMAGES_JS)
        except PlaywrightError as error:
            visit.problems.append(f"images still loading: {error.message.splitlines()[0]}")
        visit.facts = page.evaluate(FACTS_JS)
        visit.links = visit.facts.pop("links")
        troubled = bool(visit.problems or visit.console_errors or visit.page_errors or visit.failed or visit.external)
        page.screenshot(path=str(screenshot), full_page=troubled or FULL_SCREENSHOTS)
    except PlaywrightError as error:  # keep the visit: every check then fails with this reason
        visit.problems.append(f"the browser failed on the page: {error.message.splitlines()[0]}")
    finally:
        context.close()
    return visit


class Reader:
    """Visits each page once per width and remembers what it saw (shared by all checks)."""

    def __init__(self, browser, site: str, artifacts: Path) -> None:
        self.browser, self.site, self.artifacts = browser, site, artifacts
        self.visits: dict[tuple[str, str], Visit] = {}
        self.status: dict[str, tuple[int, set[str]]] = {}
        self.texts: dict[str, str] = {}

    def visit(self, docname: str, width: str = "desktop") -> Visit:
        key = (docname, width)
        if key not in self.visits:
            shot = self.artifacts / f"{docname.replace('/', '__')}-{width}.png"
            self.visits[key] = _visit(self.browser, self.site, docname, width, shot)
        return self.visits[key]

    def facts(self, docname: str) -> dict:
        """What the desktop visit measured; fails the test when the page could not be measured."""
        visit = self.visit(docname)
        if not visit.facts:
            pytest.fail(f"{visit.url} could not be read:\n{_describe(visit)}")
        return visit.facts

    def text(self, docname: str) -> str:
        """The lower-cased text of a page's article, without code (cached)."""
        if docname not in self.texts:
            with urllib.request.urlopen(self.site + docname + ".html", timeout=30) as response:
                body = response.read().decode("utf-8", "replace")
            main = re.search(r"<article.*?</article>", body, re.S)
            text = re.sub(r"<(script|style|pre)\b.*?</\1>", " ", main.group(0) if main else body, flags=re.S)
            self.texts[docname] = re.sub(r"<[^>]+>", " ", text).lower()
        return self.texts[docname]

    def fetch(self, url: str) -> tuple[int, set[str]]:
        """HTTP status and the element ids of a page of the served book (cached)."""
        if url not in self.status:
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    body = response.read()
                    status = response.status
            except urllib.error.HTTPError as error:
                self.status[url] = (error.code, set())
                return self.status[url]
            ids: set[str] = set()
            if url.endswith((".html", "/")):
                collector = _IdCollector()
                collector.feed(body.decode("utf-8", "replace"))
                ids = collector.ids
            self.status[url] = (status, ids)
        return self.status[url]


class _IdCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@pytest.fixture(scope="session")
def reader(browser, site, artifacts) -> Reader:
    return Reader(browser, site, artifacts)


def _describe(visit: Visit) -> str:
    return json.dumps({"problems": visit.problems, "console errors": visit.console_errors, "page errors": visit.page_errors,
                       "failed requests": visit.failed, "requests to other hosts": visit.external}, indent=2)


# --- the checks, one test per page ----------------------------------------------------

pages = pytest.mark.parametrize("docname", DOCNAMES)
notebook_pages = pytest.mark.parametrize(
    "docname", [name for name in DOCNAMES if is_notebook(name)] or
    [pytest.param(None, marks=pytest.mark.skip(reason="no notebook page in _toc.yml"))])


def test_toc_lists_pages():
    assert DOCNAMES, "_toc.yml names no pages"
    missing = [name for name in DOCNAMES if source_of(name) is None]
    assert not missing, f"_toc.yml names pages with no .ipynb/.md/.rst source: {missing}"


@pages
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_no_errors_and_nothing_from_other_hosts(reader, docname, width):
    """Console clean, no uncaught exception, no failed request, no request off 127.0.0.1; screenshot saved."""
    visit = reader.visit(docname, width)
    errors = [e for e in visit.console_errors if not any(re.search(p, e) for p in ALLOWED_CONSOLE)]
    assert not (visit.problems or errors or visit.page_errors or visit.failed or visit.external), \
        f"{visit.url} at {width} width:\n{_describe(visit)}"
    shot = reader.artifacts / f"{docname.replace('/', '__')}-{width}.png"
    assert shot.is_file() and shot.stat().st_size > 5_000, f"no screenshot of {visit.url}"


@pages
def test_math_is_typeset(reader, docname):
    facts = reader.facts(docname)
    assert not facts["rawDisplayMath"], f"{docname}: raw $$ in the page text (math not parsed)"
    assert not facts["rawEnvironments"], f"{docname}: a raw \\begin{{...}} in the page text"
    assert facts["mathUntypeset"] == 0, \
        f"{docname}: {facts['mathUntypeset']} of {facts['mathElements']} math elements not typeset by MathJax " \
        f"{reader.visit(docname).problems}"
    if facts["mathElements"]:
        assert facts["mjx"] >= facts["mathElements"]


@pages
def test_images_and_figures_load(reader, docname):
    facts = reader.facts(docname)
    broken = [image["src"] for image in facts["images"] if not image["ok"]]
    assert not broken, f"{docname}: images that did not load: {broken}"
    empty = [figure["id"] for figure in facts["figures"] if not figure["ok"]]
    assert not empty, f"{docname}: figures that did not render: {empty}"


@notebook_pages
def test_notebook_shows_executed_outputs(reader, docname):
    facts = reader.facts(docname)
    assert facts["codeCells"] > 0, f"{docname}: a notebook page with no code cells shown"
    assert facts["outputs"] > 0, f"{docname}: no cell outputs (was the notebook executed?)"


@notebook_pages
def test_colab_launch_button(reader, docname):
    expected = colab_href(docname)
    found = reader.facts(docname)["colab"]
    assert expected in found, f"{docname}: Colab launch link should be {expected}, page has {found}"


@pages
def test_widgets_render_from_saved_state(reader, docname):
    facts = reader.facts(docname)
    if source_has_widgets(docname):
        assert facts["widgetViews"] > 0 and facts["widgetState"] > 0, \
            f"{docname}: the notebook has widgets but the page has no widget views/state"
    if facts["widgetViews"]:
        assert facts["widgetState"] > 0, f"{docname}: widget views but no saved widget state"
        assert facts["widgetsRendered"] == facts["widgetViews"], \
            f"{docname}: {facts['widgetsRendered']} of {facts['widgetViews']} widgets rendered"


@pages
def test_internal_links_resolve(reader, site, docname):
    reader.facts(docname)  # fails if the page could not be read
    visit = reader.visit(docname)
    broken = []
    for link in sorted(set(visit.links)):
        parsed = urllib.parse.urlparse(link)
        if not link.startswith(site):
            continue
        target = urllib.parse.urlunparse(parsed._replace(fragment="", query=""))
        status, ids = reader.fetch(target)
        if status != 200:
            broken.append(f"{link} (HTTP {status})")
        elif parsed.fragment and target.endswith((".html", "/")) and \
                urllib.parse.unquote(parsed.fragment) not in ids:
            broken.append(f"{link} (no element with id {parsed.fragment!r})")
    assert not broken, f"{docname}: broken internal links:\n" + "\n".join(broken)


def _search_word(reader, docname: str) -> str:
    """A word of the page for the search test: a preferred one, else a rare long word."""
    words = {name: Counter(re.findall(r"[a-z]{7,}", reader.text(name))) for name in DOCNAMES}
    mine = words[docname]
    for word in SEARCH_WORDS:
        if mine[word]:
            return word
    elsewhere = Counter(word for name, counter in words.items() if name != docname for word in counter)
    candidates = sorted(mine, key=lambda word: (elsewhere[word], -mine[word], word))
    assert candidates, f"{docname}: no word to search for"
    return candidates[0]


@pages
def test_search_finds_the_page(reader, site, docname):
    word = _search_word(reader, docname)
    context = reader.browser.new_context(viewport=VIEWPORTS["desktop"])
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(site)
                  else route.abort("blockedbyclient"))
    page = context.new_page()
    try:
        page.goto(f"{site}search.html?q={word}", wait_until="load")
        page.wait_for_function("""() => {
            const box = document.querySelector('#search-results');
            return box && /Search finished|found|did not match/i.test(box.innerText); }""", timeout=30_000)
        hits = page.eval_on_selector_all("#search-results a[href]", "links => links.map(a => a.href)")
    finally:
        context.close()
    paths = [urllib.parse.urlparse(hit).path for hit in hits]
    assert f"/{docname}.html" in paths, f"searching {word!r} does not list {docname}: {paths}"
