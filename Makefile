# semibook: `make book` builds the HTML book; `make test` runs the tests, nbval and a strict build.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test unit nbval book-strict clean

# MathJax served by the book itself (Sphinx would load it from a CDN, unreachable offline)
MATHJAX := _mathjax/mathjax/es5/tex-chtml.js

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(MATHJAX): $(STAMP)
	rm -rf _mathjax && mkdir -p _mathjax/mathjax
	$(PY) -c "import importlib.util as u, shutil; src = u.find_spec('mathjax').submodule_search_locations[0]; shutil.copytree(src + '/static/mathjax/es5', '_mathjax/mathjax/es5')"

# The HTML book from the committed notebooks (nothing is executed): _build/html/index.html
book: $(STAMP) $(MATHJAX)
	$(VENV)/bin/jupyter-book build --all .
	@echo "open _build/html/index.html"

# Unit tests, every chapter re-run in the smoke profile (nbval), and a build with warnings as errors
test: unit nbval book-strict

unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

nbval: $(STAMP)
	SEMIBOOK_PROFILE=smoke $(PY) -m pytest -q --nbval-lax -p no:cacheprovider book/*.ipynb

book-strict: $(STAMP) $(MATHJAX)
	$(VENV)/bin/jupyter-book build --all -W -n --keep-going .

clean:
	rm -rf _build _mathjax
