# detnas_d2: `make test` and `make demo` bootstrap .venv themselves (see tools/bootstrap_env.sh).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env test demo clean-env

env:
	@bash tools/bootstrap_env.sh

test: env
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: env
	$(PY) tools/demo.py

clean-env:
	rm -f .venv
