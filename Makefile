# The course's two commands: `make book` and `make test`.
# Both create .venv if it is missing and install the project from its own files.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
LABSTAMP := $(VENV)/.installed-lab
HTML   := $(CURDIR)/_build/html/index.html
export PATH := $(BIN):$(PATH)
# One BLAS thread per process: the course's matrices are small, and a multithreaded
# BLAS on a busy 2-core machine makes small products up to 200x slower.
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

.PHONY: book test lab instructor-lab hooks install clean vendor

install: $(STAMP)

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e ".[course,book,test,lab]"
	touch $@

book: $(STAMP)
	# --all re-reads every page (so no earlier warning is hidden); executed notebooks come from the cache.
	jupyter-book build . --all -W -n --keep-going
	@echo ""
	@echo "The site is built. Open:  file://$(HTML)"
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ]; then \
		$(VENV)/bin/python -m webbrowser -t "file://$(HTML)" >/dev/null 2>&1 || true; \
	fi

test: $(STAMP)
	pytest

# A learner's lab needs the course and JupyterLab only.
$(LABSTAMP): pyproject.toml requirements/constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e ".[course,lab]"
	touch $@

# Jupyter refuses to run as root unless told; containers often run as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# lab/ holds the learner's settings (no instructor tools, no news or update checks, local kernel sockets).
lab: $(LABSTAMP)
	@if [ -n "$(ALLOW_ROOT)" ]; then echo "Running as root: starting JupyterLab with --allow-root."; fi
	JUPYTER_CONFIG_PATH=$(CURDIR)/lab jupyter lab $(ALLOW_ROOT)

# The instructor's lab: nbgrader's formgrader and assignment tools, in the course directory.
instructor-lab: $(STAMP) $(LABSTAMP)
	@if [ -n "$(ALLOW_ROOT)" ]; then echo "Running as root: starting JupyterLab with --allow-root."; fi
	cd exercises && jupyter lab $(ALLOW_ROOT)

# Keep outputs out of commits: nbstripout as this clone's git filter for *.ipynb.
hooks: $(STAMP)
	nbstripout --install
	@echo "nbstripout now strips outputs from notebooks as they are staged in this clone."

clean:
	rm -rf _build

# The Vega scripts of the explorers' web views are committed in assets/vega/ (a fresh clone
# builds offline), axe-core in tests/axe/; this fetches the same pinned versions from the npm registry and checks them.
VEGA_PACKAGES := vega@6.4.0 vega-lite@6.4.1 vega-embed@7.3.0
# axe-core, the accessibility checker the site tests inject into each page (tests/axe/).
AXE_PACKAGE := axe-core@4.14.1
vendor:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent $(VEGA_PACKAGES) >/dev/null && \
	for pkg in $(VEGA_PACKAGES); do \
		name=$${pkg%@*}; mkdir -p $$name && tar xzf $$name-$${pkg#*@}.tgz -C $$name && \
		cp $$name/package/build/$$name.min.js $(CURDIR)/assets/vega/ && \
		cp $$name/package/LICENSE $(CURDIR)/assets/vega/LICENSE.$$name; \
	done && rm -rf $$tmp
	cd assets/vega && sha256sum -c SHA256SUMS
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent $(AXE_PACKAGE) >/dev/null && \
	tar xzf axe-core-*.tgz && \
	cp package/axe.min.js $(CURDIR)/tests/axe/ && \
	cp package/LICENSE $(CURDIR)/tests/axe/LICENSE.axe-core && \
	cp package/LICENSE-3RD-PARTY.txt $(CURDIR)/tests/axe/ && rm -rf $$tmp
	cd tests/axe && sha256sum -c SHA256SUMS

# make release | grade | check NB=path: the graded problem sets (README: For instructors).
include exercises/Makefile
release grade check: $(STAMP)
