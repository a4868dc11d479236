# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is not pinned by the project; this machine's pip takes 2.14.1 / 0.29.1 from disk.
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/archsearch validate examples/specs/*.yaml
	$(BIN)/archsearch evaluate examples/specs/tiny_unet_8.yaml --budget quick

clean:
	rm -rf $(VENV) results .pytest_cache
