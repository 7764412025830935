# Two commands a fresh machine needs (see README): `make demo` and `make test`.
# Everything is installed here, from package registries only; nothing by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Real data (benchmarks, prompts) lives outside the repo; the work machines keep it in ../shared/data.
IMITLAB_DATA ?= $(abspath ../shared/data)
export IMITLAB_DATA

.PHONY: setup demo test lint llama-server browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0   # the CPU wheel first, so nothing pulls a CUDA build
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

llama-server: $(VENV)/.installed
	PYTHON=$(PY) bash scripts/build_llama_server.sh >/dev/null

setup: $(VENV)/.installed llama-server

# Debian's chromium for the rating app's end-to-end browser test (Playwright drives it; never `playwright install`).
browser:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

demo: setup
	$(VENV)/bin/imitlab demo

test: setup browser
	$(VENV)/bin/ruff check imitlab tests bench
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check imitlab tests bench
	$(VENV)/bin/ruff format --check imitlab tests bench
