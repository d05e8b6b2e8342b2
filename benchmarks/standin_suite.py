"""The whole built-in suite, vLLM-CPU (reference) against the trtllm-serve stand-in on a compiled
engine (candidate: strict schema, no token ids, no logprobs beyond top-1), on the embedded model.

    python benchmarks/standin_suite.py [--perturb 0.15] [--out benchmarks/results/cpu-standin]

Starts the stand-in (``tests/trtllm_serve_standin.py``, backend ``tensorrt``, built without
``gather_generation_logits``) over an engine dir written from the embedded model (``--perturb``
adds seeded weight noise: a broken build), runs ``pytest suites/ --engine-pair=vllm,trtllm-serve``
against it, and prints the verdict, each step and the candidate's probed capabilities. The report
and HTML land in ``--out``. CPU only; the stand-in is not trtllm-serve (README, "TensorRT-LLM").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--perturb", type=float, default=0.0, help="relative weight noise of the candidate (0: correct)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cpu-standin"))
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. a suite file instead of suites/)")
    a = ap.parse_args()
    from trtllm_serve_standin import running_standin, write_engine_dir

    from pytest_engineparity.models import embedded_model_dir

    hf = Path(embedded_model_dir())
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        eng = write_engine_dir(Path(tmp) / "engine", hf, perturb=a.perturb, seed=1)
        cfg = Path(tmp) / "engines.toml"
        with running_standin(eng, backend="tensorrt", tokenizer=hf, log_path=out / "standin.log") as url:
            cfg.write_text(f'[engines.trtllm-serve]\nkind = "openai"\nbase_url = "{url}/v1"\ntokenizer = "{hf}"\n')
            cmd = [sys.executable, "-m", "pytest", *(a.pytest_args or ["suites/"]), "--engine-pair=vllm,trtllm-serve",
                   f"--engine-config={cfg}", f"--parity-report={out}/report.json", f"--parity-html={out}/report.html",
                   "-p", "no:cacheprovider", "-q"]
            t0 = time.monotonic()
            rc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode
            wall = time.monotonic() - t0
    doc = json.loads((out / "report.json").read_text())
    cand = next(e for e in doc["engines"] if e["role"] == "candidate")
    print(json.dumps({"command": " ".join(cmd[1:]), "perturb": a.perturb, "exit": rc, "wall_s": round(wall, 1),
                      "verdict": doc["verdict"], "reason": doc["reason"],
                      "steps": {s["step"]: [s["verdict"], s["passed"], s["failed"]] for s in doc["steps"]},
                      "candidate_capabilities": cand.get("capabilities")}, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
