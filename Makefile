# Two entry points that work on a fresh machine with Python 3.10+:
#   make demo   create .venv if needed, install, run the demo (plots in ./bayesfilt-demo/)
#   make test   install the test extras and run the whole suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.13.0 is pinned so pip takes the CPU build from this machine's local disk.
TORCH_PIN := torch==2.13.0

.PHONY: demo test docs install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test,docs]" triton tqdm
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(VENV)/bin/bayesfilt demo --out bayesfilt-demo --force

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n 2 --dist loadfile
	$(MAKE) --no-print-directory docs

# The documentation site; warnings (broken links, missing references, pages outside the nav) fail.
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) bayesfilt-demo .pytest_cache site
