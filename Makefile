# Two commands set everything up on a fresh machine:  `make play`  and  `make test`.
# Both create the virtual environment first (idempotent: reinstalls only when pyproject.toml or constraints.txt change).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kickspace-installed

.PHONY: venv play test bench demo clean preset-kicks preset-kit

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,test]'
	touch $(STAMP)

# The main job: play the shipped kick preset live. A virtual MIDI input (kickspace-midi:in) takes your pad
# controller; audio goes to the default output (JACK when a server runs). Without PortAudio or an audio device it
# says why in one line, renders presets/grooves/demo.mid through the preset to out/demo-kicks.wav + .png instead and
# prints the command that enables live play on this system (runtime play --fallback-render, runtime/fallback.py).
play: venv
	$(BIN)/runtime play --preset presets/kicks --fallback-render out/demo-kicks.wav

test: venv
	$(BIN)/python -m pytest -q

# The realtime goals (note -> onset one period, knob -> ready, xruns, cycles blamed on the player, RSS growth) as
# figures beside a C reference client (jack_midisine) in the same JACK dummy server: benchmarks/README.md keeps
# the last results. Needs jackd2 (apt-get install jackd2). BENCH_ARGS="--preset presets/kicks --notes 4" etc.
BENCH_ARGS ?= --seconds 30 --notes 8 --cc 50
bench: venv
	$(BIN)/python benchmarks/runtime_latency.py $(BENCH_ARGS) --out out/runtime_latency.json

# For machines without audio: the shipped grooves rendered offline through both presets, as WAVs and spectrogram
# PNGs. presets/grooves/demo.mid: 4 bars of kicks at 124 BPM with the sub and decay knobs automated;
# presets/grooves/kit.mid: 4 bars of kick, snare, hats, clap, toms and a cymbal with decay falling, brightness rising.
demo: venv
	$(BIN)/runtime render --preset presets/kicks --midi presets/grooves/demo.mid --out out/demo-kicks.wav
	$(BIN)/trainer spectrogram out/demo-kicks.wav --out out/demo-kicks.png \
	    --title "presets/kicks playing presets/grooves/demo.mid (CC 20 sub up, CC 22 decay down)"
	$(BIN)/runtime render --preset presets/kit --midi presets/grooves/kit.mid --out out/demo-kit.wav
	$(BIN)/trainer spectrogram out/demo-kit.wav --out out/demo-kit.png \
	    --title "presets/kit playing presets/grooves/kit.mid (CC 22 decay falls, CC 24 brightness rises)"

# The shipped kick preset, end to end (presets/kicks/MODEL_CARD.md): licence-filtered real kicks (every 8th held
# out for evaluation), 16 treated copies of each (trainer augment: repitch, tilt, fade, drive) and 1500 procedural
# kicks -> fit (kick spec, decoder conditioned on the five descriptors, one CPU thread) -> axes (the five knobs checked
# by sweeps from pads, real kicks, random latents), cluster, evaluate -> export -> a test render. Intermediate data in
# out/, the run in runs/kicks, features in $(KCACHE).
KDATA    ?= ../shared/data/drums
KCACHE   ?= /tmp/kcache
KEPOCHS  ?= 75
KLICENCE := CC0 "Public Domain" Unlicense MIT Apache-2.0 CC-BY --exclude-licence CC-BY-SA
KITCLASSES := kick snare clap hat tom perc cymbal
preset-kicks: venv
	rm -rf out/kicks-train out/kicks-heldout out/kicks-aug out/synth-kicks runs/kicks
	$(BIN)/trainer subset $(KDATA) --class kick --licence $(KLICENCE) --every 8 --drop 0 --out out/kicks-train
	$(BIN)/trainer subset $(KDATA) --class kick --licence $(KLICENCE) --every 8 --keep 0 --out out/kicks-heldout
	$(BIN)/trainer augment out/kicks-train/kick --out out/kicks-aug --copies 16 --seed 0
	$(BIN)/trainer synth out/synth-kicks --n 1500 --seed 7
	$(BIN)/trainer fit out/kicks-train/kick out/kicks-aug out/synth-kicks --config configs/kick-controls.toml \
	    --out runs/kicks --cache $(KCACHE) --no-progress --set train.threads=1 train.epochs=$(KEPOCHS)
	$(BIN)/trainer axes runs/kicks --data out/kicks-train/kick --cache $(KCACHE) --anchors 8
	$(BIN)/trainer cluster runs/kicks --data out/kicks-train/kick --cache $(KCACHE) --components 4
	$(BIN)/trainer evaluate runs/kicks --data out/kicks-heldout/kick --train-data out/kicks-train/kick \
	    out/synth-kicks --real-data out/kicks-train/kick out/kicks-heldout/kick --prior-data out/kicks-train/kick \
	    --cache $(KCACHE)
	$(BIN)/trainer highband out/kicks-train/kick out/synth-kicks --out runs/kicks --cache $(KCACHE)
	$(BIN)/python -m export onnx runs/kicks --out presets/kicks
	$(BIN)/runtime render --preset presets/kicks --axes sub=0.8,decay=0.3 --out out/kicks-render.wav

# The shipped drum kit (presets/kit/MODEL_CARD.md): a class-conditioned VAE over the licence-filtered bank (every
# 8th file held out) + 150 procedural kicks, snares, hats and toms each; pads on the GM drum map.
preset-kit: venv
	rm -rf out/kit-train out/kit-heldout out/synth-bank runs/kit
	$(BIN)/trainer subset $(KDATA) --class $(KITCLASSES) --licence $(KLICENCE) --every 8 --drop 0 --out out/kit-train
	$(BIN)/trainer subset $(KDATA) --class $(KITCLASSES) --licence $(KLICENCE) --every 8 --keep 0 --out out/kit-heldout
	$(BIN)/trainer synth out/synth-bank --bank --n 150 --seed 11
	$(BIN)/trainer fit out/kit-train out/synth-bank --config configs/kit.toml --out runs/kit --cache $(KCACHE) \
	    --no-progress --set train.threads=1
	$(BIN)/trainer axes runs/kit --data out/kit-train out/synth-bank --cache $(KCACHE)
	$(BIN)/trainer evaluate runs/kit --data out/kit-heldout --train-data out/kit-train out/synth-bank \
	    --real-data out/kit-train out/kit-heldout --prior-data out/kit-train --cache $(KCACHE)
	$(BIN)/trainer highband out/kit-train out/synth-bank --out runs/kit --cache $(KCACHE)
	$(BIN)/python -m export onnx runs/kit --out presets/kit --iterations 6  # K = 4 turns the snare pad's sub knob (MODEL_CARD)
	$(BIN)/runtime render --preset presets/kit --midi presets/grooves/kit.mid --out out/demo-kit.wav

clean:
	rm -rf out runs .pytest_cache
