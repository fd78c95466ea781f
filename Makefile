# Two commands set everything up on a fresh machine:  `make play`  and  `make test`.
# Both create the virtual environment first (idempotent: reinstalls only when pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kickspace-installed

.PHONY: venv play test demo clean preset-kicks

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,test]'
	touch $(STAMP)

# The main job: play the shipped kick preset live. A virtual MIDI input (kickspace-midi:in) takes your pad
# controller; audio goes to the default output (JACK when a server runs). With no audio device it says what to do
# (runtime list, start JACK, or render offline: see README).
play: venv
	$(BIN)/runtime play --preset presets/kicks

test: venv
	$(BIN)/python -m pytest -q

# For machines without audio: the shipped groove (presets/grooves/demo.mid: 4 bars of kicks at 124 BPM with the
# sub and decay knobs automated) rendered offline through the shipped preset, as a WAV and a spectrogram PNG.
demo: venv
	$(BIN)/runtime render --preset presets/kicks --midi presets/grooves/demo.mid --out out/demo-kicks.wav
	$(BIN)/trainer spectrogram out/demo-kicks.wav --out out/demo-kicks.png \
	    --title "presets/kicks playing presets/grooves/demo.mid (CC 20 sub up, CC 22 decay down)"

# The shipped kick preset, end to end (presets/kicks/MODEL_CARD.md): licence-filtered real kicks (every 8th held
# out for evaluation) + 1500 procedural kicks -> fit (kick-2048-htk, one CPU thread) -> axes, cluster, evaluate
# -> ONNX export -> a test render. Intermediate data in out/, the run in runs/kicks, features in $(KCACHE).
KDATA    ?= ../shared/data/drums
KCACHE   ?= /tmp/kcache
KEPOCHS  ?= 90
KLICENCE := CC0 "Public Domain" Unlicense MIT Apache-2.0 CC-BY --exclude-licence CC-BY-SA
preset-kicks: venv
	rm -rf out/kicks-train out/kicks-heldout out/synth-kicks runs/kicks
	$(BIN)/trainer subset $(KDATA) --class kick --licence $(KLICENCE) --every 8 --drop 0 --out out/kicks-train
	$(BIN)/trainer subset $(KDATA) --class kick --licence $(KLICENCE) --every 8 --keep 0 --out out/kicks-heldout
	$(BIN)/trainer synth out/synth-kicks --n 1500 --seed 7
	$(BIN)/trainer fit out/kicks-train/kick out/synth-kicks --config configs/kick.toml --out runs/kicks \
	    --cache $(KCACHE) --no-progress \
	    --set train.threads=1 train.epochs=$(KEPOCHS) train.media_every=0 data.spec=kick-2048-htk
	$(BIN)/trainer axes runs/kicks --data out/kicks-train/kick out/synth-kicks --cache $(KCACHE)
	$(BIN)/trainer cluster runs/kicks --data out/kicks-train/kick --cache $(KCACHE)
	$(BIN)/trainer evaluate runs/kicks --data out/kicks-heldout/kick --train-data out/kicks-train/kick \
	    out/synth-kicks --cache $(KCACHE)
	$(BIN)/python -m export onnx runs/kicks --out presets/kicks
	$(BIN)/runtime render --preset presets/kicks --axes sub=0.8,decay=0.3 --out out/kicks-render.wav

clean:
	rm -rf out runs .pytest_cache
