# `make demo` and `make test` bootstrap .venv from nothing and are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt
STAMP := $(VENV)/.medxai-installed
DEMO_DIR ?= demo-output
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: venv demo test test-all bench bench-quick clean

venv: $(STAMP)

# torch first (the local CPU wheel), then pyradiomics (needs numpy present, no build isolation),
# then the project with its test extras; the constraints file keeps torch at 2.13.0 throughout.
# poppler-utils/qpdf (to render and check PDFs in the tests), dicom3tools (dciodvfy, to validate the DICOM
# objects medxai writes) and orthanc + orthanc-dicomweb (the PACS of the round-trip tests) come from apt when root.
$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q torch==2.13.0
	$(PIP) numpy versioneer setuptools wheel
	$(PIP) --no-build-isolation pyradiomics==3.0.1
	$(PIP) -e '.[test]'
	@command -v pdftoppm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq poppler-utils qpdf) >/dev/null 2>&1; } \
	  || echo "note: pdftoppm (poppler-utils) not installed; the PDF page-render tests will skip"
	@{ command -v dciodvfy && command -v Orthanc; } >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && apt-get install -y -qq dicom3tools orthanc orthanc-dicomweb) >/dev/null 2>&1; } \
	  || echo "note: dicom3tools/orthanc not installed; the DICOM validation and PACS tests will skip"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medxai demo -o $(DEMO_DIR)

test: $(STAMP)
	$(VENV)/bin/ruff check medxai cli tests benchmarks setup.py
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

# A full run takes hours on a CPU and keeps its rows after every group: `make bench BENCH_ARGS=--resume` goes on.
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
