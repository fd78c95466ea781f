#!/usr/bin/env bash
# Issue 20's knob report for both shipped presets, after `make preset-kicks` and `make preset-kit`:
#   1. `trainer axes` on each run (sweeps from the latent mean, 8 encoded sounds, the pads and 6 random latents, read
#      by trainer/descriptors.py and trainer/analysis/reference.py; rho per sweep, the knob x descriptor rho matrix),
#      written to RUN/analysis/knobs/ so that the axes.json export used stays as it is;
#   2. benchmarks/knob_reference.py on each exported preset: the same through the runtime's render path, from every
#      pad at velocities 40 / 100 / 127, 6 held-out real kicks placed as pad samples and 6 prior latents, plus the
#      AudioCommons timbral models where installed (`.venv/bin/pip install --no-deps timbral-models==0.4.0`).
# Usage: bash benchmarks/knob_report.sh [ROOT]   (ROOT: the checkout whose runs/ and out/ the presets were made in;
# default: this one). Output: out/knobs-{kicks,kit}-{axes,runtime}.md (+ .json).
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(cd "${1:-$HERE}" && pwd)"
BIN="$HERE/.venv/bin"
KCACHE="${KCACHE:-/tmp/kcache}"
mkdir -p "$HERE/out"
cd "$HERE"
"$BIN/trainer" axes "$ROOT/runs/kicks" --data "$ROOT/out/kicks-train/kick" --cache "$KCACHE" --anchors 8 --random 6 \
    --out "$ROOT/runs/kicks/analysis/knobs"
cp "$ROOT/runs/kicks/analysis/knobs/axes.md" out/knobs-kicks-axes.md
"$BIN/trainer" axes "$ROOT/runs/kit" --data "$ROOT/out/kit-train" "$ROOT/out/synth-bank" --cache "$KCACHE" \
    --methods pinv backward --random 6 --out "$ROOT/runs/kit/analysis/knobs"
cp "$ROOT/runs/kit/analysis/knobs/axes.md" out/knobs-kit-axes.md
for preset in kicks kit; do
    "$BIN/python" benchmarks/knob_reference.py "presets/$preset" --json "out/knobs-$preset-runtime.json" \
        > "out/knobs-$preset-runtime.md"
done
echo "wrote out/knobs-kicks-axes.md out/knobs-kit-axes.md out/knobs-kicks-runtime.md out/knobs-kit-runtime.md"
