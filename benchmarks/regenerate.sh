#!/usr/bin/env bash
# Rewrite every section of BENCHMARKS.md with its script's default command, at a clean commit
# (each section is stamped with it). CPU: about an hour on 2 idle cores.
#   bash benchmarks/regenerate.sh [SECTION_SCRIPT ...]     # default: all, in the order below
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "$(git status --porcelain -- src benchmarks ':!benchmarks/results')" ]; then
  echo "regenerate.sh: uncommitted changes under src/ or benchmarks/; commit them first, so the" \
       "numbers belong to a commit" >&2
  exit 1
fi
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# timing first, while nothing else runs; the single-thread pair (fused_mbconv, nas_vs_b0) side by side
ALL="throughput heap memory train_digits compound_scaling progressive train_cifar10 fused_mbconv+nas_vs_b0 finetune quantize cam_compare"
for job in ${*:-$ALL}; do
  start=$(date +%s)
  pids=()
  for script in ${job//+/ }; do
    echo "== benchmarks/$script.py" >&2
    "$PY" "benchmarks/$script.py" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  echo "== $job: $(( $(date +%s) - start )) s" >&2
done
