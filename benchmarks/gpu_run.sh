#!/usr/bin/env bash
# The GPU evidence run (H100, device tool): after benchmarks/gpu_setup.sh in the same shell.
#   1. the whole suite, vLLM vs transformers, both bf16 on the GPU  -> $OUT/gpu-pass.json/.html
#   2. the same with a degraded candidate (15 % weight noise)       -> $OUT/gpu-degraded.json
#   3. the plugin's overhead and batching gain on vLLM              -> $OUT/gpu-cost.json
#   4. the machine fingerprint                                      -> $OUT/fingerprint.json
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
P="python3 -m pytest -p no:cacheprovider -q --engine-config=benchmarks/gpu-engines.toml"
python3 -c 'import torch, pynvml; print("gpus", torch.cuda.device_count(), torch.cuda.get_device_name(0))'
python3 -m pytest_engineparity.cli fingerprint > "$OUT/fingerprint.json"
t0=$(date +%s)
$P suites/ --engine-pair=vllm-bf16,hf-bf16 --parity-report="$OUT/gpu-pass.json" --parity-html="$OUT/gpu-pass.html" \
   ${GPU_EXTRA:-} 2>&1 | tail -40 | tee "$OUT/gpu-pass.txt"
echo "pass run: $(( $(date +%s) - t0 )) s"
if [ "${GPU_DEGRADED:-1}" = 1 ]; then
t0=$(date +%s)
$P suites/test_semantic_parity.py --engine-pair=vllm-bf16,hf-degraded --parity-report="$OUT/gpu-degraded.json" \
   2>&1 | tail -25 | tee "$OUT/gpu-degraded.txt"
echo "degraded run: $(( $(date +%s) - t0 )) s"
fi
if [ "${GPU_COST:-1}" = 1 ]; then
  python3 benchmarks/plugin_cost.py overhead --engine vllm-bf16 --engine-config benchmarks/gpu-engines.toml --max-tokens 64 --json "$OUT/gpu-overhead.json" 2>&1 | grep -v -i warn | tail -8
  python3 benchmarks/plugin_cost.py batching --engine vllm-bf16 --engine-config benchmarks/gpu-engines.toml --max-tokens 64 --json "$OUT/gpu-batching.json" 2>&1 | grep -v -i warn | tail -8
fi
