# Two commands for a fresh machine: `make demo` (train + explain on the built-in data), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	@# headless Chromium for the report tests (tests/test_report.py skips without it): Debian's, as root only
	command -v chromium >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && apt-get update -q && apt-get install -y -q chromium chromium-driver) || true
	touch $(STAMP)

install: $(STAMP)

# A real explanation first (seconds), then the FaceParts classifier (minutes) and its explanations.
demo: $(STAMP)
	@echo "== 1/3 a pretrained face recogniser explains two real photographs (about 20 s with the weights' download)"
	$(BIN)/python -m scout_exp.zoo fetch face_descriptor && $(BIN)/python explain.py experiment=real_faces \
	  || echo "real-face run skipped: the face descriptor weights could not be fetched (see README, Real photographs)"
	@echo "== 2/3 train resnet18 on FaceParts (about 12 min on 2 CPU cores, 1-2 min on a GPU)"
	$(BIN)/python train.py
	@echo "== 3/3 explain 8 FaceParts pairs with it (about 30 s)"
	$(BIN)/python explain.py
	@echo "== done: each run's report.html is in outputs/explain/runs/<time>/. 8 pairs give scores whose 95% CIs"
	@echo "   overlap chance; for numbers that do not, explain 200 pairs per method and rank them (a few minutes):"
	@echo "   $(BIN)/python explain.py -m split=val max_pairs=200 max_figures=0 attribution=gradxact,gradcam,layercam \\"
	@echo "     variant=a,a_abar,a_abar_as metrics=[parts]"
	@echo "   $(BIN)/python -m scout_exp.sweeps leaderboard outputs/explain/multiruns/<time> --metric precision"

test: $(STAMP)
	-$(BIN)/python -m scout_exp.zoo fetch face_descriptor  # optional: enables the real-face parity tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) outputs
