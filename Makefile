# The README's two commands: `make demo` and `make test`. Each sets up .venv on a fresh machine first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup chromium slurm sshd demo test params benchmarks clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: setup  ## set up, then run the whole pipeline on the embedded demo data
	dvc repro
	@echo "report: $(CURDIR)/reports/index.html"

test: setup chromium slurm sshd  ## set up, then run the whole test suite (slow end-to-end tests included)
	python -m pytest

# Debian's chromium + its matching chromedriver: the report test opens reports/index.html in a real headless
# browser. Installed once (as root, or with sudo); nothing happens when both are already there.
chromium:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  echo "installing Debian's chromium and chromium-driver (apt-get)"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Debian's slurm-wlm + munge: tests/test_slurm.py starts a one-node SLURM of its own (munged, slurmctld, slurmd as
# its own processes, stopped by pid) and submits through conf/launcher/slurm.yaml. Installed once, like chromium.
slurm:
	@test -x /usr/sbin/slurmctld -a -x /usr/sbin/slurmd -a -x /usr/sbin/munged -a -x /usr/bin/sbatch || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  echo "installing Debian's slurm-wlm and munge (apt-get)"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }

# Debian's openssh-server: tests/test_share.py pushes to and pulls from an SSH remote on localhost through an sshd
# of its own (own config, keys and port, stopped by pid; the system's ssh service is not started). Installed once.
sshd:
	@test -x /usr/sbin/sshd || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  echo "installing Debian's openssh-server (apt-get)"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends openssh-server >/dev/null; }

params: setup  ## compose conf/ into params.yaml, exactly as `dvc exp run` would
	python -m zfnet.config

benchmarks: setup
	for b in benchmarks/bench_*.py; do python $$b || exit 1; done

clean:
	rm -rf $(VENV) logs outputs multirun
