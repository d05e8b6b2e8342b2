#!/usr/bin/env bash
# GPU evidence, round two (issues 15 and 20), on `nvidia-h100-x4` (four H100s) of the device tool.
# Run from a pinned source snapshot (.gpu/src = `git archive HEAD` + this script and
# benchmarks/gpu-engines.toml), after the vLLM parts (.gpu/c1..c5) and the model parts
# (.gpu/m1..m3, mpart*) were copied to /tmp/gpu, one device call each; the last call carries
# .gpu/c6 and .gpu/src. Phase A first does what benchmarks/gpu_setup.sh does (same environment),
# from the snapshot; the call that carries .gpu/c6 may already start on-device.sh in the background
# (writing /tmp/gpu/install.log and, at its end, install.rc), and phase A then waits for it:
#   cp .gpu/c6/* /tmp/gpu/ && (setsid bash -c 'bash /tmp/gpu/on-device.sh >/tmp/gpu/install.log 2>&1; echo $? >/tmp/gpu/install.rc' </dev/null >/dev/null 2>&1 &)
#
#   cd .gpu/src && T0=$(date +%s) bash benchmarks/gpu_round2.sh A
#   cd .gpu/src && T0=$(date +%s) bash benchmarks/gpu_round2.sh B     (next call, same warm box)
#   one GPU: cd .gpu/src && T0=$(date +%s) CFG=benchmarks/gpu-engines-1gpu.toml \
#            PAIRS="h100-r3-eager-vs-graphs=eager,graphs" bash benchmarks/gpu_round2.sh S
#
# A: (1) whole suites/ eager vs CUDA graphs and (2) whole suites/ bf16 vs FP8, side by side on
#    GPUs 0,1 and 2,3 (each pair concurrent on its own two GPUs); then (3) vLLM (CUDA graphs) vs
#    transformers bf16.
# B: (3) if A had no time for it; (4) TP=1 (GPU 0) vs TP=3 (GPUs 1-3), whole suite, concurrent;
#    placement timing (the same two engines, one after the other vs at once, same run);
#    (5) plugin overhead with CUDA graphs on (benchmarks/plugin_cost.py, its plugin report kept);
#    a diagnosis of generate inside vs outside the plugin (repeated calls, a second engine resident).
# Everything lands in /tmp/r2 (kept between the calls of one lease); each call copies its new
# files to $OUT, gzipped, at most 8 files.
set -uo pipefail
PHASE=${1:?phase A or B}
OUT=${OUT:-/tmp/out}; R=/tmp/r2; mkdir -p "$OUT" "$R"
export PYTHONPATH=/tmp/site:$PWD VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_HOST_IP=127.0.0.1 HF_HUB_OFFLINE=1 \
  PYTEST_PLUGINS=${PYTEST_PLUGINS-pytest_engineparity.plugin} NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 \
  NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor_root
T0=${T0:-$(date +%s)}; BUDGET=${BUDGET:-575}   # seconds for the whole call, from T0
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
export CFG=${CFG:-benchmarks/gpu-engines.toml} PL_N=${PL_N:-512} OV_N=${OV_N:-256} DIAG_N=${DIAG_N:-256} TOK=${TOK:-64}

summary() {  # one compact block per report, for the call's output tail
python3 - "$1" <<'EOF'
import json, sys
p = sys.argv[1]
try:
    d = json.load(open(p))
except Exception as e:
    print(f"  [{p}] unreadable: {e}"); sys.exit()
s = d["summary"]
nf = {k: f"{v.get('n_exact')}/{v.get('n')}" for k, v in (s.get("noise_floor") or {}).items()}
print(f"  verdict {d['verdict'].upper()} exit_blocks={d.get('exit_blocks')} | {s['prompts']} prompts: exact {s['exact']}, "
      f"equivalent {s['equivalent']} | noise floor exact {nf} | schedule {s.get('schedule')}")
print(f"  reason: {str(d.get('reason'))[:300]}")
for st in d["steps"]:
    odd = [f"{c.get('name')}={c.get('verdict')}" for c in st.get("checks", []) if c.get("verdict") in ("fail", "inconclusive", "shared", "warn", "error")]
    print(f"  {st['step']}: {st['verdict']} (passed {st['passed']}, failed {st['failed']}) {'; '.join(odd)[:300]}")
for e in d["engines"]:
    print(f"  engine {e['name']}: start {e.get('start_seconds') and round(e['start_seconds'], 1)} s, "
          f"batches {len(e['batches'])}, generate {round(sum(b['wall_s'] for b in e['batches']), 2)} s, "
          f"peak GPU {e.get('peak_gpu_bytes')}, devices {e.get('devices')}")
EOF
}

