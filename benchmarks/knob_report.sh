#!/usr/bin/env bash
# Issue 20's knob report for the shipped presets, after `make preset-kicks` / `make preset-kit`:
#   1. `trainer axes` on the run (the knob check of trainer/shaping.py's knobs, rendered as the exported graph
#      renders): sweeps from the latent mean, 8 encoded sounds, the pads and 6 random latents, read by
#      trainer/descriptors.py and trainer/analysis/reference.py; rho per sweep, the knob x descriptor rho matrix and
#      each effect's size in real-kick IQRs. Written to RUN/analysis/knobs/;
#   2. benchmarks/knob_reference.py on the exported preset: the same through the runtime's render path, from every
#      pad at velocities 40 / 100 / 127, 6 held-out real kicks placed as pad samples and 6 prior latents, plus the
#      AudioCommons timbral models where installed (`.venv/bin/pip install --no-deps timbral-models==0.4.0`; the kit:
#      velocities 40 / 127 and no timbral models, as its model card measures it).
# Usage: bash benchmarks/knob_report.sh [ROOT] [kicks] [kit]
#   ROOT: the checkout whose runs/, out/ and presets/ the presets were made in (default: this one); the presets to
#   report (default both). Output: out/knobs-PRESET-{axes,runtime}.md (+ runtime .json) in this checkout.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="$(cd "${1:-$HERE}" && pwd)"
shift || true
PRESETS=("${@:-kicks kit}")
BIN="$HERE/.venv/bin"
KCACHE="${KCACHE:-/tmp/kcache}"
mkdir -p "$HERE/out"
cd "$HERE"
for preset in ${PRESETS[@]}; do
    run="$ROOT/runs/$preset"
    case "$preset" in
        kicks) data=("$ROOT/out/kicks-train/kick"); flags=() ;;
        kit) data=("$ROOT/out/kit-train" "$ROOT/out/synth-bank"); flags=(--no-timbral --velocities 40 127) ;;
        *) echo "unknown preset $preset (kicks or kit)" >&2; exit 2 ;;
    esac
    "$BIN/trainer" axes "$run" --data "${data[@]}" --cache "$KCACHE" --anchors 8 --random 6 \
        --out "$run/analysis/knobs" > "out/knobs-$preset-axes.log"
    cp "$run/analysis/knobs/knobs.md" "out/knobs-$preset-axes.md"
    "$BIN/python" benchmarks/knob_reference.py "$ROOT/presets/$preset" "${flags[@]}" \
        --json "out/knobs-$preset-runtime.json" > "out/knobs-$preset-runtime.md"
    echo "wrote out/knobs-$preset-axes.md and out/knobs-$preset-runtime.md"
done
