# Skip connections course: set-up, tests and the book. Every target that needs Python
# creates .venv first (python3 -m venv, pip upgrade, pip install -c constraints/book.txt -e ".[$(EXTRAS)]");
# a stamp file makes later runs skip the install until pyproject.toml or constraints/book.txt changes.
#
#   make test         unit tests + nbval on the notebooks + a smoke build of the book
#   make lint         ruff on skiplib/, tests/ and the notebooks ([tool.ruff] in pyproject.toml)
#   make book         the website in _build/html (profile: $SKIPLIB_PROFILE, default gpu/cpu)
#   make site-test    after make book: every page in headless Chromium, offline (+ link check)
#   make colab-test   every chapter in an emulated Colab (Colab's packages only, skiplib from git)
#   make min-versions the unit tests on the oldest supported dependencies, in a fresh venv (slow)
#   make data         extract the offline CIFAR-10 copy into $SKIPLIB_DATA if there is one
#   make bench        benchmarks (python -m skiplib.tools bench)
#   make gpu-check    every chapter + reference experiment in the gpu profile, report in $(GPU_CHECK_OUT)
#   make device-prep  wheels + CIFAR-10 in .device/ for .ci/gpu-check-on-device on the lent GPU machine
#   make results-gpu  reference runs into results/ (python -m skiplib <experiment> --profile gpu)
#   make strip        strip outputs from the notebooks under book/ before committing
#   make sync-bootstrap / make check-notebooks   Colab bootstrap cells; list dirty notebooks
#   make student / make grade   student notebooks in student/; grade $(SUBMISSIONS) into grades.csv
#   make clean        remove _build (make distclean: also .venv)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skiplib-installed
EXTRAS ?= tools,test,book,site
PYTEST_ARGS ?=
# Folder of submitted student notebooks that `make grade` scores.
SUBMISSIONS ?= submissions

# Where skiplib looks for (and torchvision downloads) CIFAR-10; exported so that make data,
# the tests and the book build all agree on it.
SKIPLIB_DATA ?= $(HOME)/.cache/skiplib
export SKIPLIB_DATA
# The offline JPEG copy of CIFAR-10 (see ../shared/data/README.md), if this machine has one.
CIFAR10_TARBALL ?= ../shared/data/cifar10-jpeg.tar.gz
CIFAR10_SHA256 := 7854ea059adc7729ab5267c5269ccc01e6eaeea6549d5f3c834c106bae86e8ee

# Executed notebooks are cached in _build/.jupyter_cache, keyed on code cells only, and
# Sphinx re-reads only changed sources. This file records the profile and skiplib's source
# (and results/) the build was made with; when either changes, the cache and Sphinx's
# doctrees are removed so every notebook runs again: the website never shows outputs from
# another profile or an older skiplib.
CACHE_KEY_FILE := _build/.skiplib-cache-key
# The chapters checkpoint every epoch: in the book build into _build/checkpoints, emptied with
# the execution cache, so an interrupted build resumes but a changed skiplib trains afresh.

# Present while a build runs or after it failed. Sphinx would not re-read an unchanged
# notebook whose execution failed, so the next build would pass: drop its doctrees then
# (notebooks that did run stay in the execution cache and are not run again).
BUILD_FAILED_FILE := _build/.skiplib-build-failed

# Where the browser test saves its screenshots (light and dark, one per page).
SITE_SHOTS ?= _build/site-test

.PHONY: help install lint test book site-test colab-test min-versions data bench gpu-check device-prep results-gpu strip sync-bootstrap check-notebooks student grade clean distclean

help:
	@sed -n '5,20p' Makefile

# The book toolchain's versions that are known to build (jupyter-book, myst-nb, Sphinx, the themes,
# nbval, ...): a new release of one cannot break the -W build unannounced. Part of the stamp's
# prerequisites, so changing a pin re-runs the install.
BOOK_CONSTRAINTS := constraints/book.txt

install: $(STAMP)

