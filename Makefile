# The README's two commands: `make demo` and `make test`. Each creates the virtual
# environment on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default; GPU users: make demo TORCH_SPEC="torch==2.13.0 --index-url ..."
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: demo test install clean bench

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/medmm demo --out $(OUT)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

# Benchmarks print figures; the two that replicate the MIMIC demo need MEDMM_SHARED_DATA.
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_synth.py
	$(BIN)/python benchmarks/bench_pretrain.py
	if [ -n "$$MEDMM_SHARED_DATA" ]; then $(BIN)/python benchmarks/bench_ontology.py && \
	  $(BIN)/python benchmarks/bench_prepare.py; else echo "MEDMM_SHARED_DATA unset: skipping bench_ontology, bench_prepare"; fi

clean:
	rm -rf $(VENV) runs
