#!/usr/bin/env bash
# One GPU call: the GPU's copy bandwidth, the engine's nano protocol with the transformers baseline, then
# the engine with each set of options (e.g. "--decode-splits 4", "--max-prefill-tokens 32768",
# "--decode-steps 1"). Logs under $OUT (or /tmp/sweep).
#
#   bash benchmarks/engine_sweep_gpu.sh [SHAPES] [OPTIONS...]
#
# SHAPES: comma-separated (default qwen2.5-0.5b,qwen3-0.6b). OPTIONS: each a quoted set of extra
# `ponder bench rollout` flags tried on the engine alone (default: none).
# The JSON's commit comes from `git rev-parse` on the GPU machine, whose copy of the git metadata can be
# stale: prefix the call with PONDER_COMMIT=$(git rev-parse --short HEAD) taken here to record the right one.
set -u
out=${OUT:-/tmp/sweep}
mkdir -p "$out"
shapes=${1:-qwen2.5-0.5b,qwen3-0.6b}
shift || true
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,clocks.mem --format=csv,noheader | tee "$out/gpu.txt"
python3 -P - <<'PY' | tee -a "$out/gpu.txt"
import torch
x = torch.empty(2**30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(20): y.copy_(x)
e.record(); e.synchronize()
print(f"device-to-device copy: {2 * 20 * 2**30 / (s.elapsed_time(e) / 1e3) / 1e12:.2f} TB/s (read + write)")
PY
bench() {  # $1: label; rest: flags
  local label=$1
  shift
  python3 -P -m ponder.cli bench rollout --case nano --shapes "$shapes" --out "$out/$label.json" "$@" \
    2>&1 | tee "$out/$label.log" | grep -E "^nano|^grpo|Error|error" | sed "s/^/[$label] /"
}
bench base
i=0
for opt in "$@"; do
  i=$((i + 1))
  # shellcheck disable=SC2086
  bench "opt$i" --hf-new-tokens 0 $opt
done
