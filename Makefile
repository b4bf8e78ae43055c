# Two commands for a fresh machine: `make demo` (train + explain on the built-in data), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python train.py
	$(BIN)/python explain.py
	$(BIN)/python -m scout_exp.zoo fetch face_descriptor && $(BIN)/python explain.py experiment=real_faces \
	  || echo "real-face run skipped: the face descriptor weights could not be fetched (see README, Real photographs)"

test: $(STAMP)
	-$(BIN)/python -m scout_exp.zoo fetch face_descriptor  # optional: enables the real-face parity tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) outputs
