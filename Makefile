# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is not pinned by the project; this machine's pip takes 2.14.1 / 0.29.1 from disk.
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test fuzz venv clean app

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# 10,000 fresh random cases of the spec fuzzer (the suite runs 2,000 fixed ones).
fuzz: $(STAMP)
	ARCHSEARCH_FUZZ_EXAMPLES=10000 ARCHSEARCH_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q -s \
		-p no:cacheprovider --timeout=7200 tests/archspec/test_fuzz.py

# The main job: spatial, spectral and hybrid pipelines on digits, quick budget.
DEMO_SPECS := examples/specs/tiny_unet_8.yaml examples/specs/spectral_unet_8.yaml \
              examples/specs/hybrid_unet_8.yaml

demo: $(STAMP)
	$(BIN)/archsearch validate -q examples/specs/*.yaml
	$(BIN)/archsearch evaluate $(DEMO_SPECS) --budget quick --out results
	$(BIN)/archsearch report results

# The Gradio app on http://127.0.0.1:7860 over the demo's results (make app RESULTS=dir).
RESULTS ?= results
app: $(STAMP)
	$(BIN)/archsearch app --results $(RESULTS)

clean:
	rm -rf $(VENV) results .pytest_cache
