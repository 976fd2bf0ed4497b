#!/usr/bin/env bash
# Demo: train a small compound-scaled EfficientNet (B0 at phi = -4, 1.0 M parameters, 32 px) on
# scikit-learn's built-in handwritten digits with the `quick` recipe (a few minutes on a laptop
# CPU), evaluate the checkpoint, then classify a few validation images saved by the run.
# Extra arguments go to `effnet train`, e.g. `scripts/demo.sh --epochs 5`.
source "$(dirname "$0")/_venv.sh"

RUN=${RUN:-runs/demo-$(date +%Y%m%d-%H%M%S)}
effnet train --recipe quick --output "$RUN" --save-samples 6 "$@"

echo
effnet eval --weights "$RUN/best.safetensors"

# the better of the raw and EMA weights at the best epoch, as the run's summary names it
BEST=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["best"]["weights"])' \
  "$RUN/summary.json")
echo
echo "predicting with $RUN/$BEST (spec.json beside it rebuilds the network):"
effnet predict "$RUN"/samples/*.png --weights "$RUN/$BEST" --topk 3
