# detnas_d2: `make test` and `make demo` bootstrap .venv themselves (see tools/bootstrap_env.sh).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env lint format test test-unit demo demo-neck clean-env

env:
	@bash tools/bootstrap_env.sh

# ruff lint and format check (settings: pyproject.toml); `make format` rewrites the files
lint: env
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: env
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# lint, then every test (both tiers) in two worker processes, one per core; a test file runs whole in one worker
test: lint
	$(PY) -m pytest tests -q -n 2 --dist loadfile $(PYTEST_ARGS)

# the unit tier only, in two workers (tiers: tests/conftest.py)
test-unit: env
	$(PY) -m pytest tests -q -n 2 --dist loadfile -m unit $(PYTEST_ARGS)

# pretrain supernet -> fine-tune on detection -> search -> export -> retrain -> evaluate (embedded shapes, CPU)
demo: env
	$(PY) -m detnas_d2.pipeline --config-file configs/shapes/pipeline.yaml

# the one-shot NAS-FPN neck search on shapes
demo-neck: env
	$(PY) tools/demo_neck.py

clean-env:
	rm -f .venv