$(STAMP): pyproject.toml $(BOOK_CONSTRAINTS)
	@echo "== setting up $(VENV) ($$($(PYTHON) --version)) =="
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c $(BOOK_CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

# ruff comes with the test extra; the notebooks get a lighter rule set (per-file-ignores).
lint: $(STAMP)
	$(PY) -m ruff check skiplib tests book

test: $(STAMP)
	SKIPLIB_PROFILE=smoke $(PY) -m pytest --nbval-lax --nbval-current-env tests book $(PYTEST_ARGS)

book: $(STAMP) data
	@mkdir -p _build
	@profile="$$($(PY) -c 'from skiplib.profile import get_profile; print(get_profile().name)')"; \
	sources="$$( { find skiplib results -type f \( -name '*.py' -o -name '*.json' -o -name '*.csv' \) 2>/dev/null || true; } | LC_ALL=C sort | xargs -r sha256sum | sha256sum | cut -c1-16)"; \
	key="$$profile $$sources"; \
	if [ "$$key" != "$$(cat $(CACHE_KEY_FILE) 2>/dev/null || true)" ]; then \
	  [ ! -d _build/.doctrees ] || echo "profile or skiplib changed since the last build: re-executing every notebook"; \
	  rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute _build/checkpoints; \
	fi; \
	if [ -e $(BUILD_FAILED_FILE) ]; then rm -rf _build/.doctrees; fi; \
	echo "$$key" > $(CACHE_KEY_FILE); \
	touch $(BUILD_FAILED_FILE); \
	echo "== building the book (SKIPLIB_PROFILE: $$profile) =="
	SKIPLIB_CHECKPOINTS=$(CURDIR)/_build/checkpoints $(VENV)/bin/jupyter-book build . -n -W --keep-going
	@rm -f $(BUILD_FAILED_FILE)
	@echo "book written to _build/html/index.html"

site-test: $(STAMP)
	@test -f _build/html/index.html || { echo "error: no _build/html: run make book first"; exit 1; }
	@if [ -z "$${SKIPLIB_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "== installing Debian's chromium for the browser test =="; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "error: the browser test needs Chromium: install Debian's 'chromium' package, or set SKIPLIB_CHROMIUM"; exit 1; \
	  fi; \
	fi
	$(PY) -m skiplib.tools.site links _build/html
	SKIPLIB_SITE_HTML=_build/html SKIPLIB_SITE_SHOTS=$(SITE_SHOTS) $(PY) -m pytest -m site tests/tools/test_site.py $(PYTEST_ARGS)
	@echo "screenshots in $(SITE_SHOTS)"

# Every chapter as a learner on Colab meets it (tests/colab_emulation.py): a separate
# environment with only Colab's preinstalled packages, skiplib installed by each chapter's
# bootstrap cell from the repository URL (git redirects it to this checkout), smoke profile.
colab-test: $(STAMP)
	SKIPLIB_COLAB_EMULATION=1 $(PY) -m pytest -m colab tests/book/test_colab.py $(PYTEST_ARGS)
	@cat _build/colab-test/report.md

# The unit tests (not the notebooks, the book or the Colab emulation) in the smoke profile on the
# minimum versions of pyproject.toml's dependencies (constraints/min-versions.txt), in a fresh venv
# under ${TMPDIR:-/tmp} that is removed afterwards. Slow (it downloads torch), so not part of make test.
min-versions:
	.ci/min-versions

data:
	@if [ -d "$(SKIPLIB_DATA)/cifar10" ] || [ -d "$(SKIPLIB_DATA)/cifar-10-batches-py" ]; then \
	  echo "CIFAR-10 found in $(SKIPLIB_DATA)"; \
	elif [ -f "$(CIFAR10_TARBALL)" ]; then \
	  echo "extracting $(CIFAR10_TARBALL) into $(SKIPLIB_DATA)/cifar10"; \
	  if [ "$$(sha256sum "$(CIFAR10_TARBALL)" | cut -d' ' -f1)" != "$(CIFAR10_SHA256)" ]; then \
	    echo "warning: $(CIFAR10_TARBALL) is not the documented CIFAR-10 JPEG copy (sha256 differs)"; \
	  fi; \
	  mkdir -p "$(SKIPLIB_DATA)"; \
	  tmp="$$(mktemp -d "$(SKIPLIB_DATA)/.extract.XXXXXX")"; \
	  trap 'rm -rf "$$tmp"' EXIT; \
	  tar xzf "$(CIFAR10_TARBALL)" -C "$$tmp"; \
	  test -d "$$tmp/cifar10/train" -a -d "$$tmp/cifar10/test" || { echo "error: $(CIFAR10_TARBALL) has no cifar10/{train,test}"; exit 1; }; \
	  mv "$$tmp/cifar10" "$(SKIPLIB_DATA)/cifar10"; \
	  echo "CIFAR-10 (JPEG copy) ready in $(SKIPLIB_DATA)/cifar10"; \
	else \
	  echo "no local CIFAR-10 in $(SKIPLIB_DATA) and no $(CIFAR10_TARBALL):"; \
	  echo "torchvision will download it into $(SKIPLIB_DATA) at first use"; \
	  echo "(the smoke profile falls back to synthetic data where that is impossible)"; \
	fi

bench: $(STAMP)
	$(PY) -m skiplib.tools bench

# On a GPU (made for a rarely lent H200: one command, <= 10 minutes): every chapter in the gpu
# profile, then the reference experiments, a report after every item (results/README.md says
# what is in it). GPU_CHECK_ARGS=--scaled-down runs the same harness on a CPU in the smoke
# profile, as CI does.
GPU_CHECK_OUT ?= gpu-check
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP) data
	$(PY) -m skiplib.tools gpu-check --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# The lent GPU machine is offline and has PyTorch (Python 3.12) but no Jupyter: fetch the
# notebook runner's wheels for it and copy the CIFAR-10 tarball, for .ci/gpu-check-on-device.
DEVICE_WHEELS := ipykernel nbclient nbformat ipywidgets torchinfo pyyaml
device-prep:
	@test -f "$(CIFAR10_TARBALL)" || { echo "error: no $(CIFAR10_TARBALL) to carry to the device"; exit 1; }
	rm -rf .device && mkdir -p .device/whl .device/data
	$(PYTHON) -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  --platform manylinux1_x86_64 -d .device/whl $(DEVICE_WHEELS)
	cp "$(CIFAR10_TARBALL)" .device/data/
	@du -sh .device

results-gpu: $(STAMP)
	$(PY) -m skiplib degradation --profile gpu --out-dir results
	$(PY) -m skiplib highway --profile gpu --out-dir results
	$(PY) -m skiplib highway --part conv --profile gpu --out-dir results
	$(PY) -m skiplib densenet --profile gpu --out-dir results
	$(PY) -m skiplib compare --profile gpu --out-dir results
	$(PY) -m skiplib landscape --profile gpu --out-dir results

strip: $(STAMP)
	$(PY) -m skiplib.tools.notebooks strip book

sync-bootstrap: $(STAMP)
	$(PY) -m skiplib.tools.notebooks sync-bootstrap book

check-notebooks: $(STAMP)
	$(PY) -m skiplib.tools.notebooks check book

student: $(STAMP)
	$(PY) -m skiplib.tools.student build book student

grade: $(STAMP)
	$(PY) -m skiplib.tools.student grade $(SUBMISSIONS) --out grades.csv

clean:
	rm -rf _build

distclean: clean
	rm -rf $(VENV) *.egg-info .pytest_cache
