# Two commands set everything up on a fresh machine:  `make play`  and  `make test`.
# Both create the virtual environment first (idempotent: reinstalls only when pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kickspace-installed

.PHONY: venv play test demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,test]'
	touch $(STAMP)

# The main job. Until the realtime runtime lands this is the best end-to-end path that exists:
# synthesize a procedural kick corpus, ingest it (cached log-mel features + summary), and write a
# spectrogram round-trip preview of the corpus through the one spectrogram spec.
play: venv
	$(BIN)/trainer synth out/kicks --n 64 --seed 0
	$(BIN)/trainer ingest out/kicks --preview out/preview

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf out runs .pytest_cache
