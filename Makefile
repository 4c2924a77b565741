# The two commands: `make up` runs the cloud, `make test` runs every check. `make deps` (as
# root, optional) first installs the Debian packages of every part `stratus doctor` finds
# missing (QEMU, libvirt, dnsmasq, qemu-img, nftables ...), then the libvirt binding.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
# Bytecode is written (into the ignored __pycache__ folders) even where the environment says
# not to (PYTHONDONTWRITEBYTECODE, set on this machine): otherwise every `stratus` process the
# tests, the benchmarks or `make up` start compiles the whole package again (~0.9 s of CPU)
# and each pytest worker rewrites every test module (pytest's collection: 15.4 s of CPU
# without bytecode, 6.4 s with it).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: up deps test test-serial lint typecheck unit clean ceph-bindings nft-bindings interop \
	interop-map api-docs sqlite-heads tempest-full tempest-venv

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

# Debian's libnftables binding (python3-nftables: not on PyPI, pure Python over ctypes) is
# linked the same way: with it the l2-agent's firewall applies its rulesets in-process
# instead of running `nft` for each.
nft-bindings: | $(BIN)/python
	@site="$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
	if [ -d "$(DEBIAN_DIST_PACKAGES)/nftables" ]; then \
	    ln -sfn "$(DEBIAN_DIST_PACKAGES)/nftables" "$$site/nftables"; \
	elif [ -L "$$site/nftables" ]; then rm -f "$$site/nftables"; fi

up: $(VENV)/.installed ceph-bindings nft-bindings
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
	$(BIN)/ruff check stratus tests benchmarks tools

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# Most tests wait on subprocesses, databases and the broker, not on the CPU: they run in
# TEST_WORKERS processes. Tests marked `serial` (real guests under TCG, a dozen processes)
# run afterwards, two at a time (SERIAL_WORKERS; real guests: never more than two at once),
# a module's tests in one worker (`--dist loadfile`: a module's cluster started once, one
# second libvirtd at a time in the machine's namespace; xdist's loadgroup cannot group
# under pytest 9); then those marked `exclusive` (they stop the machine's broker, kill
# libvirt's daemons) one at a time, alone. Exit code 5 = none selected. The slowest tests'
# times are printed (every serial one's), so that a CI log says where its time went.
TEST_WORKERS ?= 3
SERIAL_WORKERS ?= 2

# The tree is compiled once first, with bytecode kept (see PYTHONDONTWRITEBYTECODE above):
# each pytest process also keeps its rewrites of the test modules' asserts (~9 s of CPU per
# collection of the suite without them).
# The test Ceph (tests/ceph_cluster.py) the parallel part starts is kept for the serial part
# (a start is ~20-35 s), which stops it when it ends, or else the line after it does. Both
# serial runs run whatever the first found; either failing fails the target.
STOP_TEST_CEPH = $(BIN)/python -c 'from tests.ceph_cluster import stop_cluster; stop_cluster()'
SERIAL_PART = paired=0; STRATUS_TEST_KEEP_CEPH=1 $(BIN)/pytest -n $(SERIAL_WORKERS) \
	    --dist loadfile -m "serial and not exclusive" --durations=0 $(ARGS) || paired=$$?; \
	alone=0; $(BIN)/pytest -m exclusive --durations=0 $(ARGS) || alone=$$?; $(STOP_TEST_CEPH); \
	{ [ $$paired -eq 0 ] || [ $$paired -eq 5 ]; } && { [ $$alone -eq 0 ] || [ $$alone -eq 5 ]; }
test: lint typecheck ceph-bindings nft-bindings
	$(BIN)/python -m compileall -q -j 0 stratus tests tools >/dev/null
	STRATUS_TEST_KEEP_CEPH=1 $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" \
	    --durations=40 $(ARGS) || { status=$$?; $(STOP_TEST_CEPH); exit $$status; }
	$(SERIAL_PART)

# The serial part alone (after changing a real-guest test, or to time it): as `make test`
# runs it, on a Ceph it starts if no test Ceph is running.
test-serial:
	$(SERIAL_PART)

