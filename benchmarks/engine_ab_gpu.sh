#!/usr/bin/env bash
# A/B of the rollout engine on one GPU machine: the nano protocol at two commits, alternated, same process
# settings (a fresh machine's first run is slow, so each side runs twice).
#
#   git archive --format=tar OLD_COMMIT > .stage/ab/old.tar     # here, before the call (carry .stage/ab)
#   bash benchmarks/engine_ab_gpu.sh [SHAPES]                   # on the GPU; default qwen2.5-0.5b
#
# Prints one line per run (tok/s, % of the floor, decode steps, the host's own time and its waits for the
# device), then qwen3-0.6b once per side unless SHAPES is given, then the new side with the decode
# attention split over the context (--decode-splits 2, 4, 8) and with sampling inside the CUDA graphs
# (--graph-sampling). transformers is skipped (--hf-new-tokens 0):
# its figure is in BENCHMARKS.md.
set -u
shapes=${1:-qwen2.5-0.5b}
old=/tmp/ab_old && rm -rf $old && mkdir -p $old && tar xf .stage/ab/old.tar -C $old
new=$PWD
export PYTHONUNBUFFERED=1
run() {  # $1: source tree, $2: label, $3: shape, $4...: more options
  local src=$1 label=$2 shape=$3
  shift 3
  PYTHONPATH=$src PONDER_COMMIT=$label python3 -P -m ponder.cli bench rollout --case nano --shapes "$shape" \
    --hf-new-tokens 0 "$@" 2>&1 | grep -E "^nano|Error" | sed "s/^/[$label $*] /"
}
for round in 1 2; do
  for shape in ${shapes//,/ }; do
    run $old old "$shape"
    run $new new "$shape"
  done
done
if [ $# -eq 0 ]; then
  run $old old qwen3-0.6b
  run $new new qwen3-0.6b
fi
for opt in "--decode-splits 2" "--decode-splits 4" "--decode-splits 8" "--graph-sampling"; do
  for shape in ${shapes//,/ }; do
    run $new new "$shape" $opt
  done
done
