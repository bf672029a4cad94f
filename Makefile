# Two commands: `make book` and `make test`. Both bootstrap .venv from a bare Python >= 3.11 with the exact
# pins of requirements-lock.txt, then do their job. Re-running is fast when nothing changed.
# `make site-check` checks the built book offline and in headless Chromium (pins of requirements-site.txt).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SITE_STAMP := $(VENV)/.installed-site
LAB_STAMP  := $(VENV)/.installed-lab
LAB_PORT ?= 8888
CHROMIUM ?= /usr/bin/chromium
PARAMS ?= params/paper.yaml
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
# The order of a run: the section notebooks, then the report, which reads their results.
RUN_ORDER := $(filter-out notebooks/04_reproduction.ipynb,$(NOTEBOOKS)) $(filter notebooks/04_reproduction.ipynb,$(NOTEBOOKS))
# What an executed notebook depends on besides itself: the library, the pipeline that runs it, the numeric settings.
LIB       := $(wildcard imreg_lib/*.py imreg_lib/paper/*.py) tools/pipeline.py tools/numerics.py tools/numerics.mk

# The data the book runs on: DATA=synthetic (default, offline) or DATA=paper (the paper's images, fetched on
# request by `make paper-data` into data/paper/, never committed; PAPER_DATA_URL for a mirror or a folder).
DATA ?= synthetic
PAPER_DATA_DIR := data/paper
PAPER_DATA_URL ?=
PAPER_DATA_SHA256 ?=
PAPER_FILES := $(PAPER_DATA_DIR)/hands-R.jpg $(PAPER_DATA_DIR)/hands-T.jpg
ifeq ($(DATA),paper)
EXEC_DIR    := _build/executed-paper
DATA_PARAMS := params/data-paper.yaml
DATA_DEPS   := $(DATA_PARAMS) $(PAPER_FILES)
else ifeq ($(DATA),synthetic)
EXEC_DIR    := _build/executed
DATA_PARAMS :=
DATA_DEPS   :=
else
$(error DATA must be 'synthetic' (the default) or 'paper', got '$(DATA)')
endif
EXECUTED  := $(patsubst notebooks/%.ipynb,$(EXEC_DIR)/%.ipynb,$(NOTEBOOKS))
REPORT_NB := $(EXEC_DIR)/04_reproduction.ipynb
# Which data the last book build used: switching DATA rebuilds the site.
DATA_STAMP := _build/data-$(DATA).stamp
BOOK_SRC  := _config.yml _toc.yml tools/sphinxext.py $(shell find book -type f) $(EXECUTED) $(DATA_STAMP)

# Numeric settings (threads, MKL's code path, ...): one file, every `?=` overridable from the environment.
CPU_AVX2 := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo yes)
include tools/numerics.mk
NUMERICS := $(shell sed -n 's/^\([A-Z][A-Z0-9_]*\) *?=.*/\1/p' tools/numerics.mk)
export $(NUMERICS)
# Per-cell time limit (seconds) of every notebook execution: a hung kernel fails with the notebook and cell named.
CELL_TIMEOUT ?= 900
export CELL_TIMEOUT
# The CPU regression run (make test's notebooks, make notebooks) hides CUDA so that device="auto" means the CPU.
TEST_CUDA_VISIBLE_DEVICES ?=
REFERENCES := tests/references

# What a run imports (notebooks, tests, the book build): bytecode written once at set-up (tools/precompile.py).
PRECOMPILE := imreg_lib imreg_lib.paper imreg_lib.paper.fullscale matplotlib.pyplot matplotlib.backends.backend_agg \
	matplotlib_inline.backend_inline ipywidgets IPython ipykernel.kernelapp papermill nbclient nbformat yaml tqdm.auto \
	SimpleITK dask distributed pytest nbval.plugin PIL.Image scipy.optimize scipy.sparse scipy.linalg scipy.ndimage \
	jupyter_book sphinx.application myst_nb

.PHONY: book test tests unit nbval regression lint notebooks env clean bench help site-check sweep numerics spread \
	paper-data paper-results gpu-check full-scale lab lab-check browser

help:
	@echo "make book        build the executed book into _build/html (PARAMS=params/quick.yaml for a preview)"
	@echo "                 DATA=paper: on the paper's own images (fetched by make paper-data if missing)"
	@echo "make paper-data  fetch the paper's two images into data/paper/, checked by SHA-256"
	@echo "                 (PAPER_DATA_URL=<address, file:// or folder> for a mirror; no network needed then)"
	@echo "make paper-results  run the section notebooks on the paper's images (results for the report's"
	@echo "                 second column; make book then shows both)"
	@echo "make test        all tests, nbval of the committed notebooks, results regression (tolerances)"
	@echo "make unit        the fast tests only (no kernels, Dask clusters, browsers): about a minute"
	@echo "make notebooks   re-execute the committed notebooks in place and rewrite tests/references (maintainers)"
	@echo "make numerics    print the numeric settings in force (tools/numerics.mk, environment wins)"
	@echo "make spread      maintainers: results under other numeric settings against the tolerances (long)"
	@echo "make bench       run the benchmarks (JSON into _build/benchmarks)"
	@echo "make full-scale  the authors' full-size super-resolution (m = 128, 16 templates; params/full.yaml):"
	@echo "                 Diff All, No Diff, implicit; results for the report (DATA=paper: the paper's image)"
	@echo "make gpu-check   on a CUDA machine: the §3/§4 experiments on cuda and cpu, compared and timed"
	@echo "make site-check  check the built book: files, links, figures, then every page in headless Chromium"
	@echo "                 (no console errors, nothing from the network; screenshots in _build/site-check;"
	@echo "                 CHROMIUM=/usr/bin/google-chrome to use another browser)"
	@echo "make lab         open the notebooks in JupyterLab (pinned, requirements-lab.txt) on 127.0.0.1 with a"
	@echo "                 token; rerun and tweak them, widgets included (LAB_PORT=8888)"
	@echo "make lab-check   the browser test of make lab: a page's widget cell in a real kernel, a slider moved"
	@echo "make sweep       NB=notebooks/X.ipynb GRID='{param: [v1, v2]}' [WORKERS=2 | SCHEDULER=tcp://host:port]"
	@echo "                 [BASE=params/quick.yaml] [FORCE=1]: one papermill run per grid point on Dask, into"
	@echo "                 _build/sweeps/X/, results in table.csv/.md; points already run are skipped"
	@echo "make lint        ruff"

env: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml tools/ipython_kernel_config.py
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# --no-compile: Python compiles the modules a run imports on first use, not every file of every package now
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -r requirements-lock.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	mkdir -p $(VENV)/etc/ipython && cp tools/ipython_kernel_config.py $(VENV)/etc/ipython/ipython_kernel_config.py
	$(PY) -m tools.precompile $(PRECOMPILE)
	touch $(STAMP)

# ---- book ------------------------------------------------------------------------------------------
book: _build/html/index.html

$(EXEC_DIR)/%.ipynb: notebooks/%.ipynb $(LIB) $(PARAMS) $(DATA_DEPS) $(STAMP)
	$(PY) -m tools.pipeline execute $< $@ --params $(PARAMS) $(if $(DATA_PARAMS),--params $(DATA_PARAMS)) \
		--cell-timeout $(CELL_TIMEOUT)

# The reproduction report reads the results JSON of the section notebooks (both data sets where both exist):
# it runs after them.
$(REPORT_NB): $(filter-out $(REPORT_NB),$(EXECUTED)) $(wildcard _build/results/0[0-35-9]_*.json _build/results/paper/0[0-35-9]_*.json)

$(DATA_STAMP):
	@mkdir -p _build
	rm -f _build/data-*.stamp
	touch $@

_build/html/index.html: $(BOOK_SRC) $(STAMP)
	$(PY) -m tools.pipeline stage $(EXEC_DIR) _build/src
	$(VENV)/bin/jupyter-book build _build/src --path-output . --warningiserror --keep-going
	@echo "Book: _build/html/index.html"

# ---- the paper's images ------------------------------------------------------------------------------
paper-data: $(STAMP)
	$(PY) -m tools.paper_data fetch --dest $(PAPER_DATA_DIR) $(if $(PAPER_DATA_URL),--url '$(PAPER_DATA_URL)') \
		$(foreach c,$(PAPER_DATA_SHA256),--sha256 $(c))

$(PAPER_FILES):
	$(MAKE) paper-data

# The section notebooks on the paper's images, for their results (_build/results/paper/); `make book` then
# shows them beside the synthetic hand's in the report. This is what the GitHub Pages workflow runs.
paper-results: $(STAMP)
	$(MAKE) DATA=paper $(patsubst notebooks/%.ipynb,_build/executed-paper/%.ipynb,$(filter-out \
		notebooks/04_reproduction.ipynb,$(NOTEBOOKS)))

# ---- the authors' full-size problem ------------------------------------------------------------------
# A measurement (time, peak memory, relative errors), not part of the regression: it uses every core
# (FULL_THREADS) instead of the notebooks' one thread. Its JSON goes beside the notebooks' results.
FULL_PARAMS ?= params/full.yaml
FULL_THREADS ?= $(shell nproc 2>/dev/null || echo 1)
ifeq ($(DATA),paper)
FULL_OUT := _build/results/paper/full_scale.json
FULL_REF := --reference-path $(PAPER_DATA_DIR)/hands-R.jpg
else
FULL_OUT := _build/results/full_scale.json
FULL_REF :=
endif

full-scale: $(STAMP) $(DATA_DEPS)
	OMP_NUM_THREADS=$(FULL_THREADS) MKL_NUM_THREADS=$(FULL_THREADS) OPENBLAS_NUM_THREADS=$(FULL_THREADS) \
		$(PY) -m imreg_lib.paper.fullscale --params $(FULL_PARAMS) --out $(FULL_OUT) $(FULL_REF)

# ---- site check ------------------------------------------------------------------------------------
# Both checks always run (the screenshots are wanted when the static check fails too); either failing fails.
$(SITE_STAMP): requirements-site.txt $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-site.txt
	touch $(SITE_STAMP)

# The browser of both checks: Debian's Chromium, installed when missing where that is possible (root, apt).
browser:
	@command -v "$(CHROMIUM)" >/dev/null || { \
		if [ "$(CHROMIUM)" = /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "browser: installing Debian's chromium"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else \
			echo "browser: none at $(CHROMIUM): install Chromium (Debian/Ubuntu: sudo apt-get install chromium)" \
				"or pass another one, e.g. make site-check CHROMIUM=/usr/bin/google-chrome" >&2; \
			exit 1; \
		fi; }

site-check: _build/html/index.html $(SITE_STAMP) browser
	status=0; \
	$(PY) -m tools.sitecheck static --html _build/html --toc _toc.yml || status=1; \
	$(PY) -m tools.sitecheck browser --html _build/html --toc _toc.yml --out _build/site-check \
		--chromium "$(CHROMIUM)" || status=1; \
	exit $$status

# ---- JupyterLab: open the notebooks, rerun and tweak them ------------------------------------------
# On 127.0.0.1 only, with Jupyter's token (printed in the address it opens); the kernels get the book's numeric
# settings. LAB_PORT: the port (Jupyter takes the next free one if it is busy).
$(LAB_STAMP): requirements-lab.txt $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements-lock.txt -r requirements-lab.txt
	touch $(LAB_STAMP)

lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --ServerApp.root_dir=. \
		--ServerApp.default_url=/lab/tree/notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# The browser test of make lab (also part of make test, where it is skipped without JupyterLab, Playwright or
# Chromium): here everything is installed first and a missing piece fails instead.
lab-check: $(LAB_STAMP) $(SITE_STAMP) browser
	IMREG_REQUIRE_BROWSER=1 CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/test_lab.py -q -p no:cacheprovider

# Re-execute the committed notebooks at their defaults (stored outputs), then write the references of the results
# regression test from the results they wrote, in one step. CUDA hidden: the stored outputs are the CPU's.
notebooks: $(STAMP)
	rm -f $(patsubst notebooks/%.ipynb,_build/results/%.json,$(NOTEBOOKS))
	mkdir -p _build/results  # the pages say when they create their results folder: the stored outputs do not
	for nb in $(RUN_ORDER); do CUDA_VISIBLE_DEVICES=$(TEST_CUDA_VISIBLE_DEVICES) \
		$(PY) -m tools.pipeline execute $$nb $$nb --in-place --cell-timeout $(CELL_TIMEOUT) || exit 1; done
	$(PY) -m tools.regression update _build/results --references $(REFERENCES)

numerics:
	@$(PYTHON) -m tools.numerics

# Maintainers: rerun the notebooks under other numeric settings and measure how far each result moves against the
# tolerances of tests/references/tolerances.yaml (SPREAD_WRITE=1 records the spreads there; SPREAD_MACHINE=name on
# a second kind of CPU adds its runs to the committed ones). Long: one run of the notebooks per setting.
spread: $(STAMP)
	CUDA_VISIBLE_DEVICES=$(TEST_CUDA_VISIBLE_DEVICES) $(PY) -m tools.spread --out _build/spread \
		--cell-timeout $(CELL_TIMEOUT) $(if $(SPREAD_SETTINGS),--settings $(SPREAD_SETTINGS)) \
		$(if $(SPREAD_NOTEBOOKS),--notebooks $(SPREAD_NOTEBOOKS)) $(if $(SPREAD_WRITE),--write) \
		$(if $(SPREAD_MACHINE),--machine $(SPREAD_MACHINE))

# ---- parameter sweeps -----------------------------------------------------------------------------
# On Dask: a local cluster on 127.0.0.1 (WORKERS processes, one thread each; default: the cores), or an existing
# cluster with SCHEDULER=tcp://host:port (tls:// with Dask's security settings). Points whose results exist for
# the same parameters are skipped (FORCE=1 runs them again); a failed point is run RETRIES more times.
WORKERS ?=
SCHEDULER ?=
RETRIES ?= 1
FORCE ?=
sweep: $(STAMP)
	@test -n "$(NB)" -a -n "$(GRID)" || { echo "usage: make sweep NB=notebooks/X.ipynb GRID='{param: [v1, v2]}'" \
		"[WORKERS=2 | SCHEDULER=tcp://host:port] [BASE=params/quick.yaml] [COLLECT=key.a,key.b] [FORCE=1]" >&2; exit 2; }
	$(PY) -m tools.pipeline sweep $(NB) --grid '$(GRID)' --out _build/sweeps --cell-timeout $(CELL_TIMEOUT) \
		--retries $(RETRIES) $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) \
		$(if $(FORCE),--force) $(if $(BASE),--base $(BASE)) $(if $(COLLECT),--collect $(COLLECT))

# ---- tests -----------------------------------------------------------------------------------------
# make test: every test (the fast ones, then the slow ones: kernels, Dask clusters, browsers, fresh interpreters),
# nbval of the committed notebooks and the results regression. make unit: the fast tests alone (about a minute).
# The unit tests and the notebooks (nbval, then the results regression) run side by side: each is one thread most
# of the time and they share nothing but the set-up, made first (their lines interleave). TEST_JOBS=1 runs them one
# after the other.
TEST_JOBS ?= 2
test: $(STAMP)
	$(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=line tests nbval

tests: $(STAMP)
	$(PY) -m ruff check imreg_lib tools tests benchmarks
	$(PY) -m pytest tests -q --durations=10

unit: $(STAMP)
	$(PY) -m ruff check imreg_lib tools tests benchmarks
	$(PY) -m pytest tests -q -m "not slow"

# nbval compares the stored text outputs (stable digits only) while the notebooks run and write their results JSON;
# the results regression then compares those numbers with tests/references under measured tolerances. Both run;
# either failing fails.
nbval: $(STAMP)
	rm -f $(patsubst notebooks/%.ipynb,_build/results/%.json,$(NOTEBOOKS))
	mkdir -p _build/results  # as when the stored outputs were made (a fresh clone has no _build/)
	status=0; CUDA_VISIBLE_DEVICES=$(TEST_CUDA_VISIBLE_DEVICES) $(PY) -m pytest -p no:python --nbval \
		--nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout $(CELL_TIMEOUT) \
		-p no:cacheprovider -q $(RUN_ORDER) || status=1; \
	$(PY) -m tools.regression check _build/results --references $(REFERENCES) || status=1; \
	exit $$status

# The results regression alone, on results already in _build/results (e.g. after make nbval).
regression: $(STAMP)
	$(PY) -m tools.regression check _build/results --references $(REFERENCES)

lint: $(STAMP)
	$(PY) -m ruff check imreg_lib tools tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/core.py --output _build/benchmarks/core.json
	$(PY) benchmarks/multiscale.py --output _build/benchmarks/multiscale.json
	OMP_NUM_THREADS=1 $(PY) benchmarks/superres.py --output _build/benchmarks/superres.json
	OMP_NUM_THREADS=1 $(PY) benchmarks/sr_engine.py --output benchmarks/sr_engine.json
	$(PY) benchmarks/ad_costs.py --output _build/benchmarks/ad_costs.json
	OMP_NUM_THREADS=1 $(PY) benchmarks/registration.py --output benchmarks/registration.json
	OMP_NUM_THREADS=1 $(PY) benchmarks/roundoff.py --output benchmarks/roundoff.json

# The GPU toggle, checked on a machine with a CUDA device: the §3 and §4 experiments on cuda and on cpu, compared
# with the regression's tolerances and timed. From the source tree with the machine's own Python (torch, NumPy,
# SciPy): nothing is installed. Exit 2 where no CUDA device is present.
gpu-check:
	PYTHONPATH=$(CURDIR) $(PYTHON) benchmarks/gpu_check.py --output _build/gpu-check.json

clean:
	rm -rf _build
