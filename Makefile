# Set-up, tests and demo of obiwan_h5. Every target installs what it needs, so a fresh
# machine needs only `make test` or `make demo`. Re-running is cheap: stamps record
# what is done.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HDF5_DIR ?= /usr/lib/x86_64-linux-gnu/hdf5/mpich
MPIEXEC ?= mpiexec
DEMO_DIR ?= demo
APT_PACKAGES := mpich libhdf5-mpich-dev pkg-config
# the PostgreSQL server the database tests start (tests/pgserver.py, under /usr/lib/postgresql/*/bin),
# and fitsverify, which checks the FITS export
PG_APT_PACKAGES := postgresql fitsverify
# the root user inside containers has no sudo; elsewhere use it
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup test test-fast test-serial test-mpi demo demo-db docs benchmark clean distclean

all: setup

setup: $(VENV)/.stamp-package

$(VENV)/.stamp-system:
	@if ! command -v mpicc >/dev/null || [ ! -d "$(HDF5_DIR)" ] || ! command -v pkg-config >/dev/null; then \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@test -d $(VENV) || python3 -m venv $(VENV)
	@touch $@

# mpi4py from source, by the mpicc of the MPICH that parallel HDF5 was built with: one MPI library for all.
# h5py from source against parallel HDF5, without build isolation so it sees mpi4py.
$(VENV)/.stamp-mpi: $(VENV)/.stamp-system
	$(PIP) install -q --upgrade pip
	$(PIP) install -q numpy Cython pkgconfig "setuptools>=77" wheel
	CC=mpicc $(PIP) install -q --no-binary=mpi4py mpi4py
	CC=mpicc HDF5_MPI=ON HDF5_DIR=$(HDF5_DIR) $(PIP) install -q --no-build-isolation --no-binary=h5py h5py
	$(PY) -c "import h5py; assert h5py.get_config().mpi, 'h5py was built without MPI'"
	@touch $@

$(VENV)/.stamp-postgres: $(VENV)/.stamp-system
	@if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v fitsverify >/dev/null; then \
	  echo "installing system packages: $(PG_APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(PG_APT_PACKAGES); \
	fi
	@touch $@

$(VENV)/.stamp-package: $(VENV)/.stamp-mpi $(VENV)/.stamp-postgres pyproject.toml
	$(PIP) install -q -e '.[test]'
	@touch $@

test: test-serial test-mpi

# the serial tests spread over the machine's cores (pytest-xdist), one test module per worker
# so that module fixtures (simulated productions, figure sets) are built once
PYTEST_WORKERS ?= auto
test-serial: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests --ignore=tests/mpi

# the quick inner loop: serial tests not marked slow (no crash/resume runs, no docs examples)
test-fast: setup
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" tests --ignore=tests/mpi

# MPI tests run under real launchers: everything under 2 ranks, and under 3 ranks what
# depends on the rank count (3 ranks oversubscribe 2 cores: every collective is slow).
test-mpi: setup
	timeout 1200 $(MPIEXEC) -n 2 $(PY) -m mpi4py -m pytest -q -p no:cacheprovider tests/mpi
	timeout 1200 $(MPIEXEC) -n 3 $(PY) -m mpi4py -m pytest -q -p no:cacheprovider -m "not any_ranks" tests/mpi

demo: setup
	$(VENV)/bin/obiwan-h5 demo -o $(DEMO_DIR)

# the demo with the truth in a throw-away PostgreSQL server (docs/derive.md#truth-from-postgresql)
demo-db: setup
	$(PY) scripts/demo_db.py --dir $(DEMO_DIR)-db

# docs/format.md and docs/cli.md are generated from the code; tests/sim/test_reference.py and
# tests/cli/test_reference.py check that they are current
docs: setup
	$(PY) -m obiwan_h5.sim.reference > docs/format.md
	$(PY) -m obiwan_h5.cli.reference > docs/cli.md

# side-by-side performance figures (minutes; see docs/performance.md)
benchmark: setup
	$(PY) scripts/benchmark.py --json benchmark.json

clean:
	rm -rf $(DEMO_DIR) $(DEMO_DIR)-db .pytest_cache build *.egg-info

distclean: clean
	rm -rf $(VENV)
