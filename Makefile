# semibook: `make book` builds the offline HTML book; `make test` runs the tests, nbval, a strict
# build and the rendered-book test; `make reproduce TABLE=classification` runs a results table.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TABLE  ?= classification
PROFILE ?= full
NOTEBOOKS ?= book/*.ipynb
LOAD_ONLY ?= 1

.PHONY: book lab test unit smoke-notebooks nbval book-strict render reproduce execute gpu-prepare \
	gpu-check clean

# MathJax served by the book itself (Sphinx would load it from a CDN, unreachable offline)
MATHJAX := _mathjax/mathjax/es5/tex-chtml.js

# The ipywidgets JavaScript served by the book itself (myst-nb would load it from a CDN):
# require.js and the embedding bundle of @jupyter-widgets/html-manager 1.x (the one for
# ipywidgets 8), packed by npm from the npm registry and checked against these SHA-256 sums.
HTML_MANAGER     := 1.0.15
HTML_MANAGER_SHA := 2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638
REQUIREJS        := 2.3.8
REQUIREJS_SHA    := 777158e89275e16bd51aec3ef714fbcb5dc45789e7078659933bc814916d7dec
WIDGETS_JS       := _widgets/widgets/embed-amd.js

# Preflight: the system programs the asked targets need, checked before anything runs; a
# missing one stops make with one line naming the Debian package (exit status 2)
GOALS := $(or $(MAKECMDGOALS),$(STAMP))
need = $(if $(shell command -v $(1) 2>/dev/null),,$(error $(1) not found ($(2)); install it: \
  sudo apt-get install $(3)))
ifneq ($(filter test smoke-notebooks execute,$(GOALS)),)
$(call need,dot,Graphviz draws a chapter's diagram when the chapter runs,graphviz)
endif
ifneq ($(filter book book-strict test,$(GOALS)),)
ifeq ($(wildcard $(WIDGETS_JS)),)
$(call need,npm,it packs the widgets' JavaScript once,npm)
endif
endif
ifneq ($(filter test render,$(GOALS)),)
$(call need,chromium,the rendered-book test opens every page in it,chromium)
endif

# semibook is installed in "compat" editable mode, a path entry for the repository: a folder
# named semibook beside a notebook (a clone's root, say) then cannot shadow it as an empty
# namespace package, as it does with setuptools' default import hook
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $(STAMP)

$(MATHJAX): $(STAMP)
	rm -rf _mathjax && mkdir -p _mathjax/mathjax
	$(PY) -c "import importlib.util as u, shutil; src = u.find_spec('mathjax').submodule_search_locations[0]; shutil.copytree(src + '/static/mathjax/es5', '_mathjax/mathjax/es5')"

$(WIDGETS_JS):
	rm -rf _widgets && mkdir -p _widgets/pack _widgets/widgets
	cd _widgets/pack && npm pack --silent --loglevel=error \
	  @jupyter-widgets/html-manager@$(HTML_MANAGER) requirejs@$(REQUIREJS) >/dev/null
	cd _widgets/pack && printf '%s  %s\n%s  %s\n' \
	  $(HTML_MANAGER_SHA) jupyter-widgets-html-manager-$(HTML_MANAGER).tgz \
	  $(REQUIREJS_SHA) requirejs-$(REQUIREJS).tgz | sha256sum -c --quiet
	cd _widgets/pack && for t in *.tgz; do mkdir -p "$${t%.tgz}" && tar -xzf "$$t" -C "$${t%.tgz}"; done
	cp _widgets/pack/requirejs-$(REQUIREJS)/package/require.js _widgets/widgets/require.js
	cd _widgets/pack/jupyter-widgets-html-manager-$(HTML_MANAGER)/package/dist && \
	  cp embed-amd.js *.woff2 *.woff *.ttf *.eot *.svg ../../../../widgets/
	rm -rf _widgets/pack

# The HTML book from the committed notebooks (nothing is executed): _build/html/index.html
book: $(STAMP) $(MATHJAX) $(WIDGETS_JS)
	$(VENV)/bin/jupyter-book build --all .
	@echo "open _build/html/index.html"

# JupyterLab on the chapters (book/), from .venv: open one and run it (Run > Run All Cells).
# LAB_ARGS passes options, e.g. make lab LAB_ARGS="--no-browser --port 8890"; as root (a
# container) it adds --allow-root, without which Jupyter refuses to start
lab: $(STAMP)
	$(VENV)/bin/jupyter-lab --ServerApp.root_dir=book $(if $(filter 0,$(shell id -u)),--allow-root) \
	  $(LAB_ARGS)

# Unit tests, every chapter run in the smoke profile (the training code path), the chapters
# re-executed in the reported profile from the results files with their committed outputs
# checked (nbval), a build with warnings as errors, and every built page opened in headless
# Chromium
test: unit smoke-notebooks nbval book-strict render

unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests --ignore=tests/test_book_render.py

# Every chapter executed in the smoke profile on copies under _build/smoke (its numbers mean
# nothing, so no output is compared and the committed chapters stay as they are)
smoke-notebooks: $(STAMP)
	rm -rf _build/smoke && mkdir -p _build/smoke && cp book/*.ipynb _build/smoke/
	cd _build/smoke && SEMIBOOK_PROFILE=smoke SEMIBOOK_WIDGETS=static \
	  ../../$(VENV)/bin/jupyter-execute --inplace --timeout=-1 *.ipynb

# The chapters whose committed outputs come from the reported (full) profile, re-executed
# loading results only (a missing results file is an error, never training); nbval compares
# the cells marked NBVAL_CHECK_OUTPUT (results tables, met/not-met statements) with the
# committed outputs
FULL_NOTEBOOKS ?= $(shell grep -l '"profile: full' book/*.ipynb)
nbval: $(STAMP)
	$(if $(strip $(FULL_NOTEBOOKS)),SEMIBOOK_PROFILE=full SEMIBOOK_LOAD_ONLY=1 \
	  SEMIBOOK_WIDGETS=static $(PY) -m pytest -q --nbval-lax -p no:cacheprovider \
	  $(FULL_NOTEBOOKS),@echo "no chapter holds full-profile outputs yet")

book-strict: $(STAMP) $(MATHJAX) $(WIDGETS_JS)
	$(VENV)/bin/jupyter-book build --all -W -n --keep-going .

# needs the book built (book or book-strict) and Debian's chromium
render: $(STAMP)
	SEMIBOOK_BOOK_HTML=_build/html $(PY) -m pytest -q -p no:cacheprovider tests/test_book_render.py

# Run a results table (full profile, seeds 0-2), skipping finished runs; DRY=1 only lists
reproduce: $(STAMP)
	$(PY) -m semibook reproduce $(TABLE) $(if $(DRY),--dry-run)

# Re-execute chapters in place, saving outputs and the static widgets' state, e.g.
# make execute PROFILE=full NOTEBOOKS=book/04_cps.ipynb (full: loads results/ files; a missing
# one is an error, unless LOAD_ONLY= is given empty, when the chapter trains it)
execute: $(STAMP)
	SEMIBOOK_PROFILE=$(PROFILE) SEMIBOOK_WIDGETS=static \
	  SEMIBOOK_LOAD_ONLY=$(if $(filter smoke,$(PROFILE)),,$(LOAD_ONLY)) \
	  $(VENV)/bin/jupyter-execute --inplace \
	  --timeout=-1 $(NOTEBOOKS)

# One prepared GPU check (tools/gpu_check.py). gpu-prepare: the wheels a GPU machine lacks and
# Fashion-MNIST's files into the ignored .whl/ and .gpu-data/, the sizes one device call carries
# and its command. gpu-check: the check on this machine's GPU (CUDA tests, a smoke run of every
# method, the bench, the benchmark's full-profile runs while its budget lasts) into
# _build/gpu-check; DRY=1 prepares, then runs the same stages on the CPU at tiny sizes
gpu-prepare: $(STAMP)
	$(PY) tools/gpu_check.py prepare

gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py $(if $(DRY),dry,run)

clean:
	rm -rf _build _mathjax _widgets
