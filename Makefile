# Two commands for a fresh machine (Python >= 3.10, Node.js/npm):
#   make serve   set everything up, build the notes, serve site + demos at http://127.0.0.1:8000/
#   make test    set everything up and run every test
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: setup build serve test lint bench constraints clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[site,test]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

build: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

serve: build
	$(PY) -m lectures_code serve --host $(HOST) --port $(PORT)

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done

# Pin the whole tested set: run after changing pyproject.toml's dependencies, once the tests pass.
constraints: setup
	{ echo "# Every package of the tested environment (Python 3.11, x86_64), written by \`make constraints\`"; \
	  echo "# from the venv that passed \`make test\`; the Makefile installs with -c constraints.txt."; \
	  $(PY) -m pip list --format=freeze --exclude-editable 2>/dev/null | grep -v -i '^lectures-code=='; } > constraints.txt

clean:
	rm -rf site .pytest_cache .ruff_cache test-artifacts
