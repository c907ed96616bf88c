# Two commands do all set-up on a fresh Debian 12 machine: `make run` and `make test`.
# Every target installs what it needs, idempotently and quietly when nothing is missing.

PYTHON      ?= /usr/bin/python3
VENV        := .venv
VPY         := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
RUN_DIR     ?= .run
PYTEST_ARGS ?=

# Debian packages the daemon and its tests use (the real components of the lab).
DEB_PACKAGES := python3-venv python3-yaml python3-libvirt python3-sanlock \
	libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils \
	sanlock lvm2 iproute2 openssl gcc libc6-dev e2fsprogs \
	linux-image-amd64 busybox-static cpio udev kmod systemd

.PHONY: all deps venv run test unit bench lint services services-down clean

all: venv

deps:
	@tools/install-deps $(DEB_PACKAGES)

$(STAMP): pyproject.toml | deps
	@test -x $(VPY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(STAMP)

# libvirtd is started when it can be (root); otherwise the daemon says so and falls back
# to libvirt's embedded test driver.
run: venv
	@$(VPY) -m tests.lab.services up libvirt >/dev/null 2>&1 || \
		echo "make run: could not start libvirtd; vdsmd will use test:///default" >&2
	@$(VPY) -m vdsm.daemon --dev $(RUN_DIR)

test: venv
	@tools/run-tests $(PYTEST_ARGS)

unit: venv
	@$(VPY) -m pytest tests/unit -q $(PYTEST_ARGS)

bench: venv
	@$(VPY) -m bench $(BENCH_ARGS)

lint: venv
	@$(VENV)/bin/ruff check vdsm tests bench
	@$(VENV)/bin/mypy

services: venv
	@$(VPY) -m tests.lab.services up

services-down: venv
	@$(VPY) -m tests.lab.services down

# The kernel-lab tests only (one guest boot): bonds, VLANs, device-mapper, watchdog.
.PHONY: lab-check
lab-check: venv
	@tools/run-tests --phases lab $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(RUN_DIR) build *.egg-info
