#!/usr/bin/env bash
# Run recipes/r1.toml (SmolLM2-135M-Instruct, GSM8K) on a GPU machine with no network, in slices.
#
# benchmarks/gpu_setup.sh puts the GGUF, the wheels and the data in place. The run directory is
# $HOME/r1run, so a later call on the same (still warm) machine continues where this one stopped: the
# pipeline skips finished stages and GRPO resumes from its last checkpoint.
#
#   bash benchmarks/r1_pipeline_gpu.sh [SECONDS]     # stops the pipeline after SECONDS (default 540)
#
# Writes $OUT/log_<time>.txt and $OUT/r1run.tar.gz (summaries, metrics, eval rows, pipeline.json).
set -u
budget=${1:-540}
source "$(dirname "$0")/gpu_setup.sh"
stamp=$(date +%H%M%S)
timeout "$budget" python3 -P -m ponder.cli train "$src/recipes/r1.toml" --pipeline.dir="$HOME/r1run" \
  > "$OUT/log_$stamp.txt" 2>&1
echo "pipeline exit: $?"
grep -v "it/s\]" "$OUT/log_$stamp.txt" | tail -40
cd "$HOME" && tar czf "$OUT/r1run.tar.gz" --exclude='*.safetensors' --exclude='checkpoints' \
  --exclude='*.pt' --exclude='tokenizer*' r1run
ls -la "$OUT"
