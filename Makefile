# The two commands (see README): `make book` builds the results book, `make test` runs the tests.
# Both create the virtual environment from pyproject.toml first (once; again when it changes).
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
BOOK ?= book
JOBS ?=
# Where the HAM10000 data lives: your download (official layout) or a flat images/ folder. Default: the copy beside
# the repository (../shared/data/ham10000) when there is one; without it HAMVIZ_DATA stays unset and the first
# `make book` downloads HAM10000 once into $HAMVIZ_HOME/ham10000 (default ~/.local/share/hamviz/ham10000; see README;
# `make book HAMVIZ_NO_DOWNLOAD=1` turns that off).
HAMVIZ_DATA ?= $(wildcard $(abspath ../shared/data/ham10000))
ifneq ($(strip $(HAMVIZ_DATA)),)
export HAMVIZ_DATA
endif
# Where pretrained weights live (Keras-Hub preset folders, e.g. efficientnet_lite0_imagenet/). Default: ../shared/weights
# when it is there; otherwise the book fetches the preset once into the weights cache (<cache>/weights).
HAMVIZ_WEIGHTS ?= $(wildcard $(abspath ../shared/weights))
ifneq ($(strip $(HAMVIZ_WEIGHTS)),)
export HAMVIZ_WEIGHTS
endif

# The browser tests (tests/test_browser.py) drive this Chromium; `make test` installs Debian's where it is missing.
CHROMIUM ?= /usr/bin/chromium
export HAMVIZ_CHROMIUM := $(CHROMIUM)

STAMP := $(VENV)/.installed

.PHONY: book test env lab clean-book docs

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

book: $(STAMP)
	$(VENV)/bin/python -m hamviz book --profile $(PROFILE) --out $(BOOK) $(if $(JOBS),--jobs $(JOBS))

# Two pytest-xdist workers (the machine's two cores): one builds the tiny book and runs the tests that read it,
# the other starts with the paper profile's smoke test; the other modules go to whichever is free
# (tests/conftest.py groups and orders them).
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

# JupyterLab is a dependency of hamviz: the notebooks open in the environment that builds the book
lab: $(STAMP)
	cd notebooks && ../$(VENV)/bin/jupyter lab

clean-book:
	rm -rf $(BOOK)

# The documentation site (README is its front page): docs/*.md, the parameter reference generated from the
# profile schema; offline, and any Sphinx warning is an error. Open docs/_build/html/index.html.
docs: $(STAMP)
	$(VENV)/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html
