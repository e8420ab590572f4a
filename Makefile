# Two entry points, both working on a fresh clone:
#   make run    set up .venv and run the default sweep (resnet18, torch vs onnxruntime, CPU)
#   make test   set up .venv and run the test suite
#   make mutate mutation testing of the measurement core (slow: run it before merging a change to
#               measure/, compare, agreement, accuracy, speedup rows, cache keys or peaks)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test setup clean mutate

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned: these builds lie on the build machines' disk (a plain `torch` would download GBs).
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/infersweep run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

# mutmut 3 over the measurement core ([tool.mutmut] in pyproject.toml), the fast unit tests only.
# Starts from a fresh ./mutants each time, so the score is never a stale cache's. Survivors are
# listed above the score; benchmarks/results/mutation.txt says why each one survives.
mutate: $(STAMP)
	$(BIN)/mutmut --help >/dev/null 2>&1 || $(BIN)/python -m pip install -q -e '.[all,test,mutate]'
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 >mutants.log 2>&1 || (tail -30 mutants.log; exit 1)
	$(BIN)/mutmut export-cicd-stats >/dev/null
	$(BIN)/mutmut results
	$(BIN)/python tests/mutation_score.py mutants/mutmut-cicd-stats.json

clean:
	rm -rf $(VENV) runs mutants mutants.log
