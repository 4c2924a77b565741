# The two commands: `make up` runs the cloud, `make test` runs every check. `make deps` (as
# root, optional) first installs the Debian packages of every part `stratus doctor` finds
# missing (QEMU, libvirt, dnsmasq, qemu-img, nftables ...), then the libvirt binding.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: up deps test lint typecheck unit clean ceph-bindings

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Re-install when the project's metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

# Debian's librados/librbd bindings (python3-rados, python3-rbd: not on PyPI) are linked into
# the venv when Debian has them for the venv's Python (same version and ABI); without them the
# Ceph backends refuse to start and say so. Re-checked on every `make up`/`make test`, so a
# package installed after the venv was made is picked up.
CEPH_MODULES := rados rbd
DEBIAN_DIST_PACKAGES ?= /usr/lib/python3/dist-packages

ceph-bindings: | $(BIN)/python
	@site="$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"; \
	suffix="$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"; \
	for module in $(CEPH_MODULES); do \
	    so="$(DEBIAN_DIST_PACKAGES)/$$module$$suffix"; \
	    if [ -f "$$so" ]; then ln -sfn "$$so" "$$site/$$module$$suffix"; \
	    else rm -f "$$site/$$module$$suffix"; fi; \
	done

up: $(VENV)/.installed ceph-bindings
	$(BIN)/stratus up $(ARGS)

deps: $(VENV)/.installed
	@if [ "$$(id -u)" -ne 0 ]; then \
	    echo "make deps installs Debian packages (apt-get): run it as root, e.g. sudo make deps"; \
	    exit 1; \
	fi
	@packages="$$($(BIN)/stratus doctor --packages)"; \
	if [ -n "$$packages" ]; then \
	    echo "apt-get install $$packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$packages; \
	else \
	    echo "No Debian package missing."; \
	fi
	$(BIN)/pip install -q -e '.[libvirt]'
	$(BIN)/stratus doctor

lint: $(VENV)/.installed-test
	$(BIN)/ruff check stratus tests benchmarks

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# Most tests wait on subprocesses, databases and the broker, not on the CPU: they run in
# TEST_WORKERS processes. Tests marked `serial` (they stop the broker, kill libvirt's
# daemons or boot real guests) run afterwards, alone. Exit code 5 = none selected.
TEST_WORKERS ?= 3

test: lint typecheck ceph-bindings
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(ARGS)
	$(BIN)/pytest -m serial $(ARGS) || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
