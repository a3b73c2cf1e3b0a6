# Bootstraps uv from PyPI into .tools/, then installs the locked environment into .venv/.
PY ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON := $(PY)
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test test-fast lint format bench clean

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on the dev VMs) every process
# otherwise recompiles what it imports: `import mlflow` alone took 6 s instead of 2.
.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --compile-bytecode
	touch $@

## The main job on the embedded default (synthetic data, local store, local MLflow).
run: .venv/.synced
	.venv/bin/omni run

## Lint and the whole test suite (what CI runs), its files spread over two workers.
test: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/pytest -n 2 --dist loadfile

## The fast tier for your own loop (under 2 minutes on 2 cores): every test not marked slow.
test-fast: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/pytest -m "not slow" -q

lint: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: .venv/.synced
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

## Benchmarks (not part of the tests); results printed and written to bench_results/.
bench: .venv/.synced
	.venv/bin/python tests/benchmarks/run_all.py

clean:
	rm -rf .venv .tools omni_home bench_results
