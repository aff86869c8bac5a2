# The two commands (see README): `make book` builds the results book, `make test` runs the tests.
# Both create the virtual environment from pyproject.toml first (once; again when it changes).
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
BOOK ?= book
JOBS ?=
# Where the HAM10000 data lives: your download (official layout) or a flat images/ folder.
HAMVIZ_DATA ?= $(abspath ../shared/data/ham10000)
export HAMVIZ_DATA
# Where pretrained weights live (Keras-Hub preset folders, e.g. efficientnet_lite0_imagenet/).
HAMVIZ_WEIGHTS ?= $(abspath ../shared/weights)
export HAMVIZ_WEIGHTS

# The browser tests (tests/test_browser.py) drive this Chromium; `make test` installs Debian's where it is missing.
CHROMIUM ?= /usr/bin/chromium
export HAMVIZ_CHROMIUM := $(CHROMIUM)

STAMP := $(VENV)/.installed

.PHONY: book test env lab clean-book

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

book: $(STAMP)
	$(VENV)/bin/python -m hamviz book --profile $(PROFILE) --out $(BOOK) $(if $(JOBS),--jobs $(JOBS))

test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium

lab: $(STAMP)
	$(VENV)/bin/python -m pip install -q jupyterlab
	cd notebooks && ../$(VENV)/bin/jupyter lab

clean-book:
	rm -rf $(BOOK)