suite() {  # suite NAME PAIR TIMEOUT [extra pytest args]
  local name=$1 pair=$2 t=$3; shift 3
  if [ "$t" -lt 60 ]; then echo "== $name: skipped, only $t s left"; return 0; fi
  mkdir -p "$R/tmp-$name"
  local t1; t1=$(date +%s)
  TMPDIR=$R/tmp-$name timeout "$t" python3 -m pytest -p no:cacheprovider -q ${SUITES:-suites/} --engine-config=$CFG \
    --engine-pair="$pair" --parity-report="$R/$name.json" --parity-html="$R/$name.html" "$@" > "$R/$name.log" 2>&1
  local rc=$?
  echo "== $name ($pair): rc=$rc, wall $(( $(date +%s) - t1 )) s" | tee -a "$R/walls.txt"
  grep -E "passed|failed|error" "$R/$name.log" | tail -2
  [ -f "$R/$name.json" ] && summary "$R/$name.json"
}

ship() {  # ship FILE...: gzip each into $OUT (<= 8 files a call, logs in one tar)
  for f in "$@"; do [ -f "$R/$f" ] && gzip -c "$R/$f" > "$OUT/$f.gz"; done
}

gpuinfo() {
  nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader
}

setup() {  # = benchmarks/gpu_setup.sh, with .gpu/c6 one level up from the snapshot
  if [ -z "${SKIP_SETUP:-}" ]; then
    if [ -f /tmp/gpu/install.log ]; then  # the c6 call started on-device.sh in the background
      while [ ! -f /tmp/gpu/install.rc ]; do sleep 2; done
      [ "$(cat /tmp/gpu/install.rc)" = 0 ] || { tail -20 /tmp/gpu/install.log; exit 1; }
      echo "background install finished before +$(( $(date +%s) - T0 )) s"
    else
      cp ../c6/* /tmp/gpu/ && bash /tmp/gpu/on-device.sh || exit 1
    fi
    ( cd /tmp/gpu && cat $(ls mpart* | sort) > models.tar && tar xf models.tar && rm -f mpart* models.tar ) || exit 1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site /tmp/gpu/w/*.whl || exit 1
    python3 -m pytest_engineparity.cli prepare-model || exit 1
  fi
  echo "setup done at +$(( $(date +%s) - T0 )) s"
  python3 -c 'import torch, vllm; print("gpus", torch.cuda.device_count(), torch.cuda.get_device_name(0), "vllm", vllm.__version__)'
}

# S (one GPU, e.g. nvidia-h100-x1): setup once per lease (SKIP_SETUP=1 on later calls), then the
#    pairs of PAIRS="NAME=REF,CAND ..." one after the other (CFG=benchmarks/gpu-engines-1gpu.toml),
#    each report and page shipped to $OUT.
if [ "$PHASE" = S ]; then
  setup
  [ -f "$R/fingerprint.json" ] || python3 -m pytest_engineparity.cli fingerprint > "$R/fingerprint.json"
  shipped=()
  for np in ${PAIRS:?PAIRS="NAME=REF,CAND ..."}; do
    suite "${np%%=*}" "${np#*=}" $(( $(left) - 25 ))
    shipped+=("${np%%=*}.json" "${np%%=*}.html")
  done
  gpuinfo
  ( cd "$R" && tar czf "$OUT/logs-S.tar.gz" walls.txt fingerprint.json *.log tmp-*/engineparity-*/*.log 2>/dev/null )
  ship "${shipped[@]}"
  echo "S done at +$(( $(date +%s) - T0 )) s"
  exit 0
fi

if [ "$PHASE" = A ]; then
  setup
  python3 -m pytest_engineparity.cli fingerprint > "$R/h100x4-fingerprint.json"
  nvidia-smi topo -m > "$R/topo.txt" 2>&1; cat "$R/topo.txt"
  l=$(left)
  suite h100-eager-vs-graphs eager,graphs $(( l - 20 )) &
  p1=$!
  sleep 2
  suite h100-fp8 bf16,fp8 $(( l - 20 )) &
  p2=$!
  wait $p1 $p2
  gpuinfo
  l=$(left)
  if [ "$l" -gt 200 ]; then suite h100-vllm-vs-hf vllm-graphs,hf-cuda $(( l - 15 )); fi
  ( cd "$R" && tar czf "$OUT/logs-A.tar.gz" walls.txt topo.txt h100x4-fingerprint.json *.log tmp-*/engineparity-*/*.log 2>/dev/null )
  ship h100-eager-vs-graphs.json h100-eager-vs-graphs.html h100-fp8.json h100-fp8.html h100-vllm-vs-hf.json h100-vllm-vs-hf.html
  echo "A done at +$(( $(date +%s) - T0 )) s"
  exit 0
fi

# ---- phase B ----------------------------------------------------------------------------------
gpuinfo
# (4) TP=1 vs TP=3, whole suite, engines on disjoint GPUs (schedule: concurrent)
suite h100x4-tp1-vs-tp3 tp1,tp3 $(( $(left) - 300 ))

# placement timing: the same two engines through the plugin's session, one after the other vs at once
l=$(left)
if [ "$l" -gt 200 ]; then
TMPDIR=$R timeout $(( l - 150 )) python3 - <<'EOF' 2>&1 | grep -v -i warn | tail -15
import json, os, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from plugin_cost import prompts
from pytest_engineparity.config import build_config
from pytest_engineparity.session import ParitySession
from pytest_engineparity.types import GenerationRequest

cfg = build_config({"engine_pair": "tp1,tp3", "engine_config": os.environ["CFG"]}, {}, {}, os.getcwd())
s = ParitySession(cfg, notify=lambda m: None)
t0 = time.perf_counter()
errs = s.start_engines()  # at the same time: disjoint devices
start_wall = time.perf_counter() - t0
assert not errs, errs
N, T = int(os.environ["PL_N"]), int(os.environ["TOK"])
reqs = [GenerationRequest(messages=({"role": "user", "content": p},), max_tokens=T, logprobs=5) for p in prompts(N)]
s._both(lambda h: h.generate(reqs[:32], label="warm-up"))
rows = []
for rep in range(3):
    t0 = time.perf_counter()
    alone = {}
    for h in s.handles:
        t1 = time.perf_counter(); h.generate(reqs, label="alone"); alone[h.name] = time.perf_counter() - t1
    seq = time.perf_counter() - t0
    t0 = time.perf_counter()
    def timed(h):
        t1 = time.perf_counter(); h.generate(reqs, label="at once"); return time.perf_counter() - t1
    both = s._both(timed)
    conc = time.perf_counter() - t0
    rows.append({"one_after_the_other_s": seq, "at_once_s": conc, "ratio": seq / conc, "alone_s": alone,
                 "at_once_per_engine_s": {h.name: t for h, t in both}})
    print(f"rep {rep}: one after the other {seq:.2f} s {({k: round(v, 2) for k, v in alone.items()})}, at once {conc:.2f} s, ratio {seq / conc:.2f}")
doc = {"pair": "tp1,tp3", "schedule": s.schedule, "prompts": N, "max_tokens": T, "engines_started_at_once_s": start_wall,
       "start_seconds": {h.name: h.worker.start_seconds for h in s.handles},
       "devices": {h.name: h.spec.devices for h in s.handles}, "rows": rows,
       "median_ratio": sorted(r["ratio"] for r in rows)[1], "batches": {h.name: h.batches for h in s.handles}}
for h in s.handles:
    h.close()
json.dump(doc, open("/tmp/r2/h100x4-placement.json", "w"), indent=2)
print("median ratio (one after the other / at once):", round(doc["median_ratio"], 3))
EOF
fi

# (5) overhead with CUDA graphs on; the plugin's own report is kept (per-engine batch timings)
l=$(left)
if [ "$l" -gt 150 ]; then
TMPDIR=$R timeout $(( l - 20 )) python3 - <<'EOF' 2>&1 | grep -v -i warn | tail -10
import contextlib, os, sys, types
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
import plugin_cost

@contextlib.contextmanager
def keep():
    d = "/tmp/r2/overhead-plugin"
    os.makedirs(d, exist_ok=True)
    yield d

plugin_cost.tempfile = types.SimpleNamespace(TemporaryDirectory=keep)
sys.argv = ["plugin_cost.py", "overhead", "--engine", "graphs-solo", "--engine-config", os.environ["CFG"],
            "--max-tokens", os.environ["TOK"], "--n", os.environ["OV_N"], "--json", "/tmp/r2/h100-overhead-graphs.json"]
plugin_cost.main()
import json
d = json.load(open("/tmp/r2/overhead-plugin/r.json"))
for e in d["engines"]:
    print("plugin engine", e["name"], "start", round(e["start_seconds"], 1), "batches", [(b["label"], round(b["wall_s"], 3)) for b in e["batches"]])
EOF
fi

# (3) if phase A had no time for it
l=$(left)
if [ ! -f "$R/h100-vllm-vs-hf.json" ] && [ "$l" -gt 150 ]; then suite h100-vllm-vs-hf vllm-graphs,hf-cuda $(( l - 15 )); fi

# diagnosis: one engine, the same 256-prompt call repeated; then a second engine resident on the GPU
l=$(left)
if [ "$l" -gt 110 ]; then
TMPDIR=$R timeout $(( l - 15 )) python3 - <<'EOF' 2>&1 | grep -v -i warn | tail -12
import json, os, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "benchmarks"))
from plugin_cost import _engine_spec, prompts
from pytest_engineparity.models import embedded_model_dir
from pytest_engineparity.runtime.client import EngineWorker
from pytest_engineparity.types import GenerationRequest

def spec():
    s = _engine_spec("graphs-solo", os.environ["CFG"])
    s.target = str(embedded_model_dir())
    return s

reqs = [GenerationRequest(messages=({"role": "user", "content": p},), max_tokens=int(os.environ["TOK"]), logprobs=5) for p in prompts(int(os.environ["DIAG_N"]))]
out = {"calls": []}
def call(w, what):
    t0 = time.perf_counter(); c = w.generate(reqs); dt = time.perf_counter() - t0
    out["calls"].append({"what": what, "s": dt, "tokens": sum(len(x.token_ids) for x in c)})
    print(f"{what}: {dt:.3f} s")
w1 = EngineWorker(spec()); w1.start(); out["start1_s"] = w1.start_seconds
for i in range(3):
    call(w1, f"engine 1 alone, call {i + 1}")
w2 = EngineWorker(spec()); w2.start(); out["start2_s"] = w2.start_seconds
call(w1, "engine 1, engine 2 resident on the same GPU")
call(w2, "engine 2, call 1")
call(w2, "engine 2, call 2")
w1.close(); w2.close()
json.dump(out, open("/tmp/r2/h100-generate-diag.json", "w"), indent=2)
EOF
fi

python3 -m pytest_engineparity.cli fingerprint > "$R/h100x4-fingerprint-B.json"
( cd "$R" && tar czf "$OUT/logs-B.tar.gz" walls.txt h100x4-fingerprint-B.json h100-generate-diag.json h100x4-tp1-vs-tp3.log \
    overhead-plugin/r.json h100-vllm-vs-hf.log tmp-h100x4-*/engineparity-*/*.log 2>/dev/null )
ship h100x4-tp1-vs-tp3.json h100x4-tp1-vs-tp3.html h100x4-placement.json h100-overhead-graphs.json h100-vllm-vs-hf.json h100-vllm-vs-hf.html
echo "B done at +$(( $(date +%s) - T0 )) s"
