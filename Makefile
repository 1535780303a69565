# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PERSONS ?= 300000
# The project's packages, compiled to bytecode at install like the libraries (--compile-bytecode): every
# `yujing` process then starts in ~2.7 s instead of ~7 s where the environment forbids writing bytecode
# (PYTHONDONTWRITEBYTECODE=1, as on this project's machines) or the install folder is read-only.
PACKAGES := conf features models pipelines serving simulation web

.PHONY: run test install lint format bench clean distclean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e '.[dev]'
	$(PY) -m compileall -q -j 0 $(PACKAGES)
	touch $(STAMP)

install: $(STAMP)

## run: the main job end to end on the embedded defaults: simulate, validate, train, register, export,
## rank "today" (the day after the city's last call) and print the top ten warnings with reasons.
run: install
	$(VENV)/bin/yujing simulate --persons $(PERSONS) --out var/data/city
	$(VENV)/bin/yujing validate --data var/data/city --strict
	$(VENV)/bin/yujing train --data var/data/city --out var/runs/latest
	$(VENV)/bin/yujing rank --data var/data/city --top 10

## test: the whole test suite (two workers on two cores).
test: install
	$(VENV)/bin/pytest -n 2 --dist loadgroup -q --durations=40

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) benchmarks/run_all.py

## clean: caches and what a run re-creates; keeps the data, the warnings database (stations' feedback),
## the model registry and its artifacts.
clean:
	rm -rf .pytest_cache .ruff_cache var/runs var/outputs var/champion var/prefect var/logs var/cache

## distclean: all of var/ as well, stations' feedback and registered models included (asks; FORCE=1 does not).
distclean: clean
	@if [ "$(FORCE)" != "1" ]; then \
		printf 'This deletes var/: the data, warnings.db (stations'"'"' feedback) and mlflow.db (models). Type yes: '; \
		read answer; [ "$$answer" = "yes" ] || { echo "kept var/"; exit 1; }; \
	fi
	rm -rf var
