# Two commands: `make book` and `make test`. Both bootstrap .venv from a bare Python >= 3.11 with the exact
# pins of requirements-lock.txt, then do their job. Re-running is fast when nothing changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PARAMS ?= params/paper.yaml
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
EXECUTED  := $(patsubst notebooks/%.ipynb,_build/executed/%.ipynb,$(NOTEBOOKS))
LIB       := $(wildcard imreg_lib/*.py)
BOOK_SRC  := _config.yml _toc.yml $(wildcard book/*) $(EXECUTED)

export PYTHONHASHSEED := 0

.PHONY: book test unit nbval lint notebooks env clean bench help

help:
	@echo "make book        build the executed book into _build/html (PARAMS=params/quick.yaml for a preview)"
	@echo "make test        unit tests + nbval regression tests of the committed notebooks"
	@echo "make notebooks   re-execute the committed notebooks in place (maintainers, after a change)"
	@echo "make bench       run the benchmarks (JSON into _build/benchmarks)"
	@echo "make lint        ruff"

env: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# ---- book ------------------------------------------------------------------------------------------
book: _build/html/index.html

_build/executed/%.ipynb: notebooks/%.ipynb $(LIB) $(PARAMS) $(STAMP)
	$(PY) -m imreg_lib.pipeline execute $< $@ --params $(PARAMS)

_build/html/index.html: $(BOOK_SRC) $(STAMP)
	$(PY) -m imreg_lib.pipeline stage _build/executed _build/src
	$(VENV)/bin/jupyter-book build _build/src --path-output . --warningiserror --keep-going
	@echo "Book: _build/html/index.html"

notebooks: $(STAMP)
	for nb in $(NOTEBOOKS); do $(PY) -m imreg_lib.pipeline execute $$nb $$nb --in-place || exit 1; done

# ---- tests -----------------------------------------------------------------------------------------
test: unit nbval

unit: $(STAMP)
	$(PY) -m ruff check imreg_lib tests benchmarks
	$(PY) -m pytest tests -q

nbval: $(STAMP)
	$(PY) -m pytest -p no:python --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		-p no:cacheprovider -q $(NOTEBOOKS)

lint: $(STAMP)
	$(PY) -m ruff check imreg_lib tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/core.py --output _build/benchmarks/core.json
	$(PY) benchmarks/multiscale.py --output _build/benchmarks/multiscale.json
	OMP_NUM_THREADS=1 $(PY) benchmarks/superres.py --output _build/benchmarks/superres.json
	$(PY) benchmarks/ad_costs.py --output _build/benchmarks/ad_costs.json

clean:
	rm -rf _build
