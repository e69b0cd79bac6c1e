# Two commands on a fresh machine with Python 3.11:  make book   and   make test
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test test-browser venv release lock clean colab-check

# pip would compile the bytecode one file at a time: compileall does it on every core (its failures, such as torch's
# testing/_internal/py312_intrinsics.py in Python 3.12 syntax, are ignored, as pip ignores them).
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 > /dev/null
	touch $(STAMP)

venv: $(STAMP)

# Build the book: executes every page offline on the CPU, writes _build/html.
book: $(STAMP)
	$(BIN)/python -m dl4nlp book

# The test suite; .ci/run calls exactly this (the 25 slowest tests listed at the end). bubblewrap contains graded
# submissions (optional). The browser visits of the built book run in test-browser instead (20-minute budget).
test: $(STAMP)
	-sh scripts/install_bubblewrap.sh
	$(BIN)/python -m pytest --durations=25 -m "not browser"

# Every page of the book in headless Chromium (tests/test_browser.py): a smoke build of its own, or the book in
# DL4NLP_BOOK_HTML. The pages workflow runs it on the book it is about to publish.
test-browser: $(STAMP)
	$(BIN)/python -m pytest -m browser

# The course on Colab's stack (scripts/colab-stack.txt, Python 3.13): run before tagging a term's release.
colab-check:
	python3 scripts/colab_check.py

# Regenerate assignments/ from solutions/ with nbgrader.
release: $(STAMP)
	$(BIN)/dl4nlp release

# Re-pin requirements.txt from the current environment.
lock: $(STAMP)
	{ grep '^#' requirements.txt; $(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu$$//' | grep -v '^dl4nlp'; } > requirements.tmp
	mv requirements.tmp requirements.txt

clean:
	rm -rf _build .pytest_cache
