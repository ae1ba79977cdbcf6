# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test clean figures

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: pip takes the local CPU wheel, so nothing pulls CUDA packages.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/mien demo --out out/demo

test: install-test
	$(BIN)/python -m pytest -n 2 tests

clean:
	rm -rf $(VENV) out build src/*.egg-info

# The trained pictures under docs/ (small presets; about an hour on a 2-core CPU).
RUNS ?= runs
figures: install
	for m in vae tcvae arvae; do \
	  $(BIN)/mien train configs/$$m/small.yaml --out $(RUNS)/$$m-small --no-progress && \
	  $(BIN)/mien traverse $(RUNS)/$$m-small --steps 9 --out docs/$${m}_traversal.png; done
	$(BIN)/mien train configs/ldm/first_stage.yaml --out $(RUNS)/ldm-first-stage --no-progress
	$(BIN)/mien train configs/ldm/small.yaml model.autoencoder=$(RUNS)/ldm-first-stage --out $(RUNS)/ldm-small --no-progress
	$(BIN)/mien sample $(RUNS)/ldm-small --per-class 8 --guidance 3 --out docs/ldm_samples.png
	$(BIN)/mien edit $(RUNS)/ldm-small --from neutral --to all --t0 500 --guidance 4 --steps 40 --out docs/ldm_edits.png