# OpenStack Powered: the interoperability guideline's required Tempest tests against a
# throw-away `stratus up` (tools/interop/run.py), then the tests that log into a guest by
# SSH against a second one with real guests (libvirt, linuxbridge, the test guest: root,
# QEMU, libvirt, dnsmasq, nft, as the real-guest tests). Tempest is pinned and lives in a venv
# of its own; the stamp names the version, so changing it reinstalls. --check fails when fewer
# tests pass than tools/interop/passing.json records; ARGS=--record raises the record.
TEMPEST_VERSION ?= 47.0.0
TEMPEST_VENV ?= .venv-tempest
INTEROP_GUIDELINE ?= 2020.06
INTEROP_COMPONENT ?= os_powered_compute
# Tempest's workers: the tests mostly wait on the cloud's state changes, not the CPU.
INTEROP_WORKERS ?= 4

$(TEMPEST_VENV)/.installed-$(TEMPEST_VERSION):
	rm -rf $(TEMPEST_VENV)
	$(PYTHON) -m venv $(TEMPEST_VENV)
	$(TEMPEST_VENV)/bin/pip install -q --upgrade pip
	$(TEMPEST_VENV)/bin/pip install -q tempest==$(TEMPEST_VERSION)
	touch $@

# Tempest's venv alone (.ci/run installs it while `make test` runs).
tempest-venv: $(TEMPEST_VENV)/.installed-$(TEMPEST_VERSION)

interop: $(VENV)/.installed $(TEMPEST_VENV)/.installed-$(TEMPEST_VERSION)
	$(BIN)/python -m tools.interop.run --check --concurrency $(INTEROP_WORKERS) \
	    --tests tools/interop/tests/$(INTEROP_GUIDELINE)-$(INTEROP_COMPONENT).json $(ARGS)

# Beyond the guideline: every test of Tempest's five API groups against the same kind of
# throw-away cloud, counted per group (not in CI: it is long). TEMPEST_FULL_REGEX=... for one
# group, e.g. '^tempest\.api\.image\.'.
TEMPEST_FULL_REGEX ?= ^tempest\.api\.(identity|compute|image|network|volume)\.
tempest-full: $(VENV)/.installed $(TEMPEST_VENV)/.installed-$(TEMPEST_VERSION)
	$(BIN)/python -m tools.interop.run --check --concurrency $(INTEROP_WORKERS) \
	    --workdir .interop-full --regex '$(TEMPEST_FULL_REGEX)' $(ARGS)

# Re-map the guideline's required tests onto the pinned Tempest's test ids (after a new
# guideline in tools/interop/guidelines/ or a new TEMPEST_VERSION).
interop-map: $(VENV)/.installed $(TEMPEST_VENV)/.installed-$(TEMPEST_VERSION)
	rm -rf .interop/list && $(TEMPEST_VENV)/bin/tempest init \
	    --workspace-path .interop/list.yaml --name interop-list .interop/list >/dev/null
	cd .interop/list && ../../$(TEMPEST_VENV)/bin/tempest run --list-tests > tests.txt
	$(BIN)/python -m tools.interop.guideline \
	    --guideline tools/interop/guidelines/$(INTEROP_GUIDELINE).json \
	    --component $(INTEROP_COMPONENT) --tempest-list .interop/list/tests.txt \
	    --tempest-version $(TEMPEST_VERSION) \
	    --out tools/interop/tests/$(INTEROP_GUIDELINE)-$(INTEROP_COMPONENT).json

# The APIs' OpenAPI documents in docs/api/, as a cloud serves them with serve_openapi on
# (tools/openapi_docs.py); a test fails when the committed ones are stale.
api-docs: $(VENV)/.installed
	$(BIN)/python -m tools.openapi_docs

# Each service's schema at head on SQLite (stratus/<service>/migrations/sqlite_head.sql),
# which a first start makes its databases from; write them again after adding a migration.
sqlite-heads: $(VENV)/.installed
	$(BIN)/python -m tools.sqlite_heads

clean:
	rm -rf $(VENV) $(TEMPEST_VENV) .interop .interop-full .pytest_cache .mypy_cache .ruff_cache
