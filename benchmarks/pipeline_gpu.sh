#!/usr/bin/env bash
# Run a pipeline recipe (recipes/NAME.toml) on a GPU machine with no network, in slices.
#
# benchmarks/gpu_setup.sh puts the GGUF, the wheels and the data in place. The run directory is
# $HOME/NAME, so a later call on the same (still warm) machine continues where this one stopped: the
# pipeline skips finished stages and GRPO resumes from its last checkpoint.
#
#   bash benchmarks/pipeline_gpu.sh NAME [SECONDS]    # e.g. r1, multiply, distill_smollm2; stops after
#                                                     # SECONDS (default 540)
#   bash benchmarks/pipeline_gpu.sh path/to/x.toml     # a recipe file elsewhere; run directory $HOME/x
#
# Writes $OUT/log_<time>.txt and $OUT/NAME.tar.gz (summaries, metrics, eval rows, pipeline.json; no weights).
set -u
arg=${1:?usage: pipeline_gpu.sh NAME|FILE.toml [SECONDS]}
budget=${2:-540}
source "$(dirname "$0")/gpu_setup.sh"
case "$arg" in
  *.toml) recipe="$src/$arg"; name=$(basename "$arg" .toml) ;;
  *) recipe="$src/recipes/$arg.toml"; name=$arg ;;
esac
stamp=$(date +%H%M%S)
timeout "$budget" python3 -P -m ponder.cli train "$recipe" --pipeline.dir="$HOME/$name" \
  > "$OUT/log_$stamp.txt" 2>&1
echo "pipeline exit: $?"
grep -v "it/s\]" "$OUT/log_$stamp.txt" | tail -40
cd "$HOME" && tar czf "$OUT/$name.tar.gz" --exclude='*.safetensors' --exclude='checkpoints' \
  --exclude='*.pt' --exclude='tokenizer*' "$name"
ls -la "$OUT"
