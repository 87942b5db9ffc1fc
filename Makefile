# Huiliu — two commands: `make run` and `make test`. Everything else here serves those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the platform and its tests use (command-or-file:package).
SYSTEM_DEPS := redis-server:redis-server kamailio:kamailio espeak-ng:espeak-ng sox:sox sipp:sip-tester \
	chromium:chromium docker-compose:docker-compose svmap:sipvicious \
	/usr/share/fonts/truetype/wqy/wqy-microhei.ttc:fonts-wqy-microhei /usr/lib/dovecot/imap:dovecot-imapd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test setup system lint typecheck pytest lock clean

run: setup
	$(BIN)/huiliu run

test: setup lint typecheck pytest

setup: system $(VENV)/.installed

# Installs only what is missing, so a second run costs a few `command -v` checks.
system:
	@missing=""; for dep in $(SYSTEM_DEPS); do check="$${dep%%:*}"; \
		[ -e "$$check" ] || command -v "$$check" >/dev/null 2>&1 || missing="$$missing $${dep##*:}"; done; \
	 \
	if [ -n "$$missing" ]; then \
		echo "Installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	# compat mode puts the checkout on sys.path, so packages added later import without reinstalling
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --config-settings editable_mode=compat -e .
	@touch $@

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

# Re-pin every dependency after changing pyproject.toml.
lock:
	rm -rf /tmp/huiliu-lock && $(PYTHON) -m venv /tmp/huiliu-lock
	/tmp/huiliu-lock/bin/pip install -q '.[dev]'
	/tmp/huiliu-lock/bin/pip freeze --exclude-editable | grep -v '^huiliu' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
